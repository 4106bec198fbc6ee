"""The read-your-writes seam: writers that queue commits (the tracking group commit) register a settler here,
and every live read waits for this process's queued writes to its lake first. Core never imports them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

PendingWritesSettler = Callable[[str], None]

_SETTLERS: list[PendingWritesSettler] = []
_LOCK = threading.Lock()
# Set while a server answers a read: each write request there waits for its own commit before it answers, so a
# read must not wait for the commits other clients' requests have queued meanwhile.
_SKIPPED: ContextVar[bool] = ContextVar("metalake_settling_skipped", default=False)


def register_pending_writes(settle: PendingWritesSettler) -> None:
    """Have `settle(lake_uri)` called before every live read of a lake; registering twice registers once."""
    with _LOCK:
        if settle not in _SETTLERS:
            _SETTLERS.append(settle)


def settle_pending_writes(uri: str) -> None:
    """Wait for the queued writes of this process to the lake at `uri`, so that a read sees them."""
    if _SKIPPED.get():
        return
    for settle in tuple(_SETTLERS):
        settle(uri)


@contextmanager
def reads_without_waiting_for_queued_writes() -> Iterator[None]:
    """Reads in this block (this thread or task) see what is committed, without waiting for queued writes."""
    token = _SKIPPED.set(True)
    try:
        yield
    finally:
        _SKIPPED.reset(token)
