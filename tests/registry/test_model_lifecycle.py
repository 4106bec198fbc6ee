"""Models created before any version, renamed, deleted; version tags, descriptions and deletion: all events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import metalake
from metalake.errors import AlreadyExists, ModelNotFound


def test_a_rename_moves_versions_stages_aliases_and_history(lake: metalake.Lake) -> None:
    registry = lake.registry
    registry.create_model("churn", description="who leaves", tags={"team": "growth"})
    for number in (1, 2):
        registry.register("churn", run_id=None, artifact_uri=f"s3://m/{number}")
    registry.transition("churn", 1, "production")
    registry.set_alias("churn", "champion", 1)
    registry.set_tag("churn", "checked", "yes", version=1)
    live_then = datetime.now(UTC)

    renamed = registry.rename_model("churn", "attrition")
    assert (renamed.description, renamed.tags) == ("who leaves", {"team": "growth"})
    assert renamed.versions[1].tags == {"checked": "yes"}
    assert registry.get("attrition", "champion").stage == "production"
    assert registry.models() == ["attrition"]
    assert registry.at("attrition", live_then).version == 1  # events moved with their times
    assert registry.at("churn", live_then).version == 1  # the old name's history stays
    with pytest.raises(ModelNotFound):
        registry.get("churn", 1)
    with pytest.raises(AlreadyExists):
        registry.create_model("attrition")


def test_deleted_versions_and_models_leave_reads_but_not_history(lake: metalake.Lake) -> None:
    registry = lake.registry
    for number in (1, 2):
        registry.register("fraud", run_id=None, artifact_uri=f"s3://f/{number}")
    registry.set_alias("fraud", "champion", 2)
    registry.delete_version("fraud", 2)
    assert registry.versions("fraud")["version"].to_list() == [1]
    assert registry.registered_model("fraud").versions.keys() == {1}
    with pytest.raises(ModelNotFound):
        registry.get("fraud", "champion")  # an alias goes with its version

    registry.delete_model("fraud")
    assert registry.models() == []
    assert lake.sql("select count(*) from model_stage_history where model = 'fraud'").fetchall() == [(2,)]
    again = registry.register("fraud", run_id=None, artifact_uri="s3://f/1")
    assert again.version == 3  # a name's version numbers are never given twice
    assert registry.versions("fraud")["version"].to_list() == [3]
