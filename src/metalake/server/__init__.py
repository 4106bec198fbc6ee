"""`metalake serve`: the HTTP server (the OpenLineage endpoint today)."""

__all__: list[str] = []
