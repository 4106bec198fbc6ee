"""Experiment tracking: `lake.runs.start(...)` buffers a training job's facts and flushes them in few commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.errors import AmbiguousRunId, ExperimentNotFound, RunError, RunNotFound
from metalake.tracking.call_checks import check_call
from metalake.tracking.group_commit import RUNS_TABLE, FlushQueue, queue_for
from metalake.tracking.heartbeat import keep_alive
from metalake.tracking.journal import journal_root
from metalake.tracking.run import DEFAULT_FLUSH_POINTS, DEFAULT_FLUSH_SECONDS, Run, as_text
from metalake.tracking.search import RunDetails, TableCache, current_state, latest_values, without_run_id
from metalake.tracking.summaries import combine_summaries

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables
    from metalake.core.vocabulary import RunStatus
    from metalake.datasets.datasets import Datasets
    from metalake.tracking.experiments import Lifecycle
    from metalake.tracking.remote import Durable, MetricPoint
    from metalake.tracking.sync import SyncReport


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
        self._tables.check_writable()  # before the journal: a refused run must leave nothing to replay
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
        given_tags = [{"key": str(key), "value": as_text(value)} for key, value in (tags or {}).items()]
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

    # -- runs logged by requests (REST API, MLflow endpoints): no Run object, each call one committed flush --

    def create(
        self,
        experiment: str,
        name: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        start_time: datetime | None = None,
        user: str | None = None,
        command: str | None = None,
        git_commit: str | None = None,
        idempotency_key: str | None = None,
        durable: Durable = "committed",
    ) -> str:
        """Record a running run for a client that logs by requests; returns its id once committed (or only
        journaled, with `durable="journaled"`: see tracking/remote.py).

        Such runs send no heartbeat, so they are never shown `lost`. With an `idempotency_key`, the run id is
        named by the key: the same request sent again creates nothing new and answers the same id.
        """
        from metalake.tracking.remote import create_run

        return create_run(
            self._tables,
            experiment=experiment,
            name=name,
            tags=tags,
            parent_run_id=parent_run_id,
            start_time=start_time,
            user=user,
            command=command,
            git_commit=git_commit,
            idempotency_key=idempotency_key,
            durable=durable,
        )

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        metrics: Sequence[MetricPoint] = (),
        idempotency_key: str | None = None,
        durable: Durable = "committed",
    ) -> int:
        """Log params, tags and metric points into an existing run in one commit (shared with concurrent
        callers); returns the number of points. A contract refusal raises ContractError and writes nothing."""
        from metalake.tracking.remote import log_batch

        return log_batch(
            self._tables,
            run_id,
            params=params,
            tags=tags,
            metrics=metrics,
            idempotency_key=idempotency_key,
            durable=durable,
        )

    def end(
        self,
        run_id: str,
        status: RunStatus = "finished",
        *,
        end_time: datetime | None = None,
        idempotency_key: str | None = None,
        durable: Durable = "committed",
    ) -> str:
        """Record that a run logged by requests ended (finished, failed or killed)."""
        from metalake.tracking.remote import end_run

        return end_run(
            self._tables,
            run_id,
            status=status,
            end_time=end_time,
            idempotency_key=idempotency_key,
            durable=durable,
        )

    def request_state(self, run_id: str) -> dict[str, Any]:
        """A run's state (experiment, name, status, times, user, deleted) as the request path knows it: read once,
        then kept by this process's writes, so answering a write request waits for no commit."""
        from metalake.tracking.remote import run_state

        state = dict(run_state(self._tables, run_id))
        state.pop("params", None)
        return state

    def rename(self, run_id: str, name: str, *, durable: Durable = "committed") -> None:
        """Give a run another name (a run event; its status and history stay)."""
        from metalake.tracking.remote import update_run

        update_run(self._tables, self.resolve_id(run_id), name=name, durable=durable)

    def delete(self, run_id: str, *, durable: Durable = "committed") -> None:
        """Mark a run deleted: searches leave it out unless asked (`lifecycle=`); nothing is erased."""
        from metalake.tracking.remote import update_run

        update_run(self._tables, self.resolve_id(run_id), deleted=True, durable=durable)

    def restore(self, run_id: str, *, durable: Durable = "committed") -> None:
        """Undo `delete`."""
        from metalake.tracking.remote import update_run

        update_run(self._tables, self.resolve_id(run_id), deleted=False, durable=durable)

    def delete_tag(self, run_id: str, key: str, *, durable: Durable = "committed") -> None:
        """Remove a tag from a run (history keeps it); RunError if the run has no such tag."""
        from metalake.tracking.remote import delete_tag

        delete_tag(self._tables, self.resolve_id(run_id), key, durable=durable)

    def log_inputs(
        self, run_id: str, inputs: Sequence[Mapping[str, Any]], *, durable: Durable = "committed"
    ) -> int:
        """Record datasets a run read, as `run_inputs` rows (dataset, version, path, context, digest)."""
        from metalake.tracking.remote import log_inputs

        return log_inputs(self._tables, self.resolve_id(run_id), inputs, durable=durable)

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
        *,
        lifecycle: Lifecycle = "active",
        experiments: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Runs as a polars DataFrame: one row per run, `params.K`, `tags.K` and `metrics.K` (last value) columns.

        `where` is an MLflow-style filter: `params.depth = '6' and metrics.val_auc > 0.8`, with OR, NOT,
        parentheses, IN (...), BETWEEN x AND y, IS [NOT] NULL, LIKE, and a metric's range as `metrics.loss.min`,
        `.max`, `.mean`, `.count` (a logged metric named `loss.min` wins; metrics.`loss`.min is always the minimum
        of `loss`, metrics.`loss.min` always the metric). `order_by` is e.g. `"metrics.val_auc desc"` (or a list
        of such). Newest runs come first by default. Deleted runs are left out; `lifecycle="deleted"` shows only
        them, `"all"` both. Unknown names and unreadable expressions raise QueryError
        with a caret under the mistake, saying what is known. `experiments` keeps the runs of those experiments
        only, inside the query (the server filters by what a principal may read, before paging). `columns`
        answers those columns only (`["run_id"]` for a page of ids), which saves converting the others.
        """
        from metalake.tracking.search import search_runs

        found = search_runs(
            self.table_cache,
            experiment=experiment,
            where=where,
            order_by=order_by,
            limit=limit,
            lifecycle=lifecycle,
            experiments=experiments,
            columns=columns,
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
        """One run: its state and context, params, tags, metric summaries, inputs, artifacts, model versions.

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
            model_versions=[
                {key: row[key] for key in ("model", "version", "artifact_uri", "recorded_at")}
                for row in sorted(
                    cache.rows("model_versions", run_id), key=lambda row: (row["model"], row["version"])
                )
            ],
        )

    def set_commit_window(self, seconds: float) -> None:
        """Let flushes answered once journaled (`durable="journaled"`) wait up to `seconds` for others before
        their group commit: a server taking one point per request then commits a few times a second, not after
        every request. Reads in this process, and writes that wait for their commit, cut the wait short."""
        if not 0 <= seconds <= 3600:
            raise ValueError(f"A commit window is 0 to 3,600 seconds, not {seconds!r}.")
        self._tables.commit_window_s = float(seconds)

    def get_as_written(self, run_id: str) -> RunDetails:
        """`get`, with this process's journaled writes to the run that are not committed yet laid over what is
        committed: answers at once, where `get` waits for those commits. For servers that answer writes once
        journaled; a metric's count and mean then cover only committed points (see tracking/unconfirmed.py)."""
        from metalake.core.pending import reads_without_waiting_for_queued_writes
        from metalake.tracking.remote import run_state
        from metalake.tracking.unconfirmed import laid_over, masked_change, unconfirmed

        with reads_without_waiting_for_queued_writes():
            changes = unconfirmed(self._tables, run_id) if self._tables.moment is None else []
            if not changes:
                return self.get(run_id)
            if self._tables.masker is not None:
                changes = [masked_change(self._tables.masker, change) for change in changes]
            state = run_state(self._tables, run_id)
            committed = None if changes[0].creates else self._get_committed(run_id)
        if committed is None:  # created by a flush not committed yet: all there is, is in the changes
            info = {key: value for key, value in state.items() if key != "params"}
            committed = RunDetails(run_id, info, {}, {}, {}, [], [])
        return laid_over(committed, changes, state)

    def _get_committed(self, run_id: str) -> RunDetails | None:
        try:
            return self.get(run_id)
        except RunNotFound:
            return None

    def get_many(self, run_ids: Sequence[str]) -> list[RunDetails]:
        """`get` of each run, with each table's freshness checked once for all (a page of search results)."""
        with self.table_cache.pinned():
            return [self.get(run_id) for run_id in run_ids]

    def metric_history(
        self, run_ids: str | list[str], key: str, *, max_points: int | None = None
    ) -> pl.DataFrame:
        """Every point of one metric for some runs: run_id, step, timestamp, value (ordered by run, step).

        An id with no point of the metric may be a unique prefix of a run's id: it is looked up, and the
        points of that run are returned. An id that names no run at all gives no rows (points may be ingested
        without a run record). `max_points` keeps at most that many points per run, each bucket's first, last,
        minimum and maximum (tracking/downsample.py), so spikes stay visible.
        """
        if max_points is not None:
            import polars as pl

            from metalake.tracking.downsample import downsampled_history

            if max_points < 1:
                raise RunError(f"max_points must be a positive number of points, not {max_points}.")
            ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
            parts = [
                downsampled_history(self._tables, self._whole_id_or_itself(i), key, max_points) for i in ids
            ]
            return pl.concat(parts).drop("total_points")
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
