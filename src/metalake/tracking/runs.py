"""Experiment tracking: `lake.runs.start(...)` buffers a training job's facts and flushes them in few commits."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.core.values import storable_text
from metalake.core.vocabulary import FINAL_RUN_STATUSES, RunStatus
from metalake.errors import AmbiguousRunId, ExperimentNotFound, JournalFull, RunError, RunNotFound
from metalake.tracking.batches import EPOCH, ONE_MICROSECOND, MetricBuffer, key_values, metric_table
from metalake.tracking.call_checks import MetricPointChecks, check_call
from metalake.tracking.group_commit import METRICS_TABLE, RUNS_TABLE, FlushQueue, QueuedFlush, queue_for
from metalake.tracking.heartbeat import keep_alive
from metalake.tracking.journal import journal_for, journal_root
from metalake.tracking.run_context import run_context
from metalake.tracking.search import RunDetails, TableCache, current_state, latest_values, without_run_id
from metalake.tracking.summaries import combine_summaries

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables
    from metalake.datasets.datasets import Datasets
    from metalake.tracking.sync import SyncReport

DEFAULT_FLUSH_POINTS = 50_000
DEFAULT_FLUSH_SECONDS = 30.0


class Run:
    """One training run: buffers params, tags, metrics, inputs and artifacts, and flushes them in batches.

    A flush hands the run's new facts and events to the lake's group-commit queue (metalake.tracking.group_commit),
    which commits many runs' flushes together: facts first, run events last, each flush under its own
    idempotency keys, so a retried flush never duplicates rows.
    """

    def __init__(
        self,
        tables: Tables,
        datasets: Datasets,
        run_id: str,
        *,
        experiment: str,
        name: str | None,
        parent_run_id: str | None,
        start_time: datetime,
        flush_every_points: int,
        flush_every_seconds: float,
        started: bool,
        wait: bool = False,
        offline: bool = False,
    ):
        self._tables = tables
        self._datasets = datasets
        self.run_id = run_id
        self.experiment = experiment
        self.name = name
        self.parent_run_id = parent_run_id
        self.start_time = start_time
        self.status: RunStatus = "running"
        self.flush_every_points = flush_every_points
        self.flush_every_seconds = flush_every_seconds
        self._start_recorded = started
        # Flush ids (and so idempotency keys) are unique to this Run object: a retried flush reuses its id.
        self._session = uuid.uuid4().hex[:8]
        self._flush_sequence = 0
        self._last_flush = time.monotonic()
        self._flush_lock = threading.RLock()
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._inputs: list[dict[str, Any]] = []
        self._artifacts: list[dict[str, Any]] = []
        self._metrics = MetricBuffer()
        self._metric_checks: MetricPointChecks | None = None
        self.wait_for_commits = wait
        self.offline = offline
        self._queued: list[QueuedFlush] = []
        self._ended = False

    @property
    def queued_flushes(self) -> list[QueuedFlush]:
        """This run's flushes handed to the commit queue and not yet known to be committed, oldest first."""
        return list(self._queued)

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, experiment={self.experiment!r}, name={self.name!r}, status={self.status!r})"

    # -- logging --------------------------------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record hyper-parameters (stored as text, like MLflow); a key keeps its first value within a run.

        Keys and values are checked against the `params` contract here, so a bad one raises ContractError at
        this call and nothing of the call is kept; what the run logged before is kept.
        """
        self._check_open()
        given = {str(key): _as_text(value) for key, value in params.items()}
        check_call(self._tables, "params", "log_params", [{"key": k, "value": v} for k, v in given.items()])
        for key, value in given.items():
            self._params.setdefault(key, value)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (text); checked against the `run_tags` contract at the call, as `log_params` is."""
        self._check_open()
        given = {str(key): _as_text(value) for key, value in tags.items()}
        check_call(self._tables, "run_tags", "set_tags", [{"key": k, "value": v} for k, v in given.items()])
        self._tags.update(given)

    def log_metric(self, key: str, value: float, step: int = 0, *, timestamp: datetime | None = None) -> None:
        self.log_metrics({key: value}, step, timestamp=timestamp)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int = 0, *, timestamp: datetime | None = None
    ) -> None:
        """Buffer metric points at one step; flushed in batches (see `Runs.start`).

        Each key, value, step and timestamp is checked against the `metrics` contract at the call (a key of
        1 to 250 printable characters, a real number, a whole step in 0..2**63-1): a bad one raises
        ContractError here, none of the call's points are kept, and the run's earlier facts stay as they were.
        """
        self._check_open()
        if self._metric_checks is None:
            self._metric_checks = MetricPointChecks(self._tables, METRICS_TABLE)
        points, whole_step, moment = self._metric_checks.points(metrics, step, timestamp)
        micros = (moment - EPOCH) // ONE_MICROSECOND
        for key, value in points:
            self._metrics.add(key, value, whole_step, micros)
        self._maybe_flush()

    def log_input(
        self,
        dataset: str,
        *,
        version: int | None = None,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        digest: str | None = None,
    ) -> None:
        """Link the run to a dataset version it read.

        With `path` and no `version`, the data at `path` is registered as a version of `dataset` on the fly
        (`lake.datasets.register`; identical content reuses its version) and the link carries its number and
        fingerprint. With neither, the dataset's latest registered version is linked, if there is one (else the
        link has no version). `version=N` must be a registered version of `dataset` (the link then carries its
        fingerprint too): an unknown one raises DatasetNotFound listing the dataset's versions, as a link to
        data the lake does not know is no lineage.
        """
        self._check_open()
        path = os.fspath(path) if path is not None else None
        row = {"dataset": dataset, "version": version, "path": path, "context": context, "digest": digest}
        check_call(self._tables, "run_inputs", "log_input", [row])
        if version is not None:
            registered = self._datasets.get(dataset, version)  # DatasetNotFound lists the known versions
            version, digest = registered.version, digest or registered.fingerprint
        elif path is not None or dataset in self._registered_datasets():
            found = self._datasets.resolve_input(dataset, path=path)
            version, digest = found.version, digest or found.fingerprint
        self._inputs.append(
            {"dataset": dataset, "version": version, "path": path, "context": context, "digest": digest}
        )

    def _registered_datasets(self) -> set[str]:
        return set(self._datasets.names())

    def log_artifact(
        self, path: str | os.PathLike[str], *, name: str | None = None, kind: str | None = None
    ) -> None:
        """Record a reference to a file the run produced: its URI, size and SHA-256 (the file stays where it is)."""
        self._check_open()
        file = Path(path)
        check_call(self._tables, "artifacts", "log_artifact", [{"name": name or file.name, "kind": kind}])
        if not file.is_file():
            raise RunError(f"Artifact {str(path)!r} is not a file; log_artifact records existing files.")
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        self._artifacts.append(
            {
                "name": name or file.name,
                "uri": file.resolve().as_uri(),
                "size_bytes": file.stat().st_size,
                "sha256": digest.hexdigest(),
                "kind": kind,
            }
        )

    # -- flushing and ending --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise RunError(f"Run {self.run_id} has ended ({self.status}); start or resume a run to log more.")

    def _maybe_flush(self) -> None:
        if len(self._metrics) >= self.flush_every_points or (
            time.monotonic() - self._last_flush >= self.flush_every_seconds
        ):
            self._write(final_status=None, error=None, wait=self.wait_for_commits)

    def flush(self) -> None:
        """Commit what is buffered now (one commit per table, with other runs' flushes) and wait for it and for
        every earlier flush of this run, whatever the buffer holds."""
        self._write(final_status=None, error=None, wait=True)

    def end(self, status: RunStatus = "finished", *, error: BaseException | None = None) -> None:
        """Flush the last facts, then record the final status (and the error, if any) with the end time.

        The commit happens in the background unless the run was started with `wait=True`; `run.wait()`,
        `lake.runs.wait()`, any read of this lake in this process, and the interpreter's exit wait for it.
        """
        if status not in FINAL_RUN_STATUSES:
            raise RunError(f"A run ends as one of {sorted(FINAL_RUN_STATUSES)}, not {status!r}.")
        if self._ended:
            return
        self._write(final_status=status, error=error, wait=self.wait_for_commits)
        self.status = status
        self._ended = True

    def wait(self) -> None:
        """Wait until this run's flushes are committed; raises FlushError if one could not be (a flush kept in
        the local journal is committed later, by this process, the next connect or `metalake sync`)."""
        self._wait(journaled_ok=False)

    def _wait(self, *, journaled_ok: bool) -> None:
        queue_for(self._tables).wait(self._queued, journaled_ok=journaled_ok)
        self._queued = [flush for flush in self._queued if flush.state != "committed"]

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.end("finished")
        elif issubclass(kind, KeyboardInterrupt):
            self.end("killed", error=error)
        else:
            self.end("failed", error=error)

    def beat(self) -> None:
        """Record a heartbeat alone (no buffered fact is taken): the timer's, for a run in a long silent step."""
        if not self._ended and not self.offline:
            self._write(final_status=None, error=None, wait=False, facts=False)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def seconds_since_flush(self) -> float:
        return time.monotonic() - self._last_flush

    def _write(
        self, *, final_status: RunStatus | None, error: BaseException | None, wait: bool, facts: bool = True
    ) -> None:
        with self._flush_lock:  # the heartbeat timer may flush from its thread
            self._flush_sequence += 1
            flush_id = f"{self.run_id}:{self._session}:{self._flush_sequence}"
            tables, points = self._fact_batches() if facts else ({}, 0)
            events = self._run_events(final_status, error, flush_id)
            self._last_flush = time.monotonic()
            if events:
                tables[RUNS_TABLE] = events
                self._start_recorded = True
            if tables:
                self._hand_over(QueuedFlush(flush_id, self.run_id, tables, points))
        if wait:
            # The facts are safe once committed or kept in the journal: storage trouble does not stop training.
            self._wait(journaled_ok=True)

    def _hand_over(self, flush: QueuedFlush) -> None:
        """Journal the flush (its acknowledgement), then queue it for commit, unless the run is offline."""
        journal = journal_for(self._tables.location.uri)
        try:
            if journal is not None:
                journal.record(flush)
        except JournalFull:
            if not self.offline:  # the lake may still take it: queued unjournaled, then the run is told
                queue_for(self._tables).submit(flush)
            raise
        if self.offline:
            return
        queue_for(self._tables).submit(flush)
        self._queued = [queued for queued in self._queued if queued.state != "committed"] + [flush]

    def _fact_batches(self) -> tuple[dict[str, Any], int]:
        """The buffered facts by table (emptying the buffers), and how many metric points they hold."""
        batches: dict[str, Any] = {}
        if self._params:
            batches["params"] = key_values(self.run_id, self._params)
            self._params = {}
        if self._tags:
            batches["run_tags"] = key_values(self.run_id, self._tags)
            self._tags = {}
        if self._inputs:
            batches["run_inputs"] = [{"run_id": self.run_id, **row} for row in self._inputs]
            self._inputs = []
        if self._artifacts:
            batches["artifacts"] = [{"run_id": self.run_id, **row} for row in self._artifacts]
            self._artifacts = []
        points = len(self._metrics)
        if points:
            batches[METRICS_TABLE] = metric_table(self.run_id, self._metrics.take())
            if self._metric_checks is not None:
                self._metric_checks.buffer_taken()
        return batches, points

    def _run_events(
        self, final_status: RunStatus | None, error: BaseException | None, flush_id: str
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        context = {key: storable_text(v) if isinstance(v, str) else v for key, v in run_context().items()}
        base = {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "name": self.name,
            "start_time": self.start_time,
            "parent_run_id": self.parent_run_id,
            "source": "metalake",
            **context,
        }
        events = []
        if not self._start_recorded:
            events.append(
                {
                    **base,
                    "event_id": f"{flush_id}:running",
                    "status": "running",
                    "event_time": self.start_time,
                }
            )
        elif final_status is None:  # the heartbeat: runs_current shows a run lost once they stop coming
            events.append(
                {**base, "event_id": f"{flush_id}:heartbeat", "status": "running", "event_time": now}
            )
        if final_status is not None:
            events.append(
                {
                    **base,
                    "event_id": f"{flush_id}:{final_status}",
                    "status": final_status,
                    "end_time": now,
                    "event_time": max(now, self.start_time),
                    "error_type": type(error).__name__ if error is not None else None,
                    "error_message": storable_text(str(error)[:2000]) if error is not None else None,
                }
            )
        return events


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _experiments(tables: Tables) -> list[str]:
    rows = tables.sql("select distinct experiment from runs_current order by experiment").fetchall()
    return [row[0] for row in rows]


class Runs:
    """`lake.runs`: start, resume and query training runs."""

    def __init__(self, tables: Tables, *, datasets: Datasets):
        self._tables = tables
        self._datasets = datasets
        self._cache: TableCache | None = None

    @property
    def flush_queue(self) -> FlushQueue:
        """The lake's commit queue for run flushes (`holding()` groups what is flushed meanwhile)."""
        return queue_for(self._tables)

    @property
    def table_cache(self) -> TableCache:
        """The wide run table and per-table versions, rebuilt only when the tables behind them change."""
        if self._cache is None:
            self._cache = TableCache(self._tables)
        return self._cache

    def start(
        self,
        experiment: str,
        name: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        flush_every_points: int = DEFAULT_FLUSH_POINTS,
        flush_every_seconds: float = DEFAULT_FLUSH_SECONDS,
        wait: bool = False,
        offline: bool | None = None,
    ) -> Run:
        """Start a run; use it as a context manager so that its status is recorded however the block ends.

        Facts are buffered and flushed every `flush_every_points` metric points or `flush_every_seconds`
        seconds (checked as you log), and at the end. The run appears in `runs_current` at its first flush.
        Each flush is first written to the local journal (`METALAKE_JOURNAL`), so a killed process loses
        nothing: the next `metalake.connect` to the lake on this machine, or `metalake sync`, commits it.
        Flushes are committed in the background, many runs per Delta commit (group commit); reads of this
        lake in this process, `lake.runs.wait()` and the interpreter's exit wait for them. With `wait=True`,
        each flush and `end()` return only once committed (or, while the storage cannot be reached, kept in
        the journal: a warning says so once), and raise there if a contract refuses the flush.

        `offline=True` (the default on a lake opened offline) keeps every flush in the journal only, touching
        no storage; `metalake sync` commits the run later.
        """
        offline = self._tables.offline if offline is None else offline
        if offline and journal_root() is None:
            raise RunError(
                "An offline run keeps its flushes in the local journal, which METALAKE_JOURNAL=off turns off: "
                "unset it, or set it to a folder."
            )
        if not experiment:
            raise RunError("A run needs an experiment name, e.g. lake.runs.start(experiment='churn').")
        if flush_every_points < 1 or flush_every_seconds <= 0:
            raise RunError("flush_every_points must be >= 1 and flush_every_seconds > 0.")
        described = {"experiment": experiment, "name": name, "parent_run_id": parent_run_id}
        given_id = {"run_id": run_id} if run_id is not None else {}
        check_call(
            self._tables, RUNS_TABLE, "start", [{**described, **given_id}], outcome="No run was started."
        )
        given_tags = [{"key": str(key), "value": _as_text(value)} for key, value in (tags or {}).items()]
        check_call(self._tables, "run_tags", "start", given_tags, outcome="No run was started.")
        run = Run(
            self._tables,
            self._datasets,
            run_id or new_id(),
            experiment=experiment,
            name=name,
            parent_run_id=parent_run_id,
            start_time=datetime.now(UTC),
            flush_every_points=flush_every_points,
            flush_every_seconds=flush_every_seconds,
            started=False,
            wait=wait,
            offline=offline,
        )
        if tags:
            run.set_tags(tags)
        if not offline:
            keep_alive(run)
        return run

    def resume(
        self,
        run_id: str,
        *,
        flush_every_points: int = DEFAULT_FLUSH_POINTS,
        flush_every_seconds: float = DEFAULT_FLUSH_SECONDS,
        wait: bool = False,
    ) -> Run:
        """Continue logging into an existing run (e.g. a job restarted from a checkpoint); a unique prefix of
        its id is enough."""
        query = "select experiment, name, parent_run_id, start_time from runs_current where run_id = ?"
        current = self._tables.sql(query, [run_id]).fetchall()
        if not current:  # not a whole id: a prefix, else RunNotFound
            run_id = self.resolve_id(run_id)
            current = self._tables.sql(query, [run_id]).fetchall()
        if not current:
            raise RunNotFound(run_id)
        experiment, name, parent_run_id, start_time = current[0]
        resumed = Run(
            self._tables,
            self._datasets,
            run_id,
            experiment=experiment,
            name=name,
            parent_run_id=parent_run_id,
            start_time=start_time,
            flush_every_points=flush_every_points,
            flush_every_seconds=flush_every_seconds,
            started=True,
            wait=wait,
        )
        keep_alive(resumed)
        return resumed

    def archive(self, run_ids: str | list[str], *, reason: str = "archived") -> None:
        """Mark runs archived: `metalake maintain --metric-history-days N` may then drop their raw points.

        Runs behind a model version that is not archived keep their points whatever this says.
        """
        from metalake.tracking.retention import ARCHIVED_TAG

        ids = [self.resolve_id(run_id) for run_id in ([run_ids] if isinstance(run_ids, str) else run_ids)]
        rows = [{"run_id": run_id, "key": ARCHIVED_TAG, "value": reason} for run_id in ids]
        self._tables.append("run_tags", rows, operation="archive_runs", reason=reason)

    def sync(self) -> SyncReport:
        """Commit what processes that ended (killed, or offline) left in the local journal for this lake.

        `metalake.connect` does it too; this is `metalake sync`. Flushes keep their idempotency keys, so a
        flush committed before its process died is not written twice. Segments of live processes are left.
        """
        from metalake.tracking.sync import sync

        return sync(self._tables)

    def wait(self) -> None:
        """Wait until every run flush queued in this lake is committed.

        Raises FlushError naming the runs whose flushes could not be committed (after retries), including
        failures of earlier flushes that nobody waited for.
        """
        queue_for(self._tables).wait()

    def search(
        self,
        experiment: str | None = None,
        where: str | None = None,
        order_by: str | list[str] | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """Runs as a polars DataFrame: one row per run, `params.K`, `tags.K` and `metrics.K` (last value) columns.

        `where` is an MLflow-style filter: `params.depth = '6' and metrics.val_auc > 0.8`, with OR, NOT,
        parentheses, IN (...), BETWEEN x AND y, IS [NOT] NULL, LIKE, and a metric's range as `metrics.loss.min`,
        `.max`, `.mean`, `.count` (a logged metric named `loss.min` wins; metrics.`loss`.min is always the minimum
        of `loss`, metrics.`loss.min` always the metric). `order_by` is e.g. `"metrics.val_auc desc"` (or a list
        of such). Newest runs come first by default. Unknown names and unreadable expressions raise QueryError
        with a caret under the mistake, saying what is known.
        """
        from metalake.tracking.search import search_runs

        found = search_runs(
            self.table_cache, experiment=experiment, where=where, order_by=order_by, limit=limit
        )
        if experiment and found.is_empty():  # a typo answers "did you mean", a known name an empty frame
            known = self.experiments()
            if self._tables.is_unknown_name(experiment, known, _experiments):
                raise ExperimentNotFound(experiment, known)
        return found

    def experiments(self) -> list[str]:
        """The names of the experiments that runs were logged under (by this lake's moment), sorted."""
        return _experiments(self._tables)

    def resolve_id(self, run_id: str) -> str:
        """The whole id of the run that `run_id` names: the id itself, or a prefix that only one run's id has.

        As git does for commits: `lake.runs.get("01a237cf1d27")` finds the run whose id starts so. Raises
        RunNotFound when no run matches and AmbiguousRunId (listing the candidates) when several do.
        """
        ids = self.table_cache.run_ids()
        if run_id in ids:
            return run_id
        candidates = [known for known in ids if run_id and known.startswith(run_id)]
        if len(candidates) > 1:
            raise AmbiguousRunId(run_id, candidates)
        if not candidates:
            raise RunNotFound(run_id)
        return candidates[0]

    def get(self, run_id: str) -> RunDetails:
        """One run: its state and context, params, tags, metric summaries, inputs and artifacts.

        `run_id` may be any unique prefix of the id. Reads from in-memory copies of the run tables, indexed by
        run and reloaded only when a table has new commits, so repeated look-ups in a warm process cost about a
        millisecond.
        """
        cache = self.table_cache
        run_id = self.resolve_id(run_id)
        events = cache.rows("runs", run_id)
        return RunDetails(
            run_id=run_id,
            info=current_state(
                events, lost_before=self._tables.clock() - timedelta(seconds=self._tables.lost_after_s)
            ),
            params=latest_values(cache.rows("params", run_id)),
            tags=latest_values(cache.rows("run_tags", run_id)),
            metrics=combine_summaries(cache.rows("metric_summaries", run_id)),
            inputs=[without_run_id(row) for row in cache.rows("run_inputs", run_id)],
            artifacts=[without_run_id(row) for row in cache.rows("artifacts", run_id)],
        )

    def metric_history(self, run_ids: str | list[str], key: str) -> pl.DataFrame:
        """Every point of one metric for some runs: run_id, step, timestamp, value (ordered by run, step).

        An id with no point of the metric may be a unique prefix of a run's id: it is looked up, and the
        points of that run are returned. An id that names no run at all gives no rows (points may be ingested
        without a run record).
        """
        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        if not ids:
            raise RunError("metric_history needs at least one run id.")
        history = self._points(ids, key)
        missing = set(ids) - set(history.get_column("run_id").to_list())
        whole = {run_id: self._whole_id_or_itself(run_id) for run_id in missing}
        if any(found != run_id for run_id, found in whole.items()):
            history = self._points([whole.get(run_id, run_id) for run_id in ids], key)
        return history

    def _points(self, ids: list[str], key: str) -> pl.DataFrame:
        placeholders = ", ".join("?" for _ in ids)  # an IN list lets DuckDB skip row groups by run_id
        history: pl.DataFrame = self._tables.sql(
            f'select run_id, step, "timestamp", "value" from metrics where "key" = ? and run_id in ({placeholders}) '
            'order by run_id, step, "timestamp"',
            [key, *ids],
        ).pl()
        return history

    def _whole_id_or_itself(self, run_id: str) -> str:
        try:
            return self.resolve_id(run_id)
        except RunNotFound:
            return run_id
