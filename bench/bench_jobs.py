"""A training job's fixed cost: many short jobs, each its own process, metalake vs MLflow 3 on SQLite.

One job = one process that logs one run: 5 params and 100 steps x 10 metrics (`log_metrics` once per step),
then ends the run and waits until everything is stored. Each system's job as its users write it:

- metalake: `metalake.connect(lake)`, `lake.runs.start(...)`, `log_params`, `log_metrics`, `run.end()`,
  `lake.runs.wait()`.
- MLflow sync: `mlflow.set_tracking_uri("sqlite:///...")`, `set_experiment`, `start_run`, `log_params`,
  `log_metrics(..., step=)`, `end_run`.
- MLflow async: the same after `mlflow.config.enable_async_logging()`, then `mlflow.flush_async_logging()`.

`--jobs` jobs run one after another, then the same number again with `--concurrent` at a time. Per job: the time
spent importing the library, the time blocked in the logging calls (`log_params` + `log_metrics`), the time
blocked in everything after the import (open/connect, start, log, end, wait), and the whole job's wall time
(process start to exit, measured by the parent); medians, and MLflow's figure / metalake's as the ratio.
The lake and the MLflow database (schema migrations, experiment) are created once before any timing, and one
untimed job of each kind warms the file cache and writes the bytecode caches. Quick try:
`python bench/bench_jobs.py --jobs 3 --concurrent 2 --no-record`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import publish

EXPERIMENT = "jobs"
STEPS, METRICS = 100, 10
PARAMS = {"lr": 0.01, "depth": 6, "batch_size": 64, "optimizer": "adam", "seed": 7}
KINDS = ("metalake", "mlflow-sync", "mlflow-async")
TARGET_RATIO = 3.0  # metalake's whole job at least 3x faster than MLflow's synchronous one


def metric_values(step: int) -> dict[str, float]:
    return {f"m{i}": (step + 1) / (i + 1) for i in range(METRICS)}


# -- one job (a child process) --------------------------------------------------------------------------------


def metalake_job(store: str, index: int) -> dict[str, float]:
    began = time.perf_counter()
    import metalake

    imported = time.perf_counter()
    lake = metalake.connect(store)
    run = lake.runs.start(experiment=EXPERIMENT, name=f"job-{index}")
    logging = time.perf_counter()
    run.log_params(PARAMS)
    for step in range(STEPS):
        run.log_metrics(metric_values(step), step=step)
    logged = time.perf_counter()
    run.end()
    lake.runs.wait()
    done = time.perf_counter()
    return {"import": imported - began, "log_calls": logged - logging, "after_import": done - imported}


def mlflow_job(store: str, index: int, *, asynchronous: bool) -> dict[str, float]:
    began = time.perf_counter()
    import mlflow

    imported = time.perf_counter()
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    if asynchronous:
        mlflow.config.enable_async_logging(True)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"job-{index}"):
        logging = time.perf_counter()
        mlflow.log_params(PARAMS)
        for step in range(STEPS):
            mlflow.log_metrics(metric_values(step), step=step)
        logged = time.perf_counter()
        if asynchronous:
            mlflow.flush_async_logging()
    done = time.perf_counter()
    return {"import": imported - began, "log_calls": logged - logging, "after_import": done - imported}


def child(kind: str, store: str, index: int) -> None:
    import logging

    logging.disable(logging.WARNING)  # MLflow's notices would only add printing time
    if kind == "metalake":
        figures = metalake_job(store, index)
    else:
        figures = mlflow_job(store, index, asynchronous=kind == "mlflow-async")
    print(json.dumps(figures))


# -- the parent -----------------------------------------------------------------------------------------------


def prepare_stores(workdir: Path) -> dict[str, str]:
    """The lake and the MLflow database (migrations run, experiment created), in a child process each."""
    lake, database = workdir / "lake", workdir / "mlflow.db"
    setup_lake = f"import metalake; metalake.connect({str(lake)!r}).close()"
    setup_mlflow = (
        "import logging, mlflow; logging.disable(logging.WARNING); "
        f"mlflow.set_tracking_uri('sqlite:///{database}'); mlflow.set_experiment({EXPERIMENT!r})"
    )
    subprocess.run([sys.executable, "-c", setup_lake], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", setup_mlflow], check=True, capture_output=True)
    return {"metalake": str(lake), "mlflow-sync": str(database), "mlflow-async": str(database)}


def run_job(kind: str, store: str, index: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", kind, "--store", store, "--index", str(index)]
    began = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - began
    if finished.returncode != 0:
        raise SystemExit(f"{kind} job {index} failed:\n{finished.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(finished.stdout.strip().splitlines()[-1])
    return {**figures, "wall": wall}


def run_batch(
    kind: str, store: str, jobs: int, at_once: int, env: dict[str, str], cwd: Path, first: int
) -> tuple[list[dict[str, float]], float]:
    """`jobs` jobs, `at_once` at a time; each job's figures and the batch's wall time."""
    from concurrent.futures import ThreadPoolExecutor  # here: a job's process need not import it

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        futures = [pool.submit(run_job, kind, store, first + i, env, cwd) for i in range(jobs)]
        results = [future.result() for future in futures]
    return results, time.perf_counter() - began


def median_of(results: list[dict[str, float]], figure: str) -> float:
    return statistics.median(result[figure] for result in results)


def stored_points(stores: dict[str, str]) -> dict[str, int]:
    """Metric points in the lake and in the MLflow database after every job (a check that nothing was lost)."""
    import sqlite3

    import metalake

    lake = metalake.connect(stores["metalake"])
    in_lake = lake.sql("select count(*) from metrics").fetchall()[0][0]
    lake.close()
    with sqlite3.connect(stores["mlflow-sync"]) as database:
        in_mlflow = database.execute("select count(*) from metrics").fetchone()[0]
    return {"metalake": int(in_lake), "mlflow": int(in_mlflow)}


def table(
    results: dict[str, list[dict[str, float]]], batch_walls: dict[str, float], bare_s: float
) -> list[str]:
    rows = [
        "| per job (median) | metalake | MLflow sync | MLflow async | sync / metalake | async / metalake |",
        "|---|---|---|---|---|---|",
    ]
    figures = [
        ("import of the library", "import"),
        ("blocked in `log_params` + `log_metrics`", "log_calls"),
        ("blocked after the import (connect .. wait)", "after_import"),
        ("**whole job** (process start to exit)", "wall"),
    ]
    for label, figure in figures:
        ours, sync, asynchronous = (median_of(results[kind], figure) for kind in KINDS)
        rows.append(
            f"| {label} | {ours * 1000:.0f} ms | {sync * 1000:.0f} ms | {asynchronous * 1000:.0f} ms "
            f"| **{sync / ours:.1f}x** | {asynchronous / ours:.1f}x |"
        )
    ours, sync, asynchronous = (batch_walls[kind] for kind in KINDS)
    rows.append(
        f"| all jobs of the batch, wall time | {ours:.2f} s | {sync:.2f} s | {asynchronous:.2f} s "
        f"| {sync / ours:.1f}x | {asynchronous / ours:.1f}x |"
    )
    rows.append(f"| (`python -c pass`, for scale) | {bare_s * 1000:.0f} ms | | | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs per system and per mode (default 8)")
    parser.add_argument(
        "--concurrent", type=int, default=2, help="jobs at a time in the concurrent mode (default 2: 2 cores)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures, do not append RESULTS.md"
    )
    parser.add_argument("--label", default="", help="Added to the title in RESULTS.md, e.g. 'before'.")
    parser.add_argument("--keep", action="store_true", help="keep the lake and the database (path printed)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.store, args.index)
        return
    if args.jobs < 1 or args.concurrent < 1:
        parser.error("--jobs and --concurrent must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="metalake-bench-jobs-"))
    env = {**os.environ}
    env.pop(
        "PYTHONDONTWRITEBYTECODE", None
    )  # as users run jobs: with bytecode cached (the warm-up writes it)
    sections: list[str] = []
    try:
        stores = prepare_stores(workdir)
        cwd = workdir  # outside any git work tree, the same for both systems
        for index, kind in enumerate(KINDS):
            run_job(kind, stores[kind], 10_000 + index, env, cwd)  # warm-up, untimed
        bare = []
        for _ in range(5):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
            bare.append(time.perf_counter() - began)
        bare_s = statistics.median(bare)
        first = 0
        sync_ratio: dict[str, float] = {}
        for mode, at_once in (("one after another", 1), (f"{args.concurrent} at a time", args.concurrent)):
            results: dict[str, list[dict[str, float]]] = {}
            walls: dict[str, float] = {}
            for kind in KINDS:
                print(f"{kind}: {args.jobs} jobs, {mode}", file=sys.stderr)
                results[kind], walls[kind] = run_batch(
                    kind, stores[kind], args.jobs, at_once, env, cwd, first
                )
                first += args.jobs
            sync_ratio[mode] = median_of(results["mlflow-sync"], "wall") / median_of(
                results["metalake"], "wall"
            )
            sections += [f"### {args.jobs} jobs per system, {mode}", "", *table(results, walls, bare_s), ""]
        points = stored_points(stores)
        per_run = STEPS * METRICS
        expected = {"metalake": (2 * args.jobs + 1) * per_run, "mlflow": (4 * args.jobs + 2) * per_run}
        worst = min(sync_ratio.values())
        verdict = "PASS" if worst >= TARGET_RATIO else "FAIL"
        sections += [
            f"Target: metalake's whole job at least {TARGET_RATIO:.0f}x faster than MLflow's synchronous job: "
            f"{' / '.join(f'{ratio:.1f}x' for ratio in sync_ratio.values())} -> **{verdict}**.",
            "",
            "The lake and the MLflow database (migrations, experiment) were created before any timing; one untimed "
            "job of each kind ran first (file cache, bytecode). Jobs run outside a git work tree. Points stored "
            f"afterwards: lake {points['metalake']:,} (expected {expected['metalake']:,}), MLflow "
            f"{points['mlflow']:,} (sync and async, expected {expected['mlflow']:,}), warm-ups included. "
            f"Load average at the end: {os.getloadavg()[0]:.1f} (the machine is shared).",
        ]
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    title = "A training job's fixed cost, one process per job, vs MLflow 3 on SQLite (bench/bench_jobs.py)"
    title += f", {args.label}" if args.label else ""
    publish(title, "bench/bench_jobs.py", sections, no_record=args.no_record)


if __name__ == "__main__":
    main()
