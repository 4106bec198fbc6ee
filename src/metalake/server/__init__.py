"""`metalake serve`: the HTTP server. app.py builds the FastAPI app, routes/ holds one module per API, payload.py
reads request bodies, spool.py commits lineage events in groups. FastAPI loads only when a server starts."""

__all__: list[str] = []
