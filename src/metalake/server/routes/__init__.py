"""The server's routes, one module per API: lineage today; the REST API, auth and the UI go here next."""

__all__: list[str] = []
