"""`metalake views export` (the views as Spark, Databricks and Trino SQL) and `metalake export duckdb` (a file)."""

from __future__ import annotations

import errno
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import sqlglot
from conftest import S3Server
from sqlglot import exp
from test_cli import assert_fails, assert_ok, run

import metalake
from metalake.core.sql import bundled_views, load_views
from metalake.errors import ExportError, ViewExportError
from metalake.exports.dialects import EXPORT_DIALECTS
from metalake.exports.duckdb_file import EXPORT_TABLE, export_duckdb
from metalake.exports.views import (
    INDEX_FILE,
    ORDER_FILE,
    TABLES_FILE,
    export_views,
    table_location_base,
    transpile_view,
)

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


@pytest.mark.parametrize("dialect", EXPORT_DIALECTS)
def test_joined_lists_keep_duckdbs_null_for_a_list_of_nulls(dialect: str, tmp_path: Path) -> None:
    assert duckdb.sql(
        "SELECT array_to_string(['a', NULL], ', '), array_to_string([NULL::VARCHAR], ', '), "
        "array_to_string([]::VARCHAR[], ', ')"
    ).fetchall() == [("a", None, "")]
    sql = translate("SELECT array_to_string(names, ', ') AS listed FROM events", dialect, tmp_path)
    size = "CARDINALITY" if dialect == "trino" else "SIZE"
    assert (
        f"CASE WHEN {size}(FILTER(names, element -> NOT element IS NULL)) = 0 AND {size}(names) > 0 THEN NULL "
        "ELSE ARRAY_JOIN(names, ', ') END AS listed"
    ) in sql


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
def test_cli_writes_one_documented_file_per_view_and_the_order(
    dialect: str, lake: metalake.Lake, tmp_path: Path
) -> None:
    out = tmp_path / "views"
    result = run(lake.uri, "views", "export", "--dialect", dialect, "--output", str(out))
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
    assert f"'file://{(tmp_path / 'lake').resolve()}/runs'" in tables


def test_cli_table_locations_default_to_a_placeholder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from metalake.cli.app import app

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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("./lake", "file://{cwd}/lake"),
        ("lake/", "file://{cwd}/lake"),
        ("file://./lake", "file://{cwd}/lake"),
        ("file:///data/lake", "file:///data/lake"),
        ("s3://bucket/lake/", "s3://bucket/lake"),
        (
            "abfss://container@account.dfs.core.windows.net/lake",
            "abfss://container@account.dfs.core.windows.net/lake",
        ),
        ("dbfs:/mnt/lake", "dbfs:/mnt/lake"),
        (None, "<LAKE_URI>"),
    ],
)
def test_table_locations_are_absolute_uris_for_local_paths(
    given: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert table_location_base(given) == expected.format(cwd=tmp_path.resolve())


def test_cli_relative_lake_uri_becomes_an_absolute_file_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from metalake.cli.app import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["views", "export", "-d", "spark", "-o", "out", "--lake-uri", "./lake"])
    assert_ok(result)
    tables = (tmp_path / "out" / TABLES_FILE).read_text()
    assert f"LOCATION 'file://{tmp_path.resolve()}/lake/runs';" in tables
    assert "file://./" not in tables


def registered_locations(text: str, dialect: str) -> dict[str, str]:
    """Each table of a 00_tables.sql and its location, as sqlglot parses the file in `dialect`."""
    if dialect != "trino":
        return {
            tree.this.name: location.this.this
            for tree in sqlglot.parse(text, read=dialect)
            if tree is not None and (location := tree.find(exp.LocationProperty)) is not None
        }
    # sqlglot keeps a CALL as an unparsed command: read the procedure's arguments as a function call's
    calls = [line.removeprefix("CALL ") for line in text.splitlines() if line.startswith("CALL ")]
    arguments = [
        {
            kwarg.this.name: kwarg.expression.this
            for kwarg in sqlglot.parse_one(f"SELECT {call}", read=dialect).find_all(exp.Kwarg)
        }
        for call in calls
    ]
    return {args["table_name"]: args["table_location"] for args in arguments}


@pytest.mark.parametrize("dialect", EXPORT_DIALECTS)
def test_table_locations_with_quotes_and_backslashes_read_back_exactly(dialect: str, tmp_path: Path) -> None:
    # Trino doubles a quote; Spark reads 'it''s' as 'it' 's' joined ("its"), so it needs \'
    lake = tmp_path / "it's a \\ lake"
    result = export_views(tmp_path / "out", dialect, lake_uri=str(lake))
    text = (tmp_path / "out" / TABLES_FILE).read_text()
    assert registered_locations(text, dialect) == {
        table: f"file://{lake.resolve()}/{table}" for table in result.tables
    }


def test_output_under_a_file_is_an_error_without_traceback(lake: metalake.Lake, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = run(lake.uri, "views", "export", "-d", "spark", "-o", str(tmp_path / "notes.txt" / "sub"))
    assert_fails(result, 1, "Cannot write the views export", "notes.txt is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_a_write_that_fails_midway_removes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Path.write_text
    calls = []

    def write_until_the_disk_is_full(path: Path, text: str, *args: object, **kwargs: object) -> int:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_until_the_disk_is_full)
    with pytest.raises(ExportError, match="No space left on device"):
        export_views(tmp_path / "out", "spark")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_non_empty_folder_is_refused_unless_forced(lake: metalake.Lake, tmp_path: Path) -> None:
    out = tmp_path / "views"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run(lake.uri, "views", "export", "-d", "spark", "-o", str(out))
    assert_fails(result, 1, "is not empty", "notes.txt", "--force")
    assert [path.name for path in out.iterdir()] == ["notes.txt"]  # nothing written
    assert_ok(run(lake.uri, "views", "export", "-d", "spark", "-o", str(out), "--force"))
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "runs_current.sql").exists()


def test_force_removes_the_files_of_the_previous_export_and_no_others(tmp_path: Path) -> None:
    out = tmp_path / "views"
    export_views(out, "spark")
    # as if an older export had a view that has since been renamed, next to the user's own files
    (out / "old_view.sql").write_text("CREATE OR REPLACE VIEW old_view AS SELECT 1;")
    (out / ORDER_FILE).write_text((out / ORDER_FILE).read_text() + "old_view.sql\n../outside.sql\n")
    (tmp_path / "outside.sql").write_text("not ours")
    (out / "mine.sql").write_text("SELECT 'mine';")
    with pytest.raises(ExportError, match="is not empty"):
        export_views(out, "spark")
    result = export_views(out, "trino", force=True)
    assert not (out / "old_view.sql").exists()
    assert (out / "mine.sql").read_text() == "SELECT 'mine';"
    assert (tmp_path / "outside.sql").read_text() == "not ours"
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [*(path.name for path in result.files), INDEX_FILE, ORDER_FILE, "mine.sql"]
    )
    assert "register_table" in (out / TABLES_FILE).read_text()


def test_views_export_refuses_a_global_lake_that_does_not_exist(tmp_path: Path) -> None:
    result = run(tmp_path / "no-lake", "views", "export", "-d", "spark", "-o", str(tmp_path / "out"))
    assert_fails(result, 1, "No lake at", "no-lake")
    assert not (tmp_path / "no-lake").exists()
    assert not (tmp_path / "out").exists()


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
    assert kinds["run_states"] == "BASE TABLE"  # materialized in metalake: a table in the file
    assert kinds["runs_current"] == "VIEW"  # over it, with the lost status derived from the lake_clock table
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


def test_connect_without_create_opens_only_an_existing_lake(lake: metalake.Lake, tmp_path: Path) -> None:
    assert metalake.connect(lake.uri, create=False).uri == lake.uri
    with pytest.raises(metalake.LakeNotFound, match="No lake at") as raised:
        metalake.connect(tmp_path / "missing" / "lake", create=False)
    assert raised.value.uri == str(tmp_path / "missing" / "lake")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(metalake.LakeNotFound):
        metalake.connect(tmp_path / "empty", create=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_duckdb_export_refuses_a_lake_that_does_not_exist(tmp_path: Path) -> None:
    result = run(tmp_path / "no-lake", "export", "duckdb", str(tmp_path / "lake.duckdb"))
    assert_fails(result, 1, "No lake at", "metalake init")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_duckdb_export_refuses_a_time_before_the_lake_began(lake: metalake.Lake, tmp_path: Path) -> None:
    started = lake.created_at()
    assert started is not None
    result = run(lake.uri, "export", "duckdb", str(tmp_path / "old.duckdb"), "--as-of", "2020-01-01")
    assert_fails(
        result, 1, "as of 2020-01-01T00:00:00+00:00", f"the lake was created at {started:%Y-%m-%dT%H:%M:%S}"
    )
    assert not (tmp_path / "old.duckdb").exists()
    with pytest.raises(metalake.TimeTravelError, match="the lake was created at"):
        export_duckdb(lake, tmp_path / "old.duckdb", as_of=started - timedelta(milliseconds=1))
    assert export_duckdb(lake, tmp_path / "first.duckdb", as_of=started).as_of == started.isoformat()


def test_duckdb_export_refuses_a_time_in_the_future(lake: metalake.Lake, tmp_path: Path) -> None:
    result = run(lake.uri, "export", "duckdb", str(tmp_path / "next.duckdb"), "--as-of", "2030-01-01")
    assert_fails(result, 1, "as of 2030-01-01T00:00:00+00:00: that is in the future", "now is ")
    assert not (tmp_path / "next.duckdb").exists()


def test_duckdb_export_as_of_a_snapshot_is_not_checked_against_the_clock(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    lake.snapshot("v1")
    assert export_duckdb(lake, tmp_path / "v1.duckdb", as_of="v1").as_of == "snapshot v1"


def test_duckdb_export_under_a_file_is_an_error_without_traceback(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = run(lake.uri, "export", "duckdb", str(tmp_path / "notes.txt" / "lake.duckdb"))
    assert_fails(result, 1, "notes.txt is a file, not a folder")


def test_duckdb_export_file_system_errors_leave_the_old_file_and_no_partial(
    lake: metalake.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import metalake.exports.duckdb_file as module

    target = tmp_path / "out" / "lake.duckdb"
    target.parent.mkdir()
    target.write_text("old")

    def disk_full(source: object, destination: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "replace", disk_full)
    with pytest.raises(ExportError, match=f"Cannot write {re.escape(str(target))}: No space left on device"):
        export_duckdb(lake, target, force=True)
    assert [path.name for path in target.parent.iterdir()] == ["lake.duckdb"]
    assert target.read_text() == "old"
    monkeypatch.undo()

    def cannot_open(path: str, *args: object, **kwargs: object) -> None:
        raise duckdb.IOException(f'IO Error: Cannot open file "{path}": Permission denied')

    monkeypatch.setattr(duckdb, "connect", cannot_open)
    result = run(lake.uri, "export", "duckdb", str(target), "--force")
    assert_fails(result, 1, "Cannot write", "Permission denied", "Nothing was written")
    assert target.read_text() == "old"


def test_connect_without_create_refuses_an_object_store_path_without_a_lake(
    s3_server: S3Server, s3_lake_uri: str
) -> None:
    options = s3_server.storage_options
    with pytest.raises(metalake.LakeNotFound, match=re.escape(s3_lake_uri)):
        metalake.connect(s3_lake_uri, storage_options=options, create=False)
    metalake.connect(s3_lake_uri, storage_options=options)
    assert metalake.connect(s3_lake_uri, storage_options=options, create=False).uri == s3_lake_uri
