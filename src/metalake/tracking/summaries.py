"""Per-run metric summaries: written with each batch of points, combined when read (as MLflow's latest_metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl


def summarize_frame(points: pl.DataFrame, by: Sequence[str] = ("run_id", "key")) -> pl.DataFrame:
    """One row per (run_id, key) of a batch of points (or per `by`): last value and step, min, max, sum, count.

    "Last" is the point with the greatest (step, timestamp); each group is ordered on its own, which is several
    times cheaper than sorting the whole batch.
    """
    import polars as pl

    order = ["step", "timestamp"]
    return (
        points.lazy()
        .group_by(list(by))
        .agg(
            pl.col("value").sort_by(order, maintain_order=True).last().alias("last_value"),
            pl.col("step").sort_by(order, maintain_order=True).last().alias("last_step"),
            pl.col("timestamp").sort_by(order, maintain_order=True).last().alias("last_timestamp"),
            pl.col("value").min().alias("min_value"),
            pl.col("value").max().alias("max_value"),
            pl.col("value").sum().alias("sum_value"),
            pl.len().cast(pl.Int64).alias("count"),
        )
        .sort(list(by))
        .collect()
    )


def combine_summaries(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-batch summaries of one run -> one summary per metric (what the run_metrics view computes)."""
    combined: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["last_step"], r["last_timestamp"], r["recorded_at"])):
        summary = combined.setdefault(
            row["key"], {"min_value": row["min_value"], "max_value": row["max_value"], "sum": 0.0, "count": 0}
        )
        summary["last_value"], summary["last_step"] = row["last_value"], row["last_step"]
        summary["last_timestamp"] = row["last_timestamp"]
        summary["min_value"] = min(summary["min_value"], row["min_value"])
        summary["max_value"] = max(summary["max_value"], row["max_value"])
        summary["sum"] += row["sum_value"]
        summary["count"] += row["count"]
    return {
        key: {
            "last_value": value["last_value"],
            "last_step": value["last_step"],
            "last_timestamp": value["last_timestamp"],
            "min_value": value["min_value"],
            "max_value": value["max_value"],
            "mean_value": value["sum"] / value["count"],
            "count": value["count"],
        }
        for key, value in sorted(combined.items())
    }
