"""The server's access log: every denied request and every write, committed in groups through `lake.access`.

A commit per request would cost more than the request, so entries wait in memory and a background thread hands
them to `lake.access.record` (one commit) every `interval` seconds and at shutdown. Entries of a server killed
between two commits are lost: the log is an audit aid, the lake's own commit records keep every write.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import Request

    from metalake.lake import Lake

log = logging.getLogger("metalake.server")
DEFAULT_INTERVAL = 1.0
MAX_WAITING = 100_000  # entries kept while storage refuses the commits; older ones are dropped beyond this


class AccessLog:
    """Entries waiting for their group commit, and the thread that commits them."""

    def __init__(self, lake: Lake, *, interval: float = DEFAULT_INTERVAL):
        self._lake = lake
        self._interval = interval
        self._lock = threading.Lock()
        self._waiting: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recorded = 0

    def add(
        self,
        principal: str,
        action: str,
        securable: str,
        allowed: bool,
        grant_id: str | None,
        request: Request,
    ) -> None:
        entry = {
            "principal": principal,
            "action": action,
            "securable": securable,
            "decision": "allowed" if allowed else "denied",
            "grant_id": grant_id,
            "method": request.method,
            "path": request.url.path,
            "at": datetime.now(UTC),
        }
        with self._lock:
            self._waiting.append(entry)
            if len(self._waiting) > MAX_WAITING:
                del self._waiting[: len(self._waiting) - MAX_WAITING]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metalake-access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Commit what waits (one commit); on failure the entries wait for the next attempt."""
        with self._lock:
            entries, self._waiting = self._waiting, []
        if not entries:
            return
        try:
            self._lake.access.record(entries)
        except Exception as error:  # storage trouble: keep them for the next round, the requests go on
            log.warning("the access log could not be committed (%s); %d entries wait", error, len(entries))
            with self._lock:
                self._waiting[:0] = entries
            return
        self.recorded += len(entries)
