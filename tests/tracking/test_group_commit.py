"""Group commit: runs logged one after another share Delta commits, and nothing is lost or seen half-written."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import metalake
from metalake import FlushError
from metalake.core.tables import Tables
from metalake.tracking import group_commit
from metalake.tracking.group_commit import QueuedFlush

# Storage failures made on purpose here: the warning that flushes wait in the journal is expected.
pytestmark = pytest.mark.filterwarnings("ignore::metalake.StorageUnreachableWarning")


def log_sweep(lake: metalake.Lake, runs: int, *, steps: int = 5) -> list[str]:
    ids = []
    for index in range(runs):
        with lake.runs.start(experiment="sweep", name=f"trial-{index}", tags={"trial": index}) as run:
            run.log_params({"lr": 0.1 * (index + 1), "depth": index % 4})
            for step in range(steps):
                run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
        ids.append(run.run_id)
    return ids


def test_a_sweep_shares_commits_and_keeps_every_fact(lake: metalake.Lake) -> None:
    ids = log_sweep(lake, 30)
    lake.runs.wait()
    runs = lake.sql("select run_id, status from runs_current").pl()
    assert sorted(runs["run_id"]) == sorted(ids) and set(runs["status"]) == {"finished"}
    assert lake.read("metrics").height == 30 * 5 * 2
    assert lake.read("params").height == 30 * 2
    assert lake.read("run_tags").height == 30
    summaries = lake.sql("select count(*) from metric_summaries").fetchall()[0][0]
    assert summaries == 30 * 2
    commits = lake.history("metrics").filter(pl.col("operation") == "log_run").height
    assert commits < 30, "sequential runs are committed in groups, not one commit per run"
    details = lake.runs.get(ids[-1])
    assert details.params["depth"] == "1" and set(details.params) == {"depth", "lr"}
    assert details.metrics["loss"]["count"] == 5


def commit_times_by_flush(lake: metalake.Lake, table: str) -> dict[str, object]:
    """flush id -> when the commit that carried its rows of `table` landed (from the keys in the history)."""
    times = {}
    for record in lake.history(table).filter(pl.col("operation") == "log_run").iter_rows(named=True):
        for key in record["idempotency_key"].split(" "):
            times[key.removesuffix(f":{table}")] = record["timestamp"]
    return times


def test_facts_are_committed_before_the_run_events(lake: metalake.Lake) -> None:
    log_sweep(lake, 10)
    lake.runs.wait()
    metrics_at = commit_times_by_flush(lake, "metrics")
    runs_at = commit_times_by_flush(lake, "runs")
    assert len(runs_at) == 10 and set(runs_at) == set(metrics_at)
    for flush_id, event_at in runs_at.items():
        assert metrics_at[flush_id] <= event_at, "a run event never lands before its facts"  # type: ignore[operator]


def submit_refused_flush(lake: metalake.Lake, run_id: str) -> None:
    """Queue, for `run_id`, a flush that the metrics contract refuses (a key over 250 characters). Log calls
    refuse such values at the call, so only a flush built by hand still carries one to the queue."""
    import pyarrow as pa

    points = pa.table(
        {
            "run_id": [run_id],
            "key": ["k" * 300],
            "value": [1.0],
            "step": pa.array([0], pa.int64()),
            "timestamp": pa.array([datetime(2026, 3, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    lake.runs.flush_queue.submit(QueuedFlush(f"{run_id}:by-hand", run_id, {"metrics": points}, points=1))


def test_a_refused_flush_fails_alone(lake: metalake.Lake) -> None:
    ids = log_sweep(lake, 3)
    with lake.runs.start(experiment="sweep", name="bad") as bad:
        submit_refused_flush(lake, bad.run_id)
    ids += log_sweep(lake, 2)
    with pytest.raises(FlushError, match=f"{bad.run_id}.*metrics"):
        lake.runs.wait()
    finished = set(lake.sql("select run_id from runs_current").pl()["run_id"])
    assert finished == set(ids), "the other runs of the group are committed; the refused one not at all"
    assert lake.read("metrics", where=f"run_id = '{bad.run_id}'").is_empty()
    lake.runs.wait()  # reported once


def test_reads_in_the_same_process_see_queued_runs(lake: metalake.Lake, lake_path: Path) -> None:
    ids = log_sweep(lake, 4)
    other = metalake.connect(lake_path)  # another Lake object on the same folder
    assert set(other.sql("select run_id from runs_current").pl()["run_id"]) == set(ids)
    assert lake.runs.search(experiment="sweep").height == 4


def test_wait_true_commits_before_end_returns(lake: metalake.Lake, lake_path: Path) -> None:
    with lake.runs.start(experiment="sync", wait=True) as run:
        run.log_metric("loss", 0.5)
    assert not lake.runs.flush_queue.busy
    assert lake.read("metrics").height == 1


def test_the_queue_is_drained_when_the_interpreter_exits(lake_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import metalake
        lake = metalake.connect({str(lake_path)!r}, actor="job")
        for index in range(5):
            with lake.runs.start(experiment="exit", name=str(index)) as run:
                run.log_metrics({{"loss": 0.1, "acc": 0.9}}, step=1)
        print("ended")  # nothing waits: the queue is drained at exit
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lake = metalake.connect(lake_path)
    assert lake.sql("select count(*) from runs_current where status = 'finished'").fetchall()[0][0] == 5
    assert lake.read("metrics").height == 10


def test_a_producer_faster_than_the_committer_waits(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "MAX_QUEUED_POINTS", 50)
    with lake.runs.start(experiment="bounded", flush_every_points=20) as run:
        for step in range(200):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    lake.runs.wait()
    assert lake.read("metrics").height == 200
    assert lake.runs.get(run.run_id).metrics["loss"]["count"] == 200


def test_close_waits_for_queued_flushes(lake: metalake.Lake, lake_path: Path) -> None:
    log_sweep(lake, 3)
    lake.close()
    assert not any(queue.busy for queue in group_commit.busy_queues())
    assert metalake.connect(lake_path).read("runs").height == 6


def test_a_flush_that_breaks_its_group_is_committed_apart_from_it(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COMMIT_ATTEMPTS", 2)
    poisoned: list[str] = []
    original = Tables.commit

    def refuses_one_run(self: Tables, table: str, parts: Any, **kw: Any) -> tuple[int, list[bool]]:
        if any(key and key.startswith(tuple(poisoned)) for key, _ in parts):
            raise OSError("this run's rows break the store")
        return original(self, table, parts, **kw)

    monkeypatch.setattr(Tables, "commit", refuses_one_run)
    with lake.runs.flush_queue.holding():  # hold the committer so that the runs below land in one group
        good = log_sweep(lake, 2)
        bad = lake.runs.start(experiment="sweep", name="poison")
        poisoned.append(bad.run_id)
        bad.log_metric("loss", 1.0)
        bad.end()
        good += log_sweep(lake, 2)
    with pytest.raises(FlushError, match=bad.run_id):
        lake.runs.wait()
    assert set(lake.sql("select run_id from runs_current").pl()["run_id"]) == set(good)


def test_a_run_never_shows_finished_before_an_earlier_flush_that_failed(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COMMIT_ATTEMPTS", 1)
    original = Tables.commit
    failing_keys: list[str] = []

    def down_for_one_flush(self: Tables, table: str, parts: Any, **kw: Any) -> tuple[int, list[bool]]:
        if any(key in failing_keys for key, _ in parts):
            raise OSError("storage hiccup")
        return original(self, table, parts, **kw)

    monkeypatch.setattr(Tables, "commit", down_for_one_flush)
    with lake.runs.flush_queue.holding():  # both flushes of the run land in one group
        run = lake.runs.start(experiment="order", flush_every_points=1)
        run.log_metric("loss", 0.5, step=0)  # flush 1: the start event and a point
        failing_keys.append(f"{run.queued_flushes[0].flush_id}:metrics")
        run.log_metric("loss", 0.25, step=1)
        run.end()  # flush 3: the finished event
    with pytest.raises(FlushError, match=run.run_id):
        run.wait()
    assert lake.read("runs").is_empty(), "no event of the run may land while its first flush is parked"
    monkeypatch.setattr(Tables, "commit", original)
    run.wait()  # retried in order, same keys
    assert lake.read("metrics").height == 2
    assert lake.sql("select status from runs_current").fetchall() == [("finished",)]


def test_a_refused_flush_refuses_the_rest_of_its_run(lake: metalake.Lake) -> None:
    run = lake.runs.start(experiment="order")
    submit_refused_flush(lake, run.run_id)
    with pytest.raises(FlushError, match="metrics"):
        run.flush()
    run.log_metric("loss", 0.5)
    run.end()
    with pytest.raises(FlushError, match=run.run_id):
        lake.runs.wait()
    assert lake.read("runs").is_empty() and lake.read("metrics").is_empty()
    other = log_sweep(lake, 1)  # other runs are not affected
    assert lake.sql("select run_id from runs_current").fetchall() == [(other[0],)]
