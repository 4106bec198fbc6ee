"""The workload of bench_api.py and how it is loaded: into MLflow's SQLite tables and into a lake."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from bench_tracking import maintain_lake, summarize_points, timed

import metalake
from metalake.core.ids import new_id

SEED = 20261203
EXPERIMENT = "bench-api"
PARAMS, TAGS, METRICS, STEPS = 5, 3, 5, 3
METRIC_KEYS = [f"m{i}" for i in range(METRICS)]
BIG_KEY = "loss"
BASE_TIME_MS = 1_764_000_000_000


@dataclass(frozen=True)
class Workload:
    """The runs both systems hold: ids, names, params[run][k], tags[run][k], values[run][step][metric]."""

    run_ids: list[str]
    names: list[str]
    params: list[list[str]]
    tags: list[list[str]]
    values: np.ndarray
    start_ms: np.ndarray
    big_run_id: str
    big_values: np.ndarray

    def end_ms(self) -> np.ndarray:
        return self.start_ms + STEPS * 1000


def workload(runs: int, big_points: int) -> Workload:
    rng = np.random.default_rng(SEED)
    return Workload(
        run_ids=[new_id() for _ in range(runs)],
        names=[f"run-{i:05d}" for i in range(runs)],
        params=[[f"{value:.6f}" for value in row] for row in rng.random((runs, PARAMS)).tolist()],
        tags=[[f"tag-{value}" for value in row] for row in rng.integers(0, 4, (runs, TAGS)).tolist()],
        values=rng.random((runs, STEPS, METRICS)),
        start_ms=BASE_TIME_MS + np.arange(runs, dtype=np.int64) * 60_000,
        big_run_id=new_id(),
        big_values=rng.random(big_points),
    )


# -- loading MLflow's SQLite store ----------------------------------------------------------------------------


def load_mlflow(db: Path, artifacts: Path, work: Workload) -> str:
    """The workload written straight into MLflow's tables (schema made by MlflowClient); returns the experiment id."""
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=str(artifacts))
    count = len(work.run_ids)
    ends = work.end_ms()
    ids = [*work.run_ids, work.big_run_id]
    names = [*work.names, "big-metric"]
    starts = [*work.start_ms.tolist(), BASE_TIME_MS]
    finished = [*ends.tolist(), BASE_TIME_MS + len(work.big_values)]
    runs = [
        (
            run_id,
            name,
            "UNKNOWN",
            "",
            "",
            "bench",
            "FINISHED",
            start,
            end,
            "",
            "active",
            f"{artifacts}/{run_id}/artifacts",
            int(experiment_id),
        )
        for run_id, name, start, end in zip(ids, names, starts, finished, strict=True)
    ]
    tags = [(f"t{k}", value, work.run_ids[i]) for i in range(count) for k, value in enumerate(work.tags[i])]
    tags += [("mlflow.runName", name, run_id) for run_id, name in zip(ids, names, strict=True)]
    params = [
        (f"p{k}", value, work.run_ids[i]) for i in range(count) for k, value in enumerate(work.params[i])
    ]
    values = work.values.tolist()
    metrics = [
        (key, values[i][step][m], int(work.start_ms[i]) + step * 1000, work.run_ids[i], step, 0)
        for i in range(count)
        for step in range(STEPS)
        for m, key in enumerate(METRIC_KEYS)
    ]
    big = work.big_values.tolist()
    metrics += [
        (BIG_KEY, value, BASE_TIME_MS + step, work.big_run_id, step, 0) for step, value in enumerate(big)
    ]
    latest = [
        (
            key,
            values[i][STEPS - 1][m],
            int(work.start_ms[i]) + (STEPS - 1) * 1000,
            STEPS - 1,
            0,
            work.run_ids[i],
        )
        for i in range(count)
        for m, key in enumerate(METRIC_KEYS)
    ]
    latest.append((BIG_KEY, big[-1], BASE_TIME_MS + len(big) - 1, len(big) - 1, 0, work.big_run_id))
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "insert into runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            runs,
        )
        connection.executemany("insert into tags (key, value, run_uuid) values (?, ?, ?)", tags)
        connection.executemany("insert into params (key, value, run_uuid) values (?, ?, ?)", params)
        connection.executemany(
            "insert into metrics (key, value, timestamp, run_uuid, step, is_nan) values (?, ?, ?, ?, ?, ?)",
            metrics,
        )
        connection.executemany(
            "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid) values (?, ?, ?, ?, ?, ?)",
            latest,
        )
    check_mlflow_copy(client, work, experiment_id)
    return experiment_id


def check_mlflow_copy(client: Any, work: Workload, experiment_id: str) -> None:
    """Read one run back through MlflowClient: the bulk rows must look like what log_batch writes."""
    index = len(work.run_ids) // 2
    run = client.get_run(work.run_ids[index])
    expected_params = {f"p{k}": value for k, value in enumerate(work.params[index])}
    expected_metrics = dict(zip(METRIC_KEYS, work.values[index][STEPS - 1].tolist(), strict=True))
    assert run.data.params == expected_params, run.data.params
    assert run.data.metrics == expected_metrics, run.data.metrics
    assert run.info.run_name == work.names[index] and run.info.status == "FINISHED", run.info
    found = client.search_runs([experiment_id], max_results=5)
    assert len(found) == 5, found


# -- loading the lake -----------------------------------------------------------------------------------------


def lake_batches(work: Workload) -> list[tuple[str, pa.Table]]:
    """The workload as one batch per table (bench_tracking.py's import shape), the 'finished' events last."""
    count = len(work.run_ids)
    ids = pa.array([*work.run_ids, work.big_run_id], pa.string())
    per_run = np.arange(count)

    def key_values(prefix: str, rows: list[list[str]]) -> pa.Table:
        width = len(rows[0])
        return pa.table(
            {
                "run_id": ids.take(np.repeat(per_run, width)),
                "key": [f"{prefix}{k}" for _ in rows for k in range(width)],
                "value": [value for row in rows for value in row],
            }
        )

    steps = np.tile(np.repeat(np.arange(STEPS, dtype=np.int64), METRICS), count)
    starts_us = work.start_ms * 1000
    big = len(work.big_values)
    points = pa.table(
        {
            "run_id": pa.concat_arrays(
                [ids.take(np.repeat(per_run, STEPS * METRICS)), ids.take(np.full(big, count))]
            ),
            "key": [*(METRIC_KEYS * (count * STEPS)), *([BIG_KEY] * big)],
            "value": pa.array(np.concatenate([work.values.reshape(-1), work.big_values]), pa.float64()),
            "step": pa.array(np.concatenate([steps, np.arange(big, dtype=np.int64)]), pa.int64()),
            "timestamp": pa.array(
                np.concatenate(
                    [
                        np.repeat(starts_us, STEPS * METRICS) + steps * 1_000_000,
                        BASE_TIME_MS * 1000 + np.arange(big, dtype=np.int64) * 1000,
                    ]
                ),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    starts = [*starts_us.tolist(), BASE_TIME_MS * 1000]
    ends = [*(work.end_ms() * 1000).tolist(), (BASE_TIME_MS + big) * 1000]
    end_times = pa.array([datetime.fromtimestamp(us / 1e6, UTC) for us in ends], pa.timestamp("us", tz="UTC"))
    events = pa.table(
        {
            "event_id": [f"{run_id}:finished" for run_id in ids.to_pylist()],
            "run_id": ids,
            "experiment": [EXPERIMENT] * (count + 1),
            "name": [*work.names, "big-metric"],
            "status": ["finished"] * (count + 1),
            "start_time": pa.array(starts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "end_time": end_times,
            "event_time": end_times,
        }
    )
    return [
        ("params", key_values("p", work.params)),
        ("run_tags", key_values("t", work.tags)),
        ("metrics", points),
        ("metric_summaries", summarize_points(points, "bench-api-import")),
        ("runs", events),
    ]


def load_lake(root: Path, work: Workload) -> tuple[float, float]:
    """The workload appended table by table, then maintained; seconds of each."""
    lake = metalake.connect(root, actor="bench")
    appended, _ = timed(lambda: [lake.append(t, b, operation="import") for t, b in lake_batches(work)])
    lake.close()
    maintained, _ = timed(lambda: maintain_lake(root))
    return appended, maintained
