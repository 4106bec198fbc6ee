"""Long metric histories cut down for charts without hiding what matters: each bucket keeps its first, last,
lowest and highest point, so a spike or a divergence survives any zoom level (the min/max-per-bucket scheme of
time-series charting, as opposed to every n-th point, which drops spikes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

POINTS_PER_BUCKET = 4  # first, last, min, max


def downsample(points: pl.DataFrame, max_points: int) -> pl.DataFrame:
    """At most `max_points` rows of one run's points (ordered by step), keeping each bucket's extremes.

    The points are cut into `max_points // 4` buckets of consecutive rows; a bucket contributes its first,
    last, minimum and maximum point (fewer when they coincide). Rows keep their order and columns.
    """
    import polars as pl

    total = points.height
    if total <= max_points:
        return points
    buckets = max(1, max_points // POINTS_PER_BUCKET)
    indexed = (
        points.select("value")
        .with_row_index("row")
        .with_columns(bucket=(pl.col("row").cast(pl.Int64) * buckets // total))
    )
    picks = indexed.group_by("bucket").agg(
        pl.col("row").first().alias("first"),
        pl.col("row").last().alias("last"),
        pl.col("row").get(pl.col("value").arg_min()).alias("lowest"),
        pl.col("row").get(pl.col("value").arg_max()).alias("highest"),
    )
    rows = (
        picks.unpivot(on=["first", "last", "lowest", "highest"], value_name="row")
        .get_column("row")
        .drop_nulls()
        .unique()
        .sort()
    )
    return points[rows.to_list()] if max_points >= POINTS_PER_BUCKET else points[rows.to_list()[:max_points]]
