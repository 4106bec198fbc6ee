"""The lake's own catalog: the specs in force, stored in the `_catalog` table so every reader sees the same tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.core.catalog import (
    AUDIT_COLUMNS,
    ColumnSpec,
    TableSpec,
    breaking_changes,
    bundled_dir,
    file_digest,
    load_spec_file,
    spec_files,
)
from metalake.core.contracts import conform
from metalake.core.delta import CommitInfo, DeltaStore
from metalake.errors import SchemaEvolutionError, SpecError

if TYPE_CHECKING:
    import pyarrow as pa

CATALOG_TABLE = "_catalog"
CATALOG_SPEC = TableSpec(
    name=CATALOG_TABLE,
    description="The table specs in force in this lake; the latest row per table_name wins.",
    columns=(
        ColumnSpec("table_name", "string", "Table the spec describes.", nullable=False),
        ColumnSpec("spec_json", "json", "The spec as canonical JSON.", nullable=False),
        ColumnSpec("source_digest", "string", "Hash of the YAML file the spec came from.", nullable=False),
        ColumnSpec(
            "origin",
            "string",
            "builtin (shipped with metalake) or the folder of a user's specs.",
            nullable=False,
        ),
        *AUDIT_COLUMNS,
    ),
    primary_key=("table_name",),
)


@dataclass(frozen=True)
class StoredSpec:
    spec: TableSpec
    digest: str
    origin: str


def read_catalog(store: DeltaStore, table: pa.Table | None = None) -> dict[str, StoredSpec]:
    """The latest stored spec per table (an empty dict for a lake that has none yet)."""
    columns = ["table_name", "spec_json", "source_digest", "origin", "recorded_at"]
    rows = store.small_table_rows(CATALOG_TABLE, columns) if table is None else table.to_pylist()
    latest: dict[str, tuple[Any, StoredSpec]] = {}
    for row in rows:
        stamp = row["recorded_at"]
        name = row["table_name"]
        if name in latest and latest[name][0] > stamp:
            continue
        spec = TableSpec.from_json(row["spec_json"], source=f"lake catalog ({row['origin']})")
        latest[name] = (stamp, StoredSpec(spec, row["source_digest"], row["origin"]))
    return {name: stored for name, (_, stored) in latest.items()}


def sync_catalog(store: DeltaStore, extra_specs: str | Path | None, actor: str) -> dict[str, TableSpec]:
    """Bring the lake's catalog up to date with the shipped specs and the user's folder.

    New tables are created and evolved ones gain their new columns; a breaking change raises
    SchemaEvolutionError before anything is written. A YAML file whose bytes the lake has already recorded is
    not parsed again, which keeps `connect()` fast.
    """
    stored = read_catalog(store)
    sources = [(path, "builtin") for path in spec_files(bundled_dir("tables"))]
    if extra_specs is not None:
        folder = Path(extra_specs).expanduser().resolve()
        sources += [(path, str(folder)) for path in spec_files(folder)]
    in_force = {name: entry.spec for name, entry in stored.items()}
    changed: list[dict[str, str]] = []
    to_prepare: list[TableSpec] = []
    seen: dict[str, Path] = {}
    for path, origin in sources:
        digest = file_digest(path)
        previous = stored.get(path.stem)
        if previous is not None and previous.digest == digest:
            seen[path.stem] = path
            continue
        spec = load_spec_file(path)
        if spec.name in seen:
            raise SpecError(f"Table {spec.name!r} is declared twice: {seen[spec.name]} and {path}.")
        seen[spec.name] = path
        if previous is not None:
            problems = breaking_changes(previous.spec, spec)
            if problems:
                raise SchemaEvolutionError(spec.name, problems)
        if previous is None or previous.spec.to_json() != spec.to_json():
            to_prepare.append(spec)
        changed.append(  # new, changed, or the same spec from a file whose bytes changed
            {"table_name": spec.name, "spec_json": spec.to_json(), "source_digest": digest, "origin": origin}
        )
        in_force[spec.name] = spec
    for spec in to_prepare:
        store.evolve(
            spec, CommitInfo(actor=actor, operation="create_table" if spec.name not in stored else "evolve")
        )
    if changed:
        rows = conform(CATALOG_SPEC, changed, actor=actor)
        store.commit(CATALOG_SPEC, rows, CommitInfo(actor=actor, operation="catalog_update"))
    return in_force


def shipped_specs(extra_specs: str | Path | None) -> dict[str, TableSpec]:
    """The specs from the shipped folder and the user's, read from disk alone: for a lake opened offline,
    where the stored catalog cannot be read (a lake's own catalog may hold newer specs; they win online)."""
    folders = [bundled_dir("tables")]
    if extra_specs is not None:
        folders.append(Path(extra_specs).expanduser().resolve())
    specs: dict[str, TableSpec] = {}
    for folder in folders:
        for path in spec_files(folder):
            spec = load_spec_file(path)
            specs[spec.name] = spec
    return specs
