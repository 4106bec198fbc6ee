"""`metalake export duckdb`: one DuckDB file holding the lake's tables at a moment and every view, for BI tools.

The tables are real tables (a copy of the data as of that moment), so the file opens with plain DuckDB and needs
neither metalake nor access to the lake; views are created over them in dependency order. A view metalake
materializes becomes a table computed once in the file. The file is written under a temporary name and renamed
at the end, so a failed export never leaves half a file where the old one was.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metalake._version import __version__
from metalake.core.sql import CLOCK_RELATION, COMMITS_RELATION, bundled_views, view_order
from metalake.errors import ExportError

if TYPE_CHECKING:
    import duckdb

    from metalake.lake import Lake

EXPORT_TABLE = "metalake_export"
BATCH_ROWS = 100_000


@dataclass(frozen=True)
class DuckDbExport:
    """What `export_duckdb` wrote: the file, the moment, each table's Delta version and rows, and the views."""

    path: Path
    as_of: str | None
    exported_at: datetime
    table_versions: dict[str, int | None]
    table_rows: dict[str, int]
    views: list[str]
    materialized: list[str]
    masked_for: str | None = None  # the principal the copy was made for, its sensitive values masked
    masked: bool = False


def export_duckdb(
    lake: Lake,
    path: str | os.PathLike[str],
    *,
    as_of: datetime | date | str | None = None,
    force: bool = False,
    masked_for: str | None = None,
) -> DuckDbExport:
    """Write the lake (as of `as_of`: a datetime, ISO string or snapshot name; default now) to a DuckDB file.

    An existing file is refused unless `force`; it is replaced only once the new file is complete. A time before
    the lake was created, or in the future, is refused by `lake.as_of` (TimeTravelError), as everywhere: the file
    would hold nothing, or claim a moment that has not happened. A file-system error (unwritable folder, full
    disk) becomes an ExportError.

    `masked_for` names the principal the file is for: unless it may unmask, every value the specs mark sensitive
    is masked in the copy, as the server would show it (the same keyed hashes, so files for different readers
    still join). The file records whom it was made for.
    """
    import duckdb

    target = Path(path)
    try:
        _check_target(target, force=force)
    except OSError as error:
        raise _write_error(target, error) from error
    exported_at = datetime.now(UTC)
    source = lake.as_of(as_of) if as_of is not None else lake
    masked = masked_for is not None and not lake.access.sees_clear(masked_for, must_exist=True)
    if masked:
        source = source.masked()
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with contextlib.closing(duckdb.connect(str(partial))) as database:
            with contextlib.suppress(
                duckdb.Error
            ):  # without the ICU extension there are no time zones to set
                database.execute("SET TimeZone = 'UTC'")
            versions, rows = _copy_tables(source, database)
            views, materialized = _create_views(database)
            _record_export(database, source, exported_at, versions, rows, masked_for)
            database.execute("CHECKPOINT")
        os.replace(partial, target)
    except BaseException as error:
        for leftover in (partial, partial.with_name(partial.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        if isinstance(error, OSError | duckdb.IOException):
            raise _write_error(target, error) from error
        raise
    label = source.moment.label if source.moment is not None else None
    return DuckDbExport(
        target, label, exported_at, versions, rows, views, materialized, masked_for=masked_for, masked=masked
    )


def _check_target(target: Path, *, force: bool) -> None:
    if target.is_dir():
        raise ExportError(
            f"{target} is a folder: give the DuckDB file to write, e.g. {target / 'lake.duckdb'}."
        )
    if target.exists() and not force:
        raise ExportError(
            f"{target} already exists; nothing was written. Add --force (force=True) to replace it."
        )
    if target.parent.exists() and not target.parent.is_dir():
        raise ExportError(f"{target.parent} is a file, not a folder: give a path in a folder.")
    if not target.parent.is_dir():
        raise ExportError(f"The folder {target.parent} does not exist: create it first.")


def _write_error(target: Path, error: BaseException) -> ExportError:
    reason = (error.strerror if isinstance(error, OSError) else None) or str(error).strip().splitlines()[0]
    return ExportError(
        f"Cannot write {target}: {reason}. Nothing was written; give a path in a folder you can write to."
    )


def _copy_tables(
    source: Lake, database: duckdb.DuckDBPyConnection
) -> tuple[dict[str, int | None], dict[str, int]]:
    """Every table (and lake_commits, which audit_log reads) streamed from the lake's SQL session into the file."""
    versions: dict[str, int | None] = {}
    rows: dict[str, int] = {}
    # lake_clock too: the file's runs_current tells lost runs as of the export's moment
    for name in [*sorted(spec.name for spec in source.tables()), COMMITS_RELATION, CLOCK_RELATION]:
        relation = source.sql(f'SELECT * FROM "{name}"')
        # to_arrow_reader since DuckDB 1.4; fetch_record_batch before (deprecated since)
        stream = getattr(relation, "to_arrow_reader", None) or relation.fetch_record_batch
        reader = stream(BATCH_ROWS)
        database.register("__metalake_source", reader)
        try:
            database.execute(f'CREATE TABLE "{name}" AS SELECT * FROM __metalake_source')
        finally:
            database.unregister("__metalake_source")
        if name not in (COMMITS_RELATION, CLOCK_RELATION):
            versions[name] = source.version(name)
        rows[name] = int(database.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0])
    return versions, rows


def _create_views(database: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """Every bundled view in dependency order: materialized ones as tables, the others as views."""
    import duckdb

    views = bundled_views()
    order = view_order(views, views)
    materialized = []
    for name in order:
        view = views[name]
        kind = "TABLE" if view.materialized else "VIEW"
        try:
            database.execute(f'CREATE {kind} "{name}" AS {view.select}')
        except duckdb.Error as error:
            raise ExportError(
                f"View {name!r} ({view.path}) cannot be created in the DuckDB file: {error}"
            ) from error
        if view.materialized:
            materialized.append(name)
    return order, materialized


def _record_export(
    database: duckdb.DuckDBPyConnection,
    source: Lake,
    exported_at: datetime,
    versions: dict[str, int | None],
    rows: dict[str, int],
    masked_for: str | None = None,
) -> None:
    """The `metalake_export` table: one row per table, saying where and when the copy came from, for whom, and
    whether its sensitive values are masked."""
    import pyarrow as pa

    label = source.moment.label if source.moment is not None else None
    record = pa.table(
        {
            "lake_uri": [source.uri] * len(versions),
            "as_of": pa.array([label] * len(versions), pa.string()),
            "exported_at": pa.array([exported_at] * len(versions), pa.timestamp("us", tz="UTC")),
            "exported_by": [source.actor] * len(versions),
            "metalake_version": [__version__] * len(versions),
            "table_name": list(versions),
            "table_version": pa.array(list(versions.values()), pa.int64()),
            "rows": pa.array([rows[name] for name in versions], pa.int64()),
            "masked_for": pa.array([masked_for] * len(versions), pa.string()),
            "masked": pa.array([source.masked_by is not None] * len(versions), pa.bool_()),
        }
    )
    database.register("__metalake_record", record)
    try:
        database.execute(f"CREATE TABLE {EXPORT_TABLE} AS SELECT * FROM __metalake_record")
    finally:
        database.unregister("__metalake_record")
