"""DuckDB over the lake: tables registered as Arrow datasets on demand, views from `sql/*.sql` in dependency order."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.core.catalog import bundled_dir
from metalake.errors import QueryError, ViewError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from metalake.core.masking import HashDictionary, Masker

COMMITS_RELATION = "lake_commits"
# One row: the lake's moment (`now` unless it reads the past) and the settings derived from it.
CLOCK_RELATION = "lake_clock"
# A running run with no heartbeat (a flush, or the heartbeat timer) for this long is shown `lost`.
DEFAULT_LOST_AFTER_S = 600.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
# A view file whose header has this line is materialized: computed once per set of table versions it reads.
MATERIALIZE_DIRECTIVE = "-- metalake: materialize"
_CATALOG_WIDE = re.compile(
    r"\b(information_schema|duckdb_tables|duckdb_views|show\s+tables|show\s+all)\b", re.I
)


@dataclass(frozen=True)
class ViewDefinition:
    """One `sql/NAME.sql` file: a documented SELECT, created as the view NAME."""

    name: str
    path: Path
    select: str

    @property
    def header(self) -> list[str]:
        lines = []
        for line in self.select.splitlines():
            if not line.startswith("--"):
                break
            lines.append(line)
        return lines

    @property
    def documentation(self) -> str:
        return "\n".join(
            line[2:].strip() for line in self.header if line.strip() != MATERIALIZE_DIRECTIVE
        ).strip()

    @property
    def materialized(self) -> bool:
        """Whether queries read a stored result, recomputed when a table it reads has a new version."""
        return any(line.strip() == MATERIALIZE_DIRECTIVE for line in self.header)


@cache
def bundled_views() -> dict[str, ViewDefinition]:
    return load_views(bundled_dir("sql"))


def load_views(folder: Path) -> dict[str, ViewDefinition]:
    views = {}
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text().strip().rstrip(";").strip()
        if not text:
            raise ViewError(f"View file {path} is empty: it should hold one SELECT statement.")
        views[path.stem] = ViewDefinition(path.stem, path, text)
    return views


def referenced_names(sql: str, known: Iterable[str]) -> set[str]:
    """Known table/view names that a statement mentions (comments ignored); a cheap, safe over-approximation."""
    known_set = set(known)
    words = {word.lower() for word in _IDENTIFIER.findall(_COMMENT.sub(" ", sql))}
    return words & known_set


def view_order(views: Mapping[str, ViewDefinition], wanted: Iterable[str]) -> list[str]:
    """The wanted views and the views they use, dependencies first; a cycle is an error naming the files."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            files = ", ".join(str(views[n].path) for n in cycle[:-1])
            raise ViewError(f"Views depend on each other in a cycle ({' -> '.join(cycle)}): {files}")
        visiting.append(name)
        for dependency in sorted(referenced_names(views[name].select, views) - {name}):
            visit(dependency)
        visiting.pop()
        order.append(name)

    for name in sorted(wanted):
        visit(name)
    return order


def lake_commits_table(history: Mapping[str, list[dict[str, Any]]]) -> pa.Table:
    """The `lake_commits` relation behind `audit_log`: one row per commit of every table, from its history."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("table_name", pa.string()),
            ("version", pa.int64()),
            ("committed_at", pa.timestamp("us", tz="UTC")),
            ("operation", pa.string()),
            ("actor", pa.string()),
            ("reason", pa.string()),
            ("idempotency_key", pa.string()),
            ("rows_added", pa.int64()),
            ("metalake_version", pa.string()),
            ("engine", pa.string()),
        ]
    )
    rows = [
        {
            "table_name": name,
            **record,
            "committed_at": record["timestamp"],
            "engine": record["engine_operation"],
        }
        for name, records in history.items()
        for record in records
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def clock_table(moment: datetime | None, lost_after_s: float) -> pa.Table:
    """The `lake_clock` relation: the lake's moment and how long a running run may go without a heartbeat."""
    import pyarrow as pa

    at = moment or datetime.now(UTC)
    return pa.table(
        {
            "moment": pa.array([at], pa.timestamp("us", tz="UTC")),
            "lost_after_s": pa.array([lost_after_s], pa.float64()),
            "lost_before": pa.array([at - timedelta(seconds=lost_after_s)], pa.timestamp("us", tz="UTC")),
        }
    )


@cache
def shared_database() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database; sessions take cursors on it (free) and create only TEMP objects.

    Its time zone is UTC, like every timestamp in the lake, so date arithmetic (`ts - INTERVAL 7 DAY`) never
    follows a local calendar across daylight-saving changes.
    """
    import duckdb

    database = duckdb.connect()
    with contextlib.suppress(duckdb.Error):  # without the ICU extension, DuckDB has no time zones to set
        database.execute("SET GLOBAL TimeZone = 'UTC'")
    return database


@dataclass(frozen=True)
class ParquetFiles:
    """A local Delta table version as its Parquet files, read by DuckDB's own reader (metadata-fast counts)."""

    paths: tuple[str, ...]
    # Set when older files lack columns that the table gained later: they read as nulls.
    full_schema: pa.Table | None = None

    def sql(self, empty_relation: str) -> str:
        listing = ", ".join("'" + path.replace("'", "''") + "'" for path in self.paths)
        files = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
        if self.full_schema is None:
            return files
        return f'SELECT * FROM "{empty_relation}" UNION ALL BY NAME {files}'


def _raw_name(table: str) -> str:
    """The private name a masked session registers a table's unmasked relation under."""
    return f"__raw_{table}"


class SqlSession:
    """One DuckDB connection for a lake; tables appear the first time a query names them.

    `relation_for(table)` returns a token (the table's version at the lake's moment) and a function that builds
    what DuckDB reads (Parquet files, an Arrow dataset or table); a table is rebuilt only when its token changes.
    """

    def __init__(
        self,
        tables: Sequence[str],
        relation_for: Callable[[str], tuple[object, Callable[[], Any]]],
        commits: Callable[[], pa.Table],
        views: Mapping[str, ViewDefinition] | None = None,
        *,
        clock: Callable[[], pa.Table] | None = None,
        masking: Masker | None = None,
    ):
        """With `masking`, every table reads masked: it is registered under a private name and its lake name is
        a view through the masker's SELECT (`Masker.replacing_select`), with the dictionaries of its hashed
        columns' values for this version (`_dictionaries`)."""

        # A cursor on one in-process database is free, where a new database costs ~15 ms; everything a session
        # creates is TEMP (connection-local), so sessions never see each other's tables or moments.
        self.connection: duckdb.DuckDBPyConnection = shared_database().cursor()
        self.tables = list(tables)
        self.views = dict(bundled_views() if views is None else views)
        self._relation_for = relation_for
        self._commits = commits
        self._clock = clock or (lambda: clock_table(None, DEFAULT_LOST_AFTER_S))
        self._masking = masking
        self._enum_types = 0  # ENUM types made for dictionaries (`__mask_N`), each named once
        self._enum_types_of: dict[str, list[str]] = {}
        self._registered: dict[str, object] = {}
        self._created_views: set[str] = set()
        self._materialized_at: dict[str, tuple[tuple[str, object], ...]] = {}

    @property
    def names(self) -> list[str]:
        return sorted({*self.tables, *self.views, COMMITS_RELATION, CLOCK_RELATION})

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> duckdb.DuckDBPyRelation:
        import duckdb

        self.prepare(sql)
        try:
            return self.connection.sql(sql, params=params)
        except duckdb.Error as error:
            raise QueryError(self._explain(error)) from error

    def prepare(self, sql: str) -> None:
        """Register every table and create every view that `sql` may need, and refresh stale tables."""
        relations = [*self.tables, COMMITS_RELATION, CLOCK_RELATION]
        if _CATALOG_WIDE.search(sql):  # SHOW TABLES and the like: everything
            wanted_views, wanted_tables = set(self.views), set(relations)
        else:
            wanted_views, wanted_tables = referenced_names(sql, self.views), referenced_names(sql, relations)
        ordered_views = view_order(self.views, wanted_views)
        for view in ordered_views:
            wanted_tables |= referenced_names(self.views[view].select, relations)
        for table in sorted(wanted_tables):
            self._register(table)
        for view in ordered_views:
            self._create_view(view)

    def _register(self, table: str) -> None:
        if table == COMMITS_RELATION:
            self.connection.register(table, self._commits())
            return
        if table == CLOCK_RELATION:  # the time moves on: registered again for every query
            self.connection.register(table, self._clock())
            return
        token, build = self._relation_for(table)
        if table in self._registered and self._registered[table] == token:
            return
        if table in self._registered:
            self._drop(table)
        relation = build()
        target = table if self._masking is None else _raw_name(table)
        if isinstance(relation, ParquetFiles):
            empty_relation = f"__{table}_schema"
            if relation.full_schema is not None:
                self.connection.register(empty_relation, relation.full_schema)
            self.connection.execute(
                f'CREATE OR REPLACE TEMP VIEW "{target}" AS {relation.sql(empty_relation)}'
            )
        else:
            self.connection.register(target, relation)
        if self._masking is not None:
            dictionaries = self._dictionaries(table, self._masking.dictionary_columns(table))
            masked_select = self._masking.replacing_select(table, f'"{target}"', dictionaries)
            self.connection.execute(f'CREATE OR REPLACE TEMP VIEW "{table}" AS {masked_select}')
            for old_type in self._enum_types_of.pop(table, ()):  # the last version's, no longer used
                self.connection.execute(f'DROP TYPE IF EXISTS temp."{old_type}"')
            self._enum_types_of[table] = [
                known.enum_type for known in dictionaries.values() if known.enum_type
            ]
        self._registered[table] = token

    def _dictionaries(self, table: str, columns: Sequence[str]) -> dict[str, HashDictionary]:
        """The distinct values of each hashed column in this version of `table` (when there are few enough),
        so the masked view hashes each once (a sha256 per row made a masked aggregate 4x the clear one). Values
        that come later are hashed row by row: the dictionary only saves work, it never decides a hash."""
        from metalake.core.masking import (
            CASE_VALUES,
            DICTIONARY_VALUES,
            HashDictionary,
            quote_identifier,
            sql_literal,
        )

        found: dict[str, HashDictionary] = {}
        for column in columns:
            quoted = quote_identifier(column)
            rows = self.connection.sql(
                f'SELECT DISTINCT {quoted} FROM "{_raw_name(table)}" WHERE {quoted} IS NOT NULL '
                f"LIMIT {DICTIONARY_VALUES + 1}"
            ).fetchall()
            values = tuple(sorted(row[0] for row in rows if isinstance(row[0], str)))
            if not values or len(rows) > DICTIONARY_VALUES or len(values) < len(rows):
                continue
            if len(values) <= CASE_VALUES:
                found[column] = HashDictionary(values)
                continue
            self._enum_types += 1
            enum_type = f"__mask_{self._enum_types}"
            literals = ", ".join(sql_literal(value) for value in values)
            self.connection.execute(f'CREATE TEMP TYPE "{enum_type}" AS ENUM ({literals})')
            found[column] = HashDictionary(values, enum_type)
        return found

    def _drop(self, table: str) -> None:
        import duckdb

        for name in (table, _raw_name(table)):
            with contextlib.suppress(duckdb.Error):
                self.connection.unregister(name)
            self.connection.execute(f'DROP VIEW IF EXISTS temp."{name}"')

    def _create_view(self, name: str) -> None:
        import duckdb

        view = self.views[name]
        tokens = self._table_tokens(name) if view.materialized else None
        if name in self._created_views and (tokens is None or self._materialized_at.get(name) == tokens):
            return
        try:
            if tokens is None:
                self.connection.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {view.select}')
            else:
                # The definition under a private name, its result in a temp table, the view over that table.
                self.connection.execute(f'CREATE OR REPLACE TEMP VIEW "__{name}_definition" AS {view.select}')
                self.connection.execute(
                    f'CREATE OR REPLACE TEMP TABLE "__{name}_result" AS SELECT * FROM "__{name}_definition"'
                )
                self.connection.execute(
                    f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * FROM "__{name}_result"'
                )
                self._materialized_at[name] = tokens
        except duckdb.Error as error:
            raise ViewError(f"View {name!r} in {view.path} cannot be created: {error}") from error
        self._created_views.add(name)

    def _table_tokens(self, view: str) -> tuple[tuple[str, object], ...] | None:
        """The versions of every table a view reads (through other views too); None if one has no version."""
        tables: set[str] = set()
        for name in view_order(self.views, [view]):
            tables |= referenced_names(
                self.views[name].select, [*self.tables, COMMITS_RELATION, CLOCK_RELATION]
            )
        if COMMITS_RELATION in tables or CLOCK_RELATION in tables:
            return None  # rebuilt on every query: nothing to key a stored result on
        return tuple((table, self._registered.get(table)) for table in sorted(tables))

    def _explain(self, error: Exception) -> str:
        message = str(error).strip()
        if "does not exist" in message and ("Table" in message or "Catalog" in message):
            message += f"\nAvailable tables and views: {', '.join(self.names)}."
        return f"Query failed: {message}"

    def close(self) -> None:
        self.connection.close()
