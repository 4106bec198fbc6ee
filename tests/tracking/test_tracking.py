"""Experiment tracking: runs as context managers, buffered flushes, statuses, context, idempotent retries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.datasets import register_dataset_versions

import metalake
from metalake import FlushError, StorageUnreachableWarning
from metalake.core.ids import new_id as new_run_id
from metalake.core.tables import Tables
from metalake.errors import RunError
from metalake.tracking import group_commit


def current(lake: metalake.Lake, run_id: str) -> dict[str, object]:
    frame = lake.sql("select * from runs_current where run_id = ?", [run_id]).pl()
    assert frame.height == 1
    return frame.row(0, named=True)


def test_a_run_block_records_everything_it_logs(lake: metalake.Lake, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")
    register_dataset_versions(lake, "churn_train", 4)
    with lake.runs.start(experiment="churn", name="xgb-depth6", tags={"team": "growth"}) as run:
        run.log_params({"depth": 6, "lr": 0.1})
        run.log_param("seed", 7)
        run.log_metric("val_auc", 0.91, step=3)
        run.log_metrics({"loss": 0.2, "acc": 0.9}, step=3)
        run.set_tags({"stage": "tuning"})
        run.log_input("churn_train", version=4)
        run.log_artifact(model, name="model")
    state = current(lake, run.run_id)
    assert (state["experiment"], state["name"], state["status"]) == ("churn", "xgb-depth6", "finished")
    assert state["start_time"] <= state["end_time"]
    assert state["user"] and state["host"] and state["python_version"] and state["packages_hash"]
    params = dict(lake.read("params", where=f"run_id = '{run.run_id}'").select("key", "value").rows())
    assert params == {"depth": "6", "lr": "0.1", "seed": "7"}
    tags = dict(lake.read("run_tags").select("key", "value").rows())
    assert tags == {"team": "growth", "stage": "tuning"}
    assert lake.read("metrics").height == 3
    assert lake.read("run_inputs").select("dataset", "version").rows() == [("churn_train", 4)]
    artifact = lake.read("artifacts").row(0, named=True)
    assert artifact["name"] == "model" and artifact["size_bytes"] == 7 and len(artifact["sha256"]) == 64
    summary = lake.sql("select key, last_value, count from metric_summaries order by key").fetchall()
    assert summary == [("acc", 0.9, 1), ("loss", 0.2, 1), ("val_auc", 0.91, 1)]


def test_failed_and_killed_runs_record_why(lake: metalake.Lake) -> None:
    with pytest.raises(ValueError), lake.runs.start(experiment="churn") as failing:
        failing.log_metric("loss", 1.0)
        raise ValueError("diverged at step 3")
    state = current(lake, failing.run_id)
    assert (state["status"], state["error_type"], state["error_message"]) == (
        "failed",
        "ValueError",
        "diverged at step 3",
    )
    with pytest.raises(KeyboardInterrupt), lake.runs.start(experiment="churn") as interrupted:
        raise KeyboardInterrupt
    assert current(lake, interrupted.run_id)["status"] == "killed"


def test_runs_without_a_context_manager_and_resume(lake: metalake.Lake) -> None:
    run = lake.runs.start(experiment="sweep", name="parent")
    child = lake.runs.start(experiment="sweep", name="child", parent_run_id=run.run_id)
    child.log_metric("loss", 0.5, step=0)
    child.end()
    run.flush()
    assert current(lake, run.run_id)["status"] == "running"
    resumed = lake.runs.resume(run.run_id)
    resumed.log_metric("loss", 0.4, step=1)
    resumed.end(status="finished")
    assert current(lake, run.run_id)["status"] == "finished"
    assert current(lake, child.run_id)["parent_run_id"] == run.run_id
    with pytest.raises(RunError, match="has ended"):
        resumed.log_metric("loss", 0.1)
    with pytest.raises(RunError, match="No run"):
        lake.runs.resume("nope")


def test_metrics_flush_every_n_points_with_bounded_buffers(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="long", flush_every_points=100) as run:
        for step in range(250):
            run.log_metric("loss", 1 / (step + 1), step=step)
            if step == 149:
                # Two flushes so far: the points are already committed, and the run is visible as running.
                assert lake.read("metrics").height == 100
                assert current(lake, run.run_id)["status"] == "running"
    assert lake.read("metrics").height == 250
    last = lake.sql(
        "select max_by(last_value, last_step), min(min_value), sum(count) from metric_summaries"
    ).fetchall()
    assert last == [(1 / 250, 1 / 250, 250)]


def test_a_reader_never_sees_a_finished_run_without_its_facts(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="order") as run:
        run.log_metrics({"a": 1.0, "b": 2.0})
    finished_at = lake.history("runs").row(0, named=True)["version"]
    metrics_version = lake.history("metrics").row(0, named=True)["timestamp"]
    runs_commit = lake.history("runs").row(0, named=True)["timestamp"]
    assert metrics_version <= runs_commit and finished_at >= 1


def test_a_failed_flush_is_retried_with_the_same_keys(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lake.runs.start(experiment="retry")
    run.log_params({"depth": 6})
    run.log_metric("loss", 0.3)
    original = Tables.commit
    calls: list[str] = []

    def flaky(self: Tables, table: str, parts: Any, **kw: Any) -> tuple[int, list[bool]]:
        calls.append(table)
        outcome = original(self, table, parts, **kw)
        if table == "metrics" and calls.count("metrics") == 1:
            raise OSError("connection reset after the commit landed")
        return outcome

    monkeypatch.setattr(Tables, "commit", flaky)
    run.flush()  # the group is committed again with the same keys: the landed batch is not written twice
    run.end()
    assert calls.count("metrics") == 2
    assert lake.read("metrics").height == 1, "the retried flush must not duplicate the committed batch"
    assert lake.read("params").height == 1
    assert current(lake, run.run_id)["status"] == "finished"


def test_a_flush_that_keeps_failing_is_reported_then_committed_later(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "COMMIT_ATTEMPTS", 2)
    run = lake.runs.start(experiment="outage")
    run.log_params({"depth": 6})
    run.log_metric("loss", 0.3)
    original = Tables.commit

    def down(self: Tables, table: str, parts: Any, **kw: Any) -> tuple[int, list[bool]]:
        if table == "metrics":
            raise OSError("storage unreachable")
        return original(self, table, parts, **kw)

    monkeypatch.setattr(Tables, "commit", down)
    with pytest.warns(StorageUnreachableWarning, match="local journal"):
        run.flush()  # kept in the journal: storage trouble does not stop the training loop
    with pytest.raises(FlushError, match=f"{run.run_id}.*storage unreachable.*kept in the local journal"):
        run.wait()  # asked whether it is committed: it is not
    assert lake.read("runs").is_empty(), "no run event before its facts are committed"
    monkeypatch.setattr(Tables, "commit", original)
    run.end()  # the parked flush goes first, under its same keys
    lake.runs.wait()
    assert lake.read("metrics").height == 1
    assert lake.read("params").height == 1
    assert current(lake, run.run_id)["status"] == "finished"


def test_without_the_journal_a_waiting_flush_raises_while_storage_is_down(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METALAKE_JOURNAL", "off")
    monkeypatch.setattr(group_commit, "COMMIT_ATTEMPTS", 1)
    run = lake.runs.start(experiment="outage")
    run.log_metric("loss", 0.3)
    original = Tables.commit

    def down(self: Tables, table: str, parts: Any, **kw: Any) -> tuple[int, list[bool]]:
        raise OSError("storage unreachable")

    monkeypatch.setattr(Tables, "commit", down)
    with pytest.raises(FlushError, match="storage unreachable"):
        run.flush()
    monkeypatch.setattr(Tables, "commit", original)
    run.end()
    lake.runs.wait()
    assert current(lake, run.run_id)["status"] == "finished"


def test_run_ids_are_time_sortable_uuid7() -> None:
    first, second = new_run_id(), new_run_id()
    assert len(first) == 32 and first[12] == "7"
    assert first < second or first[:12] == second[:12]


def test_bad_run_arguments(lake: metalake.Lake) -> None:
    with pytest.raises(RunError, match="experiment"):
        lake.runs.start(experiment="")
    with pytest.raises(RunError, match="flush_every_points"):
        lake.runs.start(experiment="x", flush_every_points=0)
    run = lake.runs.start(experiment="x")
    with pytest.raises(RunError, match="not a file"):
        run.log_artifact("/no/such/file")
    with pytest.raises(RunError, match="ends as one of"):
        run.end(status="running")  # type: ignore[arg-type]
    assert datetime.now(UTC) >= run.start_time


def test_log_input_registers_a_path_on_the_fly_and_links_versions(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    import polars as pl

    data = tmp_path / "train.parquet"
    pl.DataFrame({"id": [1, 2, 3], "churned": [True, False, True]}).write_parquet(data)
    with lake.runs.start(experiment="churn") as first:
        first.log_input("churn_train", path=str(data), context="training")
    with lake.runs.start(experiment="churn") as second:
        second.log_input("churn_train", path=str(data))  # same content: the same version
        second.log_input("churn_train", context="validation")  # no path: the latest registered version
        second.log_input("churn_train", version=1)  # a registered version, as given
    inputs = lake.read("run_inputs").sort("recorded_at")
    registered = lake.datasets.get("churn_train")
    assert registered.version == 1
    assert inputs["version"].to_list() == [1, 1, 1, 1]
    assert inputs["digest"].to_list() == [registered.fingerprint] * 4  # an explicit version carries it too
    assert lake.runs.get(first.run_id).inputs[0]["context"] == "training"


def test_a_metric_timestamp_in_the_future_is_refused(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn") as run:
        with pytest.raises(RunError, match="Metric timestamp 2099-01-01T00:00:00Z is in the future"):
            run.log_metric("loss", 0.5, timestamp=datetime(2099, 1, 1, tzinfo=UTC))
        with pytest.raises(RunError, match="before 1900"):
            run.log_metrics({"loss": 0.5}, timestamp=datetime(1, 1, 1))
        run.log_metric("loss", 0.4, timestamp=datetime(2026, 1, 1))
    assert lake.read("metrics").get_column("value").to_list() == [0.4]
