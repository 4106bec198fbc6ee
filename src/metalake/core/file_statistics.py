"""Skipping Delta files by the statistics in the Delta log, without reading them (core, beside delta.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deltalake import DeltaTable

STATISTICS_SLACK = timedelta(seconds=1)


def files_may_hold(table: DeltaTable, column: str, low: datetime, high: datetime) -> bool:
    """Whether a file of the table may hold rows whose `column` is within [low, high], by the statistics in
    the Delta log (a file without them may): answers in a millisecond where a scan costs tens of them.

    delta-rs stores timestamp statistics cut to the millisecond (a file whose latest row is at .000900 says
    .000000), so the range is widened by a second on each side: never a file skipped that holds the range.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return False
    if f"min.{column}" not in actions.column_names or f"max.{column}" not in actions.column_names:
        return True
    smallest, largest = actions[f"min.{column}"], actions[f"max.{column}"]
    # clamped: the slack must not overflow at the ends of the datetime range (rows stored before times were checked)
    low_value = pa.scalar(
        max(low, datetime.min.replace(tzinfo=UTC) + STATISTICS_SLACK) - STATISTICS_SLACK, smallest.type
    )
    high_value = pa.scalar(
        min(high, datetime.max.replace(tzinfo=UTC) - STATISTICS_SLACK) + STATISTICS_SLACK, largest.type
    )
    apart = pc.or_(pc.less(largest, low_value), pc.greater(smallest, high_value))
    return not pc.all(pc.fill_null(apart, False)).as_py()
