"""MLflow model registry -> `models`, `model_versions` and `model_events` (part of the MLflow importer)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from metalake.core.vocabulary import STAGES
from metalake.integrations.mlflow.common import (
    EPOCH,
    EVENT_COLUMNS,
    MODEL_VERSION_PAGE_SIZE,
    ONE_MICROSECOND,
    SEARCH_PAGE_SIZE,
    SOURCE,
    VERSION_COLUMNS,
    ImportSummary,
    Writer,
    changed_rows,
    ms,
    optional_text,
    paged,
    tags_json,
    typed_frame,
)

if TYPE_CHECKING:
    from metalake.integrations.mlflow.common import Progress
    from metalake.lake import Lake


def import_registry(
    lake: Lake,
    writer: Writer,
    client: Any,
    run_ids: set[str] | None,
    summary: ImportSummary,
    report: Progress,
) -> None:
    """Registered models and versions, then their events; with an experiment filter, only the versions the
    imported runs produced (and the models that hold them)."""
    models = paged(client.search_registered_models, max_results=SEARCH_PAGE_SIZE)
    model_names = {str(model.name) for model in models}
    versions = [
        version
        for version in paged(client.search_model_versions, max_results=MODEL_VERSION_PAGE_SIZE)
        if version.name in model_names and (run_ids is None or version.run_id in run_ids)
    ]
    if run_ids is not None:
        models = [model for model in models if model.name in {version.name for version in versions}]
    report("models", 0, len(models))
    in_models = pl.col("model").is_in([str(model.name) for model in models])

    current = [
        {"model": model.name, "description": optional_text(model.description), "tags": tags_json(model.tags)}
        for model in models
    ]
    model_rows = typed_frame(lake, "models", current, ["model", "description", "tags"])
    changed_models, replaced_models = changed_rows(lake, "models", model_rows, ["model"], in_models)
    known_versions = lake.read("model_versions", columns=["model", "version", "description"], where=in_models)
    log = _EventLog(lake.read("model_events", columns=[*EVENT_COLUMNS, "recorded_at"], where=in_models))
    new_versions = _version_changes(models, versions, known_versions, log)

    summary.models += writer.append("models", changed_models, replaced_models)
    summary.model_versions += writer.append(
        "model_versions", typed_frame(lake, "model_versions", new_versions, VERSION_COLUMNS)
    )
    summary.model_events += writer.append(
        "model_events", typed_frame(lake, "model_events", log.added, EVENT_COLUMNS)
    )
    report("models", len(models), len(models))


class _EventLog:
    """The lake's model events as the current state per key (a version's stage, an alias, a tag), to which
    the import adds the events that bring each key to MLflow's state."""

    def __init__(self, known: pl.DataFrame):
        self.ids = set(known.get_column("event_id").to_list())
        self.state: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.counts: Counter[tuple[Any, ...]] = Counter()
        # The tags of each version and the aliases of each model that have events: ("tag", model, version)
        # -> {key}, ("alias", model) -> {alias}.
        self.names: dict[tuple[Any, ...], set[Any]] = defaultdict(set)
        self.added: list[dict[str, Any]] = []
        for row in known.sort(["event_time", "recorded_at", "event_id"]).iter_rows(named=True):
            self._record(row)

    @staticmethod
    def key_of(event: Mapping[str, Any]) -> tuple[Any, ...]:
        kind = str(event["event_type"])
        if kind.startswith("alias_"):
            return ("alias", event["model"], event["alias"])
        if kind.startswith("tag_"):
            return ("tag", event["model"], event["version"], event["key"])
        if kind == "stage_transition":
            return ("stage", event["model"], event["version"])
        if kind == "description_set":
            return ("description", event["model"], event["version"])
        return (kind, event["model"], event["version"])

    def add(self, moment: datetime, **event: Any) -> None:
        """Record an event dated `moment`, or just after the key's previous event if that is later."""
        key = self.key_of(event)
        previous = self.state.get(key)
        if previous is not None:
            moment = max(moment, previous["event_time"] + ONE_MICROSECOND)
        sequence = self.counts[key]
        event_id = "mlflow:" + ":".join(str(part) for part in key) + f":{sequence}"
        while event_id in self.ids:
            sequence += 1
            event_id = "mlflow:" + ":".join(str(part) for part in key) + f":{sequence}"
        row = dict.fromkeys(EVENT_COLUMNS) | event | {"event_id": event_id, "event_time": moment}
        self.ids.add(event_id)
        self._record(row)
        self.added.append(row)

    def _record(self, row: dict[str, Any]) -> None:
        key = self.key_of(row)
        self.state[key] = row
        self.counts[key] += 1
        self.names[key[:-1]].add(key[-1])


def _version_changes(
    models: list[Any], versions: list[Any], known_versions: pl.DataFrame, log: _EventLog
) -> list[dict[str, Any]]:
    """New model_versions rows; and, into `log`, registration, stage, tag, description and alias events.

    MLflow does not record when an alias or tag changed: their events carry the version's last update time.
    """
    descriptions = {(m, v): d for m, v, d in known_versions.iter_rows()}
    rows = []
    present: dict[str, dict[int, Any]] = defaultdict(dict)
    for version in sorted(versions, key=lambda v: (str(v.name), int(v.version))):
        model, number = str(version.name), int(version.version)
        present[model][number] = version
        updated = ms(version.last_updated_timestamp) or ms(version.creation_timestamp) or EPOCH
        description = optional_text(version.description)
        if (model, number) not in descriptions:
            rows.append(
                {
                    "model": model,
                    "version": number,
                    "run_id": optional_text(version.run_id),
                    "artifact_uri": optional_text(version.source) or f"models:/{model}/{number}",
                    "description": description,
                    "source": SOURCE,
                }
            )
        else:
            described = log.state.get(("description", model, number))
            if (described["value"] if described else descriptions[(model, number)]) != description:
                log.add(updated, model=model, version=number, event_type="description_set", value=description)
        if log.state.get(("registered", model, number)) is None:
            created = ms(version.creation_timestamp) or updated
            log.add(created, model=model, version=number, event_type="registered")
        stage = str(version.current_stage or "none").lower()
        staged = log.state.get(("stage", model, number))
        if stage in STAGES and stage != (staged["stage"] if staged else "none"):
            log.add(updated, model=model, version=number, event_type="stage_transition", stage=stage)
        _tag_events(log, model, number, version.tags or {}, updated)
    for model in models:
        _alias_events(log, model, present[str(model.name)])
    return rows


def _tag_events(log: _EventLog, model: str, number: int, tags: Mapping[str, Any], moment: datetime) -> None:
    for key, value in sorted(tags.items()):
        current = log.state.get(("tag", model, number, key))
        if current is None or current["event_type"] != "tag_set" or current["value"] != str(value):
            log.add(moment, model=model, version=number, event_type="tag_set", key=key, value=str(value))
    for key in sorted(log.names[("tag", model, number)] - set(tags)):
        if log.state[("tag", model, number, key)]["event_type"] == "tag_set":
            log.add(moment, model=model, version=number, event_type="tag_deleted", key=key)


def _alias_events(log: _EventLog, model: Any, versions: Mapping[int, Any]) -> None:
    """Aliases set or moved in MLflow become alias_set events; aliases gone from MLflow, alias_deleted.

    An alias on a version left out of the import (another experiment's run) counts as gone.
    """
    name = str(model.name)
    aliases = {
        str(alias): int(number)
        for alias, number in (getattr(model, "aliases", None) or {}).items()
        if int(number) in versions
    }
    for alias, number in sorted(aliases.items()):
        current = log.state.get(("alias", name, alias))
        if current is None or current["event_type"] != "alias_set" or current["version"] != number:
            moment = ms(versions[number].last_updated_timestamp) or ms(model.last_updated_timestamp)
            log.add(moment or EPOCH, model=name, version=number, event_type="alias_set", alias=alias)
    for alias in sorted(log.names[("alias", name)] - set(aliases)):
        current = log.state[("alias", name, alias)]
        if current["event_type"] == "alias_set":
            moment = ms(model.last_updated_timestamp) or EPOCH
            log.add(moment, model=name, version=current["version"], event_type="alias_deleted", alias=alias)
