"""The heartbeat timer: a run in a long silent step (an evaluation, a checkpoint) still says it is alive.

Every flush records a heartbeat; this thread records one for each open run of the process that has not flushed
for HEARTBEAT_SECONDS, so `runs_current` shows `lost` only for runs whose process stopped, whatever the run logs.
The thread is a daemon started with the first run and holds the runs weakly: it never keeps a process alive.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metalake.tracking.run import Run

HEARTBEAT_SECONDS = 60.0

_RUNS: weakref.WeakSet[Run] = weakref.WeakSet()
_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None


def keep_alive(run: Run) -> None:
    """Have the timer beat for the run while it is open (the timer thread starts with the first run)."""
    global _THREAD
    with _LOCK:
        _RUNS.add(run)
        if _THREAD is None or not _THREAD.is_alive():
            _THREAD = threading.Thread(target=_beat_forever, name="metalake-heartbeat", daemon=True)
            _THREAD.start()


def _beat_forever() -> None:
    wake = threading.Event()
    while True:
        wake.wait(HEARTBEAT_SECONDS / 4)
        with _LOCK:
            runs = list(_RUNS)
        for run in runs:
            if run.ended:
                with _LOCK:
                    _RUNS.discard(run)
            elif run.seconds_since_flush >= HEARTBEAT_SECONDS:
                try:
                    run.beat()
                except Exception:  # a heartbeat is best effort: the run's own flushes report storage trouble
                    continue
