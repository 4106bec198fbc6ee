"""Per-call checks of a run's log calls: each value against its table's contract, before it is buffered.

A run buffers facts and commits them later, many at once; a value the contract refuses would fail that whole
flush, and with it the run. Checking at the call raises where the value was given and keeps what the run
logged before (core/values.py holds the rules; the table specs hold the checks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.core.moments import check_recordable
from metalake.core.values import column_checker, to_storable, value_failures
from metalake.errors import ContractError, ContractFailure, RunError

if TYPE_CHECKING:
    from metalake.core.tables import Tables

TIMESTAMP = "timestamp[us, UTC]"
CALL_REFUSED = "Nothing of this call was logged; what the run logged before is kept."
ONE_MICROSECOND = timedelta(microseconds=1)


def check_call(
    tables: Tables, table: str, call: str, rows: list[dict[str, Any]], *, outcome: str = CALL_REFUSED
) -> None:
    """Refuse the call (ContractError naming each bad value) if any of its rows breaks the table's contract."""
    spec = tables.spec(table)
    failures = [failure for row in rows for failure in value_failures(spec, row)]
    if failures:
        raise ContractError(table, failures, refused=f"{call} call", outcome=outcome)


class MetricPointChecks:
    """The metric contract's checks prepared once per run, cheap enough for every call of a training loop.

    A key is checked the first time the run logs it. Points logged without a timestamp get strictly increasing
    ones (now, or a microsecond after the previous point), so two quick calls for one key and step never share
    the metrics table's primary key (run_id, key, step, timestamp), which would refuse the run's flush; a
    point given a timestamp that repeats a buffered point's key, step and timestamp is refused at the call.
    """

    def __init__(self, tables: Tables, table: str):
        spec = tables.spec(table)
        self._table = table
        self._checks: dict[str, Callable[[Any], str | None]] = {
            name: column_checker(spec.column(name)) for name in ("key", "value", "step", "timestamp")
        }
        self._known_keys: set[str] = set()
        self._last_moment = datetime.min.replace(tzinfo=UTC)
        self._explicit_points: set[tuple[str, int, datetime]] = set()

    def points(
        self, metrics: Mapping[Any, Any], step: Any, timestamp: datetime | None
    ) -> tuple[list[tuple[str, float]], int, datetime]:
        """The call's (key, value) points, step and timestamp as stored; raises ContractError naming each bad one."""
        check = self._checks
        failures = []
        step_problem = check["step"](step)
        if step_problem is not None:
            failures.append(ContractFailure("step", step_problem, 1, [{"step": step}]))
        if timestamp is not None and (time_problem := check["timestamp"](timestamp)) is not None:
            failures.append(ContractFailure("timestamp", time_problem, 1, [{"timestamp": timestamp}]))
        points = []
        for key, value in metrics.items():
            value_problem = check["value"](value)
            key_problem = None if key in self._known_keys else check["key"](key)
            if value_problem is None and key_problem is None:
                self._known_keys.add(key)
                points.append((key, value if type(value) is float else to_storable("float64", value)))
                continue
            if value_problem is not None:
                failures.append(ContractFailure("value", value_problem, 1, [{"key": key, "value": value}]))
            if key_problem is not None:
                failures.append(ContractFailure("key", key_problem, 1, [{"key": key}]))
        if failures:
            raise ContractError(self._table, failures, refused="log_metrics call", outcome=CALL_REFUSED)
        whole_step = step if type(step) is int else to_storable("int64", step)
        moment = self._moment(timestamp)
        if timestamp is not None:
            self._refuse_repeated_points(points, whole_step, moment)
        return points, whole_step, moment

    def buffer_taken(self) -> None:
        """The buffered points left in a flush; later calls are checked against the new buffer only."""
        self._explicit_points.clear()

    def _refuse_repeated_points(self, points: list[tuple[str, float]], step: int, moment: datetime) -> None:
        """A point with a given timestamp that repeats a buffered one (key, step, timestamp) would be a
        duplicate primary key in the flush: refuse it here rather than lose the flush."""
        repeated = [key for key, _ in points if (key, step, moment) in self._explicit_points]
        if repeated:
            failures = [
                ContractFailure(
                    "timestamp",
                    "this run already logged a point of this key at this step and timestamp; give another "
                    "step or timestamp (or none: metalake then takes the current time)",
                    1,
                    [{"key": key, "step": step, "timestamp": moment}],
                )
                for key in repeated
            ]
            raise ContractError(self._table, failures, refused="log_metrics call", outcome=CALL_REFUSED)
        self._explicit_points.update((key, step, moment) for key, _ in points)

    def _moment(self, timestamp: datetime | None) -> datetime:
        if timestamp is not None:  # a given time must have happened (within the clock skew), and after 1900
            moment: datetime = to_storable(TIMESTAMP, timestamp)
            return check_recordable(moment, what="Metric timestamp", error=RunError)
        now = datetime.now(UTC)
        self._last_moment = now if now > self._last_moment else self._last_moment + ONE_MICROSECOND
        return self._last_moment
