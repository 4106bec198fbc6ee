"""Append cost on an old table: a small batch on a table with 5,000 commits vs one with 10 (target: <= 2x).

Also measures, side by side, the naive pattern the lake avoids: `write_deltalake(uri, ...)` per batch, which
reloads the table (and lists its whole log) on every call.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from _common import median_ms, record
from deltalake import write_deltalake

import metalake
from metalake.core.catalog import bundled_dir


def small_batch(i: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {"run_id": f"run-{i}", "key": key, "value": float(i), "step": i, "timestamp": now}
        for key in ("loss", "acc", "auc")
    ]


def grow(lake: metalake.Lake, table: str, commits: int) -> None:
    for i in range(commits):
        lake.append(table, small_batch(i))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old-commits", type=int, default=5000)
    parser.add_argument("--young-commits", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=60)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-append-"))
    try:
        lake = metalake.connect(workdir / "lake", actor="bench")
        # Two tables of the same spec: "metrics" gets old, "young" stays young.
        specs = workdir / "specs"
        specs.mkdir()
        spec_text = (bundled_dir("tables") / "metrics.yaml").read_text()
        (specs / "young_metrics.yaml").write_text(
            spec_text.replace("name: metrics", "name: young_metrics", 1)
        )
        lake = metalake.connect(workdir / "lake", actor="bench", extra_specs=specs)
        grow(lake, "young_metrics", args.young_commits)
        grow(lake, "metrics", args.old_commits)
        # Interleaved, so that a noisy neighbour slows both sides alike.
        counter = iter(range(10**9))
        young_times, old_times = [], []
        for _ in range(args.repeat):
            young_times.append(median_ms(lambda: lake.append("young_metrics", small_batch(next(counter))), 1))
            old_times.append(median_ms(lambda: lake.append("metrics", small_batch(next(counter))), 1))
        young, old = statistics.median(young_times), statistics.median(old_times)
        young_mean, old_mean = statistics.mean(young_times), statistics.mean(old_times)
        arrow = lake.sql("select * from metrics limit 3").arrow()
        if not isinstance(arrow, pa.Table):
            arrow = arrow.read_all()
        uri_old, uri_young = lake.location.table_uri("metrics"), lake.location.table_uri("young_metrics")
        naive_young = median_ms(lambda: write_deltalake(uri_young, arrow, mode="append"), args.repeat)
        naive_old = median_ms(lambda: write_deltalake(uri_old, arrow, mode="append"), args.repeat)
        ratio = old / young
        record(
            "Append cost on an old table (bench/bench_append.py)",
            f"python bench/bench_append.py --old-commits {args.old_commits} --repeat {args.repeat}",
            [
                f"| append of 3 rows | table with ~10 commits | table with ~{args.old_commits} commits | ratio (target <= 2x) |",
                "|---|---|---|---|",
                f"| `lake.append` (contract + commit), median | {young:.1f} ms | {old:.1f} ms | **{ratio:.2f}x** |",
                f"| `lake.append`, mean (includes compactions and checkpoints) | {young_mean:.1f} ms | "
                f"{old_mean:.1f} ms | {old_mean / young_mean:.2f}x |",
                f"| naive `write_deltalake(uri)` | {naive_young:.1f} ms | {naive_old:.1f} ms | "
                f"{naive_old / naive_young:.2f}x |",
            ],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
