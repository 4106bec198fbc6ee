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
WITH points AS (
    SELECT step, "timestamp", "value",
           row_number() OVER (ORDER BY step, "timestamp") - 1 AS i,
           count(*) OVER () AS n
    FROM metrics
    WHERE run_id = $run_id AND "key" = $key
), bucketed AS (
    SELECT *, (i * $buckets) // n AS bucket FROM points
), picks AS (
    SELECT min(i) AS first_i, max(i) AS last_i, arg_min(i, "value") AS low_i, arg_max(i, "value") AS high_i
    FROM bucketed
    GROUP BY bucket
), kept AS (
    SELECT first_i AS i FROM picks UNION SELECT last_i FROM picks
    UNION SELECT low_i FROM picks UNION SELECT high_i FROM picks
)
SELECT $run_id AS run_id, step, "timestamp", "value", n AS total_points
FROM bucketed
WHERE n <= $max_points OR i IN (SELECT i FROM kept)
ORDER BY i
LIMIT $max_points
"""


def downsampled_history(tables: Tables, run_id: str, key: str, max_points: int) -> pl.DataFrame:
    """At most `max_points` points of one run's metric, ordered by step, keeping each bucket's extremes.

    The points are cut into `max_points // 4` buckets of consecutive steps; a bucket contributes its first,
    last, minimum and maximum point (fewer when they coincide). Columns: run_id, step, timestamp, value and
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
