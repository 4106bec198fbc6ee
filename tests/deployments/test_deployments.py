"""Deployments: windows per model and environment, replacement, ending, idempotent CI retries, CI variables."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import metalake
from metalake.deployments import (
    CI_MARKERS,
    CI_VARIABLES,
    UnregisteredModelVersionWarning,
    default_idempotency_key,
    detect_ci,
)
from metalake.errors import DeploymentError, DeploymentNotFound, EnvironmentNotFound, MetalakeError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# Most tests deploy versions they did not register; the warning has a test of its own.
pytestmark = pytest.mark.filterwarnings("ignore::metalake.deployments.UnregisteredModelVersionWarning")


def register(lake: metalake.Lake, model: str, version: int, run_id: str | None = None) -> None:
    lake.append(
        "model_versions",
        [
            {
                "model": model,
                "version": version,
                "run_id": run_id,
                "artifact_uri": f"s3://models/{model}/{version}",
            }
        ],
    )


def test_record_returns_the_deployment_and_lists_it_as_active(lake: metalake.Lake) -> None:
    register(lake, "churn", 1)
    deployment = lake.deployments.record(
        "churn", 1, "production", at=T0, endpoint="https://churn.internal", git_sha="abc123"
    )
    assert (deployment.model, deployment.version, deployment.environment, deployment.at) == (
        "churn", 1, "production", T0
    )  # fmt: skip
    assert deployment.is_active and len(deployment.deployment_id) == 32 and not deployment.replaced
    listed = lake.deployments.list()
    assert listed.height == 1
    row = listed.row(0, named=True)
    assert row["deployment_id"] == deployment.deployment_id and row["is_active"]
    assert row["endpoint"] == "https://churn.internal" and row["git_sha"] == "abc123"
    assert row["started_at"] == T0 and row["ended_at"] is None and row["duration_s"] is None
    assert lake.deployments.get(deployment.deployment_id) == deployment


def test_a_new_version_replaces_the_active_one_of_that_model_only(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", at=T0)
    other_model = lake.deployments.record("fraud", 7, "production", at=T0)
    staging = lake.deployments.record("churn", 1, "staging", at=T0)
    second = lake.deployments.record("churn", 2, "production", at=T0 + timedelta(days=3))
    assert second.replaced == (first.deployment_id,)
    ended = lake.deployments.get(first.deployment_id)
    assert ended.ended_at == second.at and not ended.is_active
    assert lake.deployments.get(other_model.deployment_id).is_active
    assert lake.deployments.get(staging.deployment_id).is_active
    row = lake.deployments.list("production", model="churn").row(0, named=True)
    assert row["deployment_id"] == second.deployment_id  # newest first
    assert row["previous_deployment_id"] == first.deployment_id and row["previous_version"] == 1
    old = lake.deployments.list("production", model="churn", active=False).row(0, named=True)
    assert old["duration_s"] == 3 * 86400 and "replaced by deployment" in old["end_reason"]
    assert lake.history("deployments")["operation"][0] == "deploy"  # the end and the start: one commit
    assert lake.history("deployments")["rows_added"][0] == 2


def test_keep_active_serves_two_versions_and_end_then_needs_the_id(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", at=T0)
    canary = lake.deployments.record(
        "churn", 2, "production", at=T0 + timedelta(hours=1), replace_active=False
    )
    assert not canary.replaced
    assert lake.deployments.list(active=True).height == 2
    with pytest.raises(DeploymentError, match="2 active deployments") as raised:
        lake.deployments.end(environment="production")
    assert first.deployment_id in str(raised.value) and canary.deployment_id in str(raised.value)
    lake.deployments.end(canary.deployment_id, at=T0 + timedelta(hours=2), reason="canary done")
    assert lake.deployments.list(active=True)["deployment_id"].to_list() == [first.deployment_id]


def test_end_by_environment_and_the_errors_of_end(lake: metalake.Lake) -> None:
    deployment = lake.deployments.record("churn", 1, "production", at=T0)
    with pytest.raises(DeploymentError, match="cannot end before"):
        lake.deployments.end(deployment.deployment_id, at=T0 - timedelta(seconds=1))
    ended = lake.deployments.end(model="churn", environment="production", at=T0 + timedelta(days=1))
    assert ended.deployment_id == deployment.deployment_id and ended.ended_at == T0 + timedelta(days=1)
    with pytest.raises(DeploymentError, match="already ended"):
        lake.deployments.end(deployment.deployment_id)
    with pytest.raises(DeploymentError, match="No active deployment in environment 'production'"):
        lake.deployments.end(environment="production")
    with pytest.raises(DeploymentNotFound, match="No deployment 'nope'") as missing:
        lake.deployments.end("nope")
    assert isinstance(missing.value, KeyError) and isinstance(missing.value, MetalakeError)
    with pytest.raises(DeploymentError, match="Say which deployment"):
        lake.deployments.end()
    end_rows = lake.read("deployments", where="event_type = 'end'")
    assert end_rows.height == 1 and end_rows["model"][0] == "churn"  # end events repeat what ended


def test_end_with_a_used_idempotency_key_returns_what_it_ended(lake: metalake.Lake) -> None:
    deployment = lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.end(deployment.deployment_id, idempotency_key="rollback-17")
    again = lake.deployments.end(deployment.deployment_id, idempotency_key="rollback-17")
    assert again.deduplicated and again.deployment_id == deployment.deployment_id
    assert lake.read("deployments", where="event_type = 'end'").height == 1


def test_a_rerun_ci_job_records_its_deployment_once(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 2, "production", git_sha="abc", ci_run_id="42")
    rerun = lake.deployments.record("churn", 2, "production", git_sha="abc", ci_run_id="42")
    assert rerun.deduplicated and rerun.deployment_id == first.deployment_id and rerun.at == first.at
    assert lake.read("deployments").height == 1
    other_run = lake.deployments.record("churn", 2, "production", git_sha="abc", ci_run_id="43")
    assert not other_run.deduplicated and other_run.replaced == (first.deployment_id,)
    keyed = lake.deployments.record("churn", 3, "staging", idempotency_key="release-3")
    assert lake.deployments.record("churn", 3, "staging", idempotency_key="release-3").deployment_id == (
        keyed.deployment_id
    )
    assert default_idempotency_key("churn", 2, "production", "abc", None) is None  # by hand: a new deployment


def test_a_rollback_by_rerunning_an_old_ci_job_records_a_new_deployment(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", git_sha="aaa", ci_run_id="100")
    second = lake.deployments.record("churn", 2, "production", git_sha="bbb", ci_run_id="101")
    rollback = lake.deployments.record("churn", 1, "production", git_sha="aaa", ci_run_id="100")  # re-run
    assert not rollback.deduplicated and rollback.deployment_id != first.deployment_id
    assert rollback.replaced == (second.deployment_id,) and rollback.version == 1
    assert lake.deployments.list(active=True)["deployment_id"].to_list() == [rollback.deployment_id]
    key = default_idempotency_key("churn", 1, "production", "aaa", "100")
    stored = lake.read("deployments", where="event_type = 'start' and version = 1").sort("at")
    assert stored["idempotency_key"].to_list() == [key, f"{key}:after:{first.deployment_id}"]
    again = lake.deployments.record("churn", 1, "production", git_sha="aaa", ci_run_id="100")
    assert again.deduplicated and again.deployment_id == rollback.deployment_id  # a retry of the rollback
    assert lake.read("deployments", where="event_type = 'start'").height == 3


def test_without_ci_information_each_record_is_a_new_deployment(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", at=T0)
    second = lake.deployments.record("churn", 1, "production", at=T0 + timedelta(hours=1))
    assert first.deployment_id != second.deployment_id and second.replaced == (first.deployment_id,)


def test_after_a_canary_the_rollout_replaces_the_old_version(lake: metalake.Lake) -> None:
    old = lake.deployments.record("churn", 1, "production", at=T0)
    canary = lake.deployments.record("churn", 2, "production", at=T0 + 10 * DAY, replace_active=False)
    rollout = lake.deployments.record("churn", 2, "production", at=T0 + 12 * DAY)
    assert set(rollout.replaced) == {old.deployment_id, canary.deployment_id}
    rows = {row["deployment_id"]: row for row in lake.deployments.list().to_dicts()}
    assert rows[rollout.deployment_id]["replaced"] == [old.deployment_id, canary.deployment_id]
    assert rows[rollout.deployment_id]["previous_deployment_id"] == old.deployment_id
    assert rows[rollout.deployment_id]["previous_version"] == 1  # the old version, not the canary
    assert rows[canary.deployment_id]["previous_version"] is None  # a canary replaces nothing
    assert rows[canary.deployment_id]["replace_active"] is False
    starts = lake.read("deployments", where="event_type = 'start'").sort("at")
    assert starts["replaces"].to_list()[1:] == ["[]", json.dumps(list(rollout.replaced))]


def test_a_rollout_recorded_without_seeing_a_concurrent_one_ends_it(
    lake: metalake.Lake, lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = metalake.connect(lake_path, actor="other")
    first = lake.deployments.record("churn", 1, "production", at=T0)
    racing = other.deployments
    seen = racing.active(model="churn", environment="production")  # the other writer reads: v1 serves
    second = lake.deployments.record("churn", 2, "production", at=T0 + DAY)  # this writer commits first
    monkeypatch.setattr(racing, "active", lambda **_: seen)  # its read happened before that commit
    third = racing.record("churn", 3, "production", at=T0 + 2 * DAY)
    assert third.replaced == (first.deployment_id,)  # what it saw
    active = lake.deployments.list(active=True)
    assert active["deployment_id"].to_list() == [third.deployment_id]  # never two versions serving
    ended = lake.deployments.get(second.deployment_id)
    assert ended.ended_at == third.at and lake.deployments.get(first.deployment_id).ended_at == second.at
    row = lake.deployments.list(model="churn").row(0, named=True)
    assert row["deployment_id"] == third.deployment_id and row["previous_version"] == 2
    assert lake.deployments.list(active=False).row(0, named=True)["end_reason"] == (
        f"replaced by deployment {third.deployment_id}"
    )
    lake.deployments.end(model="churn", environment="production")  # one active: end by environment works


def test_a_replacing_start_inside_an_ended_window_is_refused(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.end(first.deployment_id, at=T0 + 10 * DAY)
    version = lake.version("deployments")
    with pytest.raises(DeploymentError, match=r"served until 2026-03-11.*record deployments in time order"):
        lake.deployments.record("churn", 2, "production", at=T0 + 5 * DAY)
    assert lake.version("deployments") == version  # refused: nothing written
    beside = lake.deployments.record("churn", 2, "production", at=T0 + 5 * DAY, replace_active=False)
    assert beside.is_active
    after = lake.deployments.record("churn", 3, "staging", at=T0 + 5 * DAY)  # another environment: fine
    assert after.is_active


def test_an_unregistered_version_is_recorded_with_a_warning(lake: metalake.Lake) -> None:
    with pytest.warns(UnregisteredModelVersionWarning, match="'churn' version 4 is not registered"):
        lake.deployments.record("churn", 4, "production")
    registered = lake.registry.register("churn", run_id=None, artifact_uri="s3://models/churn/1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lake.deployments.record("churn", registered.version, "production")
    assert lake.deployments.list().height == 2


def test_at_says_which_version_served_then(lake: metalake.Lake) -> None:
    lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.record("churn", 2, "production", at=T0 + timedelta(days=10))
    assert lake.deployments.at("production", T0 - timedelta(seconds=1)) is None
    served = lake.deployments.at("production", "2026-03-05T00:00:00Z")
    assert served is not None and served.version == 1
    served = lake.deployments.at("production", T0 + timedelta(days=10))
    assert served is not None and served.version == 2  # the window starts at the start, ends before the end
    with pytest.raises(EnvironmentNotFound):  # no deployment was ever recorded there: a typo, say so
        lake.deployments.at("staging", T0 + timedelta(days=10))


def test_deployments_are_recorded_in_time_order(lake: metalake.Lake) -> None:
    lake.deployments.record("churn", 2, "production", at=T0 + timedelta(days=10))
    with pytest.raises(DeploymentError, match="record deployments in time order"):
        lake.deployments.record("churn", 1, "production", at=T0)
    assert lake.read("deployments").height == 1  # refused: nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1, "production"), "The model of a deployment must be"),
        (("churn", 0, "production"), "whole number from 1"),
        (("churn", True, "production"), "whole number from 1"),
        (("churn", 1, " production"), "The environment of a deployment"),
    ],
)
def test_bad_arguments_are_refused(lake: metalake.Lake, args: tuple[object, ...], message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        lake.deployments.record(*args)  # type: ignore[arg-type]
    with pytest.raises(DeploymentError, match="not an ISO-8601 time"):
        lake.deployments.record("churn", 1, "production", at="yesterday")


def test_time_travel_shows_the_deployment_still_active(lake: metalake.Lake) -> None:
    deployment = lake.deployments.record("churn", 1, "production", at=T0)
    before_end = datetime.now(UTC)
    lake.deployments.end(deployment.deployment_id)
    assert lake.as_of(before_end).deployments.list(active=True).height == 1
    assert lake.deployments.list(active=True).height == 0


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"GITHUB_SHA": "a1", "GITHUB_RUN_ID": "99", "GITHUB_RUN_ATTEMPT": "2"},
            ("GitHub Actions", "a1", "99"),
        ),
        ({"CI_COMMIT_SHA": "b2", "CI_PIPELINE_ID": "7"}, ("GitLab CI", "b2", "7")),
        ({"BUILD_SOURCEVERSION": "c3", "BUILD_BUILDID": "1234"}, ("Azure Pipelines", "c3", "1234")),
        ({"CIRCLE_SHA1": "d4", "CIRCLE_WORKFLOW_ID": "wf"}, ("CircleCI", "d4", "wf")),
        (
            {"GIT_COMMIT": "e5", "BUILD_TAG": "jenkins-deploy-12", "JENKINS_URL": "https://ci"},
            ("Jenkins", "e5", "jenkins-deploy-12"),
        ),
        ({"GIT_COMMIT": "e5"}, (None, None, None)),  # a generic name, set by other tools too: not Jenkins
        ({"BUILD_SOURCEVERSION": "f6"}, ("Azure Pipelines", "f6", None)),
        ({}, (None, None, None)),
    ],
)
def test_ci_variables_are_detected(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: tuple[str | None, ...]
) -> None:
    for _, sha_variable, run_variable in CI_VARIABLES:
        monkeypatch.delenv(sha_variable, raising=False)
        monkeypatch.delenv(run_variable, raising=False)
    for marker in CI_MARKERS.values():
        monkeypatch.delenv(marker, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    ci = detect_ci()
    assert (ci.provider, ci.git_sha, ci.ci_run_id) == expected


def test_a_start_or_end_in_the_future_is_refused_and_the_deployment_can_still_end(
    lake: metalake.Lake,
) -> None:
    with pytest.raises(DeploymentError, match=r"start time \(at\) 2099-01-01T00:00:00Z is in the future"):
        lake.deployments.record("churn", 1, "prod", at="2099-01-01")
    serving = lake.deployments.record("churn", 1, "prod")
    with pytest.raises(DeploymentError, match=r"end time \(at\) 2099-01-01T00:00:00Z is in the future"):
        lake.deployments.end(serving.deployment_id, at=datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(DeploymentError, match="before 1900"):
        lake.deployments.end(serving.deployment_id, at="0001-01-01")
    assert lake.deployments.end(serving.deployment_id).ended_at is not None
    assert lake.read("deployments").height == 2
