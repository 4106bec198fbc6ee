"""`metalake deploy record | end | list` and `metalake kpis define | observe | ingest | list | impact |
production-envs`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app
from metalake.deployments import CI_MARKERS, CI_VARIABLES


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite may itself run in CI: start every test with no CI variables."""
    for _, sha_variable, run_variable in CI_VARIABLES:
        monkeypatch.delenv(sha_variable, raising=False)
        monkeypatch.delenv(run_variable, raising=False)
    for marker in CI_MARKERS.values():
        monkeypatch.delenv(marker, raising=False)


def invoke(lake_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_deploy_record_fills_commit_and_run_from_ci_variables(
    lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "4f2a9c1")
    monkeypatch.setenv("GITHUB_RUN_ID", "8812")
    code, output = invoke(
        lake_path, "deploy", "record", "--model", "churn", "--version", "3", "--env", "prod"
    )
    assert code == 0, output
    assert "Recorded deployment" in output and "churn v3 in prod" in output
    assert "commit 4f2a9c1, CI run 8812 (GitHub Actions)" in output
    assert "Warning: Model 'churn' version 3 is not registered" in output and "Traceback" not in output
    code, output = invoke(lake_path, "deploy", "record", "-m", "churn", "-v", "3", "-e", "prod")
    assert code == 0 and "Already recorded" in output  # a re-run of the same CI job
    [row] = metalake.connect(lake_path).read("deployments").to_dicts()
    assert (row["git_sha"], row["ci_run_id"], row["event_type"]) == ("4f2a9c1", "8812", "start")


def test_deploy_record_prefers_given_values_and_reads_gitlab(
    lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_COMMIT_SHA", "from-gitlab")
    monkeypatch.setenv("CI_PIPELINE_ID", "55")
    code, output = invoke(
        lake_path, "deploy", "record", "-m", "churn", "-v", "1", "-e", "prod", "--git-sha", "given",
        "--at", "2026-03-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0, output
    [row] = metalake.connect(lake_path).read("deployments").to_dicts()
    assert (row["git_sha"], row["ci_run_id"]) == ("given", "55")


def test_deploy_list_and_end(lake_path: Path) -> None:
    for version, day in ((1, "01"), (2, "05")):
        code, output = invoke(
            lake_path, "deploy", "record", "-m", "churn", "-v", str(version), "-e", "prod",
            "--at", f"2026-03-{day}T00:00:00Z",
        )  # fmt: skip
        assert code == 0, output
    assert "Ended deployment" in output  # v2 replaced v1
    code, output = invoke(lake_path, "deploy", "list", "--active")
    assert code == 0 and "1 row" in output and "churn" in output
    code, output = invoke(lake_path, "deploy", "list", "--format", "json")
    rows = [json.loads(line) for line in output.splitlines()]
    assert [(r["version"], r["is_active"]) for r in rows] == [(2, True), (1, False)]
    code, output = invoke(lake_path, "deploy", "end", "--env", "prod", "--reason", "rollback")
    assert code == 0 and "Ended deployment" in output and "churn v2 in prod" in output
    code, output = invoke(lake_path, "deploy", "end", "--env", "prod")
    assert code == 1 and "No active deployment in environment 'prod'" in output and "Traceback" not in output
    code, output = invoke(lake_path, "deploy", "end", "nope")
    assert code == 1 and "No deployment 'nope'" in output


def test_kpis_define_observe_list_and_impact(lake_path: Path, tmp_path: Path) -> None:
    code, output = invoke(
        lake_path, "kpis", "define", "conversion", "--unit", "%", "--direction", "higher_is_better",
        "--model", "churn", "--owner", "growth",
    )  # fmt: skip
    assert code == 0 and "follows churn" in output, output
    code, output = invoke(lake_path, "kpis", "define", "conversion", "--unit", "%", "--direction", "up")
    assert code == 2 and "higher_is_better" in output  # a usage error
    code, output = invoke(lake_path, "kpis", "observe", "revenue", "3")
    assert code == 1 and "Unknown KPI(s) 'revenue'" in output and "Traceback" not in output
    for day, value in (("2026-03-02", "1"), ("2026-03-03", "2")):
        code, output = invoke(lake_path, "kpis", "observe", "conversion", value, "--at", day)
        assert code == 0, output
    observations = tmp_path / "obs.csv"
    observations.write_text("kpi,value,observed_at\nconversion,5,2026-03-05\nconversion,7,2026-03-06\n")
    code, output = invoke(lake_path, "kpis", "ingest", str(observations))
    assert code == 0 and "Recorded 2 observation(s)" in output
    code, output = invoke(lake_path, "kpis", "ingest", str(observations))
    assert code == 0 and "already ingested" in output
    code, output = invoke(lake_path, "kpis", "list")
    assert code == 0 and "conversion" in output and "growth" in output
    code, output = invoke(
        lake_path, "deploy", "record", "-m", "churn", "-v", "2", "-e", "prod", "--at", "2026-03-04"
    )
    assert code == 0, output
    code, output = invoke(lake_path, "kpis", "impact", "--model", "churn")
    assert (
        code == 0 and "churn v2 (prod)" in output and "better" in output
    )  # prod is a production environment
    code, output = invoke(lake_path, "kpis", "production-envs", "--set", "production")
    assert code == 0, output
    code, output = invoke(lake_path, "kpis", "impact", "--model", "churn")
    assert code == 0 and "not enough data" in output  # unlabeled values count for production only
    code, output = invoke(lake_path, "kpis", "impact", "--model", "churn", "--unlabeled-env", "prod")
    assert code == 0, output
    assert (
        "churn v2 (prod)" in output and "1.5 (n=2)" in output and "6.0 (n=2)" in output and "better" in output
    )
    code, output = invoke(
        lake_path, "kpis", "impact", "--window", "36h", "--unlabeled-env", "prod", "--format", "csv"
    )
    assert code == 0 and output.splitlines()[0].startswith("deployment_id,model,version")
    assert ",2.0,1,5.0,1," in output.splitlines()[1]  # 36 hours each side: the 3rd before, the 5th after
    code, output = invoke(lake_path, "kpis", "impact", "--window", "soon")
    assert code == 1 and "not a duration" in output


def test_kpis_production_envs_shows_sets_and_travels_in_time(lake_path: Path) -> None:
    metalake.connect(lake_path)
    code, output = invoke(lake_path, "kpis", "production-envs")
    assert code == 0 and "Production environments: production, prod, prd, live" in output
    started = datetime.now(UTC)
    time.sleep(0.05)
    code, output = invoke(
        lake_path, "kpis", "production-envs", "--set", "production, main", "--reason", "main serves users"
    )
    assert code == 0 and "Production environments now: production, main" in output, output
    code, output = invoke(lake_path, "kpis", "production-envs", "--set", "production,main")
    assert code == 0 and "Production environments unchanged: production, main" in output
    code, output = invoke(lake_path, "kpis", "production-envs")
    assert code == 0 and "Production environments: production, main" in output
    code, output = invoke(lake_path, "kpis", "production-envs", "--as-of", started.isoformat())
    assert code == 0 and "Production environments: production, prod, prd, live" in output
    lake = metalake.connect(lake_path)
    assert lake.history("policies").row(0, named=True)["reason"] == "main serves users"
    for bad, message in (
        ("", "needs at least one environment"),
        ("prod,,live", "not ''"),
        ("prod,live,prod", "lists 'prod' more than once"),
    ):
        code, output = invoke(lake_path, "kpis", "production-envs", "--set", bad)
        assert code == 1 and message in output and "Traceback" not in output, output
    code, output = invoke(lake_path, "kpis", "production-envs", "--set", "x", "--as-of", started.isoformat())
    assert code == 1 and "cannot be given with --set" in output
    assert lake.kpis.production_environments() == ("production", "main")


def test_kpis_impact_follows_the_lake_setting_and_takes_a_list(lake_path: Path) -> None:
    lake = metalake.connect(lake_path)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(
        [
            {"kpi": "conversion", "value": float(day), "observed_at": f"2026-03-{day:02d}"}
            for day in range(1, 20)
        ]
    )
    for environment in ("main", "edge"):
        code, output = invoke(
            lake_path, "deploy", "record", "-m", "churn", "-v", "1", "-e", environment, "--at", "2026-03-10"
        )
        assert code == 0, output
    code, output = invoke(lake_path, "kpis", "impact", "--format", "csv")
    assert code == 0 and [line.split(",")[17] for line in output.splitlines()[1:]] == [
        "0",
        "0",
    ]  # after_count
    code, output = invoke(lake_path, "kpis", "impact")
    assert code == 0 and "not enough data" in output and "Why some deployments lack data:" in output
    assert (
        "churn v1 (main), conversion: no observations labeled 'main' in the 7 days before or in the 7 days "
        "after; 14 unlabeled observations there count only for deployments to production environments "
        "(production, prod, prd, live)"
    ) in output
    code, output = invoke(lake_path, "kpis", "impact", "--unlabeled-env", "main, edge", "--format", "csv")
    assert code == 0 and [line.split(",")[17] for line in output.splitlines()[1:]] == ["7", "7"]
    invoke(lake_path, "kpis", "production-envs", "--set", "main")
    code, output = invoke(lake_path, "kpis", "impact", "--format", "json")
    rows = [json.loads(line) for line in output.splitlines()]
    assert code == 0 and {r["environment"]: r["after_count"] for r in rows} == {"main": 7, "edge": 0}


def test_kpis_observe_takes_a_negative_value(lake_path: Path) -> None:
    code, output = invoke(
        lake_path, "kpis", "define", "profit", "--unit", "EUR", "--direction", "higher_is_better"
    )
    assert code == 0, output
    code, output = invoke(lake_path, "kpis", "observe", "profit", "-3", "--env", "production")
    assert code == 0 and "Recorded profit = -3." in output, output
    code, output = invoke(lake_path, "kpis", "observe", "profit", "--segment", "DE", "--", "-2.5")
    assert code == 0 and "Recorded profit = -2.5." in output, output
    code, output = invoke(lake_path, "kpis", "observe", "profit", "-1e3", "--segment", "-5")
    assert code == 0 and "Recorded profit = -1000." in output, output  # -e is not read as --env here
    code, output = invoke(lake_path, "kpis", "observe", "profit", "-3", "--segmnet", "DE")
    assert code == 2 and "No such option: --segmnet" in output  # a mistyped option is still an error
    stored = metalake.connect(lake_path).read("kpi_observations").sort("value")
    assert stored["value"].to_list() == [-1000.0, -3.0, -2.5]
    assert stored["segment"].to_list() == ["-5", None, "DE"] and stored["environment"].to_list() == [
        None, "production", None
    ]  # fmt: skip


def test_kpis_define_keeps_the_model_list_unless_told_to_follow_every_model(lake_path: Path) -> None:
    define = ["kpis", "define", "conversion", "--unit", "%", "--direction", "higher_is_better"]
    code, output = invoke(lake_path, *define, "--model", "churn")
    assert code == 0 and "follows churn" in output, output
    code, output = invoke(lake_path, *define, "--owner", "growth")
    assert code == 0 and "follows churn" in output  # left out: kept
    code, output = invoke(lake_path, *define, "--all-models")
    assert code == 0 and "follows every model" in output
    code, output = invoke(lake_path, *define, "--all-models", "--model", "churn")
    assert code == 2 and "not both" in output
    code, output = invoke(lake_path, "kpis", "define", "--help")
    assert "Left out: the current list on an update" in output and "Default: every model" not in output


def test_deploy_and_kpi_times_in_the_future_are_refused_and_later_ends_work(lake_path: Path) -> None:
    code, output = invoke(
        lake_path,
        "deploy",
        "record",
        "--model",
        "churn",
        "--version",
        "3",
        "--env",
        "prod",
        "--at",
        "2099-01-01",
    )
    assert code == 1 and "start time (at) 2099-01-01T00:00:00Z is in the future" in output
    assert "Traceback" not in output
    assert (
        invoke(lake_path, "deploy", "record", "--model", "churn", "--version", "3", "--env", "prod")[0] == 0
    )
    code, output = invoke(lake_path, "deploy", "end", "--env", "prod", "--at", "2099-01-01")
    assert code == 1 and "is in the future" in output
    assert invoke(lake_path, "deploy", "end", "--env", "prod")[0] == 0
    assert (
        invoke(lake_path, "kpis", "define", "conversion", "--unit", "%", "--direction", "higher_is_better")[0]
        == 0
    )
    code, output = invoke(lake_path, "kpis", "observe", "conversion", "3.2", "--at", "2099-01-01")
    assert code == 1 and "Observation time (at) 2099-01-01T00:00:00Z is in the future" in output
