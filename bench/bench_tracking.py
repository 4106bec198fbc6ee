"""Experiment tracking against MLflow 3 on SQLite: logging throughput, scaling, bulk import, queries, memory.

Workload W: `--runs` runs in 5 experiments; each run has 20 params, 5 tags and 10 metrics x 100 steps (1,000
points). Run i's values come from a generator seeded with (SEED, i), so W of 200 runs is a prefix of W of 2,000.
Every part is measured side by side in one process and reported as ratios:

- log: MLflow `MlflowClient.log_batch` (create_run, log_batch chunked at 1,000 entities, set_terminated) vs
  metalake per-run logging (`with lake.runs.start(...)`, `log_params`, `log_metrics` once per step).
- scale: metalake per-run logging of `--scale-runs` runs vs `--runs` runs, each on a fresh lake.
- import: W written as one `lake.append` per table (params, run_tags, metrics, metric_summaries, runs).
- query: W at `--query-runs` runs in a compacted lake vs MLflow's SQLite store, as is and after ANALYZE.
- memory: peak RSS of a child process logging `--memory-points` points in one run with default flushing.

`--profile` adds cProfile listings of metalake's side (separate, untimed calls); commit threads included.
Quick try: `python bench/bench_tracking.py --runs 20 --scale-runs 60 --query-runs 100
--memory-points 200000 --no-record`.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _common import median_ms, publish

import metalake
from metalake.core.ids import new_id as new_run_id
from metalake.tracking.summaries import summarize_frame

SEED = 20261126
EXPERIMENTS = [f"exp-{i}" for i in range(5)]
PARAMS, TAGS, METRICS, STEPS = 20, 5, 10, 100
METRIC_KEYS = [f"m{i}" for i in range(METRICS)]
POINTS_PER_RUN = METRICS * STEPS
MLFLOW_BATCH_ENTITIES = 1000  # MLflow's limit on metrics + params + tags in one log_batch call
IMPORT_CHUNK_RUNS = 50
BASE_TIME_MS = 1_764_000_000_000  # runs of the query lake start one minute apart from here
PARTS = ("log", "scale", "import", "query", "memory")


@dataclass(frozen=True)
class RunData:
    """One run of the workload: where it belongs, its params and tags, and values[step][metric]."""

    index: int
    experiment: str
    name: str
    params: dict[str, str]
    tags: dict[str, str]
    values: np.ndarray
    start_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + STEPS * 1000


def summarize_points(points: pa.Table, flush_id: str) -> pa.Table:
    """One metric_summaries row per (run, key) of a batch of points, tagged with the flush that wrote it."""
    import polars as pl

    frame = pl.from_arrow(points)
    assert isinstance(frame, pl.DataFrame)
    return summarize_frame(frame).with_columns(pl.lit(flush_id).alias("flush_id")).to_arrow()


def workload(runs: int) -> list[RunData]:
    return [run_data(i) for i in range(runs)]


def run_data(index: int) -> RunData:
    rng = np.random.default_rng([SEED, index])
    return RunData(
        index=index,
        experiment=EXPERIMENTS[index % len(EXPERIMENTS)],
        name=f"run-{index:05d}",
        params={f"p{k:02d}": f"{value:.6f}" for k, value in enumerate(rng.random(PARAMS))},
        tags={f"t{k}": f"tag-{value}" for k, value in enumerate(rng.integers(0, 4, TAGS))},
        values=rng.random((STEPS, METRICS)),
        start_ms=BASE_TIME_MS + index * 60_000,
    )


def progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


# -- MLflow ---------------------------------------------------------------------------------------------------


def mlflow_client(db: Path) -> Any:
    """A client on a SQLite store; the schema is created (migrations run) here, outside any timing."""
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after the import, which configures it
    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    client.search_experiments()
    return client


def mlflow_experiments(client: Any) -> dict[str, str]:
    return {name: client.create_experiment(name) for name in EXPERIMENTS}


def mlflow_log(
    client: Any, experiment_ids: dict[str, str], runs: list[RunData], *, live: bool
) -> dict[str, str]:
    """Each run as create_run, log_batch (params + tags + metrics, chunked), set_terminated; returns name -> id.

    `live` stamps points with the wall clock at each step (as a training loop would); otherwise the workload's
    fixed times are used, so that the MLflow store and the lake hold identical data.
    """
    from mlflow.entities import Metric, Param, RunTag

    ids = {}
    for run in runs:
        created = client.create_run(
            experiment_ids[run.experiment], run_name=run.name, start_time=None if live else run.start_ms
        )
        run_id = created.info.run_id
        params = [Param(key, value) for key, value in run.params.items()]
        tags = [RunTag(key, value) for key, value in run.tags.items()]
        metrics = []
        for step, row in enumerate(run.values.tolist()):
            stamp = int(time.time() * 1000) if live else run.start_ms + step * 1000
            metrics.extend(
                Metric(key, value, stamp, step) for key, value in zip(METRIC_KEYS, row, strict=True)
            )
        first = MLFLOW_BATCH_ENTITIES - len(params) - len(tags)
        client.log_batch(run_id, metrics=metrics[:first], params=params, tags=tags)
        for start in range(first, len(metrics), MLFLOW_BATCH_ENTITIES):
            client.log_batch(run_id, metrics=metrics[start : start + MLFLOW_BATCH_ENTITIES])
        client.set_terminated(run_id, end_time=None if live else run.end_ms)
        ids[run.name] = run_id
    return ids


# -- metalake -------------------------------------------------------------------------------------------------


def metalake_log(lake: metalake.Lake, runs: list[RunData], *, wait_each: bool = False) -> None:
    """Per-run logging, as a training script does it: one step's metrics per call, default flushing.

    Ends only when every run is committed (`lake.runs.wait()`). `wait_each=True` makes each run's end wait
    for its own commit (no grouping across sequential runs), as separate jobs would see it.
    """
    for run in runs:
        with lake.runs.start(
            experiment=run.experiment, name=run.name, tags=run.tags, wait=wait_each
        ) as tracked:
            tracked.log_params(run.params)
            for step, row in enumerate(run.values.tolist()):
                tracked.log_metrics(dict(zip(METRIC_KEYS, row, strict=True)), step=step)
    lake.runs.wait()


def import_batches(runs: list[RunData], run_ids: list[str], flush_id: str) -> list[tuple[str, Any]]:
    """The runs as one batch per table, facts first and the 'finished' run events last."""
    count = len(runs)
    ids = pa.array(run_ids, pa.string())

    def key_values(attribute: str) -> pa.Table:
        pairs = [(key, value) for run in runs for key, value in getattr(run, attribute).items()]
        per_run = len(pairs) // count
        return pa.table(
            {
                "run_id": ids.take(np.repeat(np.arange(count), per_run)),
                "key": [key for key, _ in pairs],
                "value": [value for _, value in pairs],
            }
        )

    start_us = np.array([run.start_ms for run in runs], dtype=np.int64) * 1000
    steps = np.tile(np.repeat(np.arange(STEPS, dtype=np.int64), METRICS), count)
    points = pa.table(
        {
            "run_id": ids.take(np.repeat(np.arange(count), POINTS_PER_RUN)),
            "key": pa.array(METRIC_KEYS, pa.string()).take(np.tile(np.arange(METRICS), count * STEPS)),
            "value": pa.array(np.stack([run.values for run in runs]).reshape(-1), pa.float64()),
            "step": pa.array(steps, pa.int64()),
            "timestamp": pa.array(
                np.repeat(start_us, POINTS_PER_RUN) + steps * 1_000_000, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    end_times = [datetime.fromtimestamp(run.end_ms / 1000, UTC) for run in runs]
    events = pa.table(
        {
            "event_id": [f"{run_id}:finished" for run_id in run_ids],
            "run_id": ids,
            "experiment": [run.experiment for run in runs],
            "name": [run.name for run in runs],
            "status": ["finished"] * count,
            "start_time": pa.array(start_us, pa.timestamp("us", tz="UTC")),
            "end_time": pa.array(end_times, pa.timestamp("us", tz="UTC")),
            "event_time": pa.array(end_times, pa.timestamp("us", tz="UTC")),
        }
    )
    return [
        ("params", key_values("params")),
        ("run_tags", key_values("tags")),
        ("metrics", points),
        ("metric_summaries", summarize_points(points, flush_id)),
        ("runs", events),
    ]


def metalake_import(lake: metalake.Lake, runs: list[RunData], flush_id: str) -> list[str]:
    """One `lake.append` per table for all `runs`; returns their run ids."""
    run_ids = [new_run_id() for _ in runs]
    for table, batch in import_batches(runs, run_ids, flush_id):
        lake.append(table, batch, operation="import")
    return run_ids


def maintain_lake(root: Path) -> int:
    """`metalake maintain` on the lake (metrics clustered by key and run, other tables compacted); returns tables done."""
    done = metalake.connect(root, actor="bench").maintain()
    return sum(1 for result in done if result.action not in ("up to date", "missing"))


# -- profiling ------------------------------------------------------------------------------------------------


def profile(label: str, action: Callable[[], object], lake: metalake.Lake, top: int = 25) -> None:
    """Print where `action` spends its time: the main thread, then the threads that commit tables.

    metalake commits a flush's tables from a thread pool, which cProfile on the main thread would see only as
    waiting; so `lake._append` is wrapped, on this lake object only, to profile each worker thread's commits.
    """
    workers: dict[int, cProfile.Profile] = {}
    original = lake._append

    def traced_append(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            return original(*args, **kwargs)
        profiler = workers.setdefault(threading.get_ident(), cProfile.Profile())
        profiler.enable()
        try:
            return original(*args, **kwargs)
        finally:
            profiler.disable()

    lake._append = traced_append  # type: ignore[method-assign]
    main = cProfile.Profile()
    try:
        main.enable()
        action()
    finally:
        main.disable()
        del lake._append
    print(f"\n==== profile: {label} (main thread, by cumulative time) ====")
    pstats.Stats(main).sort_stats("cumulative").print_stats(top)
    if workers:
        merged = pstats.Stats(*workers.values())
        print(f"==== profile: {label} (commit threads, {len(workers)}, by cumulative time) ====")
        merged.sort_stats("cumulative").print_stats(top)
        print(f"==== profile: {label} (commit threads, by own time) ====")
        merged.sort_stats("tottime").print_stats(top)


# -- parts ----------------------------------------------------------------------------------------------------


def verdict(passed: bool) -> str:
    return "PASS" if passed else "**FAIL**"


def rate(points: float, seconds: float) -> str:
    per_second = points / seconds
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    return f"{per_second / 1e3:.1f} k/s"


def mlflow_baseline(workdir: Path, runs: list[RunData]) -> float:
    """Seconds for MLflow to log the workload on a fresh SQLite store (after a warm-up on another store)."""
    warm = mlflow_client(workdir / "mlflow-warm.db")
    mlflow_log(warm, mlflow_experiments(warm), workload(2), live=True)
    client = mlflow_client(workdir / "mlflow-log.db")
    experiment_ids = mlflow_experiments(client)
    progress(f"MLflow log_batch: {len(runs)} runs")
    seconds, _ = timed(lambda: mlflow_log(client, experiment_ids, runs, live=True))
    return seconds


def fresh_lake(workdir: Path, name: str) -> metalake.Lake:
    return metalake.connect(workdir / name, actor="bench")


def part_log_and_import(args: argparse.Namespace, workdir: Path, parts: set[str]) -> list[str]:
    runs = workload(args.runs)
    points = len(runs) * POINTS_PER_RUN
    mlflow_s = mlflow_baseline(workdir, runs)
    progress(f"MLflow: {mlflow_s:.1f} s ({rate(points, mlflow_s)})")
    lines = [
        f"Workload W: {len(runs)} runs, {points:,} points. Each side warmed up on a throwaway store first.",
        "",
        "| writer | wall time | points/s | vs MLflow | target | result |",
        "|---|---|---|---|---|---|",
        f"| MLflow 3 `log_batch`, fresh SQLite store | {mlflow_s:.2f} s | {rate(points, mlflow_s)} | 1.0x | | |",
    ]
    if "log" in parts:
        metalake_log(fresh_lake(workdir, "lake-warm"), workload(2))
        lake = fresh_lake(workdir, "lake-log")
        progress(f"metalake per-run logging: {len(runs)} runs")
        seconds, _ = timed(lambda: metalake_log(lake, runs))
        ratio = mlflow_s / seconds
        progress(f"metalake per-run logging: {seconds:.1f} s ({ratio:.1f}x MLflow)")
        lines.append(
            f"| metalake per-run logging (`lake.runs.start`, `log_metrics` per step; group commit, "
            f"all committed at the end) | {seconds:.2f} s | {rate(points, seconds)} | **{ratio:.1f}x** | "
            f">= 10x (aim 20x) | {verdict(ratio >= 10)} |"
        )
        lines += journal_overhead(workdir, runs, points, args.repeat_journal)
        lake = fresh_lake(workdir, "lake-log-wait")
        progress(f"metalake per-run logging, each run waiting for its commit: {len(runs)} runs")
        seconds, _ = timed(lambda: metalake_log(lake, runs, wait_each=True))
        ratio = mlflow_s / seconds
        progress(f"metalake per-run logging (wait=True): {seconds:.1f} s ({ratio:.1f}x MLflow)")
        lines.append(
            f"| metalake per-run logging, `start(..., wait=True)`: each run's end waits for its own commits "
            f"(as separate jobs see it) | {seconds:.2f} s | {rate(points, seconds)} | {ratio:.1f}x | "
            "(reference) | |"
        )
        if args.profile:
            profile_runs = runs[: min(len(runs), 50)]
            profiled = fresh_lake(workdir, "lake-log-profile")
            profile(
                f"per-run logging, {len(profile_runs)} runs",
                lambda: metalake_log(profiled, profile_runs),
                profiled,
            )
    if "import" in parts:
        lake = fresh_lake(workdir, "lake-import-warm")
        metalake_import(lake, workload(2), "import:warm")
        lake = fresh_lake(workdir, "lake-import")
        progress(f"metalake import: {len(runs)} runs")
        seconds, _ = timed(lambda: metalake_import(lake, runs, "import:W"))
        ratio = mlflow_s / seconds
        progress(f"metalake import: {seconds:.2f} s ({ratio:.0f}x MLflow)")
        lines.append(
            f"| metalake import, one `lake.append` per table (5 commits) | {seconds:.3f} s | "
            f"{rate(points, seconds)} | **{ratio:.0f}x** | >= 100x | {verdict(ratio >= 100)} |"
        )
        if args.profile:
            profiled = fresh_lake(workdir, "lake-import-profile")
            profile("import", lambda: metalake_import(profiled, runs, "import:W"), profiled)
    return lines


def journal_overhead(workdir: Path, runs: list[RunData], points: int, repeat: int) -> list[str]:
    """Per-run logging with the local journal on and off, alternated `repeat` times on fresh lakes (medians)."""
    import os
    import statistics

    times: dict[str, list[float]] = {"on": [], "off": []}
    for attempt in range(repeat):
        for mode in ("on", "off") if attempt % 2 == 0 else ("off", "on"):
            lake = fresh_lake(workdir, f"lake-journal-{mode}-{attempt}")
            previous = os.environ.get("METALAKE_JOURNAL")
            if mode == "off":
                os.environ["METALAKE_JOURNAL"] = "off"
            else:
                os.environ["METALAKE_JOURNAL"] = str(workdir / "journal")
            try:
                seconds, _ = timed(lambda lake=lake: metalake_log(lake, runs))
            finally:
                if previous is None:
                    os.environ.pop("METALAKE_JOURNAL", None)
                else:
                    os.environ["METALAKE_JOURNAL"] = previous
            times[mode].append(seconds)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    extra = (on / off - 1) * 100
    progress(f"journal on {on:.2f} s, off {off:.2f} s: {extra:+.1f}%")
    return [
        f"| metalake per-run logging, local journal **on** (median of {repeat}, alternated) | {on:.2f} s | "
        f"{rate(points, on)} | | | |",
        f"| metalake per-run logging, local journal **off** (`METALAKE_JOURNAL=off`) | {off:.2f} s | "
        f"{rate(points, off)} | | | |",
        f"| cost of the journal on per-run logging | **{extra:+.1f}%** | | | <= +10% | {verdict(extra <= 10)} |",
    ]


def part_scale(args: argparse.Namespace, workdir: Path) -> list[str]:
    small, large = workload(args.runs), workload(args.scale_runs)
    metalake_log(fresh_lake(workdir, "lake-scale-warm"), workload(2))
    lake = fresh_lake(workdir, "lake-scale-small")
    progress(f"scaling: {len(small)} runs")
    small_s, _ = timed(lambda: metalake_log(lake, small))
    lake = fresh_lake(workdir, "lake-scale-large")
    window = len(small)
    windows: list[float] = []
    progress(f"scaling: {len(large)} runs")
    for start in range(0, len(large), window):
        seconds, _ = timed(lambda start=start: metalake_log(lake, large[start : start + window]))
        windows.append(seconds)
        progress(f"scaling: runs {start + window}/{len(large)}, last {window} in {seconds:.1f} s")
    large_s = sum(windows)
    ratio = large_s / small_s
    allowed = 1.1 * len(large) / len(small)
    first_ms, last_ms = windows[0] / window * 1000, windows[-1] / window * 1000
    lines = [
        f"Per-run logging of W on fresh lakes; target: {len(large)} runs take <= {allowed:.0f}x the time of "
        f"{len(small)} (at most 10% slower per run).",
        "",
        "| runs | wall time | ms per run | points/s | time ratio | target | result |",
        "|---|---|---|---|---|---|---|",
        f"| {len(small)} | {small_s:.1f} s | {small_s / len(small) * 1000:.1f} | "
        f"{rate(len(small) * POINTS_PER_RUN, small_s)} | 1.0x | | |",
        f"| {len(large)} | {large_s:.1f} s | {large_s / len(large) * 1000:.1f} | "
        f"{rate(len(large) * POINTS_PER_RUN, large_s)} | **{ratio:.2f}x** | <= {allowed:.0f}x | "
        f"{verdict(ratio <= allowed)} |",
        f"| within the {len(large)}: first {window} vs last {window} runs | | {first_ms:.1f} -> {last_ms:.1f} | "
        f"| {last_ms / first_ms:.2f}x per run | | |",
    ]
    if args.profile:
        extra = workload(len(large) + 50)[len(large) :]
        profile(
            f"per-run logging of 50 more runs into the {len(large)}-run lake",
            lambda: metalake_log(lake, extra),
            lake,
        )
    return lines


def part_query(args: argparse.Namespace, workdir: Path) -> list[str]:
    runs = workload(args.query_runs)
    root = workdir / "lake-query"
    lake = metalake.connect(root, actor="bench")
    progress(f"query: building the lake ({len(runs)} runs, {args.query_build})")
    if args.query_build == "log":
        metalake_log(lake, runs)
        build = "per-run logging"
    else:
        for start in range(0, len(runs), IMPORT_CHUNK_RUNS):
            metalake_import(lake, runs[start : start + IMPORT_CHUNK_RUNS], f"import:{start}")
        build = f"the import path in chunks of {IMPORT_CHUNK_RUNS} runs (5 commits per chunk)"
    maintained = maintain_lake(root)
    lake = metalake.connect(root, actor="bench")
    db = workdir / "mlflow-query.db"
    client = mlflow_client(db)
    progress(f"query: building the MLflow store ({len(runs)} runs)")
    mlflow_ids = mlflow_log(client, mlflow_experiments(client), runs, live=False)
    analyzed_db = workdir / "mlflow-query-analyzed.db"
    shutil.copyfile(db, analyzed_db)
    with sqlite3.connect(analyzed_db) as connection:
        connection.execute("ANALYZE")
    analyzed = mlflow_client(analyzed_db)
    experiment_ids = {e.name: e.experiment_id for e in client.search_experiments()}

    lake_ids = dict(lake.sql("select name, run_id from runs_current").fetchall())
    sample = sorted(np.random.default_rng([SEED, 1]).choice(len(runs), 50, replace=False).tolist())
    names = [runs[i].name for i in sample]
    one = runs[len(runs) // 2].name
    experiment = EXPERIMENTS[0]

    def lake_search() -> list[str]:
        found = lake.runs.search(experiment=experiment, where="metrics.m0 > 0.5", order_by="metrics.m1 desc")
        return found.get_column("name").to_list()

    def mlflow_search(store: Any) -> list[str]:
        found = store.search_runs(
            [experiment_ids[experiment]],
            filter_string="metrics.m0 > 0.5",
            order_by=["metrics.m1 DESC"],
            max_results=1000,
        )
        return [run.info.run_name for run in found]

    def lake_history() -> int:
        return lake.runs.metric_history([lake_ids[name] for name in names], "m0").height

    def mlflow_history(store: Any) -> int:
        return sum(len(store.get_metric_history(mlflow_ids[name], "m0")) for name in names)

    def lake_best() -> list[tuple[str, str]]:
        rows = lake.sql("select * from leaderboard where metric='m0' and direction='max'").fetchall()
        return sorted((row[0], row[4]) for row in rows)

    def mlflow_best(store: Any) -> list[tuple[str, str]]:
        best = []
        for name in EXPERIMENTS:
            top = store.search_runs([experiment_ids[name]], order_by=["metrics.m0 DESC"], max_results=1)
            best.append((name, top[0].info.run_name))
        return sorted(best)

    def lake_get() -> int:
        return len(lake.runs.get(lake_ids[one]).params)

    def mlflow_get(store: Any) -> int:
        return len(store.get_run(mlflow_ids[one]).data.params)

    queries = [
        (
            "a. search: `metrics.m0 > 0.5`, order by `metrics.m1 desc`, one experiment",
            lake_search,
            mlflow_search,
        ),
        ("b. history of metric m0 for 50 runs", lake_history, mlflow_history),
        ("c. best run per experiment on m0 (leaderboard)", lake_best, mlflow_best),
        ("d. one run by id", lake_get, mlflow_get),
    ]
    lines = [
        f"W at {len(runs)} runs ({len(runs) * POINTS_PER_RUN:,} points). The lake is built by {build}, then "
        f"`lake.maintain()` (= `metalake maintain`: metrics clustered by key and run, {maintained} tables rewritten). "
        "The MLflow store holds the same data "
        "(log_batch); 'analyzed' is a copy of its SQLite file after `ANALYZE`. Median of "
        f"{args.repeat} warm repeats.",
        "",
        "| query | metalake | MLflow | MLflow analyzed | speed-up vs analyzed | target | result | same answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    analyzed_by_label: dict[str, float] = {}
    for label, on_lake, on_mlflow in queries:
        answers = [on_lake(), on_mlflow(client), on_mlflow(analyzed)]  # also the warm-up
        lake_ms = median_ms(on_lake, args.repeat)
        mlflow_ms = median_ms(lambda f=on_mlflow: f(client), args.repeat)
        analyzed_ms = median_ms(lambda f=on_mlflow: f(analyzed), args.repeat)
        speedup = analyzed_ms / lake_ms
        analyzed_by_label[label[:2]] = analyzed_ms
        if label.startswith("d."):
            target, passed = "< 5 ms", lake_ms < 5
        else:
            target, passed = ">= 5x", speedup >= 5
        same = "yes" if answers[0] == answers[1] == answers[2] else f"**no** ({answers[0]!r:.60} ...)"
        progress(f"query {label[:2]} lake {lake_ms:.1f} ms, MLflow {mlflow_ms:.1f} / {analyzed_ms:.1f} ms")
        lines.append(
            f"| {label} | {lake_ms:.1f} ms | {mlflow_ms:.1f} ms | {analyzed_ms:.1f} ms | **{speedup:.1f}x** | "
            f"{target} | {verdict(passed)} | {same} |"
        )
        if args.profile:
            profile(f"query {label}", lambda f=on_lake: [f() for _ in range(args.repeat)], lake)
    cold_ms = first_query_after_a_commit(lake, lake_best, args.repeat)
    best_analyzed_ms = analyzed_by_label["c."]
    lines.append(
        "| c'. the same leaderboard query right after a new run was committed (its stored result recomputed) | "
        f"{cold_ms:.1f} ms | | {best_analyzed_ms:.1f} ms | {best_analyzed_ms / cold_ms:.1f}x | (reference) | | |"
    )
    return lines


def first_query_after_a_commit(lake: metalake.Lake, query: Callable[[], object], repeat: int) -> float:
    """Median time of `query` when each call follows a new commit (a one-point run in another experiment)."""
    times = []
    for index in range(repeat):
        with lake.runs.start(experiment="bench-other", name=f"extra-{index}", wait=True) as run:
            run.log_metric("other", 1.0)
        start = time.perf_counter()
        query()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000


def memory_child(points: int) -> None:
    """Log `points` points into one run of a fresh lake; print RSS figures as JSON (run as a subprocess)."""
    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-memory-"))
    try:
        lake = metalake.connect(workdir / "lake", actor="bench")
        with lake.runs.start(experiment="warm") as warm:  # imports what a flush needs: part of the baseline
            warm.log_metric("m0", 0.0)
        baseline = current_rss()
        values = np.random.default_rng([SEED, 2]).random(METRICS).tolist()
        steps = points // METRICS
        start = time.perf_counter()
        with lake.runs.start(experiment="memory", name="many-points") as run:
            for step in range(steps):
                run.log_metrics(dict(zip(METRIC_KEYS, values, strict=True)), step=step)
        seconds = time.perf_counter() - start
        peak = peak_rss()
        stored = lake.sql("select count(*) from metrics where run_id = ?", [run.run_id]).fetchall()[0][0]
        result = {
            "points": steps * METRICS,
            "stored": stored,
            "seconds": seconds,
            "baseline_rss": baseline,
            "peak_rss": peak,
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def current_rss() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize()


def peak_rss() -> int:
    """This process's peak RSS (VmHWM), in bytes.

    Not `getrusage().ru_maxrss`: Linux carries that over from the parent through fork and exec, so a child of
    this (large) benchmark process would report the parent's size.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def part_memory(args: argparse.Namespace) -> list[str]:
    progress(f"memory: logging {args.memory_points:,} points in a child process")
    child = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(args.memory_points)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb, baseline_mb = figures["peak_rss"] / 2**20, figures["baseline_rss"] / 2**20
    complete = figures["stored"] == figures["points"]
    return [
        f"One run logs {figures['points']:,} points (`log_metrics` of 10 metrics per step, default flushing) "
        "in a child process; peak RSS is the child's VmHWM.",
        "",
        "| what | value | target | result |",
        "|---|---|---|---|",
        f"| peak RSS of the process | **{peak_mb:.0f} MB** | < 500 MB | {verdict(peak_mb < 500)} |",
        f"| RSS after imports and a first flush (baseline) | {baseline_mb:.0f} MB | | |",
        f"| logging throughput | {rate(figures['points'], figures['seconds'])} "
        f"({figures['seconds']:.1f} s) | | |",
        f"| points in the lake afterwards | {figures['stored']:,} | all | {verdict(complete)} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--runs", type=int, default=200, help="runs in W (log, import; small side of scale)")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True, help="run 'scale'")
    parser.add_argument("--scale-runs", type=int, default=2000, help="large side of the scaling part")
    parser.add_argument("--query-runs", type=int, default=2000)
    parser.add_argument("--query-build", choices=["import", "log"], default="log")
    parser.add_argument("--repeat", type=int, default=7, help="repeats per query (median)")
    parser.add_argument(
        "--repeat-journal", type=int, default=3, help="journal on/off pairs for the journal's cost (median)"
    )
    parser.add_argument("--memory-points", type=int, default=10_000_000)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="print cProfile listings of metalake's side")
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures, do not append RESULTS.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the lakes and stores (path printed)")
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if not args.scaling:
        parts.discard("scale")

    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-tracking-"))
    sections: list[str] = []
    try:
        if parts & {"log", "import"}:
            sections += [
                "### Logging and import throughput",
                "",
                *part_log_and_import(args, workdir, parts),
                "",
            ]
        if "scale" in parts:
            sections += ["### Scaling of per-run logging", "", *part_scale(args, workdir), ""]
        if "query" in parts:
            sections += ["### Queries", "", *part_query(args, workdir), ""]
        if "memory" in parts:
            sections += ["### Memory", "", *part_memory(args), ""]
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    title = "Experiment tracking vs MLflow 3 (bench/bench_tracking.py)"
    publish(title, "bench/bench_tracking.py", sections, no_record=args.no_record)


if __name__ == "__main__":
    main()
