"""The read-your-writes seam: writers that queue commits (the tracking group commit) register a settler here,
and every live read waits for this process's queued writes to its lake first. Core never imports them."""

from __future__ import annotations

import threading
from collections.abc import Callable

PendingWritesSettler = Callable[[str], None]

_SETTLERS: list[PendingWritesSettler] = []
_LOCK = threading.Lock()


def register_pending_writes(settle: PendingWritesSettler) -> None:
    """Have `settle(lake_uri)` called before every live read of a lake; registering twice registers once."""
    with _LOCK:
        if settle not in _SETTLERS:
            _SETTLERS.append(settle)


def settle_pending_writes(uri: str) -> None:
    """Wait for the queued writes of this process to the lake at `uri`, so that a read sees them."""
    for settle in tuple(_SETTLERS):
        settle(uri)
