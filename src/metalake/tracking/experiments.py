"""Experiments as things with an id, a lifecycle and tags (`lake.experiments`), for clients that need them.

metalake names an experiment by its name (`runs.experiment`); MLflow clients name it by an id. An experiment's id
is the one stored in its latest `experiments` row, else one derived from its name, so an experiment that only
runs mention (logged with `lake.runs.start`) has a stable id too, the same in every process and after a restart.
Renaming writes a row under the new name with the old id; the latest row of an id names the experiment, and
runs logged under an older name still belong to it. Every change is a new row: nothing is updated in place.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from metalake.errors import ExperimentExists, ExperimentNotFound, RunError

if TYPE_CHECKING:
    from metalake.core.tables import Tables

DEFAULT_EXPERIMENT = "Default"  # where MLflow clients log when they name no experiment
DEFAULT_EXPERIMENT_ID = "0"
Lifecycle = Literal["active", "deleted", "all"]
OPERATION = "experiment"
Renamed = Callable[[str, str, str], None]  # (kind, old name, new name), after a rename is committed


def experiment_id_for(name: str) -> str:
    """The id an experiment gets from its name until a row stores one: digits, as MLflow's ids are."""
    if name == DEFAULT_EXPERIMENT:
        return DEFAULT_EXPERIMENT_ID
    return str(int(hashlib.sha256(name.encode()).hexdigest()[:13], 16))


@dataclass(frozen=True)
class Experiment:
    """One experiment as it is now (or at the lake's moment)."""

    experiment_id: str
    name: str
    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    artifact_location: str | None = None
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    names: tuple[str, ...] = ()  # every name it had, the current one included: runs may carry any of them


class Experiments:
    """Create, find, rename, delete and restore experiments, and set their tags."""

    def __init__(self, tables: Tables, *, renamed: Renamed | None = None):
        """`renamed(kind, old, new)` is called after a rename is committed (the lake moves grants with it)."""
        self._tables = tables
        self._renamed = renamed
        self._cached: tuple[tuple[object, ...], list[Experiment]] | None = None

    def _current(self) -> list[Experiment]:
        """The experiments, computed again only when the experiments or runs tables have new commits."""
        versions = tuple(
            None if (loaded := self._tables.load(table)) is None else loaded.version()
            for table in ("experiments", "runs")
        )
        cached = self._cached
        if cached is None or cached[0] != versions:
            cached = (versions, _current(self._tables))
            self._cached = cached
        return cached[1]

    def list(self, *, lifecycle: Lifecycle = "active") -> list[Experiment]:
        """Every experiment, by name: those with a row, those that runs name, and `Default`."""
        found = self._current()
        if lifecycle != "all":
            found = [e for e in found if e.deleted == (lifecycle == "deleted")]
        return sorted(found, key=lambda e: e.name)

    def get(self, experiment_id: str) -> Experiment:
        for experiment in self._current():
            if experiment.experiment_id == experiment_id:
                return experiment
        raise ExperimentNotFound(f"id {experiment_id}", [])

    def by_name(self, name: str) -> Experiment:
        """The experiment that has this name now; one renamed away from it is not found by its old name."""
        for experiment in self._current():
            if experiment.name == name:
                return experiment
        raise ExperimentNotFound(name, [e.name for e in self._current()])

    def id_of(self, name: str) -> str:
        """The id of the experiment a run's `experiment` name belongs to (current or older name)."""
        return self.ids_by_name().get(name) or experiment_id_for(name)

    def ids_by_name(self) -> dict[str, str]:
        """Every name a run may carry -> its experiment's id (`id_of` for many runs at once)."""
        known = self._current()
        ids = {name: e.experiment_id for e in known for name in e.names}
        ids.update({e.name: e.experiment_id for e in known})  # a current name wins over an older one
        return ids

    def create(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        artifact_location: str | None = None,
        actor: str | None = None,
    ) -> Experiment:
        """A new experiment; ExperimentExists if one has the name (deleted ones too: restore it or rename)."""
        [row] = self._new_rows([name], tags, artifact_location)
        self._write([row], actor, f"create experiment {name!r}")
        return self.get(row["experiment_id"])

    def create_many(self, names: Sequence[str], *, actor: str | None = None) -> builtins.list[Experiment]:
        """New experiments in one commit (an import of many): all of them, or none if one name is taken."""
        rows = self._new_rows(names, None, None)
        if rows:
            self._write(rows, actor, f"create {len(rows)} experiments")
        created = {row["experiment_id"] for row in rows}
        return [experiment for experiment in self._current() if experiment.experiment_id in created]

    def _new_rows(
        self, names: Sequence[str], tags: Mapping[str, str] | None, artifact_location: str | None
    ) -> builtins.list[dict[str, Any]]:
        known = self._current()
        existing = {experiment.name: experiment for experiment in known}
        taken = {experiment.experiment_id for experiment in known}
        rows: builtins.list[dict[str, Any]] = []
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise RunError("An experiment needs a non-empty name.")
            if name in existing:
                raise ExperimentExists(name, deleted=existing[name].deleted)
            if name in seen:
                raise RunError(f"The experiment name {name!r} is given twice: give each name once.")
            seen.add(name)
            experiment_id, attempt = experiment_id_for(name), 0
            while experiment_id in taken:  # the name was an experiment's before it was renamed
                attempt += 1
                experiment_id = experiment_id_for(f"{name}\0{attempt}")
            taken.add(experiment_id)
            rows.append(
                {
                    "experiment": name,
                    "experiment_id": experiment_id,
                    "tags": _tags_json(tags or {}),
                    "artifact_location": artifact_location,
                    "deleted": False,
                }
            )
        return rows

    def rename(self, experiment_id: str, new_name: str, *, actor: str | None = None) -> Experiment:
        current = self.get(experiment_id)
        if not isinstance(new_name, str) or not new_name.strip():
            raise RunError("An experiment's new name must not be empty.")
        if new_name == current.name:
            return current
        for experiment in self._current():
            if experiment.name == new_name:
                raise ExperimentExists(new_name, deleted=experiment.deleted)
        self._write([_row(current, experiment=new_name)], actor, f"rename experiment {current.name!r}")
        if self._renamed is not None:
            self._renamed("experiment", current.name, new_name)
        return self.get(experiment_id)

    def delete(self, experiment_id: str, *, actor: str | None = None) -> None:
        current = self.get(experiment_id)
        if current.experiment_id == DEFAULT_EXPERIMENT_ID:
            raise RunError("The Default experiment (id 0) cannot be deleted.")
        self._write([_row(current, deleted=True)], actor, f"delete experiment {current.name!r}")

    def restore(self, experiment_id: str, *, actor: str | None = None) -> None:
        current = self.get(experiment_id)
        self._write([_row(current, deleted=False)], actor, f"restore experiment {current.name!r}")

    def set_tag(self, experiment_id: str, key: str, value: str, *, actor: str | None = None) -> None:
        current = self.get(experiment_id)
        if not isinstance(key, str) or not key:
            raise RunError("An experiment tag needs a non-empty key.")
        tags = {**current.tags, key: str(value)}
        self._write([_row(current, tags=_tags_json(tags))], actor, f"tag experiment {current.name!r}")

    def delete_tag(self, experiment_id: str, key: str, *, actor: str | None = None) -> None:
        current = self.get(experiment_id)
        if key not in current.tags:
            raise ExperimentNotFound(f"tag {key!r} of experiment {current.name!r}", sorted(current.tags))
        tags = {k: v for k, v in current.tags.items() if k != key}
        self._write([_row(current, tags=_tags_json(tags))], actor, f"untag experiment {current.name!r}")

    def _write(self, rows: Sequence[Mapping[str, Any]], actor: str | None, reason: str) -> None:
        self._tables.append("experiments", rows, actor=actor, reason=reason, operation=OPERATION)
        self._cached = None


def _row(current: Experiment, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "experiment": current.name,
        "experiment_id": current.experiment_id,
        "description": current.description,
        "owner": current.owner,
        "tags": _tags_json(current.tags),
        "artifact_location": current.artifact_location,
        "deleted": current.deleted,
    }
    row.update(changes)
    return row


def _tags_json(tags: Mapping[str, str]) -> str | None:
    return json.dumps(dict(tags), sort_keys=True) if tags else None


def _current(tables: Tables) -> list[Experiment]:
    """The experiments at the lake's moment: the latest row of each id, plus experiments only runs name."""
    rows = tables.sql(
        "select experiment, experiment_id, description, owner, tags, artifact_location, deleted, recorded_at "
        "from experiments order by recorded_at"
    ).fetchall()
    by_id: dict[str, dict[str, Any]] = {}
    for name, stored_id, description, owner, tags, location, deleted, recorded_at in rows:
        experiment_id = stored_id or experiment_id_for(name)
        known = by_id.setdefault(experiment_id, {"names": [], "created_at": recorded_at})
        known.update(
            name=name,
            description=description,
            owner=owner,
            tags=_tags(tags),
            artifact_location=location,
            deleted=bool(deleted),
            updated_at=recorded_at,
        )
        if name not in known["names"]:
            known["names"].append(name)
    named = {name for known in by_id.values() for name in known["names"]}
    run_names = tables.sql(
        "select experiment, min(start_time), max(last_event_time) from runs_current group by experiment"
    ).fetchall()
    for name, first, last in [(DEFAULT_EXPERIMENT, None, None), *run_names]:
        if name in named:
            continue
        named.add(name)
        by_id.setdefault(
            experiment_id_for(name),
            {"name": name, "names": [name], "created_at": first, "updated_at": last, "tags": {}},
        )
    return [
        Experiment(
            experiment_id=experiment_id,
            name=known["name"],
            description=known.get("description"),
            owner=known.get("owner"),
            tags=known.get("tags", {}),
            artifact_location=known.get("artifact_location"),
            deleted=known.get("deleted", False),
            created_at=known.get("created_at"),
            updated_at=known.get("updated_at"),
            names=tuple(known["names"]),
        )
        for experiment_id, known in by_id.items()
    ]


def _tags(stored: Any) -> dict[str, str]:
    if not stored:
        return {}
    loaded = json.loads(stored) if isinstance(stored, str) else stored
    return {str(key): str(value) for key, value in dict(loaded).items()}
