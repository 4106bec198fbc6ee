"""Retention for `maintain`: delete files no table version needs any more, never those a named snapshot pins."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from metalake.core.delta import TableMaintenance
from metalake.core.tables import SNAPSHOTS_TABLE

if TYPE_CHECKING:
    from metalake.core.catalog import TableSpec
    from metalake.core.delta import DeltaStore
    from metalake.core.tables import Tables


def vacuum(
    store: DeltaStore, tables: Tables, specs: list[TableSpec], days: float, *, dry_run: bool
) -> list[TableMaintenance]:
    """Delete files unreferenced for longer than `days`, keeping every file a named snapshot pins."""
    pinned = _snapshot_versions(tables)
    results = []
    for spec in specs:
        started = datetime.now(UTC)
        files = store.vacuum(
            spec.name,
            retention_hours=math.ceil(days * 24),
            keep_versions=pinned.get(spec.name, []),
            dry_run=dry_run,
            actor=tables.actor,
        )
        if not files:
            continue
        verb = "would delete" if dry_run else "deleted"
        kept = f", {len(pinned.get(spec.name, []))} snapshot version(s) kept" if pinned.get(spec.name) else ""
        results.append(
            TableMaintenance(
                spec.name,
                f"vacuum: {verb} {len(files)} file(s) unreferenced for {days:g}+ days{kept}",
                len(files),
                0,
                tables.version(spec.name),
                (datetime.now(UTC) - started).total_seconds(),
            )
        )
    return results


def _snapshot_versions(tables: Tables) -> dict[str, list[int]]:
    pins = tables.read(SNAPSHOTS_TABLE, columns=["table_name", "table_version"])
    versions: dict[str, list[int]] = {}
    for table, version in pins.iter_rows():
        if version is not None:
            versions.setdefault(table, []).append(int(version))
    return versions
