"""The HTTP server behind `metalake serve`: one FastAPI app whose routes (server/routes/) call the lake's namespaces.

Today it takes OpenLineage events at `POST /api/v1/lineage` (see server/spool.py for how they are committed) and
answers `GET /api/v1/health`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request) at runtime.
import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.errors import LineageError, MissingExtraError
from metalake.server.spool import DEFAULT_COMMIT_INTERVAL, Ack, GroupCommitter, default_spool_dir

if TYPE_CHECKING:
    from fastapi import FastAPI

    from metalake.lake import Lake


def import_server_libraries() -> None:
    """Fail early, with the extra to install, when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            f"`metalake serve` needs FastAPI and uvicorn ({error.name} is not installed). "
            "Install them with: pip install 'metalake[server]'"
        ) from None


def create_app(
    lake: "Lake",
    *,
    spool_dir: Path | None = None,
    token: str | None = None,
    ack: Ack = "spooled",
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
) -> "FastAPI":
    """The REST API of a lake. `token`: requests must carry `Authorization: Bearer TOKEN` (else any is fine)."""
    import_server_libraries()
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from metalake.server.routes.lineage import add_lineage_routes

    committer = GroupCommitter(
        lake, spool_dir or default_spool_dir(lake.uri), commit_interval=commit_interval
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: "FastAPI") -> AsyncIterator[None]:
        committer.start()
        try:
            yield
        finally:
            await asyncio.to_thread(committer.stop)

    app = FastAPI(title="metalake", lifespan=lifespan)
    app.state.committer = committer

    def authorized(request: Request) -> bool:
        """No token set, or `Authorization: Bearer TOKEN` (the scheme in any case), compared in constant time."""
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def refusal(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": code, "message": message})

    add_lineage_routes(app, committer, authorized=authorized, refusal=refusal, ack=ack)

    @app.get("/api/v1/health")
    async def health(request: Request) -> dict[str, Any]:
        """Liveness, and how many events wait for their group commit; the lake's URI only with the token."""
        status: dict[str, Any] = {
            "status": "ok",
            "queued": committer.queued,
            "committed": committer.committed_events,
            "commits": committer.commits,
            "dead_letters": committer.dead_letters,
        }
        if authorized(request):
            status["lake"] = lake.uri
        return status

    return app


def serve(
    lake: "Lake",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    spool_dir: Path | None = None,
    token: str | None = None,
    ack: Ack = "spooled",
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
) -> None:
    """Run the server until interrupted (uvicorn, one process: the committer thread owns the writes)."""
    import_server_libraries()
    import uvicorn

    app = create_app(lake, spool_dir=spool_dir, token=token, ack=ack, commit_interval=commit_interval)
    app.state.committer.lock()  # before listening: a clear error when another server has the spool
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except OSError as error:
        raise LineageError(
            f"Cannot listen on {host}:{port}: {error.strerror}. Pick another --port."
        ) from error
