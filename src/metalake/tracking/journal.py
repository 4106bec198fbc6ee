"""The local journal: every run flush is on local disk before the run moves on, until the lake has it.

A flush is written here (one frame: a JSON header, then the buffered columns of each table) before it is handed to the
commit queue, and the process's segment is emptied once every flush in it is committed. A process killed
at any moment therefore leaves either committed facts or a segment. Each process holds an exclusive `flock` on
its segment for as long as it lives, so a segment whose lock can be taken has no live owner: the next
`metalake.connect` to the lake on this machine, or `metalake sync`, commits it again under the flushes'
original idempotency keys (Delta app transactions), so what was committed before the kill is not written twice.

Layout: `$METALAKE_JOURNAL` (default `$XDG_CACHE_HOME/metalake/journal`, else `~/.cache/metalake/journal`), one
folder per lake named by a hash of its URI (with the URI in a `lake-uri` file), one `*.journal` segment per
process. `METALAKE_JOURNAL=off` turns the journal off. Row batches (run events, inputs) travel as JSON in
the frame's header, with times tagged. A frame is: magic, payload length, CRC-32, the segment's epoch, payload;
a frame cut short by a kill fails its length or CRC check and is ignored (it was never acknowledged).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import hashlib
import json
import marshal
import mmap
import os
import struct
import threading
import uuid
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.errors import JournalFull
from metalake.tracking.batches import Columns

if TYPE_CHECKING:
    import pyarrow as pa

    from metalake.tracking.group_commit import QueuedFlush

JOURNAL_ENV = "METALAKE_JOURNAL"
MAX_BYTES_ENV = "METALAKE_JOURNAL_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB per lake: weeks of a busy job's metrics while storage is unreachable
SEGMENT_SUFFIX = ".journal"
REFUSED_SUFFIX = ".refused"
_OFF = {"off", "0", "false", "no", "none"}
_MAGIC = b"MLJ4"
_HEADER = struct.Struct("<4sQIQ")  # magic, payload length, CRC-32 of the payload, epoch of the segment
_FIRST_CAPACITY = 256 << 10  # bytes allocated to a new segment (then doubled as needed)
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


def encode(flush: QueuedFlush) -> list[bytes | memoryview]:
    """A frame's payload, as the pieces to write (`frame` puts the header before them): a JSON header (the flush's ids, its row batches, the layout of
    what follows), then each table's column buffers (or Arrow IPC messages, for an Arrow table).

    No Arrow and no copies for what a run buffers: this runs on the training loop's thread at every flush.
    """
    header: dict[str, Any] = {"flush_id": flush.flush_id, "run_id": flush.run_id, "points": flush.points}
    layout: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for table, batch in flush.tables.items():
        if isinstance(batch, list):  # a few run events or inputs
            layout.append({"table": table, "kind": "rows", "rows": batch})
            continue
        pieces: list[bytes | memoryview]
        if isinstance(batch, Columns):
            try:  # the fastest encoding of Python lists; it refuses subclasses (a str enum as a key)
                pieces, encoding = [marshal.dumps(batch.columns)], "marshal"
            except ValueError:
                pieces = [_column_bytes(batch.types[name], values) for name, values in batch.columns.items()]
                encoding = "buffers"
            entry = {
                "kind": "columns",
                "encoding": encoding,
                "types": batch.types,
                "constants": batch.constants,
                "rows": batch.rows,
            }
            layout.append({"table": table, **entry, "columns": list(batch.columns)})
        else:
            pieces = [
                _schema_bytes(table, batch.schema),
                *(memoryview(b.serialize()) for b in batch.to_batches()),
            ]
            layout.append({"table": table, "kind": "arrow"})
        layout[-1]["sizes"] = [len(piece) for piece in pieces]
        blobs.extend(pieces)
    header["tables"] = layout
    head = json.dumps(header, default=_tagged, separators=(",", ":")).encode()
    return [_LENGTH.pack(len(head)), head, *blobs]


_ARRAY_CODES = {"float64": "d", "int64": "q", "micros": "q"}  # machine byte order: a journal never moves


def _column_bytes(kind: str, values: list[Any]) -> bytes:
    if kind == "string":
        return json.dumps(values, separators=(",", ":")).encode()
    return array(_ARRAY_CODES[kind], values).tobytes()


def _column_values(kind: str, data: memoryview) -> list[Any]:
    if kind == "string":
        return list(json.loads(bytes(data)))
    values = array(_ARRAY_CODES[kind])
    values.frombytes(data)
    return values.tolist()


def frame(flush: QueuedFlush, epoch: int = 0) -> bytes:
    """One whole frame, header included (for tests and tools; the journal writes the pieces in place)."""
    pieces = encode(flush)
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return _HEADER.pack(_MAGIC, sum(len(piece) for piece in pieces), crc, epoch) + b"".join(pieces)


_SCHEMAS: dict[tuple[str, pa.Schema], bytes] = {}


def _schema_bytes(table: str, schema: pa.Schema) -> bytes:
    """A table's IPC schema message, serialized once per process (every flush of a table has the same)."""
    key = (table, schema)
    found = _SCHEMAS.get(key)
    if found is None:
        found = _SCHEMAS[key] = schema.serialize().to_pybytes()
    return found


def _tagged(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$time": value.isoformat()}
    raise TypeError(f"a run flush row holds a {type(value).__name__}, which the journal does not store")


def _untagged(value: dict[str, Any]) -> Any:
    if len(value) == 1 and "$time" in value:
        return datetime.fromisoformat(value["$time"])
    return value


def decode(data: bytes) -> list[JournaledFlush]:
    """Every whole frame of a segment's current epoch, in order; a torn or damaged tail (a kill mid-write)
    and the space allocated ahead (zeros) end it."""
    flushes: list[JournaledFlush] = []
    offset = 0
    first_epoch: int | None = None
    while offset + _HEADER.size <= len(data):
        magic, length, crc, epoch = _HEADER.unpack_from(data, offset)
        payload = memoryview(data)[offset + _HEADER.size : offset + _HEADER.size + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        if first_epoch is None:
            first_epoch = epoch
        elif epoch != first_epoch:  # left from before the segment was emptied: committed already
            break
        offset += _HEADER.size + length
        (size,) = _LENGTH.unpack_from(payload, 0)
        position = _LENGTH.size + size
        header = json.loads(bytes(payload[_LENGTH.size : position]), object_hook=_untagged)
        flush = JournaledFlush(header["flush_id"], header["run_id"], int(header["points"]))
        for entry in header["tables"]:
            pieces = []
            for size in entry.get("sizes", []):
                pieces.append(payload[position : position + size])
                position += size
            flush.tables[entry["table"]] = _decoded_table(entry, pieces)
        flushes.append(flush)
    return flushes


def _decoded_table(entry: dict[str, Any], pieces: list[memoryview]) -> Any:
    if entry["kind"] == "rows":
        return entry["rows"]
    if entry["kind"] == "columns":
        types = entry["types"]
        if entry["encoding"] == "marshal":
            columns = marshal.loads(pieces[0])
        else:
            named = zip(entry["columns"], pieces, strict=True)
            columns = {name: _column_values(types[name], piece) for name, piece in named}
        return Columns(types, columns, entry["constants"], entry["rows"])
    import pyarrow as pa

    schema = pa.ipc.read_schema(pa.py_buffer(pieces[0]))
    batches = [pa.ipc.read_record_batch(pa.py_buffer(piece), schema) for piece in pieces[1:]]
    return pa.Table.from_batches(batches, schema)


# -- this process's segment for one lake ---------------------------------------------------------------------


class Journal:
    """This process's journal for one lake: an open, locked segment while any of its flushes is uncommitted.

    The segment is preallocated (so a full disk is an error here, not a crash later) and mapped in memory:
    a flush is copied into the mapping, which the kernel owns, so a process killed right after still leaves
    it in the file, and the training loop makes no system call (and gives up no interpreter lock) per flush.
    Emptying the segment starts a new epoch at offset 0: frames of an older epoch after it are not replayed.
    """

    def __init__(self, folder: Path, uri: str, limit: int):
        self.folder = folder
        self.uri = uri
        self.limit = limit
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._path: Path | None = None
        self._size = 0  # bytes of whole frames in the segment
        self._capacity = 0  # bytes allocated to the segment file
        self._epoch = 0
        self._others = 0  # bytes of other segments of this lake when this one was opened
        self._outstanding: set[str] = set()

    @property
    def segment(self) -> Path | None:
        """The segment being written, if any (None once everything in it was committed)."""
        return self._path

    def record(self, flush: QueuedFlush) -> None:
        """Append the flush to the segment; returns once the bytes are in the operating system's hands."""
        pieces = encode(flush)
        frame_size = _HEADER.size + sum(len(piece) for piece in pieces)
        with self._lock:
            if self._fd is None:
                self._open()
            if self._others + self._size + frame_size > self.limit:
                raise JournalFull(
                    f"The local journal for the lake at {self.uri} holds {self._others + self._size:,} bytes "
                    f"and this flush needs {frame_size:,} more, beyond its limit of {self.limit:,} bytes "
                    f"({MAX_BYTES_ENV}). The lake has not taken these flushes for a while: check that its "
                    f"storage is reachable and run `metalake sync --lake {self.uri}`, or raise the limit."
                )
            if self._size + frame_size > self._capacity:
                self._grow(self._size + frame_size)
            assert self._map is not None
            position = self._size + _HEADER.size
            crc = 0
            for piece in pieces:
                self._map[position : position + len(piece)] = piece
                crc = zlib.crc32(piece, crc)
                position += len(piece)
            # The header last: a kill before it leaves no frame at all, not a torn one.
            self._map[self._size : self._size + _HEADER.size] = _HEADER.pack(
                _MAGIC, frame_size - _HEADER.size, crc, self._epoch
            )
            self._size += frame_size
            self._outstanding.add(flush.flush_id)
        flush.journal = self

    def settled(self, flush: QueuedFlush) -> None:
        """A journaled flush is committed (or refused for good): empty the segment once it holds nothing else.

        Emptied, not deleted: the next flush reuses the open, locked file (a sweep commits a segment per run);
        an empty segment replays nothing, and the process deletes it at exit (a replayer deletes it otherwise).
        """
        with self._lock:
            self._outstanding.discard(flush.flush_id)
            if not self._outstanding and self._map is not None and self._size:
                self._epoch += 1
                self._map[: _HEADER.size] = bytes(_HEADER.size)
                self._size = 0

    def close(self) -> None:
        """At exit: delete the segment if nothing in it waits for a commit, else leave it for a replay."""
        with self._lock:
            if self._fd is None or self._path is None:
                return
            if self._map is not None:
                self._map.close()
            if not self._outstanding:
                self._path.unlink(missing_ok=True)
            else:
                os.ftruncate(self._fd, self._size)  # give back the space allocated ahead
            os.close(self._fd)
            self._fd, self._map, self._path, self._size, self._capacity = None, None, None, 0, 0

    def _grow(self, needed: int) -> None:
        """Allocate room for `needed` bytes at least (doubling, within the limit) and map it."""
        assert self._fd is not None
        room = max(self.limit - self._others, needed)
        capacity = min(max(needed, 2 * self._capacity, _FIRST_CAPACITY), room)
        capacity = -(-capacity // mmap.PAGESIZE) * mmap.PAGESIZE if capacity < room else capacity
        try:
            os.posix_fallocate(self._fd, 0, capacity)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise JournalFull(
                    f"The disk holding the local journal ({self.folder}) is full: this run flush could "
                    f"not be kept. Free space there, or point {JOURNAL_ENV} at a folder with room."
                ) from error
            raise JournalFull(
                f"Cannot write the local journal {self._path}: {error.strerror}. Check the folder, or point "
                f"{JOURNAL_ENV} elsewhere ({JOURNAL_ENV}=off turns the journal off)."
            ) from error
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, capacity)
        self._capacity = capacity

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
            fd = os.open(starting, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            starting.rename(path)
        except OSError as error:
            raise JournalFull(
                f"Cannot create the local journal in {self.folder}: {error.strerror}. Point {JOURNAL_ENV} at "
                f"a folder you can write to ({JOURNAL_ENV}=off turns the journal off)."
            ) from error
        self._fd, self._path, self._size, self._capacity = fd, path, 0, 0
        self._others = sum(size for _, size in _segments(self.folder) if _ != path)


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
    """This process's journal for the lake at `uri` (None when the journal is off).

    Called at every flush: the settings are parsed again only when their environment variables change.
    """
    global _EXIT_HOOKED, _SETTINGS
    raw = (os.environ.get(JOURNAL_ENV), os.environ.get("XDG_CACHE_HOME"), os.environ.get(MAX_BYTES_ENV))
    if _SETTINGS is None or _SETTINGS[0] != raw:
        root = journal_root()
        _SETTINGS = (raw, root, max_bytes() if root is not None else 0)
    _, root, limit = _SETTINGS
    if root is None:
        return None
    with _JOURNALS_LOCK:
        if not _EXIT_HOOKED:
            atexit.register(_close_all)  # before the commit queue's drain is: atexit runs it after the drain
            _EXIT_HOOKED = True
        journal = _JOURNALS.get(uri)
        if journal is None or journal.folder.parent != root or journal.limit != limit:
            journal = _JOURNALS[uri] = Journal(lake_folder(root, uri), uri, limit)
        return journal


_SETTINGS: tuple[tuple[str | None, ...], Path | None, int] | None = None


# -- abandoned segments --------------------------------------------------------------------------------------


@dataclass
class Abandoned:
    """A segment with no live owner, locked by this process while it is replayed."""

    path: Path
    fd: int
    flushes: list[JournaledFlush]
    unreadable: bool = (
        False  # holds bytes this version cannot read (another format): set aside, never deleted
    )

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
        flushes = decode(data)
        unreadable = not flushes and data[: len(_MAGIC)] not in (_MAGIC, bytes(len(_MAGIC)), b"")
        scan.abandoned.append(Abandoned(path, fd, flushes, unreadable))
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
