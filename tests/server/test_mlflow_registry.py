"""MLflow's model-registry API: an unmodified `mlflow.MlflowClient` registers, tags, aliases and stages models
in the lake through `metalake serve`, and the lake read directly agrees."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from support.api_server import Server, start_server_process

import metalake

POLICY = {"production": {"require_metrics": {"val_auc": ">= 0.8"}}}


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client answers errors at once instead of retrying with backoff."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("mlflow-registry")
    started = start_server_process(folder / "lake", folder / "spool")
    yield started
    started.stop()


@pytest.fixture
def client(server: Server) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


@pytest.fixture
def new_run(client: MlflowClient) -> Callable[..., str]:
    """A run logged through MLflow's API, with a val_auc metric."""

    def make(auc: float = 0.9, experiment: str = "registry-tests") -> str:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "val_auc", auc)
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)

    return make


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(MlflowException) as raised:
        call()
    return str(raised.value.error_code)


def test_registered_models_are_created_read_renamed_and_deleted(client: MlflowClient, server: Server) -> None:
    created = client.create_registered_model("fraud", tags={"team": "risk"}, description="flags fraud")
    assert (created.name, created.description, created.tags) == ("fraud", "flags fraud", {"team": "risk"})
    assert created.creation_timestamp > 0

    client.update_registered_model("fraud", description="flags card fraud")
    client.set_registered_model_tag("fraud", "tier", "1")
    client.delete_registered_model_tag("fraud", "team")
    fetched = client.get_registered_model("fraud")
    assert (fetched.description, fetched.tags) == ("flags card fraud", {"tier": "1"})

    client.rename_registered_model("fraud", "fraud-detector")
    renamed = client.get_registered_model("fraud-detector")
    assert renamed.name == "fraud-detector" and renamed.tags == {"tier": "1"}
    assert error_code(lambda: client.get_registered_model("fraud")) == "RESOURCE_DOES_NOT_EXIST"

    client.delete_registered_model("fraud-detector")
    assert error_code(lambda: client.get_registered_model("fraud-detector")) == "RESOURCE_DOES_NOT_EXIST"
    lake = metalake.connect(server.lake_path)
    assert "fraud-detector" not in lake.registry.models()
    kinds = lake.sql(
        "select model, event_type, value from model_events where version is null and model like 'fraud%' "
        "order by event_time"
    ).fetchall()
    assert ("fraud", "renamed", "fraud-detector") in kinds and ("fraud-detector", "deleted", None) in kinds


def test_errors_are_mlflows(client: MlflowClient) -> None:
    assert error_code(lambda: client.get_registered_model("no-such-model")) == "RESOURCE_DOES_NOT_EXIST"
    client.create_registered_model("taken")
    assert error_code(lambda: client.create_registered_model("taken")) == "RESOURCE_ALREADY_EXISTS"
    assert error_code(lambda: client.get_model_version("taken", "7")) == "RESOURCE_DOES_NOT_EXIST"
    assert error_code(lambda: client.get_model_version("taken", "\u00b9")) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(RestException, match="not found"):
        client.get_model_version_by_alias("taken", "champion")
    assert error_code(lambda: client.create_model_version("no-such-model", "s3://x/m")) == (
        "RESOURCE_DOES_NOT_EXIST"
    )


def test_versions_from_runs_with_tags_descriptions_and_download_uris(
    client: MlflowClient, server: Server, new_run: Callable[..., str]
) -> None:
    client.create_registered_model("churn")
    run_id = new_run()
    first = client.create_model_version(
        "churn", f"runs:/{run_id}/model", run_id, tags={"framework": "sklearn"}
    )
    again = client.create_model_version("churn", f"runs:/{run_id}/model", run_id, description="retrained")
    assert (first.version, again.version) == ("1", "2")  # MLflow makes a version per request
    assert (first.status, first.current_stage, first.run_id, first.tags) == (
        "READY",
        "None",
        run_id,
        {"framework": "sklearn"},
    )

    client.update_model_version("churn", "1", description="first cut")
    client.set_model_version_tag("churn", "1", "validated", "yes")
    client.delete_model_version_tag("churn", "1", "framework")
    fetched = client.get_model_version("churn", "1")
    assert (fetched.description, fetched.tags) == ("first cut", {"validated": "yes"})

    experiment_id = client.get_run(run_id).info.experiment_id
    assert client.get_model_version_download_uri("churn", "1") == (
        f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model"
    )
    client.create_model_version("churn", "s3://bucket/churn/3", None)
    assert client.get_model_version_download_uri("churn", "3") == "s3://bucket/churn/3"

    client.delete_model_version("churn", "3")
    assert [v.version for v in client.search_model_versions("name='churn'")] == ["2", "1"]
    assert [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")] == ["2", "1"]
    lake = metalake.connect(server.lake_path)
    assert lake.registry.get("churn", 1).run_id == run_id
    assert lake.registry.versions("churn")["version"].to_list() == [1, 2]


def test_aliases_are_set_read_and_deleted(client: MlflowClient, server: Server) -> None:
    client.create_registered_model("ranker")
    for number in (1, 2):
        client.create_model_version("ranker", f"s3://bucket/ranker/{number}", None)
    client.set_registered_model_alias("ranker", "champion", "1")
    client.set_registered_model_alias("ranker", "champion", "2")  # an alias names one version at a time
    client.set_registered_model_alias("ranker", "challenger", "1")
    assert client.get_model_version_by_alias("ranker", "champion").version == "2"
    assert client.get_registered_model("ranker").aliases == {"champion": "2", "challenger": "1"}
    assert client.get_model_version("ranker", "1").aliases == ["challenger"]
    assert metalake.connect(server.lake_path).registry.get("ranker", "champion").version == 2

    client.delete_registered_model_alias("ranker", "champion")
    assert client.get_registered_model("ranker").aliases == {"challenger": "1"}
    assert error_code(lambda: client.get_model_version_by_alias("ranker", "champion")) == (
        "RESOURCE_DOES_NOT_EXIST"
    )


def test_stage_transitions_land_in_the_lakes_history(
    client: MlflowClient, server: Server, new_run: Callable[..., str]
) -> None:
    client.create_registered_model("pricing")
    run_id = new_run()
    for _ in range(2):
        client.create_model_version("pricing", f"runs:/{run_id}/model", run_id)
    client.transition_model_version_stage("pricing", "1", "Production")
    moved = client.transition_model_version_stage(
        "pricing", "2", "production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    assert client.get_model_version("pricing", "1").current_stage == "Archived"
    latest = client.get_latest_versions("pricing", stages=["Production", "Archived"])
    assert [(v.version, v.current_stage) for v in latest] == [("2", "Production"), ("1", "Archived")]
    assert {v.version for v in client.get_registered_model("pricing").latest_versions} == {"1", "2"}
    assert error_code(lambda: client.transition_model_version_stage("pricing", "1", "Live")) == (
        "INVALID_PARAMETER_VALUE"
    )

    lake = metalake.connect(server.lake_path)
    assert lake.registry.get("pricing", 2).stage == "production"
    assert lake.registry.get("pricing", 1).stage == "archived"
    history = lake.sql(
        "select version, stage, valid_to is null from model_stage_history where model = 'pricing' "
        "order by version, valid_from"
    ).fetchall()
    assert history == [
        (1, "none", False),
        (1, "production", False),
        (1, "archived", True),
        (2, "none", False),
        (2, "production", True),
    ]


def test_a_stored_policy_refuses_mlflow_transitions_naming_the_rule(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake")
    lake.registry.use_policy(POLICY, persist=True)
    lake.close()
    server = start_server_process(tmp_path / "lake", tmp_path / "spool")
    try:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("gated")
        experiment_id = client.create_experiment("gated-runs")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "val_auc", 0.6)
        client.create_model_version("gated", f"runs:/{run.info.run_id}/model", run.info.run_id)
        with pytest.raises(MlflowException) as refused:
            client.transition_model_version_stage("gated", "1", "Production")
        assert refused.value.error_code == "INVALID_STATE"
        assert "require_metrics" in refused.value.message and "val_auc is 0.6" in refused.value.message
        assert client.get_model_version("gated", "1").current_stage == "None"
        client.transition_model_version_stage("gated", "1", "Staging")  # no gate for staging
        assert metalake.connect(tmp_path / "lake").registry.get("gated", 1).stage == "staging"
    finally:
        server.stop()


def test_searches_filter_order_and_page(client: MlflowClient) -> None:
    names = [f"search-{letter}" for letter in "abcde"]
    for name in names:
        client.create_registered_model(name, tags={"group": "search"})
    found = client.search_registered_models("name LIKE 'search-%'", max_results=2)
    pages = [[model.name for model in found]]
    while found.token:
        found = client.search_registered_models("name LIKE 'search-%'", max_results=2, page_token=found.token)
        pages.append([model.name for model in found])
    assert pages == [names[:2], names[2:4], names[4:]]
    assert [m.name for m in client.search_registered_models("name = 'search-c'")] == ["search-c"]
    descending = client.search_registered_models("name ILIKE 'SEARCH-%'", order_by=["name DESC"])
    assert [m.name for m in descending] == names[::-1]
    tagged = client.search_registered_models("tags.group = 'search' AND name != 'search-a'")
    assert [m.name for m in tagged] == names[1:]
    assert error_code(lambda: client.search_registered_models("owner = 'x'")) == "INVALID_PARAMETER_VALUE"


def test_a_logged_model_source_downloads_from_the_logged_models_location() -> None:
    """`models:/m-...` uses `lake.logged_models` where the lake has it, else the source as registered."""
    from types import SimpleNamespace

    from metalake.server.mlflow.registry import download_uri

    version = {"source": "models:/m-0123abcd"}
    location = SimpleNamespace(artifact_location="mlflow-artifacts:/1/models/m-0123abcd/artifacts")
    with_logged_models = SimpleNamespace(logged_models=SimpleNamespace(get=lambda model_id: location))
    assert download_uri(with_logged_models, version) == location.artifact_location  # type: ignore[arg-type]
    assert download_uri(SimpleNamespace(), version) == "models:/m-0123abcd"  # type: ignore[arg-type]
