"""Importing MLflow into the lake: a real MLflow store (SQLite) copied fact by fact, then incrementally."""

from __future__ import annotations

import math
import shutil
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import metalake
from metalake.integrations.mlflow import ImportSummary, import_mlflow

# MLflow's own deprecation warnings (SQLAlchemy loaders, pandas arguments) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:mlflow")

T0 = 1_750_000_000_000  # ms since the epoch, 2025-06-15
TABLES = [
    "experiments",
    "runs",
    "params",
    "run_tags",
    "metrics",
    "metric_summaries",
    "run_inputs",
    "models",
    "model_versions",
    "model_events",
]


def at(milliseconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=milliseconds)


@dataclass
class MlflowStore:
    """A populated MLflow SQLite store: its URI, a client on it, and the ids of what the test created."""

    uri: str
    client: Any
    runs: dict[str, str]
    experiments: dict[str, str]
    dataset_digest: str


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its tables created once: MLflow's migrations take a second or two."""
    mlflow = pytest.importorskip("mlflow")
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> MlflowStore:
    """Two experiments, five runs (nested, failed, still running), metric histories, a dataset input, and a
    registered model with two versions, an alias, a version tag and an old-style stage."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow = pytest.importorskip("mlflow")
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    artifacts = (tmp_path / "artifacts").as_uri()
    experiments = {
        "churn": client.create_experiment(
            "churn",
            artifact_location=f"{artifacts}/churn",
            tags={"team": "growth", "mlflow.note.content": "Who leaves next month"},
        ),
        "fraud": client.create_experiment("fraud", artifact_location=f"{artifacts}/fraud"),
    }
    runs: dict[str, str] = {}

    def run(name: str, experiment: str, start: int, tags: dict[str, str] | None = None) -> str:
        created = client.create_run(experiments[experiment], start_time=start, tags=tags or {}, run_name=name)
        runs[name] = created.info.run_id
        return str(created.info.run_id)

    def points(run_id: str, key: str, values: list[float], start: int) -> None:
        client.log_batch(
            run_id, metrics=[Metric(key, v, start + 1000 * step, step) for step, v in enumerate(values)]
        )

    baseline = run(
        "baseline",
        "churn",
        T0,
        {"mlflow.user": "ada", "mlflow.source.name": "train.py", "mlflow.source.git.commit": "abc123"},
    )
    client.log_batch(
        baseline, params=[Param("lr", "0.01"), Param("epochs", "10")], tags=[RunTag("team", "growth")]
    )
    points(baseline, "loss", [1 / (step + 1) for step in range(10)], T0)
    points(baseline, "acc", [0.5 + step / 20 for step in range(10)], T0)
    dataset = mlflow.data.from_pandas(
        pd.DataFrame({"x": [1.0, 2.0], "y": [0.0, 1.0]}),
        source="s3://bucket/churn/train.parquet",
        name="churn-train",
    )
    with mlflow.start_run(run_id=baseline):
        mlflow.log_input(dataset, context="training")
    client.set_terminated(baseline, "FINISHED", end_time=T0 + 60_000)

    child = run("child", "churn", T0 + 10_000, {"mlflow.parentRunId": baseline})
    points(child, "loss", [0.9, 0.8, 0.7], T0 + 10_000)
    client.set_terminated(child, "FINISHED", end_time=T0 + 20_000)

    broken = run("broken", "churn", T0 + 30_000)
    points(broken, "loss", [5.0, 6.0, float("nan")], T0 + 30_000)
    client.log_metric(broken, "loss", 7.0, timestamp=T0 + 30_000, step=0)  # same step and time, new value
    client.set_terminated(broken, "FAILED", end_time=T0 + 31_000)

    live = run("live", "churn", T0 + 40_000)
    points(live, "loss", [2.0, 1.5, 1.2, 1.1, 1.0], T0 + 40_000)

    fraud = run("fraud-1", "fraud", T0 + 50_000)
    points(fraud, "auc", [0.91], T0 + 50_000)
    client.set_terminated(fraud, "FINISHED", end_time=T0 + 55_000)

    client.create_registered_model("churn-model", tags={"domain": "churn"}, description="Predicts churn")
    client.create_model_version("churn-model", f"{artifacts}/baseline/model", baseline, description="first")
    client.create_model_version("churn-model", f"{artifacts}/child/model", child)
    client.set_registered_model_alias("churn-model", "champion", "2")
    client.set_model_version_tag("churn-model", "1", "validated", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, yet old stores hold them
        client.transition_model_version_stage("churn-model", "1", "Staging")
    return MlflowStore(uri, client, runs, experiments, dataset.digest)


def one(lake: metalake.Lake, query: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    rows = lake.sql(query, params).fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def table_versions(lake: metalake.Lake) -> dict[str, int | None]:
    versions: dict[str, int | None] = {}
    for table in TABLES:
        history = lake.history(table, limit=1)
        versions[table] = None if history.is_empty() else history.get_column("version")[0]
    return versions


def test_import_copies_every_kind_of_fact(lake: metalake.Lake, mlflow_store: MlflowStore) -> None:
    calls: list[tuple[str, int, int]] = []
    summary = import_mlflow(lake, mlflow_store.uri, progress=lambda *call: calls.append(call))
    ids = mlflow_store.runs

    assert summary == ImportSummary(
        experiments=3,  # churn, fraud and MLflow's Default experiment
        runs=5,
        params=2,
        tags=summary.tags,
        metric_points=32,
        inputs=1,
        models=1,
        model_versions=2,
        model_events=5,  # two registrations, a stage, a tag, an alias
        runs_seen=5,
        skipped_metric_points=1,  # MLflow's second value at the same step and time
    )
    assert ("runs", 5, 5) in calls and calls[-1] == ("models", 1, 1)

    experiments = {row["experiment"]: row for row in lake.read("experiments").iter_rows(named=True)}
    assert set(experiments) == {"Default", "churn", "fraud"}
    churn = experiments["churn"]
    assert churn["description"] == "Who leaves next month"
    assert '"team": "growth"' in churn["tags"]
    assert churn["artifact_location"].endswith("/artifacts/churn")
    assert churn["source"] == f"mlflow:{mlflow_store.experiments['churn']}"

    current = {row["name"]: row for row in lake.sql("select * from runs_current").pl().iter_rows(named=True)}
    assert {name: row["status"] for name, row in current.items()} == {
        "baseline": "finished",
        "child": "finished",
        "broken": "failed",
        "live": "running",
        "fraud-1": "finished",
    }
    baseline = current["baseline"]
    assert baseline["run_id"] == ids["baseline"]
    assert (baseline["start_time"], baseline["end_time"]) == (at(T0), at(T0 + 60_000))
    assert baseline["duration_s"] == 60.0
    assert (baseline["user"], baseline["command"], baseline["git_commit"]) == ("ada", "train.py", "abc123")
    assert baseline["experiment"] == "churn" and baseline["source"] == "mlflow"
    assert current["child"]["parent_run_id"] == ids["baseline"]
    assert current["live"]["end_time"] is None
    assert current["fraud-1"]["experiment"] == "fraud"

    history = lake.read("metrics", where=f"run_id = '{ids['baseline']}' and key = 'loss'").sort("step")
    assert history.get_column("value").to_list() == pytest.approx([1 / (s + 1) for s in range(10)])
    assert history.get_column("timestamp").to_list() == [at(T0 + 1000 * s) for s in range(10)]
    broken = lake.read("metrics", where=f"run_id = '{ids['broken']}'").sort("step")
    assert broken.get_column("value").to_list()[:2] == [7.0, 6.0]
    assert math.isnan(broken.get_column("value")[2]), "a diverged value stays NaN"

    summaries = lake.read("metric_summaries", where=f"run_id = '{ids['baseline']}' and key = 'loss'")
    assert summaries.select("flush_id", "count", "last_step", "min_value", "max_value").row(0) == (
        f"mlflow-import:{ids['baseline']}:1",
        10,
        9,
        pytest.approx(0.1),
        1.0,
    )
    assert lake.read("metric_summaries").get_column("count").sum() == 32

    params = lake.read("params", where=f"run_id = '{ids['baseline']}'")
    assert dict(params.select("key", "value").iter_rows()) == {"lr": "0.01", "epochs": "10"}
    tags = dict(
        lake.read("run_tags", where=f"run_id = '{ids['baseline']}'").select("key", "value").iter_rows()
    )
    assert tags["team"] == "growth" and tags["mlflow.user"] == "ada" and tags["mlflow.runName"] == "baseline"

    inputs = lake.read("run_inputs").row(0, named=True)
    assert (inputs["run_id"], inputs["dataset"], inputs["context"]) == (
        ids["baseline"],
        "churn-train",
        "training",
    )
    assert (inputs["digest"], inputs["path"]) == (
        mlflow_store.dataset_digest,
        "s3://bucket/churn/train.parquet",
    )

    model = lake.read("models").row(0, named=True)
    assert (model["model"], model["description"], model["tags"]) == (
        "churn-model",
        "Predicts churn",
        '{"domain": "churn"}',
    )
    versions = lake.read("model_versions").sort("version")
    assert versions.select("version", "run_id", "description", "source").rows() == [
        (1, ids["baseline"], "first", "mlflow"),
        (2, ids["child"], None, "mlflow"),
    ]
    assert versions.get_column("artifact_uri")[0].endswith("/artifacts/baseline/model")
    events = lake.read("model_events").sort("event_type", "version")
    assert events.select("event_type", "version", "stage", "alias", "key", "value").rows() == [
        ("alias_set", 2, None, "champion", None, None),
        ("registered", 1, None, None, None, None),
        ("registered", 2, None, None, None, None),
        ("stage_transition", 1, "staging", None, None, None),
        ("tag_set", 1, None, None, "validated", "true"),
    ]

    commits = lake.history("metrics").filter(rows_added=32)
    assert commits.height == 1, "one commit for all the points"
    assert commits.row(0, named=True)["operation"] == "import_mlflow"
    assert commits.row(0, named=True)["idempotency_key"].startswith("import_mlflow:metrics:")


def test_reimport_adds_only_what_is_new(lake: metalake.Lake, mlflow_store: MlflowStore) -> None:
    from mlflow.entities import Metric

    import_mlflow(lake, mlflow_store.uri)
    before = table_versions(lake)
    again = import_mlflow(lake, mlflow_store.uri)
    assert again.rows_written == 0 and again.runs_seen == 5
    assert table_versions(lake) == before, "a repeated import commits nothing"

    client, ids = mlflow_store.client, mlflow_store.runs
    live = ids["live"]
    client.log_batch(
        live, metrics=[Metric("loss", 0.9 - step / 10, T0 + 45_000 + step, 5 + step) for step in range(3)]
    )
    client.set_terminated(live, "FINISHED", end_time=T0 + 70_000)
    late = client.create_run(mlflow_store.experiments["fraud"], start_time=T0 + 80_000, run_name="fraud-2")
    client.log_metric(late.info.run_id, "auc", 0.93, timestamp=T0 + 80_500, step=0)
    client.set_registered_model_alias("churn-model", "champion", "1")
    client.delete_model_version_tag("churn-model", "1", "validated")
    client.update_model_version("churn-model", "2", description="distilled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage("churn-model", "1", "Production")

    summary = import_mlflow(lake, mlflow_store.uri)
    assert (summary.runs, summary.metric_points, summary.model_events) == (2, 4, 4)
    assert (summary.params, summary.inputs, summary.model_versions, summary.experiments) == (0, 0, 0, 0)
    assert summary.tags == len(client.get_run(late.info.run_id).data.tags)

    row = one(lake, "select status, end_time, event_count from runs_current where run_id = ?", [live])
    assert row == ("finished", at(T0 + 70_000), 2)
    assert one(lake, "select status from runs_current where name = 'fraud-2'") == ("running",)
    assert lake.read("metrics", where=f"run_id = '{live}'").height == 8
    combined = lake.read("metric_summaries", where=f"run_id = '{live}'").sort("flush_id")
    assert combined.get_column("flush_id").to_list() == [f"mlflow-import:{live}:1", f"mlflow-import:{live}:2"]
    assert combined.get_column("count").sum() == 8
    last = one(
        lake, "select last_value, last_step from metric_summary where run_id = ? and key = 'loss'", [live]
    )
    assert last == (pytest.approx(0.7), 7)
    champion = "select version from model_events where alias = 'champion' order by event_time desc limit 1"
    assert one(lake, champion) == (1,)
    changes = lake.read(
        "model_events", where="event_type in ('tag_deleted', 'description_set', 'stage_transition')"
    )
    assert changes.sort("event_type", "event_time").select(
        "event_type", "version", "stage", "key", "value"
    ).rows() == [
        ("description_set", 2, None, None, "distilled"),
        ("stage_transition", 1, "staging", None, None),
        ("stage_transition", 1, "production", None, None),
        ("tag_deleted", 1, None, "validated", None),
    ]

    before = table_versions(lake)
    assert import_mlflow(lake, mlflow_store.uri).rows_written == 0
    assert table_versions(lake) == before


@pytest.mark.parametrize("crashed_before", ["metric_summaries", "runs"])
def test_interrupted_import_completes_without_duplicates(
    lake: metalake.Lake, mlflow_store: MlflowStore, monkeypatch: pytest.MonkeyPatch, crashed_before: str
) -> None:
    real_append = metalake.Lake.append

    def crash(self: metalake.Lake, table: str, data: Any, **options: Any) -> Any:
        if table == crashed_before:
            raise RuntimeError("killed")
        return real_append(self, table, data, **options)

    monkeypatch.setattr(metalake.Lake, "append", crash)
    with pytest.raises(RuntimeError):
        import_mlflow(lake, mlflow_store.uri)
    assert lake.read("metrics").height == 32
    assert lake.read("runs").is_empty(), "run events come last, after the facts"
    monkeypatch.setattr(metalake.Lake, "append", real_append)

    summary = import_mlflow(lake, mlflow_store.uri)
    assert (summary.runs, summary.metric_points, summary.params) == (5, 0, 0)
    assert lake.read("metrics").height == 32
    summaries = lake.read("metric_summaries")
    assert summaries.get_column("count").sum() == 32, "points committed before the crash are summarized"
    assert summaries.height == summaries.unique(["run_id", "key"]).height


def test_client_reads_and_small_chunks_give_the_same_lake(
    tmp_path: Path, mlflow_store: MlflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    through_sql = metalake.connect(tmp_path / "sql-lake")
    import_mlflow(through_sql, mlflow_store.uri)
    monkeypatch.setattr("metalake.integrations.mlflow.importer.sql_metric_reader", lambda client: None)
    monkeypatch.setattr("metalake.integrations.mlflow.importer.RUNS_PER_CHUNK", 2)
    through_client = metalake.connect(tmp_path / "client-lake")
    summary = import_mlflow(through_client, mlflow_store.uri)

    assert (summary.metric_points, summary.skipped_metric_points) == (32, 1)
    assert through_client.history("metrics").filter(operation="import_mlflow").height == 3, (
        "5 runs, 2 a chunk"
    )
    for table, key in (
        ("metrics", ["run_id", "key", "step", "timestamp"]),
        ("metric_summaries", ["flush_id", "key"]),
    ):
        a, b = (lake.read(table).drop("recorded_at").sort(key) for lake in (through_sql, through_client))
        assert a.equals(b), table


def test_experiment_filter(tmp_path: Path, mlflow_store: MlflowStore) -> None:
    lake = metalake.connect(tmp_path / "fraud-lake")
    summary = import_mlflow(lake, mlflow_store.uri, experiments=["fraud"])
    assert (summary.experiments, summary.runs, summary.metric_points) == (1, 1, 1)
    assert lake.read("experiments").get_column("experiment").to_list() == ["fraud"]
    assert lake.read("runs").get_column("run_id").to_list() == [mlflow_store.runs["fraud-1"]]
    assert lake.read("model_versions").is_empty(), "the model's runs belong to another experiment"

    with pytest.raises(metalake.MetalakeError, match=r"'nope'.*churn, fraud"):
        import_mlflow(lake, mlflow_store.uri, experiments=["nope"])


def test_missing_store_is_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    with pytest.raises(metalake.MetalakeError, match="No MLflow store"):
        import_mlflow(lake, f"sqlite:///{tmp_path}/typo.db")
    assert not (tmp_path / "typo.db").exists()


def test_without_mlflow_installed(lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(metalake.MetalakeError, match=r"pip install 'metalake\[mlflow\]'"):
        import_mlflow(lake, "sqlite:///mlflow.db")


def test_cli_import_mlflow(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from metalake.cli.app import app

    uri = f"sqlite:///{tmp_path}/cli-mlflow.db"
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("cli-exp")
    with mlflow.start_run(run_name="from-cli"):
        mlflow.log_param("depth", 3)
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.set_tracking_uri(None)
    lake_path = tmp_path / "cli-lake"
    runner = CliRunner()
    result = runner.invoke(app, ["--lake", str(lake_path), "import", "mlflow", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "metric points" in result.output
    lake = metalake.connect(lake_path)
    assert lake.sql("select name, status from runs_current").fetchall() == [("from-cli", "finished")]
    assert lake.sql("select count(*) from metrics").fetchall() == [(3,)]
    again = runner.invoke(app, ["--lake", str(lake_path), "import", "mlflow", "--tracking-uri", uri])
    assert again.exit_code == 0 and "Nothing new" in again.output
    missing = runner.invoke(
        app, ["--lake", str(lake_path), "import", "mlflow", "--tracking-uri", "sqlite:////no/such/dir/x.db"]
    )
    assert missing.exit_code == 1 and "Traceback" not in missing.output
