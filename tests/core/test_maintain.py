"""`maintain`: tables rewritten for fast reads (metrics clustered by run), with the same rows, any number of times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app


def data_files(lake: metalake.Lake, table: str) -> list[str]:
    from deltalake import DeltaTable

    loaded = DeltaTable(f"{lake.uri}/{table}")
    return [uri.removeprefix("file://") for uri in loaded.file_uris()]


def log_runs(lake: metalake.Lake, runs: int) -> None:
    for index in range(runs):
        with lake.runs.start(experiment="sweep", name=f"r{index}", wait=True) as run:
            run.log_params({"i": index})
            for step in range(3):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / 3}, step=step)


def test_maintain_clusters_metrics_and_keeps_every_row(lake: metalake.Lake) -> None:
    log_runs(lake, 12)
    before = lake.read("metrics").sort(["run_id", "key", "step"])
    assert len(data_files(lake, "metrics")) > 1
    done = {result.table: result for result in lake.maintain()}
    assert done["metrics"].action == "cluster by key, run_id" and done["metrics"].files_after == 1
    assert done["params"].action == "compact"
    assert done["alerts"].action == "up to date"
    after = lake.read("metrics")
    assert after.sort(["run_id", "key", "step"]).equals(before)
    (path,) = data_files(lake, "metrics")
    assert pq.ParquetFile(path).metadata.num_rows == before.height  # one file, Z-ordered on (key, run_id)
    assert lake.history("metrics").row(0, named=True)["operation"] == "cluster"
    again = {result.table: result.action for result in lake.maintain()}
    assert again["metrics"] == "up to date" and again["params"] == "up to date"


def test_dry_run_changes_nothing(lake: metalake.Lake) -> None:
    log_runs(lake, 3)
    versions = {spec.name: lake.version(spec.name) for spec in lake.tables()}
    planned = {result.table: result.action for result in lake.maintain(dry_run=True)}
    assert planned["metrics"] == "cluster by key, run_id"
    assert {spec.name: lake.version(spec.name) for spec in lake.tables()} == versions


def test_maintenance_needs_the_live_lake(lake: metalake.Lake) -> None:
    log_runs(lake, 1)
    with pytest.raises(metalake.ReadOnlyLakeError):
        lake.as_of(datetime.now(UTC)).maintain()
    with pytest.raises(metalake.TableNotFound):
        lake.maintain(tables=["no_such_table"])


def test_time_travel_still_reads_the_versions_before_maintenance(lake: metalake.Lake) -> None:
    log_runs(lake, 4)
    lake.snapshot("before")
    lake.maintain()
    log_runs(lake, 1)
    assert lake.as_of("before").read("metrics").height == 4 * 6
    assert lake.read("metrics").height == 5 * 6


def test_cli_maintain(lake: metalake.Lake, lake_path: Path) -> None:
    log_runs(lake, 3)
    runner = CliRunner()
    dry = runner.invoke(app, ["--lake", str(lake_path), "maintain", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "cluster by" in dry.output and "dry run" in dry.output
    done = runner.invoke(app, ["--lake", str(lake_path), "maintain", "--table", "metrics"])
    assert done.exit_code == 0, done.output
    assert "metrics" in done.output and "params" not in done.output
    bad = runner.invoke(app, ["--lake", str(lake_path), "maintain", "--table", "nope"])
    assert bad.exit_code == 1 and "nope" in bad.output


def runs_with_points(lake: metalake.Lake, count: int) -> list[str]:
    ids = []
    for index in range(count):
        with lake.runs.start(experiment="retention", name=f"r{index}") as run:
            run.log_metrics({"loss": 0.5, "acc": 0.5}, step=0)
            run.log_metrics({"loss": 0.25, "acc": 0.75}, step=1)
        ids.append(run.run_id)
    return ids


def test_retention_drops_points_of_archived_runs_only(lake: metalake.Lake) -> None:
    tagged, live_model, archived_model, untouched = runs_with_points(lake, 4)
    lake.runs.archive(tagged, reason="old sweep")
    lake.runs.archive(live_model)  # archived by hand, but a live model version was trained by it
    lake.registry.register("churn", run_id=live_model, artifact_uri="s3://m/1")
    lake.registry.transition("churn", 1, "production")
    lake.registry.register("churn", run_id=archived_model, artifact_uri="s3://m/2")
    lake.registry.archive("churn", 2, reason="superseded")
    planned = lake.maintain(tables=["metrics"], metric_history_days=0, dry_run=True)
    assert planned[0].action.startswith("drop 8 points of 2 archived run(s)")
    assert lake.read("metrics").height == 16
    lake.maintain(tables=["metrics"], metric_history_days=0)
    remaining = lake.read("metrics")
    assert sorted(set(remaining["run_id"])) == sorted([live_model, untouched])
    assert lake.runs.get(tagged).metrics["loss"]["count"] == 2, "summaries stay"
    assert lake.history("metrics").filter(pl.col("operation") == "retention").height == 1
    assert lake.maintain(tables=["metrics"], metric_history_days=365)[0].action.startswith("drop 0 points")


def test_vacuum_keeps_what_named_snapshots_pin(lake: metalake.Lake, lake_path: Path) -> None:
    runs_with_points(lake, 3)
    lake.snapshot("pinned")
    before_maintenance = lake.version("metrics")
    runs_with_points(lake, 2)
    lake.maintain()  # rewrites metrics: the old files are now unreferenced by the latest version
    planned = lake.maintain(vacuum_days=0, dry_run=True)
    assert any(result.action.startswith("vacuum: would delete") for result in planned)
    on_disk = len(list((lake_path / "metrics").glob("*.parquet")))
    done = {result.table: result for result in lake.maintain(vacuum_days=0)}
    assert "snapshot version(s) kept" in done["metrics"].action
    assert len(list((lake_path / "metrics").glob("*.parquet"))) == on_disk - done["metrics"].files_before
    assert lake.as_of("pinned").read("metrics").height == 3 * 4, "the snapshot still reads"
    assert lake.read("metrics").height == 5 * 4
    assert before_maintenance is not None


def test_archive_refuses_unknown_runs(lake: metalake.Lake) -> None:
    with pytest.raises(metalake.MetalakeError, match="No run"):
        lake.runs.archive("nope")
