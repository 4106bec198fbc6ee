"""`metalake demo` on the session's demo lake (`demo_lake` in conftest.py): round 1 in-process through
`run_demo`, round 2 through the CLI, both written before the first test reads it.

Round-1 facts are read through `lake.as_of("demo-round-1")`; the tests only read the lake, which the notebook
tests share.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import polars as pl
import pytest
from demo_lake import DemoLake
from typer.testing import CliRunner, Result

import metalake
from metalake.cli import app

RAW_BIOPSIES = "dataset:postgres://clinic-db:5432/pathology.biopsies"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "METALAKE_ACTOR": "tester"})


def round_one(demo_lake: DemoLake) -> metalake.Lake:
    return metalake.connect(demo_lake.path).as_of("demo-round-1")


def rows(lake: metalake.Lake, sql: str) -> list[dict[str, object]]:
    return lake.sql(sql).pl().to_dicts()


# -- round 1 --------------------------------------------------------------------------------------------------


def test_datasets_and_the_broken_delivery_that_fails_validation(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    assert demo_lake.first.round == 1 and demo_lake.first.snapshot == "demo-round-1"
    assert demo_lake.first.dataset_versions == {
        "breast_cancer": 1,
        "breast_cancer:broken": 2,
        "breast_cancer_holdout": 1,
        "wine": 1,
    }
    validations = rows(lake, "select dataset, version, success from dq_validations order by dataset, version")
    assert validations == [
        {"dataset": "breast_cancer", "version": 1, "success": True},
        {"dataset": "breast_cancer", "version": 2, "success": False},
        {"dataset": "breast_cancer_holdout", "version": 1, "success": True},
        {"dataset": "wine", "version": 1, "success": True},
    ]
    assert all(
        row["engine"] == "great_expectations" for row in rows(lake, "select engine from dq_validations")
    )
    failed = {r["expectation_type"] for r in rows(lake, "select * from dq_results where not success")}
    assert {"expect_table_columns_to_match_set", "expect_column_values_to_not_be_null"} <= failed
    scorecard = {r["dataset"]: r for r in rows(lake, "select * from dq_scorecard")}
    assert scorecard["breast_cancer"]["latest_success"] is False
    assert (demo_lake.path / "sources" / "breast_cancer").is_dir()
    # The ETL's raw table changed schema with the broken delivery: a breaking change upstream.
    changes = rows(lake, "select * from schema_changes where dataset like 'postgres://%'")
    assert any(change["breaking"] for change in changes)


def test_runs_log_real_per_iteration_curves(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    runs = rows(lake, "select run_id, experiment, name, status from runs_current order by name")
    assert {r["name"] for r in runs} == {
        "r1-sgd-logreg",
        "r1-gradient-boosting",
        "r1-mlp",
        "r1-nightly-retrain",
        "r1-random-forest",
    } and len(runs) == 6
    assert all(r["status"] == "finished" for r in runs)
    summaries = rows(lake, "select run_id, key, count from run_metrics where key = 'val_auc'")
    assert len(summaries) == 6 and all(int(str(r["count"])) >= 8 for r in summaries)
    sgd = next(
        r["run_id"]
        for r in runs
        if r["name"] == "r1-sgd-logreg" and r["experiment"] == "tumor-classification"
    )
    history = lake.runs.metric_history([str(sgd)], "train_loss").sort("step")
    assert history.height == 30
    assert history.item(-1, "value") < history.item(0, "value")  # a real model learns
    details = lake.runs.get(str(sgd))
    assert details.params["model_type"] == "sgd-logreg"
    assert {(i["dataset"], i["version"]) for i in details.inputs} == {
        ("breast_cancer", 1),
        ("breast_cancer_holdout", 1),
    }
    assert details.artifacts and details.artifacts[0]["name"] == "model"


def test_the_best_models_reach_production_and_the_broken_one_is_refused(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    registry = {
        (r["model"], r["version"]): r
        for r in rows(lake, "select model, version, stage, aliases from registry_current")
    }
    assert registry[("tumor-classifier", 1)]["stage"] == "production"
    assert registry[("tumor-classifier", 1)]["aliases"] == ["champion"]
    assert registry[("wine-cultivar", 1)]["stage"] == "production"
    assert registry[("tumor-classifier", 2)]["stage"] == "none"
    assert demo_lake.first.refused is not None
    model, version, rules = demo_lake.first.refused
    assert (model, version) == ("tumor-classifier", 2)
    assert set(rules) == {"require_passing_data_quality", "require_metrics"}
    events = rows(
        lake, "select event_type from model_events where model = 'tumor-classifier' and version = 2"
    )
    assert events == [{"event_type": "registered"}]  # the refused move wrote nothing
    assert "Promotion refused: tumor-classifier v2 -> staging" in demo_lake.first_output
    assert "breast_cancer v2 failed its latest validation" in demo_lake.first_output
    assert len(rows(lake, "select * from policies")) == 1
    approvals = rows(
        lake,
        "select recorded_by from model_events where model = 'tumor-classifier' and version = 1 "
        "and stage = 'production'",
    )
    assert approvals == [{"recorded_by": "release-manager"}]  # the policy wants a distinct approver


def test_deployments_kpis_and_their_impact(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    deployments = rows(lake, "select * from deployments_current order by started_at")
    assert len(deployments) == 6 == len(demo_lake.first.deployment_ids)
    environments = {(d["model"], d["version"], d["environment"], d["is_active"]) for d in deployments}
    assert ("tumor-classifier", 1, "production", True) in environments
    assert ("tumor-classifier", 2, "shadow", False) in environments
    observations = rows(lake, "select count(*) as n from kpi_observations")
    assert observations == [{"n": demo_lake.first.kpi_observations}]
    impact = rows(
        lake,
        "select * from model_kpi_impact where kpi = 'malignant_recall' and environment <> 'staging' "
        "order by deployed_at",
    )
    rollout, shadow = impact[1], impact[-1]
    assert rollout["environment"] == "production" and rollout["improved"] is True
    assert rollout["training_data_ok"] is True
    assert shadow["environment"] == "shadow" and shadow["improved"] is False
    assert shadow["training_data_ok"] is False
    assert "Model KPI impact of round 1" in demo_lake.first_output


def test_lineage_walks_from_a_deployment_to_the_raw_table(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    upstream = lake.lineage.upstream("model:tumor-classifier/1")
    nodes = set(upstream.get_column("source_node").to_list())
    assert {"dataset:metalake/breast_cancer", "job:clinic-etl/export_biopsies", RAW_BIOPSIES} <= nodes
    production = next(
        d["deployment_id"]
        for d in rows(
            lake, "select * from deployments_current where environment = 'production' and is_active"
        )
        if d["model"] == "tumor-classifier"
    )
    walk = lake.lineage.upstream(f"deployment:production/{production}")
    assert RAW_BIOPSIES in set(walk.get_column("source_node").to_list())


def test_output_shows_the_views_and_next_commands(demo_lake: DemoLake) -> None:
    for fragment in (
        "Leaderboard (view leaderboard)",
        "Data quality (view dq_scorecard)",
        "Next commands to try",
    ):
        assert fragment in demo_lake.first_output
    snapshots = metalake.connect(demo_lake.path).snapshots()
    assert "demo-round-1" in snapshots.get_column("snapshot").to_list()


def test_the_next_commands_it_suggests_work(demo_lake: DemoLake) -> None:
    listed = demo_lake.first_output.split("Next commands to try:")[1].strip().splitlines()
    commands = [shlex.split(line.split("    #")[0]) for line in listed if line.strip().startswith("metalake")]
    assert len(commands) >= 8
    for command in commands:
        if command[-1] == "demo":
            continue  # another round: the second-round test runs it
        result = invoke(*command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"


# -- round 2 --------------------------------------------------------------------------------------------------


def test_a_second_round_adds_data_models_and_a_new_production_version(demo_lake: DemoLake) -> None:
    assert demo_lake.second.exit_code == 0, demo_lake.second.output
    assert "round 2" in demo_lake.second.output and "Promotion refused" in demo_lake.second.output
    assert "wine v1: 178 rows (unchanged content: the same version)" in demo_lake.second.output
    lake = metalake.connect(demo_lake.path)
    assert {"demo-round-1", "demo-round-2"} <= set(lake.snapshots().get_column("snapshot").to_list())
    versions = rows(
        lake, "select dataset, version, row_count from dataset_versions order by dataset, version"
    )
    cancer = [(r["version"], r["row_count"]) for r in versions if r["dataset"] == "breast_cancer"]
    assert [v for v, _ in cancer] == [1, 2, 3, 4]
    assert cancer[2][1] > cancer[0][1]  # round 2's delivery has more rows
    assert [r["version"] for r in versions if r["dataset"] == "wine"] == [1]
    stages = {
        (r["model"], r["version"]): r["stage"]
        for r in rows(lake, "select model, version, stage from registry_current")
    }
    assert stages[("tumor-classifier", 1)] == "archived"
    assert stages[("tumor-classifier", 3)] == "production"
    assert stages[("wine-cultivar", 2)] == "production"
    history = rows(
        lake,
        "select version, valid_to from model_stage_history "
        "where model = 'tumor-classifier' and stage = 'production' order by valid_from",
    )
    assert [h["version"] for h in history] == [1, 3] and history[0]["valid_to"] is not None
    runs = rows(lake, "select count(*) as n from runs_current")
    assert runs == [{"n": 12}]
    active = rows(
        lake,
        "select version, started_at from deployments_current "
        "where model = 'tumor-classifier' and environment = 'production' order by started_at",
    )
    assert active[-1]["version"] == 3 and len(active) == 4  # canary and rollout per round


def test_round_one_is_unchanged_as_of_its_snapshot(demo_lake: DemoLake) -> None:
    assert demo_lake.second.exit_code == 0
    past = round_one(demo_lake)
    assert rows(past, "select count(*) as n from runs_current") == [{"n": 6}]
    now = metalake.connect(demo_lake.path)
    assert now.kpis.list().height == 4
    frame = now.sql("select * from model_kpi_impact").pl()
    assert isinstance(frame, pl.DataFrame) and frame.height > 0


# -- the command itself -----------------------------------------------------------------------------------------


def test_without_the_demo_extra_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    result = invoke("--lake", str(tmp_path / "lake"), "demo")
    assert result.exit_code == 1
    assert "scikit-learn" in result.output and "pip install 'metalake[demo]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo"], "./demo-lake"),
        (["--lake", "global-lake", "demo"], "global-lake"),
        (["--lake", "global-lake", "demo", "--lake", "own-lake"], "own-lake"),
    ],
)
def test_which_lake_it_writes_to(monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str) -> None:
    """Never $METALAKE_URI: sample rows must not land in a real lake."""
    import metalake.demo

    chosen = []
    monkeypatch.setattr(metalake.demo, "run_demo", lambda uri, console, actor=None: chosen.append(uri))
    result = CliRunner().invoke(app, args, env={"METALAKE_URI": "/real/lake"})
    assert result.exit_code == 0, result.output
    assert chosen == [expected]
