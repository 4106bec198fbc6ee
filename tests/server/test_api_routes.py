"""Every route is behind the one authorization seam and every GET travels in time; the API's contract holds
(schemathesis against /openapi.json of a real server); a run whose process died shows `lost` over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from schemathesis import checks
from support.api_server import SampleApi, start_server_process

import metalake
from metalake.errors import NotAuthorized
from metalake.server import auth
from metalake.server.app import create_app
from metalake.server.auth import Authorize
from metalake.server.mlflow.protocol import is_mlflow_path

PUBLIC = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/api/v1/health"}


@pytest.fixture
def app_routes(tmp_path: Path) -> Iterator[tuple[Any, list[APIRoute]]]:
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    app = create_app(lake, spool_dir=tmp_path / "spool", auth="none")
    yield app, [route for route in app.routes if isinstance(route, APIRoute)]
    lake.close()


def test_every_route_decides_through_the_authorize_seam(app_routes: tuple[Any, list[APIRoute]]) -> None:
    _, routes = app_routes
    guarded = [route for route in routes if route.path not in PUBLIC]
    assert len(guarded) >= 35, [route.path for route in guarded]
    unguarded = [
        f"{sorted(route.methods)} {route.path}"
        for route in guarded
        if not any(isinstance(dependency.call, Authorize) for dependency in route.dependant.dependencies)
    ]
    assert unguarded == [], "routes that skip authorize()"
    # the REST API answers as of any moment; MLflow's endpoints take MLflow's fields only
    readers = [route for route in guarded if "GET" in route.methods and route.path.startswith("/api/v1/")]
    without_as_of = [
        route.path for route in readers if "as_of" not in {p.name for p in route.dependant.query_params}
    ]
    assert without_as_of == [], "GET routes without as_of"


def test_a_refusal_from_authorize_answers_403_on_every_route(
    app_routes: tuple[Any, list[APIRoute]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, routes = app_routes
    asked: list[tuple[str, str]] = []

    def deny(lake: metalake.Lake, principal: auth.Principal, action: auth.Action, securable: str) -> None:
        asked.append((action, securable))
        raise NotAuthorized(f"{principal.name} may not {action} {securable}")

    monkeypatch.setattr(auth, "authorize", deny)
    with TestClient(app) as client:
        for route in routes:
            if route.path in PUBLIC:
                continue
            path = route.path.replace("{", "").replace("}", "")
            filtered = any(
                isinstance(dependency.call, Authorize) and dependency.call.filtered
                for dependency in route.dependant.dependencies
            )
            for method in route.methods:
                body = {"query": "select count(*) from runs"} if route.path == "/api/v1/sql" else {}
                answer = client.request(method, path, json=body)
                if (
                    route.path == "/api/v1/sql"
                ):  # SQL is confined to what the principal may read: here, nothing
                    assert answer.status_code == 400, answer.text
                    assert answer.json()["error"]["code"] == "unsafe_query", answer.text
                    continue
                if filtered and route.path.startswith("/api/v1/lineage"):  # a walk from a node it may not see
                    shown = client.request(method, path, params={"node": "job:ns/x", "dataset": "ns/y"})
                    assert shown.status_code == 404, (method, route.path, shown.text)
                    continue
                if filtered:  # a listing of a kind shows what the principal may read of it: here, nothing
                    assert answer.status_code == 200, (method, route.path, answer.text)
                    listed = answer.json()
                    if is_mlflow_path(route.path):  # {"experiments": []}, {"runs": []}, ...
                        assert all(value == [] for value in listed.values()), (
                            method,
                            route.path,
                            answer.text,
                        )
                    else:
                        assert listed["items"] == [], (method, route.path, answer.text)
                    continue
                assert answer.status_code == 403, (method, route.path, answer.text)
                if is_mlflow_path(route.path):  # MLflow's error body, which MLflow clients read
                    assert answer.json()["error_code"] == "PERMISSION_DENIED"
                else:
                    assert answer.json()["error"]["code"] == "forbidden"
    assert {action for action, _ in asked} == {"read", "write", "manage", "admin"}
    assert ("read", "run:runs") in {(a, s) for a, s in asked if s.startswith("run:")} or any(
        securable.startswith("run:") for _, securable in asked
    )


def test_a_run_whose_process_died_shows_lost_over_http(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    run = lake.runs.start(experiment="jobs", name="dies")
    run.log_metric("loss", 0.5)
    run.flush()
    alive = datetime.now(UTC).isoformat()
    server = start_server_process(tmp_path / "lake", tmp_path / "spool", env={"METALAKE_LOST_AFTER": "1"})
    try:
        time.sleep(1.5)  # no flush, no heartbeat (the timer beats after 60 s): as if the job had been killed
        url = f"{server.url}/api/v1/runs/{run.run_id}"
        assert requests.get(url, timeout=10).json()["status"] == "lost"
        assert requests.get(url, params={"as_of": alive}, timeout=10).json()["status"] == "running"
        found = requests.get(
            f"{server.url}/api/v1/runs", params={"where": "attributes.status = 'lost'"}, timeout=10
        )
        assert [item["run_id"] for item in found.json()["items"]] == [run.run_id], found.text
    finally:
        server.stop()
        run.end()


# What the API promises about every answer. Left out: positive_data_acceptance, since a schema-valid request may
# still be refused for what it means (an unknown name, a bad expression: 4xx with the error body), and the
# stateful checks, which need links between operations that the spec does not declare.
CONTRACT_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_no_answer_breaks_the_spec_or_is_a_server_error(sample_api: SampleApi) -> None:
    """schemathesis generates requests for every operation from /openapi.json (a bounded number each) and checks
    every answer: no 5xx, a documented status and content type, a body matching the schema."""
    from support.generated import generated_request_failures

    operations, failures = generated_request_failures(
        f"{sample_api.url}/openapi.json",
        lambda case: case.call_and_validate(checks=CONTRACT_CHECKS),
        max_examples=8,
    )
    assert operations >= 35
    assert failures == [], "\n\n".join(failures)
