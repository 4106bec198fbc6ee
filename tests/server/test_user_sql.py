"""The confined user-SQL runner: every escape refused by the parser, the locked database on its own, legal
queries, time travel, the row cap, the timeout, JSON values, and the library's own database left as it was."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metalake
from metalake.core.sql import shared_database
from metalake.errors import QueryError, QueryTimeout, UnsafeQuery
from metalake.server.user_sql import (
    DENIED_FUNCTIONS,
    MAX_ROW_LIMIT,
    check_user_sql,
    confined_database,
    execute_confined,
    rows_as_json,
    run_user_sql,
)

HEAVY = "with recursive r(n) as (select 1 union all select n + 1 from r where n < 1000000000) select count(*) from r"
LAKE_NAMES = {"runs", "metrics", "runs_current", "lake_commits", "lake_clock"}


def log_run(lake: metalake.Lake, steps: int = 1, experiment: str = "e") -> str:
    run = lake.runs.start(experiment=experiment)
    for step in range(steps):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.end()
    lake.runs.wait()
    return str(run.run_id)


# (query, a fragment the refusal must name)
ESCAPES = {
    "read_csv_passwd": ("select * from read_csv('/etc/passwd')", "READ_CSV"),
    "read_csv_auto": ("select * from read_csv_auto('/etc/passwd')", "READ_CSV_AUTO"),
    "read_parquet": ("select * from read_parquet('/etc/passwd')", "READ_PARQUET"),
    "read_json": ("select * from read_json('/etc/passwd')", "READ_JSON"),
    "read_json_auto": ("select * from read_json_auto('/etc/passwd')", "READ_JSON_AUTO"),
    "read_text": ("select * from read_text('/etc/passwd')", "READ_TEXT"),
    "read_blob": ("select * from read_blob('/etc/passwd')", "READ_BLOB"),
    "glob": ("select * from glob('/etc/*')", "GLOB"),
    "sniff_csv": ("select * from sniff_csv('/etc/passwd')", "SNIFF_CSV"),
    "parquet_metadata": ("select * from parquet_metadata('/etc/passwd')", "PARQUET_METADATA"),
    "sqlite_scan": ("select * from sqlite_scan('/etc/passwd', 't')", "SQLITE_SCAN"),
    "upper_case": ("SELECT * FROM READ_CSV('/etc/passwd')", "READ_CSV"),
    "mixed_case": ("select * from ReAd_TeXt('/etc/passwd')", "READ_TEXT"),
    "quoted_function": ("select * from \"read_text\"('/etc/passwd')", "READ_TEXT"),
    "string_as_table": ("select * from '/etc/passwd'", "/etc/passwd"),
    "csv_as_table": ("select * from 'x.csv'", "x.csv"),
    "parquet_as_table": ("select * from 'file.parquet'", "file.parquet"),
    "quoted_path_as_table": ('select * from "/etc/passwd"', "/etc/passwd"),
    "function_in_subquery": (
        "select * from runs where run_id in (select * from read_text('/etc/passwd'))",
        "READ_TEXT",
    ),
    "function_in_join": ("select * from runs join read_text('/etc/passwd') on true", "READ_TEXT"),
    "lateral_function": ("select * from runs, lateral range(3)", "GenerateSeries"),
    "scalar_read": ("select read_text('/etc/passwd')", "read_text"),
    "range": ("select * from range(10)", "RANGE"),
    "generate_series": ("select * from generate_series(1, 10)", "GENERATE_SERIES"),
    "lake_name_called": ("select * from runs_current(1)", "RUNS_CURRENT"),
    "query": ("select * from query('select 42')", "QUERY"),
    "query_table": ("select * from query_table('runs')", "QUERY_TABLE"),
    "cte_named_like_function": (
        "with read_csv as (select 1) select * from read_csv('/etc/passwd')",
        "READ_CSV",
    ),
    "cte_forward_reference": (
        "with a as (select * from duckdb_tables), duckdb_tables as (select 1) select * from a",
        "duckdb_tables",
    ),
    "comment_hides_nothing": ("select 1 /* ; */ from read_text('/etc/passwd') -- hi", "READ_TEXT"),
    "getenv": ("SELECT getenv('HOME')", "getenv"),
    "getenv_quoted": ("select \"GetEnv\"('HOME')", "getenv"),
    "getenv_method_call": ("select 'HOME'.getenv()", "getenv"),
    "getenv_qualified": ("select system.main.getenv('HOME')", "getenv"),
    "current_setting": ("select current_setting('memory_limit')", "current_setting"),
    "duckdb_settings": ("select * from duckdb_settings()", "DUCKDB_SETTINGS"),
    "duckdb_settings_scalar_subquery": ("select (select count(*) from duckdb_settings())", "DUCKDB_SETTINGS"),
    "duckdb_catalog_view": ("select * from duckdb_tables", "duckdb_tables"),
    "pg_function": ("select pg_typeof(1)", "pg_typeof"),
    "nextval": ("select nextval('s')", "nextval"),
    "information_schema": ("select * from information_schema.tables", "information_schema"),
    "information_schema_quoted": ('select * from "information_schema"."tables"', "information_schema"),
    "main_qualified": ("select * from main.runs", "main.runs"),
    "system_qualified": ("select * from system.main.runs", "system"),
    "temp_qualified": ("select * from temp.metrics", "temp.metrics"),
    "dotted_quoted_name": ('select * from "main.runs"', "main.runs"),
    "pragma": ("PRAGMA version", "PRAGMA"),
    "pragma_function": ("select * from pragma_table_info('runs')", "PRAGMA_TABLE_INFO"),
    "set": ("SET enable_external_access = true", "SET"),
    "reset": ("RESET threads", "RESET"),
    "copy": ("COPY (select 1) TO '/tmp/x'", "COPY"),
    "attach": ("ATTACH '/tmp/x.db'", "ATTACH"),
    "detach": ("DETACH x", "DETACH"),
    "install": ("INSTALL httpfs", "INSTALL"),
    "load": ("LOAD httpfs", "LOAD"),
    "create": ("CREATE TABLE x AS SELECT 1", "CREATE"),
    "create_temp_view": ("create temp view v as select * from runs", "CREATE"),
    "insert": ("INSERT INTO runs SELECT * FROM runs", "INSERT"),
    "update": ("UPDATE runs SET actor = 'x'", "UPDATE"),
    "delete": ("DELETE FROM runs", "DELETE"),
    "drop": ("DROP TABLE runs", "DROP"),
    "alter": ("ALTER TABLE runs ADD COLUMN x INT", "ALTER"),
    "call": ("CALL checkpoint()", "CALL"),
    "export_database": ("EXPORT DATABASE '/tmp/x'", "EXPORT"),
    "import_database": ("IMPORT DATABASE '/tmp/x'", "IMPORT"),
    "select_into": ("select * into t from runs", "INTO"),
    "summarize": ("SUMMARIZE runs", "SUMMARIZE"),
    "describe": ("DESCRIBE runs", "DESCRIBE"),
    "show_tables": ("SHOW TABLES", "SHOW"),
    "two_statements": ("select 1; select 2", "2 statements"),
    "statement_after_comment": (
        "select * from runs -- \n; select * from read_text('/etc/passwd')",
        "2 statements",
    ),
    "empty": ("  ; ", "an empty query"),
}


@pytest.mark.parametrize(("query", "named"), list(ESCAPES.values()), ids=list(ESCAPES))
def test_every_escape_is_refused_and_named(lake: metalake.Lake, query: str, named: str) -> None:
    with pytest.raises(UnsafeQuery) as refused:
        run_user_sql(lake, query)
    assert refused.value.code == "unsafe_query"
    assert named.lower() in str(refused.value).lower(), str(refused.value)
    assert "Only one SELECT" in str(refused.value), "the message says what is allowed"


@pytest.mark.parametrize("name", sorted(DENIED_FUNCTIONS))
def test_every_denied_function_is_refused_as_a_scalar(name: str) -> None:
    with pytest.raises(UnsafeQuery, match=name):
        check_user_sql(f"select {name}('x')", LAKE_NAMES)


@pytest.mark.parametrize(
    "query",
    [
        "select * from runs",
        "FROM metrics",
        "select * from RUNS r join Metrics m using (run_id)",
        'select * from "runs_current"',
        "with read_csv as (select 1 as a) select a from read_csv",
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r",
        "with a as (select 1 as x), b as (select * from a) select * from b, (select * from a) as c",
        "select 1 union all select 2 intersect select 2 except select 3",
        "select * from (values (1, 'a')) as t(x, y), unnest([1, 2]) as u(z)",
        "select * from runs, lateral (select 1)",
        "select make_timestamp(2024, 1, 1, 0, 0, 0), list_transform([1], x -> x + 1), now()",
        "select $1, $name",
    ],
)
def test_legal_queries_pass_the_check(query: str) -> None:
    check_user_sql(query, LAKE_NAMES)


def test_bad_sql_is_a_query_error_with_a_place() -> None:
    with pytest.raises(QueryError, match=r"does not parse.*line 1") as failure:
        check_user_sql("select from where (", LAKE_NAMES)
    assert not isinstance(failure.value, UnsafeQuery)


def test_the_confined_database_reads_no_file_even_bypassing_the_parser(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "t.parquet")
    secret_table = pa.table({"secret": [42]})  # a Python variable DuckDB could otherwise scan by name
    assert secret_table.num_rows == 1
    cursor = confined_database().cursor()
    for sql in [
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/passwd')",
        f"select * from '{tmp_path / 't.parquet'}'",
        f"copy (select 1) to '{tmp_path / 'out.csv'}'",
        f"attach '{tmp_path / 'x.db'}'",
    ]:
        with pytest.raises(QueryError, match="Permission Error"):
            execute_confined(cursor, sql)
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(QueryError, match="secret_table"):
        execute_confined(cursor, "select * from secret_table")
    for sql in ["SET enable_external_access = true", "RESET lock_configuration", "SET threads = 64"]:
        with pytest.raises(QueryError, match="configuration has been locked"):
            execute_confined(cursor, sql)
    locked = execute_confined(
        cursor, "select current_setting('enable_external_access'), current_setting('lock_configuration')"
    )[0]
    assert list(locked.to_pylist()[0].values()) == [False, True]


def test_the_library_database_still_reads_files(lake: metalake.Lake, tmp_path: Path) -> None:
    log_run(lake)
    run_user_sql(lake, "select count(*) from metrics")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    assert shared_database().execute(f"select count(*) from '{tmp_path / 't.parquet'}'").fetchall() == [(2,)]
    assert lake.sql("select count(*) from metrics").fetchall() == [(1,)]
    assert confined_database() is not shared_database()


def test_a_join_over_a_view_and_a_table(lake: metalake.Lake) -> None:
    run_id = log_run(lake)
    result = run_user_sql(
        lake,
        "select r.run_id, r.status, m.key, m.value from runs_current r join metrics m using (run_id)",
    )
    assert result.columns == ["run_id", "status", "key", "value"]
    assert result.types == ["VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE"]
    assert result.rows == [(run_id, "finished", "loss", 1.0)]
    assert not result.truncated
    assert result.arrow.num_rows == 1


def test_views_over_views_ctes_and_the_lake_relations(lake: metalake.Lake) -> None:
    log_run(lake, experiment="a")
    log_run(lake, experiment="b")
    result = run_user_sql(
        lake,
        "with per_experiment as (select experiment, count(*) as n from runs_current group by all) "
        "select experiment, n from per_experiment order by experiment",
    )
    assert result.rows == [("a", 1), ("b", 1)]
    assert run_user_sql(lake, "select count(*) > 0 from leaderboard").rows == [(True,)]
    assert run_user_sql(lake, "select count(*) > 0 from audit_log").rows == [(True,)]
    assert run_user_sql(lake, "select lost_after_s from lake_clock").rows == [(600.0,)]


def test_params_are_bound_positionally_and_by_name(lake: metalake.Lake) -> None:
    run_id = log_run(lake)
    by_position = run_user_sql(lake, "select run_id from runs_current where run_id = ?", params=[run_id])
    assert by_position.rows == [(run_id,)]
    by_name = run_user_sql(
        lake, "select $who as who, count(*) from runs where run_id = $who", params={"who": run_id}
    )
    assert by_name.rows[0][0] == run_id
    injected = run_user_sql(lake, "select count(*) from runs where run_id = ?", params=["x' or '1'='1"])
    assert injected.rows == [(0,)]


def test_a_past_moment_answers_the_past(lake: metalake.Lake) -> None:
    first = log_run(lake)
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    log_run(lake)
    query = "select run_id from runs_current order by run_id"
    assert run_user_sql(lake.as_of(middle), query).rows == [(first,)]
    assert len(run_user_sql(lake, query).rows) == 2
    clock = run_user_sql(lake.as_of(middle), "select moment from lake_clock").rows[0][0]
    assert clock == middle


def test_rows_are_capped_in_order_and_truncation_is_said(lake: metalake.Lake) -> None:
    log_run(lake, steps=30)
    capped = run_user_sql(lake, "select step from metrics order by step desc", limit=5)
    assert capped.rows == [(29,), (28,), (27,), (26,), (25,)]
    assert capped.truncated and capped.arrow.num_rows == 5
    exact = run_user_sql(lake, "select step from metrics", limit=30)
    assert len(exact.rows) == 30 and not exact.truncated
    for limit in [0, MAX_ROW_LIMIT + 1]:
        with pytest.raises(QueryError, match="Row limit"):
            run_user_sql(lake, "select 1", limit=limit)


def test_a_slow_query_is_interrupted(lake: metalake.Lake) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout) as timeout:
        run_user_sql(lake, HEAVY, timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert timeout.value.code == "query_timeout"
    assert "0.3 s" in str(timeout.value)
    with pytest.raises(QueryTimeout):
        execute_confined(confined_database().cursor(), HEAVY, timeout_s=0.1)


def test_bad_sql_reports_duckdb_message(lake: metalake.Lake) -> None:
    with pytest.raises(QueryError, match="nocolumn") as failure:
        run_user_sql(lake, "select nocolumn from runs")
    assert failure.value.code == "query_error"


def test_concurrent_calls_do_not_see_each_others_relations(lake: metalake.Lake) -> None:
    log_run(lake, steps=3)
    queries = ["select count(*) from metrics", "select count(*) from runs_current", "select 7"] * 6
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda q: run_user_sql(lake, q).rows[0][0], queries))
    assert answers == [3, 1, 7] * 6
    with pytest.raises(QueryError, match="metrics"):
        execute_confined(confined_database().cursor(), "select * from metrics")


def test_json_rows_are_strict_json(lake: metalake.Lake) -> None:
    result = run_user_sql(
        lake,
        "select timestamptz '2024-01-02 03:04:05+00' as ts, date '2024-01-02' as d, 1.25::decimal(5, 2) as dec,"
        " 'ab'::blob as b, 'nan'::double as nan, 'inf'::double as inf, -'inf'::double as ninf, 0.5::double as half,"
        " interval 1 month as i, [1, null] as l, {'k': 'v'} as s, map {'a': 1} as m,"
        " '00000000-0000-0000-0000-000000000001'::uuid as u, null as n",
    )
    row = rows_as_json(result)[0]
    assert row == [
        "2024-01-02T03:04:05+00:00",
        "2024-01-02",
        "1.25",
        "YWI=",
        "NaN",
        "Infinity",
        "-Infinity",
        0.5,
        {"months": 1, "days": 0, "nanoseconds": 0},
        [1, None],
        {"k": "v"},
        [["a", 1]],
        "00000000-0000-0000-0000-000000000001",
        None,
    ]
    json.dumps(row, allow_nan=False)
    assert math.isnan(result.rows[0][4]), "the rows keep Python values; only rows_as_json converts"
