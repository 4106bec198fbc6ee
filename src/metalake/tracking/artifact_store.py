"""Artifact files stored in the lake's own storage (`lake.artifacts`), each one recorded in the `artifacts` table.

Files live under the lake's `artifacts/` folder, at the paths MLflow's artifact proxy uses:
`<experiment_id>/<run_id>/artifacts/<path>` for a run's files and
`<experiment_id>/models/<model_id>/artifacts/<path>` for a logged model's. A path is confined to one of those
two folders: `..`, absolute paths and anything else are refused before storage is touched. A file is streamed
to storage in chunks while its size and SHA-256 are computed, then recorded (run_id, name, uri, size_bytes,
sha256, kind); a later upload of the same path records a newer row, and the latest row is the current one.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from metalake.core.ids import new_id
from metalake.errors import ArtifactError, ArtifactNotFound, RunNotFound

if TYPE_CHECKING:
    from metalake.core.tables import Tables
    from metalake.tracking.logged_models import LoggedModels

ARTIFACTS_FOLDER = "artifacts"
ARTIFACTS_TABLE = "artifacts"
CHUNK_BYTES = 1 << 20
UPLOAD_SUFFIX = ".uploading-"  # a file being written (local storage): listings leave it out
Owner = Literal["run", "model"]
_RUN_PATH = re.compile(r"^(?P<experiment>[^/]+)/(?P<run>[^/]+)/artifacts(?:/(?P<rest>.*))?$")
_MODEL_PATH = re.compile(
    r"^(?P<experiment>[^/]+)/models/(?P<model>m-[0-9a-f]{32})/artifacts(?:/(?P<rest>.*))?$"
)

ReadChunk = Callable[[], bytes]  # the next chunk of an upload; b"" at its end


@dataclass(frozen=True)
class ArtifactPath:
    """A confined path under the lake's artifacts folder: whose it is (a run's or a model's) and where in it."""

    path: str  # e.g. "1/0190.../artifacts/plots/roc.png"
    owner: Owner
    experiment_id: str
    owner_id: str  # the run id or the model id
    relative: str  # the path inside the run's or the model's artifact root ("" for the root itself)


@dataclass(frozen=True)
class ArtifactEntry:
    """One item of a listing: a file or a folder directly under the listed folder."""

    name: str
    is_dir: bool
    size_bytes: int | None


@dataclass(frozen=True)
class StoredArtifact:
    """A file once stored and recorded."""

    run_id: str
    name: str
    uri: str
    size_bytes: int
    sha256: str


def confine(path: str) -> ArtifactPath:
    """The artifact path `path` names, or ArtifactError saying which folders are allowed."""
    text = (path or "").replace("\\", "/")
    allowed = (
        "Artifact paths must lie under <experiment_id>/<run_id>/artifacts/ or "
        "<experiment_id>/models/<model_id>/artifacts/."
    )
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ArtifactError(f"Invalid artifact path {path!r}: it is absolute. {allowed}")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ArtifactError(f"Invalid artifact path {path!r}: '..' may not appear in it. {allowed}")
    if any("\x00" in part for part in parts):
        raise ArtifactError(f"Invalid artifact path {path!r}: it holds a NUL character. {allowed}")
    normal = "/".join(parts)
    if (found := _MODEL_PATH.match(normal)) is not None:
        return ArtifactPath(normal, "model", found["experiment"], found["model"], found["rest"] or "")
    if (found := _RUN_PATH.match(normal)) is not None and found["run"] != "models":
        return ArtifactPath(normal, "run", found["experiment"], found["run"], found["rest"] or "")
    raise ArtifactError(
        f"Invalid artifact path {path!r}: it is outside every run's and model's folder. {allowed}"
    )


class ArtifactStore:
    """`lake.artifacts`: store, read, list and delete the files of runs and logged models in the lake."""

    def __init__(self, tables: Tables, *, logged_models: LoggedModels):
        self._tables = tables
        self._logged_models = logged_models
        self._filesystem: Any = None
        self._root = ""

    @property
    def root_uri(self) -> str:
        """Where artifact files are: the lake's `artifacts/` folder."""
        return self._tables.location.table_uri(ARTIFACTS_FOLDER)

    def _fs(self) -> tuple[Any, str]:
        if self._filesystem is None:
            from metalake.core.storage import arrow_filesystem

            location = self._tables.location
            self._filesystem, self._root = arrow_filesystem(self.root_uri, location.storage_options)
        return self._filesystem, self._root

    def _storage_path(self, path: ArtifactPath) -> str:
        return f"{self._fs()[1]}/{path.path}"

    def _uri(self, path: ArtifactPath) -> str:
        if self._tables.location.is_local:
            return Path(self._storage_path(path)).as_uri()
        return f"{self.root_uri}/{path.path}"

    def write(self, path: str, read_chunk: ReadChunk, *, actor: str | None = None) -> StoredArtifact:
        """Store the bytes `read_chunk` yields at `path` (chunk by chunk, never all in memory) and record them.

        The run or model the path names must exist. On local storage the file appears whole or not at all (it is
        written aside, then renamed); on object stores the upload completes or leaves nothing.
        """
        target = confine(path)
        if not target.relative:
            raise ArtifactError(
                f"Invalid artifact path {path!r}: it names a run's or model's folder, not a file."
            )
        run_id, name, kind = self._recorded_as(target)
        filesystem, _ = self._fs()
        final = self._storage_path(target)
        local = self._tables.location.is_local
        written = f"{final}{UPLOAD_SUFFIX}{new_id()}" if local else final
        filesystem.create_dir(posixpath.dirname(final), recursive=True)
        digest, size = hashlib.sha256(), 0
        try:
            with filesystem.open_output_stream(written) as out:
                while chunk := read_chunk():
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if local:
                filesystem.move(written, final)
        except BaseException:
            if local:
                _delete_quietly(filesystem, written)
            raise
        stored = StoredArtifact(run_id, name, self._uri(target), size, digest.hexdigest())
        row = {
            "run_id": run_id,
            "name": name,
            "uri": stored.uri,
            "size_bytes": size,
            "sha256": stored.sha256,
            "kind": kind,
        }
        self._tables.append(ARTIFACTS_TABLE, [row], actor=actor, operation="log_artifact", reason=target.path)
        return stored

    def _recorded_as(self, target: ArtifactPath) -> tuple[str, str, str]:
        """(run_id, name, kind) of a file's `artifacts` row: a run's file by its path in the run; a model's file
        under its source run (the model id when it has none) as `models/<model_id>/<path>`."""
        if target.owner == "run":
            run_id = target.owner_id
            if not self._tables.sql("select 1 from runs where run_id = ? limit 1", [run_id]).fetchall():
                raise RunNotFound(run_id)
            return run_id, target.relative, "file"
        model = self._logged_models.get(target.owner_id)
        return model.source_run_id or model.model_id, f"models/{model.model_id}/{target.relative}", "model"

    def size(self, path: str) -> int:
        """A stored file's size in bytes; ArtifactNotFound when no file is there."""
        from pyarrow.fs import FileType

        filesystem, _ = self._fs()
        info = filesystem.get_file_info(self._storage_path(confine(path)))
        if info.type != FileType.File:
            raise ArtifactNotFound(path)
        return int(info.size)

    def read(self, path: str) -> Iterator[bytes]:
        """A stored file's bytes, chunk by chunk; ArtifactNotFound when no file is there."""
        self.size(path)
        filesystem, _ = self._fs()
        storage_path = self._storage_path(confine(path))

        def chunks() -> Iterator[bytes]:
            with filesystem.open_input_stream(storage_path) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    yield chunk

        return chunks()

    def list(self, path: str) -> list[ArtifactEntry]:
        """What lies directly under a folder, by name; [] for a file or a folder nothing was stored in."""
        from pyarrow.fs import FileSelector, FileType

        filesystem, _ = self._fs()
        folder = self._storage_path(confine(path))
        if filesystem.get_file_info(folder).type != FileType.Directory:
            return []
        entries = []
        for info in filesystem.get_file_info(FileSelector(folder, allow_not_found=True)):
            name = posixpath.basename(info.path.rstrip("/"))
            if UPLOAD_SUFFIX in name:
                continue
            is_dir = info.type == FileType.Directory
            entries.append(ArtifactEntry(name, is_dir, None if is_dir else int(info.size)))
        return sorted(entries, key=lambda entry: entry.name)

    def delete(self, path: str) -> None:
        """Delete the stored file or folder at `path`; the `artifacts` rows stay as history."""
        from pyarrow.fs import FileType

        target = confine(path)
        filesystem, _ = self._fs()
        storage_path = self._storage_path(target)
        kind = filesystem.get_file_info(storage_path).type
        if kind == FileType.Directory:
            filesystem.delete_dir(storage_path)
        elif kind == FileType.File:
            filesystem.delete_file(storage_path)
        else:
            raise ArtifactNotFound(path)


def _delete_quietly(filesystem: Any, path: str) -> None:
    with contextlib.suppress(OSError):
        filesystem.delete_file(path)
