"""`maintain`: tables rewritten for fast reads (metrics clustered by run), with the same rows, any number of times."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli import app


def data_files(lake: metalake.Lake, table: str) -> list[str]:
    loaded = lake._delta_table(table)
    assert loaded is not None
    return [uri.removeprefix("file://") for uri in loaded.file_uris()]


def log_runs(lake: metalake.Lake, runs: int) -> None:
    for index in range(runs):
        with lake.runs.start(experiment="sweep", name=f"r{index}", wait=True) as run:
            run.log_params({"i": index})
            for step in range(3):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / 3}, step=step)


def test_maintain_clusters_metrics_by_run_and_keeps_every_row(lake: metalake.Lake) -> None:
    log_runs(lake, 12)
    before = lake.read("metrics").sort(["run_id", "key", "step"])
    assert len(data_files(lake, "metrics")) > 1
    done = {result.table: result for result in lake.maintain()}
    assert done["metrics"].action == "cluster by run_id" and done["metrics"].files_after == 1
    assert done["params"].action == "compact"
    assert done["alerts"].action == "up to date"
    after = lake.read("metrics")
    assert after.sort(["run_id", "key", "step"]).equals(before)
    (path,) = data_files(lake, "metrics")
    run_ids = pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist()
    assert run_ids == sorted(run_ids), "points are sorted by run, so a run's history reads few row groups"
    assert lake.history("metrics").row(0, named=True)["operation"] == "cluster"
    again = {result.table: result.action for result in lake.maintain()}
    assert again["metrics"] == "up to date" and again["params"] == "up to date"


def test_dry_run_changes_nothing(lake: metalake.Lake) -> None:
    log_runs(lake, 3)
    versions = {spec.name: lake.version(spec.name) for spec in lake.tables()}
    planned = {result.table: result.action for result in lake.maintain(dry_run=True)}
    assert planned["metrics"] == "cluster by run_id"
    assert {spec.name: lake.version(spec.name) for spec in lake.tables()} == versions


def test_maintenance_needs_the_live_lake(lake: metalake.Lake) -> None:
    log_runs(lake, 1)
    with pytest.raises(metalake.ReadOnlyLakeError):
        lake.as_of("2100-01-01").maintain()
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
    assert "cluster by run_id" in dry.output and "dry run" in dry.output
    done = runner.invoke(app, ["--lake", str(lake_path), "maintain", "--table", "metrics"])
    assert done.exit_code == 0, done.output
    assert "metrics" in done.output and "params" not in done.output
    bad = runner.invoke(app, ["--lake", str(lake_path), "maintain", "--table", "nope"])
    assert bad.exit_code == 1 and "nope" in bad.output
