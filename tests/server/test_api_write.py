"""The REST API's writes against a real server: each through the one write path, idempotent by key (even across a
restart), refusals that write nothing, concurrent requests sharing group commits, and no way to read server files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests
from support.api_server import SampleApi, start_server_process

import metalake

POLICY = {"production": {"require_metrics": {"val_auc": ">= 0.99"}, "require_card_fields": ["owner"]}}


def created(answer: requests.Response, status: int = 201) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def refused(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in answer.text, error
    return error


def versions(api: SampleApi) -> dict[str, int | None]:
    return {table["name"]: table["version"] for table in api.get("/api/v1/tables").json()["items"]}


def test_a_run_started_logged_and_ended_over_http(sample_api: SampleApi) -> None:
    run_id = created(
        sample_api.post("/api/v1/runs", {"experiment": "http", "name": "first", "tags": {"a": "b"}})
    )["run_id"]
    body = {
        "params": {"lr": "0.1"},
        "tags": {"stage": "train"},
        "metrics": [{"key": "loss", "value": 1 / (step + 1), "step": step} for step in range(5)]
        + [{"key": "loss", "value": "NaN", "step": 5}],
    }
    assert created(sample_api.post(f"/api/v1/runs/{run_id}/log", body), 200)["metrics"] == 6
    assert sample_api.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
    assert (
        created(sample_api.post(f"/api/v1/runs/{run_id}/end", {"status": "finished"}), 200)["status"]
        == "finished"
    )

    run = sample_api.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished" and run["params"] == {"lr": "0.1"}
    assert run["tags"] == {"a": "b", "stage": "train"} and run["metrics"]["loss"]["count"] == 6
    assert run["info"]["source"] == "api" and run["info"]["user"] == "anonymous"
    lake = metalake.connect(sample_api.lake_path, actor="tester")
    assert lake.sql("select count(*) from metrics where run_id = ?", [run_id]).fetchall() == [(6,)]
    history = lake.history("metrics", limit=1).row(0, named=True)
    assert history["operation"] == "log_run" and history["actor"] == "server"


def test_a_post_sent_again_with_its_key_writes_once_even_after_a_restart(
    sample_api: SampleApi, tmp_path: Path
) -> None:
    start = {"experiment": "keys", "name": "once"}
    first = sample_api.post("/api/v1/runs", start, headers={"Idempotency-Key": "start-1"})
    again = sample_api.post("/api/v1/runs", start, headers={"Idempotency-Key": "start-1"})
    assert created(first) == created(again) and again.headers["Idempotent-Replayed"] == "true"
    other = sample_api.post(
        "/api/v1/runs", {"experiment": "keys", "name": "other"}, headers={"Idempotency-Key": "start-1"}
    )
    refused(other, 409, "idempotency_key_reused")
    run_id = first.json()["run_id"]
    log = {"metrics": [{"key": "m", "value": 1.0, "step": 1}]}
    created(sample_api.post(f"/api/v1/runs/{run_id}/log", log, headers={"Idempotency-Key": "log-1"}), 200)

    # A new server process remembers no answer: the Delta commits' keys make the retries write nothing.
    restarted = start_server_process(sample_api.lake_path, tmp_path / "spool")
    try:
        again = requests.post(
            f"{restarted.url}/api/v1/runs", json=start, headers={"Idempotency-Key": "start-1"}
        )
        assert created(again)["run_id"] == run_id and "Idempotent-Replayed" not in again.headers
        url = f"{restarted.url}/api/v1/runs/{run_id}/log"
        created(requests.post(url, json=log, headers={"Idempotency-Key": "log-1"}), 200)
    finally:
        restarted.stop()
    lake = metalake.connect(sample_api.lake_path, actor="tester")
    assert lake.sql("select count(*) from runs where run_id = ?", [run_id]).fetchall() == [(1,)]
    assert lake.sql("select count(*) from metrics where run_id = ?", [run_id]).fetchall() == [(1,)]


BAD_WRITES = [
    ("/api/v1/runs", b"{not json", 400, "invalid_request"),
    ("/api/v1/runs", b'{"experiment": 5}', 400, "invalid_request"),
    ("/api/v1/runs", b'{"experiment": "x", "colour": "red"}', 400, "invalid_request"),
    ("/api/v1/runs", b'{"experiment": ""}', 400, "invalid_request"),
    ("/api/v1/runs", b"[]", 400, "invalid_request"),
    ("/api/v1/runs/{run}/log", b'{"metrics": [{"key": "", "value": 1}]}', 422, "contract_violation"),
    ("/api/v1/runs/{run}/log", b'{"metrics": [{"key": "k", "value": "high"}]}', 400, "invalid_request"),
    (
        "/api/v1/runs/{run}/log",
        b'{"metrics": [{"key": "k", "value": 1, "step": -1}]}',
        422,
        "contract_violation",
    ),
    ("/api/v1/runs/{run}/log", b'{"params": {"k": 1}}', 400, "invalid_request"),
    ("/api/v1/runs/0123456789abcdef0123456789abcdef/log", b'{"params": {"k": "v"}}', 404, "run_not_found"),
    ("/api/v1/runs/{run}/end", b'{"status": "exploded"}', 400, "invalid_request"),
    ("/api/v1/runs?as_of=2026-01-01", b'{"experiment": "past"}', 400, "invalid_request"),
    ("/api/v1/models/churn/versions/1/transition", b'{"stage": "gone"}', 400, "invalid_request"),
    ("/api/v1/models/churn/versions/99/transition", b'{"stage": "staging"}', 404, "model_not_found"),
    ("/api/v1/models/churn/aliases/7", b'{"version": 1}', 400, "invalid_request"),
    (
        "/api/v1/kpis/observations",
        b'{"observations": [{"kpi": "nope", "value": 1}]}',
        404,
        "kpi_not_found",
    ),
    ("/api/v1/snapshots", b'{"name": "bad name!"}', 400, "invalid_snapshot_name"),
    ("/api/v1/sql", b'{"query": "select 1", "limit": 1000000}', 400, "invalid_request"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"), BAD_WRITES, ids=[f"{p}-{b[:20]!r}" for p, b, _, _ in BAD_WRITES]
)
def test_bad_writes_get_a_clear_error_and_write_nothing(
    sample_api: SampleApi, path: str, body: bytes, status: int, code: str
) -> None:
    run_id = sample_api.get("/api/v1/runs", experiment="churn", limit=1).json()["items"][0]["run_id"]
    before = versions(sample_api)
    answer = sample_api.http.post(
        f"{sample_api.url}{path.replace('{run}', run_id)}",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    error = refused(answer, status, code) if code != "contract_violation" else refused(answer, 422, code)
    if code == "contract_violation":
        assert error["details"]["failures"], error
    assert versions(sample_api) == before


def test_an_oversize_body_is_refused_before_it_is_read(sample_api: SampleApi) -> None:
    run_id = created(sample_api.post("/api/v1/runs", {"experiment": "big"}))["run_id"]
    huge = b'{"params": {"k": "' + b"x" * (17 * 1024 * 1024) + b'"}}'
    answer = sample_api.http.post(
        f"{sample_api.url}/api/v1/runs/{run_id}/log", data=huge, headers={"Content-Type": "application/json"}
    )
    refused(answer, 413, "payload_too_large")


def test_concurrent_log_requests_share_group_commits(sample_api: SampleApi) -> None:
    run_ids = [created(sample_api.post("/api/v1/runs", {"experiment": "crowd"}))["run_id"] for _ in range(8)]
    before = versions(sample_api)["metrics"] or 0

    def log(index: int) -> int:
        run_id = run_ids[index % len(run_ids)]
        body = {"metrics": [{"key": "q", "value": float(index), "step": index}]}
        with requests.Session() as http:
            return http.post(f"{sample_api.url}/api/v1/runs/{run_id}/log", json=body, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(log, range(96)))
    assert statuses == [200] * 96
    commits = (versions(sample_api)["metrics"] or 0) - before
    assert 0 < commits < 96, f"{commits} commits for 96 requests"
    lake = metalake.connect(sample_api.lake_path, actor="tester")
    found = lake.sql("select count(*), count(distinct step) from metrics where key = 'q'").fetchall()
    assert found == [(96, 96)]


def test_registry_writes_are_governed_by_the_stored_policy(sample_api: SampleApi) -> None:
    lake = metalake.connect(sample_api.lake_path, actor="tester")
    lake.registry.use_policy(POLICY, persist=True)
    run_id = sample_api.get("/api/v1/runs", experiment="churn", limit=1).json()["items"][0]["run_id"]
    version = created(
        sample_api.post("/api/v1/models/fraud/versions", {"run_id": run_id, "artifact_uri": "s3://m/fraud/1"})
    )
    assert (version["model"], version["version"], version["stage"]) == ("fraud", 1, "none")
    before = versions(sample_api)
    error = refused(
        sample_api.post("/api/v1/models/fraud/versions/1/transition", {"stage": "production"}),
        409,
        "policy_violation",
    )
    assert {failure["rule"] for failure in error["details"]["failures"]} == {
        "require_metrics",
        "require_card_fields",
    }
    assert versions(sample_api) == before
    moved = created(sample_api.post("/api/v1/models/fraud/versions/1/transition", {"stage": "staging"}), 200)
    assert moved["stage"] == "staging"
    aliased = created(sample_api.post("/api/v1/models/fraud/aliases/candidate", {"version": 1}), 200)
    assert aliased["aliases"] == ["candidate"]
    assert (
        sample_api.http.delete(f"{sample_api.url}/api/v1/models/fraud/aliases/candidate").status_code == 200
    )
    assert sample_api.get("/api/v1/models/fraud/versions/1").json()["aliases"] == []


def test_deployments_kpi_observations_and_snapshots(sample_api: SampleApi) -> None:
    deployment = created(
        sample_api.post("/api/v1/deployments", {"model": "churn", "version": 1, "environment": "staging"})
    )
    ended = created(sample_api.post(f"/api/v1/deployments/{deployment['deployment_id']}/end", {}), 200)
    assert ended["ended_at"] is not None
    observations = {
        "observations": [{"kpi": "conversion", "value": 12.5}, {"kpi": "conversion", "value": 13.0}]
    }
    key = {"Idempotency-Key": "kpi-batch-1"}
    assert (
        created(sample_api.post("/api/v1/kpis/observations", observations, headers=key))["observations"] == 2
    )
    lake = metalake.connect(sample_api.lake_path, actor="tester")
    count = lake.sql("select count(*) from kpi_observations").fetchall()[0][0]
    created(sample_api.post("/api/v1/kpis/observations", observations, headers=key))
    assert lake.sql("select count(*) from kpi_observations").fetchall()[0][0] == count
    created(sample_api.post("/api/v1/snapshots", {"name": "after-writes", "description": "from the API"}))
    refused(sample_api.post("/api/v1/snapshots", {"name": "after-writes"}), 409, "snapshot_exists")
    names = [row["snapshot"] for row in sample_api.get("/api/v1/snapshots").json()["items"]]
    assert "after-writes" in names


def test_datasets_are_read_only_from_object_storage_or_the_data_roots(sample_api: SampleApi) -> None:
    data_root = sample_api.lake_path.parent / "data"
    pl.DataFrame({"id": [1, 2, 3], "amount": [5.0, 7.5, None]}).write_parquet(data_root / "orders.parquet")
    version = created(
        sample_api.post("/api/v1/datasets/orders/versions", {"uri": str(data_root / "orders.parquet")})
    )
    assert version["row_count"] == 3 and version["version"] == 1
    suite = [{"expect_column_values_to_not_be_null": {"column": "amount"}}]
    validation = created(sample_api.post("/api/v1/datasets/orders/validations", {"suite": suite}))
    assert validation["success"] is False and validation["unsuccessful"] == 1
    for outside in ("/etc/passwd", str(data_root / ".." / ".." / "etc" / "passwd"), "file:///etc/passwd"):
        error = refused(sample_api.post("/api/v1/datasets/leak/versions", {"uri": outside}), 403, "forbidden")
        assert "data roots" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_csv('/etc/passwd')",
        "select * from '/etc/passwd'",
        "select * from read_text('/etc/passwd')",
        "select getenv('HOME')",
        "copy (select 1) to '/tmp/x.csv'",
        "attach '/etc/passwd' as x",
    ],
)
def test_the_sql_endpoint_never_reads_server_files(sample_api: SampleApi, query: str) -> None:
    answer = sample_api.post("/api/v1/sql", {"query": query})
    refused(answer, 400, "unsafe_query")
    assert "root:" not in answer.text


def test_the_sql_endpoint_answers_json_csv_and_arrow(sample_api: SampleApi) -> None:
    import pyarrow as pa

    query = {
        "query": "select name, status from runs_current where experiment = ? order by name",
        "params": ["churn"],
    }
    rows = created(sample_api.post("/api/v1/sql", query), 200)
    assert rows["columns"] == ["name", "status"] and ["xgb-4", "finished"] in rows["rows"]
    csv = sample_api.post("/api/v1/sql", query, headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv") and '"xgb-4","finished"' in csv.text
    arrow = sample_api.post("/api/v1/sql", query, headers={"Accept": "application/vnd.apache.arrow.stream"})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["name", "status"] and table.num_rows == len(rows["rows"])
    capped = created(sample_api.post("/api/v1/sql", {**query, "limit": 1}), 200)
    assert len(capped["rows"]) == 1 and capped["truncated"] is True
