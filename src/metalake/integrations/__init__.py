"""Integrations: thin adapters to other ML tools, each importing its optional package only when used."""

__all__: list[str] = []
