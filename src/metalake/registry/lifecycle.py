"""Registered models as named things with a life of their own (part of `lake.registry`): created before any
version, described, tagged, renamed and deleted; and the tags, descriptions and deletion of versions.

Every change is a row appended to `models` (a model's creation, with its first description and tags) or to
`model_events` (`tag_set`, `tag_deleted`, `description_set`, `deleted`, `renamed`; `version` null for the model
itself), so the history stays in the events and `model_stage_history` and `Registry.at` keep answering about the
past. A model is live while its latest creation (a `models` row or a registered version) is newer than its latest
`deleted` or `renamed` event; a deleted model's versions are gone with it, and its version numbers are never given
again. A rename copies the live versions and their events under the new name (keeping their times) and then ends
the old name with a `renamed` event naming the new one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.ids import new_id
from metalake.errors import AlreadyExists, ModelNotFound, RegistryError

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Tables

EVENT_ORDER = ["event_time", "recorded_at", "event_id"]
ENDING_EVENTS = ("deleted", "renamed")

# The models that are live (by the tables' moment): created later than they were last deleted or renamed away.
LIVE_MODELS_SQL = """
with created as (
    select model, max(recorded_at) as moment from models group by model
    union all
    select model, max(recorded_at) as moment from model_versions group by model
),
ended as (
    select model, max(event_time) as moment from model_events
    where version is null and event_type in ('deleted', 'renamed') group by model
)
select c.model from (select model, max(moment) as moment from created group by model) as c
left join ended as e using (model)
where e.moment is null or c.moment > e.moment
order by c.model
"""


@dataclass(frozen=True)
class VersionNotes:
    """What is said about a version besides its stage and aliases: its current description and tags."""

    description: str | None
    tags: dict[str, str]
    updated_at: datetime


@dataclass(frozen=True)
class RegisteredModel:
    """A live registered model: its description, tags, times and the notes of its live versions."""

    name: str
    description: str | None
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime
    versions: dict[int, VersionNotes] = field(default_factory=dict)


def live_models(tables: Tables) -> list[str]:
    return [row[0] for row in tables.sql(LIVE_MODELS_SQL).fetchall()]


def removed_versions(versions: pl.DataFrame, events: pl.DataFrame) -> set[int]:
    """Versions deleted one by one, or with their model (deleted or renamed after they were registered)."""
    removed: set[int] = set()
    registered = {int(v): at for v, at in versions.select("version", "recorded_at").iter_rows()}
    for event in events.iter_rows(named=True):
        kind, version = event["event_type"], event["version"]
        if kind == "deleted" and version is not None:
            removed.add(int(version))
        elif kind in ENDING_EVENTS and version is None:
            removed |= {number for number, at in registered.items() if at <= event["event_time"]}
    return removed


class ModelLifecycle:
    """The writes and reads of this module over core's tables; `Registry` delegates to it."""

    def __init__(self, tables: Tables):
        self._tables = tables

    # -- reading --------------------------------------------------------------------------------------------

    def registered_model(self, model: str) -> RegisteredModel:
        """The live model `model`, else ModelNotFound naming the closest live models."""
        import polars as pl

        known = live_models(self._tables)
        if model not in known:
            raise ModelNotFound.unknown_model(model, known)
        rows = self._tables.read("models", where=pl.col("model") == model).sort("recorded_at")
        versions = self._tables.read("model_versions", where=pl.col("model") == model)
        events = self._events(model)
        removed = removed_versions(versions, events)
        ended = events.filter(pl.col("version").is_null() & pl.col("event_type").is_in(ENDING_EVENTS))
        if not ended.is_empty():  # a row from before the model was last deleted describes the old model
            rows = rows.filter(pl.col("recorded_at") > ended["event_time"].max())
        base = rows.row(-1, named=True) if not rows.is_empty() else None
        since = base["recorded_at"] if base else datetime.min.replace(tzinfo=UTC)
        description = base["description"] if base else None
        tags: dict[str, str] = json.loads(base["tags"]) if base and base["tags"] else {}
        first = [base["recorded_at"]] if base else []
        notes: dict[int, dict[str, Any]] = {}
        for row in versions.sort("recorded_at").iter_rows(named=True):
            number = int(row["version"])
            if number not in removed and number not in notes:
                notes[number] = {"description": row["description"], "tags": {}, "updated": row["recorded_at"]}
                first.append(row["recorded_at"])
        updated = max(first) if first else since
        for event in events.iter_rows(named=True):
            kind, version, moment = event["event_type"], event["version"], event["event_time"]
            if version is None:
                if moment <= since:
                    continue  # said before the latest models row, which holds the state as of then
                updated = max(updated, moment)
                if kind == "tag_set":
                    tags[event["key"]] = event["value"] or ""
                elif kind == "tag_deleted":
                    tags.pop(event["key"], None)
                elif kind == "description_set":
                    description = event["value"]
                continue
            note = notes.get(int(version))
            if note is None:
                continue
            note["updated"] = max(note["updated"], moment)
            updated = max(updated, moment)
            if kind == "tag_set":
                note["tags"][event["key"]] = event["value"] or ""
            elif kind == "tag_deleted":
                note["tags"].pop(event["key"], None)
            elif kind == "description_set":
                note["description"] = event["value"]
        return RegisteredModel(
            name=model,
            description=description,
            tags=tags,
            created_at=min(first) if first else since,
            updated_at=updated,
            versions={
                number: VersionNotes(note["description"], note["tags"], note["updated"])
                for number, note in sorted(notes.items())
            },
        )

    def has_record(self, model: str) -> bool:
        """Whether the live model `model` has a `models` row of its own (written since it was last deleted)."""
        import polars as pl

        rows = self._tables.read("models", where=pl.col("model") == model)
        if rows.is_empty():
            return False
        ended = self._events(model).filter(
            pl.col("version").is_null() & pl.col("event_type").is_in(ENDING_EVENTS)
        )
        return ended.is_empty() or bool(rows["recorded_at"].max() > ended["event_time"].max())  # type: ignore[operator]

    # -- writing --------------------------------------------------------------------------------------------

    def create(
        self, model: str, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> RegisteredModel:
        """A registered model without versions yet; AlreadyExists if a live model has the name."""
        if not model or not model.strip():
            raise RegistryError("A model needs a name, e.g. lake.registry.create_model('churn').")
        if model in live_models(self._tables):
            raise AlreadyExists(f"Registered Model (name={model}) already exists.")
        self._tables.append(
            "models",
            [
                {
                    "model": model,
                    "description": description,
                    "tags": json.dumps(dict(tags or {}), sort_keys=True),
                }
            ],
            operation="create_model",
            idempotency_key=f"model_created:{model}:{new_id()}",
        )
        return self.registered_model(model)

    def set_tag(self, model: str, key: str, value: str, *, version: int | None = None) -> None:
        self._check(model, version)
        if not key:
            raise RegistryError("A tag needs a non-empty key.")
        self._event(model, version, "tag_set", key=key, value=value)

    def delete_tag(self, model: str, key: str, *, version: int | None = None) -> None:
        """Remove a tag; ModelNotFound if the model (or version) has no tag `key`."""
        found = self.registered_model(model)
        tags = found.tags if version is None else self._notes(found, version).tags
        if key not in tags:
            what = f"version {version} of model {model!r}" if version is not None else f"model {model!r}"
            raise ModelNotFound(
                f"No tag with key {key!r} on {what} (tags: {', '.join(sorted(tags)) or 'none'})."
            )
        self._event(model, version, "tag_deleted", key=key)

    def set_description(self, model: str, description: str | None, *, version: int | None = None) -> None:
        self._check(model, version)
        self._event(model, version, "description_set", value=description)

    def delete_version(self, model: str, version: int) -> None:
        """Delete a version: gone from reads now, still in the history; its number is never given again."""
        self._check(model, version)
        self._event(model, version, "deleted")

    def delete(self, model: str) -> None:
        """Delete a model and its versions (their history stays in model_events)."""
        self._check(model, None)
        self._event(model, None, "deleted")

    def rename(self, model: str, new_name: str) -> RegisteredModel:
        """Give a model and its live versions a new name; the old name ends with a `renamed` event.

        The new name must be free and must never have held versions (version numbers of a name are never
        reused).
        """
        import polars as pl

        found = self.registered_model(model)
        if not new_name or not new_name.strip():
            raise RegistryError("The new name of a model cannot be empty.")
        if new_name in live_models(self._tables):
            raise AlreadyExists(f"Registered Model (name={new_name}) already exists.")
        if not self._tables.read("model_versions", where=pl.col("model") == new_name).is_empty():
            raise RegistryError(
                f"Cannot rename {model!r} to {new_name!r}: a deleted model of that name had versions, and "
                "version numbers are never reused under one name. Pick another name."
            )
        rename_id = new_id()
        numbers = list(found.versions)
        versions = self._tables.read("model_versions", where=pl.col("model") == model)
        copies = (
            versions.filter(pl.col("version").is_in(numbers))
            .sort("recorded_at")
            .unique(["version"], keep="first", maintain_order=True)
            .drop("recorded_at", "recorded_by", strict=False)
            .with_columns(pl.lit(new_name).alias("model"))
        )
        if not copies.is_empty():
            self._tables.append(
                "model_versions",
                copies,
                operation="rename_model",
                idempotency_key=f"rename:{rename_id}:versions",
            )
        self._tables.append(
            "models",
            [
                {
                    "model": new_name,
                    "description": found.description,
                    "tags": json.dumps(found.tags, sort_keys=True),
                }
            ],
            operation="rename_model",
            idempotency_key=f"rename:{rename_id}:model",
        )
        events = self._events(model).filter(pl.col("version").is_in(numbers))
        if not events.is_empty():
            moved = events.drop("recorded_at", "recorded_by", strict=False).with_columns(
                pl.lit(new_name).alias("model"),
                pl.Series("event_id", [new_id() for _ in range(events.height)]),
            )
            self._tables.append(
                "model_events", moved, operation="rename_model", idempotency_key=f"rename:{rename_id}:events"
            )
        self._event(model, None, "renamed", value=new_name, reason=f"renamed to {new_name}")
        return self.registered_model(new_name)

    # -- internals ------------------------------------------------------------------------------------------

    def _check(self, model: str, version: int | None) -> None:
        found = self.registered_model(model)
        if version is not None:
            self._notes(found, version)

    @staticmethod
    def _notes(found: RegisteredModel, version: int) -> VersionNotes:
        notes = found.versions.get(version)
        if notes is None:
            known = ", ".join(str(v) for v in found.versions) or "none"
            raise ModelNotFound(f"Model {found.name!r} has no version {version} (versions: {known}).")
        return notes

    def _events(self, model: str) -> pl.DataFrame:
        import polars as pl

        return self._tables.read("model_events", where=pl.col("model") == model).sort(EVENT_ORDER)

    def _event(self, model: str, version: int | None, event_type: str, **fields: Any) -> None:
        row = {
            "event_id": new_id(),
            "model": model,
            "version": version,
            "event_type": event_type,
            "event_time": datetime.now(UTC),
            **fields,
        }
        self._tables.append(
            "model_events",
            [row],
            operation=event_type,
            reason=fields.get("reason"),
            idempotency_key=f"model_event:{row['event_id']}",
        )
