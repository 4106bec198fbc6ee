"""Deployments (CI/CD): `lake.deployments.record(...)` writes start and end events; windows are the view
`deployments_current`.

A deployment is a model version serving in an environment from a start event to an end event. Recording a new
version of a model in an environment ends the open deployment of that model there at the new start, in the same
commit (a rollout replaces the previous version), and the start lists what it ended (`replaces`); other models in
the environment are left alone. The view also ends a deployment at a later replacing start that a concurrent
writer recorded without seeing it, so two racing rollouts never leave both versions serving.
"""

from __future__ import annotations

import builtins
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.core.moments import recordable_moment, utc_moment
from metalake.errors import DeploymentError, DeploymentNotFound, EnvironmentNotFound

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables

DEPLOYMENTS_TABLE = "deployments"
CURRENT_VIEW = "deployments_current"

# (provider, variable holding the commit, variable holding the run id), in the order they are tried. The run id
# is the one a re-run of the same job keeps (GitHub's GITHUB_RUN_ID, not GITHUB_RUN_ATTEMPT), so a retried job
# records its deployment once.
CI_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("GitHub Actions", "GITHUB_SHA", "GITHUB_RUN_ID"),
    ("GitLab CI", "CI_COMMIT_SHA", "CI_PIPELINE_ID"),
    ("Azure Pipelines", "BUILD_SOURCEVERSION", "BUILD_BUILDID"),
    ("CircleCI", "CIRCLE_SHA1", "CIRCLE_WORKFLOW_ID"),
    ("Buildkite", "BUILDKITE_COMMIT", "BUILDKITE_BUILD_ID"),
    ("Bitbucket Pipelines", "BITBUCKET_COMMIT", "BITBUCKET_PIPELINE_UUID"),
    ("Travis CI", "TRAVIS_COMMIT", "TRAVIS_BUILD_ID"),
    ("Jenkins", "GIT_COMMIT", "BUILD_TAG"),
)
# Providers whose commit and run variables have generic names that other tools set too: detected only when this
# variable, which the provider always sets, is present.
CI_MARKERS: dict[str, str] = {"Jenkins": "JENKINS_URL"}


class UnregisteredModelVersionWarning(UserWarning):
    """A deployment of a model version that `model_versions` does not hold (yet): recorded, but worth a look."""


@dataclass(frozen=True)
class CiContext:
    """What the CI system says about the job that is running: the provider, the commit and the run id."""

    provider: str | None = None
    git_sha: str | None = None
    ci_run_id: str | None = None


def detect_ci(environ: Mapping[str, str] | None = None) -> CiContext:
    """The commit and run id from the usual CI variables (GitHub, GitLab, Azure, CircleCI, ...), if any."""
    env = os.environ if environ is None else environ
    for provider, sha_variable, run_variable in CI_VARIABLES:
        marker = CI_MARKERS.get(provider)
        if marker is not None and not env.get(marker):
            continue
        git_sha = env.get(sha_variable) or None
        ci_run_id = env.get(run_variable) or None
        if git_sha or ci_run_id:
            return CiContext(provider, git_sha, ci_run_id)
    return CiContext()


def default_idempotency_key(
    model: str, version: int, environment: str, git_sha: str | None, ci_run_id: str | None
) -> str | None:
    """The key under which a CI job's deployment is recorded once however often the job is re-run.

    None without a CI run id: a deployment made by hand is a new deployment each time.
    """
    if not ci_run_id:
        return None
    return f"deploy:{model}:{version}:{environment}:{git_sha or ''}:{ci_run_id}"


@dataclass(frozen=True)
class Deployment:
    """One deployment: a model version serving in an environment from `at` until `ended_at` (None: serving)."""

    deployment_id: str
    model: str
    version: int
    environment: str
    at: datetime
    ended_at: datetime | None = None
    endpoint: str | None = None
    git_sha: str | None = None
    ci_run_id: str | None = None
    pipeline_run: str | None = None
    # Deployments that this one ended by replacing them (set by `record`).
    replaced: tuple[str, ...] = ()
    # True when an earlier call with the same idempotency key had recorded it: nothing was written.
    deduplicated: bool = False

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    def describe(self) -> str:
        return f"{self.deployment_id} ({self.model} v{self.version} in {self.environment})"


class Deployments:
    """`lake.deployments`: record, end and list deployments of model versions."""

    def __init__(self, tables: Tables):
        self._tables = tables

    def record(
        self,
        model: str,
        version: int,
        environment: str,
        *,
        at: datetime | date | str | None = None,
        endpoint: str | None = None,
        git_sha: str | None = None,
        pipeline_run: str | None = None,
        ci_run_id: str | None = None,
        reason: str | None = None,
        replace_active: bool = True,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """Record that `model` version `version` started serving in `environment` at `at` (default now).

        The open deployment of the same model in that environment is ended at `at` in the same commit
        (`replace_active=False` keeps it serving, for a canary or an A/B test). A replacing start must come
        after every start of the model in that environment and after every end: one inside an ended window is
        refused. A version missing from `model_versions` is recorded with an `UnregisteredModelVersionWarning`.

        With a CI run id, the key defaults to one derived from model, version, environment, commit and run id,
        so a re-run of the same job records the deployment once and returns it again (`deduplicated=True`) while
        that deployment serves. Once it has ended (a rollback re-runs an old job), the call records a new
        deployment, under the key `f"{key}:after:{ended deployment id}"`.
        """
        _check_name(model, "model")
        _check_name(environment, "environment")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DeploymentError(f"A model version is a whole number from 1, not {version!r}.")
        start = _recorded_moment(at, "start time (at)")
        key = idempotency_key or default_idempotency_key(model, version, environment, git_sha, ci_run_id)
        if key is not None:
            key, serving = self._key_for_start(key)
            if serving is not None:
                return replace(serving, deduplicated=True)
        if replace_active:
            self._check_time_order(model, environment, start)
        self._warn_if_unregistered(model, version)
        deployment_id = new_id(start)
        replaced = self.active(model=model, environment=environment) if replace_active else []
        rows: list[dict[str, Any]] = [
            {
                **_event(old, "end", start),
                "reason": f"replaced by deployment {deployment_id} (version {version})",
            }
            for old in replaced
        ]
        rows.append(
            {
                "deployment_id": deployment_id,
                "model": model,
                "version": version,
                "environment": environment,
                "event_type": "start",
                "at": start,
                "endpoint": endpoint,
                "git_sha": git_sha,
                "pipeline_run": pipeline_run,
                "ci_run_id": ci_run_id,
                "reason": reason,
                "idempotency_key": key,
                "replace_active": replace_active,
                "replaces": [old.deployment_id for old in replaced],
            }
        )
        commit = self._tables.append(
            DEPLOYMENTS_TABLE,
            rows,
            operation="deploy",
            reason=reason or f"deploy {model} v{version} to {environment}",
            idempotency_key=key,
        )
        if commit.deduplicated and key is not None:  # a concurrent retry won the race: return what it stored
            stored = self._recorded_under(key, "start")
            if stored is not None:
                return replace(stored, deduplicated=True)
        return Deployment(
            deployment_id=deployment_id,
            model=model,
            version=version,
            environment=environment,
            at=start,
            endpoint=endpoint,
            git_sha=git_sha,
            ci_run_id=ci_run_id,
            pipeline_run=pipeline_run,
            replaced=tuple(old.deployment_id for old in replaced),
        )

    def end(
        self,
        deployment_id: str | None = None,
        *,
        model: str | None = None,
        environment: str | None = None,
        at: datetime | date | str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Deployment:
        """End a deployment: by id, or the one active deployment in `environment` (of `model`, if given).

        Ending an unknown or already ended deployment raises DeploymentError; so does an environment with no
        active deployment, or with several when `model` does not tell them apart. With an `idempotency_key`
        used before, the deployment that call ended is returned (`deduplicated=True`) and nothing is written.
        """
        if idempotency_key is not None:
            earlier = self._recorded_under(idempotency_key, "end")
            if earlier is not None:
                return replace(earlier, deduplicated=True)
        target = self._target(deployment_id, model=model, environment=environment)
        moment = _recorded_moment(at, "end time (at)")
        if moment < target.at:
            raise DeploymentError(
                f"Deployment {target.describe()} started at {target.at.isoformat()}; it cannot end before that "
                f"({moment.isoformat()})."
            )
        key = idempotency_key or f"deploy-end:{target.deployment_id}"
        row = {**_event(target, "end", moment), "reason": reason, "idempotency_key": idempotency_key}
        commit = self._tables.append(
            DEPLOYMENTS_TABLE,
            [row],
            operation="undeploy",
            reason=reason or f"end {target.model} v{target.version} in {target.environment}",
            idempotency_key=key,
        )
        if commit.deduplicated:  # ended concurrently by another writer: report the stored end
            return replace(self.get(target.deployment_id), deduplicated=True)
        return replace(target, ended_at=moment)

    # -- reading --------------------------------------------------------------------------------------------

    def get(self, deployment_id: str) -> Deployment:
        """One deployment, with its end when it has ended."""
        found = self._select("deployment_id = ?", [deployment_id])
        if not found:
            raise DeploymentNotFound(
                f"No deployment {deployment_id!r} in this lake; list them with `metalake deploy list`."
            )
        return found[0]

    def list(
        self, environment: str | None = None, *, model: str | None = None, active: bool | None = None
    ) -> pl.DataFrame:
        """Deployments as rows of `deployments_current`, newest first; filter by environment, model, activity."""
        import polars as pl

        clauses, args = _filters(environment=environment, model=model)
        if active is not None:
            clauses.append("is_active = ?")
            args.append(active)
        where = f"where {' and '.join(clauses)}" if clauses else ""
        frame: pl.DataFrame = self._tables.sql(
            f"select * from {CURRENT_VIEW} {where} order by started_at desc, deployment_id desc", args
        ).pl()
        if environment is not None and frame.is_empty():
            self._check_environment(environment)
        return frame.with_columns(
            pl.col(name).dt.convert_time_zone("UTC")
            for name, dtype in frame.schema.items()
            if isinstance(dtype, pl.Datetime)
        )

    def at(
        self, environment: str, when: datetime | date | str, *, model: str | None = None
    ) -> Deployment | None:
        """What served in `environment` at `when` (of `model`, if given): the latest deployment started by then
        and not yet ended; None when nothing did."""
        moment = _moment(when)
        clauses, args = _filters(environment=environment, model=model)
        clauses.append("started_at <= ? and (ended_at is null or ended_at > ?)")
        args += [moment, moment]
        found = self._select(" and ".join(clauses), args, order="started_at desc, deployment_id desc")
        if not found:
            self._check_environment(environment)
        return found[0] if found else None

    def environments(self) -> builtins.list[str]:
        """The environments that deployments were recorded in (by this lake's moment), sorted."""
        return _environments(self._tables)

    def _check_environment(self, environment: str) -> None:
        """EnvironmentNotFound, naming the closest known ones, for an environment no deployment was in (at a
        past moment: nor was later)."""
        known = self.environments()
        if self._tables.is_unknown_name(environment, known, _environments):
            raise EnvironmentNotFound(environment, known)

    def active(
        self, *, model: str | None = None, environment: str | None = None
    ) -> builtins.list[Deployment]:
        """The deployments serving now (of a model, in an environment), oldest first."""
        clauses, args = _filters(environment=environment, model=model)
        clauses.append("is_active")
        return self._select(" and ".join(clauses), args)

    def _select(
        self, where: str, args: builtins.list[Any], order: str = "started_at, deployment_id"
    ) -> builtins.list[Deployment]:
        rows = self._tables.sql(
            "select deployment_id, model, version, environment, started_at, ended_at, endpoint, git_sha, "
            f"ci_run_id, pipeline_run, replaced from {CURRENT_VIEW} where {where} order by {order}",
            args,
        ).fetchall()
        return [
            Deployment(
                deployment_id=row[0],
                model=row[1],
                version=row[2],
                environment=row[3],
                at=row[4].astimezone(UTC),
                ended_at=None if row[5] is None else row[5].astimezone(UTC),
                endpoint=row[6],
                git_sha=row[7],
                ci_run_id=row[8],
                pipeline_run=row[9],
                replaced=tuple(row[10]),
            )
            for row in rows
        ]

    def _key_for_start(self, key: str) -> tuple[str, Deployment | None]:
        """The key to record a start under, or the deployment that a start under `key` began and still serves.

        A key names its deployment while that serves; after it ended, the key of the next start is
        `f"{key}:after:{ended deployment id}"` (and so on, for a job re-run again after another rollback).
        """
        while (earlier := self._recorded_under(key, "start")) is not None:
            if earlier.is_active:
                return key, earlier
            key = f"{key}:after:{earlier.deployment_id}"
        return key, None

    def _check_time_order(self, model: str, environment: str, start: datetime) -> None:
        """Refuse a replacing start before a start or an end of the model in the environment: windows would
        overlap."""
        conflicts = self._select(
            "model = ? and environment = ? and (started_at > ? or ended_at > ?)",
            [model, environment, start, start],
        )
        if not conflicts:
            return
        first = conflicts[0]
        if first.at > start:
            when = f"started at {first.at.isoformat()}"
        else:
            assert first.ended_at is not None
            when = f"served until {first.ended_at.isoformat()}"
        raise DeploymentError(
            f"{first.describe()} {when}, after {start.isoformat()}: a deployment that replaces the serving one "
            "cannot start then; record deployments in time order, or pass replace_active=False "
            "(--keep-active) to record one that serves beside others, and end it yourself."
        )

    def _recorded_under(self, key: str, event_type: str) -> Deployment | None:
        """The deployment whose start (or end) event was written under `key`, if any."""
        found = self._select(
            f"deployment_id in (select deployment_id from {DEPLOYMENTS_TABLE} "
            "where idempotency_key = ? and event_type = ?)",
            [key, event_type],
        )
        return found[0] if found else None

    def _target(self, deployment_id: str | None, *, model: str | None, environment: str | None) -> Deployment:
        """The one active deployment an `end` call names, or an error that says how to name it."""
        if deployment_id is not None:
            target = self.get(deployment_id)
            if not target.is_active:
                assert target.ended_at is not None
                raise DeploymentError(
                    f"Deployment {target.describe()} already ended at {target.ended_at.isoformat()}; "
                    "there is nothing to end."
                )
            return target
        if environment is None:
            raise DeploymentError(
                "Say which deployment to end: its id, or the environment (and model) it serves in."
            )
        active = self.active(model=model, environment=environment)
        what = f"of model {model!r} " if model else ""
        if not active:
            self._check_environment(environment)
            serving = self.active(model=None, environment=None)
            listing = "; ".join(d.describe() for d in serving) or "none"
            raise DeploymentError(
                f"No active deployment {what}in environment {environment!r}. Active deployments: {listing}."
            )
        if len(active) > 1:
            listing = "; ".join(d.describe() for d in active)
            raise DeploymentError(
                f"{len(active)} active deployments {what}in environment {environment!r}: {listing}. "
                "Pass the deployment id (or the model) to say which one ends."
            )
        return active[0]

    def _warn_if_unregistered(self, model: str, version: int) -> None:
        registered = self._tables.sql(
            "select count(*) from model_versions where model = ? and version = ?", [model, version]
        ).fetchall()[0][0]
        if not registered:
            warnings.warn(
                f"Model {model!r} version {version} is not registered in model_versions; the deployment is "
                "recorded, but model_kpi_impact shows no offline metrics or training data for it until the "
                "version is registered.",
                UnregisteredModelVersionWarning,
                stacklevel=3,
            )


def _event(deployment: Deployment, event_type: str, at: datetime) -> dict[str, Any]:
    """An event row for an existing deployment; end events repeat model, version and environment for readers."""
    return {
        "deployment_id": deployment.deployment_id,
        "model": deployment.model,
        "version": deployment.version,
        "environment": deployment.environment,
        "event_type": event_type,
        "at": at,
    }


def _filters(*, environment: str | None, model: str | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if environment is not None:
        clauses.append("environment = ?")
        args.append(environment)
    if model is not None:
        clauses.append("model = ?")
        args.append(model)
    return clauses, args


def _moment(value: datetime | date | str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return utc_moment(value, what="Deployment time", error=DeploymentError)


def _recorded_moment(value: datetime | date | str | None, what: str) -> datetime:
    """A start or end time to record: default now; a time in the future (beyond the clock skew) is refused."""
    if value is None:
        return datetime.now(UTC)
    return recordable_moment(value, what=f"The deployment {what}", error=DeploymentError)


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise DeploymentError(
            f"The {what} of a deployment must be a non-empty name without surrounding spaces, not {value!r}."
        )


def _environments(tables: Tables) -> builtins.list[str]:
    rows = tables.sql(f"select distinct environment from {DEPLOYMENTS_TABLE} order by 1").fetchall()
    return [row[0] for row in rows]
