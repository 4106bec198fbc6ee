"""Principals x routes x securables: for each kind of securable, a principal with nothing is denied every route
about an object of it (404, or a list without it), a read grant opens exactly that object (and what it holds:
an experiment's runs, a model's versions and deployments, a dataset's versions and validations), a revoke closes
it again at once; writes need write, and a grant on one object opens nothing of its sibling.

One real `metalake serve` over a lake with two objects of each kind (`-a` and `-b`); grants go through the REST
API as an admin, so the server sees each one at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandera.pandas as pa
import polars as pl
import pytest
import requests
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from support.api_server import Server, start_server_process

import metalake

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SIDES = ("a", "b")


@dataclass
class Seeded:
    server: Server
    admin: str
    token: str  # of `pat`, who starts with nothing
    ids: dict[str, str] = field(default_factory=dict)  # run-a, deployment-a, validation-a, ...

    def call(self, method: str, path: str, token: str | None = None, **options: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return requests.request(method, self.server.url + path, headers=headers, timeout=30, **options)

    def grant(self, privilege: str, securable: str) -> None:
        answer = self.call(
            "POST",
            f"/api/v1/access/securables/{securable}/grants",
            self.admin,
            json={"principal": "pat", "privilege": privilege},
        )
        assert answer.status_code in (200, 201), answer.text

    def revoke(self, privilege: str, securable: str) -> None:
        answer = self.call(
            "DELETE",
            f"/api/v1/access/securables/{securable}/grants",
            self.admin,
            params={"principal": "pat", "privilege": privilege},
        )
        assert answer.status_code == 200, answer.text


def lineage_events() -> list[RunEvent]:
    """Job ns-a/build reads ns-a/raw and writes ns-a/clean and ns-b/shared; job ns-b/report reads ns-b/shared."""

    def event(namespace: str, job: str, inputs: list[str], outputs: list[str], minute: int) -> RunEvent:
        return RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=(START + timedelta(minutes=minute)).isoformat(),
            run=Run(runId=f"01912d6e-0000-7000-8000-00000000000{minute}"),
            job=Job(namespace=namespace, name=job),
            producer="https://example.com/matrix-test",
            inputs=[InputDataset(*name.split("/", 1)) for name in inputs],
            outputs=[OutputDataset(*name.split("/", 1)) for name in outputs],
        )

    return [
        event("ns-a", "build", ["ns-a/raw"], ["ns-a/clean", "ns-b/shared"], 1),
        event("ns-b", "report", ["ns-b/shared"], ["ns-b/report"], 2),
    ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    folder = tmp_path_factory.mktemp("matrix")
    lake = metalake.connect(folder / "lake", actor="tester")
    admin = lake.access.init("root").token
    lake.access.create_principal("pat")
    token = lake.access.create_token("pat").token
    ids: dict[str, str] = {}
    for side in SIDES:
        data = pl.DataFrame({"id": [1, 2, 3]})
        lake.datasets.register(f"orders-{side}", data)
        suite = pa.DataFrameSchema({"id": pa.Column(int, pa.Check.ge(1))})
        ids[f"validation-{side}"] = lake.quality.validate(
            f"orders-{side}", suite=suite, data=data
        ).validation_id
        with lake.runs.start(experiment=f"exp-{side}", name=f"run-{side}") as run:
            run.log_metric("auc", 0.8, step=0)
        lake.runs.wait()
        ids[f"run-{side}"] = run.run_id
        lake.registry.register(
            f"model-{side}", run_id=run.run_id, artifact_uri=f"s3://m/{side}/1", flavor="sklearn"
        )
        deployment = lake.deployments.record(f"model-{side}", 1, "production", at=START)
        ids[f"deployment-{side}"] = deployment.deployment_id
        lake.kpis.define(f"kpi-{side}", unit="%", direction="higher_is_better", models=[f"model-{side}"])
        for day in (-1, 1):
            lake.kpis.observe(f"kpi-{side}", 10.0 + day, at=START + timedelta(days=day))
    lake.lineage.ingest(lineage_events())
    lake.registry.create_model("model-r")  # renamed by a test
    ids["exp-r"] = lake.experiments.create("exp-r").experiment_id
    lake.close()
    server = start_server_process(folder / "lake", folder / "spool", lake_auth=True)
    yield Seeded(server, admin, token, ids)
    server.stop()


# Per kind: the securable granted for side a, then routes about a's object (each must answer 404 without the
# grant and 200 with it), then listings and what each must show of a (and never of b).
Named = Callable[[Seeded], str]
Listing = tuple[Named, Callable[[requests.Response], set[str]]]


def items(column: str) -> Callable[[requests.Response], set[str]]:
    return lambda answer: {str(item[column]) for item in answer.json()["items"]}


MATRIX: dict[str, tuple[str, list[Named], list[Listing]]] = {
    "experiment": (
        "experiment:exp-a",
        [
            lambda s: f"/api/v1/runs/{s.ids['run-a']}",
            lambda s: f"/api/v1/runs/{s.ids['run-a']}/metrics/auc",
            lambda s: "/api/v1/runs?experiment=exp-a",
            lambda s: f"/api/2.0/mlflow/runs/get?run_id={s.ids['run-a']}",
            lambda s: "/api/2.0/mlflow/experiments/get-by-name?experiment_name=exp-a",
        ],
        [
            (lambda s: "/api/v1/experiments", items("name")),
            (lambda s: "/api/v1/runs", items("experiment")),
        ],
    ),
    "model": (
        "model:model-a",
        [
            lambda s: "/api/v1/models/model-a/versions",
            lambda s: "/api/v1/models/model-a/versions/1",
            lambda s: "/api/v1/models/model-a/stages",
            lambda s: f"/api/v1/deployments/{s.ids['deployment-a']}",
            lambda s: "/api/v1/deployments?model=model-a",
            lambda s: "/api/2.0/mlflow/registered-models/get?name=model-a",
        ],
        [
            (lambda s: "/api/v1/models", lambda answer: set(answer.json()["items"])),
            (lambda s: "/api/v1/deployments", items("model")),
        ],
    ),
    "dataset": (
        "dataset:orders-a",
        [
            lambda s: "/api/v1/datasets/orders-a/versions",
            lambda s: "/api/v1/datasets/orders-a/versions/1",
            lambda s: "/api/v1/datasets/orders-a/validations",
            lambda s: f"/api/v1/validations/{s.ids['validation-a']}/results",
        ],
        [
            (lambda s: "/api/v1/datasets", items("dataset")),
            (lambda s: "/api/v1/quality/scorecard", items("dataset")),
        ],
    ),
    "kpi": (
        "kpi:kpi-a",
        [lambda s: "/api/v1/kpis/kpi-a/observations", lambda s: "/api/v1/kpis/impact?kpi=kpi-a"],
        [(lambda s: "/api/v1/kpis", items("kpi"))],
    ),
    "namespace": (
        "namespace:ns-a",
        [
            lambda s: "/api/v1/lineage?node=job:ns-a/build",
            lambda s: "/api/v1/lineage/columns?dataset=ns-a/clean",
        ],
        [],
    ),
    "table": (
        "table:runs",
        [lambda s: "/api/v1/tables/runs", lambda s: "/api/v1/tables/runs/history"],
        [(lambda s: "/api/v1/tables", items("name"))],
    ),
}


def shown(seeded: Seeded, listing: Listing) -> set[str]:
    path, names = listing
    answer = seeded.call("GET", path(seeded))
    assert answer.status_code == 200, f"{path(seeded)}: {answer.text}"
    return names(answer)


@pytest.mark.parametrize("kind", sorted(MATRIX))
def test_a_read_grant_opens_its_object_and_what_it_holds_and_a_revoke_closes_them(
    seeded: Seeded, kind: str
) -> None:
    securable, named, listings = MATRIX[kind]
    side_a = securable.partition(":")[2]

    for path in named:
        denied = seeded.call("GET", path(seeded))
        assert denied.status_code == 404, (
            f"{path(seeded)} before the grant: {denied.status_code} {denied.text}"
        )
    for listing in listings:
        assert side_a not in shown(seeded, listing), f"{listing[0](seeded)} lists {side_a} before the grant"

    seeded.grant("read", securable)
    try:
        for path in named:
            allowed = seeded.call("GET", path(seeded))
            assert allowed.status_code == 200, (
                f"{path(seeded)} with read: {allowed.status_code} {allowed.text}"
            )
            assert "-b" not in allowed.text.replace(side_a, ""), (
                f"{path(seeded)} shows side b: {allowed.text}"
            )
        for listing in listings:
            assert side_a in shown(seeded, listing), f"{listing[0](seeded)} hides {side_a} after the grant"
            assert not any(name.endswith("-b") for name in shown(seeded, listing))
    finally:
        seeded.revoke("read", securable)

    for path in named:
        assert seeded.call("GET", path(seeded)).status_code == 404, f"{path(seeded)} after the revoke"
    for listing in listings:
        assert side_a not in shown(seeded, listing)


def test_a_lineage_walk_stops_at_the_namespaces_the_caller_may_not_see(seeded: Seeded) -> None:
    seeded.grant("read", "namespace:ns-a")
    try:
        graph = seeded.call("GET", "/api/v1/lineage?node=dataset:ns-a/raw&depth=5").json()
        beyond = seeded.call("GET", "/api/v1/lineage?node=dataset:ns-b/shared")
        everything = seeded.call("GET", "/api/v1/lineage?node=dataset:ns-a/raw&depth=5", seeded.admin).json()
    finally:
        seeded.revoke("read", "namespace:ns-a")

    assert set(graph["nodes"]) == {"dataset:ns-a/raw", "job:ns-a/build", "dataset:ns-a/clean"}
    assert "dataset:ns-b/report" in everything["nodes"], "the admin sees the whole walk"
    assert beyond.status_code == 404


def test_a_kpi_impact_row_needs_read_on_both_its_kpi_and_its_model(seeded: Seeded) -> None:
    """An impact row names the model version deployed and its offline metrics: the KPI's readers see it only
    if they may read the model too."""
    seeded.grant("read", "kpi:kpi-a")
    try:
        kpi_only = seeded.call("GET", "/api/v1/kpis/impact")
        seeded.grant("read", "model:model-a")
        try:
            both = seeded.call("GET", "/api/v1/kpis/impact")
            other_model = seeded.call("GET", "/api/v1/kpis/impact?model=model-b")
        finally:
            seeded.revoke("read", "model:model-a")
    finally:
        seeded.revoke("read", "kpi:kpi-a")

    assert kpi_only.status_code == 200 and kpi_only.json()["items"] == []
    assert {(row["kpi"], row["model"]) for row in both.json()["items"]} == {("kpi-a", "model-a")}
    assert other_model.status_code == 404


# Per kind: a write route about side a's object (method, path, body), answered 2xx with write on it.
WRITES: dict[str, tuple[str, str, Callable[[Seeded], tuple[str, str, dict[str, Any]]]]] = {
    "experiment": ("experiment:exp-a", "write", lambda s: ("POST", "/api/v1/runs", {"experiment": "exp-a"})),
    "run": (
        "experiment:exp-a",
        "write",
        lambda s: ("POST", f"/api/v1/runs/{s.ids['run-a']}/log", {"params": {"extra": "1"}}),
    ),
    "deployment": (
        "model:model-a",
        "write",
        lambda s: (
            "POST",
            "/api/v1/deployments",
            {"model": "model-a", "version": 1, "environment": "staging"},
        ),
    ),
    "kpi": (
        "kpi:kpi-a",
        "write",
        lambda s: ("POST", "/api/v1/kpis/observations", {"observations": [{"kpi": "kpi-a", "value": 3.0}]}),
    ),
}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_a_write_needs_write_on_its_object_and_read_alone_answers_403(seeded: Seeded, kind: str) -> None:
    securable, privilege, request = WRITES[kind]
    method, path, body = request(seeded)

    nothing = seeded.call(method, path, json=body)
    seeded.grant("read", securable)
    try:
        reading = seeded.call(method, path, json=body)
        seeded.grant(privilege, securable)
        try:
            writing = seeded.call(method, path, json=body)
        finally:
            seeded.revoke(privilege, securable)
    finally:
        seeded.revoke("read", securable)

    assert nothing.status_code == 404, f"without a grant, the object is not shown: {nothing.text}"
    assert reading.status_code == 403, f"read alone may not write: {reading.text}"
    assert writing.status_code in (200, 201), writing.text


def test_a_batch_of_observations_needs_write_on_every_kpi_it_names(seeded: Seeded) -> None:
    body = {"observations": [{"kpi": "kpi-a", "value": 1.0}, {"kpi": "kpi-b", "value": 2.0}]}
    seeded.grant("write", "kpi:kpi-a")
    try:
        mixed = seeded.call("POST", "/api/v1/kpis/observations", json=body)
    finally:
        seeded.revoke("write", "kpi:kpi-a")

    assert mixed.status_code == 404, mixed.text
    assert "kpi-b" in mixed.json()["error"]["message"]


def test_grants_follow_a_rename_through_mlflows_endpoints(seeded: Seeded) -> None:
    seeded.grant("read", "model:model-r")
    seeded.grant("read", "experiment:exp-r")
    renamed = seeded.call(
        "POST",
        "/api/2.0/mlflow/registered-models/rename",
        seeded.admin,
        json={"name": "model-r", "new_name": "model-r2"},
    )
    updated = seeded.call(
        "POST",
        "/api/2.0/mlflow/experiments/update",
        seeded.admin,
        json={"experiment_id": seeded.ids["exp-r"], "new_name": "exp-r2"},
    )
    assert renamed.status_code == 200 and updated.status_code == 200, (renamed.text, updated.text)

    model = seeded.call("GET", "/api/2.0/mlflow/registered-models/get?name=model-r2")
    experiment = seeded.call("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=exp-r2")
    listed = seeded.call("GET", "/api/v1/models").json()["items"]
    assert model.status_code == 200 and experiment.status_code == 200, (model.text, experiment.text)
    assert "model-r2" in listed and "model-r" not in listed
    grants = seeded.call("GET", "/api/v1/access/securables/model:model-r2/grants", seeded.admin).json()[
        "items"
    ]
    assert any(row["holder"] == "pat" and row["privilege"] == "read" for row in grants)
    seeded.revoke("read", "model:model-r2")
    seeded.revoke("read", "experiment:exp-r2")


def test_openlineage_events_need_write_on_the_namespaces_of_their_jobs(seeded: Seeded) -> None:
    def post(*namespaces: str) -> requests.Response:
        events = [
            {
                "eventType": "COMPLETE",
                "eventTime": START.isoformat(),
                "run": {"runId": f"01912d6e-0000-7000-8000-0000000001{index:02d}"},
                "job": {"namespace": namespace, "name": "nightly"},
                "producer": "https://example.com/matrix-test",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent",
            }
            for index, namespace in enumerate(namespaces)
        ]
        return seeded.call("POST", "/api/v1/lineage?", json=events)

    seeded.grant("write", "namespace:ns-a")
    seeded.grant("read", "namespace:ns-b")
    try:
        own = post("ns-a")
        reading_only = post("ns-a", "ns-b")
        unknown = post("ns-c")
    finally:
        seeded.revoke("write", "namespace:ns-a")
        seeded.revoke("read", "namespace:ns-b")

    assert own.status_code == 201, own.text
    assert reading_only.status_code == 403, "one event of a namespace it may only read refuses the batch"
    assert "namespace:ns-b" in reading_only.json()["error"]["message"]
    assert unknown.status_code == 404, unknown.text
