"""Retention for `maintain`: what may go (old metric points of archived runs, files no version needs any more),
and what never goes (anything a named snapshot, a live model version or its lineage needs).

A run is archived when it was archived explicitly (`lake.runs.archive`) or when every model version registered
from it is archived. A run that is the source of a version in any other stage is never archived: its points are
that model's lineage. Only raw points go; the run, its params, tags and metric summaries stay.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from metalake.core.delta import TableMaintenance

if TYPE_CHECKING:
    from metalake.core.catalog import TableSpec
    from metalake.lake import Lake

ARCHIVED_TAG = "metalake.archived"
METRICS_TABLE = "metrics"
SNAPSHOTS_TABLE = "snapshots"
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


def archived_runs(lake: Lake, ended_before: datetime) -> list[str]:
    """Archived runs that ended before a moment and that no live model version needs."""
    return [row[0] for row in lake.sql(ARCHIVED_RUNS_SQL, [ended_before]).fetchall()]


def drop_metric_history(lake: Lake, days: float, *, dry_run: bool) -> TableMaintenance:
    """Delete the metric points of archived runs older than `days` (their summaries stay)."""
    started = datetime.now(UTC)
    runs = archived_runs(lake, started - timedelta(days=days))
    points = 0
    if runs:
        placeholders = ", ".join("?" for _ in runs)
        counted = lake.sql(f"select count(*) from metrics where run_id in ({placeholders})", runs).fetchall()
        points = int(counted[0][0])
    action = f"drop {points:,} points of {len(runs)} archived run(s) older than {days:g} days"
    if dry_run or not points:
        return TableMaintenance(METRICS_TABLE, action, 0, 0, lake.version(METRICS_TABLE), 0.0)
    deleted = 0
    for start in range(0, len(runs), DELETE_CHUNK):
        chunk = runs[start : start + DELETE_CHUNK]
        predicate = "run_id IN (" + ", ".join(_sql_text(run_id) for run_id in chunk) + ")"
        deleted += lake._store.delete_rows(
            METRICS_TABLE,
            predicate,
            actor=lake.actor,
            reason=f"retention: metric history older than {days:g} days",
        )
    seconds = (datetime.now(UTC) - started).total_seconds()
    action = f"dropped {deleted:,} points of {len(runs)} archived run(s) older than {days:g} days"
    return TableMaintenance(METRICS_TABLE, action, 0, 0, lake.version(METRICS_TABLE), seconds)


def vacuum(lake: Lake, specs: list[TableSpec], days: float, *, dry_run: bool) -> list[TableMaintenance]:
    """Delete files unreferenced for longer than `days`, keeping every file a named snapshot pins."""
    pinned = _snapshot_versions(lake)
    results = []
    for spec in specs:
        started = datetime.now(UTC)
        files = lake._store.vacuum(
            spec.name,
            retention_hours=math.ceil(days * 24),
            keep_versions=pinned.get(spec.name, []),
            dry_run=dry_run,
            actor=lake.actor,
        )
        if not files:
            continue
        verb = "would delete" if dry_run else "deleted"
        kept = f", {len(pinned.get(spec.name, []))} snapshot version(s) kept" if pinned.get(spec.name) else ""
        results.append(
            TableMaintenance(
                spec.name,
                f"vacuum: {verb} {len(files)} file(s) unreferenced for {days:g}+ days{kept}",
                len(files),
                0,
                lake.version(spec.name),
                (datetime.now(UTC) - started).total_seconds(),
            )
        )
    return results


def _snapshot_versions(lake: Lake) -> dict[str, list[int]]:
    pins = lake.read(SNAPSHOTS_TABLE, columns=["table_name", "table_version"])
    versions: dict[str, list[int]] = {}
    for table, version in pins.iter_rows():
        if version is not None:
            versions.setdefault(table, []).append(int(version))
    return versions


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
