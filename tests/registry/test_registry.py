"""Model registry: numbered versions linked to runs, aliases, stages, and what was in production when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.datasets import register_dataset_versions
from support.workers import register_versions, run_in_processes

import metalake
from metalake.errors import ModelNotFound, RegistryError


def trained_run(lake: metalake.Lake, auc: float = 0.9) -> str:
    with lake.runs.start(experiment="churn", name="xgb") as run:
        run.log_metric("val_auc", auc)
    return run.run_id


def test_versions_are_numbered_per_model_and_linked_to_their_run(lake: metalake.Lake) -> None:
    run_id = trained_run(lake)
    first = lake.registry.register(
        "churn", run_id=run_id, artifact_uri="s3://m/1", flavor="sklearn", card={"owner": "growth"}
    )
    second = lake.registry.register("churn", run_id=run_id, artifact_uri="s3://m/2")
    other = lake.registry.register("fraud", run_id=None, artifact_uri="s3://f/1")
    assert (first.model, first.version, second.version, other.version) == ("churn", 1, 2, 1)
    assert first.run_id == run_id and first.card == {"owner": "growth"} and first.stage == "none"
    assert first.registered_by == "tester"
    again = lake.registry.register("churn", run_id=run_id, artifact_uri="s3://m/1")
    assert again.version == 1, "registering the same run and artifact again is not a new version"
    assert lake.registry.versions("churn")["version"].to_list() == [1, 2]
    events = lake.read("model_events").filter(event_type="registered")
    assert sorted(events["version"].to_list()) == [1, 1, 2]


def test_register_refuses_an_unknown_run_and_empty_names(lake: metalake.Lake) -> None:
    with pytest.raises(RegistryError, match="No run 'nope'"):
        lake.registry.register("churn", run_id="nope", artifact_uri="s3://m/1")
    with pytest.raises(RegistryError, match="name"):
        lake.registry.register(" ", run_id=None, artifact_uri="s3://m/1")
    assert lake.read("model_versions").is_empty()


def test_aliases_and_lookups(lake: metalake.Lake) -> None:
    for index in (1, 2, 3):
        lake.registry.register("churn", run_id=None, artifact_uri=f"s3://m/{index}")
    lake.registry.set_alias("churn", "champion", 2)
    assert lake.registry.get("churn", "champion").version == 2
    assert lake.registry.get("churn", 2).aliases == ("champion",)
    lake.registry.set_alias("churn", "champion", 3, reason="better")
    assert lake.registry.get("churn", "champion").version == 3 and lake.registry.get("churn", 2).aliases == ()
    assert lake.registry.get("churn").version == 3 and lake.registry.get("churn", "latest").version == 3
    lake.registry.delete_alias("churn", "champion")
    with pytest.raises(ModelNotFound, match="champion"):
        lake.registry.get("churn", "champion")
    with pytest.raises(ModelNotFound, match="no alias 'champion'"):
        lake.registry.delete_alias("churn", "champion")
    with pytest.raises(RegistryError, match="cannot be an alias"):
        lake.registry.set_alias("churn", "production", 1)
    with pytest.raises(ModelNotFound, match=r"no version 9 \(versions: 1, 2, 3\)"):
        lake.registry.set_alias("churn", "x", 9)
    with pytest.raises(ModelNotFound, match="Unknown model 'nope'"):
        lake.registry.get("nope")


def test_transitions_and_registry_current(lake: metalake.Lake) -> None:
    for index in (1, 2):
        lake.registry.register("churn", run_id=None, artifact_uri=f"s3://m/{index}")
    lake.registry.transition("churn", 1, "production", reason="first launch")
    moved = lake.registry.transition("churn", 2, "production", archive_others=True)
    assert moved.stage == "production"
    assert lake.registry.get("churn", 1).stage == "archived"
    assert lake.registry.get("churn", "production").version == 2
    lake.registry.set_alias("churn", "champion", 2)
    current = lake.sql("select version, stage, aliases from registry_current order by version").fetchall()
    assert current == [(1, "archived", []), (2, "production", ["champion"])]
    with pytest.raises(RegistryError, match="Unknown stage"):
        lake.registry.transition("churn", 1, "retired")  # type: ignore[arg-type]


def test_which_version_was_in_production_on_a_past_date(lake: metalake.Lake) -> None:
    for index in (1, 2):
        lake.registry.register("churn", run_id=None, artifact_uri=f"s3://m/{index}")
    lake.registry.transition("churn", 1, "production")
    between = datetime.now(UTC)
    lake.registry.transition("churn", 2, "production", archive_others=True)
    later = datetime.now(UTC)
    assert lake.registry.at("churn", between).version == 1  # type: ignore[union-attr]
    assert lake.registry.at("churn", later).version == 2  # type: ignore[union-attr]
    assert lake.registry.at("churn", between - timedelta(days=1)) is None
    lake.registry.archive("churn", 2, reason="retired")  # later changes do not rewrite the past
    assert lake.registry.at("churn", between).version == 1  # type: ignore[union-attr]
    assert lake.registry.at("churn", later.isoformat()).version == 2  # type: ignore[union-attr]
    in_sql = lake.sql(
        "select version from model_stage_history where model = 'churn' and stage = 'production' "
        "and valid_from <= ? and (valid_to is null or valid_to > ?)",
        [between, between],
    ).fetchall()
    assert in_sql == [(1,)]
    with pytest.raises(RegistryError, match="ISO-8601"):
        lake.registry.at("churn", "last tuesday")


def test_concurrent_registrations_get_distinct_numbers(lake_path: Path) -> None:
    metalake.connect(lake_path).registry  # noqa: B018 - the lake folder exists before the children start
    numbers = run_in_processes(register_versions, [(str(lake_path), "churn", f"w{i}", 3) for i in range(3)])
    flat = sorted(number for per_worker in numbers for number in per_worker)
    assert flat == list(range(1, 10))
    versions = metalake.connect(lake_path).read("model_versions")
    assert versions.height == 9 and versions["version"].n_unique() == 9


def test_model_lineage_walks_to_the_data_quality_of_the_inputs(lake: metalake.Lake) -> None:
    register_dataset_versions(lake, "churn_train", 4)
    with lake.runs.start(experiment="churn") as run:
        run.log_input("churn_train", version=4, context="training")
        run.log_metric("val_auc", 0.9)
    lake.append(
        "dq_validations",
        [
            {
                "validation_id": "v1",
                "dataset": "churn_train",
                "version": 4,
                "engine": "great_expectations",
                "success": True,
                "evaluated": 3,
                "successful": 3,
                "unsuccessful": 0,
                "validated_at": datetime.now(UTC),
            }
        ],
    )
    lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/1")
    rows = lake.sql(
        "select model, version, run_id, dataset, dataset_version, dq_success from model_lineage"
    ).fetchall()
    assert rows == [("churn", 1, run.run_id, "churn_train", 4, True)]


def test_a_stage_name_resolves_to_the_version_that_entered_it_last(lake: metalake.Lake) -> None:
    for index in (1, 2):
        lake.registry.register("churn", run_id=None, artifact_uri=f"s3://m/{index}")
    lake.registry.transition("churn", 2, "production")
    lake.registry.transition("churn", 1, "production", reason="rollback")  # both in production now
    assert lake.registry.get("churn", "production").version == 1
    assert lake.registry.at("churn", datetime.now(UTC)).version == 1  # type: ignore[union-attr]


def test_archive_others_lands_in_one_commit(lake: metalake.Lake) -> None:
    for index in (1, 2, 3):
        lake.registry.register("churn", run_id=None, artifact_uri=f"s3://m/{index}")
    lake.registry.transition("churn", 1, "production")
    lake.registry.transition("churn", 2, "production")
    before = lake.version("model_events")
    lake.registry.transition("churn", 3, "production", archive_others=True)
    assert lake.version("model_events") == (before or 0) + 1
    assert [lake.registry.get("churn", n).stage for n in (1, 2, 3)] == ["archived", "archived", "production"]


def test_registering_again_completes_a_registration_cut_short(lake: metalake.Lake) -> None:
    lake.append(  # as if the process died right after claiming version 1
        "model_versions", [{"model": "churn", "version": 1, "artifact_uri": "s3://m/1"}]
    )
    again = lake.registry.register("churn", run_id=None, artifact_uri="s3://m/1")
    assert again.version == 1
    assert lake.read("models").height == 1
    assert lake.read("model_events").filter(event_type="registered").height == 1
    lake.registry.register("churn", run_id=None, artifact_uri="s3://m/1")
    assert lake.read("model_events").filter(event_type="registered").height == 1, "fixed keys: written once"
