"""Reading dataset sources for `lake.datasets`: files, Delta tables and frames -> one streaming DuckDB scan.

The scan computes the row count, a content fingerprint and a per-column profile in a single pass, so large data
is never loaded whole into memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from metalake.core.csv_files import check_csv
from metalake.errors import DatasetError

if TYPE_CHECKING:
    import duckdb

FileFormat = Literal["parquet", "csv", "json"]
SourceFormat = Literal["parquet", "csv", "json", "delta", "polars", "pandas", "arrow"]
EXTENSIONS: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "abfss://")
NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)
ORDERED_TYPES = (
    *NUMERIC_TYPES,
    "VARCHAR",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "BOOLEAN",
    "UUID",
    "INTERVAL",
)
# JSON types that say nothing about a column (every value null, or mixed): they match any type across files.
UNTYPED_JSON = ("NULL", "JSON")
SCAN_RELATION = "metalake_dataset_source"


@dataclass(frozen=True)
class Source:
    """Where a dataset version's data is, and how DuckDB reads it."""

    uri: str
    format: SourceFormat
    files: tuple[str, ...] = ()
    file_count: int | None = None
    bytes: int | None = None
    delta_version: int | None = None
    signature: str | None = None
    # What DuckDB scans when the source is not local files: an Arrow table, dataset or reader.
    arrow: Any = field(default=None, repr=False, compare=False)
    nullable: Mapping[str, bool] = field(default_factory=dict, compare=False)

    def read_sql(self, columns: list[str] | None = None) -> str:
        """A SELECT over the source's files (local files only); other sources are registered Arrow objects."""
        projection = "*" if columns is None else ", ".join(quote(c) for c in columns)
        if not self.files:
            return f"SELECT {projection} FROM {SCAN_RELATION}"
        listing = "[" + ", ".join(_literal(path) for path in self.files) + "]"
        if self.format == "csv":
            # The shape check_csv checked: a header line, and the delimiter the extension names.
            reader = f"read_csv({listing}, header = true, delim = {_literal(csv_delimiter(self.files))})"
        elif self.format == "json":
            reader = f"read_json({listing})"
        else:
            reader = f"read_parquet({listing})"
        return f"SELECT {projection} FROM {reader}"


@dataclass(frozen=True)
class ColumnSchema:
    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class Scan:
    """What one pass over a source found."""

    row_count: int
    fingerprint: str
    schema: list[ColumnSchema]
    profile: dict[str, dict[str, Any]]


def base_type(duckdb_type: str) -> str:
    """A DuckDB type without its parameters: `DECIMAL(10,2)` -> `DECIMAL`, `TIMESTAMP_NS` -> `TIMESTAMP`."""
    base = duckdb_type.split("(")[0].strip().upper()
    return "TIMESTAMP" if base.startswith("TIMESTAMP") and "TIME ZONE" not in base else base


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- resolving a source ---------------------------------------------------------------------------------------


def resolve_source(source: Any, storage_options: Mapping[str, str] | None = None) -> Source:
    """Turn what the user gave (a path, URI, Delta table or frame) into a Source, checking that it exists."""
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if text.startswith(REMOTE_SCHEMES):
            return _remote_source(text, storage_options)
        return _local_source(Path(text).expanduser())
    return _frame_source(source)


def _frame_source(frame: Any) -> Source:
    import pyarrow as pa
    import pyarrow.dataset as ds

    module = type(frame).__module__
    if module.startswith("polars"):
        import polars as pl

        collected = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        table, kind = collected.to_arrow(), "polars"
    elif module.startswith("pandas"):
        try:
            table, kind = pa.Table.from_pandas(frame, preserve_index=False), "pandas"
        except pa.ArrowException as error:
            raise DatasetError(
                f"Cannot read the pandas frame as Arrow: {error}. A column that mixes types (e.g. numbers and "
                "text in one object column) has no Arrow type: convert it first, e.g. "
                "`frame[column] = frame[column].astype(str)`."
            ) from error
    elif isinstance(frame, pa.RecordBatch):
        table, kind = pa.Table.from_batches([frame]), "arrow"
    elif isinstance(frame, pa.Table | ds.Dataset):
        table, kind = frame, "arrow"
    else:
        raise DatasetError(
            f"Cannot register data of type {type(frame).__name__}: give a path or URI to Parquet, CSV or "
            "JSON-lines files (or a folder of them, or a Delta table), or a polars, pandas or Arrow frame."
        )
    size = table.nbytes if isinstance(table, pa.Table) else None
    nullable = {f.name: f.nullable for f in table.schema}
    return Source(uri=f"memory:{kind}", format=kind, bytes=size, arrow=table, nullable=nullable)  # type: ignore[arg-type]


def _local_source(path: Path) -> Source:
    if not path.exists() and any(ch in path.name for ch in "*?["):  # an existing `a[1].parquet` is a file
        files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        if not files:
            raise DatasetError(f"No files match {path}. Check the pattern and the folder.")
        return _files_source(str(path.parent.resolve() / path.name), files)
    if not path.exists():
        raise DatasetError(
            f"Path not found: {path}. Give an existing file or folder of Parquet, CSV or JSON-lines files, "
            "or a Delta table folder."
        )
    if path.is_dir() and (path / "_delta_log").is_dir():
        return delta_source(str(path.resolve()), None)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in EXTENSIONS and not _hidden(p.relative_to(path))
        )
        if not files:
            raise DatasetError(
                f"Folder {path} holds no data files ({', '.join(sorted(EXTENSIONS))}): nothing to register."
            )
        return _files_source(str(path.resolve()), files)
    return _files_source(str(path.resolve()), [path])


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def _files_source(uri: str, files: list[Path]) -> Source:
    formats = {EXTENSIONS.get(p.suffix.lower()) for p in files}
    if None in formats:
        unknown = next(p for p in files if EXTENSIONS.get(p.suffix.lower()) is None)
        raise DatasetError(
            f"Cannot tell the format of {unknown} from its extension; use one of {', '.join(sorted(EXTENSIONS))}."
        )
    if len(formats) > 1:
        raise DatasetError(
            f"{uri} mixes file formats ({', '.join(sorted(str(f) for f in formats))}); a dataset version is one "
            "format. Register each format as its own dataset, or convert the files."
        )
    file_format: FileFormat = formats.pop()  # type: ignore[assignment]
    if file_format == "csv":
        delimiter = csv_delimiter([str(file) for file in files], uri)
        for file in files:
            check_csv(file, delimiter=delimiter, error=DatasetError)
    stats = []
    for file in files:
        try:
            stat = file.stat()
        except OSError as error:
            raise DatasetError(f"Cannot read {file}: {error.strerror}.") from error
        if not os.access(file, os.R_OK):
            raise DatasetError(f"Cannot read {file}: permission denied. Check the file's permissions.")
        stats.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    signature = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:32]
    nullable = _check_parquet_schemas(files) if file_format == "parquet" else {}
    if file_format == "json" and len(files) > 1:
        _check_json_schemas(files)
    return Source(
        uri=uri,
        format=file_format,
        files=tuple(s[0] for s in stats),
        file_count=len(stats),
        bytes=sum(s[1] for s in stats),
        signature=signature,
        nullable=nullable,
    )


def _check_parquet_schemas(files: list[Path]) -> dict[str, bool]:
    """Every file's footer must describe the same columns and types; returns the columns' nullability."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first: pa.Schema | None = None
    for file in files:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as error:
            raise DatasetError(f"Cannot read {file} as Parquet: {error}") from error
        if first is None:
            first, first_file = schema, file
            continue
        if schema.names != first.names or schema.types != first.types:
            raise DatasetError(
                f"Files of one dataset version must share a schema, but {file} has "
                f"{_schema_text(schema)} where {first_file} has {_schema_text(first)}. "
                "Register them as separate datasets, or rewrite them with one schema."
            )
    assert first is not None
    return {f.name: f.nullable for f in first}


def _check_json_schemas(files: list[Path]) -> None:
    """Every JSON-lines file must hold the same columns, of compatible types (DuckDB infers each file's)."""
    import duckdb

    from metalake.core.sql import shared_database

    connection = shared_database().cursor()
    try:
        first: dict[str, str] | None = None
        for file in files:
            try:
                rows = connection.sql(
                    f"DESCRIBE SELECT * FROM read_json_auto({_literal(str(file))})"
                ).fetchall()
            except duckdb.Error as error:
                raise DatasetError(f"Cannot read {file} as JSON lines: {_first_line(error)}") from error
            columns = {str(r[0]): str(r[1]).strip('"') for r in rows}
            if first is None:
                first, first_file = columns, file
                continue
            differences = _json_differences(first, columns)
            if differences:
                raise DatasetError(
                    f"Files of one dataset version must share a schema, but {file} differs from {first_file}: "
                    f"{'; '.join(differences)}. Register them as separate datasets, or rewrite them with one "
                    "schema."
                )
    finally:
        connection.close()


def _json_differences(first: Mapping[str, str], other: Mapping[str, str]) -> list[str]:
    """Columns only one file has, and columns whose inferred types differ (all numbers count as one type)."""

    def family(duckdb_type: str) -> str:
        base = base_type(duckdb_type)
        return "number" if base in NUMERIC_TYPES else base

    differences = [f"{name} missing" for name in first if name not in other]
    differences += [f"{name} only there" for name in other if name not in first]
    for name in first.keys() & other.keys():
        old, new = first[name], other[name]
        if old in UNTYPED_JSON or new in UNTYPED_JSON or family(old) == family(new):
            continue
        differences.append(f"{name} is {new} there, {old} here")
    return differences


def _schema_text(schema: Any) -> str:
    return "(" + ", ".join(f"{f.name} {f.type}" for f in schema) + ")"


def delta_source(
    uri: str, storage_options: Mapping[str, str] | None, *, version: int | None = None
) -> Source:
    """A Delta table (at `version`, default the latest) as a source; its version is recorded."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        options = dict(storage_options) if storage_options else None
        table = DeltaTable(uri, version=version, storage_options=options)
        version = table.version()
        actions = table.get_add_actions(flatten=True)
        sizes = [int(size) for size in pa.table(actions).column("size_bytes").to_pylist()]
        dataset = table.to_pyarrow_dataset()
    except (DeltaError, OSError) as error:
        raise DatasetError(
            f"Cannot open the Delta table at {uri}: {error}. Check the path and the credentials; a table "
            "written with newer Delta features needs a newer deltalake package."
        ) from error
    return Source(
        uri=uri,
        format="delta",
        file_count=len(sizes),
        bytes=int(sum(sizes)),
        delta_version=version,
        signature=f"delta:{version}",
        arrow=dataset,
        nullable={f.name: f.nullable for f in dataset.schema},
    )


def _remote_source(uri: str, storage_options: Mapping[str, str] | None) -> Source:
    """Object-store data through pyarrow's file systems, since DuckDB here has no httpfs extension."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    filesystem, root = _arrow_filesystem(uri, storage_options)
    try:
        listing = filesystem.get_file_info(root + "/_delta_log")
        if listing.type.name == "Directory":
            return delta_source(uri, storage_options)
        info = filesystem.get_file_info(root)
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(f"Cannot reach {uri}: {error}") from error
    if info.type.name == "NotFound":
        raise DatasetError(f"Path not found: {uri}. Check the bucket, the key and the credentials.")
    if info.type.name == "Directory":
        from pyarrow.fs import FileSelector

        infos = filesystem.get_file_info(FileSelector(root, recursive=True))
        paths = sorted(i.path for i in infos if i.is_file and Path(i.path).suffix.lower() in EXTENSIONS)
    else:
        paths = [root]
    if not paths:
        raise DatasetError(f"{uri} holds no data files ({', '.join(sorted(EXTENSIONS))}).")
    formats = {EXTENSIONS.get(Path(p).suffix.lower()) for p in paths}
    if len(formats) != 1 or None in formats:
        raise DatasetError(f"{uri} mixes file formats or has unknown extensions; a version is one format.")
    file_format: FileFormat = formats.pop()  # type: ignore[assignment]
    try:
        dataset = ds.dataset(paths, format=_arrow_file_format(file_format, paths, uri), filesystem=filesystem)
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(f"Cannot read {uri}: {error}") from error
    sizes = [i.size for i in filesystem.get_file_info(paths)]
    signature = hashlib.sha256(
        json.dumps([[i.path, i.size, i.mtime_ns] for i in filesystem.get_file_info(paths)]).encode()
    ).hexdigest()[:32]
    return Source(
        uri=uri,
        format=file_format,
        file_count=len(paths),
        bytes=int(sum(s or 0 for s in sizes)),
        signature=signature,
        arrow=dataset,
        nullable={f.name: f.nullable for f in dataset.schema},
    )


def csv_delimiter(paths: Sequence[str], uri: str = "") -> str:
    """Tabs for `.tsv` files, commas for `.csv`: the extension names the delimiter, for every reader."""
    tab_separated = {Path(p).suffix.lower() == ".tsv" for p in paths}
    if len(tab_separated) > 1:
        raise DatasetError(
            f"{uri or paths[0]} mixes .tsv and .csv files; a version is read with one delimiter. "
            "Register them separately."
        )
    return "\t" if tab_separated.pop() else ","


def _arrow_file_format(file_format: FileFormat, paths: list[str], uri: str) -> Any:
    """How pyarrow reads the files: `.tsv` files with tabs. Its CSV type inference is not DuckDB's sniffer."""
    import pyarrow.csv as pa_csv
    import pyarrow.dataset as ds

    if file_format != "csv":
        return file_format
    delimiter = csv_delimiter(paths, uri)
    return ds.CsvFileFormat(parse_options=pa_csv.ParseOptions(delimiter=delimiter))


def _arrow_filesystem(uri: str, storage_options: Mapping[str, str] | None) -> tuple[Any, str]:
    from metalake.core.storage import arrow_filesystem

    return arrow_filesystem(uri, storage_options)


# -- scanning -------------------------------------------------------------------------------------------------


@contextmanager
def source_relation(source: Source) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB cursor and the SELECT that reads the source through it.

    The cursor is on the process's shared in-memory database (free, where a new database costs ~15 ms); what it
    registers is local to the cursor and gone when it closes.
    """
    from metalake.core.sql import shared_database

    connection = shared_database().cursor()
    try:
        if source.arrow is not None:
            connection.register(SCAN_RELATION, source.arrow)
        yield connection, source.read_sql()
    finally:
        connection.close()


def describe(connection: duckdb.DuckDBPyConnection, select: str, source: Source) -> list[ColumnSchema]:
    import duckdb

    try:
        rows = connection.sql(f"DESCRIBE {select}").fetchall()
    except duckdb.Error as error:
        raise DatasetError(f"Cannot read {source.uri}: {_first_line(error)}") from error
    return [ColumnSchema(str(r[0]), str(r[1]), source.nullable.get(str(r[0]), True)) for r in rows]


def profile_select(select: str, schema: list[ColumnSchema], *, fingerprint: bool) -> str:
    """One aggregate query: row count, per-column nulls, distinct estimate, min, max and mean (and fingerprint).

    The fingerprint is the sum and the XOR of DuckDB's hash of every row: independent of row order and file
    layout, sensitive to every value and to repeated rows.
    """
    parts = ["count(*)"]
    for column in schema:
        name = quote(column.name)
        base = base_type(column.type)
        parts.append(f"count({name})")
        parts.append(f"approx_count_distinct({name})")
        if base in ORDERED_TYPES:
            parts += [f"min({name})", f"max({name})"]
        if base in NUMERIC_TYPES:
            parts.append(f"avg({name})")
    if fingerprint:
        every_column = ", ".join(quote(c.name) for c in schema)
        parts += [f"sum(hash({every_column}))::VARCHAR", f"bit_xor(hash({every_column}))::VARCHAR"]
    return f"SELECT {', '.join(parts)} FROM ({select})"


def scan_source(source: Source) -> Scan:
    """Stream the source once through DuckDB and return its row count, fingerprint, schema and profile."""
    import duckdb

    with source_relation(source) as (connection, select):
        schema = describe(connection, select, source)
        if not schema:
            raise DatasetError(f"{source.uri} has no columns: nothing to register.")
        query = profile_select(select, schema, fingerprint=True)
        try:
            values = list(connection.sql(query).fetchall()[0])
        except duckdb.Error as error:
            raise DatasetError(f"Cannot read {source.uri}: {_first_line(error)}") from error
    row_count = int(values.pop(0))
    profile: dict[str, dict[str, Any]] = {}
    for column in schema:
        base = base_type(column.type)
        non_null = int(values.pop(0))
        stats: dict[str, Any] = {
            "type": column.type,
            "null_count": row_count - non_null,
            "distinct_estimate": int(values.pop(0)),
        }
        if base in ORDERED_TYPES:
            stats["min"], stats["max"] = _json_value(values.pop(0)), _json_value(values.pop(0))
        if base in NUMERIC_TYPES:
            mean = values.pop(0)
            stats["mean"] = None if mean is None else _json_value(float(mean))
        profile[column.name] = stats
    hash_sum, hash_xor = values
    schema_text = json.dumps([[c.name, c.type] for c in schema])
    digest = hashlib.sha256(f"{schema_text}|{row_count}|{hash_sum}|{hash_xor}".encode()).hexdigest()
    return Scan(row_count=row_count, fingerprint=digest[:32], schema=schema, profile=profile)


def _json_value(value: Any) -> Any:
    """A statistic as a standard JSON value: NaN becomes null, infinities the text `inf` or `-inf`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
