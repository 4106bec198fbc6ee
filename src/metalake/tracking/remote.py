"""Run writes for clients without a live `Run` object: one request starts a run, logs a batch or ends it.

The REST API (and the MLflow-compatible endpoints) call these. Each write is one flush through the lake's commit
queue, so concurrent requests share group commits, and it returns once committed. A client's idempotency key names
the flush (and the run, at creation): a request sent again, even to a restarted server, writes nothing twice,
because the Delta commit of each table carries the flush's key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.core.vocabulary import FINAL_RUN_STATUSES, RunStatus
from metalake.errors import ContractError, MetalakeError, RunError, RunNotFound
from metalake.tracking.batches import EPOCH, ONE_MICROSECOND, MetricBuffer, key_values, metric_table
from metalake.tracking.call_checks import MetricPointChecks, check_call
from metalake.tracking.group_commit import METRICS_TABLE, RUNS_TABLE, QueuedFlush, queue_for

if TYPE_CHECKING:
    from metalake.core.tables import Tables

API_SOURCE = "api"  # runs created over HTTP: no heartbeat is expected from them, so they are never `lost`
REFUSED = "Nothing of this request was written."


@dataclass(frozen=True)
class MetricPoint:
    """One metric value of a batch; `timestamp` defaults to the time of the request."""

    key: str
    value: float
    step: int = 0
    timestamp: datetime | None = None


def run_id_for_key(idempotency_key: str) -> str:
    """The run id a creation under this key gets, the same after a restart (a UUID named by the key)."""
    return uuid.uuid5(_RUN_KEYS, idempotency_key).hex


_RUN_KEYS = uuid.UUID("5d1c3f4e-8a53-4c4e-9d7a-6d6574616c6b")  # the namespace of run ids named by keys


def create_run(
    tables: Tables,
    *,
    experiment: str,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    start_time: datetime | None = None,
    user: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Record a running run (and its tags) in one flush; returns its id."""
    if not isinstance(experiment, str) or not experiment:
        raise RunError('A run needs an experiment name, e.g. {"experiment": "churn"}.')
    run_id = run_id_for_key(idempotency_key) if idempotency_key else new_id()
    started = start_time or datetime.now(UTC)
    event = {
        "event_id": f"{run_id}:api:running",
        "run_id": run_id,
        "experiment": experiment,
        "name": name,
        "status": "running",
        "start_time": started,
        "event_time": started,
        "parent_run_id": parent_run_id,
        "user": user,
        "source": API_SOURCE,
    }
    check_call(tables, RUNS_TABLE, "create run", [event], outcome=REFUSED)
    batches: dict[str, Any] = {RUNS_TABLE: [event]}
    if tags:
        check_call(tables, "run_tags", "create run", _pairs(tags), outcome=REFUSED)
        batches["run_tags"] = key_values(run_id, dict(tags))
    _commit(tables, run_id, f"{run_id}:api:create", batches, idempotency_key is not None)
    return run_id


def log_batch(
    tables: Tables,
    run_id: str,
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    metrics: Sequence[MetricPoint] = (),
    idempotency_key: str | None = None,
) -> int:
    """Log params, tags and metric points into an existing run in one flush; returns the points written."""
    current_run(tables, run_id)
    batches: dict[str, Any] = {}
    if params:
        check_call(tables, "params", "log", _pairs(params), outcome=REFUSED)
        batches["params"] = key_values(run_id, dict(params))
    if tags:
        check_call(tables, "run_tags", "log", _pairs(tags), outcome=REFUSED)
        batches["run_tags"] = key_values(run_id, dict(tags))
    if metrics:
        checks, buffer = MetricPointChecks(tables, METRICS_TABLE), MetricBuffer()
        for point in metrics:
            try:
                points, step, moment = checks.points({point.key: point.value}, point.step, point.timestamp)
            except ContractError as error:
                raise ContractError(
                    error.table, error.failures, refused="log call", outcome=REFUSED
                ) from None
            for key, value in points:
                buffer.add(key, value, step, (moment - EPOCH) // ONE_MICROSECOND)
        batches[METRICS_TABLE] = metric_table(run_id, buffer)
    if not batches:
        return 0
    flush_id = f"{run_id}:api:{idempotency_key or new_id()}"
    _commit(tables, run_id, flush_id, batches, idempotency_key is not None, points=len(metrics))
    return len(metrics)


def end_run(
    tables: Tables,
    run_id: str,
    *,
    status: RunStatus = "finished",
    end_time: datetime | None = None,
    idempotency_key: str | None = None,
) -> RunStatus:
    """Record the run's end (finished, failed or killed) in one flush."""
    if status not in FINAL_RUN_STATUSES:
        raise RunError(f"A run ends as one of {', '.join(sorted(FINAL_RUN_STATUSES))}, not {status!r}.")
    current = current_run(tables, run_id)
    ended = end_time or datetime.now(UTC)
    key = idempotency_key or new_id()
    event = {
        "event_id": f"{run_id}:api:{key}:{status}",
        "run_id": run_id,
        "experiment": current["experiment"],
        "name": current["name"],
        "status": status,
        "start_time": current["start_time"],
        "end_time": ended,
        "event_time": max(ended, current["start_time"]),
        "parent_run_id": current["parent_run_id"],
        "source": current["source"],
    }
    check_call(tables, RUNS_TABLE, "end run", [event], outcome=REFUSED)
    _commit(tables, run_id, f"{run_id}:api:{key}:end", {RUNS_TABLE: [event]}, idempotency_key is not None)
    return status


def current_run(tables: Tables, run_id: str) -> dict[str, Any]:
    """The run's latest state (experiment, name, start time, parent, source); RunNotFound if there is none."""
    rows = tables.sql(
        "select experiment, name, start_time, parent_run_id, source from runs_current where run_id = ?",
        [run_id],
    ).fetchall()
    if not rows:
        raise RunNotFound(run_id)
    experiment, name, start_time, parent_run_id, source = rows[0]
    return {
        "experiment": experiment,
        "name": name,
        "start_time": start_time,
        "parent_run_id": parent_run_id,
        "source": source,
    }


def _pairs(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in values.items()]


def _commit(
    tables: Tables, run_id: str, flush_id: str, batches: dict[str, Any], keyed: bool, *, points: int = 0
) -> None:
    """One flush through the commit queue, waited for; a contract refusal is raised as itself."""
    queue = queue_for(tables)
    # A client's key may have been committed before (a retry): the commit then checks it and skips.
    flush = QueuedFlush(flush_id, run_id, batches, points, attempts=1 if keyed else 0)
    queue.submit(flush)
    try:
        queue.wait([flush])
    except MetalakeError:
        if flush.state == "refused" and isinstance(flush.error, MetalakeError):
            raise flush.error from None
        raise
