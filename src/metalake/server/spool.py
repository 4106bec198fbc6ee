"""The lineage group committer behind `POST /api/v1/lineage`: events spooled to local files, committed in groups.

A Delta commit per request would cap a client that sends events one by one at a few dozen per second, so
requests do not commit. Each request's events are checked, appended to a local spool file, queued, and
answered; a background thread commits everything queued as one ingest (one commit per table) every
`commit_interval` seconds, then deletes the spool segment it covered. With `ack="spooled"` (the default) the
201 comes once the events are in the spool file: a crash of the server process loses nothing (the spool is
replayed at the next start; events already stored are not written twice), a power loss may lose what the
operating system had not yet written to disk. With `ack="committed"` the 201 waits for the group commit that
holds the events: a commit starts as soon as such a request waits, and requests that arrive meanwhile share the
next one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from metalake.errors import InvalidEvent, LineageError, MetalakeError, TransientError

if TYPE_CHECKING:
    from metalake.lake import Lake
    from metalake.lineage.openlineage.events import Event

Ack = Literal["spooled", "committed"]
DEFAULT_COMMIT_INTERVAL = 0.5
MAX_BATCH_EVENTS = 20_000
RETRY_SECONDS = 1.0
LOCK_FILE = "server.lock"  # in the spool folder, held (flock) by the server that uses it
DEAD_LETTER_DIR = "dead-letter"  # in the spool folder: events that can never be ingested, and why
log = logging.getLogger("metalake.server")


def is_transient(error: BaseException) -> bool:
    """A failure that may pass when retried (storage, lost commit races), unlike a bad event or a bug."""
    return isinstance(error, TransientError | OSError)


def default_spool_dir(lake_uri: str) -> Path:
    """A spool folder per lake under the user's cache: survives restarts, never shared by two lakes."""
    digest = hashlib.sha256(lake_uri.encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "metalake" / "lineage-spool" / digest


@dataclass(eq=False)
class _Segment:
    """One spool file and the events written to it, committed together."""

    path: Path
    handle: IO[str]
    events: list[Event] = field(default_factory=list)
    waiters: list[Future[None]] = field(default_factory=list)


class GroupCommitter:
    """Queues checked events (spooled to local files) and commits them in groups from one background thread."""

    def __init__(self, lake: Lake, spool_dir: Path, *, commit_interval: float = DEFAULT_COMMIT_INTERVAL):
        self._lake = lake
        self._spool = spool_dir
        self._interval = commit_interval
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self._pending: list[_Segment] = []  # taken from the queue, not committed yet (a failed attempt)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.committed_events = 0
        self.commits = 0
        self.dead_letters = 0
        self._lock_file: IO[str] | None = None

    def lock(self) -> None:
        """Take the spool folder for this server: a second server on it would commit and delete its segments.

        LineageError when another process holds it. The lock goes with the process (or `stop`).
        """
        if self._lock_file is not None:
            return
        try:
            import fcntl
        except ImportError:  # not on POSIX: no lock
            return
        self._spool.mkdir(parents=True, exist_ok=True)
        handle = (self._spool / LOCK_FILE).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise LineageError(
                f"Another metalake server uses the spool folder {self._spool}. Stop it, or give this one its "
                "own folder with --spool."
            ) from None
        self._lock_file = handle

    def start(self) -> None:
        """Commit what a previous server left in the spool, then start the committer thread."""
        self.lock()
        self._spool.mkdir(parents=True, exist_ok=True)
        for leftover in sorted(self._spool.glob("*.jsonl")):
            self._replay(leftover)
        self._thread = threading.Thread(target=self._run, name="metalake-lineage-committer", daemon=True)
        self._thread.start()

    def _replay(self, segment: Path) -> None:
        """Commit a spool file a stopped server left; a line cut short by a crash mid-write is dropped."""
        from metalake.lineage.openlineage.events import parse_event

        events = []
        lines = segment.read_bytes().splitlines()
        for number, line in enumerate(lines):
            try:
                events.append(parse_event(line, number, source=f"file {segment} (spool)"))
            except InvalidEvent as error:
                if number < len(lines) - 1:
                    raise LineageError(
                        f"{error} Move {segment} out of the spool folder to start the server without it."
                    ) from None
                log.warning("dropped the unfinished last line of %s", segment)
        refused = self._ingest_isolating(events)
        log.warning("replayed %s: %d event(s), %d dead-lettered", segment.name, len(events), len(refused))
        segment.unlink()

    def _ingest_isolating(self, events: Sequence[Event]) -> set[str]:
        """Ingest events; one that can never be ingested goes to the dead-letter file, the others are committed.

        A failure that may pass (storage, a lost commit race) is raised: the spool keeps the events for a retry.
        Any other failure splits the batch in halves until the event that causes it is alone. Returns the ids of
        the dead-lettered events.
        """
        if not events:
            return set()
        try:
            self._lake.lineage.ingest_checked(events)
            return set()
        except Exception as error:
            if is_transient(error):
                raise
            if len(events) == 1:
                self._dead_letter(events[0], error)
                return {events[0].event_id}
        middle = len(events) // 2
        return self._ingest_isolating(events[:middle]) | self._ingest_isolating(events[middle:])

    def _dead_letter(self, event: Event, error: BaseException) -> None:
        """Keep an event that cannot be ingested (and why) in DEAD_LETTER_DIR of the spool, out of the replay."""
        import json

        folder = self._spool / DEAD_LETTER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "events.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(event.canonical + "\n")
        reason = {"event_id": event.event_id, "error": f"{type(error).__name__}: {error}"}
        with (folder / "reasons.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(reason) + "\n")
        self.dead_letters += 1
        log.error("dead-lettered lineage event %s into %s: %s", event.event_id, folder, error)

    def submit(self, events: Sequence[Event], *, wait: bool = False) -> Future[None] | None:
        """Spool and queue events; with `wait`, a future that completes when their group commit lands."""
        waiter: Future[None] | None = Future() if wait else None
        with self._lock:
            if self._current is None:
                path = self._spool / f"{time.time_ns()}.jsonl"
                self._current = _Segment(path, path.open("a", encoding="utf-8"))
            segment = self._current
            segment.handle.write("".join(event.canonical + "\n" for event in events))
            segment.handle.flush()  # in the OS's hands: survives a crash of this process
            segment.events.extend(events)
            if waiter is not None:
                segment.waiters.append(waiter)
            if waiter is not None or len(segment.events) >= MAX_BATCH_EVENTS:
                self._wake.set()  # someone waits for the commit: start it now; later arrivals share the next
        return waiter

    @property
    def queued(self) -> int:
        with self._lock:
            current = len(self._current.events) if self._current else 0
            return current + sum(len(s.events) for s in self._pending)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if not self._commit_queued():
                self._stop.wait(RETRY_SECONDS)
        self._commit_queued()

    def _commit_queued(self) -> bool:
        """Commit everything queued as one ingest; False when it failed (the spool keeps it for a retry)."""
        with self._lock:
            if self._current is not None:
                self._current.handle.close()
                self._pending.append(self._current)
                self._current = None
            segments = list(self._pending)
        if not segments:
            return True
        events = [event for segment in segments for event in segment.events]
        try:
            refused = self._ingest_isolating(events)
        except Exception as error:  # the thread must live on: the spool keeps the events for a retry
            log.error("could not commit %d lineage event(s), will retry: %s", len(events), error)
            failure = error if isinstance(error, MetalakeError) else LineageError(f"commit failed: {error}")
            for segment in segments:
                for waiter in segment.waiters:
                    waiter.set_exception(failure)
                segment.waiters.clear()
            return False
        with self._lock:
            self._pending = [s for s in self._pending if s not in segments]
        for segment in segments:
            segment.path.unlink(missing_ok=True)
            dead = [e.event_id for e in segment.events if e.event_id in refused]
            for waiter in segment.waiters:
                if (
                    dead
                ):  # the segment's requests are not told apart: each may resend (stored events are kept once)
                    waiter.set_exception(
                        LineageError(
                            f"event(s) {', '.join(dead)} could not be ingested and were moved to "
                            f"{self._spool / DEAD_LETTER_DIR}; the other events were committed."
                        )
                    )
                else:
                    waiter.set_result(None)
        self.committed_events += len(events) - len(refused)
        self.commits += 1
        return True

    def stop(self) -> None:
        """Commit what is queued and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None
