"""Datasets as metadata: `lake.datasets.register(...)` records versions (fingerprint, schema, profile) and diffs them."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from metalake.datasets.profile import (
    ColumnSchema,
    Scan,
    Source,
    base_type,
    resolve_source,
    scan_source,
    source_relation,
)
from metalake.errors import DatasetError, DatasetNotFound

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

    from metalake.core.tables import Tables

VERSIONS_TABLE = "dataset_versions"
DATASETS_TABLE = "datasets"
REGISTER_ATTEMPTS = 20
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
SchemaChangeKind = Literal["added", "removed", "type_changed"]
# Type changes that every reader of the old type can still follow (a value always fits the new type).
_WIDENINGS = {
    "TINYINT": {"SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"},
    "SMALLINT": {"INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"},
    "INTEGER": {"BIGINT", "HUGEINT", "DOUBLE"},
    "BIGINT": {"HUGEINT"},
    "FLOAT": {"DOUBLE"},
    "DATE": {"TIMESTAMP"},
}
PROFILE_STATISTICS = ("null_count", "distinct_estimate", "min", "max", "mean")


@dataclass(frozen=True)
class SchemaChange:
    """One column that differs between two versions' schemas."""

    column: str
    change: SchemaChangeKind
    old_type: str | None
    new_type: str | None
    breaking: bool

    def describe(self) -> str:
        flag = " (breaking)" if self.breaking else ""
        if self.change == "added":
            return f"+ {self.column} {self.new_type}{flag}"
        if self.change == "removed":
            return f"- {self.column} {self.old_type}{flag}"
        return f"~ {self.column} {self.old_type} -> {self.new_type}{flag}"


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset: what its data was (fingerprint, schema, profile) and where."""

    name: str
    version: int
    fingerprint: str
    row_count: int | None  # None for versions known only by their schema (OpenLineage schema facets)
    bytes: int | None
    file_count: int | None
    schema: list[dict[str, Any]]
    profile: dict[str, dict[str, Any]]
    source_uri: str | None
    source_format: str | None
    delta_version: int | None = None
    schema_changes: list[SchemaChange] | None = None
    source_signature: str | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None
    run_id: str | None = None
    # When an OpenLineage event first reported this version's schema (None: seen when recorded)
    observed_at: datetime | None = None
    # False when `register` found the same content already recorded and returned that version.
    created: bool = field(default=True, compare=False)
    # True when `register` recorded a new description, owner or tags for the dataset.
    metadata_updated: bool = field(default=False, compare=False)

    @property
    def sensitive_columns(self) -> list[str]:
        """The columns marked sensitive (`register(sensitive=...)`, kept by later versions)."""
        return [str(entry["name"]) for entry in self.schema if entry.get("sensitive")]

    @property
    def breaking(self) -> bool:
        """True when the schema changed in a way that readers of the previous version may not follow."""
        return any(change.breaking for change in self.schema_changes or [])

    @property
    def columns(self) -> list[str]:
        return [column["name"] for column in self.schema]


@dataclass(frozen=True)
class DatasetDiff:
    """How two versions of a dataset differ: schema changes, and each column's profile side by side."""

    name: str
    old_version: int
    new_version: int
    schema_changes: list[SchemaChange]
    row_count: tuple[int | None, int | None]
    profile: pl.DataFrame  # column, statistic, old, new, changed

    @property
    def breaking(self) -> bool:
        return any(change.breaking for change in self.schema_changes)


def schema_changes(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[SchemaChange]:
    """Added, removed and type-changed columns from `old` to `new`; removals and narrowing types are breaking."""
    old_types = {str(c["name"]): str(c["type"]) for c in old}
    new_types = {str(c["name"]): str(c["type"]) for c in new}
    changes = []
    for name, old_type in old_types.items():
        if name not in new_types:
            changes.append(SchemaChange(name, "removed", old_type, None, breaking=True))
        elif new_types[name] != old_type:
            widening = base_type(new_types[name]) in _WIDENINGS.get(base_type(old_type), set())
            changes.append(
                SchemaChange(name, "type_changed", old_type, new_types[name], breaking=not widening)
            )
    for name, new_type in new_types.items():
        if name not in old_types:
            changes.append(SchemaChange(name, "added", None, new_type, breaking=False))
    return changes


def check_dataset_name(name: str) -> None:
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise DatasetError(
            f"{name!r} is not a valid dataset name: start with a letter or digit, then letters, digits, "
            "'.', '_', '-' or '/' (at most 200 characters)."
        )


class Datasets:
    """`lake.datasets`: register dataset versions, list them, show one, and diff two."""

    def __init__(self, tables: Tables):
        self._tables = tables

    # -- registering ----------------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        source: Any,
        *,
        description: str | None = None,
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
        storage_options: Mapping[str, str] | None = None,
        sensitive: Sequence[str] = (),
    ) -> DatasetVersion:
        """Record a version of dataset `name` from files, a folder, a Delta table or an in-memory frame.

        `sensitive` marks columns whose values are sensitive (customer ids, emails): a reader without `unmask`
        sees only their counts in the profile, since min, max and top values reveal values. A new version keeps
        the marks of the one before; columns whose names match the secret patterns (`*email*`, ...) are hidden
        without a mark. Marks go with a new version: content already registered keeps its own.

        The data is streamed once (DuckDB) for its row count, content fingerprint and per-column profile.
        Content that is already a version of the dataset returns that version (`.created` is False) and
        records no version; a new description, owner or tags is still recorded (`.metadata_updated`).
        Version numbers are claimed with an idempotency key per (dataset, version), so two concurrent
        registrations never put different contents under one number: the loser takes the next. Both rows
        (the version, then the dataset's description) are checked against their contracts before either is
        written.
        """
        check_dataset_name(name)
        if self._tables.read_only:
            from metalake.errors import ReadOnlyLakeError

            raise ReadOnlyLakeError(
                "This lake shows the past: register datasets through the live lake returned by metalake.connect()."
            )
        source_info = resolve_source(source, storage_options)
        scan = scan_source(source_info)
        unknown = sorted(set(sensitive) - {column.name for column in scan.schema})
        if unknown:
            raise DatasetError(
                f"Columns marked sensitive are not in {source_info.uri}: {', '.join(unknown)}. Mark some of its "
                f"columns: {', '.join(column.name for column in scan.schema)}."
            )
        if scan.row_count == 0:
            raise DatasetError(
                f"{source_info.uri} holds no rows: an empty dataset is not registered. "
                "Check the path, or that the job that writes the data has finished."
            )
        description_row = self._dataset_row(name, description=description, owner=owner, tags=tags)
        for _ in range(REGISTER_ATTEMPTS):
            versions = self._version_rows(name)
            existing = next((r for r in versions if r["fingerprint"] == scan.fingerprint), None)
            if existing is not None:
                updated = self._commit_dataset_row(name, description_row)
                return _version_from_row(existing, created=False, metadata_updated=updated)
            previous = versions[-1] if versions else None
            row = _version_row(name, previous, source_info, scan, run_id, sensitive)
            prepared = self._tables.prepare(VERSIONS_TABLE, [row])
            _, written = self._tables.commit(
                VERSIONS_TABLE,
                [(f"dataset_version:{name}:{row['version']}", prepared)],
                operation="register_dataset",
                reason=f"register {name} v{row['version']} from {source_info.uri}",
            )
            if written[0]:
                updated = self._commit_dataset_row(name, description_row)
                stored = next(r for r in self._version_rows(name) if r["version"] == row["version"])
                # As recorded: with recorded_at and recorded_by.
                return _version_from_row(stored, created=True, metadata_updated=updated)
            # Another writer claimed this version number first: look again (it may be our content).
        raise DatasetError(
            f"Could not claim a version number for dataset {name!r} after {REGISTER_ATTEMPTS} attempts: "
            "too many concurrent registrations. Try again."
        )

    def _dataset_row(
        self,
        name: str,
        *,
        description: str | None,
        owner: str | None,
        tags: Mapping[str, str] | None,
    ) -> tuple[str, Any] | None:
        """The `datasets` row to write (idempotency key, batch checked against the contract), or None.

        A row is due when the dataset is new or its description, owner or tags change.
        """
        import polars as pl

        rows = self._tables.read(DATASETS_TABLE, where=pl.col("dataset") == name).sort("recorded_at")
        current = rows.row(-1, named=True) if rows.height else None
        wanted = {
            "dataset": name,
            "description": description,
            "owner": owner,
            "tags": dict(tags) if tags is not None else None,
        }
        if current is not None:
            given = {key: value for key, value in wanted.items() if value is not None}
            stored = {**current, "tags": json.loads(current["tags"]) if current["tags"] else None}
            if all(stored.get(key) == value for key, value in given.items()):
                return None
            wanted = {key: stored.get(key) if value is None else value for key, value in wanted.items()}
        digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
        return f"dataset:{name}:{rows.height}:{digest}", self._tables.prepare(DATASETS_TABLE, [wanted])

    def _commit_dataset_row(self, name: str, prepared: tuple[str, Any] | None) -> bool:
        """Write the prepared `datasets` row; True when it was written (not there already)."""
        if prepared is None:
            return False
        _, written = self._tables.commit(
            DATASETS_TABLE, [prepared], operation="register_dataset", reason=f"describe dataset {name}"
        )
        return written[0]

    def resolve_input(
        self, name: str, *, version: int | None = None, path: str | None = None
    ) -> DatasetVersion:
        """The dataset version a run read, for `run.log_input`: registers `path` if given, else looks it up.

        Without a version, the latest one. Raises DatasetNotFound when the dataset or version is unknown.
        """
        if path is not None and version is None:
            return self.register(name, path)
        return self.get(name, version)

    # -- reading --------------------------------------------------------------------------------------------

    def _version_rows(self, name: str) -> list[dict[str, Any]]:
        import polars as pl

        frame = self._tables.read(VERSIONS_TABLE, where=pl.col("dataset") == name).sort("version")
        return frame.to_dicts()

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        """One version of a dataset (the latest by default)."""
        rows = self._version_rows(name)
        if not rows:
            raise DatasetNotFound(name, self.names())
        if version is None:
            return _version_from_row(max(rows, key=_seen_order), created=False)
        for row in rows:
            if row["version"] == version:
                return _version_from_row(row, created=False)
        raise DatasetNotFound(name, [row["version"] for row in rows], version=version)

    def names(self) -> list[str]:
        frame = self._tables.read(VERSIONS_TABLE, columns=["dataset"])
        return sorted(set(frame.get_column("dataset").to_list()))

    def list(self) -> pl.DataFrame:
        """Every dataset with its latest version: the `dataset_versions_current` view."""
        frame: pl.DataFrame = self._tables.sql("select * from dataset_versions_current order by dataset").pl()
        return frame

    def history(self, name: str) -> pl.DataFrame:
        """Every version of a dataset, oldest first: size, fingerprint, source and schema changes."""
        import polars as pl

        rows = self._version_rows(name)
        if not rows:
            raise DatasetNotFound(name, self.names())
        records = []
        for row in rows:
            changes = [SchemaChange(**c) for c in json.loads(row["schema_changes"] or "[]")]
            records.append(
                {
                    "version": row["version"],
                    "rows": row["row_count"],
                    "bytes": row["bytes"],
                    "files": row["file_count"],
                    "fingerprint": (row["fingerprint"] or "")[:12],
                    "schema_changes": ", ".join(c.describe() for c in changes),
                    "breaking": any(c.breaking for c in changes),
                    "source": row["source_uri"],
                    "recorded_at": row["recorded_at"],
                    "recorded_by": row["recorded_by"],
                }
            )
        return pl.DataFrame(records)

    def diff(self, name: str, v1: int, v2: int) -> DatasetDiff:
        """Schema changes from v1 to v2 and each column's profile statistics side by side."""
        import polars as pl

        old, new = self.get(name, v1), self.get(name, v2)
        records = []
        for column in dict.fromkeys([*old.columns, *new.columns]):
            old_stats, new_stats = old.profile.get(column, {}), new.profile.get(column, {})
            for statistic in PROFILE_STATISTICS:
                if statistic not in old_stats and statistic not in new_stats:
                    continue
                before, after = old_stats.get(statistic), new_stats.get(statistic)
                records.append(
                    {
                        "column": column,
                        "statistic": statistic,
                        "old": None if before is None else str(before),
                        "new": None if after is None else str(after),
                        "changed": before != after,
                    }
                )
        schema = {"column": pl.String, "statistic": pl.String, "old": pl.String, "new": pl.String}
        profile = pl.DataFrame(records, schema={**schema, "changed": pl.Boolean})
        return DatasetDiff(
            name=name,
            old_version=v1,
            new_version=v2,
            schema_changes=schema_changes(old.schema, new.schema),
            row_count=(old.row_count, new.row_count),
            profile=profile,
        )

    # -- the data of a version ------------------------------------------------------------------------------

    def to_pandas(
        self,
        name: str,
        version: int | None = None,
        *,
        columns: Sequence[str] | None = None,
        data: Any = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> tuple[DatasetVersion, pd.DataFrame]:
        """A version's data as pandas (only `columns` if given; missing ones are left out), checked to be it.

        Files are re-read from the recorded source; when their names, sizes or times changed since
        registration, their content fingerprint is recomputed and must still match. A version registered
        from an in-memory frame needs that frame again as `data`.
        """
        dataset_version = self.get(name, version)
        return dataset_version, self.frame_of(
            dataset_version, columns=columns, data=data, storage_options=storage_options
        )

    def frame_of(
        self,
        dataset_version: DatasetVersion,
        *,
        columns: Sequence[str] | None = None,
        data: Any = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """`to_pandas` for a version already looked up. Read through Arrow: much faster than row conversion."""
        import pandas as pd

        source = self._source_of(dataset_version, data, storage_options)
        # The data's own column order, whatever order `columns` has: a suite may check the order.
        wanted = None if columns is None else [c for c in dataset_version.columns if c in set(columns)]
        with source_relation(source) as (connection, select):
            if wanted == []:  # none of the columns exist: the rows, without columns
                counted = connection.sql(f"SELECT count(*) FROM ({select})").fetchall()
                return pd.DataFrame(index=pd.RangeIndex(int(counted[0][0])))
            result = connection.sql(source.read_sql(wanted)).arrow()
            table = result.read_all() if hasattr(result, "read_all") else result
        frame: pd.DataFrame = table.to_pandas()
        return frame

    def _source_of(
        self, dataset_version: DatasetVersion, data: Any, storage_options: Mapping[str, str] | None
    ) -> Source:
        label = f"{dataset_version.name} v{dataset_version.version}"
        uri = dataset_version.source_uri or ""
        if data is not None:
            source = resolve_source(data, storage_options)
        elif uri.startswith("memory:"):
            raise DatasetError(
                f"{label} was registered from an in-memory frame, which the lake does not keep: pass the "
                "same frame again as `data=`."
            )
        elif dataset_version.source_format == "delta":
            from metalake.datasets.profile import delta_source

            source = delta_source(uri, storage_options, version=dataset_version.delta_version)
        else:
            try:
                source = resolve_source(uri, storage_options)
            except DatasetError as error:
                raise DatasetError(f"The data of {label} cannot be read any more: {error}") from error
        if source.signature is not None and source.signature == dataset_version.source_signature:
            return source
        if scan_source(source).fingerprint != dataset_version.fingerprint:
            raise DatasetError(
                f"The data at {source.uri} is no longer {label}: its content changed since it was registered. "
                f"Register it as a new version (`metalake datasets register {dataset_version.name} PATH`) "
                "and validate that one."
            )
        return source


def _version_row(
    name: str,
    previous: Mapping[str, Any] | None,
    source: Source,
    scan: Scan,
    run_id: str | None,
    sensitive: Sequence[str] = (),
) -> dict[str, Any]:
    previous_schema = json.loads(previous["schema"] or "[]") if previous is not None else []
    marked = {*sensitive, *(str(entry["name"]) for entry in previous_schema if entry.get("sensitive"))}
    schema = [_schema_entry(column, column.name in marked) for column in scan.schema]
    changes = None
    if previous is not None:
        changes = [c.__dict__ for c in schema_changes(previous_schema, schema)]
    return {
        "dataset": name,
        "version": 1 if previous is None else int(previous["version"]) + 1,
        "fingerprint": scan.fingerprint,
        "row_count": scan.row_count,
        "bytes": source.bytes,
        "file_count": source.file_count,
        "schema": schema,
        "profile": scan.profile,
        "source_uri": source.uri,
        "source_format": source.format,
        "delta_version": source.delta_version,
        "run_id": run_id,
        "schema_changes": changes,
        "source_signature": source.signature,
    }


def _schema_entry(column: ColumnSchema, sensitive: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": column.name, "type": column.type, "nullable": column.nullable}
    if sensitive:  # only when marked, so versions registered before marks existed read the same
        entry["sensitive"] = True
    return entry


def _load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# Sorts a version seen at an unknown moment (seen_at None) before every other
EARLIEST_SEEN = datetime.min.replace(tzinfo=UTC)


def seen_at(row: Mapping[str, Any]) -> datetime | None:
    """When a version was seen: observed_at; a registered version when it was recorded; None (unknown, before all
    others) for a version an OpenLineage event reported before metalake kept observed_at.

    The current version is the one seen last: OpenLineage events may report an older schema after a newer one.
    `dataset_versions_current` applies the same rule in SQL.
    """
    seen: datetime | None = row.get("observed_at")
    if seen is None and row.get("source_format") != "openlineage":
        seen = row["recorded_at"]
    return seen


def _seen_order(row: Mapping[str, Any]) -> tuple[datetime, int]:
    return (seen_at(row) or EARLIEST_SEEN, row["version"])


def _version_from_row(
    row: Mapping[str, Any], *, created: bool, metadata_updated: bool = False
) -> DatasetVersion:
    changes = _load_json(row.get("schema_changes"))
    return DatasetVersion(
        name=row["dataset"],
        version=int(row["version"]),
        fingerprint=row["fingerprint"],
        row_count=None if row["row_count"] is None else int(row["row_count"]),
        bytes=row["bytes"],
        file_count=row["file_count"],
        schema=_load_json(row["schema"]) or [],
        profile=_load_json(row["profile"]) or {},
        source_uri=row["source_uri"],
        source_format=row["source_format"],
        delta_version=row["delta_version"],
        schema_changes=None if changes is None else [SchemaChange(**c) for c in changes],
        source_signature=row.get("source_signature"),
        recorded_at=row.get("recorded_at"),
        recorded_by=row.get("recorded_by"),
        run_id=row.get("run_id"),
        observed_at=row.get("observed_at"),
        created=created,
        metadata_updated=metadata_updated,
    )
