"""Unmodified MLflow code against `metalake serve`: scripts as users write them, run in their own process with
MLFLOW_TRACKING_URI pointing at the server, then the same lake read through `lake.runs`, the views and the REST
API, with equal answers; and MLflow's search, limits and errors as MLflow's own server gives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api_server import Server, start_server_process

import metalake

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag, ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("mlflow")
    started = start_server_process(folder / "lake", folder / "spool")
    yield started
    started.stop()


@pytest.fixture
def client(server: Server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an error shows at once, not after retries
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)  # for the fluent calls of the test itself
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def run_script(server: Server, code: str, tmp_path: Path) -> dict[str, Any]:
    """Run a user's script in its own interpreter against the server; it prints one JSON object last."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return printed


def lake_of(server: Server) -> metalake.Lake:
    """The server's lake as another process reads it: once what the server answered is committed."""
    server.wait_settled()
    return metalake.connect(server.lake_path, actor="reader")


def test_a_training_script_with_sklearn_autolog_logs_into_the_lake(server: Server, tmp_path: Path) -> None:
    printed = run_script(
        server,
        """
        import json
        import mlflow
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        mlflow.set_experiment("churn-autolog")
        mlflow.sklearn.autolog()
        X, y = make_classification(n_samples=200, n_features=6, random_state=0)
        with mlflow.start_run(run_name="logreg") as run:
            LogisticRegression(C=0.5, max_iter=200).fit(X, y)
        print(json.dumps({"run_id": run.info.run_id}))
        """,
        tmp_path,
    )
    run_id = printed["run_id"]
    lake = lake_of(server)
    try:
        details = lake.runs.get(run_id)
        assert details.status == "finished"
        assert details.info["name"] == "logreg"
        assert details.info["experiment"] == "churn-autolog"
        assert details.params["C"] == "0.5"
        assert "training_accuracy_score" in details.metrics
        assert details.tags["estimator_name"] == "LogisticRegression"
        assert details.info["command"].endswith("train.py")  # mlflow.source.name became the run's command
        [row] = lake.sql("select status, name from runs_current where run_id = ?", [run_id]).fetchall()
        assert row == ("finished", "logreg")
        assert any(row["context"] == "train" for row in details.inputs)  # autolog's dataset input
    finally:
        lake.close()
    over_rest = requests.get(f"{server.url}/api/v1/runs/{run_id}", timeout=10).json()
    assert over_rest["params"]["C"] == "0.5"
    assert over_rest["status"] == "finished"


def test_the_fluent_api_nested_and_failed_runs_tags_and_metrics_per_step(
    server: Server, client: MlflowClient, tmp_path: Path
) -> None:
    printed = run_script(
        server,
        """
        import json
        import mlflow

        mlflow.set_experiment("churn-fluent")
        with mlflow.start_run(run_name="sweep") as parent:
            mlflow.set_tags({"team": "growth", "mlflow.note.content": "a sweep"})
            mlflow.log_params({"lr": 0.1, "depth": 6})
            for step in range(50):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
            with mlflow.start_run(run_name="trial", nested=True) as child:
                mlflow.log_metrics({"auc": 0.8, "nan": float("nan")})
        try:
            with mlflow.start_run(run_name="broken") as broken:
                raise RuntimeError("out of memory")
        except RuntimeError:
            pass
        print(json.dumps({"parent": parent.info.run_id, "child": child.info.run_id,
                          "broken": broken.info.run_id}))
        """,
        tmp_path,
    )
    lake = lake_of(server)
    try:
        parent = lake.runs.get(printed["parent"])
        child = lake.runs.get(printed["child"])
        assert child.info["parent_run_id"] == printed["parent"]
        assert parent.tags["team"] == "growth" and parent.tags["mlflow.note.content"] == "a sweep"
        assert parent.params == {"lr": "0.1", "depth": "6"}
        assert lake.runs.get(printed["broken"]).status == "failed"
        lake_points = lake.runs.metric_history(printed["parent"], "loss")
        assert lake_points.height == 50
    finally:
        lake.close()
    history = client.get_metric_history(printed["parent"], "loss")
    assert [point.step for point in history] == list(range(50))
    assert [point.value for point in history] == pytest.approx(lake_points.get_column("value").to_list())
    run = client.get_run(printed["child"])
    assert run.data.metrics["auc"] == 0.8 and run.data.metrics["nan"] != run.data.metrics["nan"]  # NaN
    assert run.data.tags["mlflow.parentRunId"] == printed["parent"]
    assert client.get_run(printed["broken"]).info.status == "FAILED"


def test_runs_logged_by_the_lake_are_found_by_mlflow(server: Server, client: MlflowClient) -> None:
    lake = lake_of(server)
    try:
        with lake.runs.start(experiment="lake-native", name="native") as run:
            run.log_params({"k": "3"})
            for step in range(10):
                run.log_metric("score", step / 10, step=step)
        lake.runs.wait()
        experiment_id = lake.experiments.id_of("lake-native")
    finally:
        lake.close()
    experiment = client.get_experiment_by_name("lake-native")
    assert experiment is not None and experiment.experiment_id == experiment_id
    [found] = client.search_runs([experiment_id], "params.k = '3' and metrics.score > 0.5")
    assert found.info.run_id == run.run_id and found.info.run_name == "native"
    assert found.info.status == "FINISHED"
    assert [point.value for point in client.get_metric_history(run.run_id, "score")] == pytest.approx(
        [step / 10 for step in range(10)]
    )


def make_runs(client: MlflowClient, experiment: str, count: int) -> tuple[str, list[str]]:
    experiment_id = client.create_experiment(experiment)
    ids = []
    for index in range(count):
        run = client.create_run(experiment_id, run_name=f"r{index:02d}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", index / count, 0, 0)],
            params=[Param("i", str(index)), Param("model", "gbm" if index % 2 else "Linear")],
            tags=[RunTag("parity", "odd" if index % 2 else "even")],
        )
        client.set_terminated(run.info.run_id, "FAILED" if index % 5 == 0 else "FINISHED")
        ids.append(run.info.run_id)
    return experiment_id, ids


def test_search_runs_with_each_filter_form_order_and_pages(client: MlflowClient) -> None:
    experiment_id, ids = make_runs(client, "search-forms", 20)

    def names(filter_string: str = "", **options: Any) -> list[str]:
        return [run.info.run_name for run in client.search_runs([experiment_id], filter_string, **options)]

    assert names("metrics.acc >= 0.9", order_by=["metrics.acc DESC"]) == ["r19", "r18"]
    assert names("metrics.acc < 0.1 and params.i != '0'") == ["r01"]
    assert sorted(names("params.model = 'gbm' and tags.parity = 'odd'")) == [
        f"r{i:02d}" for i in range(1, 20, 2)
    ]
    assert len(names("params.model LIKE 'Lin%'")) == 10
    assert len(names("params.model ILIKE 'lin%'")) == 10
    assert len(names("params.model LIKE 'lin%'")) == 0
    assert sorted(names(f"attributes.run_id IN ('{ids[3]}', '{ids[4]}')")) == ["r03", "r04"]
    assert sorted(names("attributes.status = 'FAILED'")) == ["r00", "r05", "r10", "r15"]
    assert names("attributes.run_name = 'r07'") == ["r07"]
    assert names("tags.`parity` = 'even' and metrics.acc > 0.85") == ["r18"]
    assert names("metrics.unknown > 1") == []
    assert names(order_by=["params.i ASC"])[:3] == ["r00", "r01", "r10"]  # params compare as text
    assert names() == [f"r{i:02d}" for i in reversed(range(20))]  # newest first, by default

    first = client.search_runs([experiment_id], "", order_by=["metrics.acc ASC"], max_results=7)
    second = client.search_runs(
        [experiment_id], "", order_by=["metrics.acc ASC"], max_results=7, page_token=first.token
    )
    third = client.search_runs(
        [experiment_id], "", order_by=["metrics.acc ASC"], max_results=7, page_token=second.token
    )
    paged = [run.info.run_name for page in (first, second, third) for run in page]
    assert paged == [f"r{i:02d}" for i in range(20)] and not third.token

    client.delete_run(ids[0])
    assert "r00" not in names()
    assert [
        r.info.run_name for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    ] == ["r00"]
    assert len(client.search_runs([experiment_id], run_view_type=ViewType.ALL)) == 20
    client.restore_run(ids[0])
    assert "r00" in names()

    frame = mlflow.search_runs([experiment_id], filter_string="metrics.acc > 0.8")
    assert sorted(frame["tags.mlflow.runName"]) == ["r17", "r18", "r19"]


def test_mlflow_and_the_rest_api_and_the_views_give_the_same_runs(
    server: Server, client: MlflowClient
) -> None:
    experiment_id, ids = make_runs(client, "same-answers", 6)
    over_mlflow = {run.info.run_id: run.data.params for run in client.search_runs([experiment_id])}
    over_rest = requests.get(
        f"{server.url}/api/v1/runs", params={"experiment": "same-answers", "limit": 100}, timeout=10
    ).json()["items"]
    assert {row["run_id"] for row in over_rest} == set(over_mlflow) == set(ids)
    lake = lake_of(server)
    try:
        rows = lake.sql(
            "select run_id, status from runs_current where experiment = 'same-answers'"
        ).fetchall()
        params = lake.runs.search(experiment="same-answers").select("run_id", "params.i").rows()
    finally:
        lake.close()
    assert {run_id for run_id, _ in rows} == set(ids)
    assert {run_id: {"i": value} for run_id, value in params} == {
        run_id: {"i": values["i"]} for run_id, values in over_mlflow.items()
    }


def test_limits_and_errors_answer_as_mlflow_does(server: Server, client: MlflowClient) -> None:
    experiment_id = client.create_experiment("errors")
    with pytest.raises(MlflowException) as exists:
        client.create_experiment("errors")
    assert exists.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as unknown_run:
        client.get_run("0" * 32)
    assert unknown_run.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    # the client splits big batches itself; a client that does not is refused as MLflow refuses it
    log_batch = f"{server.url}/api/2.0/mlflow/runs/log-batch"
    metrics = [{"key": "m", "value": 1.0, "timestamp": 0, "step": step} for step in range(1001)]
    too_many = requests.post(log_batch, json={"run_id": run_id, "metrics": metrics}, timeout=10)
    assert too_many.status_code == 400 and too_many.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "at most 1000 metrics" in too_many.json()["message"]
    params = [{"key": f"p{i}", "value": "x"} for i in range(101)]
    too_many_params = requests.post(log_batch, json={"run_id": run_id, "params": params}, timeout=10)
    assert "at most 100 params" in too_many_params.json()["message"]
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "lr", "0.2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in str(changed.value)
    with pytest.raises(MlflowException) as either:
        client.search_runs([experiment_id], "params.lr = '0.1' or params.lr = '0.2'")
    assert either.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as no_experiment:
        client.create_run("424242")
    assert no_experiment.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    missing = requests.get(f"{server.url}/api/2.0/mlflow/no-such-thing", timeout=10)
    assert missing.status_code == 404 and missing.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    garbled = requests.post(f"{server.url}/api/2.0/mlflow/runs/log-metric", data=b"{not json", timeout=10)
    assert garbled.status_code == 400 and "error_code" in garbled.json()
    no_key = requests.post(
        f"{server.url}/ajax-api/2.0/mlflow/runs/log-metric", json={"run_id": run_id, "value": 1}, timeout=10
    )
    assert no_key.status_code == 400
    assert no_key.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "key" in no_key.json()["message"]


def test_experiments_are_created_renamed_deleted_restored_and_tagged(client: MlflowClient) -> None:
    experiment_id = client.create_experiment("lifecycle", tags={"owner": "ana"})
    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.rename_experiment(experiment_id, "lifecycle-renamed")
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == "lifecycle-renamed" and experiment.tags == {"owner": "ana", "stage": "dev"}
    assert client.get_experiment_by_name("lifecycle") is None
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    names = [e.name for e in client.search_experiments(filter_string="name LIKE 'lifecycle%'")]
    assert names == []
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string="tags.owner = 'ana'")
    assert [e.experiment_id for e in deleted] == [experiment_id]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"


def test_concurrent_clients_logging_point_by_point_share_commits(
    server: Server, client: MlflowClient
) -> None:
    experiment_id = client.create_experiment("concurrent")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(4)]
    lake = lake_of(server)
    try:
        before = lake.history("metrics").height
    finally:
        lake.close()
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        try:
            own = MlflowClient(tracking_uri=server.url)
            for step in range(100):
                own.log_metric(run_id, "loss", 1 / (step + 1), step=step, timestamp=int(time.time() * 1000))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=log, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for run_id in run_ids:
        assert len(client.get_metric_history(run_id, "loss")) == 100  # read your writes: each one is there
    lake = lake_of(server)
    try:
        commits = lake.history("metrics").height - before
    finally:
        lake.close()
    assert 0 < commits < 400 / 2, f"{commits} commits for 400 requests: they should share group commits"


def test_log_register_alias_and_load_a_model_by_alias(server: Server, tmp_path: Path) -> None:
    printed = run_script(
        server,
        """
        import json
        import mlflow
        import numpy as np
        from mlflow import MlflowClient
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        mlflow.set_experiment("churn-registry")
        X, y = make_classification(n_samples=120, n_features=5, random_state=1)
        with mlflow.start_run(run_name="logreg") as run:
            model = LogisticRegression(max_iter=200).fit(X, y)
            mlflow.log_metric("val_auc", 0.91)
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name="churn-model")
        client = MlflowClient()
        client.set_registered_model_alias("churn-model", "champion", info.registered_model_version)
        client.transition_model_version_stage("churn-model", info.registered_model_version, "Production")
        loaded = mlflow.pyfunc.load_model("models:/churn-model@champion")
        same = bool(np.array_equal(loaded.predict(X), model.predict(X)))
        versions = client.search_model_versions("name = 'churn-model'")
        print(json.dumps({"run_id": run.info.run_id, "version": info.registered_model_version, "same": same,
                          "versions": len(versions)}))
        """,
        tmp_path,
    )
    assert printed["same"] and printed["versions"] == 1
    lake = lake_of(server)
    try:
        version = lake.registry.get("churn-model", "champion")
        assert version.version == int(printed["version"]) and version.run_id == printed["run_id"]
        assert version.stage == "production"
        stages = lake.sql(
            "select stage from model_stage_history where model = 'churn-model' order by valid_from"
        ).fetchall()
        assert ("production",) in stages
        files = lake.sql(
            "select name, size_bytes from artifacts where run_id = ?", [printed["run_id"]]
        ).fetchall()
        assert any(
            name.startswith("models/") and name.endswith("MLmodel") and size > 0 for name, size in files
        ), files
    finally:
        lake.close()


def test_a_search_page_read_again_shows_what_changed_in_its_runs_since(client: MlflowClient) -> None:
    """A page of ended runs is answered from the JSON kept from the last time while their tables stand still:
    any change to a run (a tag, a metric, a delete) shows at the next search."""
    experiment_id, run_ids = make_runs(client, "search-again", 3)

    def page() -> dict[str, Any]:
        found = client.search_runs([experiment_id], order_by=["attributes.run_name ASC"], max_results=10)
        return {run.info.run_id: run for run in found}

    first, again = page(), page()
    assert list(first) == list(again) and all(first[i].data.tags == again[i].data.tags for i in first)
    client.set_tag(run_ids[0], "reviewed", "yes")
    client.log_metric(run_ids[1], "late", 2.5)
    client.delete_run(run_ids[2])
    changed = page()
    assert changed[run_ids[0]].data.tags["reviewed"] == "yes"
    assert changed[run_ids[1]].data.metrics["late"] == 2.5
    assert run_ids[2] not in changed
