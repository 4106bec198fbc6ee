"""The REST API's reads against a real server over the sample lake: each resource now, as of a past moment and
a snapshot, paged, with ETags, and its bad inputs answered with a clear 4xx error."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from support.api_server import SampleApi

import metalake

RUN_NAMES = {"xgb-4", "xgb-6", "xgb-8", "broken"}


def ok(answer: requests.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def refused(answer: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"], error
    assert "Traceback" not in answer.text
    return error


def run_id_of(api: SampleApi, name: str) -> str:
    runs = ok(api.get("/api/v1/runs", experiment="churn", limit=10))["items"]
    return str(next(run["run_id"] for run in runs if run["name"] == name))


# Every GET with arguments that name something in the sample lake; `{run}` is the run xgb-6.
RESOURCES = [
    ("/api/v1/tables", {}),
    ("/api/v1/tables/runs", {}),
    ("/api/v1/tables/runs/history", {}),
    ("/api/v1/snapshots", {}),
    ("/api/v1/audit", {"table": "runs"}),
    ("/api/v1/experiments", {}),
    ("/api/v1/runs", {"experiment": "churn"}),
    ("/api/v1/runs/{run}", {}),
    ("/api/v1/runs/{run}/metrics/val_auc", {}),
    ("/api/v1/models", {}),
    ("/api/v1/models/churn/versions", {}),
    ("/api/v1/models/churn/versions/champion", {}),
    ("/api/v1/models/churn/stages", {}),
    ("/api/v1/models/churn/at", {"when": "2026-12-31T00:00:00Z", "stage": "staging"}),
    ("/api/v1/datasets", {}),
    ("/api/v1/datasets/churn/versions", {}),
    ("/api/v1/datasets/churn/versions/2", {}),
    ("/api/v1/datasets/churn/diff", {"v1": 1, "v2": 2}),
    ("/api/v1/datasets/churn/validations", {}),
    ("/api/v1/quality/scorecard", {}),
    ("/api/v1/deployments", {}),
    ("/api/v1/kpis", {}),
    ("/api/v1/kpis/conversion/observations", {}),
    ("/api/v1/kpis/impact", {}),
    ("/api/v1/lineage", {"node": "job:airflow-prod/daily_features.extract", "direction": "downstream"}),
]


@pytest.mark.parametrize(("path", "params"), RESOURCES, ids=[path for path, _ in RESOURCES])
def test_every_resource_answers_now_with_an_etag_that_revalidates(
    sample_api: SampleApi, path: str, params: dict[str, Any]
) -> None:
    url = path.replace("{run}", run_id_of(sample_api, "xgb-6"))
    answer = sample_api.get(url, **params)
    ok(answer)
    etag = answer.headers["ETag"]
    again = sample_api.http.get(f"{sample_api.url}{url}", params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    other = sample_api.http.get(f"{sample_api.url}{url}", params=params, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200


@pytest.mark.parametrize(("path", "params"), RESOURCES, ids=[path for path, _ in RESOURCES])
def test_every_resource_answers_as_of_the_snapshot_as_it_does_now(
    sample_api: SampleApi, path: str, params: dict[str, Any]
) -> None:
    """Nothing changed since the snapshot was pinned (writes happen in another module's server)."""
    url = path.replace("{run}", run_id_of(sample_api, "xgb-6"))
    now = ok(sample_api.get(url, **params))
    then = sample_api.get(url, **params, as_of=sample_api.snapshot)
    assert ok(then) == now or path in {
        "/api/v1/tables",
        "/api/v1/tables/runs/history",
        "/api/v1/audit",
        "/api/v1/snapshots",
    }


def test_runs_models_datasets_and_kpis_as_of_before_they_existed(sample_api: SampleApi) -> None:
    before = sample_api.before_runs.isoformat()
    assert ok(sample_api.get("/api/v1/experiments", as_of=before))["items"] == []
    assert ok(sample_api.get("/api/v1/runs", as_of=before))["items"] == []
    assert ok(sample_api.get("/api/v1/models", as_of=before))["items"] == []
    assert ok(sample_api.get("/api/v1/datasets", as_of=before))["items"] == []
    assert ok(sample_api.get("/api/v1/kpis", as_of=before))["items"] == []
    refused(
        sample_api.get(f"/api/v1/runs/{run_id_of(sample_api, 'xgb-6')}", as_of=before), 404, "run_not_found"
    )
    refused(sample_api.get("/api/v1/models/churn/versions/1", as_of=before), 404, "model_not_found")
    sql = sample_api.post("/api/v1/sql", {"query": "select count(*) as n from runs_current", "as_of": before})
    assert ok(sql)["rows"] == [[0]]
    tables = {
        table["name"]: table["version"]
        for table in ok(sample_api.get("/api/v1/tables", as_of=before))["items"]
    }
    now = {table["name"]: table["version"] for table in ok(sample_api.get("/api/v1/tables"))["items"]}
    assert tables["runs"] is not None and now["runs"] > tables["runs"]


def test_a_run_shows_its_state_params_tags_metrics_inputs_and_model_versions(sample_api: SampleApi) -> None:
    run = ok(sample_api.get(f"/api/v1/runs/{run_id_of(sample_api, 'xgb-4')}"))
    assert run["experiment"] == "churn" and run["status"] == "finished"
    assert run["params"] == {"depth": "4", "lr": "0.1"} and run["tags"]["team"] == "ml"
    assert run["metrics"]["val_auc"]["count"] == 3
    assert [item["dataset"] for item in run["inputs"]] == ["churn"]
    assert [(v["model"], v["version"]) for v in run["model_versions"]] == [("churn", 1)]
    prefix = run["run_id"][:16]
    assert ok(sample_api.get(f"/api/v1/runs/{prefix}"))["run_id"] == run["run_id"]
    failed = ok(sample_api.get(f"/api/v1/runs/{run_id_of(sample_api, 'broken')}"))
    assert failed["status"] == "failed" and failed["info"]["error_type"] == "RuntimeError"


def test_runs_search_pages_and_uses_the_python_expression_language(sample_api: SampleApi) -> None:
    first = ok(sample_api.get("/api/v1/runs", experiment="churn", limit=2, order_by="metrics.val_auc desc"))
    assert len(first["items"]) == 2 and first["next_page_token"]
    second = ok(
        sample_api.get(
            "/api/v1/runs",
            experiment="churn",
            limit=2,
            order_by="metrics.val_auc desc",
            page_token=first["next_page_token"],
        )
    )
    names = [run["name"] for run in first["items"] + second["items"]]
    assert set(names) == RUN_NAMES and second["next_page_token"] is None
    found = ok(sample_api.get("/api/v1/runs", where="metrics.val_auc > 0.82 and params.depth = '6'"))
    assert [run["name"] for run in found["items"]] == ["xgb-6"]

    lake = metalake.connect(sample_api.lake_path, actor="tester")
    with pytest.raises(metalake.QueryError) as python_error:
        lake.runs.search(where="metrics.val_acu > 1")
    error = refused(sample_api.get("/api/v1/runs", where="metrics.val_acu > 1"), 400, "query_error")
    assert error["message"] == str(python_error.value)
    other_filters = sample_api.get("/api/v1/runs", experiment="nope", page_token=first["next_page_token"])
    refused(other_filters, 400, "invalid_request")


def test_a_metric_history_pages_and_downsamples(sample_api: SampleApi) -> None:
    run = run_id_of(sample_api, "xgb-6")
    whole = ok(sample_api.get(f"/api/v1/runs/{run}/metrics/val_auc"))
    assert [point["step"] for point in whole["points"]] == [0, 1, 2] and not whole["downsampled"]
    page = ok(sample_api.get(f"/api/v1/runs/{run}/metrics/val_auc", limit=2))
    rest = ok(
        sample_api.get(f"/api/v1/runs/{run}/metrics/val_auc", limit=2, page_token=page["next_page_token"])
    )
    assert [p["step"] for p in page["points"] + rest["points"]] == [0, 1, 2] and rest[
        "next_page_token"
    ] is None
    cut = ok(sample_api.get(f"/api/v1/runs/{run}/metrics/val_auc", max_points=2))
    assert cut["downsampled"] and cut["total_points"] == 3 and len(cut["points"]) <= 2
    nan_run = ok(sample_api.get(f"/api/v1/runs/{run_id_of(sample_api, 'xgb-8')}/metrics/val_auc"))
    assert {point["value"] for point in nan_run["points"]} == {None}, "NaN leaves as null"
    refused(sample_api.get(f"/api/v1/runs/{run}/metrics/val_auc", max_points=0), 400, "invalid_request")


def test_registry_reads_by_number_alias_stage_and_moment(sample_api: SampleApi) -> None:
    assert ok(sample_api.get("/api/v1/models/churn/versions/champion"))["version"] == 2
    assert ok(sample_api.get("/api/v1/models/churn/versions/staging"))["version"] == 1
    assert ok(sample_api.get("/api/v1/models/churn/versions/latest"))["version"] == 2
    staged = ok(sample_api.get("/api/v1/models/churn/at", when="2027-01-01T00:00:00Z", stage="staging"))
    assert staged["version"]["version"] == 1
    before = sample_api.before_runs.isoformat()
    assert ok(sample_api.get("/api/v1/models/churn/at", when=before, stage="staging"))["version"] is None
    stages = ok(sample_api.get("/api/v1/models/churn/stages"))["items"]
    assert {(row["version"], row["stage"]) for row in stages} >= {(1, "staging"), (2, "none")}
    error = refused(sample_api.get("/api/v1/models/chrun/versions"), 404, "model_not_found")
    assert error["details"]["suggestions"] == ["churn"]


def test_datasets_quality_deployments_kpis_and_lineage(sample_api: SampleApi) -> None:
    version = ok(sample_api.get("/api/v1/datasets/churn/versions/2"))
    assert version["row_count"] == 2 and [c["name"] for c in version["schema"]] == ["id", "score"]
    diff = ok(sample_api.get("/api/v1/datasets/churn/diff", v1=1, v2=2))
    assert diff["breaking"] and {c["column"] for c in diff["schema_changes"]} >= {"age", "score"}
    [validation] = ok(sample_api.get("/api/v1/datasets/churn/validations"))["items"]
    results = ok(sample_api.get(f"/api/v1/validations/{validation['validation_id']}/results"))["items"]
    assert results and not validation["success"]
    assert ok(sample_api.get("/api/v1/datasets/churn/validations", version=1))["items"] == []
    deployments = ok(sample_api.get("/api/v1/deployments", model="churn"))["items"]
    assert {d["version"] for d in deployments} == {1, 2}
    live = ok(sample_api.get("/api/v1/deployments", active="true"))["items"]
    assert [d["version"] for d in live] == [2]
    one = ok(sample_api.get(f"/api/v1/deployments/{live[0]['deployment_id']}"))
    assert one["environment"] == "production"
    assert len(ok(sample_api.get("/api/v1/kpis/conversion/observations"))["items"]) == 11
    assert ok(sample_api.get("/api/v1/kpis/impact", kpi="conversion"))["items"]
    graph = ok(
        sample_api.get(
            "/api/v1/lineage", node="job:airflow-prod/daily_features.extract", direction="downstream", depth=1
        )
    )
    assert graph["edges"] and "job:airflow-prod/daily_features.extract" in graph["nodes"]


BAD_READS = [
    ("/api/v1/tables/nope", {}, 404, "table_not_found"),
    ("/api/v1/runs/0123456789abcdef0123456789abcdef", {}, 404, "run_not_found"),
    ("/api/v1/runs", {"limit": 5000}, 400, "invalid_request"),
    ("/api/v1/runs", {"limit": 0}, 400, "invalid_request"),
    ("/api/v1/runs", {"limit": "many"}, 400, "invalid_request"),
    ("/api/v1/runs", {"page_token": "garbage!"}, 400, "invalid_request"),
    ("/api/v1/runs", {"where": "params.depth = "}, 400, "query_error"),
    ("/api/v1/runs", {"experiment": "chrun"}, 404, "experiment_not_found"),
    ("/api/v1/runs", {"as_of": "not-a-moment"}, 400, "snapshot_not_found"),
    ("/api/v1/runs", {"as_of": "x" * 500}, 400, "invalid_request"),
    ("/api/v1/models/churn/versions/99", {}, 404, "model_not_found"),
    (
        "/api/v1/models/churn/versions/\u00b9",
        {},
        404,
        "model_not_found",
    ),  # a digit to isdigit(), not to int()
    ("/api/v1/models/churn/at", {"when": "yesterday-ish"}, 400, "invalid_request"),
    ("/api/v1/models/churn/at", {"when": "2026-01-01", "stage": "prod"}, 400, "invalid_request"),
    ("/api/v1/datasets/churn/versions/9", {}, 404, "dataset_not_found"),
    ("/api/v1/datasets/churn/diff", {"v1": 1}, 400, "invalid_request"),
    ("/api/v1/deployments/nope", {}, 404, "deployment_not_found"),
    ("/api/v1/kpis/nope/observations", {}, 404, "kpi_not_found"),
    ("/api/v1/lineage", {"node": "job:nope/nothing"}, 404, "lineage_node_not_found"),
    ("/api/v1/lineage", {"node": "job:a/b", "direction": "sideways"}, 400, "invalid_request"),
    ("/api/v1/no-such-thing", {}, 404, "endpoint_not_found"),
]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"), BAD_READS, ids=[f"{p}-{c}" for p, _, _, c in BAD_READS]
)
def test_bad_reads_get_a_clear_error(
    sample_api: SampleApi, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    refused(sample_api.get(path, **params), status, code)
