"""The `metalake` command line on real lakes under tmp_path: every command and output format, and the errors a
user meets (exit code 1, one message, no traceback; usage errors exit 2)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app

COMMANDS = ["init", "tables", "describe", "sql", "history", "ingest", "snapshot", "snapshots", "demo"]
# What a terminal shows (Rich tables, captions and notes on stdout); without it, CliRunner's output is a pipe.
TERMINAL = {"TTY_COMPATIBLE": "1"}
PARAMS = [
    {"run_id": "r1", "key": "learning_rate", "value": "0.1"},
    {"run_id": "r1", "key": "epochs", "value": "6"},
]


def run(lake_path: Path | str, *args: str, env: dict[str, str] | None = None) -> Result:
    """`metalake --lake LAKE ARGS...`, in-process, on a wide terminal so that tables do not wrap."""
    runner = CliRunner()
    return runner.invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200", **(env or {})})


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output


def assert_fails(result: Result, code: int, *fragments: str) -> None:
    """A deliberate exit (SystemExit), never a crash, with every fragment in the output and no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output
    assert "Traceback" not in result.output


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def latest_version(lake: metalake.Lake, table: str) -> int:
    return int(lake.history(table, limit=1).item(0, "version"))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def with_params(lake: metalake.Lake) -> metalake.Lake:
    lake.append("params", PARAMS, reason="fixture")
    return lake


# -- catalog ------------------------------------------------------------------------------------------------


def test_init_creates_the_lake_and_every_table(lake_path: Path) -> None:
    result = run(lake_path, "init")
    assert_ok(result)
    tables = metalake.connect(lake_path).tables()
    assert f"with {len(tables)} tables" in result.stdout
    assert str(lake_path) in result.stdout
    assert_ok(run(lake_path, "init"))  # again: nothing to do, no error


def test_lake_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    lake_path = tmp_path / "from-env"
    result = CliRunner().invoke(app, ["init"], env={"METALAKE_URI": str(lake_path), "COLUMNS": "200"})
    assert_ok(result)
    assert (lake_path / "runs").is_dir()


def test_tables_lists_every_table_its_version_and_the_views(
    with_params: metalake.Lake, lake_path: Path
) -> None:
    result = run(lake_path, "tables", "--rows", env=TERMINAL)
    assert_ok(result)
    for spec in with_params.tables():
        assert spec.name in result.stdout
    params_line = next(line for line in result.stdout.splitlines() if "│ params " in line)
    cells = [cell.strip() for cell in params_line.split("│")]
    columns = len(with_params.spec("params").columns)
    assert cells[1:5] == ["params", str(latest_version(with_params, "params")), str(columns), "2"]
    for view in ("metric_summary", "runs_current", "audit_log"):
        assert view in result.stdout


def test_describe_shows_the_contract(lake_path: Path, lake: metalake.Lake) -> None:
    result = run(lake_path, "describe", "metrics")
    assert_ok(result)
    assert "Primary key: run_id, key, step, timestamp" in result.stdout
    for fragment in ("float64", "timestamp[us, UTC]", "ge=0", "recorded_by", "Training step"):
        assert fragment in result.stdout


def test_describe_a_view_shows_its_documentation(lake_path: Path, lake: metalake.Lake) -> None:
    result = run(lake_path, "describe", "runs_current")
    assert_ok(result)
    assert "what is the current state of every run?" in result.stdout


# -- sql ----------------------------------------------------------------------------------------------------

QUERY = "select run_id, key, value from params order by key"


def test_sql_prints_a_table_by_default(with_params: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "sql", QUERY, env=TERMINAL)
    assert_ok(result)
    assert "learning_rate" in result.stdout
    assert "2 rows" in result.stdout


def test_sql_table_shows_at_most_max_rows(with_params: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "sql", QUERY, "--max-rows", "1", env=TERMINAL)
    assert_ok(result)
    assert "epochs" in result.stdout
    assert "learning_rate" not in result.stdout
    assert "1 more row(s) not shown" in result.stdout


def test_sql_csv_to_stdout(with_params: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "sql", QUERY, "--format", "csv")
    assert_ok(result)
    assert csv_rows(result.stdout) == sorted(PARAMS, key=lambda row: row["key"])


def test_sql_json_is_json_lines(with_params: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "sql", QUERY, "--format", "json")
    assert_ok(result)
    assert [json.loads(line) for line in result.stdout.splitlines()] == sorted(PARAMS, key=lambda r: r["key"])


@pytest.mark.parametrize("output_format", ["csv", "json", "parquet", "table"])
def test_sql_output_writes_a_file(
    with_params: metalake.Lake, lake_path: Path, tmp_path: Path, output_format: str
) -> None:
    target = tmp_path / f"result.{output_format}"
    result = run(lake_path, "sql", QUERY, "--format", output_format, "--output", str(target))
    assert_ok(result)
    assert "Wrote 2 row(s)" in result.stderr
    assert "learning_rate" not in result.stdout
    if output_format == "csv":
        assert csv_rows(target.read_text()) == sorted(PARAMS, key=lambda row: row["key"])
    elif output_format == "json":
        assert pl.read_ndjson(target).to_dicts() == sorted(PARAMS, key=lambda row: row["key"])
    elif output_format == "parquet":
        assert pl.read_parquet(target).to_dicts() == sorted(PARAMS, key=lambda row: row["key"])
    else:
        assert "learning_rate" in target.read_text()


def test_sql_parquet_needs_an_output_file(with_params: metalake.Lake, lake_path: Path) -> None:
    assert_fails(run(lake_path, "sql", QUERY, "--format", "parquet"), 2, "--output")


def test_sql_json_output_ingests_back(with_params: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    exported = tmp_path / "params.jsonl"
    assert_ok(run(lake_path, "sql", "select * from params", "--format", "json", "--output", str(exported)))
    assert_ok(run(lake_path, "ingest", "params", str(exported)))
    assert with_params.read("params").height == 2 * len(PARAMS)


def test_sql_handles_types_a_frame_lacks(lake_path: Path, lake: metalake.Lake) -> None:
    query = "select [1, 2] as l, {'a': 1} as s, '\\x00'::blob as b, interval 3 day as i, 1 as x, 2 as x"
    for output_format in ("table", "csv", "json"):
        assert_ok(run(lake_path, "sql", query, "--format", output_format))
    row = json.loads(run(lake_path, "sql", query, "--format", "json").stdout)
    assert row["l"] == [1, 2] and row["s"] == {"a": 1} and row["x_1"] == 2


def test_sql_as_of_a_snapshot(with_params: metalake.Lake, lake_path: Path) -> None:
    with_params.snapshot("before")
    with_params.append("params", [{"run_id": "r2", "key": "epochs", "value": "9"}])
    count = "select count(*) as n from params"
    then = run(lake_path, "sql", count, "--as-of", "before", "--format", "csv")
    now = run(lake_path, "sql", count, "--format", "csv")
    assert_ok(then)
    assert csv_rows(then.stdout) == [{"n": "2"}]
    assert csv_rows(now.stdout) == [{"n": "3"}]


def test_sql_as_of_an_iso_time(with_params: metalake.Lake, lake_path: Path) -> None:
    first_commit = with_params.history("params", limit=1).item(0, "timestamp")
    with_params.append("params", [{"run_id": "r2", "key": "epochs", "value": "9"}])
    count = "select count(*) as n from params"
    at_first = run(lake_path, "sql", count, "--as-of", first_commit.isoformat(), "--format", "csv")
    assert_ok(at_first)
    assert csv_rows(at_first.stdout) == [{"n": "2"}]
    before_anything = run(lake_path, "sql", count, "--as-of", "2000-01-01T00:00:00Z", "--format", "csv")
    assert_fails(before_anything, 1, "the lake was created at")


def test_sql_as_of_an_unknown_snapshot(with_params: metalake.Lake, lake_path: Path) -> None:
    assert_fails(
        run(lake_path, "sql", QUERY, "--as-of", "nope"), 1, "'nope' is not a valid time, nor a snapshot"
    )


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("selec 1", "syntax error"),
        ("select * from no_such_table", "no_such_table"),
        ("select cast(key as integer) from params", "Conversion Error"),  # fails while running, not planning
    ],
)
def test_sql_errors_are_one_message(
    with_params: metalake.Lake, lake_path: Path, query: str, fragment: str
) -> None:
    assert_fails(run(lake_path, "sql", query), 1, "Error: Query failed", fragment)


def test_sql_output_into_a_missing_folder(
    with_params: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "missing" / "out.csv"
    assert_fails(run(lake_path, "sql", QUERY, "-f", "csv", "-o", str(target)), 1, "does not exist")


# -- history ------------------------------------------------------------------------------------------------


def test_history_limit_shows_the_newest_commits(lake: metalake.Lake, lake_path: Path) -> None:
    for index, reason in enumerate(["reason-one", "reason-two", "reason-three"]):
        lake.append("params", [{"run_id": "r", "key": f"k{index}", "value": "v"}], reason=reason)
    result = run(lake_path, "history", "params", "--limit", "2")
    assert_ok(result)
    assert "reason-three" in result.stdout and "reason-two" in result.stdout
    assert "reason-one" not in result.stdout
    assert "reason-one" in run(lake_path, "history", "params").stdout


# -- ingest -------------------------------------------------------------------------------------------------


def test_ingest_csv_keeps_text_as_text(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"], ["r1", "lr", "1e-3"]]
    )
    result = run(lake_path, "ingest", "params", str(source))
    assert_ok(result)
    assert "Ingested 2 rows" in result.stdout
    stored = lake.read("params").sort("key")
    assert stored.get_column("value").to_list() == ["6", "1e-3"]
    commit = lake.history("params", limit=1).row(0, named=True)
    assert commit["operation"] == "ingest"
    assert commit["reason"] == "metalake ingest params.csv"
    assert commit["actor"] == "tester"


def test_ingest_csv_exported_by_a_spreadsheet(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "params.csv"
    source.write_bytes(
        b'\xef\xbb\xbfrun_id,key,value\r\nr1,epochs,6\r\n\r\nr1,note,""\r\n'
    )  # BOM, CRLF, blank line
    assert_ok(run(lake_path, "ingest", "params", str(source)))
    assert lake.read("params").sort("key").get_column("value").to_list() == ["6", ""]


def test_ingest_csv_types_columns_by_the_table(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "metrics.csv",
        ["run_id", "key", "value", "step", "timestamp"],
        [
            ["r1", "loss", "0.5", "0", "2024-01-01T00:00:00Z"],
            ["r1", "loss", "0.25", "1.0", "2024-01-01T00:00:01+02:00"],
            ["r1", "loss", "inf", "2", "2024-01-01 00:00:02"],
        ],
    )
    assert_ok(run(lake_path, "ingest", "metrics", str(source), "--reason", "backfill"))
    stored = lake.read("metrics").sort("step")
    assert stored.get_column("step").to_list() == [0, 1, 2]
    assert stored.get_column("value").to_list() == [0.5, 0.25, float("inf")]
    assert stored.get_column("timestamp").to_list() == [
        datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2023, 12, 31, 22, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC),
    ]
    assert lake.history("metrics", limit=1).item(0, "reason") == "backfill"


def test_ingest_csv_with_an_empty_optional_column(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "vers.csv", ["model", "version", "artifact_uri", "run_id"], [["m", "1", "s3://b/m", ""]]
    )
    assert_ok(run(lake_path, "ingest", "model_versions", str(source)))
    assert lake.read("model_versions").get_column("run_id").to_list() == [None]


def test_ingest_parquet(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "metrics.parquet"
    pl.DataFrame(
        {
            "run_id": ["r1"] * 3,
            "key": ["loss"] * 3,
            "value": [0.9, 0.5, 0.3],
            "step": [0, 1, 2],
            "timestamp": [datetime(2024, 1, 1, second=s, tzinfo=UTC) for s in range(3)],
        }
    ).write_parquet(source)
    result = run(lake_path, "ingest", "metrics", str(source))
    assert_ok(result)
    assert lake.read("metrics").sort("step").get_column("value").to_list() == [0.9, 0.5, 0.3]


def test_ingest_json_lines(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "experiments.jsonl"
    rows = [
        {"experiment": "churn", "owner": "growth", "tags": {"team": "growth", "tier": 1}},
        {"experiment": "demand", "owner": 6, "tags": None},
    ]
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    assert_ok(run(lake_path, "ingest", "experiments", str(source)))
    stored = lake.read("experiments").sort("experiment")
    assert stored.get_column("owner").to_list() == ["growth", "6"]
    tags = stored.get_column("tags").to_list()
    assert json.loads(tags[0]) == {"team": "growth", "tier": 1} and tags[1] is None


def test_ingest_a_json_array_with_format_override(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "params.txt"
    source.write_text(json.dumps(PARAMS))
    assert_fails(run(lake_path, "ingest", "params", str(source)), 2, "--format")
    assert_ok(run(lake_path, "ingest", "params", str(source), "--format", "json"))
    assert lake.read("params").height == 2


def test_ingest_refuses_a_bad_batch_and_writes_nothing(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    lake.append(
        "metrics", [{"run_id": "r", "key": "k", "value": 1.0, "step": 0, "timestamp": datetime.now(UTC)}]
    )
    before = latest_version(lake, "metrics")
    source = write_csv(
        tmp_path / "bad.csv",
        ["run_id", "key", "value", "step", "timestamp"],
        [
            ["r1", "loss", "0.5", "0", "2024-01-01T00:00:00Z"],
            ["r1", "loss", "0.4", "-1", "2024-01-01T00:00:01Z"],
        ],
    )
    result = run(lake_path, "ingest", "metrics", str(source))
    assert_fails(result, 1, "Refused batch for table 'metrics'", "column 'step'", "Nothing was written")
    assert latest_version(lake, "metrics") == before
    assert lake.read("metrics").height == 1


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"run_id,key,value\nr1,a,1\nr1,b,2,3\n", "line 3 has 4 field(s) but the header has 3"),
        (b"run_id,key,value\nr1,a,1\nr1,b\n", "line 3 has 2 field(s) but the header has 3"),
        (bytes(range(256)) * 8, "is not UTF-8 text"),
        (b"run_id,key,value\nr1,a,\x00\n", "malformed"),
        (b"", "has no header line"),
        (b"run_id,key,value\n", "holds no rows"),
    ],
    ids=["extra-field", "missing-field", "binary", "nul-byte", "empty", "header-only"],
)
def test_ingest_malformed_csv(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path, content: bytes, fragment: str
) -> None:
    source = tmp_path / "broken.csv"
    source.write_bytes(content)
    before = latest_version(lake, "params")
    result = run(lake_path, "ingest", "params", str(source))
    assert_fails(result, 1, "Error:", str(source), fragment)
    assert latest_version(lake, "params") == before


def test_ingest_malformed_parquet_and_json(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "fake.parquet"
    parquet.write_text("run_id,key,value\n")
    assert_fails(run(lake_path, "ingest", "params", str(parquet)), 1, f"Cannot read {parquet} as parquet")
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"run_id": "r1",\n')
    assert_fails(run(lake_path, "ingest", "params", str(lines)), 1, f"Cannot read {lines} as jsonl")


def test_ingest_a_missing_file(lake_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    assert_fails(run(lake_path, "ingest", "params", str(missing)), 1, f"File not found: {missing}")


def test_ingest_with_an_idempotency_key_writes_once(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"]])
    assert_ok(run(lake_path, "ingest", "params", str(source), "--idempotency-key", "load-1"))
    again = run(lake_path, "ingest", "params", str(source), "--idempotency-key", "load-1")
    assert_ok(again)
    assert "Nothing written" in again.stderr
    assert lake.read("params").height == 1


def test_actor_option_is_recorded(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"]])
    result = CliRunner().invoke(
        app, ["--lake", str(lake_path), "--actor", "alice", "ingest", "params", str(source)]
    )
    assert_ok(result)
    assert lake.read("params").get_column("recorded_by").to_list() == ["alice"]
    assert lake.history("params", limit=1).item(0, "actor") == "alice"


# -- errors common to every command --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["describe", "nope"],
        ["history", "nope"],
        ["ingest", "nope", "file.csv"],
        ["sql", "select 1", "--as-of", "x"],
    ],
)
def test_unknown_names_are_one_message(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "file.csv").write_text("a\n1\n")
    result = run(lake_path, *[str(tmp_path / a) if a == "file.csv" else a for a in args])
    assert_fails(
        result, 1, "Error: 'x' is not a valid time, nor a snapshot" if args[0] == "sql" else "Error: Unknown"
    )
    if args[0] != "sql":
        assert "Unknown table 'nope'. Known tables: access_log, alerts" in result.output


def test_bad_lake_uri(tmp_path: Path) -> None:
    assert_fails(run("ftp://x", "tables"), 1, "Unsupported lake URI scheme 'ftp'")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert_fails(run(a_file, "init"), 1, "is a file; a lake is a folder")


def test_unknown_command_and_bad_option_are_usage_errors(lake_path: Path) -> None:
    assert run(lake_path, "frobnicate").exit_code == 2
    assert run(lake_path, "sql", "select 1", "--format", "xml").exit_code == 2
    assert run(lake_path, "history", "runs", "--limit", "0").exit_code == 2


# -- snapshots ----------------------------------------------------------------------------------------------


def test_snapshot_and_snapshots(with_params: metalake.Lake, lake_path: Path) -> None:
    empty = run(lake_path, "snapshots", env=TERMINAL)
    assert_ok(empty)
    assert "No snapshots yet" in empty.stdout
    pinned = run(lake_path, "snapshot", "paper-v1", "--description", "numbers in the paper")
    assert_ok(pinned)
    assert f"Pinned snapshot paper-v1 ({len(with_params.tables())} tables)" in pinned.stdout
    listing = run(lake_path, "snapshots")
    assert_ok(listing)
    assert "paper-v1" in listing.stdout and "numbers in the paper" in listing.stdout
    assert_fails(run(lake_path, "snapshot", "paper-v1"), 1, "already exists")
    assert_fails(run(lake_path, "snapshot", "bad name!"), 2, "not a valid snapshot name")


# -- help and start-up ----------------------------------------------------------------------------------------


def test_help_lists_every_command_in_a_fresh_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "metalake.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert_ok(result)
    assert "Example: metalake" in result.stdout


def test_importing_the_cli_loads_no_heavy_library() -> None:
    """What keeps `metalake --help` fast: polars, DuckDB, deltalake, pandera and Rich load inside commands."""
    heavy = ["polars", "duckdb", "deltalake", "pandera", "pyarrow", "pandas", "rich"]
    code = f"import sys, metalake.cli.app; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_errors_print_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("METALAKE_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "metalake.cli", "--lake", "ftp://x", "tables"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: Unsupported lake URI scheme 'ftp'")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert_ok(result)
    assert result.stdout.strip() == f"metalake {metalake.__version__}"


def test_sql_as_of_the_future_or_before_the_lake_is_refused(
    with_params: metalake.Lake, lake_path: Path
) -> None:
    future = run(lake_path, "sql", "select count(*) from params", "--as-of", "2099-01-01")
    assert_fails(future, 1, "as of 2099-01-01T00:00:00+00:00: that is in the future")
    before = run(lake_path, "sql", "select count(*) from params", "--as-of", "2020-01-01")
    assert_fails(before, 1, "the lake was created at")
    invalid = run(lake_path, "sql", "select count(*) from params", "--as-of", "2026-13-01")
    assert_fails(invalid, 1, "'2026-13-01' is not a valid time, nor a snapshot")


def test_a_snapshot_name_that_reads_as_a_time_is_a_usage_error(lake: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "snapshot", "2026-03-01")
    assert result.exit_code == 2 and "reads as a time" in result.output
    assert lake.snapshots().is_empty()


@pytest.mark.parametrize("output_format", ["csv", "json"])
def test_ingest_of_an_export_of_the_table_drops_its_audit_columns_with_a_notice(
    with_params: metalake.Lake, lake_path: Path, tmp_path: Path, output_format: str
) -> None:
    exported = tmp_path / f"params.{'csv' if output_format == 'csv' else 'jsonl'}"
    assert_ok(
        run(lake_path, "sql", "select * from params", "--format", output_format, "--output", str(exported))
    )
    assert "recorded_at" in exported.read_text()

    result = run(lake_path, "--actor", "importer", "ingest", "params", str(exported))

    assert_ok(result)
    assert "recorded_at and recorded_by are set by metalake on every write" in " ".join(result.stderr.split())
    latest = with_params.read("params").filter(pl.col("recorded_by") == "importer")
    assert latest.height == len(PARAMS)
