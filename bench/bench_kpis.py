"""KPI observations in bulk, and `model_kpi_impact` over many observations and deployments.

Bulk: `observe_many` of a 100,000-row polars frame and `ingest` of the same rows as CSV, each one commit (fresh
KPI table each time, median of `--repeat`). Impact: `--observations` observations of 3 KPIs, one a minute, and
`--deployments` deployments of 5 models in one environment; the first query after a commit (the view is
materialized then), the same query again (stored result), and another window (computed through the bound
window parameter, never stored).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from _common import median_ms, record

import metalake
from metalake.deployments import UnregisteredModelVersionWarning

KPIS = ("conversion", "latency_ms", "revenue")
START = datetime(2025, 1, 1, tzinfo=UTC)


def observations(count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kpi": [KPIS[i % len(KPIS)] for i in range(count)],
            "value": [float(i % 997) for i in range(count)],
            "observed_at": pl.datetime_range(
                START, START + timedelta(minutes=count - 1), "1m", time_zone="UTC", eager=True
            ),
        }
    )


def defined_lake(uri: Path) -> metalake.Lake:
    lake = metalake.connect(uri, actor="bench")
    for kpi in KPIS:
        lake.kpis.define(kpi, unit="x", direction="higher_is_better")
    return lake


def seconds_per_run(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bulk-rows", type=int, default=100_000)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UnregisteredModelVersionWarning)
    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-kpis-"))
    try:
        bulk = observations(args.bulk_rows)
        csv_file = workdir / "observations.csv"
        bulk.with_columns(pl.col("observed_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(csv_file)
        lakes = iter(range(10_000))

        def frame_into_fresh_lake() -> object:
            return defined_lake(workdir / f"bulk-{next(lakes)}").kpis.observe_many(bulk)

        def csv_into_fresh_lake() -> object:
            return defined_lake(workdir / f"bulk-{next(lakes)}").kpis.ingest(csv_file)

        setup = seconds_per_run(lambda: defined_lake(workdir / f"bulk-{next(lakes)}"), args.repeat)
        frame_s = seconds_per_run(frame_into_fresh_lake, args.repeat) - setup
        csv_s = seconds_per_run(csv_into_fresh_lake, args.repeat) - setup

        lake = defined_lake(workdir / "impact")
        spacing = timedelta(minutes=args.observations) / args.deployments
        for index in range(args.deployments):
            lake.deployments.record(
                f"model-{index % 5}", index // 5 + 1, "production", at=START + index * spacing
            )
        lake.kpis.observe_many(observations(args.observations))
        first_ms = median_ms(lambda: lake.kpis.impact(), 1)
        rows = lake.kpis.impact().height
        cached_ms = median_ms(lambda: lake.kpis.impact(), args.repeat)
        other_window_ms = median_ms(lambda: lake.kpis.impact(window="3d"), args.repeat)
        record(
            "KPI bulk observations and model_kpi_impact (bench/bench_kpis.py)",
            f"python bench/bench_kpis.py --bulk-rows {args.bulk_rows} --observations {args.observations} "
            f"--deployments {args.deployments} --repeat {args.repeat}",
            [
                f"Bulk: {args.bulk_rows:,} observations, one commit, into a new KPI table (median of "
                f"{args.repeat}, lake setup subtracted). Impact: {args.observations:,} observations of "
                f"{len(KPIS)} KPIs, {args.deployments} deployments, {rows} impact rows.",
                "",
                "| what | time |",
                "|---|---|",
                f"| `lake.kpis.observe_many(polars frame)` | {frame_s * 1000:.0f} ms |",
                f"| `lake.kpis.ingest(csv)` | {csv_s * 1000:.0f} ms |",
                f"| `lake.kpis.impact()`, first query after the commit (view materialized) | {first_ms:.0f} ms |",
                f"| `lake.kpis.impact()` again (stored result) | {cached_ms:.1f} ms |",
                f"| `lake.kpis.impact(window='3d')` (bound window, computed each time) | {other_window_ms:.0f} ms |",
            ],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
