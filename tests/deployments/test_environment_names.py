"""Deployment look-ups by environment: a mistyped environment says so instead of answering nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import metalake
from metalake.errors import DeploymentError, EnvironmentNotFound

pytestmark = pytest.mark.filterwarnings("ignore::metalake.deployments.UnregisteredModelVersionWarning")


@pytest.fixture
def deployed(lake: metalake.Lake) -> metalake.Lake:
    lake.deployments.record("churn", 1, "production", at=datetime(2026, 3, 1, tzinfo=UTC))
    lake.deployments.record("churn", 1, "staging", at=datetime(2026, 2, 1, tzinfo=UTC))
    return lake


def test_known_environments_are_listed(deployed: metalake.Lake) -> None:
    assert deployed.deployments.environments() == ["production", "staging"]


def test_a_mistyped_environment_names_the_closest(deployed: metalake.Lake) -> None:
    with pytest.raises(EnvironmentNotFound) as raised:
        deployed.deployments.list("prodution")
    assert isinstance(raised.value, DeploymentError) and raised.value.suggestions == ["production"]
    assert "Did you mean 'production'?" in str(raised.value)
    with pytest.raises(EnvironmentNotFound):
        deployed.deployments.at("prodution", "2026-03-02")


def test_a_known_environment_with_nothing_matching_stays_empty(deployed: metalake.Lake) -> None:
    assert deployed.deployments.list("production", model="fraud").is_empty()
    assert deployed.deployments.at("production", "2026-01-01") is None
