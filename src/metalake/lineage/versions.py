"""Dataset versions from OpenLineage schema facets: find or claim a version per schema seen, for `lake.lineage`.

A version is identified by its fingerprint (schema and datasetVersion facet): a schema seen before maps to its
version, a new one becomes the dataset's next number, claimed with the same per-(dataset, version) idempotency
key as `lake.datasets.register`, so concurrent writers never share a number. Numbers follow arrival; each version
records when it was seen (`observed_at`, the event time), so the current version, and the schema changes of a
version that arrives late, follow event time rather than arrival.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalake.datasets.datasets import VERSIONS_TABLE
from metalake.errors import VersionClaimConflict
from metalake.lineage.openlineage.events import canonical_json
from metalake.lineage.openlineage.rows import EventRows

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from metalake.core.tables import Tables

VERSION_CLAIM_ATTEMPTS = 10


def record_dataset_versions(
    tables: Tables, rows: EventRows, batch_key: str, prepared: dict[str, pa.Table]
) -> int:
    """Find or claim the dataset version of every schema observation; fill edge and validation versions.

    Returns how many versions were written.
    """
    if not rows.observations:
        return 0
    for _ in range(VERSION_CLAIM_ATTEMPTS):
        versions, new_rows = _assign_versions(tables, rows)
        if new_rows:
            table = tables.prepare(VERSIONS_TABLE, typed_frame(tables, VERSIONS_TABLE, new_rows))
            parts = [
                (f"dataset_version:{row['dataset']}:{row['version']}", table.slice(i, 1))
                for i, row in enumerate(new_rows)
            ]
            # The numbers were free in the state just read, which the commit starts from: a writer that claims
            # one since makes this commit conflict, and the retry checks every key.
            _, written = tables.commit(
                VERSIONS_TABLE,
                parts,
                operation="ingest_lineage",
                reason=f"lineage batch {batch_key}",
                keys_may_exist=False,
            )
            if not all(written):
                continue  # another writer claimed a number first: look again
        fill_versions(rows, versions, prepared)
        return len(new_rows)
    raise VersionClaimConflict(
        "Could not claim dataset version numbers after several attempts: too many concurrent writers. "
        "Send the batch again; events already stored are not written twice."
    )


def _stored_versions(tables: Tables, names: list[str]) -> list[dict[str, Any]]:
    """The stored versions of these datasets, with what `datasets.seen_at` needs to say when each was seen."""
    import polars as pl

    frame = (
        tables.scan(VERSIONS_TABLE)
        .filter(pl.col("dataset").is_in(names))
        .select(
            "dataset",
            "version",
            "fingerprint",
            "schema",
            "observed_at",
            "recorded_at",
            "source_format",
        )
        .sort("version")
        .collect()
    )
    return frame.to_dicts()


def _assign_versions(tables: Tables, rows: EventRows) -> tuple[list[int], list[dict[str, Any]]]:
    """Each observation's version number (per observation, in order) and the rows of the versions to claim."""
    from metalake.datasets.datasets import EARLIEST_SEEN, schema_changes, seen_at

    stored = _stored_versions(tables, sorted({o.dataset for o in rows.observations}))
    by_fingerprint = {(r["dataset"], r["fingerprint"]): int(r["version"]) for r in stored}
    numbers: dict[str, int] = {}
    # by dataset: (seen at, version, schema as JSON text or already parsed), parsed only when a change is computed;
    # a version seen at an unknown moment counts as seen before every other (EARLIEST_SEEN), higher numbers later
    seen: dict[str, list[tuple[datetime, int, str | list[dict[str, Any]] | None]]] = {}
    for r in stored:
        numbers[r["dataset"]] = int(r["version"])
        moment = seen_at(r) or EARLIEST_SEEN
        seen.setdefault(r["dataset"], []).append((moment, int(r["version"]), r["schema"]))
    new_rows: list[dict[str, Any]] = []
    for observation in sorted(rows.observations, key=lambda o: o.event_time):
        key = (observation.dataset, observation.fingerprint)
        if key in by_fingerprint:
            continue
        number = numbers.get(observation.dataset, 0) + 1
        observed = seen.setdefault(observation.dataset, [])
        late = bool(observed) and observation.event_time < max(t for t, _, _ in observed)
        # The changes are against the version seen just before in time, whatever the arrival order.
        earlier = [entry for entry in observed if entry[0] <= observation.event_time]
        changes = None
        if earlier:
            previous = max(earlier, key=lambda entry: entry[:2])[2]
            previous_schema = json.loads(previous or "[]") if not isinstance(previous, list) else previous
            changes = schema_changes(previous_schema, observation.schema)
        observed.append((observation.event_time, number, observation.schema))
        by_fingerprint[key] = number
        numbers[observation.dataset] = number
        new_rows.append(
            {
                "dataset": observation.dataset,
                "version": number,
                "fingerprint": observation.fingerprint,
                "row_count": observation.row_count,
                "bytes": observation.bytes,
                "file_count": observation.file_count,
                "schema": canonical_json(observation.schema),
                "source_uri": observation.source_uri,
                "source_format": "openlineage",
                "run_id": observation.run_id,
                "description": "schema reported in an OpenLineage event"
                + (f" (datasetVersion {observation.dataset_version})" if observation.dataset_version else "")
                + (", older than the dataset's latest observed schema" if late else ""),
                "schema_changes": None if changes is None else canonical_json([c.__dict__ for c in changes]),
                "observed_at": observation.event_time,
            }
        )
    versions = [by_fingerprint[(o.dataset, o.fingerprint)] for o in rows.observations]
    return versions, new_rows


def fill_versions(rows: EventRows, versions: list[int], prepared: dict[str, pa.Table]) -> None:
    """Put the resolved dataset versions on the edges and validations already prepared."""
    import pyarrow as pa

    if "lineage_edges" in prepared and rows.versioned_ends:
        edges = prepared["lineage_edges"]
        columns = {end: edges.column(f"{end}_version").to_pylist() for end in ("source", "target")}
        for edge_index, end, observation in rows.versioned_ends:
            columns[end][edge_index] = str(versions[observation])
        for end, values in columns.items():
            name = f"{end}_version"
            edges = edges.set_column(edges.schema.get_field_index(name), name, pa.array(values, pa.string()))
        prepared["lineage_edges"] = edges
    if "dq_validations" in prepared:
        table = prepared["dq_validations"]
        filled = [None if q.observation is None else versions[q.observation] for q in rows.quality]
        index = table.schema.get_field_index("version")
        prepared["dq_validations"] = table.set_column(index, "version", pa.array(filled, pa.int64()))


def typed_frame(tables: Tables, table: str, records: list[dict[str, Any]]) -> pl.DataFrame:
    """Row dicts as a polars frame of the table's types (the fast path of the contract check)."""
    return typed_columns(tables, table, {name: [r[name] for r in records] for name in records[0]})


def typed_columns(tables: Tables, table: str, columns: dict[str, list[Any]]) -> pl.DataFrame:
    """Columns of Python values as a polars frame of the table's types (the fast path of the contract check).

    Timestamps may come as epoch microseconds: building a column of datetime objects costs far more.
    """
    import polars as pl

    from metalake.core.contracts import polars_dtype

    specs = [c for c in tables.spec(table).columns if c.name in columns]
    times = [c.name for c in specs if c.type == "timestamp[us, UTC]" and isinstance(columns[c.name][0], int)]
    schema = {c.name: pl.Int64() if c.name in times else polars_dtype(c.type) for c in specs}
    frame = pl.DataFrame({c.name: columns[c.name] for c in specs}, schema=schema)
    return frame.with_columns(pl.col(name).cast(pl.Datetime("us", "UTC")) for name in times)
