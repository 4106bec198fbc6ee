"""Run writes for clients without a live `Run` object: one request starts a run, logs a batch or ends it.

The REST API (and the MLflow-compatible endpoints) call these. Each write is one flush through the lake's commit
queue, so concurrent requests share group commits, and it returns once committed. A client's idempotency key names
the flush (and the run, at creation): a request sent again, even to a restarted server, writes nothing twice,
because the Delta commit of each table carries the flush's key.

`durable="journaled"` answers once the flush is in this process's journal (a memory copy), not once committed:
a client that logs one point per request (MLflow's `log_metric` in a loop) is then not held to the commit rate,
and the flush is committed with others moments later, or replayed from the journal if the process dies first.
Reads in this process wait for queued flushes, so the client still reads its writes.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metalake.core.ids import new_id
from metalake.core.vocabulary import FINAL_RUN_STATUSES, RunStatus
from metalake.errors import ContractError, MetalakeError, ParamValueChanged, RunError, RunNotFound
from metalake.tracking.batches import EPOCH, ONE_MICROSECOND, MetricBuffer, key_values, metric_table
from metalake.tracking.call_checks import MetricPointChecks, check_call
from metalake.tracking.group_commit import METRICS_TABLE, RUNS_TABLE, QueuedFlush, queue_for
from metalake.tracking.journal import journal_for
from metalake.tracking.unconfirmed import UnconfirmedChange, last_points, record

if TYPE_CHECKING:
    from metalake.core.tables import Tables

API_SOURCE = "api"  # runs created over HTTP: no heartbeat is expected from them, so they are never `lost`
REFUSED = "Nothing of this request was written."
Durable = Literal["committed", "journaled"]
KNOWN_RUNS = 100_000  # run ids this process knows exist, so logging into them skips the look-up


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
    command: str | None = None,
    git_commit: str | None = None,
    idempotency_key: str | None = None,
    durable: Durable = "committed",
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
        "command": command,
        "git_commit": git_commit,
        "source": API_SOURCE,
    }
    check_call(tables, RUNS_TABLE, "create run", [event], outcome=REFUSED)
    batches: dict[str, Any] = {RUNS_TABLE: [event]}
    if tags:
        check_call(tables, "run_tags", "create run", _pairs(tags), outcome=REFUSED)
        batches["run_tags"] = key_values(run_id, dict(tags))
    _commit(
        tables,
        run_id,
        f"{run_id}:api:create",
        batches,
        idempotency_key is not None,
        durable=durable,
        change={"creates": True, "tags": dict(tags or {})},
    )
    state = {column: event.get(column) for column in STATE_COLUMNS}
    _remember(tables, run_id, {**state, "end_time": None, "last_event_time": started, "deleted": False})
    return run_id


def log_batch(
    tables: Tables,
    run_id: str,
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    metrics: Sequence[MetricPoint] = (),
    idempotency_key: str | None = None,
    durable: Durable = "committed",
) -> int:
    """Log params, tags and metric points into an existing run in one flush; returns the points written.

    A param is fixed once logged: the same value again is fine, another value is refused (ParamValueChanged).
    """
    state = run_state(tables, run_id)
    if state["deleted"]:
        raise RunError(f"The run {run_id} must be in the 'active' state. Current state is deleted.")
    batches: dict[str, Any] = {}
    if params:
        check_call(tables, "params", "log", _pairs(params), outcome=REFUSED)
        params = _new_params(state, run_id, params)
    if params:
        batches["params"] = key_values(run_id, dict(params))
    if tags:
        check_call(tables, "run_tags", "log", _pairs(tags), outcome=REFUSED)
        batches["run_tags"] = key_values(run_id, dict(tags))
    logged: list[tuple[str, int, datetime, float]] = []
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
                logged.append((key, step, moment, value))
        batches[METRICS_TABLE] = metric_table(run_id, buffer)
    if not batches:
        return 0
    flush_id = f"{run_id}:api:{idempotency_key or new_id()}"
    _commit(
        tables,
        run_id,
        flush_id,
        batches,
        idempotency_key is not None,
        points=len(metrics),
        durable=durable,
        change={"params": dict(params or {}), "tags": dict(tags or {}), "metrics": last_points(logged)},
    )
    return len(metrics)


def end_run(
    tables: Tables,
    run_id: str,
    *,
    status: RunStatus = "finished",
    end_time: datetime | None = None,
    idempotency_key: str | None = None,
    durable: Durable = "committed",
) -> RunStatus:
    """Record the run's end (finished, failed or killed) in one flush."""
    if status not in FINAL_RUN_STATUSES:
        raise RunError(f"A run ends as one of {', '.join(sorted(FINAL_RUN_STATUSES))}, not {status!r}.")
    current = run_state(tables, run_id)
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
    _commit(
        tables,
        run_id,
        f"{run_id}:api:{key}:end",
        {RUNS_TABLE: [event]},
        idempotency_key is not None,
        durable=durable,
    )
    current.update(status=status, end_time=ended, last_event_time=event["event_time"])
    return status


def update_run(
    tables: Tables,
    run_id: str,
    *,
    name: str | None = None,
    deleted: bool | None = None,
    durable: Durable = "committed",
) -> None:
    """Rename a run, or delete or restore it (MLflow's lifecycle): one run event that keeps its status."""
    current = run_state(tables, run_id)
    change = "rename" if deleted is None else ("delete" if deleted else "restore")
    moment = datetime.now(UTC)
    event = {
        "event_id": f"{run_id}:api:{new_id()}:{change}",
        "run_id": run_id,
        "experiment": current["experiment"],
        "name": name if name is not None else current["name"],
        "status": current["status"],
        "start_time": current["start_time"],
        "end_time": current["end_time"],
        "event_time": max(moment, current["last_event_time"]),  # the latest event: it carries the change
        "parent_run_id": current["parent_run_id"],
        "source": current["source"],
        "deleted": deleted,
    }
    check_call(tables, RUNS_TABLE, f"{change} run", [event], outcome=REFUSED)
    _commit(tables, run_id, event["event_id"], {RUNS_TABLE: [event]}, False, durable=durable)
    current.update(name=event["name"], last_event_time=event["event_time"])
    if deleted is not None:
        current["deleted"] = deleted


def delete_tag(tables: Tables, run_id: str, key: str, *, durable: Durable = "committed") -> None:
    """Delete a run's tag: a row that marks the key deleted (history keeps the value it had)."""
    rows = tables.sql(
        'select "value", coalesce(deleted, false) from run_tags where run_id = ? and "key" = ? '
        "order by recorded_at desc limit 1",
        [run_id, key],
    ).fetchall()
    if not rows or rows[0][1]:
        current_run(tables, run_id)
        raise RunError(f"No tag with name: {key} in run with id {run_id}.")
    row = {"run_id": run_id, "key": key, "value": rows[0][0], "deleted": True}
    untag = {"untagged": (key,)}
    _commit(
        tables,
        run_id,
        f"{run_id}:api:{new_id()}:untag",
        {"run_tags": [row]},
        False,
        durable=durable,
        change=untag,
    )


def log_inputs(
    tables: Tables, run_id: str, inputs: Sequence[Mapping[str, Any]], *, durable: Durable = "committed"
) -> int:
    """Record datasets a run read (`run_inputs` rows: dataset, version, path, context, digest)."""
    current_run(tables, run_id)
    rows = [{"run_id": run_id, **dict(given)} for given in inputs]
    if not rows:
        return 0
    check_call(tables, "run_inputs", "log inputs", rows, outcome=REFUSED)
    logged = {"inputs": [{k: v for k, v in row.items() if k != "run_id"} for row in rows]}
    flush_id = f"{run_id}:api:{new_id()}:inputs"
    _commit(tables, run_id, flush_id, {"run_inputs": rows}, False, durable=durable, change=logged)
    return len(rows)


def current_run(tables: Tables, run_id: str) -> dict[str, Any]:
    """The run's latest state (experiment, name, status as recorded, times, parent, source, deleted);
    RunNotFound if there is none."""
    rows = tables.sql(
        "select experiment, name, status, start_time, end_time, last_event_time, parent_run_id, source, "
        '"user", deleted from run_states where run_id = ?',
        [run_id],
    ).fetchall()
    if not rows:
        raise RunNotFound(run_id)
    columns = (
        "experiment", "name", "status", "start_time", "end_time", "last_event_time", "parent_run_id",
        "source", "user", "deleted",
    )  # fmt: skip
    return dict(zip(columns, rows[0], strict=True))


def _new_params(state: dict[str, Any], run_id: str, params: Mapping[str, str]) -> dict[str, str]:
    """The params not logged yet (remembered as logged); ParamValueChanged when one has another value."""
    with _known_lock:  # two requests logging one key with two values: the second is refused
        logged: dict[str, str] = state["params"]
        for key, value in params.items():
            if key in logged and logged[key] != value:
                raise ParamValueChanged(run_id, key, logged[key], value)
        new = {key: value for key, value in params.items() if key not in logged}
        logged.update(new)
    return new


def _pairs(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in values.items()]


STATE_COLUMNS = ("experiment", "name", "status", "start_time", "parent_run_id", "source", "user")
_known_runs: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_known_lock = threading.RLock()


def run_state(tables: Tables, run_id: str) -> dict[str, Any]:
    """The run's state and params as requests left them, read once per run and process, then kept up to date by
    this module's writes: logging into a run reads nothing, and a read would wait for queued commits.

    RunNotFound if the lake has no such run. A run written meanwhile by another process (a rename, a delete)
    shows that change here only once this process forgets the run (it keeps the latest KNOWN_RUNS runs).
    """
    if (
        tables.masker is not None
    ):  # the kept state is shared with writers: read it clear, hand out a masked copy
        state = run_state(tables.unmasked, run_id)
        shown = tables.masker.mask_rows(RUNS_TABLE, [{k: v for k, v in state.items() if k != "params"}])[0]
        return {**shown, "params": tables.masker.mask_key_values(state["params"])}
    key = (tables.location.uri, run_id)
    if tables.moment is None:
        with _known_lock:
            known = _known_runs.get(key)
            if known is not None:
                _known_runs.move_to_end(key)
                return known
    state = current_run(tables, run_id)
    state["params"] = dict(
        tables.sql(
            'select "key", arg_max("value", recorded_at) from params where run_id = ? group by "key"',
            [run_id],
        ).fetchall()
    )
    if tables.moment is None:
        _remember(tables, run_id, state)
    return state


def _remember(tables: Tables, run_id: str, state: dict[str, Any]) -> None:
    state.setdefault("params", {})
    with _known_lock:
        _known_runs[(tables.location.uri, run_id)] = state
        while len(_known_runs) > KNOWN_RUNS:
            _known_runs.popitem(last=False)


def _commit(
    tables: Tables,
    run_id: str,
    flush_id: str,
    batches: dict[str, Any],
    keyed: bool,
    *,
    points: int = 0,
    durable: Durable = "committed",
    change: Mapping[str, Any] | None = None,
) -> None:
    """One flush through the commit queue, waited for (or only journaled); a contract refusal raises itself.

    A journaled flush's `change` (params, tags, untagged, metrics, inputs of UnconfirmedChange) is kept until it
    is committed, so reads in this process can show it without waiting (`Runs.get_as_written`).
    """
    tables.check_writable()  # before the journal: a refused write must leave nothing to replay
    queue = queue_for(tables)
    # A client's key may have been committed before (a retry): the commit then checks it and skips.
    flush = QueuedFlush(flush_id, run_id, batches, points, attempts=1 if keyed else 0)
    journal = journal_for(tables.location.uri) if durable == "journaled" else None
    if journal is not None:
        journal.record(flush)  # the acknowledgement: a process that dies now leaves it for the next one
        record(tables, run_id, UnconfirmedChange(flush, **(change or {})))
        queue.submit(flush)
        return
    queue.submit(flush)
    try:
        queue.wait([flush])
    except MetalakeError:
        if flush.state == "refused" and isinstance(flush.error, MetalakeError):
            raise flush.error from None
        raise
