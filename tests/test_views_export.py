"""`metalake views export` (the views as Spark, Databricks and Trino SQL) and `metalake export duckdb` (a file)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from test_cli import assert_ok, run

import metalake
from metalake.duckdb_export import EXPORT_TABLE, export_duckdb
from metalake.errors import ExportError, ViewExportError
from metalake.sql import bundled_views, load_views
from metalake.view_dialects import EXPORT_DIALECTS
from metalake.views_export import INDEX_FILE, ORDER_FILE, TABLES_FILE, export_views, transpile_view

# Functions the exported SQL may call that sqlglot does not know by name; anything else anonymous would be a
# DuckDB function left untranslated.
SPARK_UNTYPED = {
    "FIRST",
    "UNIX_MICROS",
    "PERCENTILE",
    "SORT_ARRAY",
    "TRANSFORM",
    "FROM_JSON",
    "MAP",
    "JSON_ARRAY_LENGTH",
}
KNOWN_UNTYPED = {
    "spark": SPARK_UNTYPED,
    "databricks": SPARK_UNTYPED,
    "trino": {"ARBITRARY", "JSON_PARSE", "TRANSFORM", "MAP", "JSON_ARRAY_LENGTH", "ELEMENT_AT", "ARRAY_MAX"},
}


@pytest.mark.parametrize("dialect", EXPORT_DIALECTS)
@pytest.mark.parametrize("name", sorted(bundled_views()))
def test_every_view_transpiles_without_warnings_and_parses_back(name: str, dialect: str) -> None:
    # any sqlglot warning, unsupported or unverified construct raises ViewExportError
    sql = transpile_view(bundled_views()[name], dialect)
    tree = sqlglot.parse_one(sql, read=dialect)
    assert isinstance(tree, exp.Query)
    untyped = {node.name.upper() for node in tree.find_all(exp.Anonymous)}
    assert untyped <= KNOWN_UNTYPED[dialect], f"{name}: DuckDB functions left in the {dialect} SQL"


def translate(select: str, dialect: str, tmp_path: Path) -> str:
    (tmp_path / "probe.sql").write_text(f"-- probe: a test view.\n{select}\n")
    flat = " ".join(transpile_view(load_views(tmp_path)["probe"], dialect).split())
    return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", flat))  # as if not pretty-printed


@pytest.mark.parametrize("dialect", EXPORT_DIALECTS)
def test_arg_max_keeps_skipping_null_values(dialect: str, tmp_path: Path) -> None:
    sql = translate("SELECT arg_max(x, t) AS a, arg_max_null(x, t) AS b FROM events", dialect, tmp_path)
    assert "MAX_BY(x, CASE WHEN NOT x IS NULL THEN t END) AS a" in sql
    assert "MAX_BY(x, t) AS b" in sql


def test_ordered_lists_stay_ordered_on_spark(tmp_path: Path) -> None:
    sql = translate("SELECT list(name ORDER BY at DESC) AS names FROM events", "spark", tmp_path)
    assert (
        "TRANSFORM(SORT_ARRAY(COLLECT_LIST(STRUCT(NOT at IS NULL AS n0, at AS k0, name AS v)), FALSE)" in sql
    )
    assert "ARRAY_AGG(name ORDER BY at DESC" in translate(
        "SELECT list(name ORDER BY at DESC) AS names FROM events", "trino", tmp_path
    )


def test_trino_gets_its_own_forms(tmp_path: Path) -> None:
    sql = translate(
        "SELECT greatest(a, b) AS g, quantile_cont(d, 0.5) AS p, {'t': a, 'r': b} AS k, "
        "date_diff('microsecond', a, b) AS us, any_value(c) AS c FROM events",
        "trino",
        tmp_path,
    )
    assert (
        "ARRAY_MAX(FILTER(ARRAY[a, b], value -> NOT value IS NULL)) AS g" in sql
    )  # nulls skipped, as DuckDB
    assert "ARRAY_SORT(ARRAY_AGG(d) FILTER(WHERE NOT d IS NULL))" in sql  # exact percentile, interpolated
    assert "ROW(a, b) AS k" in sql
    assert "DATE_DIFF('MILLISECOND', a, b) * 1000 AS us" in sql
    assert "ARBITRARY(c) AS c" in sql


def test_json_structures_become_the_engines_types(tmp_path: Path) -> None:
    select = (
        "SELECT c.change.name FROM versions AS v "
        """CROSS JOIN unnest(from_json(v.changes, '[{"name": "VARCHAR", "breaking": "BOOLEAN"}]')) AS c(change)"""
    )
    spark = translate(select, "spark", tmp_path)
    assert (
        "LATERAL VIEW EXPLODE(FROM_JSON(v.changes, 'ARRAY<STRUCT<`name`: STRING, `breaking`: BOOLEAN>>'))"
        in spark
    )
    trino = translate(select, "trino", tmp_path)
    # Trino spreads an unnested row over columns: each one is wrapped in a one-field row
    assert (
        'UNNEST(TRANSFORM(CAST(JSON_PARSE(v.changes) AS ARRAY(ROW("name" VARCHAR, "breaking" BOOLEAN))), '
        "r -> ROW(r))) AS c(change)" in trino
    )


@pytest.mark.parametrize(
    ("select", "construct"),
    [
        ("SELECT list_bool_or([true]) AS b FROM events", "list_bool_or"),
        ("SELECT * EXCLUDE (a) FROM events", "EXCLUDE"),
        ("SELECT a FROM events UNION ALL BY NAME SELECT a FROM events", "UNION BY NAME"),
        ("SELECT unnest(tags) AS tag FROM events", "unnest() in the select list"),
        ("SELECT count(DISTINCT a) OVER (PARTITION BY b) AS n FROM events", "count(DISTINCT"),
    ],
)
def test_a_construct_without_a_faithful_translation_fails_naming_view_and_construct(
    select: str, construct: str, tmp_path: Path
) -> None:
    views = tmp_path / "views"
    views.mkdir()
    (views / "probe.sql").write_text(f"-- probe: a test view.\n{select}\n")
    with pytest.raises(ViewExportError, match="probe") as raised:
        export_views(tmp_path / "out", "spark", views=load_views(views))
    assert construct in str(raised.value)
    assert not (tmp_path / "out").exists()  # nothing written


def test_unknown_dialect_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="spark, databricks, trino"):
        export_views(tmp_path / "out", "postgres")


@pytest.mark.parametrize("dialect", EXPORT_DIALECTS)
def test_cli_writes_one_documented_file_per_view_and_the_order(dialect: str, tmp_path: Path) -> None:
    out = tmp_path / "views"
    result = run(tmp_path / "lake", "views", "export", "--dialect", dialect, "--output", str(out))
    assert_ok(result)
    assert "audit_log" in result.output  # not exported, and said so
    index = (out / INDEX_FILE).read_text()
    listed = [line.split("`")[1] for line in index.splitlines() if line[:1].isdigit()]
    assert listed[0] == TABLES_FILE
    assert set(listed[1:]) == {f"{name}.sql" for name in bundled_views() if name != "audit_log"}
    assert listed.index("runs_current.sql") < listed.index("model_lineage.sql")  # dependencies first
    assert (out / ORDER_FILE).read_text().split() == listed
    text = (out / "runs_current.sql").read_text()
    assert text.startswith("-- runs_current: what is the current state of every run?")
    assert "CREATE OR REPLACE VIEW runs_current AS" in text
    assert "metalake: materialize" not in text
    tables = (out / TABLES_FILE).read_text()
    assert f"{(tmp_path / 'lake').resolve()}/runs'" in tables


def test_cli_table_locations_default_to_a_placeholder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from metalake.cli import app

    out = tmp_path / "views"
    result = CliRunner().invoke(app, ["views", "export", "-d", "spark", "-o", str(out)])
    assert_ok(result)
    assert (
        "CREATE TABLE IF NOT EXISTS runs USING DELTA LOCATION '<LAKE_URI>/runs';"
        in (out / TABLES_FILE).read_text()
    )


def test_cli_unknown_dialect_lists_the_valid_ones_without_traceback(tmp_path: Path) -> None:
    result = run(
        tmp_path / "lake", "views", "export", "--dialect", "postgres", "--output", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    assert "'spark', 'databricks', 'trino'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


# -- metalake export duckdb ---------------------------------------------------------------------------------


def open_export(path: Path) -> duckdb.DuckDBPyConnection:
    """The exported file as a BI tool opens it (read-only), with times shown in UTC as metalake shows them."""
    database = duckdb.connect(str(path), read_only=True)
    database.execute("SET TimeZone = 'UTC'")
    return database


def test_duckdb_file_holds_the_tables_and_views_of_the_lake(
    sample_lake: metalake.Lake, tmp_path: Path
) -> None:
    target = tmp_path / "lake.duckdb"
    result = export_duckdb(sample_lake, target)
    assert set(result.views) == set(bundled_views())
    with open_export(target) as database:
        assert (
            database.sql("select * from metrics")
            .pl()
            .sort("run_id", "key", "step")
            .equals(sample_lake.sql("select * from metrics").pl().sort("run_id", "key", "step"))
        )
        for view in ("runs_current", "schema_changes", "audit_log"):
            assert sorted(database.sql(f"select * from {view}").fetchall(), key=repr) == sorted(
                sample_lake.sql(f"select * from {view}").fetchall(), key=repr
            )
        kinds = dict(database.sql("select table_name, table_type from information_schema.tables").fetchall())
        record = database.sql(
            f"select lake_uri, as_of, table_version, rows from {EXPORT_TABLE} where table_name = 'runs'"
        )
        assert record.fetchall() == [(sample_lake.uri, None, sample_lake.version("runs"), 8)]
    assert kinds["runs_current"] == "BASE TABLE"  # materialized in metalake: a table in the file
    assert kinds["schema_changes"] == "VIEW"


def test_duckdb_export_as_of_a_snapshot_has_the_old_rows(lake: metalake.Lake, tmp_path: Path) -> None:
    lake.append("params", [{"run_id": "r1", "key": "depth", "value": "4"}])
    lake.snapshot("before")
    lake.append("params", [{"run_id": "r1", "key": "lr", "value": "0.1"}])
    result = export_duckdb(lake, tmp_path / "old.duckdb", as_of="before")
    assert result.as_of == "snapshot before"
    with open_export(tmp_path / "old.duckdb") as database:
        assert database.sql('select "key" from params').fetchall() == [("depth",)]
        assert database.sql(f"select distinct as_of from {EXPORT_TABLE}").fetchall() == [("snapshot before",)]


def test_duckdb_export_refuses_an_existing_file_unless_forced(lake: metalake.Lake, tmp_path: Path) -> None:
    target = tmp_path / "lake.duckdb"
    target.write_text("keep me")
    result = run(lake.uri, "export", "duckdb", str(target))
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert target.read_text() == "keep me"
    assert_ok(
        run(lake.uri, "export", "duckdb", str(target), "--force", "--as-of", datetime.now(UTC).isoformat())
    )
    with open_export(target) as database:
        assert database.sql("select count(*) from runs_current").fetchall() == [(0,)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lake", "lake.duckdb"]  # no partial file left
