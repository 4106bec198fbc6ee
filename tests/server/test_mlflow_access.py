"""MLflow's endpoints decide per object, as the REST API does: an unmodified `MlflowClient` holding a token sees
the experiments, runs and models its grants name (searches filtered before paging), gets MLflow's
RESOURCE_DOES_NOT_EXIST for what it may not read and PERMISSION_DENIED for what it may read but not change; a
grant opens an object at once and its revocation closes it again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from support.api_server import Server, start_server_process

import metalake

EXPERIMENTS = [f"exp-{index}" for index in range(10)]
READABLE = [*EXPERIMENTS[::2], EXPERIMENTS[1]]  # 6 of 10


@dataclass
class Guarded:
    path: Path
    server: Server
    tokens: dict[str, str]  # principal -> token
    runs: dict[str, str]  # experiment -> one of its runs
    ids: dict[str, str]  # experiment -> MLflow experiment id

    def client(self, monkeypatch: pytest.MonkeyPatch, principal: str) -> MlflowClient:
        """An MLflow client sending `principal`'s token, as MLFLOW_TRACKING_TOKEN does for a training script."""
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", self.tokens[principal])
        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    folder = tmp_path_factory.mktemp("mlflow-access")
    lake = metalake.connect(folder / "lake", actor="tester")
    tokens = {"root": lake.access.init("root").token}
    for name in ("erin", "dave", "nobody"):
        lake.access.create_principal(name)
        tokens[name] = lake.access.create_token(name).token
    runs: dict[str, str] = {}
    for name in EXPERIMENTS:
        for attempt in range(2):
            with lake.runs.start(name, name=f"{name}-{attempt}") as run:
                run.log_metrics({"auc": 0.5 + attempt / 10}, step=1)
                run.log_params({"depth": attempt})
            runs[name] = run.run_id
    lake.runs.wait()
    for name in READABLE:
        lake.access.grant("erin", "read", f"experiment:{name}")
    lake.access.grant("dave", "write", "experiment:exp-0")
    for model in ("open-model", "closed-model"):
        lake.registry.create_model(model)
        lake.registry.register(model, run_id=runs["exp-0"], artifact_uri=f"runs:/{runs['exp-0']}/model")
    lake.access.grant("erin", "read", "model:open-model")
    ids = {experiment.name: experiment.experiment_id for experiment in lake.experiments.list()}
    lake.close()
    server = start_server_process(folder / "lake", folder / "spool", lake_auth=True)
    yield Guarded(folder / "lake", server, tokens, runs, ids)
    server.stop()


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(MlflowException) as raised:
        call()
    return str(raised.value.error_code)


def test_searches_hold_only_what_the_token_may_read_in_pages_of_any_size(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = guarded.client(monkeypatch, "erin")
    assert sorted(e.name for e in client.search_experiments()) == sorted(READABLE)
    every_id = list(guarded.ids.values())
    names = {experiment_id: name for name, experiment_id in guarded.ids.items()}
    for size in (1, 4, 5, 100):
        experiments: list[str] = []
        runs: list[str] = []
        token = None
        while True:
            page = client.search_experiments(max_results=size, page_token=token)
            experiments += [experiment.name for experiment in page]
            token = page.token
            if not token:
                break
        while True:
            found = client.search_runs(every_id, "metrics.auc > 0", max_results=size, page_token=token)
            runs += [names[run.info.experiment_id] for run in found]
            token = found.token
            if not token:
                break
        assert sorted(experiments) == sorted(READABLE), f"experiments in pages of {size}"
        assert sorted(runs) == sorted(READABLE * 2), f"runs in pages of {size}"
    assert [model.name for model in client.search_registered_models()] == ["open-model"]
    assert {version.name for version in client.search_model_versions()} == {"open-model"}
    assert client.search_runs([guarded.ids["exp-3"]]) == [], "naming a hidden experiment finds nothing"


def test_what_one_may_not_read_does_not_exist_and_what_one_may_only_read_is_refused(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = guarded.client(monkeypatch, "erin")
    mine, hidden = guarded.runs["exp-0"], guarded.runs["exp-3"]
    assert client.get_run(mine).data.metrics == {"auc": 0.6}
    assert [point.value for point in client.get_metric_history(mine, "auc")] == [0.6]
    assert client.get_experiment(guarded.ids["exp-0"]).name == "exp-0"
    assert client.get_registered_model("open-model").name == "open-model"

    assert error_code(lambda: client.get_run(hidden)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_metric_history(hidden, "auc")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_experiment(guarded.ids["exp-3"])) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment_by_name("exp-3") is None, "a hidden name answers as a missing one"
    assert error_code(lambda: client.get_registered_model("closed-model")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_model_version("closed-model", "1")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_run("0123456789abcdef0123456789abcdef")) == "RESOURCE_DOES_NOT_EXIST"

    assert error_code(lambda: client.log_metric(mine, "x", 1.0)) == "PERMISSION_DENIED"
    assert error_code(lambda: client.set_tag(mine, "k", "v")) == "PERMISSION_DENIED"
    assert error_code(lambda: client.create_experiment("erins")) == "PERMISSION_DENIED"
    assert error_code(lambda: client.create_run(guarded.ids["exp-0"])) == "PERMISSION_DENIED"
    assert error_code(lambda: client.delete_experiment(guarded.ids["exp-0"])) == "PERMISSION_DENIED"
    assert error_code(lambda: client.log_metric(hidden, "x", 1.0)) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.set_registered_model_tag("open-model", "k", "v")) == "PERMISSION_DENIED"

    nobody = guarded.client(monkeypatch, "nobody")
    assert nobody.search_experiments() == []
    assert nobody.search_registered_models() == []
    assert error_code(lambda: nobody.get_run(mine)) == "RESOURCE_DOES_NOT_EXIST"


def test_a_write_grant_on_an_experiment_is_all_a_training_script_needs(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client = guarded.client(monkeypatch, "dave")
    run = client.create_run(guarded.ids["exp-0"], run_name="daves")
    client.log_metric(run.info.run_id, "loss", 0.25)
    client.log_param(run.info.run_id, "lr", "0.1")
    (tmp_path / "notes.txt").write_text("trained\n")
    client.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.25}
    assert [file.path for file in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    downloaded = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "trained\n"
    assert error_code(lambda: client.create_run(guarded.ids["exp-3"])) == "RESOURCE_DOES_NOT_EXIST"

    erin = guarded.client(monkeypatch, "erin")
    assert erin.get_run(run.info.run_id).info.run_name == "daves", "erin reads exp-0, daves' run too"
    hidden = guarded.runs["exp-3"]
    headers = {"Authorization": f"Bearer {guarded.tokens['dave']}"}
    listing = requests.get(
        f"{guarded.server.url}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": f"{guarded.ids['exp-3']}/{hidden}/artifacts"},
        headers=headers,
        timeout=30,
    )
    assert listing.status_code == 404 and listing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    download = requests.get(
        f"{guarded.server.url}/api/2.0/mlflow-artifacts/artifacts/{guarded.ids['exp-3']}/{hidden}/artifacts/x",
        headers=headers,
        timeout=30,
    )
    assert download.status_code == 404


def test_a_grant_opens_and_a_revoke_closes_within_the_servers_refresh(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process grants and revokes: the server looks at the access tables again within a second."""
    client = guarded.client(monkeypatch, "nobody")
    run_id = guarded.runs["exp-7"]

    def readable() -> bool:
        try:
            client.get_run(run_id)
        except MlflowException as error:
            assert error.error_code == "RESOURCE_DOES_NOT_EXIST"
            return False
        return True

    def within(seconds: float, wanted: bool) -> None:
        deadline = time.monotonic() + seconds
        while readable() != wanted:
            assert time.monotonic() < deadline, f"still {'closed' if wanted else 'open'} after {seconds} s"
            time.sleep(0.1)

    lake = metalake.connect(guarded.path, actor="tester")
    try:
        assert not readable()
        lake.access.grant("nobody", "read", "experiment:exp-7")
        within(3, True)
        assert [e.name for e in client.search_experiments()] == ["exp-7"]
        lake.access.revoke("nobody", "read", "experiment:exp-7")
        within(3, False)
        assert client.search_experiments() == []
    finally:
        lake.close()


def test_read_on_a_model_loads_its_versions_files_and_no_other_file_of_the_run(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A model's readers load it by name (`models:/NAME/VERSION`) without read on the experiment that logged it;
    the run's other files stay hidden."""
    import mlflow.artifacts

    root = guarded.client(monkeypatch, "root")
    run = root.create_run(guarded.ids["exp-9"], run_name="served")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "notes.txt").write_text("private\n")
    root.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    root.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
    root.create_registered_model("served-model")
    root.create_model_version("served-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    granted = requests.post(
        f"{guarded.server.url}/api/v1/access/securables/model:served-model/grants",
        headers={"Authorization": f"Bearer {guarded.tokens['root']}"},
        json={"principal": "nobody", "privilege": "read"},
        timeout=30,
    )
    assert granted.status_code == 201, granted.text

    guarded.client(monkeypatch, "nobody")  # sets the token the artifact calls send
    monkeypatch.setenv("MLFLOW_TRACKING_URI", guarded.server.url)
    loaded = mlflow.artifacts.download_artifacts("models:/served-model/1", dst_path=str(tmp_path / "back"))
    assert (Path(loaded) / "MLmodel").read_text() == "flavors: {}\n"
    headers = {"Authorization": f"Bearer {guarded.tokens['nobody']}"}
    folder = f"{guarded.ids['exp-9']}/{run.info.run_id}/artifacts"
    other = requests.get(
        f"{guarded.server.url}/api/2.0/mlflow-artifacts/artifacts/{folder}/notes.txt",
        headers=headers,
        timeout=30,
    )
    assert other.status_code == 404, "the run's other files stay the experiment's"
