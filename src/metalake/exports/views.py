"""`metalake views export`: the bundled views as Spark, Databricks or Trino SQL files, in creation order.

Each view is parsed as DuckDB SQL by sqlglot, rewritten where DuckDB-only constructs would change its answers
(view_dialects.py), and written as `CREATE OR REPLACE VIEW` with its documentation header. A construct that cannot be
carried over, or any sqlglot warning, fails the export: wrong SQL is worse than none.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from metalake.core.catalog import bundled_dir, spec_files
from metalake.core.sql import (
    CLOCK_RELATION,
    COMMITS_RELATION,
    DEFAULT_LOST_AFTER_S,
    ViewDefinition,
    bundled_views,
    referenced_names,
    view_order,
)
from metalake.errors import ExportError, ViewExportError
from metalake.exports.dialects import EXPORT_DIALECTS, ExportDialect, UnportableConstruct, portable_tree

# Relations that metalake computes itself rather than stores: other engines have no table of that name.
COMPUTED_RELATIONS = {
    COMMITS_RELATION: "reads lake_commits, which metalake builds from every table's Delta log "
    "(on Spark: DESCRIBE HISTORY TABLE; on Trino: the TABLE$history metadata table)",
}
# Other engines have no lake_clock: their views read their own clock, with the default lost-after.
PORTABLE_CLOCK = (
    f"(SELECT now() - to_microseconds({int(DEFAULT_LOST_AFTER_S * 1e6)}) AS lost_before) AS {CLOCK_RELATION}"
)
TABLES_FILE = "00_tables.sql"
INDEX_FILE = "README.md"
ORDER_FILE = "order.txt"
LAKE_URI_PLACEHOLDER = "<LAKE_URI>"
EXPORTED_FILE = re.compile(r"[A-Za-z0-9_]+\.sql")
ENGINE_NAMES = {"spark": "Spark SQL", "databricks": "Databricks SQL", "trino": "Trino"}


@dataclass(frozen=True)
class ViewsExport:
    """What `export_views` wrote: the views in the order they must be created, and the views left out."""

    dialect: ExportDialect
    folder: Path
    views: list[str]
    tables: list[str]
    skipped: dict[str, str]

    @property
    def files(self) -> list[Path]:
        return [self.folder / TABLES_FILE, *(self.folder / f"{name}.sql" for name in self.views)]


def check_dialect(dialect: str) -> ExportDialect:
    if dialect not in EXPORT_DIALECTS:
        raise ExportError(
            f"Unknown SQL dialect {dialect!r} for the views export. Valid dialects: {', '.join(EXPORT_DIALECTS)}."
        )
    return dialect  # type: ignore[return-value]  # checked against the Literal's values just above


def transpile_view(view: ViewDefinition, dialect: str) -> str:
    """The view's SELECT (without its header) in `dialect`; ViewExportError when it cannot keep its answers."""
    import sqlglot
    from sqlglot.errors import ErrorLevel, SqlglotError

    target = check_dialect(dialect)
    with _sqlglot_warnings() as warnings:
        try:
            tree = sqlglot.parse_one(_body(view), read="duckdb")
            if isinstance(tree, sqlglot.exp.Command):
                raise UnportableConstruct(tree.name, "sqlglot cannot parse this statement")
            sql = portable_tree(tree, target).sql(
                dialect=target, pretty=True, unsupported_level=ErrorLevel.RAISE
            )
        except UnportableConstruct as error:
            raise ViewExportError(view.name, target, error.construct, error.reason) from None
        except SqlglotError as error:
            reason = str(error).strip().splitlines()[0]
            raise ViewExportError(view.name, target, "sqlglot", reason) from None
    if warnings:
        raise ViewExportError(view.name, target, "sqlglot warning", warnings[0])
    return sql


def export_views(
    folder: str | Path,
    dialect: str,
    *,
    lake_uri: str | None = None,
    views: Mapping[str, ViewDefinition] | None = None,
    force: bool = False,
) -> ViewsExport:
    """Write every view as `NAME.sql`, the table registrations as 00_tables.sql, and the order to run them in as
    README.md (with each view's question) and order.txt (one file name a line).

    Every view is transpiled before anything is written, so a view that cannot be exported leaves the folder as
    it was. A folder that is not empty is refused unless `force`; then the files that a previous export listed
    in its order.txt are removed first (so no view that was dropped since lingers), and no other file. `lake_uri`
    fills the tables' LOCATION (a local path becomes an absolute file:// URI; default: the placeholder
    <LAKE_URI>).
    """
    target = check_dialect(dialect)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is a file: give --output a folder to write the .sql files into.")
    definitions = dict(bundled_views() if views is None else views)
    order = view_order(definitions, definitions)
    skipped: dict[str, str] = {}
    for name in order:
        computed = referenced_names(definitions[name].select, COMPUTED_RELATIONS)
        used_views = referenced_names(definitions[name].select, definitions) - {name}
        if computed:
            skipped[name] = COMPUTED_RELATIONS[sorted(computed)[0]]
        elif used_views & set(skipped):
            skipped[name] = f"reads the view {sorted(used_views & set(skipped))[0]}, which is not exported"
    exported = [name for name in order if name not in skipped]
    statements = {
        name: _create_view(definitions[name], transpile_view(definitions[name], target)) for name in exported
    }
    table_names = [path.stem for path in spec_files(bundled_dir("tables"))]
    tables = sorted(set().union(*(referenced_names(definitions[n].select, table_names) for n in exported)))
    result = ViewsExport(target, folder, exported, tables, skipped)
    contents = {
        TABLES_FILE: _table_registrations(target, tables, table_location_base(lake_uri)),
        **{f"{name}.sql": statement for name, statement in statements.items()},
        INDEX_FILE: _index(result, definitions),
        ORDER_FILE: "".join(f"{path.name}\n" for path in result.files),
    }
    _clear_previous_export(folder, force=force)
    _write_files(folder, contents)
    return result


def table_location_base(lake_uri: str | None) -> str:
    """The lake's location as the other engine reads it: a local path becomes an absolute `file://` URI.

    Spark (Hadoop's file system) and Trino's Hadoop-based file system take `file:///abs/path` with the path as
    it is: Hadoop does not percent-decode, so `Path.as_uri()` would turn a space into a folder named `%20`. A
    relative path is resolved here, on the machine that runs the export, since `file://./lake` would make `.`
    the host. Any other URI (s3://, abfss://, dbfs:/, ...) is the engine's business and is kept as given.
    """
    if lake_uri is None or lake_uri.strip() in ("", LAKE_URI_PLACEHOLDER):
        return LAKE_URI_PLACEHOLDER
    text = lake_uri.strip()
    if text.lower().startswith("file://"):
        text = text[len("file://") :]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", text):  # a scheme; one letter would be a Windows drive
        return text.rstrip("/")
    path = Path(text).expanduser().resolve().as_posix()
    return "file://" + (path if path.startswith("/") else f"/{path}")


def _clear_previous_export(folder: Path, *, force: bool) -> None:
    """Refuse a non-empty folder unless `force`; then remove the files its previous export listed."""
    try:
        present = sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []
    except OSError as error:
        raise _write_error(folder, error) from error
    if not present:
        return
    if not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise ExportError(
            f"{folder} is not empty ({len(present)} entries: {shown}); nothing was written. Give a new folder, "
            f"or add --force (force=True) to replace a previous export there: the files its {ORDER_FILE} lists "
            "are removed first, other files are kept (unless the export writes one of the same name)."
        )
    order_file = folder / ORDER_FILE
    if not order_file.is_file():
        return  # not an export of ours: nothing to remove; files of the same names are replaced
    try:
        listed = order_file.read_text(encoding="utf-8", errors="replace").split()
        # only plain .sql names straight in the folder: a doctored order.txt must not reach other files
        for name in [*(name for name in listed if EXPORTED_FILE.fullmatch(name)), INDEX_FILE, ORDER_FILE]:
            (folder / name).unlink(missing_ok=True)
    except OSError as error:
        raise _write_error(folder, error) from error


def _write_files(folder: Path, contents: Mapping[str, str]) -> None:
    """Write the files; on a file-system error, remove those already written and raise ExportError."""
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in contents.items():
            path = folder / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as error:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise _write_error(folder, error) from error


def _write_error(folder: Path, error: OSError) -> ExportError:
    """The OSError as an ExportError naming the folder, the file and the reason."""
    where = Path(error.filename) if error.filename else folder
    reason = error.strerror or str(error)
    blocking = next((path for path in (folder, *folder.parents) if path.is_file()), None)
    if blocking is not None:
        reason = f"{blocking} is a file, not a folder"
    place = str(folder) if where == folder else f"{folder} ({where.name})"
    return ExportError(
        f"Cannot write the views export to {place}: {reason}. Give --output a folder you can write to."
    )


def _body(view: ViewDefinition) -> str:
    """The SELECT without its header; the lake's clock becomes the engine's (with the default lost-after)."""
    body = "\n".join(view.select.splitlines()[len(view.header) :])
    return body.replace(f"FROM {CLOCK_RELATION})", f"FROM {PORTABLE_CLOCK})")


def _create_view(view: ViewDefinition, select: str) -> str:
    header = "\n".join(f"-- {line}".rstrip() for line in view.documentation.splitlines())
    return f"{header}\nCREATE OR REPLACE VIEW {view.name} AS\n{select};\n"


def _table_registrations(dialect: ExportDialect, tables: list[str], base: str) -> str:
    if dialect == "trino":
        lines = [
            "-- The lake's Delta tables, registered in a schema of Trino's Delta Lake connector (the catalog needs",
            "-- delta.register-table-procedure.enabled=true). Replace `delta` and 'metalake' with your catalog and",
            "-- schema, run this once, then create the views in that schema (USE delta.metalake).",
        ]
        lines += [
            f"CALL delta.system.register_table(schema_name => 'metalake', table_name => '{table}', "
            f"table_location => {_string(f'{base}/{table}', dialect)});"
            for table in tables
        ]
    else:
        lines = [
            "-- The lake's Delta tables, registered under their own names so that the views find them",
            "-- (needs Delta Lake on the cluster: delta-spark, or Databricks).",
        ]
        lines += [
            f"CREATE TABLE IF NOT EXISTS {table} USING DELTA LOCATION {_string(f'{base}/{table}', dialect)};"
            for table in tables
        ]
    return "\n".join(lines) + "\n"


def _string(value: str, dialect: ExportDialect) -> str:
    """A SQL string literal in `dialect`: Trino doubles a quote; Spark needs a backslash before it, since it
    reads '' as two adjacent literals and joins them (`'it''s'` is `its` there)."""
    from sqlglot import exp

    return exp.Literal.string(value).sql(dialect=dialect)


def _index(result: ViewsExport, definitions: Mapping[str, ViewDefinition]) -> str:
    engine = ENGINE_NAMES[result.dialect]
    lines = [
        f"# metalake views for {engine}",
        "",
        f"Generated by `metalake views export --dialect {result.dialect}` from metalake's DuckDB views (sql/).",
        f"Run `{TABLES_FILE}` first (it registers the lake's Delta tables), then the views in this order: a view",
        f"reads the views listed before it. `{ORDER_FILE}` has the same list, one file a line.",
        "",
        f"0. `{TABLES_FILE}`: {len(result.tables)} tables",
    ]
    for number, name in enumerate(result.views, start=1):
        question = definitions[name].documentation.splitlines()[0].removeprefix(f"{name}:").strip()
        lines.append(f"{number}. `{name}.sql`: {question}")
    if result.skipped:
        lines += ["", "Not exported:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in result.skipped.items()]
    lines += [
        "",
        "Views that metalake materializes are plain views here. Text made from numbers (run_comparison's value)",
        "follows the engine's own formatting.",
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def _sqlglot_warnings() -> Iterator[list[str]]:
    """Collect what sqlglot logs as warnings (unsupported syntax, guesses) while a view is transpiled."""
    captured: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    logger = logging.getLogger("sqlglot")
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
