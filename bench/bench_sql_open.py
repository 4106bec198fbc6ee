"""Open the lake and count 1 M metric rows in a fresh `lake.sql`, vs the same DuckDB query on in-memory Arrow.

Target: at most 10x the in-memory query on an already open DuckDB connection (the strict reading); the
in-memory query on a brand-new DuckDB connection is shown too. The lake side opens a new Lake each time, in a
process that has already imported everything (as a notebook or service would).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from _common import median_ms, record

import metalake

QUERY = "select count(*) from metrics"


def metric_rows(count: int) -> pa.Table:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [f"run-{i // 1000:04d}" for i in range(count)]
    return pa.table(
        {
            "run_id": runs,
            "key": ["loss"] * count,
            "value": [float(i % 997) / 997 for i in range(count)],
            "step": [i % 1000 for i in range(count)],
            "timestamp": pa.array(
                [start + timedelta(seconds=i) for i in range(count)], pa.timestamp("us", "UTC")
            ),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=10, help="commits the rows arrive in")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-sql-"))
    try:
        uri = workdir / "lake"
        lake = metalake.connect(uri, actor="bench")
        rows = metric_rows(args.rows)
        size = args.rows // args.batches
        for start in range(0, args.rows, size):
            lake.append("metrics", rows.slice(start, size))
        in_memory = lake.read("metrics").to_arrow()

        def fresh_lake() -> object:
            return metalake.connect(uri).sql(QUERY).fetchall()

        def fresh_duckdb() -> object:
            connection = duckdb.connect()
            connection.register("metrics", in_memory)
            return connection.sql(QUERY).fetchall()

        warm = duckdb.connect()
        warm.register("metrics", in_memory)
        assert fresh_lake() == fresh_duckdb() == [(args.rows,)]
        lake_ms = median_ms(fresh_lake, args.repeat)
        fresh_ms = median_ms(fresh_duckdb, args.repeat)
        warm_ms = median_ms(lambda: warm.sql(QUERY).fetchall(), args.repeat)
        record(
            "Fresh lake.sql count(*) over 1 M rows (bench/bench_sql_open.py)",
            f"python bench/bench_sql_open.py --rows {args.rows} --batches {args.batches}",
            [
                "| what | median | vs q on an open connection (target <= 10x) | vs a new connection |",
                "|---|---|---|---|",
                f"| `metalake.connect(uri).sql(q).fetchall()` | {lake_ms:.1f} ms | **{lake_ms / warm_ms:.1f}x** | "
                f"{lake_ms / fresh_ms:.1f}x |",
                f"| q on an already open DuckDB connection (in-memory Arrow) | {warm_ms:.2f} ms | 1.0x | |",
                f"| new DuckDB connection + register Arrow table + q | {fresh_ms:.1f} ms | "
                f"{fresh_ms / warm_ms:.1f}x | 1.0x |",
            ],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
