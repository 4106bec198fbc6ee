"""The confined runner behind `POST /api/v1/sql`: one checked SELECT over the lake, on a locked-down DuckDB.

DuckDB has no privilege boundary, so metalake draws one in two layers. `check_user_sql` parses the query with
sqlglot and refuses anything but one SELECT over lake relations; what runs is the SQL generated from that checked
tree, never the caller's text, so DuckDB executes exactly what was checked. The query then runs on a database of
its own (`confined_database`), not the library's `shared_database()`: it cannot touch files, load extensions or
change settings, even if a construct slipped past the parser. Lake tables reach it as in-memory Arrow only.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from metalake.core.sql import CLOCK_RELATION, COMMITS_RELATION, bundled_views, referenced_names, view_order
from metalake.errors import QueryError, QueryTimeout, UnsafeQuery

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from sqlglot import exp

    from metalake.lake import Lake

DEFAULT_ROW_LIMIT = 10_000
MAX_ROW_LIMIT = 100_000
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 2

# Functions refused wherever they appear, by name (lower case) or by prefix. They read files (`read_*`, `glob`,
# `parquet_*`, `sniff_csv`, extension scanners), other databases (`pg_*`, `sqlite_*`, `postgres_*`, `mysql_*`),
# the process or its settings (`getenv`, `current_setting`, `duckdb_*`, `pragma_*`, `which_secret`), run SQL
# built from strings (`query`, `query_table`, `json_execute_serialized_sql`), or change state (`nextval`,
# `setseed`, `checkpoint`). A deny-list, because DuckDB's harmless functions number in the hundreds; it is one
# layer of two: the confined database refuses file access and setting changes whatever the parser lets through.
DENIED_FUNCTIONS = frozenset(
    {
        "glob",
        "getenv",
        "current_setting",
        "getvariable",
        "sniff_csv",
        "query",
        "query_table",
        "which_secret",
        "checkpoint",
        "force_checkpoint",
        "nextval",
        "currval",
        "setseed",
        "arrow_scan",
        "from_substrait",
        "from_substrait_json",
        "get_substrait",
        "get_substrait_json",
        "json_execute_serialized_sql",
    }
)
DENIED_FUNCTION_PREFIXES = (
    "read_",
    "parquet_",
    "duckdb_",
    "pragma_",
    "pg_",
    "sqlite_",
    "postgres_",
    "mysql_",
    "iceberg_",
    "delta_",
    "st_read",
    "load_",
    "http_",
    "scan_",
)
DENIED_FUNCTION_SUFFIXES = ("_scan",)
_ALLOWED_ROOTS = ("Select", "Union", "Intersect", "Except")
# Statement and clause nodes refused anywhere in the tree: writes, DDL, settings, files, other databases.
_DENIED_NODES = (
    "DDL",
    "DML",
    "Command",
    "Copy",
    "Set",
    "Pragma",
    "Use",
    "Attach",
    "Detach",
    "Install",
    "Into",
    "Transaction",
    "Commit",
    "Rollback",
    "Describe",
    "Summarize",
    "Show",
    "Create",
    "Drop",
    "Alter",
    "Insert",
    "Update",
    "Delete",
    "Merge",
    "Export",
    "LoadData",
    "Cache",
    "Uncache",
    "Refresh",
    "Analyze",
    "Grant",
    "Revoke",
    "Kill",
    "TruncateTable",
)
_QUERY_KEYWORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "("})
_CALL_HEAD = re.compile(r'^\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\(')


@dataclass(frozen=True)
class UserQueryResult:
    """What a user query answered: at most `limit` rows, `truncated` when it had more; `arrow` for CSV or IPC."""

    columns: list[str]
    types: list[str]  # DuckDB's type names, e.g. VARCHAR, TIMESTAMP WITH TIME ZONE
    rows: list[tuple[Any, ...]]
    truncated: bool
    arrow: pa.Table


def run_user_sql(
    lake: Lake,
    query: str,
    *,
    params: list[Any] | dict[str, Any] | None = None,
    limit: int = DEFAULT_ROW_LIMIT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    database: duckdb.DuckDBPyConnection | None = None,
    may_read: Callable[[str], bool] | None = None,
) -> UserQueryResult:
    """Check `query`, then run it on the confined database over `lake` at its moment (`lake.as_of(...)` reads
    the past). `params` are bound by DuckDB (`?`/`$1` with a list, `$name` with a dict), never spliced in.
    `may_read(relation)` confines it further to the tables and views a principal may read: the others are
    refused as if the lake had no such relation (a view read as a whole needs no grant on what it reads).

    Raises UnsafeQuery (refused, not run), QueryError (bad SQL, DuckDB's message) or QueryTimeout.
    """
    if not 1 <= limit <= MAX_ROW_LIMIT:
        raise QueryError(f"Row limit {limit} is out of range: give a limit from 1 to {MAX_ROW_LIMIT}.")
    if not timeout_s > 0:
        raise QueryError(f"Timeout {timeout_s} s is not positive: give a number of seconds above 0.")
    table_names = [spec.name for spec in lake.tables()]
    views = bundled_views()
    allowed = {*table_names, *views, COMMITS_RELATION, CLOCK_RELATION}
    if may_read is not None:
        allowed = {name for name in allowed if name == CLOCK_RELATION or may_read(name)}
    checked = check_user_sql(query, allowed)
    mentioned = {table.name.lower() for table in _tables(checked)} & allowed
    ordered_views = view_order(views, mentioned & set(views))
    relations = (mentioned - set(views)) | {
        name
        for view in ordered_views
        for name in referenced_names(views[view].select, [*table_names, COMMITS_RELATION, CLOCK_RELATION])
    }
    capped = _capped(checked, limit + 1)
    with _cursor(database or confined_database()) as cursor:
        for name, relation in sorted(lake.arrow_relations(sorted(relations)).items()):
            cursor.register(name, relation)
        for view in ordered_views:  # trusted definitions from sql/*.sql, over the registered relations
            cursor.execute(f'CREATE TEMP VIEW "{view}" AS {views[view].select}')
        arrow, types = execute_confined(cursor, capped, params, timeout_s=timeout_s)
    truncated = arrow.num_rows > limit
    arrow = arrow.slice(0, limit) if truncated else arrow
    rows = list(zip(*(column.to_pylist() for column in arrow.columns), strict=True))
    return UserQueryResult(list(arrow.column_names), types, rows, truncated, arrow)


def check_user_sql(query: str, allowed: Collection[str]) -> exp.Query:
    """Parse `query` (DuckDB dialect) and return its tree if it is one SELECT over `allowed` relations (or CTEs
    it defines), calling no denied function; raise UnsafeQuery naming what was refused, else.

    Allowed: SELECT, WITH ... SELECT, UNION/INTERSECT/EXCEPT of those, subqueries, VALUES and UNNEST as sources.
    Refused: any other statement (and more than one), schema- or catalog-qualified relations, relations that are
    not lake names (files named as tables, DuckDB's catalog views), table functions, DENIED_FUNCTIONS and the
    DENIED_FUNCTION_PREFIXES/SUFFIXES. Names compare case-insensitively, as DuckDB's (quoted or not) do.
    """
    import sqlglot
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(query, dialect="duckdb") if s is not None]
    except sqlglot.errors.ParseError as error:
        _refuse_statement_keyword(query)  # EXPORT DATABASE and the like: sqlglot cannot parse them
        raise QueryError(f"Query failed: the SQL does not parse: {_parse_failure(error)}") from error
    except sqlglot.errors.SqlglotError as error:
        raise QueryError(f"Query failed: the SQL does not parse: {error}") from error
    if len(statements) != 1:
        count = "an empty query" if not statements else f"{len(statements)} statements"
        raise UnsafeQuery(count, "send exactly one SELECT statement")
    statement = statements[0]
    if type(statement).__name__ not in _ALLOWED_ROOTS:
        first = _first_word(query) or _statement_name(statement)
        raise UnsafeQuery(f"the statement {first}", "only SELECT queries run")
    denied_nodes = tuple(getattr(exp, name) for name in _DENIED_NODES if hasattr(exp, name))
    known = {name.lower() for name in allowed}
    for node in statement.walk():
        if isinstance(node, denied_nodes):
            raise UnsafeQuery(f"{_statement_name(node)} inside the query", "only SELECT queries run")
        if isinstance(node, exp.Func):
            _check_function(node)
        if isinstance(node, (exp.From, exp.Join)):
            _check_source(node.this)
        if isinstance(node, exp.Table):
            _check_relation(node, known)
    assert isinstance(statement, exp.Query)
    return statement


def _refuse_statement_keyword(query: str) -> None:
    """A statement sqlglot cannot parse is refused as unsafe, not reported as bad SQL, when its first word
    says it is no query."""
    first = _first_word(query)
    if first is not None and first not in _QUERY_KEYWORDS:
        raise UnsafeQuery(f"the statement {first}", "only SELECT queries run")


def _first_word(query: str) -> str | None:
    """The query's first token in upper case (comments skipped); None if it does not tokenize."""
    import sqlglot

    try:
        tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(query)
    except sqlglot.errors.SqlglotError:
        return None
    return tokens[0].text.upper() if tokens else None


def _parse_failure(error: Exception) -> str:
    """sqlglot's first parse error without its terminal colours: what, where, and the text around it."""
    details = getattr(error, "errors", None) or []
    if not details:
        return str(error)
    first = details[0]
    near = f"{first.get('start_context', '')}{first.get('highlight', '')}"[-40:]
    return (
        f"{first.get('description')} at line {first.get('line')}, column {first.get('col')} (near {near!r})"
    )


def _check_function(function: exp.Func) -> None:
    for name in _function_names(function):
        if (
            name in DENIED_FUNCTIONS
            or name.startswith(DENIED_FUNCTION_PREFIXES)
            or name.endswith(DENIED_FUNCTION_SUFFIXES)
        ):
            raise UnsafeQuery(
                f"the function {name}()", "it reads files, other databases, settings or the environment"
            )


def _function_names(function: exp.Func) -> set[str]:
    """Every name a function node may carry: as written, sqlglot's names for it, and the name DuckDB will run."""
    from sqlglot import exp

    names = {name.lower() for name in type(function).sql_names()}
    if isinstance(function, exp.Anonymous):
        names.add(function.name.lower())
    head = _CALL_HEAD.match(function.sql(dialect="duckdb", comments=False))
    if head:
        names.add(head.group(1).lower())
    return names


def _check_source(source: exp.Expr | None) -> None:
    """What FROM and JOIN read: a relation, a subquery, VALUES or UNNEST; never a table function."""
    from sqlglot import exp

    if isinstance(source, exp.Table) and not isinstance(source.this, exp.Identifier):
        written = source.this.sql(dialect="duckdb", comments=False) if source.this else "?"
        raise UnsafeQuery(
            f"the table function {written[:80]}",
            "table functions can read files, other databases or run SQL built from strings",
        )
    if isinstance(source, exp.Lateral):  # LATERAL (subquery) only: LATERAL range(3) is a table function
        source = source.this
    if not isinstance(source, (exp.Table, exp.Subquery, exp.Values, exp.Unnest)):
        kind = type(source).__name__ if source is not None else "nothing"
        raise UnsafeQuery(f"a {kind} in FROM", "read lake tables, views, subqueries, VALUES or UNNEST")


def _check_relation(table: exp.Table, known: set[str]) -> None:
    from sqlglot import exp

    if not isinstance(table.this, exp.Identifier):
        _check_source(table)
    if table.args.get("db") or table.args.get("catalog"):
        raise UnsafeQuery(
            f"the qualified name {table.sql(dialect='duckdb', comments=False)}",
            "schema or catalog names reach outside the lake; name lake tables and views without a schema",
        )
    name = table.name.lower()
    if name not in known and name not in _ctes_in_scope(table):
        raise UnsafeQuery(
            f"the relation {table.name!r}",
            f"it is not a lake table or view, nor a CTE of the query (lake names: {', '.join(sorted(known))})",
        )


def _ctes_in_scope(table: exp.Table) -> set[str]:
    """The CTE names a relation may refer to, as DuckDB scopes them: every CTE of an enclosing WITH, but
    inside a CTE only the ones before it (and itself when the WITH is RECURSIVE)."""
    from sqlglot import exp

    visible: set[str] = set()
    handled: list[exp.With] = []
    node: exp.Expr = table
    while node.parent is not None:
        parent = node.parent
        if isinstance(node, exp.CTE) and isinstance(parent, exp.With):
            position = next(i for i, cte in enumerate(parent.expressions) if cte is node)
            last = position + 1 if parent.args.get("recursive") else position
            visible |= {cte.alias_or_name.lower() for cte in parent.expressions[:last]}
            handled.append(parent)
        with_clause = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_clause, exp.With) and not any(with_clause is done for done in handled):
            visible |= {cte.alias_or_name.lower() for cte in with_clause.expressions}
        node = parent
    return visible


def _tables(tree: exp.Expr) -> Iterator[exp.Table]:
    from sqlglot import exp

    yield from tree.find_all(exp.Table)


def _statement_name(node: exp.Expr) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return str(node.key).upper()


def _capped(checked: exp.Query, rows: int) -> str:
    """The checked query as DuckDB SQL under `SELECT * FROM (...) LIMIT rows`, built on the tree, not on text;
    comments are dropped, so nothing the caller wrote runs unchecked."""
    from sqlglot import exp

    wrapped = exp.select("*").from_(checked.subquery("user_query")).limit(rows)
    return str(wrapped.sql(dialect="duckdb", comments=False))


@cache
def confined_database(
    memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int = DEFAULT_THREADS
) -> duckdb.DuckDBPyConnection:
    """The process's DuckDB database for user SQL (one per setting pair), locked down once it is made.

    It may not access files or the network (`enable_external_access = false`: no file readers, COPY, ATTACH,
    INSTALL/LOAD; Arrow objects registered from Python still scan), never scans Python variables named in a
    query, never spills to disk, and `lock_configuration = true` makes every later SET or RESET fail. Queries
    beyond `memory_limit` fail rather than spill. The library's `shared_database()` is left as it is.
    """
    import duckdb

    database = duckdb.connect()
    with contextlib.suppress(duckdb.Error):  # without the ICU extension, DuckDB has no time zones to set
        database.execute("SET GLOBAL TimeZone = 'UTC'")
    settings: list[tuple[str, str | int | bool]] = [
        ("memory_limit", memory_limit),
        ("threads", threads),
        ("temp_directory", ""),
        ("enable_progress_bar", False),
        ("autoinstall_known_extensions", False),
        ("autoload_known_extensions", False),
        ("allow_community_extensions", False),
        ("python_enable_replacements", False),
        ("enable_external_access", False),
        ("lock_configuration", True),  # last: from here on, no setting changes
    ]
    for setting, value in settings:
        database.execute(f"SET {setting} = {_setting_literal(value)}")
    return database


def _setting_literal(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


@contextlib.contextmanager
def _cursor(database: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection of its own for one call: what it registers and its TEMP views vanish when it closes."""
    cursor = database.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def execute_confined(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[pa.Table, list[str]]:
    """Run SQL as given on a cursor, interrupted after `timeout_s`; the result and DuckDB's type names.

    The low-level step after `check_user_sql`: it checks nothing itself, the cursor's database must be confined.
    """
    import duckdb

    timer = threading.Timer(timeout_s, cursor.interrupt)
    timer.daemon = True
    timer.start()
    try:
        relation = cursor.sql(sql, params=params)
        return relation.to_arrow_table(), [str(column_type) for column_type in relation.types]
    except duckdb.InterruptException as error:
        raise QueryTimeout(timeout_s) from error
    except duckdb.Error as error:
        raise QueryError(f"Query failed: {str(error).strip()}") from error
    finally:
        timer.cancel()


def rows_as_json(result: UserQueryResult) -> list[list[Any]]:
    """The rows as JSON-ready lists, in column order (names may repeat, so not dicts).

    Times and dates become ISO-8601 strings, durations seconds (a number), DuckDB intervals
    `{"months", "days", "nanoseconds"}`, decimals strings (exact), bytes base64 strings, UUIDs strings; NaN and
    infinities the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers; JavaScript's Number()
    reads them back); lists, structs and maps (as [key, value] pairs) keep their shape.
    """
    return [[_json_value(value) for value in row] for row in result.rows]


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if type(value).__name__ == "MonthDayNano":  # pyarrow's interval value, a named tuple
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    return str(value)
