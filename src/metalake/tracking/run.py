"""A training run in this process: buffered facts, flushed to the journal and the commit queue, heartbeats."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from metalake.core.values import storable_text
from metalake.core.vocabulary import FINAL_RUN_STATUSES, RunStatus
from metalake.errors import JournalFull, RunError
from metalake.tracking.batches import EPOCH, ONE_MICROSECOND, MetricBuffer, key_values, metric_table
from metalake.tracking.call_checks import MetricPointChecks, check_call
from metalake.tracking.group_commit import METRICS_TABLE, RUNS_TABLE, QueuedFlush, queue_for
from metalake.tracking.journal import journal_for
from metalake.tracking.run_context import run_context

if TYPE_CHECKING:
    from metalake.core.tables import Tables
    from metalake.datasets.datasets import Datasets

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
        given = {str(key): as_text(value) for key, value in params.items()}
        check_call(self._tables, "params", "log_params", [{"key": k, "value": v} for k, v in given.items()])
        for key, value in given.items():
            self._params.setdefault(key, value)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (text); checked against the `run_tags` contract at the call, as `log_params` is."""
        self._check_open()
        given = {str(key): as_text(value) for key, value in tags.items()}
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


def as_text(value: Any) -> str:
    """Params and tags are text, as in MLflow: other values are stored as their `str`."""
    return value if isinstance(value, str) else str(value)
