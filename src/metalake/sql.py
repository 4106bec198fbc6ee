"""DuckDB over the lake: tables registered as Arrow datasets on demand, views from `sql/*.sql` in dependency order."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.catalog import bundled_dir
from metalake.errors import QueryError, ViewError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

COMMITS_RELATION = "lake_commits"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
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
    def documentation(self) -> str:
        lines = []
        for line in self.path.read_text().splitlines():
            if not line.startswith("--"):
                break
            lines.append(line[2:].strip())
        return "\n".join(lines).strip()


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


@cache
def shared_database() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB database; sessions take cursors on it (free) and create only TEMP objects."""
    import duckdb

    return duckdb.connect()


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
    ):

        # A cursor on one in-process database is free, where a new database costs ~15 ms; everything a session
        # creates is TEMP (connection-local), so sessions never see each other's tables or moments.
        self.connection: duckdb.DuckDBPyConnection = shared_database().cursor()
        self.tables = list(tables)
        self.views = dict(bundled_views() if views is None else views)
        self._relation_for = relation_for
        self._commits = commits
        self._registered: dict[str, object] = {}
        self._created_views: set[str] = set()

    @property
    def names(self) -> list[str]:
        return sorted({*self.tables, *self.views, COMMITS_RELATION})

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
        relations = [*self.tables, COMMITS_RELATION]
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
        token, build = self._relation_for(table)
        if table in self._registered and self._registered[table] == token:
            return
        if table in self._registered:
            self._drop(table)
        relation = build()
        if isinstance(relation, ParquetFiles):
            empty_relation = f"__{table}_schema"
            if relation.full_schema is not None:
                self.connection.register(empty_relation, relation.full_schema)
            self.connection.execute(
                f'CREATE OR REPLACE TEMP VIEW "{table}" AS {relation.sql(empty_relation)}'
            )
        else:
            self.connection.register(table, relation)
        self._registered[table] = token

    def _drop(self, table: str) -> None:
        import duckdb

        with contextlib.suppress(duckdb.Error):
            self.connection.unregister(table)
        self.connection.execute(f'DROP VIEW IF EXISTS temp."{table}"')

    def _create_view(self, name: str) -> None:
        import duckdb

        if name in self._created_views:
            return
        view = self.views[name]
        try:
            self.connection.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS {view.select}')
        except duckdb.Error as error:
            raise ViewError(f"View {name!r} in {view.path} cannot be created: {error}") from error
        self._created_views.add(name)

    def _explain(self, error: Exception) -> str:
        message = str(error).strip()
        if "does not exist" in message and ("Table" in message or "Catalog" in message):
            message += f"\nAvailable tables and views: {', '.join(self.names)}."
        return f"Query failed: {message}"

    def close(self) -> None:
        self.connection.close()
