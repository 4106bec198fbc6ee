"""Table specs: `tables/*.yaml` -> TableSpec, the single source of each table's Arrow schema, contract and docs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from metalake.core.vocabulary import (
    MASK_KINDS,
    SENSITIVITIES,
    STRING_ONLY_MASKS,
    MaskKind,
    Sensitivity,
)
from metalake.errors import SpecError

if TYPE_CHECKING:
    import pyarrow as pa

ColumnType = Literal[
    "string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp[us, UTC]", "binary", "json"
]
COLUMN_TYPES: frozenset[str] = frozenset(get_args(ColumnType))

CheckName = Literal["ge", "gt", "le", "lt", "isin", "str_length", "str_matches"]
CHECK_NAMES: frozenset[str] = frozenset(get_args(CheckName))

TABLE_KEYS = frozenset(
    {"name", "description", "primary_key", "partition_by", "cluster_by", "key_value", "columns"}
)
COLUMN_KEYS = frozenset({"name", "type", "nullable", "description", "checks", "sensitivity", "mask"})
# The mask a sensitive column gets when its spec names none: a keyed hash keeps joins and counts working on text;
# other types can only be hidden whole.
DEFAULT_STRING_MASK: MaskKind = "hash"
DEFAULT_OTHER_MASK: MaskKind = "null"

RECORDED_AT = "recorded_at"
RECORDED_BY = "recorded_by"
AUDIT_COLUMN_NAMES = (RECORDED_AT, RECORDED_BY)  # set by metalake on every write, never by a batch


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its type, nullability, checks and documentation."""

    name: str
    type: str
    description: str
    nullable: bool = True
    checks: dict[str, Any] = field(default_factory=dict)
    # What the column reveals (e.g. "pii"), and how it reads for whoever may not see it; both set or neither.
    sensitivity: Sensitivity | None = None
    mask: MaskKind | None = None


@dataclass(frozen=True)
class TableSpec:
    """A table as declared in YAML, plus the audit columns every table carries."""

    name: str
    description: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    # Columns that `maintain` sorts the table's files by (Z-order), so filters on them skip most row groups.
    cluster_by: tuple[str, ...] = ()
    # (key column, value column) of a table of key/value pairs such as params or tags: a value whose key looks
    # like a secret (e.g. "db_password") is masked, so a secret logged by mistake stays hidden.
    key_value: tuple[str, str] | None = None
    source: str = ""

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field(column.name, arrow_type(column.type), nullable=column.nullable)
                for column in self.columns
            ]
        )

    def to_json(self) -> str:
        """Canonical JSON, stored in the lake's catalog so every reader sees the same spec."""
        return self._canonical_json

    @cached_property
    def _canonical_json(self) -> str:
        payload = asdict(self)
        payload.pop("source")
        # Marks are left out where unset, so the JSON of a spec without any reads as it did before marks existed.
        if payload["key_value"] is None:
            payload.pop("key_value")
        for column in payload["columns"]:
            for mark in ("sensitivity", "mask"):
                if column[mark] is None:
                    column.pop(mark)
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str = "") -> TableSpec:
        """A stored spec; its audit columns take metalake's current definition (and marks), whatever was stored."""
        payload = json.loads(text)
        key_value = payload.get("key_value")
        return cls(
            name=payload["name"],
            description=payload["description"],
            columns=tuple(
                AUDIT_COLUMNS_BY_NAME.get(column["name"]) or ColumnSpec(**column)
                for column in payload["columns"]
            ),
            primary_key=tuple(payload["primary_key"]),
            partition_by=tuple(payload["partition_by"]),
            cluster_by=tuple(payload.get("cluster_by", ())),
            key_value=None if key_value is None else (str(key_value[0]), str(key_value[1])),
            source=source,
        )


def arrow_type(column_type: str) -> pa.DataType:
    import pyarrow as pa

    types: dict[str, pa.DataType] = {
        "string": pa.string(),
        "json": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
        "binary": pa.binary(),
    }
    return types[column_type]


AUDIT_COLUMNS = (
    ColumnSpec(RECORDED_AT, "timestamp[us, UTC]", "When metalake recorded the row (UTC).", nullable=False),
    ColumnSpec(
        RECORDED_BY,
        "string",
        "Actor who wrote the row (user, job or service).",
        nullable=False,
        sensitivity="pii",
        mask="hash",  # the same actor hashes the same everywhere, so joins and group-bys still work
    ),
)
AUDIT_COLUMNS_BY_NAME = {column.name: column for column in AUDIT_COLUMNS}


def parse_spec(document: Mapping[str, Any], source: str) -> TableSpec:
    """Turn one parsed YAML document into a TableSpec, refusing anything the format does not define."""
    if not isinstance(document, Mapping):
        raise SpecError(f"{source}: a table spec must be a mapping with name, description and columns.")
    unknown = set(document) - TABLE_KEYS
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TABLE_KEYS)}.")
    for key in ("name", "description", "columns"):
        if not document.get(key):
            raise SpecError(f"{source}: missing required key {key!r}.")
    name = str(document["name"])
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        raise SpecError(f"{source}: table name {name!r} must be lower_snake_case and start with a letter.")
    raw_columns = document["columns"]
    if not isinstance(raw_columns, list):
        raise SpecError(f"{source}: 'columns' must be a list of column mappings.")
    columns = [_parse_column(raw, f"{source}: table {name!r}") for raw in raw_columns]
    names = [column.name for column in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{source}: duplicate column(s) {duplicates} in table {name!r}.")
    reserved = {RECORDED_AT, RECORDED_BY} & set(names)
    if reserved:
        raise SpecError(f"{source}: {sorted(reserved)} are added to every table by metalake; remove them.")
    primary_key = tuple(document.get("primary_key") or ())
    partition_by = tuple(document.get("partition_by") or ())
    cluster_by = tuple(document.get("cluster_by") or ())
    for label, keys in (
        ("primary_key", primary_key),
        ("partition_by", partition_by),
        ("cluster_by", cluster_by),
    ):
        missing = [key for key in keys if key not in names]
        if missing:
            raise SpecError(f"{source}: {label} names unknown column(s) {missing} in table {name!r}.")
    key_value = _parse_key_value(document.get("key_value"), columns, f"{source}: table {name!r}")
    return TableSpec(
        name=name,
        description=str(document["description"]).strip(),
        columns=(*columns, *AUDIT_COLUMNS),
        primary_key=primary_key,
        partition_by=partition_by,
        cluster_by=cluster_by,
        key_value=key_value,
        source=source,
    )


def _parse_key_value(raw: Any, columns: list[ColumnSpec], where: str) -> tuple[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2 or raw[0] == raw[1]:
        raise SpecError(
            f"{where}: 'key_value' takes two column names, [key column, value column]; got {raw!r}."
        )
    types = {column.name: column.type for column in columns}
    for column_name in raw:
        if types.get(column_name) != "string":
            raise SpecError(
                f"{where}: 'key_value' names {column_name!r}, which must be a string column of the table "
                f"(string columns: {sorted(n for n, t in types.items() if t == 'string')})."
            )
    return str(raw[0]), str(raw[1])


def _parse_marks(
    raw: Mapping[str, Any], where: str, column_type: str
) -> tuple[Sensitivity | None, MaskKind | None]:
    """A column's sensitivity and mask: a mask needs a sensitivity; a sensitivity alone gets the type's default."""
    sensitivity, mask = raw.get("sensitivity"), raw.get("mask")
    if sensitivity is None:
        if mask is not None:
            raise SpecError(
                f"{where}: 'mask' applies to a sensitive column; add 'sensitivity' "
                f"(one of {list(SENSITIVITIES)}) or remove the mask."
            )
        return None, None
    if sensitivity not in SENSITIVITIES:
        raise SpecError(f"{where}: sensitivity {sensitivity!r} is not one of {list(SENSITIVITIES)}.")
    if mask is None:
        mask = DEFAULT_STRING_MASK if column_type == "string" else DEFAULT_OTHER_MASK
    if mask not in MASK_KINDS:
        raise SpecError(f"{where}: mask {mask!r} is not one of {list(MASK_KINDS)}.")
    if mask in STRING_ONLY_MASKS and column_type != "string":
        raise SpecError(
            f"{where}: mask {mask!r} yields text and cannot apply to a column of type {column_type}; "
            f"use mask 'null' (valid on every type) or mark a string column."
        )
    return sensitivity, mask


def _parse_column(raw: Any, where: str) -> ColumnSpec:
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise SpecError(f"{where}: each column needs at least a name and a type, got {raw!r}.")
    name = str(raw["name"])
    unknown = set(raw) - COLUMN_KEYS
    if unknown:
        raise SpecError(
            f"{where}, column {name!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(COLUMN_KEYS)}."
        )
    column_type = str(raw.get("type", ""))
    if column_type not in COLUMN_TYPES:
        raise SpecError(
            f"{where}, column {name!r}: type {column_type!r} is not one of {sorted(COLUMN_TYPES)}."
        )
    description = str(raw.get("description") or "").strip()
    if not description:
        raise SpecError(f"{where}, column {name!r}: every column needs a description.")
    checks = dict(raw.get("checks") or {})
    unknown_checks = set(checks) - CHECK_NAMES
    if unknown_checks:
        raise SpecError(
            f"{where}, column {name!r}: unknown check(s) {sorted(unknown_checks)}; allowed: {sorted(CHECK_NAMES)}."
        )
    if "isin" in checks and not isinstance(checks["isin"], list):
        raise SpecError(f"{where}, column {name!r}: 'isin' takes a list of allowed values.")
    if "str_length" in checks and not isinstance(checks["str_length"], Mapping):
        raise SpecError(f"{where}, column {name!r}: 'str_length' takes {{min: N, max: M}}.")
    nullable = raw.get("nullable", True)
    if not isinstance(nullable, bool):
        raise SpecError(f"{where}, column {name!r}: 'nullable' must be true or false.")
    sensitivity, mask = _parse_marks(raw, f"{where}, column {name!r}", column_type)
    return ColumnSpec(
        name=name,
        type=column_type,
        description=description,
        nullable=nullable,
        checks=checks,
        sensitivity=sensitivity,
        mask=mask,
    )


def load_spec_file(path: Path) -> TableSpec:
    import yaml

    try:
        document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from error
    spec = parse_spec(document, str(path))
    if spec.name != path.stem:
        raise SpecError(f"{path}: the file name must match the table name ({spec.name}.yaml).")
    return spec


def spec_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SpecError(f"Spec folder {folder} does not exist or is not a folder.")
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def file_digest(path: Path) -> str:
    """Hash of a spec file's bytes: lets `connect()` skip parsing YAML that the lake already stores."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def bundled_dir(kind: Literal["tables", "sql"]) -> Path:
    """Where the shipped specs or views live: inside the wheel, or at the repository root in a checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_bundled" / kind
    if installed.is_dir():
        return installed
    return package_dir.parent.parent / kind


def breaking_changes(old: TableSpec, new: TableSpec) -> list[str]:
    """What in `new` existing data of `old` cannot follow; adding nullable columns is the safe evolution."""
    changes = []
    new_columns = {column.name: column for column in new.columns}
    old_names = set(old.column_names)
    for column in old.columns:
        replacement = new_columns.get(column.name)
        if replacement is None:
            changes.append(f"column {column.name!r} is dropped (existing rows hold it)")
            continue
        if replacement.type != column.type:
            changes.append(f"column {column.name!r} changes type from {column.type} to {replacement.type}")
        if column.nullable and not replacement.nullable:
            changes.append(
                f"column {column.name!r} changes from nullable to required (existing rows may be null)"
            )
    for column in new.columns:
        if column.name not in old_names and not column.nullable:
            changes.append(
                f"new column {column.name!r} is required; existing rows have no value (make it nullable)"
            )
    if tuple(old.partition_by) != tuple(new.partition_by):
        changes.append(f"partitioning changes from {list(old.partition_by)} to {list(new.partition_by)}")
    return changes


def describe_columns(spec: TableSpec) -> Iterable[dict[str, Any]]:
    for column in spec.columns:
        yield {
            "column": column.name,
            "type": column.type,
            "nullable": column.nullable,
            "checks": ", ".join(f"{k}={v}" for k, v in column.checks.items()),
            "primary_key": column.name in spec.primary_key,
            "description": _described_with_mark(column),
        }


def _described_with_mark(column: ColumnSpec) -> str:
    """The column's description, ending with its mark where it has one, so the docs say what is masked."""
    if column.sensitivity is None:
        return column.description
    return f"{column.description} [{column.sensitivity}, masked: {column.mask}]"
