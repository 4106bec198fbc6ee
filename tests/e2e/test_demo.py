"""`metalake demo` on the session's demo lake (`demo_lake` in conftest.py): round 1 in-process through
`run_demo`, round 2 through the CLI, both written before the first test reads it.

Round-1 facts are read through `lake.as_of("demo-round-1")`; the tests only read the lake, which the notebook
tests share.
"""

from __future__ import annotations

import io
import itertools
import re
import shlex
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from support.demo_lake import DemoLake
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app
from metalake.demo import NotADemoLake, business, run_demo, target

RAW_BIOPSIES = "dataset:postgres://clinic-db:5432/pathology.biopsies"


def invoke(*args: str, terminal: bool = False) -> Result:
    """`metalake ARGS`; `terminal` draws Rich tables as a terminal shows them (CliRunner's output is a pipe)."""
    env = {"COLUMNS": "200", "METALAKE_ACTOR": "tester", **({"TTY_COMPATIBLE": "1"} if terminal else {})}
    return CliRunner().invoke(app, list(args), env=env)


def round_one(demo_lake: DemoLake) -> metalake.Lake:
    return metalake.connect(demo_lake.path).as_of("demo-round-1")


def rows(lake: metalake.Lake, sql: str) -> list[dict[str, object]]:
    return lake.sql(sql).pl().to_dicts()


def next_commands(output: str) -> list[list[str]]:
    """The commands a round suggests, as argument lists (comments after `    #` left out)."""
    listed = output.split("Next commands to try:")[1].strip().splitlines()
    return [shlex.split(line.split("    #")[0]) for line in listed if line.strip().startswith("metalake")]


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


def test_runs_last_as_long_as_their_fit_and_log_metrics_while_it_runs(demo_lake: DemoLake) -> None:
    lake = round_one(demo_lake)
    runs = rows(lake, "select run_id, name, start_time, end_time, duration_s from runs_current")
    points = lake.sql("select run_id, step, timestamp from metrics where key = 'val_auc'").pl()
    for run in runs:
        logged = points.filter(pl.col("run_id") == run["run_id"]).sort("step")
        stamps = logged.get_column("timestamp").to_list()
        assert all(a < b for a, b in itertools.pairwise(stamps)), run["name"]  # one step after another
        span = (stamps[-1] - stamps[0]).total_seconds()
        assert span > 0.005, run["name"]  # the steps took the fit's time, not a loop's over finished results
        assert run["start_time"] <= stamps[0] and stamps[-1] <= run["end_time"], run["name"]
        assert float(str(run["duration_s"])) >= span, run["name"]


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
    assert re.search(r"val_auc is 0\.\d{4}, needs >= 0\.97\s", demo_lake.first_output)
    assert re.search(r"breast_cancer v2: FAILED: 5 of 10 expectations failed: ", demo_lake.first_output)
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


def test_the_shadow_environment_is_observed_only_around_its_shadow_tests(demo_lake: DemoLake) -> None:
    lake = metalake.connect(demo_lake.path)
    tests = lake.sql("select started_at, ended_at from deployments_current where environment = 'shadow'").pl()
    assert tests.height == 2
    observed = lake.sql("select observed_at from kpi_observations where environment = 'shadow'").pl()
    assert observed.height > 0
    for moment in observed.get_column("observed_at"):
        # model_kpi_impact's week before a shadow test (its baseline), or during the test
        assert any(start - timedelta(days=7) <= moment < end for start, end in tests.iter_rows()), moment


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


# What each suggested command must print (a fragment), by the words after `metalake --lake PATH`.
NEXT_COMMAND_SHOWS = {
    "runs list": "r1-sgd-logreg",
    "datasets history": "(breaking)",
    "datasets diff": "worst concave pts",
    "quality report": "declining",
    "models show": "tumor-classifier version",
    "models list": "wine-cultivar",
    "lineage show": "dataset:postgres://clinic-db:5432/pathology.biopsies",
    "deploy list": "demo-1-rollout",
    "kpis impact": "malignant_recall",
    "sql": "production",
}


def test_the_next_commands_it_suggests_work(demo_lake: DemoLake) -> None:
    commands = next_commands(demo_lake.first_output)
    assert len(commands) >= 8
    for command in commands:
        if command[-1] == "demo":
            continue  # another round: the second-round test runs it
        words = " ".join(word for word in command[3:5] if not word.startswith("-"))
        shows = NEXT_COMMAND_SHOWS.get(words) or NEXT_COMMAND_SHOWS[words.split()[0]]
        result = invoke(*command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
        assert shows in result.output, f"{shlex.join(command)} does not show {shows!r}\n{result.output}"


def test_the_time_travel_command_compares_the_round_before_with_now(demo_lake: DemoLake) -> None:
    first = [c for c in next_commands(demo_lake.first_output) if "--as-of" in c]
    assert first and first[0][-1] == "demo-round-1"  # suggested after "run the demo again"
    assert demo_lake.second.exit_code == 0
    second = next_commands(demo_lake.second.output)
    past = next(c for c in second if "--as-of" in c)
    assert past[-1] == "demo-round-1"  # round 2 looks back at round 1, not at the snapshot it just pinned
    now = next(c for c in second if c[3] == "sql" and c[4] == past[4] and "--as-of" not in c)
    then, today = invoke(*past[1:], terminal=True).output, invoke(*now[1:], terminal=True).output
    assert re.search(r"tumor-classifier\s*│\s*1\s*│\s*production", then)
    assert re.search(r"tumor-classifier\s*│\s*1\s*│\s*archived", today)
    assert re.search(r"tumor-classifier\s*│\s*3\s*│\s*production", today) and "│       3 │" not in then


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


# -- a third round, a round cut short, the calendar ----------------------------------------------------------


def test_a_round_cut_short_is_run_again_without_duplicate_runs_and_nothing_is_dated_after_now(
    demo_lake: DemoLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 3 on a copy of the session's lake: cut short after training, run again, then checked."""
    assert demo_lake.second.exit_code == 0
    path = tmp_path / "demo-lake"
    shutil.copytree(demo_lake.path, path)

    def power_cut(*args: object) -> bool:
        raise RuntimeError("power cut")

    with monkeypatch.context() as patched:
        patched.setattr(business, "ensure_policy", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            run_demo(str(path), Console(file=io.StringIO(), width=100), actor="tester")
    buffer = io.StringIO()
    third = run_demo(str(path), Console(file=buffer, width=100, highlight=False), actor="tester")
    output = buffer.getvalue()
    assert third.round == 3 and "finished before this round was cut short, kept" in output

    lake = metalake.connect(path)
    names = rows(
        lake, "select experiment, name, count(*) as n from runs_current where name like 'r3-%' group by all"
    )
    assert len(names) == 6 and all(r["n"] == 1 for r in names)  # trained once, though the round ran twice
    now = datetime.now(UTC)
    latest = rows(
        lake,
        "select (select max(observed_at) from kpi_observations) as observed, "
        "(select max(greatest(started_at, coalesce(ended_at, started_at))) from deployments_current) as deployed",
    )[0]
    assert latest["observed"] <= now and latest["deployed"] <= now  # type: ignore[operator]
    assert "demo-round-3" in lake.snapshots().get_column("snapshot").to_list()

    # The report fits 100 columns: the tables' cells and the impact lines are whole, never wrapped.
    report = output.split("Leaderboard")[1].split("Next commands")[0]
    assert "breast_cancer_holdout" in report and "val_accuracy (max)" in report
    assert re.search(r"│ breast_cancer +│ v6 FAILED │ … (\d\.\d\d → ){3}\d\.\d\d +│ declining", report)
    headings = [line for line in report.splitlines() if re.match(r"\d{4}-\d\d-\d\d  ", line)]
    assert len(headings) == 4
    for line in headings:
        assert re.fullmatch(
            r"\S+  \S+ v\d+, (canary 10%|rollout|shadow test) \(val_auc \d\.\d{4}, "
            r"training data (passed|FAILED validation)\)",
            line.rstrip(),
        ), line
    assert "demo-round-2    # the registry after round 2" in output


def test_a_round_cut_short_after_its_kpis_writes_them_and_its_deployments_once(
    demo_lake: DemoLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 3 on a copy of the session's lake, cut short just before its snapshot, then run again."""
    path = tmp_path / "demo-lake"
    shutil.copytree(demo_lake.path, path)

    def power_cut(*args: object, **options: object) -> None:
        raise RuntimeError("power cut")

    with monkeypatch.context() as patched:
        patched.setattr(metalake.Lake, "snapshot", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            run_demo(str(path), Console(file=io.StringIO(), width=100), actor="tester")
    lake = metalake.connect(path)
    tables = ("kpi_observations", "deployments", "lineage_events", "model_versions", "runs")
    written = [lake.read(table).height for table in tables]
    assert run_demo(str(path), Console(file=io.StringIO(), width=100), actor="tester").round == 3
    lake = metalake.connect(path)
    assert [lake.read(table).height for table in tables] == written


def test_the_calendar_puts_every_round_between_the_one_before_and_now() -> None:
    now = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
    first = business.round_calendar(None, now)
    assert (
        first.start == datetime(2026, 2, 11, tzinfo=UTC)
        and first.observed_from == first.start - business.WEEK
    )
    calendars = [first]
    while True:
        try:
            calendars.append(business.round_calendar(calendars[-1].end, now))
        except metalake.MetalakeError as error:
            assert "no room left" in str(error)
            break
    assert [c.length for c in calendars[:3]] == [
        business.WEEK,
        business.WEEK,
        timedelta(days=3, hours=19, minutes=28),
    ]
    assert len(calendars) > 10  # a dozen rounds a day before the calendar fills up
    for before, after in itertools.pairwise(calendars):
        assert after.start == before.end and after.end < now
        assert after.observe_every.microseconds == 0 and (after.day / 24).microseconds == 0
    assert business.round_calendar(calendars[1].end, now) == calendars[2]  # deterministic within the hour


# -- which lakes it writes to -------------------------------------------------------------------------------


def test_it_refuses_a_lake_with_its_own_data_and_policy(tmp_path: Path) -> None:
    path = tmp_path / "their-lake"
    lake = metalake.connect(path, actor="owner")
    policy = {"production": {"require_metrics": {"accuracy": ">= 0.5"}}}
    lake.registry.use_policy(policy, persist=True)
    delivery = tmp_path / "wine.parquet"
    pl.DataFrame({"alcohol": [12.1, 13.4], "target": [0, 1]}).write_parquet(delivery)
    lake.datasets.register("wine", str(delivery))
    lake.close()

    result = invoke("--lake", str(path), "demo")
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert "metalake demo will not write to" in message and "already holds data that no demo wrote" in message
    assert "run it on a fresh path" in message
    after = metalake.connect(path)
    assert rows(after, "select dataset, version from dataset_versions") == [{"dataset": "wine", "version": 1}]
    assert [r["document"] for r in rows(after, "select document from policies")] == [
        '{"production": {"require_metrics": {"accuracy": ">= 0.5"}}}'
    ]
    assert after.snapshots().is_empty() and after.read("experiments").is_empty()


def test_it_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a lake")
    result = invoke("--lake", str(tmp_path), "demo")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "holds other files (notes.txt) and is not a metalake lake" in " ".join(result.output.split())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no table was created


def test_it_never_replaces_a_demo_lake_policy_that_was_changed(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    from metalake.demo.training import ensure_experiments

    ensure_experiments(lake)  # what every round writes first: the lake is the demo's
    assert target.is_demo_lake(lake)
    target.check_lake(lake, business.policy_document())  # an interrupted first round may go on
    lake.registry.use_policy({"staging": {"require_metrics": {"val_auc": ">= 0.5"}}}, persist=True)
    with pytest.raises(NotADemoLake, match="keeps a registry policy of its own"):
        run_demo(str(tmp_path / "lake"), Console(file=io.StringIO()), actor="tester")
    assert lake.read("policies").height == 1


def test_it_writes_to_a_new_or_empty_lake(tmp_path: Path) -> None:
    target.check_folder(str(tmp_path / "missing"))
    target.check_folder(str(tmp_path))  # an empty folder
    empty = metalake.connect(tmp_path / "lake")
    target.check_folder(str(tmp_path / "lake"))
    target.check_lake(empty, business.policy_document())
    assert not target.is_demo_lake(empty)


def test_the_session_demo_lake_is_one_it_may_write_to_again(demo_lake: DemoLake) -> None:
    lake = metalake.connect(demo_lake.path)
    assert target.is_demo_lake(lake)
    target.check_lake(lake, business.policy_document())


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
