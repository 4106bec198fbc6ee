"""One verdict on a model version's training data: model_lineage, model_kpi_impact and the governance gate agree,
because all three read the run_input_quality view."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.datasets import register_dataset_versions

import metalake
from metalake.errors import PolicyViolation

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
pytestmark = pytest.mark.filterwarnings("ignore::metalake.deployments.UnregisteredModelVersionWarning")


@pytest.fixture
def lake(lake_path: Path) -> metalake.Lake:
    """A lake where the inputs the cases link are registered (churn_raw stays unregistered: read without a version)."""
    lake = metalake.connect(lake_path, actor="tester")
    register_dataset_versions(lake, "churn_train", 2)
    register_dataset_versions(lake, "churn_holdout", 1)
    return lake


def validation(dataset: str, version: int | None, suite: str, success: bool, at: datetime) -> dict[str, Any]:
    return {
        "validation_id": f"{dataset}-{version}-{suite}-{at:%H%M}",
        "dataset": dataset,
        "version": version,
        "suite_name": suite,
        "engine": "great_expectations",
        "success": success,
        "evaluated": 4,
        "successful": 4 if success else 2,
        "unsuccessful": 0 if success else 2,
        "validated_at": at,
    }


CASES: dict[str, tuple[list[tuple[str, int | None]], list[dict[str, Any]], bool | None]] = {
    # a later validation by another suite does not hide the failure of the first
    "another suite passed after one failed": (
        [("churn_train", 2), ("churn_holdout", 1)],
        [
            validation("churn_train", 2, "schema", False, T0),
            validation("churn_train", 2, "freshness", True, T0 + HOUR),
            validation("churn_holdout", 1, "schema", True, T0),
        ],
        False,
    ),
    "the same suite passed after it failed": (
        [("churn_train", 2), ("churn_holdout", 1)],
        [
            validation("churn_train", 2, "schema", False, T0),
            validation("churn_train", 2, "schema", True, T0 + HOUR),
            validation("churn_holdout", 1, "schema", True, T0),
        ],
        True,
    ),
    "one input never validated": (
        [("churn_train", 2), ("churn_holdout", 1)],
        [validation("churn_train", 2, "schema", True, T0)],
        None,
    ),
    "one input read without a version": (
        [("churn_train", 2), ("churn_raw", None)],
        [validation("churn_train", 2, "schema", True, T0), validation("churn_raw", None, "schema", True, T0)],
        None,
    ),
    "one input failed, another never validated": (
        [("churn_train", 2), ("churn_holdout", 1)],
        [validation("churn_train", 2, "schema", False, T0)],
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lineage_kpi_impact_and_the_gate_give_one_verdict(lake: metalake.Lake, case: str) -> None:
    inputs, validations, expected = CASES[case]
    with lake.runs.start(experiment="churn", wait=True) as run:
        run.log_metric("val_auc", 0.9)
        for dataset, version in inputs:
            run.log_input(dataset, version=version)
    lake.append("dq_validations", validations)
    version = lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/1").version
    lake.deployments.record("churn", version, "production", at=T0 + 2 * HOUR)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better", models=["churn"])
    lake.kpis.observe_many([{"kpi": "conversion", "value": 1.0, "observed_at": T0 + 3 * HOUR}])

    lineage = lake.sql(
        "select distinct training_data_ok from model_lineage where model = 'churn' and version = ?", [version]
    ).fetchall()
    impact = lake.sql(
        "select distinct training_data_ok from model_kpi_impact where model = 'churn'"
    ).fetchall()
    assert lineage == impact == [(expected,)]

    per_input = lake.sql(
        "select dataset, dq_success from model_lineage where model = 'churn' order by dataset"
    ).fetchall()
    assert any(ok is False for _, ok in per_input) == (expected is False)
    assert all(ok is True for _, ok in per_input) == (expected is True)

    lake.registry.use_policy({"staging": {"require_passing_data_quality": True}})
    if expected is True:
        assert lake.registry.transition("churn", version, "staging").stage == "staging"
    else:
        with pytest.raises(PolicyViolation, match="require_passing_data_quality"):
            lake.registry.transition("churn", version, "staging")


def test_the_gate_names_the_suite_that_failed(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn", wait=True) as run:
        run.log_input("churn_train", version=2)
    lake.append(
        "dq_validations",
        [
            validation("churn_train", 2, "schema", False, T0),
            validation("churn_train", 2, "ranges", False, T0),
            validation("churn_train", 2, "freshness", True, T0 + HOUR),
        ],
    )
    version = lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/1").version
    lake.registry.use_policy({"staging": {"require_passing_data_quality": True}})
    with pytest.raises(
        PolicyViolation, match=r"churn_train v2 failed its latest validation \(suite 'ranges' and 1 more\)"
    ):
        lake.registry.transition("churn", version, "staging")


def test_the_view_documents_each_input_and_the_run(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn", wait=True) as run:
        run.log_input("churn_train", version=2, context="training")
        run.log_input("churn_train", version=2, context="validation")  # the same data twice: one input
    lake.append("dq_validations", [validation("churn_train", 2, "schema", True, T0)])
    rows = lake.sql("select * from run_input_quality").pl().to_dicts()
    assert len(rows) == 1
    row = rows[0]
    assert (row["dataset"], row["version"], row["dq_success"], row["suites"], row["failed_suites"]) == (
        "churn_train", 2, True, 1, 0,
    )  # fmt: skip
    assert (row["training_inputs"], row["validated_inputs"], row["training_data_ok"]) == (1, 1, True)
    assert row["training_data_pass_rate"] == 1.0 and row["suite_name"] == "schema"


def test_every_model_version_of_the_demo_gets_one_verdict(demo_lake: Any, tmp_path: Path) -> None:
    copy = tmp_path / "demo-lake"
    shutil.copytree(demo_lake.path, copy)  # the session's demo lake is shared: gate transitions write events
    lake = metalake.connect(copy, actor="release-manager")
    lineage = dict(
        lake.sql("select distinct model || ' v' || version, training_data_ok from model_lineage").fetchall()
    )
    impact = dict(
        lake.sql(
            "select distinct model || ' v' || version, training_data_ok from model_kpi_impact"
        ).fetchall()
    )
    assert impact and all(lineage[version] == verdict for version, verdict in impact.items())
    assert set(lineage.values()) == {True, False}  # the demo has versions trained on passing and failing data

    lake.registry.use_policy({"archived": {"require_passing_data_quality": True}}, persist=True)
    for model, number, verdict in lake.sql(
        "select distinct model, version, training_data_ok from model_lineage order by all"
    ).fetchall():
        if verdict is True:
            lake.registry.transition(model, number, "archived")
        else:
            with pytest.raises(PolicyViolation, match="require_passing_data_quality"):
                lake.registry.transition(model, number, "archived")
