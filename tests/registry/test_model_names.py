"""Registry look-ups by name: an unknown model says so and names the closest registered ones."""

from __future__ import annotations

import pytest

import metalake
from metalake.errors import ModelNotFound, NameNotFound


@pytest.fixture
def registered(lake: metalake.Lake) -> metalake.Lake:
    for model in ("churn", "fraud"):
        lake.registry.register(model, run_id=None, artifact_uri=f"s3://m/{model}/1")
    return lake


def test_known_models_are_listed(registered: metalake.Lake) -> None:
    assert registered.registry.models() == ["churn", "fraud"]


@pytest.mark.parametrize("lookup", ["versions", "get"])
def test_a_mistyped_model_names_the_closest(registered: metalake.Lake, lookup: str) -> None:
    with pytest.raises(ModelNotFound) as raised:
        getattr(registered.registry, lookup)("chrun")
    assert isinstance(raised.value, NameNotFound) and raised.value.suggestions == ["churn"]
    assert "Did you mean 'churn'?" in str(raised.value)


def test_every_version_of_every_model_is_still_listed(registered: metalake.Lake) -> None:
    assert registered.registry.versions().height == 2


def test_a_model_registered_later_is_absent_at_a_past_moment_not_unknown(lake: metalake.Lake) -> None:
    lake.registry.register("churn", run_id=None, artifact_uri="s3://m/churn/1")
    lake.snapshot("before-fraud")
    lake.registry.register("fraud", run_id=None, artifact_uri="s3://m/fraud/1")
    past = lake.as_of("before-fraud")
    assert past.registry.models() == ["churn"]
    assert past.registry.versions("fraud").is_empty()  # registered later: nothing then
    with pytest.raises(ModelNotFound, match="Did you mean 'churn'"):
        past.registry.versions("chrun")
