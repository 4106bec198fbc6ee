"""Group commit for run flushes: training code queues them, a background thread commits many runs at once.

A Delta commit costs milliseconds whatever its size, so a sweep that logs hundreds of short runs spends its
time committing. Here each run's flush (its facts by table, then its run events) is queued; one thread per
lake takes everything queued, checks each table's rows against its contract in one pass, and commits one
Delta commit per table for the whole group: facts first, run events last, so a reader never sees a run
finished before its facts. Each flush keeps its own idempotency key per table (Delta app transactions), so a
retried group never writes a flush twice. Reads through any Lake of the same location in this process wait
for the queue first (read-your-writes), and the queue is drained at interpreter exit.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from metalake.core.pending import register_pending_writes
from metalake.errors import ContractError, FlushError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from metalake.core.tables import Tables
    from metalake.tracking.journal import Journal

RUNS_TABLE = "runs"
METRICS_TABLE = "metrics"
SUMMARIES_TABLE = "metric_summaries"
MAX_QUEUED_POINTS = 200_000  # a producer that outpaces the committer waits beyond this many queued points
COMMIT_ATTEMPTS = 4
IDLE_SECONDS = 2.0  # the committer thread ends after this long with nothing to do (restarted on demand)


FlushState = Literal["queued", "committed", "refused", "parked"]


@dataclass(eq=False)
class QueuedFlush:
    """One flush of one run: rows by table (run events under "runs"), committed with other runs' flushes.

    States: queued (waiting or being committed), committed, refused (a contract refused it, or an earlier flush
    of its run was refused: for good), parked (storage trouble: queued again, same keys, at the next submit or
    wait). `done` is set whenever the flush leaves the queued state.
    """

    flush_id: str
    run_id: str
    tables: dict[str, Any]
    points: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    state: FlushState = "queued"
    error: BaseException | None = None
    attempts: int = 0
    journal: Journal | None = None  # the local journal holding it until it is committed
    queued_at: float = field(default_factory=time.monotonic)

    def key(self, table: str) -> str:
        return f"{self.flush_id}:{table}"


class FlushQueue:
    """The flushes waiting for one lake's committer thread.

    A run's flushes commit in the order they were made: once one of them is parked, the later ones wait behind
    it, and once one is refused, the later ones are refused too (so no reader sees a run finished without its
    earlier facts).
    """

    def __init__(self, tables: Tables):
        self.tables = tables
        self._queue: deque[QueuedFlush] = deque()
        self._in_flight: list[QueuedFlush] = []
        self._queued_points = 0
        self._changed = threading.Condition()
        self._unreported: list[QueuedFlush] = []
        self._parked: list[QueuedFlush] = []
        self._refused_runs: dict[str, BaseException] = {}
        self._worker: threading.Thread | None = None
        self._warned_unreachable = False
        self._hurry = 0

    def submit(self, flush: QueuedFlush) -> None:
        """Queue a flush (parked ones first); waits only while more than MAX_QUEUED_POINTS points are queued."""
        with self._changed:
            while self._queue and self._queued_points + flush.points > MAX_QUEUED_POINTS:
                self._changed.wait()
            self._enqueue([*self._requeue_parked(), flush])

    def _requeue_parked(self) -> list[QueuedFlush]:
        parked, self._parked = self._parked, []
        self._unreported = [flush for flush in self._unreported if flush not in parked]
        for flush in parked:
            flush.state, flush.error = "queued", None
            flush.done = threading.Event()
        return parked

    def _enqueue(self, flushes: list[QueuedFlush]) -> None:
        if not flushes:
            return
        self._queue.extend(flushes)
        self._queued_points += sum(flush.points for flush in flushes)
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="metalake-group-commit", daemon=True)
            self._worker.start()
        self._changed.notify_all()

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._in_flight or self._parked)

    @property
    def pending(self) -> int:
        """Flushes answered (journaled) but not yet committed: other processes do not see them yet."""
        with self._changed:
            return len(self._queue) + len(self._in_flight) + len(self._parked)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the committer while the block runs, so that every flush made in it lands in one group commit."""
        with self._changed:
            yield

    def settle(self, *, retry_parked: bool = False) -> list[QueuedFlush]:
        """Wait until everything queued so far is committed, refused or parked; returns what was waited for."""
        with self._changed:
            if retry_parked:
                self._enqueue(self._requeue_parked())
            waiting = [*self._in_flight, *self._queue]
        with self._hurrying():
            for flush in waiting:
                self._settled(flush)
        return waiting

    @contextmanager
    def _hurrying(self) -> Iterator[None]:
        """While someone waits for flushes, the committer does not gather (see `_gather`)."""
        with self._changed:
            self._hurry += 1
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._hurry -= 1

    def _settled(self, flush: QueuedFlush) -> FlushState:
        """Wait until the flush leaves the queued state (it may be queued again by another thread meanwhile)."""
        while True:
            flush.done.wait()
            with self._changed:
                if flush.state != "queued":
                    return flush.state

    def wait(self, flushes: Sequence[QueuedFlush] | None = None, *, journaled_ok: bool = False) -> None:
        """Retry parked flushes, wait for some flushes (default: all), and raise FlushError if any of them (or,
        by default, any earlier flush nobody waited for) is not committed.

        `journaled_ok`: a flush parked for storage trouble but kept in the local journal counts as safe (it is
        committed later, by this process or by a replay), so a training loop's `flush()` does not raise.
        """
        if flushes is None:
            self.settle(retry_parked=True)
            with self._changed:
                failed = [flush for flush in self._unreported if flush.state != "committed"]
                self._unreported = []
        else:
            with self._changed:
                self._enqueue(self._requeue_parked())
            with self._hurrying():
                failed = [
                    flush
                    for flush in flushes
                    if self._settled(flush) != "committed"
                    and not (journaled_ok and flush.state == "parked" and flush.journal is not None)
                ]
            with self._changed:
                self._unreported = [flush for flush in self._unreported if flush not in failed]
        if failed:
            raise _flush_error(failed)

    # -- the committer thread -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._changed:
                if not self._queue:
                    self._changed.wait(IDLE_SECONDS)
                    if not self._queue:
                        self._worker = None
                        _forget_if_idle(self)
                        return
                self._gather()
                group = list(self._queue)
                self._queue.clear()
                self._in_flight = group
                parked_runs = {flush.run_id for flush in self._parked}
                refused_runs = dict(self._refused_runs)
            for flush in group:  # a run's later flushes never overtake an earlier one that did not commit
                if flush.run_id in refused_runs:
                    flush.error = _earlier_refused(flush, refused_runs[flush.run_id])
                elif flush.run_id in parked_runs:
                    flush.error = FlushError(
                        f"an earlier flush of run {flush.run_id} is waiting to be retried"
                    )
            self._commit_with_retries([flush for flush in group if flush.error is None])
            with self._changed:
                self._queued_points -= sum(flush.points for flush in group)
                self._in_flight = []
                for flush in group:
                    self._settle_state(flush)
                self._changed.notify_all()
            for flush in group:
                if flush.journal is not None and flush.state != "parked":
                    flush.journal.settled(flush)
                flush.done.set()

    def _gather(self) -> None:
        """With a commit window (a server's lake), let journaled flushes wait for company: fewer, bigger group
        commits leave the CPU to the requests. Nobody waits for a journaled flush (it is durable already), and a
        reader or a committed write that does cuts the wait short (`_hurrying`, or an unjournaled flush)."""
        window = self.tables.commit_window_s
        while window > 0 and not self._hurry and self._queued_points < MAX_QUEUED_POINTS // 4:
            if any(flush.journal is None for flush in self._queue):
                return
            left = self._queue[0].queued_at + window - time.monotonic()
            if left <= 0:
                return
            self._changed.wait(left)

    def _settle_state(self, flush: QueuedFlush) -> None:
        """Committed, refused (for good: a contract, or an earlier refused flush of the run) or parked."""
        if flush.error is None:
            flush.state = "committed"
            return
        self._unreported.append(flush)
        if isinstance(flush.error, ContractError) or flush.run_id in self._refused_runs:
            flush.state = "refused"
            self._refused_runs.setdefault(flush.run_id, flush.error)
        else:
            flush.state = "parked"
            self._parked.append(flush)
            if flush.journal is not None and not self._warned_unreachable:
                self._warned_unreachable = True
                _warn_unreachable(self.tables.location.uri, flush)

    def _commit_with_retries(self, group: list[QueuedFlush]) -> None:
        """The group, retried; if it keeps failing, each flush once on its own, so one bad flush fails alone."""
        error = self._attempt(group, COMMIT_ATTEMPTS)
        if error is None:
            return
        failed_runs: dict[str, BaseException] = {}
        for flush in group:
            if flush.error is None and flush.run_id in failed_runs:
                flush.error = FlushError(f"an earlier flush of run {flush.run_id} was not committed")
            elif flush.error is None:
                alone = self._attempt([flush], 1) if len(group) > 1 else error
                flush.error = alone
            if flush.error is not None:
                failed_runs.setdefault(flush.run_id, flush.error)

    def _attempt(self, group: list[QueuedFlush], attempts: int) -> Exception | None:
        """Commit the group's flushes (those not refused yet); returns the last error if every attempt failed."""
        for attempt in range(attempts):
            try:
                self._commit_group([flush for flush in group if flush.error is None])
                return None
            except Exception as error:  # storage trouble: the whole group again, keys make it safe
                for flush in group:
                    flush.attempts += 1
                if attempt == attempts - 1:
                    return error
                time.sleep(0.1 * 2**attempt)
        return None

    def _commit_group(self, group: list[QueuedFlush]) -> None:
        """Contracts for every table first (a refused flush drops out whole, with its run's later flushes),
        then facts side by side, then run events."""
        _columns_to_arrow(group)
        _add_metric_summaries(group)
        tables = sorted({table for flush in group for table in flush.tables} - {RUNS_TABLE})
        prepared: dict[str, dict[QueuedFlush, pa.Table]] = {}
        for table in [*tables, RUNS_TABLE]:
            prepared[table] = self._prepare(table, [flush for flush in group if table in flush.tables])
        refused: dict[str, BaseException] = {}
        for flush in group:
            if flush.error is None and flush.run_id in refused:
                flush.error = _earlier_refused(flush, refused[flush.run_id])
            if flush.error is not None:
                refused.setdefault(flush.run_id, flush.error)
        live = [flush for flush in group if flush.error is None]
        may_exist = any(flush.attempts for flush in live)

        def commit(table: str) -> None:
            parts = [(flush.key(table), prepared[table][flush]) for flush in live if flush in prepared[table]]
            if parts:
                self.tables.commit(table, parts, operation="log_run", keys_may_exist=may_exist)

        _each_side_by_side(commit, tables)
        commit(RUNS_TABLE)

    def _prepare(self, table: str, members: list[QueuedFlush]) -> dict[QueuedFlush, pa.Table]:
        """Every member's rows checked in one pass; on a refusal, member by member to find the culprits."""
        if not members:
            return {}
        try:
            checked = self.tables.prepare(table, _concat([flush.tables[table] for flush in members]))
        except ContractError:
            prepared = {}
            for flush in members:
                try:
                    prepared[flush] = self.tables.prepare(table, flush.tables[table])
                except ContractError as error:
                    flush.error = error
            return prepared
        prepared, offset = {}, 0
        for flush in members:
            size = _row_count(flush.tables[table])
            prepared[flush] = checked.slice(offset, size)
            offset += size
        return prepared


def _columns_to_arrow(group: list[QueuedFlush]) -> None:
    """The runs' buffered columns as Arrow, one conversion per table for the whole group (then sliced)."""
    from metalake.tracking.batches import Columns, columns_to_arrow

    by_table: dict[str, list[QueuedFlush]] = {}
    for flush in group:
        for table, batch in flush.tables.items():
            if isinstance(batch, Columns):
                by_table.setdefault(table, []).append(flush)
    for table, members in by_table.items():
        parts = [flush.tables[table] for flush in members]
        converted, offset = columns_to_arrow(parts), 0
        for flush, part in zip(members, parts, strict=True):
            flush.tables[table] = converted.slice(offset, part.rows)
            offset += part.rows


def _add_metric_summaries(group: list[QueuedFlush]) -> None:
    """Per-flush metric summaries (last, min, max, sum, count per run and key), computed for the group at once."""
    import polars as pl

    from metalake.tracking.summaries import summarize_frame

    members = [f for f in group if METRICS_TABLE in f.tables and SUMMARIES_TABLE not in f.tables]
    if not members:
        return
    points = pl.concat(
        [
            pl.DataFrame(flush.tables[METRICS_TABLE]).with_columns(flush_id=pl.lit(flush.flush_id))
            for flush in members
        ]
    )
    summaries = summarize_frame(points, by=("flush_id", "run_id", "key")).partition_by(
        "flush_id", as_dict=True, maintain_order=True
    )
    for flush in members:
        flush.tables[SUMMARIES_TABLE] = summaries[(flush.flush_id,)].to_arrow()


def _concat(batches: list[Any]) -> Any:
    if all(isinstance(batch, list) for batch in batches):
        return [row for batch in batches for row in batch]
    import pyarrow as pa

    return pa.concat_tables(batches, promote_options="default")


def _row_count(batch: Any) -> int:
    return len(batch) if isinstance(batch, list) else int(batch.num_rows)


@cache
def _table_committers() -> ThreadPoolExecutor:
    """Threads that commit a group's tables side by side (delta-rs releases the GIL while writing)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="metalake-commit")


def _each_side_by_side(action: Callable[[str], None], tables: list[str]) -> None:
    """Run `action` for every table in parallel; every table is tried, then the first error is raised."""
    if len(tables) < 2:
        for table in tables:
            action(table)
        return
    futures = []
    for index, table in enumerate(tables):
        try:
            futures.append(_table_committers().submit(action, table))
        except RuntimeError:  # interpreter shutdown: thread pools take no more work; the rest one by one
            for remaining in tables[index:]:
                action(remaining)
            break
    errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


def _earlier_refused(flush: QueuedFlush, cause: BaseException) -> ContractError | FlushError:
    """The refusal of a run's later flush: the same contract error, so the run stays refused."""
    if isinstance(cause, ContractError):
        return cause
    return FlushError(f"an earlier flush of run {flush.run_id} was refused: {cause}")


def _flush_error(failed: list[QueuedFlush]) -> FlushError:
    runs = sorted({flush.run_id for flush in failed})
    first = next(flush.error for flush in failed if flush.error is not None)
    kept = [flush for flush in failed if flush.state == "parked" and flush.journal is not None]
    safe = (
        f" {len(kept)} of them are kept in the local journal ({kept[0].journal.folder}); the next "
        f"metalake.connect to this lake on this machine, or `metalake sync`, commits them."
        if kept and kept[0].journal is not None
        else ""
    )
    return FlushError(
        f"{len(failed)} flush(es) of run(s) {', '.join(runs[:5])}{' ...' if len(runs) > 5 else ''} were not "
        f"committed: {first}.{safe}"
    )


def _warn_unreachable(uri: str, flush: QueuedFlush) -> None:
    """Said once per lake and process: the training loop goes on, its flushes wait on local disk."""
    import warnings

    from metalake.errors import StorageUnreachableWarning

    assert flush.journal is not None
    warnings.warn(
        f"metalake: cannot commit run flushes to the lake at {uri} ({flush.error}); runs keep logging into the "
        f"local journal ({flush.journal.folder}) and their flushes are retried. If this process ends first, "
        "the next metalake.connect to this lake on this machine, or `metalake sync`, commits them.",
        StorageUnreachableWarning,
        stacklevel=2,
    )


# -- one queue per Lake object, found by location for read-your-writes ---------------------------------------

_QUEUES: dict[int, FlushQueue] = {}
_QUEUES_LOCK = threading.Lock()
_EXIT_HOOKED = False


def queue_for(tables: Tables) -> FlushQueue:
    """The lake's flush queue (created on first use; drained at interpreter exit)."""
    global _EXIT_HOOKED
    with _QUEUES_LOCK:
        queue = _QUEUES.get(id(tables))
        if queue is None or queue.tables is not tables:
            if not _EXIT_HOOKED:
                atexit.register(_drain_at_exit)
                register_pending_writes(settle_location)
                _EXIT_HOOKED = True
            queue = _QUEUES[id(tables)] = FlushQueue(tables)
        return queue


def _forget_if_idle(queue: FlushQueue) -> None:
    """Drop an idle queue with nothing to retry or report, so a Lake that logged runs can be freed."""
    with _QUEUES_LOCK:
        if not queue.busy and not queue._unreported and _QUEUES.get(id(queue.tables)) is queue:
            del _QUEUES[id(queue.tables)]


def release_queue(tables: Tables) -> None:
    """Wait for the lake's queued flushes (raising FlushError on failures) and forget its queue."""
    with _QUEUES_LOCK:
        queue = _QUEUES.get(id(tables))
    if queue is None or queue.tables is not tables:
        return
    try:
        queue.wait()
    finally:
        with _QUEUES_LOCK:
            if not queue.busy and _QUEUES.get(id(tables)) is queue:
                del _QUEUES[id(tables)]


def busy_queues() -> list[FlushQueue]:
    """The flush queues of this process with flushes not yet committed."""
    with _QUEUES_LOCK:
        return [queue for queue in _QUEUES.values() if queue.busy]


def settle_location(uri: str) -> None:
    """Wait for queued flushes to any Lake at `uri` in this process, so a read sees this process's writes."""
    if not _QUEUES:
        return
    with _QUEUES_LOCK:
        busy = [queue for queue in _QUEUES.values() if queue.busy and queue.tables.location.uri == uri]
    for queue in busy:
        queue.settle()


def _drain_at_exit() -> None:
    with _QUEUES_LOCK:
        queues = list(_QUEUES.values())
    for queue in queues:
        try:
            queue.wait()
        except Exception as error:  # at exit, say what was lost rather than fail the interpreter's shutdown
            print(f"metalake: {error}", file=sys.stderr)
