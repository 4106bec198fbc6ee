"""Datasets and data quality, each side by side with the bare tool, in one run.

1. Registering a generated Parquet dataset (~1 GB) -- fingerprint + profile in one streaming DuckDB scan, plus
   the commit -- against a bare DuckDB scan of the same files computing the same profile (target: metalake at
   no less than half the bare speed, i.e. time ratio <= 2x), with peak memory (RSS) of each in its own process
   (target: well below the data size).
2. Validating 10 expectations on 1 M rows: `lake.quality.validate` against the bare Great Expectations run
   (pandas.read_parquet + ephemeral context + batch.validate) on the same file (target: overhead <= 20%).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SUITE = [
    {"expect_column_values_to_not_be_null": {"column": "id"}},
    {"expect_column_values_to_be_unique": {"column": "id"}},
    {"expect_column_values_to_be_between": {"column": "amount", "min_value": 0, "max_value": 1000}},
    {"expect_column_mean_to_be_between": {"column": "amount", "min_value": 400, "max_value": 600}},
    {"expect_column_values_to_not_be_null": {"column": "score", "mostly": 0.9}},
    {"expect_column_values_to_be_in_set": {"column": "city", "value_set": [f"city_{i}" for i in range(50)]}},
    {"expect_column_values_to_be_of_type": {"column": "quantity", "type_": "int32"}},
    {"expect_column_max_to_be_between": {"column": "quantity", "min_value": 0, "max_value": 100}},
    {"expect_table_row_count_to_be_between": {"min_value": 1}},
    {"expect_column_value_lengths_to_be_between": {"column": "city", "min_value": 6, "max_value": 7}},
]


def generate_parquet(folder: Path, rows: int, files: int) -> int:
    """Synthetic rows (ids, floats, ints, strings, timestamps, nulls) written by DuckDB; returns the bytes."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    per_file = rows // files
    connection = duckdb.connect()
    for index in range(files):
        start = index * per_file
        connection.execute(
            f"""COPY (
                SELECT
                    i AS id,
                    random() * 1000 AS amount,
                    CASE WHEN i % 20 = 0 THEN NULL ELSE random() END AS score,
                    (i % 97)::INTEGER AS quantity,
                    'city_' || (i % 50) AS city,
                    TIMESTAMP '2026-01-01' + to_seconds(i % 31536000) AS event_time,
                    md5(i::VARCHAR) AS token
                FROM range({start}, {start + per_file}) AS t(i)
            ) TO '{folder / f"part-{index:03d}.parquet"}' (FORMAT parquet, ROW_GROUP_SIZE 122880)"""
        )
    connection.close()
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


# -- child processes: one measurement each, so that peak RSS belongs to it alone --------------------------------


def child_register(folder: str, lake_dir: str) -> dict[str, Any]:
    import polars as pl

    import metalake

    lake = metalake.connect(lake_dir, actor="bench")
    # A lake that already holds a dataset: the tables exist, as they do for every registration but the first.
    lake.datasets.register("warm-up", pl.DataFrame({"x": [1]}))
    start = time.perf_counter()
    version = lake.datasets.register("bench", folder)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": version.row_count, "fingerprint": version.fingerprint}


def child_bare_profile(folder: str) -> dict[str, Any]:
    """The same profile query metalake runs (without the fingerprint), straight on DuckDB."""
    import duckdb

    from metalake.datasets.profile import ColumnSchema, profile_select

    files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
    start = time.perf_counter()
    connection = duckdb.connect()
    select = f"SELECT * FROM read_parquet({files!r})"
    schema = [ColumnSchema(str(r[0]), str(r[1])) for r in connection.sql(f"DESCRIBE {select}").fetchall()]
    values = connection.sql(profile_select(select, schema, fingerprint=False)).fetchall()[0]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(values[0])}


def run_child(kind: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# -- part 1 -------------------------------------------------------------------------------------------------------


def bench_register(workdir: Path, gigabytes: float, repeat: int) -> list[str]:
    rows = int(gigabytes * 17_000_000)  # ~60 bytes per row once compressed
    folder = workdir / "data"
    start = time.perf_counter()
    size = generate_parquet(folder, rows, files=max(1, int(gigabytes * 8)))
    generated_s = time.perf_counter() - start
    bare, ours = [], []
    for attempt in range(repeat):  # interleaved, so that a noisy neighbour slows both alike
        bare.append(run_child("bare", str(folder)))
        ours.append(run_child("register", str(folder), str(workdir / f"lake-{attempt}")))
    assert {o["rows"] for o in ours} == {b["rows"] for b in bare} == {rows}
    assert len({o["fingerprint"] for o in ours}) == 1
    bare_s = statistics.median(b["seconds"] for b in bare)
    ours_s = statistics.median(o["seconds"] for o in ours)
    bare_rss = max(b["max_rss_mb"] for b in bare)
    ours_rss = max(o["max_rss_mb"] for o in ours)
    ratio = ours_s / bare_s
    size_mb = size / 1e6
    return [
        f"Data: {rows:,} rows x 7 columns in {len(list(folder.glob('*.parquet')))} Parquet files, "
        f"{size_mb:,.0f} MB (generated in {generated_s:.0f} s). Each measurement runs in its own process "
        f"(median of {repeat}, interleaved; peak RSS = max over the runs, from getrusage).",
        "",
        "| | wall time | throughput | peak RSS | RSS / data size |",
        "|---|---|---|---|---|",
        f"| bare DuckDB profile scan (same aggregates, no fingerprint) | {bare_s:.2f} s "
        f"| {size_mb / bare_s:,.0f} MB/s | {bare_rss:,.0f} MB | {bare_rss / size_mb:.0%} |",
        f"| `lake.datasets.register` (fingerprint + profile + commit) | {ours_s:.2f} s "
        f"| {size_mb / ours_s:,.0f} MB/s | {ours_rss:,.0f} MB | {ours_rss / size_mb:.0%} |",
        f"| **ratio** (target <= 2x, i.e. at least half the speed) | **{ratio:.2f}x** | | "
        f"| {'PASS' if ratio <= 2 else '**FAIL**'} |",
    ]


# -- part 2 -------------------------------------------------------------------------------------------------------


def bench_validate(workdir: Path, rows: int, repeat: int) -> list[str]:
    import pandas as pd
    import yaml

    import metalake
    from metalake.quality.suites import Expectation, gx_suite, import_gx
    from metalake.quality.validation import run_great_expectations

    gx = import_gx()
    folder = workdir / "validate"
    generate_parquet(folder, rows, files=1)
    path = next(folder.glob("*.parquet"))
    suite_path = workdir / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(SUITE))
    lake = metalake.connect(workdir / "validate-lake", actor="bench")
    lake.datasets.register("orders", path)
    needed = sorted(
        {str(kwargs["column"]) for item in SUITE for kwargs in item.values() if "column" in kwargs}
    )

    def bare_gx() -> bool:
        """What a user of GX alone writes: read the file, an ephemeral context, validate the suite."""
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        frame = pd.read_parquet(path, columns=needed)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("bare").add_dataframe_asset("orders")
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frame}
        )
        suite = gx.ExpectationSuite(
            name="bare",
            expectations=[
                ExpectationConfiguration(type=name, kwargs=kwargs).to_domain_obj()
                for item in SUITE
                for name, kwargs in item.items()
            ],
        )
        result = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5}
        )
        return bool(result.success)

    def ours() -> bool:
        return lake.quality.validate("orders", suite=suite_path).success

    # Warm both paths once (imports, first GX context), then interleave.
    bare_gx()
    ours()
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    outcomes: dict[str, bool] = {}
    sides = {"bare": bare_gx, "ours": ours}
    for attempt in range(repeat):
        # Alternate which side goes first, and collect garbage before each, so neither pays for the other.
        for side in ("bare", "ours") if attempt % 2 == 0 else ("ours", "bare"):
            gc.collect()
            start = time.perf_counter()
            outcomes[side] = sides[side]()
            times[side].append(time.perf_counter() - start)
        assert outcomes["bare"] == outcomes["ours"]
    bare_times, our_times = times["bare"], times["ours"]
    # The engine alone, on a frame already in memory, to show where metalake's time goes.
    frame = pd.read_parquet(path, columns=needed)
    loaded = gx_suite("engine", [Expectation(n, dict(k)) for item in SUITE for n, k in item.items()])
    engine_times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_great_expectations(loaded, frame)
        engine_times.append(time.perf_counter() - start)
    bare_s, ours_s = statistics.median(bare_times), statistics.median(our_times)
    overhead = ours_s / bare_s - 1
    return [
        f"Data: {rows:,} rows x 7 columns, one Parquet file; 10 expectations over 5 columns. "
        f"Median of {repeat} warm runs, interleaved (alternating which side goes first, gc before each).",
        "",
        "| | wall time |",
        "|---|---|",
        f"| bare GX 1.x: `pd.read_parquet(columns)` + ephemeral context + `batch.validate(suite)` | {bare_s:.2f} s |",
        "| `lake.quality.validate` (suite check, version look-up, read via DuckDB, GX, 2 commits) "
        f"| {ours_s:.2f} s |",
        f"| (GX run alone inside metalake, frame already in memory) | {statistics.median(engine_times):.2f} s |",
        f"| **overhead** (target <= 20%) | **{overhead:+.1%}** {'PASS' if overhead <= 0.2 else '**FAIL**'} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gigabytes", type=float, default=1.0, help="Size of the generated Parquet data.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows for the validation benchmark.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", default="register,validate")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        outcome = child_register(*rest) if kind == "register" else child_bare_profile(*rest)
        outcome["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(outcome))
        return
    from _common import record

    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-datasets-"))
    command = "python bench/bench_datasets.py " + " ".join(sys.argv[1:])
    try:
        lines: list[str] = []
        if "register" in args.parts:
            lines += [
                "### Register a Parquet dataset",
                "",
                *bench_register(workdir, args.gigabytes, args.repeat),
                "",
            ]
        if "validate" in args.parts:
            lines += ["### Validate 10 expectations", "", *bench_validate(workdir, args.rows, args.repeat)]
        record("Datasets and data quality (bench/bench_datasets.py)", command.strip(), lines)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
