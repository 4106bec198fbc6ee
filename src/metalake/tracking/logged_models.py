"""Logged models (MLflow 3's LoggedModel, `lake.logged_models`): a set of artifacts a run produced, with params,
tags and a status.

Every change is a new `logged_models` row carrying the whole state; the latest row of a model_id is the current
one, so concurrent writers never conflict and history shows every state. The files themselves are stored by
`lake.artifacts` under `<experiment_id>/models/<model_id>/artifacts/`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metalake.core.ids import new_id
from metalake.core.vocabulary import LOGGED_MODEL_STATUSES, LoggedModelStatus
from metalake.errors import LoggedModelNotFound, RunError

if TYPE_CHECKING:
    from metalake.core.tables import Tables

TABLE = "logged_models"
OPERATION = "logged_model"
OrderField = Literal["name", "created_at", "updated_at", "model_id"]
_COLUMNS = (
    "model_id, experiment_id, name, source_run_id, artifact_location, status, status_message, model_type, "
    "params, tags, created_at, deleted, recorded_at, recorded_by"
)


def model_artifact_location(experiment_id: str, model_id: str) -> str:
    """Where MLflow clients put a logged model's files: the server's artifact proxy, into the lake."""
    return f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"


@dataclass(frozen=True)
class LoggedModel:
    """One logged model as it is now (or at the lake's moment)."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: LoggedModelStatus
    created_at: datetime
    updated_at: datetime
    source_run_id: str | None = None
    status_message: str | None = None
    model_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    creator: str | None = None


class LoggedModels:
    """Create, finalize, tag, search and delete logged models."""

    def __init__(self, tables: Tables):
        self._tables = tables

    def create(
        self,
        experiment_id: str,
        name: str,
        *,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        actor: str | None = None,
    ) -> LoggedModel:
        """A new model, `pending` until `finalize`; its id is `m-` and 32 hex digits (time-sortable)."""
        if not isinstance(name, str) or not name.strip():
            raise RunError("A logged model needs a non-empty name.")
        model_id = f"m-{new_id()}"
        now = datetime.now(UTC)
        model = LoggedModel(
            model_id=model_id,
            experiment_id=str(experiment_id),
            name=name,
            artifact_location=model_artifact_location(str(experiment_id), model_id),
            status="pending",
            created_at=now,
            updated_at=now,
            source_run_id=source_run_id,
            model_type=model_type,
            params={str(k): str(v) for k, v in (params or {}).items()},
            tags={str(k): str(v) for k, v in (tags or {}).items()},
        )
        self._write(model, actor, f"create logged model {name!r}")
        return self.get(model_id)

    def get(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """The model's current state; LoggedModelNotFound if there is none (or it was deleted)."""
        rows = self._rows("where model_id = ?", [model_id])
        if not rows or (rows[0].deleted and not allow_deleted):
            raise LoggedModelNotFound(model_id)
        return rows[0]

    def finalize(
        self,
        model_id: str,
        status: LoggedModelStatus,
        *,
        status_message: str | None = None,
        actor: str | None = None,
    ) -> LoggedModel:
        """Record that the model's upload ended: `ready` or `failed`."""
        if status not in LOGGED_MODEL_STATUSES:
            raise RunError(
                f"Invalid logged model status {status!r}: use one of {', '.join(LOGGED_MODEL_STATUSES)}."
            )
        current = self.get(model_id)
        self._write(
            replace(current, status=status, status_message=status_message), actor, f"finalize {model_id}"
        )
        return self.get(model_id)

    def log_params(
        self, model_id: str, params: Mapping[str, str], *, actor: str | None = None
    ) -> LoggedModel:
        current = self.get(model_id)
        merged = {**current.params, **{str(k): str(v) for k, v in params.items()}}
        self._write(replace(current, params=merged), actor, f"log params of {model_id}")
        return self.get(model_id)

    def set_tags(self, model_id: str, tags: Mapping[str, str], *, actor: str | None = None) -> LoggedModel:
        current = self.get(model_id)
        merged = {**current.tags, **{str(k): str(v) for k, v in tags.items()}}
        self._write(replace(current, tags=merged), actor, f"tag {model_id}")
        return self.get(model_id)

    def delete_tag(self, model_id: str, key: str, *, actor: str | None = None) -> LoggedModel:
        """Remove a tag (history keeps it); RunError naming the model's tags if it has no such tag."""
        current = self.get(model_id)
        if key not in current.tags:
            raise RunError(
                f"Logged model {model_id} has no tag {key!r}; its tags: {', '.join(sorted(current.tags)) or 'none'}."
            )
        tags = {k: v for k, v in current.tags.items() if k != key}
        self._write(replace(current, tags=tags), actor, f"untag {model_id}")
        return self.get(model_id)

    def delete(self, model_id: str, *, actor: str | None = None) -> None:
        """Mark the model deleted: `get` and `search` no longer find it; its rows and files stay."""
        current = self.get(model_id)
        self._write(replace(current, deleted=True), actor, f"delete {model_id}")

    def search(
        self,
        experiment_ids: Sequence[str] | None = None,
        *,
        where: Mapping[str, str] | None = None,
        order_by: Sequence[tuple[OrderField, bool]] = (("created_at", False),),
    ) -> list[LoggedModel]:
        """Current models of the experiments (all when None) whose fields equal `where`.

        `where` keys are `name`, `source_run_id`, `status`, `model_type`, `model_id`, `tags.<key>` or
        `params.<key>`; `order_by` is (field, ascending) pairs, newest first by default.
        """
        where_sql, values = "", []
        if experiment_ids is not None:
            if not experiment_ids:
                return []
            where_sql = "where experiment_id in (" + ", ".join("?" for _ in experiment_ids) + ")"
            values = [str(e) for e in experiment_ids]
        models = [model for model in self._rows(where_sql, values) if not model.deleted]
        for key, wanted in (where or {}).items():
            models = [model for model in models if _field(model, key) == wanted]
        for name, ascending in reversed(list(order_by)):
            if name not in ("name", "created_at", "updated_at", "model_id"):
                raise RunError(f"Cannot order logged models by {name!r}: use name, created_at or updated_at.")
            models.sort(key=lambda model: getattr(model, name), reverse=not ascending)
        return models

    def _rows(self, where: str, values: Sequence[Any]) -> list[LoggedModel]:
        """The latest row of each model matching `where`, a filter on columns every row of a model shares
        (model_id, experiment_id); deleted models included."""
        if self._tables.version(TABLE) is None:
            return []
        rows = self._tables.sql(
            f"select {_COLUMNS}, first_value(recorded_by) over (partition by model_id order by recorded_at) "
            f"from {TABLE} {where} "
            "qualify row_number() over (partition by model_id order by recorded_at desc, event_id desc) = 1",
            list(values),
        ).fetchall()
        return [_model(row) for row in rows]

    def _write(self, model: LoggedModel, actor: str | None, reason: str) -> None:
        row = {
            "event_id": new_id(),
            "model_id": model.model_id,
            "experiment_id": model.experiment_id,
            "name": model.name,
            "source_run_id": model.source_run_id,
            "artifact_location": model.artifact_location,
            "status": model.status,
            "status_message": model.status_message,
            "model_type": model.model_type,
            "params": json.dumps(model.params, sort_keys=True) if model.params else None,
            "tags": json.dumps(model.tags, sort_keys=True) if model.tags else None,
            "created_at": model.created_at,
            "deleted": model.deleted,
        }
        self._tables.append(TABLE, [row], actor=actor, reason=reason, operation=OPERATION)


def _field(model: LoggedModel, key: str) -> str | None:
    if key.startswith("tags."):
        return model.tags.get(key[5:])
    if key.startswith("params."):
        return model.params.get(key[7:])
    if key not in ("name", "source_run_id", "status", "model_type", "model_id", "experiment_id"):
        raise RunError(
            f"Cannot search logged models by {key!r}: use name, source_run_id, status, model_type, model_id, "
            "tags.<key> or params.<key>."
        )
    value = getattr(model, key)
    return None if value is None else str(value)


def _model(row: Sequence[Any]) -> LoggedModel:
    (
        model_id,
        experiment_id,
        name,
        run_id,
        location,
        status,
        message,
        model_type,
        params,
        tags,
        created_at,
    ) = row[:11]
    deleted, recorded_at, _recorded_by, creator = row[11:15]
    return LoggedModel(
        model_id=model_id,
        experiment_id=experiment_id,
        name=name,
        artifact_location=location,
        status=status,
        created_at=created_at,
        updated_at=recorded_at,
        source_run_id=run_id,
        status_message=message,
        model_type=model_type,
        params=_mapping(params),
        tags=_mapping(tags),
        deleted=bool(deleted),
        creator=creator,
    )


def _mapping(stored: Any) -> dict[str, str]:
    if not stored:
        return {}
    loaded = json.loads(stored) if isinstance(stored, str) else stored
    return {str(key): str(value) for key, value in dict(loaded).items()}
