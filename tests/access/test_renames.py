"""Grants follow a renamed experiment or registered model: its readers keep reading it under the new name, the
old name is left with nothing (a new object given it later starts bare), and the past still answers who held
what under which name."""

from __future__ import annotations

from datetime import UTC, datetime

import metalake


def test_renaming_an_experiment_moves_its_grants_in_one_commit(lake: metalake.Lake) -> None:
    lake.access.init("root")
    for name in ("alice", "team"):
        lake.access.create_principal(name, kind="group" if name == "team" else "user")
    lake.access.grant("alice", "read", "experiment:churn")
    lake.access.grant("team", "write", "experiment:churn", reason="the team trains it")
    lake.access.grant("alice", "write", "experiment:churn-v2")  # held on the new name already: kept as is
    churn = lake.experiments.create("churn")
    before_rename = datetime.now(UTC)
    grants_version = lake.history("grants")["version"].max()

    lake.experiments.rename(churn.experiment_id, "churn-v2", actor="tester")

    assert lake.access.check("alice", "read", "experiment:churn-v2").allowed
    assert lake.access.check("team", "write", "experiment:churn-v2").allowed
    assert not lake.access.check("alice", "read", "experiment:churn").allowed, "the old name keeps nothing"
    assert not lake.access.check("team", "read", "experiment:churn").allowed
    held = lake.access.list(securable="experiment:churn-v2").filter(securable="experiment:churn-v2")
    assert sorted(zip(held["holder"], held["privilege"], strict=True)) == [
        ("alice", "read"),
        ("alice", "write"),
        ("team", "write"),
    ]
    assert lake.history("grants")["version"].max() == grants_version + 1, "one commit moves them all"
    past = lake.as_of(before_rename).access
    assert past.check("alice", "read", "experiment:churn").allowed, (
        "the past still answers under the old name"
    )


def test_renaming_a_registered_model_moves_its_grants(lake: metalake.Lake) -> None:
    lake.access.init("root")
    lake.access.create_principal("bob")
    lake.access.grant("bob", "manage", "model:churn")
    lake.registry.create_model("churn")

    lake.registry.rename_model("churn", "churn-classifier")

    assert lake.access.check("bob", "manage", "model:churn-classifier").allowed
    assert not lake.access.check("bob", "read", "model:churn").allowed
    lake.registry.create_model("churn")
    assert not lake.access.check("bob", "read", "model:churn").allowed, (
        "a new model under the old name is bare"
    )


def test_a_rename_on_a_lake_without_access_control_writes_no_grants(lake: metalake.Lake) -> None:
    churn = lake.experiments.create("churn")
    lake.experiments.rename(churn.experiment_id, "churn-v2")
    assert lake.experiments.get(churn.experiment_id).name == "churn-v2"
    assert lake.access.list().is_empty()
