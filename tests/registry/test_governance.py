"""Governance: a YAML policy gates stage transitions; a refused move names every broken rule and writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.datasets import register_dataset_versions

import metalake
from metalake.errors import PolicyError, PolicyViolation

POLICY = """
production:                        # gates for a transition to this stage
  require_card_fields: [owner, intended_use]
  require_metrics: {val_auc: ">= 0.8"}     # on the source run's last value
  require_passing_data_quality: true       # every input dataset's latest validation passed
  require_distinct_approver: true          # the actor moving it is not the one who registered it
staging:
  require_metrics: {val_auc: "> 0.5"}
  allow_override: true
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def validation(dataset: str, version: int, success: bool) -> dict[str, object]:
    return {
        "validation_id": f"{dataset}-{version}-{success}",
        "dataset": dataset,
        "version": version,
        "engine": "great_expectations",
        "success": success,
        "evaluated": 2,
        "successful": 2 if success else 1,
        "unsuccessful": 0 if success else 1,
        "validated_at": datetime.now(UTC),
    }


def register(lake: metalake.Lake, *, auc: float, card: dict[str, str], inputs: bool = True) -> int:
    if inputs and "churn_train" not in lake.datasets.names():
        register_dataset_versions(lake, "churn_train", 1)
    with lake.runs.start(experiment="churn") as run:
        if inputs:
            run.log_input("churn_train", version=1)
        run.log_metric("val_auc", auc)
    return lake.registry.register("churn", run_id=run.run_id, artifact_uri=f"s3://m/{auc}", card=card).version


def test_a_move_that_breaks_every_rule_lists_them_all_and_writes_nothing(
    lake: metalake.Lake, policy_file: Path
) -> None:
    lake.append("dq_validations", [validation("churn_train", 1, False)])
    version = register(lake, auc=0.7, card={"owner": "growth"})
    lake.registry.use_policy(policy_file)
    events_before = lake.version("model_events")
    with pytest.raises(PolicyViolation) as refused:
        lake.registry.transition("churn", version, "production", reason="launch")
    assert refused.value.rules == [
        "require_card_fields",
        "require_metrics",
        "require_passing_data_quality",
        "require_distinct_approver",
    ]
    message = str(refused.value)
    assert "intended_use" in message and "val_auc is 0.7, needs >= 0.8" in message
    assert "churn_train v1 failed its latest validation" in message and "'tester' registered" in message
    assert lake.version("model_events") == events_before
    assert lake.registry.get("churn", version).stage == "none"


def test_a_version_that_meets_the_gate_moves(lake_path: Path, policy_file: Path) -> None:
    lake = metalake.connect(lake_path, actor="data-scientist")
    lake.append("dq_validations", [validation("churn_train", 1, True)])
    version = register(lake, auc=0.91, card={"owner": "growth", "intended_use": "retention offers"})
    approver = metalake.connect(lake_path, actor="reviewer")
    approver.registry.use_policy(policy_file)
    moved = approver.registry.transition("churn", version, "production", reason="approved in review")
    assert moved.stage == "production"


def test_no_inputs_and_unvalidated_inputs_fail_the_quality_rule(lake: metalake.Lake) -> None:
    lake.registry.use_policy({"staging": {"require_passing_data_quality": True}})
    bare = register(lake, auc=0.9, card={}, inputs=False)
    with pytest.raises(PolicyViolation, match="logged no input datasets"):
        lake.registry.transition("churn", bare, "staging")
    unvalidated = register(lake, auc=0.95, card={})
    with pytest.raises(PolicyViolation, match="churn_train v1 was never validated"):
        lake.registry.transition("churn", unvalidated, "staging")


def test_overrides_only_where_allowed_with_a_reason_and_recorded(
    lake: metalake.Lake, policy_file: Path
) -> None:
    version = register(lake, auc=0.4, card={})
    lake.registry.use_policy(policy_file)
    with pytest.raises(PolicyViolation, match="needs a reason"):
        lake.registry.transition("churn", version, "staging", override=True)
    forced = lake.registry.transition("churn", version, "staging", override=True, reason="demo for sales")
    assert forced.stage == "staging"
    event = lake.read("model_events").filter(event_type="stage_transition").row(0, named=True)
    assert event["override"] is True and json.loads(event["overridden_rules"]) == ["require_metrics"]
    assert event["reason"] == "demo for sales"
    with pytest.raises(PolicyViolation, match="does not allow overrides"):
        lake.registry.transition("churn", version, "production", override=True, reason="please")
    history = lake.sql("select stage, override from model_stage_history order by valid_from").fetchall()
    assert history == [("none", False), ("staging", True)]


def test_a_policy_kept_in_the_lake_binds_every_client(lake_path: Path, policy_file: Path) -> None:
    lake = metalake.connect(lake_path)
    lake.registry.use_policy(policy_file, persist=True)
    version = register(lake, auc=0.4, card={})
    other_client = metalake.connect(lake_path, actor="someone-else")
    assert set(other_client.registry.policy.gates) == {"production", "staging"}
    with pytest.raises(PolicyViolation, match="require_metrics"):
        other_client.registry.transition("churn", version, "staging")
    lake.registry.use_policy({}, persist=True)  # an empty policy lifts the gates
    assert metalake.connect(lake_path).registry.transition("churn", version, "staging").stage == "staging"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retired: {require_distinct_approver: true}", "unknown stage 'retired'"),
        ("production: {require_signoff: true}", r"unknown rule\(s\) \['require_signoff'\]"),
        ("production: {require_metrics: {val_auc: 'about 0.8'}}", "not a comparison"),
        ("production: {require_card_fields: owner}", "list of card field names"),
        ("production: {require_distinct_approver: 'yes'}", "true or false"),
        ("production: [", "not valid YAML"),
        ("- production", "maps stages"),
    ],
)
def test_bad_policies_are_refused_by_name(
    lake: metalake.Lake, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        lake.registry.use_policy(path)
    with pytest.raises(PolicyError, match="does not exist"):
        lake.registry.use_policy(tmp_path / "missing.yaml")


def test_a_client_cannot_swap_the_lakes_policy_for_its_own(lake: metalake.Lake, policy_file: Path) -> None:
    lake.registry.use_policy(policy_file, persist=True)
    with pytest.raises(PolicyError, match="keeps its own policy"):
        lake.registry.use_policy({})
    assert set(lake.registry.policy.gates) == {"production", "staging"}


def test_an_input_without_a_version_has_unknown_quality(lake: metalake.Lake) -> None:
    lake.append("dq_validations", [validation("churn_train", 1, True)])
    with lake.runs.start(experiment="churn") as run:
        run.log_input("churn_train", path=None)  # no version: which data was read is unknown
        run.log_metric("val_auc", 0.9)
    version = lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/x").version
    lake.registry.use_policy({"staging": {"require_passing_data_quality": True}})
    with pytest.raises(PolicyViolation, match="churn_train was never validated"):
        lake.registry.transition("churn", version, "staging")
