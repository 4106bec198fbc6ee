"""The leak scanner: a lake seeded with known sensitive values (an actor's email, a run user, a param `api_key`, a
tag `customer_email`, a dataset column marked sensitive, which its profile's min and max would show), then every
GET route of the REST API, MLflow's read endpoints and a set of SQL queries, under a principal that may read the
whole lake but not unmask it. No answer may contain any seeded value."""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support.api_server import Server, start_server_process
from support.sample_lake import fill_sample_lake

import metalake

ACTOR = "leaky.person@example.com"
SECRETS = ("sk-live-9f8e7d6c5b4a", "customer.42@example.org", "CUST-7731-SECRET")


@dataclass
class Scanned:
    server: Server
    viewer: str
    admin: str
    ids: dict[str, str]
    nobody: str

    def get(self, path: str, token: str | None = None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.viewer}"}
        return requests.get(self.server.url + path, headers=headers, params=params, timeout=60)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scanned]:
    folder = tmp_path_factory.mktemp("leaks")
    lake = metalake.connect(folder / "lake", actor=ACTOR)
    admin = lake.access.init("root").token
    lake.access.create_principal("viewer")
    lake.access.grant("viewer", "read", "lake")
    viewer = lake.access.create_token("viewer").token
    lake.access.create_principal("nobody")  # holds no grant at all
    nobody = lake.access.create_token("nobody").token
    fill_sample_lake(lake, folder)
    import polars as pl

    customers = pl.DataFrame({"id": [1, 2], "age": [30, 40], "customer_ref": [SECRETS[2], SECRETS[2]]})
    lake.datasets.register("churn", customers, sensitive=["customer_ref"])  # its profile's min and max
    with lake.runs.start("churn", name="leaky") as run:
        run.log_params({"api_key": SECRETS[0]})
        run.set_tags({"customer_email": SECRETS[1]})
        run.log_metric("auc", 0.5)
    lake.runs.wait()
    lake.snapshot("scanned")
    validation = lake.sql("select validation_id from dq_validations limit 1").fetchall()[0][0]
    deployment = lake.sql("select deployment_id from deployments limit 1").fetchall()[0][0]
    lake.close()
    server = start_server_process(folder / "lake", folder / "spool", lake_auth=True)
    experiment = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "churn"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    ).json()["experiment"]
    ids = {
        "run_id": run.run_id,
        "validation_id": validation,
        "deployment_id": deployment,
        "experiment_id": experiment["experiment_id"],
    }
    yield Scanned(server, viewer, admin, ids, nobody)
    server.stop()


def sensitive_values() -> list[str]:
    return [ACTOR, *SECRETS, *([getpass.getuser()] if len(getpass.getuser()) >= 6 else [])]


def assert_no_leak(where: str, answer: requests.Response) -> None:
    assert answer.status_code < 500, f"{where}: {answer.status_code} {answer.text[:500]}"
    for value in sensitive_values():
        assert value not in answer.text, f"{where} answered {value!r}: {answer.text[:800]}"


PATH_VALUES = {
    "name": "churn",
    "model": "churn",
    "version": "1",
    "key": "val_auc",
    "alias": "champion",
    "securable": "lake",
}


def filled(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: {**PATH_VALUES, **ids}.get(match.group(1), "x"), path)


def test_the_seeded_values_are_in_the_lake_and_an_admin_sees_them(scanned: Scanned) -> None:
    answer = scanned.get(f"/api/v1/runs/{scanned.ids['run_id']}", scanned.admin)
    assert SECRETS[0] in answer.text and SECRETS[1] in answer.text, (
        "the scanner looks for values that are there"
    )
    history = scanned.get("/api/v1/tables/runs/history", scanned.admin)
    assert ACTOR in history.text
    profiles = scanned.get("/api/v1/datasets/churn/versions/3", scanned.admin)
    assert SECRETS[2] in profiles.text, "the profile of the sensitive column shows its min and max in clear"
    masked = scanned.get("/api/v1/datasets/churn/versions/3", scanned.viewer)
    assert masked.status_code == 200 and '"masked":true' in masked.text.replace(" ", "")
    assert_no_leak("the version with the sensitive column", masked)
    assert_no_leak("its diff", scanned.get("/api/v1/datasets/churn/diff", v1="2", v2="3"))


def test_no_get_route_answers_a_sensitive_value(scanned: Scanned) -> None:
    spec = requests.get(f"{scanned.server.url}/openapi.json", timeout=30).json()
    paths = [path for path, methods in spec["paths"].items() if "get" in methods]
    assert len(paths) >= 25
    extra = {
        "/api/v1/runs": {"experiment": "churn"},
        "/api/v1/models/{model}/at": {"when": "2030-01-01T00:00:00Z"},
        "/api/v1/datasets/{name}/diff": {"v1": 1, "v2": 2},
        "/api/v1/lineage": {"node": "dataset:churn"},
        "/api/v1/lineage/columns": {"dataset": "churn"},
        "/api/v1/kpis/impact": {"kpi": "conversion"},
    }
    answered = 0
    for path in paths:
        names = {"name": "runs"} if path.startswith("/api/v1/tables/") else {}
        names |= {"name": "conversion"} if path.startswith("/api/v1/kpis/") else {}
        url = filled(path, {**scanned.ids, **names})
        answered += scanned.get(url, **extra.get(path, {})).status_code == 200
        assert_no_leak(url, scanned.get(url, **extra.get(path, {})))
        assert_no_leak(f"{url} as_of", scanned.get(url, as_of="scanned", **extra.get(path, {})))
    assert answered >= len(paths) - 4, "the scan reads data: only the admin routes may refuse the viewer"


MLFLOW_READS = [
    ("GET", "runs/get", {"run_id": "{run_id}"}),
    ("POST", "runs/search", {"experiment_ids": ["{experiment_id}"], "max_results": 100}),
    ("POST", "runs/search", {"experiment_ids": ["{experiment_id}"], "filter": "params.api_key != ''"}),
    ("GET", "experiments/get-by-name", {"experiment_name": "churn"}),
    ("POST", "experiments/search", {"max_results": 100}),
    ("GET", "registered-models/search", {}),
    ("GET", "model-versions/search", {}),
    ("GET", "metrics/get-history", {"run_id": "{run_id}", "metric_key": "auc"}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), MLFLOW_READS, ids=[f"{m} {p}" for m, p, _ in MLFLOW_READS]
)
def test_mlflow_read_endpoints_answer_no_sensitive_value(
    scanned: Scanned, method: str, path: str, body: dict[str, Any]
) -> None:
    import json

    text = json.dumps(body)
    for name, value in scanned.ids.items():
        text = text.replace("{" + name + "}", value)
    fields = json.loads(text)
    url = f"{scanned.server.url}/api/2.0/mlflow/{path}"
    headers = {"Authorization": f"Bearer {scanned.viewer}"}
    if method == "GET":
        answer = requests.get(url, params=fields, headers=headers, timeout=60)
    else:
        answer = requests.post(url, json=fields, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert_no_leak(path, answer)


SQL_QUERIES = [
    "select * from runs",
    "select * from params",
    "select * from run_tags",
    "select * from runs_current",
    "select * from audit_log",
    "select * from metrics",
    "select * from registry_current",
    "select * from model_stage_history",
    "select * from runs_wide",
    "select * from deployments_current",
    f"select * from runs where recorded_by = '{ACTOR}'",
    "select * from runs where recorded_by like 'leaky%'",
    "select min(recorded_by), max(recorded_by) from runs",
    "select string_agg(value, ',') from params",
    "select string_agg(actor, ',') from audit_log",
    "select recorded_by, count(*) from metrics group by recorded_by",
    "select p.value from params p join runs r on r.run_id = p.run_id and r.recorded_by = p.recorded_by",
    "select cast(value as varchar) || '' from params where key = 'api_key'",
    "select regexp_extract(value, 'sk-.*') from params",
    "select regexp_extract(recorded_by, '.*@.*') from runs",
    "select value from run_tags where key like '%email%'",
    "select max(value) from run_tags",
    "select user, recorded_by from runs_current order by recorded_by",
]


def test_sql_answers_no_sensitive_value_whatever_the_query(scanned: Scanned) -> None:
    failures = []
    for query in SQL_QUERIES:
        answer = requests.post(
            f"{scanned.server.url}/api/v1/sql",
            json={"query": query, "limit": 10_000},
            headers={"Authorization": f"Bearer {scanned.viewer}"},
            timeout=60,
        )
        if answer.status_code != 200:
            failures.append(f"{query}: {answer.status_code} {answer.text[:300]}")
            continue
        for value in sensitive_values():
            if value in answer.text:
                failures.append(f"{query} answered {value!r}")
    assert failures == []


def test_the_same_queries_in_csv_answer_no_sensitive_value(scanned: Scanned, tmp_path: Path) -> None:
    for query in SQL_QUERIES[:6]:
        answer = requests.post(
            f"{scanned.server.url}/api/v1/sql",
            json={"query": query, "limit": 10_000},
            headers={"Authorization": f"Bearer {scanned.viewer}", "Accept": "text/csv"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert_no_leak(query, answer)


@pytest.mark.parametrize("who", ["viewer", "nobody"])
def test_generated_requests_under_an_unprivileged_token_never_fail_nor_leak(
    scanned: Scanned, who: str
) -> None:
    """schemathesis sends requests generated from /openapi.json for every operation with the token of a reader
    without unmask (`viewer`) or of a principal without any grant (`nobody`): no answer is a 5xx, and none
    carries a seeded value; `nobody`'s also carry no name or id of what it may not read."""
    from schemathesis import checks
    from support.generated import generated_request_failures

    token = scanned.viewer if who == "viewer" else scanned.nobody
    hidden = sensitive_values() + ([scanned.ids["run_id"], "leaky", "data-team"] if who == "nobody" else [])
    statuses: dict[int, int] = {}

    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        case.validate_response(response, checks=[checks.not_a_server_error])
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        for value in hidden:
            assert value not in response.text, f"{case.method} {case.formatted_path} answered {value!r}"

    _, failures = generated_request_failures(
        f"{scanned.server.url}/openapi.json", check, max_examples=5, message_chars=1500
    )
    assert failures == [], "\n\n".join(failures)
    assert sum(statuses.values()) >= 100, statuses
