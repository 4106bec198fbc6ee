"""The local journal: every run flush is on local disk before the run moves on, until the lake has it.

A flush is written here (one frame of Arrow IPC streams, one stream per table) before it is handed to the
commit queue, and the process's segment file is deleted once every flush in it is committed. A process killed
at any moment therefore leaves either committed facts or a segment. Each process holds an exclusive `flock` on
its segment for as long as it lives, so a segment whose lock can be taken has no live owner: the next
`metalake.connect` to the lake on this machine, or `metalake sync`, commits it again under the flushes'
original idempotency keys (Delta app transactions), so what was committed before the kill is not written twice.

Layout: `$METALAKE_JOURNAL` (default `$XDG_CACHE_HOME/metalake/journal`, else `~/.cache/metalake/journal`), one
folder per lake named by a hash of its URI (with the URI in a `lake-uri` file), one `*.journal` segment per
process. `METALAKE_JOURNAL=off` turns the journal off. Row batches (run events, inputs) travel as JSON in
the stream's metadata, with times tagged. A frame is: magic, payload length, CRC-32, payload; a
frame cut short by a kill fails its length or CRC check and is ignored (it was never acknowledged).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import hashlib
import json
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.errors import JournalFull

if TYPE_CHECKING:
    import pyarrow as pa

    from metalake.tracking.group_commit import QueuedFlush

JOURNAL_ENV = "METALAKE_JOURNAL"
MAX_BYTES_ENV = "METALAKE_JOURNAL_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB per lake: weeks of a busy job's metrics while storage is unreachable
SEGMENT_SUFFIX = ".journal"
REFUSED_SUFFIX = ".refused"
_OFF = {"off", "0", "false", "no", "none"}
_MAGIC = b"MLJ1"
_HEADER = struct.Struct("<4sQI")  # magic, payload length, CRC-32 of the payload
_LENGTH = struct.Struct("<Q")


def journal_root() -> Path | None:
    """The journal folder in force, or None when `METALAKE_JOURNAL=off`."""
    configured = os.environ.get(JOURNAL_ENV, "").strip()
    if configured.lower() in _OFF and configured:
        return None
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "metalake" / "journal"


def max_bytes() -> int:
    """The journal's size limit per lake, from `METALAKE_JOURNAL_MAX_BYTES` (bytes; K, M, G suffixes)."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip().upper()
    if not text:
        return DEFAULT_MAX_BYTES
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    try:
        return int(float(text.rstrip("KMGB") or "x") * scale)
    except ValueError:
        raise JournalFull(
            f"{MAX_BYTES_ENV}={os.environ[MAX_BYTES_ENV]!r} is not a size: give bytes, e.g. 500M or 2G."
        ) from None


def lake_folder(root: Path, uri: str) -> Path:
    """The folder of one lake's segments (named by a hash of its URI; `lake-uri` inside says which lake)."""
    return root / hashlib.sha256(uri.encode()).hexdigest()[:16]


# -- frames --------------------------------------------------------------------------------------------------


@dataclass
class JournaledFlush:
    """A flush as read back from a segment: what `QueuedFlush` held when it was acknowledged."""

    flush_id: str
    run_id: str
    points: int
    tables: dict[str, Any] = field(default_factory=dict)


def encode(flush: QueuedFlush) -> bytes:
    """One frame: every table of the flush as an Arrow IPC stream, the flush's ids in the schema metadata."""
    import pyarrow as pa

    parts = []
    for table, batch in flush.tables.items():
        rows = isinstance(batch, list)
        metadata = {
            "flush_id": flush.flush_id,
            "run_id": flush.run_id,
            "table": table,
            "points": str(flush.points),
            "kind": "rows" if rows else "arrow",
        }
        if rows:  # a few run events or inputs: JSON in the stream's metadata, far cheaper than a conversion
            metadata["rows"] = json.dumps(batch, default=_tagged, separators=(",", ":"))
            arrow: pa.Table = pa.schema([]).empty_table()
        else:
            arrow = batch
        arrow = arrow.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, arrow.schema) as writer:
            writer.write_table(arrow)
        stream = sink.getvalue().to_pybytes()
        parts.append(_LENGTH.pack(len(stream)) + stream)
    payload = b"".join(parts)
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _tagged(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$time": value.isoformat()}
    raise TypeError(f"a run flush row holds a {type(value).__name__}, which the journal does not store")


def _untagged(value: dict[str, Any]) -> Any:
    if len(value) == 1 and "$time" in value:
        return datetime.fromisoformat(value["$time"])
    return value


def decode(data: bytes) -> list[JournaledFlush]:
    """Every whole frame of a segment, in order; a torn or damaged tail (a kill mid-write) is dropped."""
    import pyarrow as pa

    flushes: list[JournaledFlush] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, offset)
        payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        offset += _HEADER.size + length
        flush: JournaledFlush | None = None
        position = 0
        while position < len(payload):
            (size,) = _LENGTH.unpack_from(payload, position)
            position += _LENGTH.size
            arrow = pa.ipc.open_stream(payload[position : position + size]).read_all()
            position += size
            meta = {key.decode(): value.decode() for key, value in (arrow.schema.metadata or {}).items()}
            if flush is None:
                flush = JournaledFlush(meta["flush_id"], meta["run_id"], int(meta["points"]))
            arrow = arrow.replace_schema_metadata(None)
            rows = meta["kind"] == "rows"
            flush.tables[meta["table"]] = json.loads(meta["rows"], object_hook=_untagged) if rows else arrow
        if flush is not None:
            flushes.append(flush)
    return flushes


# -- this process's segment for one lake ---------------------------------------------------------------------


class Journal:
    """This process's journal for one lake: an open, locked segment while any of its flushes is uncommitted."""

    def __init__(self, folder: Path, uri: str, limit: int):
        self.folder = folder
        self.uri = uri
        self.limit = limit
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._others = 0  # bytes of other segments of this lake when this one was opened
        self._outstanding: set[str] = set()

    @property
    def segment(self) -> Path | None:
        """The segment being written, if any (None once everything in it was committed)."""
        return self._path

    def record(self, flush: QueuedFlush) -> None:
        """Append the flush to the segment; returns once the bytes are in the operating system's hands."""
        frame = encode(flush)
        with self._lock:
            if self._fd is None:
                self._open()
            assert self._fd is not None and self._path is not None
            if self._others + self._size + len(frame) > self.limit:
                raise JournalFull(
                    f"The local journal for the lake at {self.uri} holds {self._others + self._size:,} bytes "
                    f"and this flush needs {len(frame):,} more, beyond its limit of {self.limit:,} bytes "
                    f"({MAX_BYTES_ENV}). The lake has not taken these flushes for a while: check that its "
                    f"storage is reachable and run `metalake sync --lake {self.uri}`, or raise the limit."
                )
            try:
                _write_all(self._fd, frame)
            except OSError as error:
                os.ftruncate(self._fd, self._size)  # no torn frame left behind (it would be ignored anyway)
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise JournalFull(
                        f"The disk holding the local journal ({self.folder}) is full: this run flush could "
                        f"not be kept. Free space there, or point {JOURNAL_ENV} at a folder with room."
                    ) from error
                raise JournalFull(
                    f"Cannot write the local journal {self._path}: {error.strerror}. Check the folder, or point "
                    f"{JOURNAL_ENV} elsewhere ({JOURNAL_ENV}=off turns the journal off)."
                ) from error
            self._size += len(frame)
            self._outstanding.add(flush.flush_id)
        flush.journal = self

    def settled(self, flush: QueuedFlush) -> None:
        """A journaled flush is committed (or refused for good): empty the segment once it holds nothing else.

        Emptied, not deleted: the next flush reuses the open, locked file (a sweep commits a segment per run);
        an empty segment replays nothing, and the process deletes it at exit (a replayer deletes it otherwise).
        """
        with self._lock:
            self._outstanding.discard(flush.flush_id)
            if not self._outstanding and self._fd is not None and self._size:
                os.ftruncate(self._fd, 0)
                self._size = 0

    def close(self) -> None:
        """At exit: delete the segment if nothing in it waits for a commit, else leave it for a replay."""
        with self._lock:
            if self._fd is None or self._path is None:
                return
            if not self._outstanding:
                self._path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd, self._path, self._size = None, None, 0

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            marker = self.folder / "lake-uri"
            if not marker.exists():
                marker.write_text(self.uri + "\n")
            path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
            # Created under another name and locked before it gets its own, so no replayer takes it for
            # abandoned; the lock is held while this process lives.
            starting = path.with_suffix(".starting")
            fd = os.open(starting, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            starting.rename(path)
        except OSError as error:
            raise JournalFull(
                f"Cannot create the local journal in {self.folder}: {error.strerror}. Point {JOURNAL_ENV} at "
                f"a folder you can write to ({JOURNAL_ENV}=off turns the journal off)."
            ) from error
        self._fd, self._path, self._size = fd, path, 0
        self._others = sum(size for _, size in _segments(self.folder) if _ != path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _segments(folder: Path) -> Iterator[tuple[Path, int]]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.endswith((SEGMENT_SUFFIX, REFUSED_SUFFIX)):
            try:
                yield Path(entry.path), entry.stat().st_size
            except OSError:
                continue


_JOURNALS: dict[str, Journal] = {}
_JOURNALS_LOCK = threading.Lock()
_EXIT_HOOKED = False


def _close_all() -> None:
    with _JOURNALS_LOCK:
        journals = list(_JOURNALS.values())
    for journal in journals:
        journal.close()


def journal_for(uri: str) -> Journal | None:
    """This process's journal for the lake at `uri` (None when the journal is off)."""
    root = journal_root()
    if root is None:
        return None
    limit = max_bytes()
    global _EXIT_HOOKED
    with _JOURNALS_LOCK:
        if not _EXIT_HOOKED:
            atexit.register(_close_all)  # before the commit queue's drain is: atexit runs it after the drain
            _EXIT_HOOKED = True
        journal = _JOURNALS.get(uri)
        if journal is None or journal.folder.parent != root or journal.limit != limit:
            journal = _JOURNALS[uri] = Journal(lake_folder(root, uri), uri, limit)
        return journal


# -- abandoned segments --------------------------------------------------------------------------------------


@dataclass
class Abandoned:
    """A segment with no live owner, locked by this process while it is replayed."""

    path: Path
    fd: int
    flushes: list[JournaledFlush]

    def release(self, *, committed: bool, refused: bool = False) -> None:
        """Delete the segment (committed), set it aside (refused for good), or leave it for later; unlock."""
        try:
            if committed:
                self.path.unlink(missing_ok=True)
            elif refused:
                self.path.rename(self.path.with_suffix(REFUSED_SUFFIX))
        finally:
            os.close(self.fd)


@dataclass
class Scan:
    """What a lake's journal folder holds: segments to replay, and how many belong to live processes."""

    abandoned: list[Abandoned] = field(default_factory=list)
    live: int = 0
    refused: int = 0


def abandoned_segments(uri: str, *, own: Journal | None = None) -> Scan:
    """Lock and read every segment of the lake whose owner is gone (cheap when the folder does not exist)."""
    root = journal_root()
    scan = Scan()
    if root is None:
        return scan
    folder = lake_folder(root, uri)
    for path, _ in sorted(_segments(folder)):
        if path.suffix == REFUSED_SUFFIX:
            scan.refused += 1
            continue
        if own is not None and path == own.segment:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # its owner dropped it meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            scan.live += 1
            continue
        if not path.exists():  # committed and dropped by its owner just before we took the lock
            os.close(fd)
            continue
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read()
        scan.abandoned.append(Abandoned(path, fd, decode(data)))
    return scan


def pending_lakes() -> dict[str, int]:
    """Lakes whose journal folders hold segments on this machine, with how many (for `metalake sync`)."""
    root = journal_root()
    found: dict[str, int] = {}
    if root is None or not root.is_dir():
        return found
    for folder in root.iterdir():
        marker = folder / "lake-uri"
        count = sum(1 for path, _ in _segments(folder) if path.suffix == SEGMENT_SUFFIX)
        if count and marker.is_file():
            found[marker.read_text().strip()] = count
    return found
