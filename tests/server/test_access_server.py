"""The server decides every request by the lake's principals and grants: tokens, 404 for what a principal may
not read, 403 for what it may read but not change, lake-wide grants for whole kinds, the access log, and the
modes without them (`--no-auth` on loopback only, `--token`)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from support.api_server import Server, free_port, start_server_process

import metalake


@dataclass
class Lake:
    """A lake with two experiments, an admin, and alice who may read `churn` only."""

    path: Path
    server: Server
    admin: str
    alice: str
    tara: str  # may read the runs table and the runs_current view, nothing else
    churn_run: str
    pricing_run: str

    def get(self, path: str, token: str | None, **params: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.server.url + path, headers=headers, params=params, timeout=30)

    def post(self, path: str, token: str | None, body: dict[str, object]) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.server.url + path, headers=headers, json=body, timeout=30)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    folder = tmp_path_factory.mktemp("access")
    lake = metalake.connect(folder / "lake", actor="tester")
    admin = lake.access.init("root").token
    lake.access.create_principal("alice")
    alice = lake.access.create_token("alice").token
    lake.access.grant("alice", "read", "experiment:churn")
    lake.access.create_principal("tara")
    tara = lake.access.create_token("tara").token
    lake.access.grant("tara", "read", "table:runs")
    lake.access.grant("tara", "read", "view:runs_current")
    with lake.runs.start("churn", name="a") as run:
        run.log_metrics({"auc": 0.9}, step=1)
    with lake.runs.start("pricing", name="b") as other:
        other.log_metrics({"auc": 0.5}, step=1)
    lake.runs.wait()
    lake.close()
    server = start_server_process(folder / "lake", folder / "spool", lake_auth=True)
    yield Lake(folder / "lake", server, admin, alice, tara, run.run_id, other.run_id)
    server.stop()


def test_a_request_without_a_valid_token_is_refused_at_once(guarded: Lake) -> None:
    path = f"/api/v1/runs/{guarded.churn_run}"
    assert guarded.get(path, None).status_code == 401
    assert guarded.get(path, "mlk_nope_nope").status_code == 401
    assert guarded.get("/api/v1/health", None).status_code == 200, "health stays public"
    assert guarded.get("/api/v1/health", None).json()["lake"] is None, "but names no lake"


def test_a_read_grant_on_an_experiment_opens_its_runs_and_nothing_else(guarded: Lake) -> None:
    mine = guarded.get(f"/api/v1/runs/{guarded.churn_run}", guarded.alice)
    hidden = guarded.get(f"/api/v1/runs/{guarded.pricing_run}", guarded.alice)
    absent = guarded.get("/api/v1/runs/0123456789abcdef", guarded.alice)

    assert mine.status_code == 200, mine.text
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert "pricing" not in hidden.text, "no name leaks"
    assert absent.status_code == 404
    hidden_message = hidden.json()["error"]["message"].replace(guarded.pricing_run, "ID")
    assert hidden_message == absent.json()["error"]["message"].replace("0123456789abcdef", "ID"), (
        "a run one may not read answers as a run that does not exist"
    )
    assert guarded.get(f"/api/v1/runs/{guarded.pricing_run}", guarded.admin).status_code == 200


def test_lists_and_searches_hold_only_what_the_principal_may_read_in_pages_of_any_size(
    tmp_path: Path,
) -> None:
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    admin = lake.access.init("root").token
    lake.access.create_principal("erin")
    erin = lake.access.create_token("erin").token
    names = [f"exp-{index}" for index in range(10)]
    for name in names:
        for attempt in range(2):
            with lake.runs.start(name, name=f"{name}-{attempt}") as run:
                run.log_metrics({"auc": 0.5 + attempt / 10}, step=1)
    lake.runs.wait()
    readable = [*names[::2], names[1]]  # 6 of 10
    for name in readable:
        lake.access.grant("erin", "read", f"experiment:{name}")
    lake.registry.create_model("open-model")
    lake.registry.create_model("closed-model")
    lake.access.grant("erin", "read", "model:open-model")
    lake.close()
    server = start_server_process(tmp_path / "lake", tmp_path / "spool", lake_auth=True)
    try:
        headers = {"Authorization": f"Bearer {erin}"}

        def listed(path: str, **params: object) -> dict[str, object]:
            answer = requests.get(server.url + path, headers=headers, params=params, timeout=30)
            assert answer.status_code == 200, answer.text
            body: dict[str, object] = answer.json()
            return body

        experiments = listed("/api/v1/experiments")["items"]
        assert sorted(item["name"] for item in experiments) == sorted(readable)  # type: ignore[attr-defined,index]
        for size in (1, 4, 5, 100):
            seen: list[str] = []
            token: object = None
            while True:
                params = {
                    "limit": size,
                    "where": "metrics.auc > 0",
                    **({"page_token": token} if token else {}),
                }
                page = listed("/api/v1/runs", **params)
                seen += [row["experiment"] for row in page["items"]]  # type: ignore[attr-defined,index]
                token = page["next_page_token"]
                if not token:
                    break
            assert sorted(seen) == sorted(readable * 2), f"pages of {size}"
        assert listed("/api/v1/models")["items"] == ["open-model"]
        hidden = requests.get(
            server.url + "/api/v1/runs", headers=headers, params={"experiment": "exp-3"}, timeout=30
        )
        assert hidden.status_code == 404
        everything = requests.get(
            server.url + "/api/v1/experiments", headers={"Authorization": f"Bearer {admin}"}, timeout=30
        )
        assert len(everything.json()["items"]) >= 10
    finally:
        server.stop()


def test_writing_what_one_may_only_read_is_403_and_whole_kinds_need_a_lake_grant(guarded: Lake) -> None:
    write = guarded.post(
        f"/api/v1/runs/{guarded.churn_run}/log", guarded.alice, {"metrics": [{"key": "x", "value": 1.0}]}
    )
    assert write.status_code == 403, write.text
    assert "metalake access grant alice write experiment:churn" in write.json()["error"]["message"]
    creation = guarded.post("/api/v1/runs", guarded.alice, {"experiment": "new-one"})
    assert creation.status_code == 404, "a run in an experiment one may not write: as if it did not exist"
    assert "new-one" in creation.json()["error"]["message"]
    mlflow_log = guarded.post(
        "/api/2.0/mlflow/runs/log-metric",
        guarded.alice,
        {"run_id": guarded.churn_run, "key": "x", "value": 1.0, "timestamp": 0},
    )
    assert mlflow_log.status_code == 403 and mlflow_log.json()["error_code"] == "PERMISSION_DENIED"
    mlflow_create = guarded.post("/api/2.0/mlflow/experiments/create", guarded.alice, {"name": "new-one"})
    assert mlflow_create.status_code == 403, "creating needs write on the lake, through MLflow's API too"


def test_sql_reads_only_the_tables_and_views_granted(guarded: Lake) -> None:
    def sql(token: str, query: str) -> requests.Response:
        return guarded.post("/api/v1/sql", token, {"query": query})

    runs = sql(guarded.tara, "select count(distinct run_id) as n from runs")
    assert runs.status_code == 200 and runs.json()["rows"] == [[2]], runs.text
    view = sql(guarded.tara, "select count(*) from runs_current")
    assert view.status_code == 200, "a view granted as a whole reads without grants on what it reads"
    for hidden in (
        "select * from metrics",
        "select * from runs join params using (run_id)",
        "from runs_wide",
    ):
        refused = sql(guarded.tara, hidden)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsafe_query", hidden
        assert "metrics" not in refused.json()["error"]["message"].split("lake names:")[-1], "no names leak"
    assert sql(guarded.alice, "select 1 from runs").status_code == 400, "an experiment grant opens no table"
    assert sql(guarded.admin, "select count(*) from metrics").status_code == 200
    tables = guarded.get("/api/v1/tables", guarded.tara)
    assert [item["name"] for item in tables.json()["items"]] == ["runs"], tables.text
    assert guarded.get("/api/v1/tables/metrics", guarded.tara).status_code == 404


def test_a_revoked_or_expired_token_stops_working_at_once(guarded: Lake) -> None:
    lake = metalake.connect(guarded.path, actor="tester")
    lake.access.create_principal("bob")
    issued = lake.access.create_token("bob")
    short = lake.access.create_token("bob", expires=timedelta(seconds=2))
    lake.access.grant("bob", "read", "lake")
    path = f"/api/v1/runs/{guarded.pricing_run}"
    assert guarded.get(path, issued.token).status_code == 200
    assert guarded.get(path, short.token).status_code == 200

    lake.access.revoke_token(issued.token_id)
    time.sleep(2.1)

    assert guarded.get(path, issued.token).status_code == 401
    assert guarded.get(path, short.token).status_code == 401
    lake.close()


def test_denials_and_writes_reach_the_access_log(guarded: Lake) -> None:
    guarded.get(f"/api/v1/runs/{guarded.pricing_run}", guarded.alice)  # denied
    created = guarded.post("/api/v1/runs", guarded.admin, {"experiment": "churn", "name": "via-api"})
    assert created.status_code == 201, created.text
    lake = metalake.connect(guarded.path, actor="tester")
    deadline = time.monotonic() + 30
    while True:
        rows = lake.sql("select principal, action, securable, decision from access_log").fetchall()
        if ("alice", "read", f"run:{guarded.pricing_run}", "denied") in rows and any(
            row[0] == "root" and row[1] == "write" and row[3] == "allowed" for row in rows
        ):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    lake.close()


def test_whoever_manages_a_securable_grants_on_it_over_rest(guarded: Lake) -> None:
    url, admin = guarded.server.url, {"Authorization": f"Bearer {guarded.admin}"}
    made = requests.post(url + "/api/v1/access/principals", json={"name": "carol"}, headers=admin, timeout=30)
    assert made.status_code == 201, made.text
    issued = requests.post(
        url + "/api/v1/access/principals/carol/tokens", json={"expires": "1d"}, headers=admin, timeout=30
    )
    carol = issued.json()["token"]
    run = f"/api/v1/runs/{guarded.pricing_run}"
    assert guarded.get(run, carol).status_code == 404

    grants = url + "/api/v1/access/securables/experiment:pricing/grants"
    given = requests.post(grants, json={"principal": "carol", "privilege": "read"}, headers=admin, timeout=30)
    assert given.status_code == 201, given.text
    assert guarded.get(run, carol).status_code == 200, "a grant made through the server works at once"
    decided = guarded.get(
        "/api/v1/access/check",
        guarded.admin,
        principal="carol",
        action="read",
        securable="experiment:pricing",
    ).json()
    assert decided["allowed"] and decided["grant_id"] == given.json()["grant_id"]
    listed = requests.get(grants, headers=admin, timeout=30).json()["items"]
    assert {(row["holder"], row["privilege"]) for row in listed} >= {("carol", "read"), ("root", "admin")}

    alice = {"Authorization": f"Bearer {guarded.alice}"}
    body = {"principal": "alice", "privilege": "write"}
    own = requests.post(url + "/api/v1/access/securables/experiment:churn/grants", json=body, headers=alice)
    assert own.status_code == 403, "reading an experiment is not managing it"
    assert requests.post(grants, json=body, headers=alice, timeout=30).status_code == 404
    assert guarded.get("/api/v1/access/principals", guarded.alice).status_code == 403

    ended = requests.delete(
        grants, params={"principal": "carol", "privilege": "read"}, headers=admin, timeout=30
    )
    assert ended.status_code == 200 and ended.json()["revoked"] == [given.json()["grant_id"]]
    assert guarded.get(run, carol).status_code == 404


def test_whoever_creates_an_experiment_or_a_model_through_the_server_manages_it(guarded: Lake) -> None:
    lake = metalake.connect(guarded.path, actor="tester")
    lake.access.create_principal("dave")
    dave = lake.access.create_token("dave").token
    lake.access.grant("dave", "write", "lake")
    lake.close()
    created = guarded.post("/api/2.0/mlflow/experiments/create", dave, {"name": "dave-exp"})
    assert created.status_code == 200, created.text
    model = guarded.post("/api/2.0/mlflow/registered-models/create", dave, {"name": "dave-model"})
    assert model.status_code == 200, model.text
    run = guarded.post("/api/v1/runs", dave, {"experiment": "dave-new"})
    assert run.status_code == 201, run.text

    for securable in ("experiment:dave-exp", "model:dave-model", "experiment:dave-new"):
        decided = guarded.get(
            "/api/v1/access/check", guarded.admin, principal="dave", action="manage", securable=securable
        ).json()
        assert decided["allowed"] and decided["reason"].startswith(f"manage on {securable}"), decided
    again = guarded.post("/api/v1/runs", dave, {"experiment": "churn"})
    assert again.status_code == 201
    decided = guarded.get(
        "/api/v1/access/check", guarded.admin, principal="dave", action="manage", securable="experiment:churn"
    ).json()
    assert not decided["allowed"], "a run in someone else's experiment gives no grant on it"


def serve(lake_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(lake_path), "serve"]
    command += ["--port", str(free_port()), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_serving_a_lake_without_principals_needs_no_auth_and_then_loopback(tmp_path: Path) -> None:
    metalake.connect(tmp_path / "lake").close()
    refused = serve(tmp_path / "lake")
    assert refused.returncode != 0 and "metalake access init" in refused.stderr
    exposed = serve(tmp_path / "lake", "--no-auth", "--host", "0.0.0.0")
    assert exposed.returncode != 0 and "loopback" in exposed.stderr
    assert "Traceback" not in refused.stderr + exposed.stderr


def test_no_auth_says_so_at_start_and_lets_everything_in(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()  # --no-auth
    created = requests.post(server.url + "/api/v1/runs", json={"experiment": "e"}, timeout=30)
    assert created.status_code == 201
    server.stop()
    assert server.process.stderr is not None
    assert "authentication is off (--no-auth)" in server.process.stderr.read().decode()
