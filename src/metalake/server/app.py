"""The HTTP server behind `metalake serve`: one FastAPI app whose routes (server/routes/) call the lake's namespaces.

It serves the REST API (`/api/v1/...`, described at `/openapi.json` and `/docs`), MLflow's REST API for unmodified
MLflow clients (`/api/2.0/mlflow/...`, server/mlflow/), and takes OpenLineage events at `POST /api/v1/lineage`
(see server/spool.py for how they are committed).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request) at runtime.
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake._version import __version__
from metalake.errors import LineageError, MetalakeError, MissingExtraError
from metalake.server.spool import DEFAULT_COMMIT_INTERVAL, Ack, GroupCommitter, default_spool_dir

if TYPE_CHECKING:
    from fastapi import FastAPI

    from metalake.lake import Lake
    from metalake.server.auth import AuthMode


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


def is_loopback(host: str) -> bool:
    """Whether `host` only takes connections from this machine (what --no-auth allows)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(
    lake: "Lake",
    *,
    spool_dir: Path | None = None,
    auth: "AuthMode" = "lake",
    token: str | None = None,
    ack: Ack = "spooled",
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    data_roots: Sequence[Path] = (),
) -> "FastAPI":
    """The REST API of a lake. `auth`: "lake" (tokens of the lake's principals, decided by their grants),
    "token" (requests carry `Authorization: Bearer TOKEN`, and may do everything) or "none" (no check).
    `data_roots`: folders the server may read data from when a client registers a dataset version by path."""
    import_server_libraries()
    from fastapi import FastAPI, Request, Response

    from metalake.server.access_log import AccessLog
    from metalake.server.api import Api
    from metalake.server.auth import Authenticator
    from metalake.server.middleware import BodyLimit, Idempotency
    from metalake.server.mlflow import add_mlflow_routes
    from metalake.server.models import Health
    from metalake.server.routes.access import add_access_routes
    from metalake.server.routes.catalog import add_catalog_routes
    from metalake.server.routes.datasets import add_dataset_routes
    from metalake.server.routes.deployments import add_deployment_routes
    from metalake.server.routes.lineage import add_lineage_routes
    from metalake.server.routes.registry import add_registry_routes
    from metalake.server.routes.tracking import add_tracking_routes

    committer = GroupCommitter(
        lake, spool_dir or default_spool_dir(lake.uri), commit_interval=commit_interval
    )
    lake.runs.set_commit_window(commit_interval)  # logging calls answered once journaled commit together too

    access_log = AccessLog(lake) if auth == "lake" else None

    @contextlib.asynccontextmanager
    async def lifespan(_: "FastAPI") -> AsyncIterator[None]:
        committer.start()
        if access_log is not None:
            access_log.start()
        try:
            yield
        finally:
            await asyncio.to_thread(committer.stop)
            if access_log is not None:
                await asyncio.to_thread(access_log.stop)

    app = FastAPI(
        title="metalake",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.committer = committer
    authenticator = Authenticator(auth, lake=lake, token=token)
    api = Api(app, lake, authenticator, access_log)
    app.state.api = api
    add_error_handlers(app)
    add_lineage_routes(api, committer, ack=ack)
    add_catalog_routes(api)
    add_access_routes(api)
    add_tracking_routes(api)
    add_registry_routes(api)
    add_dataset_routes(api, data_roots=tuple(Path(root).resolve() for root in data_roots))
    add_deployment_routes(api)
    add_mlflow_routes(api)

    @app.get("/api/v1/health", response_model=Health, tags=["public"])
    def health(request: Request, response: Response) -> Health:
        """Liveness, and how many lineage events and run flushes wait for their group commit (until then, only
        this server reads them); the lake's URI only with the token."""
        try:
            authenticator.principal(request)
            known = True
        except MetalakeError:
            known = False
        return Health(
            status="ok",
            queued=committer.queued,
            committed=committer.committed_events,
            commits=committer.commits,
            dead_letters=committer.dead_letters,
            run_flushes_pending=lake.runs.flush_queue.pending,
            lake=lake.uri if known else None,
        )

    app.add_middleware(Idempotency)
    from metalake.server.mlflow.artifacts import is_artifact_upload

    app.add_middleware(BodyLimit, streamed=is_artifact_upload)
    return app


API_DESCRIPTION = """The metalake REST API: every kind of ML metadata in the lake, as it is now or as it was.

* Every GET takes `as_of` (an ISO-8601 time or a snapshot name) and answers as the lake was then.
* Errors are `{"error": {"code", "message", "details"}}`: 400 bad input, 401/403, 404 unknown, 409 conflict or
  policy refusal, 413 too large, 422 contract refusal (nothing written), 503 storage unavailable.
* Listings are paged: `limit` (at most 1000) and the `next_page_token` of the previous page as `page_token`.
* GETs answer an `ETag` naming the table versions read; `If-None-Match` with it answers 304.
* POSTs take an `Idempotency-Key`: sent again, the same request writes nothing new and answers the same.
"""


def add_error_handlers(app: "FastAPI") -> None:
    """Every refusal as `{"error": {"code", "message", "details"}}`, with its status; never a traceback."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from metalake.server.api import NotModified
    from metalake.server.http import error_body, error_details, status_for
    from metalake.server.mlflow.protocol import error_response as mlflow_error_response
    from metalake.server.mlflow.protocol import is_mlflow_path, mlflow_code

    @app.exception_handler(MetalakeError)
    async def metalake_error(request: Request, error: MetalakeError) -> Response:
        if is_mlflow_path(request.url.path):  # MLflow clients read MLflow's error body
            return mlflow_error_response(mlflow_code(error), str(error))
        return JSONResponse(error_body(error.code, str(error), error_details(error)), status_for(error))

    @app.exception_handler(NotModified)
    async def not_modified(_: Any, signal: NotModified) -> Response:
        return Response(status_code=304, headers={"ETag": signal.etag})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Any, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "where": ".".join(str(part) for part in problem.get("loc", ())),
                "problem": problem.get("msg", ""),
            }
            for problem in error.errors()
        ]
        message = "The request is not what this endpoint takes: " + "; ".join(
            f"{problem['where']}: {problem['problem']}" for problem in problems[:10]
        )
        return JSONResponse(error_body("invalid_request", message, {"problems": problems[:50]}), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if is_mlflow_path(request.url.path) and error.status_code in (404, 405):
            return mlflow_error_response(
                "ENDPOINT_NOT_FOUND",
                f"metalake does not serve {request.method} {request.url.path} of MLflow's API.",
            )
        code = {404: "endpoint_not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = str(error.detail)
        if error.status_code == 404:
            message = "No such endpoint. The API is described at /openapi.json and /docs."
        return JSONResponse(error_body(code, message), error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        import logging

        logging.getLogger("metalake.server").exception("unexpected error", exc_info=error)
        message = (
            f"The server failed on this request ({type(error).__name__}); the server log has the details."
        )
        if is_mlflow_path(request.url.path):
            return mlflow_error_response("INTERNAL_ERROR", message)
        return JSONResponse(error_body("internal_error", message), 500)


def serve(
    lake: "Lake",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    spool_dir: Path | None = None,
    auth: "AuthMode" = "lake",
    token: str | None = None,
    ack: Ack = "spooled",
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    data_roots: Sequence[Path] = (),
) -> None:
    """Run the server until interrupted (uvicorn, one process: the committer thread owns the writes)."""
    import_server_libraries()
    import uvicorn

    app = create_app(
        lake,
        spool_dir=spool_dir,
        auth=auth,
        token=token,
        ack=ack,
        commit_interval=commit_interval,
        data_roots=data_roots,
    )
    app.state.committer.lock()  # before listening: a clear error when another server has the spool
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except OSError as error:
        raise LineageError(
            f"Cannot listen on {host}:{port}: {error.strerror}. Pick another --port."
        ) from error
