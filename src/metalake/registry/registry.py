"""Model registry: `lake.registry` registers versions, moves them through stages under a policy, and says what
was live when.

`model_versions` holds one immutable row per version; every change (registration, stage transition, alias) is an
append-only row in `model_events`, so the state at any past moment is a query over events, and stays right after
later changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.core.moments import utc_moment
from metalake.core.tables import POLICIES_TABLE
from metalake.core.vocabulary import STAGES, Stage
from metalake.errors import (
    AmbiguousRunId,
    ModelNotFound,
    PolicyError,
    PolicyViolation,
    RegistryError,
    RunError,
)
from metalake.registry.governance import GateContext, InputQuality, Policy, load_policy, parse_policy
from metalake.registry.lifecycle import ModelLifecycle, RegisteredModel, live_models, removed_versions

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables
    from metalake.tracking.experiments import Renamed
    from metalake.tracking.runs import Runs

POLICY_NAME = "registry"
EVENT_ORDER = ["event_time", "recorded_at", "event_id"]
REGISTER_ATTEMPTS = 50


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version and its current (or as-of) stage and aliases."""

    model: str
    version: int
    run_id: str | None
    artifact_uri: str
    flavor: str | None
    signature: Any
    card: dict[str, Any]
    description: str | None
    stage: str
    aliases: tuple[str, ...]
    registered_at: datetime
    registered_by: str


class Registry:
    """`lake.registry`: register, alias, transition, get, versions, at; governance via `use_policy`."""

    def __init__(self, tables: Tables, *, runs: Runs, renamed: Renamed | None = None):
        """`renamed(kind, old, new)` is called after a model's rename is committed (the lake moves its grants)."""
        self._tables = tables
        self._renamed = renamed
        self._runs = runs
        self._session_policy: Policy | None = None  # set by use_policy without persist: this process only
        self._lifecycle = ModelLifecycle(tables)

    # -- writing --------------------------------------------------------------------------------------------

    def register(
        self,
        model: str,
        *,
        run_id: str | None,
        artifact_uri: str,
        flavor: str | None = None,
        signature: Any = None,
        card: Mapping[str, Any] | None = None,
        description: str | None = None,
        reuse: bool = True,
    ) -> ModelVersion:
        """Register a new version of `model` (numbered 1, 2, ... per model), linked to the run that trained it.

        Registering the same run and artifact again returns the existing (live) version, unless `reuse=False`
        (MLflow's create-model-version always makes a new one). Concurrent registrations get distinct numbers: a
        number is claimed with an idempotency key, and a writer that loses the race takes the next one.
        """
        if not model or not model.strip():
            raise RegistryError("A model needs a name, e.g. lake.registry.register('churn', ...).")
        if not artifact_uri:
            raise RegistryError("artifact_uri is required: where the model's files are (a path or a URI).")
        if run_id is not None:
            run_id = self._whole_run_id(run_id)
        for _ in range(REGISTER_ATTEMPTS):
            versions = self._versions_frame(model)
            same = versions.filter(
                (versions["run_id"].eq_missing(run_id)) & (versions["artifact_uri"] == artifact_uri)
            )
            if reuse and not same.is_empty():
                same = same.filter(
                    ~same["version"].is_in(list(removed_versions(versions, self._events(model))))
                )
            if reuse and not same.is_empty():
                number = max(same["version"].to_list())
                break  # registered before (maybe by a run cut short): finish what it may have left undone
            number = max(versions["version"].to_list(), default=0) + 1
            row = {
                "model": model,
                "version": number,
                "run_id": run_id,
                "artifact_uri": artifact_uri,
                "flavor": flavor,
                "signature": _as_json(signature),
                "card": _as_json(dict(card or {})),
                "source": "metalake",
                "description": description,
            }
            claimed = self._tables.append(
                "model_versions",
                [row],
                operation="register_model",
                idempotency_key=f"model_version:{model}:{number}",
            )
            if not claimed.deduplicated:
                break
        else:
            raise RegistryError(f"Could not claim a version number for {model!r}; try again.")
        # Fixed keys: a registration retried after a crash writes the missing rows, never a second copy. A model
        # created first (create_model) has its row, with a description and tags this one must not hide.
        if not self._lifecycle.has_record(model):
            self._tables.append(
                "models",
                [{"model": model, "owner": (card or {}).get("owner")}],
                operation="register_model",
                idempotency_key=f"model:{model}",
            )
        self._append_events(
            [self._event_row(model, number, "registered", reason=description)],
            idempotency_key=f"model_event:registered:{model}:{number}",
        )
        return self.get(model, number)

    def set_alias(self, model: str, alias: str, version: int, *, reason: str | None = None) -> ModelVersion:
        """Point `alias` (e.g. "champion") at a version; an alias names one version at a time."""
        if not alias or alias.isdigit() or alias in STAGES or alias == "latest":
            raise RegistryError(
                f"{alias!r} cannot be an alias: it must be a non-numeric name other than latest and "
                f"{', '.join(STAGES)}."
            )
        self.get(model, version)  # a live version
        self._event(model, version, "alias_set", alias=alias, reason=reason)
        return self.get(model, version)

    def delete_alias(self, model: str, alias: str, *, reason: str | None = None) -> None:
        """Remove an alias; the version it named is unchanged."""
        aliases = self._state(model)[1]
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise ModelNotFound(f"Model {model!r} has no alias {alias!r} (aliases: {known}).")
        self._event(model, aliases[alias], "alias_deleted", alias=alias, reason=reason)

    def transition(
        self,
        model: str,
        version: int,
        stage: Stage,
        *,
        reason: str | None = None,
        override: bool = False,
        archive_others: bool = False,
    ) -> ModelVersion:
        """Move a version to a stage, if the policy's gate for that stage lets it.

        A refused move raises PolicyViolation listing every failing rule, and writes nothing. `override=True`
        forces it only where the gate has `allow_override: true`, needs a `reason`, and is recorded as an
        override with the rules it overrode. `archive_others=True` archives the versions now in that stage.
        """
        if stage not in STAGES:
            raise RegistryError(f"Unknown stage {stage!r}; stages are {', '.join(STAGES)}.")
        current = self.get(model, version)
        gate = self.policy.gate(stage)
        failures = gate.check(self._gate_context(current)) if gate else []
        if failures and not override:
            raise PolicyViolation(model, version, stage, failures)
        if failures and gate is not None and not gate.allow_override:
            raise PolicyViolation(
                model,
                version,
                stage,
                failures,
                hint=f"Nothing was written. The policy does not allow overrides for {stage!r}.",
            )
        if failures and not (reason and reason.strip()):
            raise PolicyViolation(
                model,
                version,
                stage,
                failures,
                hint="Nothing was written. An override needs a reason (reason=...).",
            )
        others = []
        if archive_others and stage != "archived":
            stages = self._state(model)[0]
            others = [number for number, now in stages.items() if now == stage and number != version]
        overridden = [failure.rule for failure in failures]
        rows = [
            self._event_row(
                model,
                version,
                "stage_transition",
                stage=stage,
                reason=reason,
                override=bool(overridden),
                overridden_rules=json.dumps(overridden) if overridden else None,
            )
        ]
        rows += [
            self._event_row(
                model, number, "stage_transition", stage="archived", reason=f"replaced by version {version}"
            )
            for number in others
        ]
        self._append_events(rows)  # the move and the archiving of the others land in one commit
        return self.get(model, version)

    def archive(self, model: str, version: int, *, reason: str | None = None) -> ModelVersion:
        """Deprecate a version (stage archived); its row and history stay."""
        return self.transition(model, version, "archived", reason=reason)

    def create_model(
        self, model: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        """A registered model with no version yet (AlreadyExists if a live model has the name)."""
        return self._lifecycle.create(model, description=description, tags=tags)

    def rename_model(self, model: str, new_name: str) -> RegisteredModel:
        """Move a model and its versions (stages, aliases, tags, history) to a new name."""
        renamed = self._lifecycle.rename(model, new_name)
        if self._renamed is not None and renamed.name != model:
            self._renamed("model", model, renamed.name)
        return renamed

    def delete_model(self, model: str) -> None:
        """Delete a model and its versions; their history stays in model_events."""
        self._lifecycle.delete(model)

    def delete_version(self, model: str, version: int) -> None:
        """Delete one version; its number is never given again."""
        self._lifecycle.delete_version(model, version)

    def set_tag(self, model: str, key: str, value: str, *, version: int | None = None) -> None:
        """Tag the model (or one of its versions)."""
        self._lifecycle.set_tag(model, key, value, version=version)

    def delete_tag(self, model: str, key: str, *, version: int | None = None) -> None:
        self._lifecycle.delete_tag(model, key, version=version)

    def set_description(self, model: str, description: str | None, *, version: int | None = None) -> None:
        """Describe the model (or one of its versions) anew."""
        self._lifecycle.set_description(model, description, version=version)

    def registered_model(self, model: str) -> RegisteredModel:
        """A live model with its description, tags, times, and the tags and descriptions of its versions."""
        return self._lifecycle.registered_model(model)

    # -- reading --------------------------------------------------------------------------------------------

    def get(self, model: str, version_or_alias: int | str = "latest") -> ModelVersion:
        """A version by number, alias, stage name (the latest version in it) or "latest"."""
        stages, aliases = self._state(model)
        number = self._resolve(model, version_or_alias, stages, aliases)
        return self._model_version(model, number, stages, aliases)

    def versions(self, model: str | None = None) -> pl.DataFrame:
        """Every version (of a model) with its current stage and aliases, from the registry_current view.

        A model that was never registered raises ModelNotFound naming the closest registered models.
        """
        where = "where model = ?" if model else ""
        frame: pl.DataFrame = self._tables.sql(
            f"select * from registry_current {where} order by model, version", [model] if model else None
        ).pl()
        if model and frame.is_empty():
            self._check_model(model)
        return frame

    def models(self) -> list[str]:
        """The names of the live registered models (by this lake's moment), sorted."""
        return _models(self._tables)

    def _check_model(self, model: str) -> None:
        """ModelNotFound naming the closest models, unless `model` is registered (or, at a past moment, was
        registered later: then it is only absent at that moment)."""
        known = self.models()
        if self._tables.is_unknown_name(model, known, _models):
            raise ModelNotFound.unknown_model(model, known)

    def at(self, model: str, when: datetime | date | str, stage: Stage = "production") -> ModelVersion | None:
        """The version that was in `stage` at `when` (the latest to enter it, if several); None if none was.

        Answered from the append-only events, so later changes never alter the answer about a past moment.
        """
        moment = utc_moment(when, what="when", error=RegistryError)
        stages, aliases = self._state(model, until=moment)
        candidates = [number for number, now in stages.items() if now == stage]
        if not candidates:
            self._check_model(model)
            return None
        entered = self._entered_at(model, moment)
        number = max(candidates, key=lambda n: (entered.get(n, datetime.min.replace(tzinfo=UTC)), n))
        return self._model_version(model, number, stages, aliases)

    # -- policy ---------------------------------------------------------------------------------------------

    def use_policy(self, policy: str | Path | Mapping[str, Any] | Policy, *, persist: bool = False) -> Policy:
        """Enforce a policy in this process; `persist=True` stores it in the lake, so every client enforces it."""
        loaded = policy if isinstance(policy, Policy) else load_policy(policy)
        if not persist and self._stored_policy() is not None:
            raise PolicyError(
                "This lake keeps its own policy, which every client enforces; change it for everyone with "
                "use_policy(path, persist=True) (`metalake models policy set FILE`), which is recorded."
            )
        if persist:
            self._tables.append(
                POLICIES_TABLE,
                [{"policy": POLICY_NAME, "document": loaded.to_json(), "source": loaded.source}],
                operation="set_policy",
            )
        self._session_policy = loaded
        return loaded

    @property
    def policy(self) -> Policy:
        """The policy in force: the one stored in the lake, else the one set by use_policy here, else none."""
        stored = self._stored_policy()
        if stored is not None:
            return stored
        return self._session_policy or Policy()

    def _stored_policy(self) -> Policy | None:
        import polars as pl

        stored = self._tables.read(POLICIES_TABLE, where=pl.col("policy") == POLICY_NAME)
        if stored.is_empty():
            return None
        latest = stored.sort("recorded_at").row(-1, named=True)
        policy = parse_policy(
            json.loads(latest["document"]), f"lake policy (stored {latest['recorded_at']:%Y-%m-%d})"
        )
        return policy if policy.gates else None  # an empty stored policy lifts the lake's gates

    # -- internals ------------------------------------------------------------------------------------------

    def _whole_run_id(self, run_id: str) -> str:
        """The id of the run that trained the model (a unique prefix is enough), else RegistryError."""
        try:
            return self._runs.resolve_id(run_id)
        except AmbiguousRunId as error:
            raise RegistryError(str(error)) from None
        except RunError:
            raise RegistryError(
                f"No run {run_id!r} in this lake: register a model from a run logged with lake.runs "
                "(or imported from MLflow), or pass run_id=None."
            ) from None

    def _versions_frame(self, model: str) -> pl.DataFrame:
        import polars as pl

        return self._tables.read("model_versions", where=pl.col("model") == model)

    def _version_row(self, model: str, version: int) -> dict[str, Any]:
        versions = self._versions_frame(model)
        if versions.is_empty():
            raise ModelNotFound.unknown_model(model, self.models())
        rows = versions.filter(versions["version"] == version)
        if rows.is_empty():
            known = ", ".join(str(v) for v in sorted(versions["version"].to_list()))
            raise ModelNotFound(f"Model {model!r} has no version {version} (versions: {known}).")
        return rows.sort("recorded_at").row(0, named=True)

    def _events(self, model: str, until: datetime | None = None) -> pl.DataFrame:
        import polars as pl

        events = self._tables.read("model_events", where=pl.col("model") == model)
        if until is not None:
            events = events.filter(pl.col("event_time") <= until)
        return events.sort(EVENT_ORDER)

    def _state(self, model: str, until: datetime | None = None) -> tuple[dict[int, str], dict[str, int]]:
        """Stage of every version and the version of every alias, from the events (up to `until`)."""
        versions, events = self._versions_frame(model), self._events(model, until)
        stages = {int(v): "none" for v in versions["version"].to_list()}
        aliases: dict[str, int] = {}
        for event in events.iter_rows(named=True):
            kind, version = event["event_type"], event["version"]
            if kind == "stage_transition" and version is not None:
                stages[int(version)] = event["stage"]
            elif kind == "alias_set" and version is not None:
                aliases[event["alias"]] = int(version)
            elif kind == "alias_deleted":
                aliases.pop(event["alias"], None)
        if until is not None:  # versions registered later did not exist then
            registered = {
                int(e["version"])
                for e in self._events(model, until).iter_rows(named=True)
                if e["event_type"] == "registered"
            }
            stages = {number: stage for number, stage in stages.items() if number in registered}
        removed = removed_versions(versions, events)
        stages = {number: stage for number, stage in stages.items() if number not in removed}
        aliases = {alias: number for alias, number in aliases.items() if number in stages}
        return stages, aliases

    def _entered_at(self, model: str, until: datetime) -> dict[int, datetime]:
        entered = {}
        for event in self._events(model, until).iter_rows(named=True):
            if event["event_type"] == "stage_transition" and event["version"] is not None:
                entered[int(event["version"])] = event["event_time"]
        return entered

    def _resolve(self, model: str, key: int | str, stages: dict[int, str], aliases: dict[str, int]) -> int:
        if not stages:
            raise ModelNotFound.unknown_model(model, self.models())
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit()):
            number = int(key)
            if number not in stages:
                known = ", ".join(str(v) for v in sorted(stages))
                raise ModelNotFound(f"Model {model!r} has no version {number} (versions: {known}).")
            return number
        if key == "latest":
            return max(stages)
        if key in aliases:
            return aliases[key]
        if key in STAGES:
            in_stage = [number for number, stage in stages.items() if stage == key]
            if in_stage:  # the latest to enter the stage, as `at` answers
                entered = self._entered_at(model, datetime.now(UTC))
                return max(in_stage, key=lambda n: (entered.get(n, datetime.min.replace(tzinfo=UTC)), n))
            raise ModelNotFound(f"Model {model!r} has no version in stage {key!r}.")
        known_aliases = ", ".join(sorted(aliases)) or "none"
        raise ModelNotFound(
            f"Model {model!r} has no version or alias {key!r} (aliases: {known_aliases}; or a number, a stage, latest)."
        )

    def _model_version(
        self, model: str, number: int, stages: dict[int, str], aliases: dict[str, int]
    ) -> ModelVersion:
        row = self._version_row(model, number)
        return ModelVersion(
            model=model,
            version=number,
            run_id=row["run_id"],
            artifact_uri=row["artifact_uri"],
            flavor=row["flavor"],
            signature=json.loads(row["signature"]) if row["signature"] else None,
            card=json.loads(row["card"]) if row["card"] else {},
            description=row["description"],
            stage=stages.get(number, "none"),
            aliases=tuple(sorted(alias for alias, target in aliases.items() if target == number)),
            registered_at=row["recorded_at"],
            registered_by=row["recorded_by"],
        )

    def _gate_context(self, version: ModelVersion) -> GateContext:
        metrics: dict[str, float] = {}
        inputs: list[InputQuality] = []
        if version.run_id is not None:
            details = self._runs.get(version.run_id)
            metrics = {key: summary["last_value"] for key, summary in details.metrics.items()}
            inputs = self._input_quality(version.run_id)
        return GateContext(
            model=version.model,
            version=version.version,
            current_stage=version.stage,
            card=version.card,
            run_id=version.run_id,
            run_metrics=metrics,
            inputs=inputs,
            registered_by=version.registered_by,
            actor=self._tables.actor,
        )

    def _input_quality(self, run_id: str) -> list[InputQuality]:
        """The run's inputs with their verdicts from the run_input_quality view, the definition every view uses."""
        rows = self._tables.sql(
            "select dataset, version, dq_success, failed_suites, failed_suite from run_input_quality "
            "where run_id = ? order by dataset, version nulls first",
            [run_id],
        ).fetchall()
        return [
            InputQuality(dataset, version, success, failed_suites=failed_suites, failed_suite=failed_suite)
            for dataset, version, success, failed_suites, failed_suite in rows
        ]

    def _event(self, model: str, version: int | None, event_type: str, **fields: Any) -> None:
        self._append_events([self._event_row(model, version, event_type, **fields)])

    @staticmethod
    def _event_row(model: str, version: int | None, event_type: str, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": new_id(),
            "model": model,
            "version": version,
            "event_type": event_type,
            "event_time": datetime.now(UTC),
            **fields,
        }

    def _append_events(self, rows: list[dict[str, Any]], *, idempotency_key: str | None = None) -> None:
        """Append model events in one commit (keyed by the first event's id unless a fixed key is given)."""
        self._tables.append(
            "model_events",
            rows,
            operation=str(rows[0]["event_type"]),
            reason=rows[0].get("reason"),
            idempotency_key=idempotency_key or f"model_event:{rows[0]['event_id']}",
        )


def _models(tables: Tables) -> list[str]:
    return live_models(tables)


def _as_json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
