"""Metric retention for `maintain`: old metric points of archived runs may go; the points of a run behind a live
model version never do.

A run is archived when it was archived explicitly (`lake.runs.archive`) or when every model version registered
from it is archived. A run that is the source of a version in any other stage is never archived: its points are
that model's lineage. Only raw points go; the run, its params, tags and metric summaries stay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from metalake.core.delta import TableMaintenance
from metalake.tracking.group_commit import METRICS_TABLE

if TYPE_CHECKING:
    from metalake.core.tables import Tables

ARCHIVED_TAG = "metalake.archived"
DELETE_CHUNK = 1000

ARCHIVED_RUNS_SQL = f"""
WITH versions AS (
    SELECT run_id, stage FROM registry_current WHERE run_id IS NOT NULL
),
protected AS (
    SELECT DISTINCT run_id FROM versions WHERE stage <> 'archived'
),
archived AS (
    SELECT run_id FROM versions GROUP BY run_id HAVING bool_and(stage = 'archived')
    UNION
    SELECT DISTINCT run_id FROM run_tags WHERE "key" = '{ARCHIVED_TAG}'
)
SELECT r.run_id
FROM runs_current AS r
JOIN archived USING (run_id)
WHERE r.run_id NOT IN (SELECT run_id FROM protected)
  AND r.status IN ('finished', 'failed', 'killed')
  AND coalesce(r.end_time, r.start_time) < ?
ORDER BY r.run_id
"""


def archived_runs(tables: Tables, ended_before: datetime) -> list[str]:
    """Archived runs that ended before a moment and that no live model version needs."""
    return [row[0] for row in tables.sql(ARCHIVED_RUNS_SQL, [ended_before]).fetchall()]


def drop_metric_history(tables: Tables, days: float, *, dry_run: bool) -> TableMaintenance:
    """Delete the metric points of archived runs older than `days` (their summaries stay)."""
    started = datetime.now(UTC)
    runs = archived_runs(tables, started - timedelta(days=days))
    points = 0
    if runs:
        placeholders = ", ".join("?" for _ in runs)
        counted = tables.sql(
            f"select count(*) from metrics where run_id in ({placeholders})", runs
        ).fetchall()
        points = int(counted[0][0])
    action = f"drop {points:,} points of {len(runs)} archived run(s) older than {days:g} days"
    if dry_run or not points:
        return TableMaintenance(METRICS_TABLE, action, 0, 0, tables.version(METRICS_TABLE), 0.0)
    deleted = 0
    for start in range(0, len(runs), DELETE_CHUNK):
        chunk = runs[start : start + DELETE_CHUNK]
        predicate = "run_id IN (" + ", ".join(_sql_text(run_id) for run_id in chunk) + ")"
        deleted += tables.delete_rows(
            METRICS_TABLE, predicate, reason=f"retention: metric history older than {days:g} days"
        )
    seconds = (datetime.now(UTC) - started).total_seconds()
    action = f"dropped {deleted:,} points of {len(runs)} archived run(s) older than {days:g} days"
    return TableMaintenance(METRICS_TABLE, action, 0, 0, tables.version(METRICS_TABLE), seconds)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
