"""The command line: a Typer app, one module per command group, one output module."""

from metalake.cli.app import app, main

__all__ = ["app", "main"]
