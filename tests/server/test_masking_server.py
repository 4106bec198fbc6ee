"""Sensitive values reach a reader without `unmask` masked, on every read path of the server: a run by id, the
run search, the SQL endpoint (masked before predicates and joins), the audit log, the MLflow endpoints, and
the past (`as_of`). Admins and holders of `unmask` on the lake see them in clear; writes store clear values."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api_server import Server, start_server_process

import metalake
from metalake.core.masking import REDACTED, Masker

MASK_KEY = "5e" * 32


@dataclass
class Guarded:
    """A lake whose `churn` run logged a secret by mistake; alice reads it masked, carol may unmask."""

    path: Path
    server: Server
    admin: str
    alice: str
    carol: str
    run_id: str
    masker: Masker

    def get(self, path: str, token: str, **params: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(self.server.url + path, headers=headers, params=params, timeout=30)

    def sql(self, token: str, query: str, **extra: Any) -> list[list[Any]]:
        answer = requests.post(
            f"{self.server.url}/api/v1/sql",
            headers={"Authorization": f"Bearer {token}"},
            json={"query": query, **extra},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        rows: list[list[Any]] = answer.json()["rows"]
        return rows


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    folder = tmp_path_factory.mktemp("masking")
    lake = metalake.connect(folder / "lake", actor="trainer@example.com")
    admin = lake.access.init("root").token
    for name in ("alice", "carol"):
        lake.access.create_principal(name)
        lake.access.grant(name, "write", "lake")  # SQL and MLflow's endpoints are decided on the lake
    lake.access.grant("carol", "unmask", "lake")
    alice, carol = (lake.access.create_token(name).token for name in ("alice", "carol"))
    with lake.runs.start("churn", name="nightly") as run:
        run.log_params({"lr": 0.1, "db_password": "hunter2"})
        run.set_tags({"mlflow.user": "trainer@example.com", "team": "growth"})
        run.log_metrics({"auc": 0.9}, step=1)
    lake.runs.wait()
    lake.snapshot("before-release")
    masker = lake.masker(key=bytes.fromhex(MASK_KEY))
    lake.close()
    (folder / "data").mkdir()
    server = start_server_process(
        folder / "lake",
        folder / "spool",
        "--data-root",
        str(folder / "data"),
        lake_auth=True,
        env={"METALAKE_MASK_KEY": MASK_KEY},
    )
    yield Guarded(folder / "lake", server, admin, alice, carol, run.run_id, masker)
    server.stop()


def hashed(guarded: Guarded, value: str) -> str:
    masked = guarded.masker.mask_value("hash", value)
    assert isinstance(masked, str) and masked.startswith("h:")
    return masked


def test_a_run_by_id_hides_identities_and_secret_params_from_a_reader_without_unmask(
    guarded: Guarded,
) -> None:
    answer = guarded.get(f"/api/v1/runs/{guarded.run_id}", guarded.alice)
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["params"] == {"lr": "0.1", "db_password": REDACTED}
    assert run["tags"]["team"] == "growth" and run["tags"]["mlflow.user"] == REDACTED
    assert run["info"]["user"] == hashed(guarded, getpass.getuser())
    assert "hunter2" not in answer.text and "trainer@example.com" not in answer.text


@pytest.mark.parametrize("who", ["admin", "carol"])
def test_admins_and_holders_of_unmask_see_the_values_in_clear(guarded: Guarded, who: str) -> None:
    token = guarded.admin if who == "admin" else guarded.carol
    run = guarded.get(f"/api/v1/runs/{guarded.run_id}", token).json()
    assert run["params"]["db_password"] == "hunter2"
    assert run["tags"]["mlflow.user"] == "trainer@example.com"
    assert run["info"]["user"] == getpass.getuser()


def test_the_masked_and_the_clear_answer_carry_different_etags(guarded: Guarded) -> None:
    path = f"/api/v1/runs/{guarded.run_id}"
    masked = guarded.get(path, guarded.alice).headers["ETag"]
    clear = guarded.get(path, guarded.carol).headers["ETag"]
    assert masked != clear, "a cache must never hand the clear answer to a masked reader"


def test_the_run_search_answers_masked_rows(guarded: Guarded) -> None:
    answer = guarded.get("/api/v1/runs", guarded.alice, experiment="churn")
    assert answer.status_code == 200, answer.text
    assert "hunter2" not in answer.text
    [row] = answer.json()["items"]
    assert row["user"] == hashed(guarded, getpass.getuser())


def test_sql_masks_before_predicates_so_a_clear_value_matches_nothing(guarded: Guarded) -> None:
    user = getpass.getuser()
    assert guarded.sql(
        guarded.alice, "select count(distinct run_id) from runs where user = ?", params=[user]
    ) == [[0]]
    assert guarded.sql(
        guarded.alice,
        "select count(distinct run_id) from runs where user = ?",
        params=[hashed(guarded, user)],
    ) == [[1]]
    assert guarded.sql(guarded.alice, "select value from params where key = 'db_password'") == [[REDACTED]]
    actors = guarded.sql(guarded.alice, "select distinct actor from audit_log where table_name = 'runs'")
    assert actors == [[hashed(guarded, "trainer@example.com")]]
    joined = guarded.sql(
        guarded.alice,
        "select count(distinct p.key) from runs r join params p "
        "on p.run_id = r.run_id and p.recorded_by = r.recorded_by",
    )
    assert joined == [[2]], "equal values hash equal: joins on masked columns still work"
    assert guarded.sql(guarded.carol, "select distinct user from runs") == [[user]]


def test_the_past_is_masked_too(guarded: Guarded) -> None:
    rows = guarded.sql(guarded.alice, "select distinct user from runs", as_of="before-release")
    assert rows == [[hashed(guarded, getpass.getuser())]]
    run = guarded.get(f"/api/v1/runs/{guarded.run_id}", guarded.alice, as_of="before-release").json()
    assert run["params"]["db_password"] == REDACTED


def test_table_history_and_audit_show_hashed_actors(guarded: Guarded) -> None:
    history = guarded.get("/api/v1/tables/runs/history", guarded.admin).json()["items"]
    assert {commit["actor"] for commit in history} == {"trainer@example.com"}
    masked = guarded.get("/api/v1/tables/runs/history", guarded.alice)
    assert masked.status_code == 200, masked.text
    assert {commit["actor"] for commit in masked.json()["items"]} == {hashed(guarded, "trainer@example.com")}


def test_mlflow_clients_without_unmask_read_masked_values(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", guarded.alice)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = mlflow.MlflowClient(tracking_uri=guarded.server.url)
    run = client.get_run(guarded.run_id)
    assert run.data.params == {"lr": "0.1", "db_password": REDACTED}
    assert run.data.tags["mlflow.user"] == REDACTED
    assert run.info.user_id == hashed(guarded, getpass.getuser())
    experiment = client.get_experiment_by_name("churn")
    [found] = client.search_runs([experiment.experiment_id], "params.lr = '0.1'")
    assert found.data.params["db_password"] == REDACTED


def test_a_masked_reader_writes_clear_values_and_reads_them_back_masked(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", guarded.alice)
    client = mlflow.MlflowClient(tracking_uri=guarded.server.url)
    experiment = client.get_experiment_by_name("churn")
    run = client.create_run(experiment.experiment_id)
    client.log_param(run.info.run_id, "api_key", "sk-live-123")
    assert client.get_run(run.info.run_id).data.params == {"api_key": REDACTED}, "read back at once, masked"
    client.log_param(run.info.run_id, "api_key", "sk-live-123")  # the same value again is no change
    guarded.server.wait_settled()
    stored = metalake.connect(guarded.path).runs.get(run.info.run_id)
    assert stored.params == {"api_key": "sk-live-123"}, (
        "masking is for reading: the lake keeps what was logged"
    )


def test_unmask_is_granted_on_the_lake_only(guarded: Guarded) -> None:
    lake = metalake.connect(guarded.path)
    with pytest.raises(metalake.InvalidSecurable, match="unmask is given on the lake only"):
        lake.access.grant("alice", "unmask", "experiment:churn")


def test_the_server_refuses_to_start_with_a_malformed_masking_key(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake")
    lake.access.init("root")
    lake.close()
    with pytest.raises(RuntimeError, match="masking key"):
        start_server_process(
            tmp_path / "lake",
            tmp_path / "spool",
            lake_auth=True,
            env={"METALAKE_MASK_KEY": "not-hex"},
            timeout=20,
        )


def test_no_auth_servers_show_values_in_clear(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake")
    with lake.runs.start("churn") as run:
        run.log_params({"db_password": "hunter2"})
    lake.close()
    server = start_server_process(tmp_path / "lake", tmp_path / "spool", env={"HOME": os.fspath(tmp_path)})
    try:
        answer = requests.get(f"{server.url}/api/v1/runs/{run.run_id}", timeout=30)
        assert answer.json()["params"] == {"db_password": "hunter2"}
    finally:
        server.stop()


def test_a_dataset_registered_with_sensitive_columns_answers_their_profile_masked(guarded: Guarded) -> None:
    import polars as pl

    data = guarded.path.parent / "data" / "customers.parquet"
    pl.DataFrame({"customer_id": ["C-991", "C-992"], "spend": [3.0, 4.0]}).write_parquet(data)
    made = requests.post(
        f"{guarded.server.url}/api/v1/datasets/customers/versions",
        headers={"Authorization": f"Bearer {guarded.alice}"},
        json={"uri": str(data), "sensitive": ["customer_id"]},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    assert "C-991" not in made.text, "even the writer's answer is masked: alice may not unmask"
    assert made.json()["profile"]["spend"]["max"] == 4.0
    path = "/api/v1/datasets/customers/versions/1"
    assert "C-991" not in guarded.get(path, guarded.alice).text
    assert guarded.get(path, guarded.carol).json()["profile"]["customer_id"]["min"] == "C-991"
    wrong = requests.post(
        f"{guarded.server.url}/api/v1/datasets/customers/versions",
        headers={"Authorization": f"Bearer {guarded.alice}"},
        json={"uri": str(data), "sensitive": ["nope"]},
        timeout=30,
    )
    assert wrong.status_code == 400 and "nope" in wrong.json()["error"]["message"], wrong.text
