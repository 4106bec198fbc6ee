"""MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/...`) and the artifact listing of the tracking API, over
`lake.artifacts`: files go to the lake's own storage and each one is recorded in the `artifacts` table.

Uploads and downloads stream: a PUT body is pulled chunk by chunk from the connection into storage (never held in
memory), a GET answers the stored file chunk by chunk. Multipart uploads are not offered (server-info says so);
their endpoints answer NOT_IMPLEMENTED with the message that makes the MLflow client fall back to a plain PUT.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import mimetypes
import posixpath
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from metalake.errors import MlflowError, RunNotFound
from metalake.server.auth import AUTHENTICATED, Authorize
from metalake.server.mlflow.entities import run_artifact_uri
from metalake.server.mlflow.protocol import API_PREFIXES, RUN, Call, MlflowRoutes, answer, named

if TYPE_CHECKING:
    from fastapi import Response

    from metalake.tracking.artifact_store import ArtifactEntry

# The MLflow client falls back to a single PUT when an mpu/create answer starts with this message.
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"


_UPLOAD_PREFIXES = tuple(f"{prefix}/artifacts/" for prefix in API_PREFIXES["artifacts"])


def is_artifact_upload(method: str, path: str) -> bool:
    """Whether a request is a file upload, whose body streams to storage (no cap on its size)."""
    return method == "PUT" and path.startswith(_UPLOAD_PREFIXES)


def artifact_securable(path: Mapping[str, Any]) -> str:
    """An artifact is its experiment's: paths start with the experiment's id (`3/<run_id>/artifacts/...`,
    `3/models/<model_id>/artifacts/...`)."""
    return f"artifact:{path.get('artifact_path', '')}"


def add_artifact_routes(routes: MlflowRoutes) -> None:
    add_file_routes(routes)
    route = routes.route

    @route("GET", "artifacts", action="read", securable=named("artifact", "path"), version="artifacts")
    def list_artifacts(call: Call) -> dict[str, Any]:
        path = call.optional_text("path") or ""
        return {"files": [file_info(entry.name, entry) for entry in call.lake.artifacts.list(path)]}

    @route("GET", "artifacts/list", action="read", securable=RUN)
    def list_run_artifacts(call: Call) -> dict[str, Any]:
        """The tracking API's listing: a run's artifacts under `path`, their paths relative to the run's root."""
        lake = call.lake
        given = call.run_id()
        try:
            run_id = lake.runs.resolve_id(given)
        except RunNotFound:
            raise MlflowError(f"Run with id={given} not found", "RESOURCE_DOES_NOT_EXIST") from None
        experiment_id = lake.experiments.id_of(lake.runs.get(run_id).info["experiment"])
        relative = (call.optional_text("path") or "").strip("/")
        folder = f"{experiment_id}/{run_id}/artifacts" + (f"/{relative}" if relative else "")
        files = [
            file_info(posixpath.join(relative, entry.name) if relative else entry.name, entry)
            for entry in lake.artifacts.list(folder)
        ]
        return {"root_uri": run_artifact_uri(experiment_id, run_id), "files": files}

    @route("GET", "server-info", action="read", securable=AUTHENTICATED, version="3.0")
    def server_info(call: Call) -> dict[str, Any]:
        """What MLflow clients ask of the server before uploading (mlflow/utils/server_info.py)."""
        del call
        return {
            "store_type": None,
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }

    def multipart(call: Call) -> dict[str, Any]:
        del call
        raise MlflowError(
            f"{MULTIPART_UNSUPPORTED}: metalake stores uploads sent as one PUT, which it streams to storage.",
            "NOT_IMPLEMENTED",
        )

    for step in ("create", "complete", "abort"):
        route(
            "POST",
            f"mpu/{step}/{{artifact_path:path}}",
            action="write",
            securable=artifact_securable,
            version="artifacts",
        )(multipart)


def file_info(path: str, entry: "ArtifactEntry") -> dict[str, Any]:
    info: dict[str, Any] = {"path": path, "is_dir": entry.is_dir}
    if entry.size_bytes is not None:
        info["file_size"] = entry.size_bytes
    return info


def add_file_routes(routes: MlflowRoutes) -> None:
    """PUT, GET and DELETE of one file, as FastAPI routes (their bodies stream), behind the authorization seam."""
    from fastapi import Depends, Request
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    api = routes.api

    def actor_of(request: Request) -> str:
        principal = getattr(request.state, "principal", None)
        return principal.name if principal is not None else api.lake.actor

    async def upload(request: Request, artifact_path: str) -> "Response":
        chunks = request.stream().__aiter__()
        read_chunk = blocking_reader(chunks)
        await run_in_threadpool(api.lake.artifacts.write, artifact_path, read_chunk, actor=actor_of(request))
        return answer({})

    async def download(artifact_path: str) -> "Response":
        lake = api.lake
        size = await run_in_threadpool(lake.artifacts.size, artifact_path)
        chunks = await run_in_threadpool(lake.artifacts.read, artifact_path)
        media_type = mimetypes.guess_type(artifact_path)[0] or "application/octet-stream"
        name = posixpath.basename(artifact_path).replace('"', "")
        headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(chunks, media_type=media_type, headers=headers)

    async def delete(artifact_path: str) -> "Response":
        await run_in_threadpool(api.lake.artifacts.delete, artifact_path)
        return answer({})

    for method, endpoint, action in (
        ("PUT", upload, "write"),
        ("GET", download, "read"),
        ("DELETE", delete, "write"),
    ):
        dependency = Depends(Authorize(api.authenticator, action, artifact_securable, api.access_log))  # type: ignore[arg-type]
        for prefix in API_PREFIXES["artifacts"]:
            api.app.add_api_route(
                f"{prefix}/artifacts/{{artifact_path:path}}",
                endpoint,
                methods=[method],
                dependencies=[dependency],
                include_in_schema=False,
            )


def blocking_reader(chunks: AsyncIterator[bytes]) -> Callable[[], bytes]:
    """`read_chunk()` for a worker thread: the next non-empty chunk of the request body, b"" at its end.

    Each call runs one step of the body's async iterator on the event loop, so the body is read as storage
    takes it, never buffered whole.
    """
    from anyio import from_thread

    async def next_chunk() -> bytes:
        return await chunks.__anext__()

    def read_chunk() -> bytes:
        while True:
            try:
                chunk = from_thread.run(next_chunk)
            except StopAsyncIteration:
                return b""
            if chunk:
                return chunk

    return read_chunk
