"""The CLI's output contract: every command that lists or shows things takes --format table|csv|json|jsonl, with
the Python API's column names and ISO-8601 UTC timestamps; piped, the table is one whole row per line."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import polars as pl
import pytest
import typer
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app
from metalake.core.catalog import describe_columns
from metalake.core.delta import TableMaintenance
from metalake.datasets.datasets import PROFILE_STATISTICS, DatasetDiff, DatasetVersion
from metalake.registry.registry import ModelVersion
from metalake.tracking.search import RunDetails

ACTOR = "acceptance-check-user"
NODE = "dataset:metalake/train"
BOX_DRAWING = set("│┃━─┏┓┗┛┡┩╇┳┻╭╮╰╯├└┼")
FORMATS = ("table", "csv", "json", "jsonl")
# Commands that write or run something and print a short report: they take no --format.
NOT_LISTINGS = {
    "init", "ingest", "sync", "snapshot", "demo", "serve", "runs", "datasets register", "quality validate",
    "import mlflow", "models register", "models alias", "models transition", "models policy set",
    "models policy show", "deploy record", "deploy end", "kpis define", "kpis observe", "kpis ingest",
    "lineage ingest", "views export", "export duckdb", "access init", "access principal create",
    "access principal disable", "access principal enable", "access group add", "access group remove",
    "access token create", "access token revoke", "access grant", "access revoke",
    "access check",  # takes --format, but answers exit code 1 when denied: tested in tests/access
}  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    """The sample lake (tests/support/sample_lake.py) written by ACTOR, with a snapshot; built once, only read."""
    from support.sample_lake import fill_sample_lake

    folder = tmp_path_factory.mktemp("output")
    lake = metalake.connect(folder / "lake", actor=ACTOR)
    fill_sample_lake(lake, folder)
    lake.snapshot("paper-v1", description="numbers in the paper")
    return lake


def invoke(lake: metalake.Lake, *args: str, terminal: bool = False) -> Result:
    """`metalake --lake LAKE ARGS` on a narrow 80 columns: piped, unless `terminal` (TTY_COMPATIBLE=1)."""
    env = {"COLUMNS": "80", "TTY_COMPATIBLE": "1" if terminal else None, "FORCE_COLOR": None}
    result = CliRunner().invoke(app, ["--lake", lake.uri, *args], env=env)
    assert result.exit_code == 0, result.output
    return result


@dataclass(frozen=True)
class Listing:
    """A command, the columns its csv/jsonl (and json, when a list) carry, and what its json object holds."""

    args: Callable[[metalake.Lake], list[str]]
    columns: Callable[[metalake.Lake], list[str]]
    timestamps: Callable[[metalake.Lake], list[str]] = lambda lake: []
    document: Callable[[metalake.Lake], list[str]] | None = None  # json is this object, not an array


def frame_columns(frame: Callable[[metalake.Lake], pl.DataFrame]) -> dict[str, Any]:
    """columns and timestamp columns of a frame the Python API returns."""
    return {
        "columns": lambda lake: frame(lake).columns,
        "timestamps": lambda lake: [n for n, t in frame(lake).schema.items() if isinstance(t, pl.Datetime)],
    }


def search_columns(lake: metalake.Lake) -> list[str]:
    """lake.runs.search's columns as the CLI writes them: run attributes, then params, tags, metrics, sorted."""
    columns = lake.runs.search().columns
    keyed = [sorted(c for c in columns if c.startswith(p)) for p in ("params.", "tags.", "metrics.")]
    return [c for c in columns if "." not in c] + [c for group in keyed for c in group]


def run_id(lake: metalake.Lake, name: str = "xgb-6") -> str:
    runs = lake.runs.search(where=f"name = '{name}'")
    return str(runs.item(0, "run_id"))


def run_row_columns(lake: metalake.Lake) -> list[str]:
    details = lake.runs.get(run_id(lake))
    prefixed = [
        *(f"params.{k}" for k in sorted(details.params)),
        *(f"tags.{k}" for k in sorted(details.tags)),
        *(f"metrics.{k}" for k in sorted(details.metrics)),
    ]
    return [*details.info, *prefixed]


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


QUERY = "select run_id, name, start_time from runs_current order by name"
LISTINGS: dict[str, Listing] = {
    "tables": Listing(
        lambda lake: ["tables"], lambda lake: ["name", "kind", "version", "columns", "description"]
    ),
    "describe": Listing(
        lambda lake: ["describe", "runs"],
        lambda lake: list(next(iter(describe_columns(lake.spec("runs"))))),
        document=lambda lake: ["name", "kind", "description", "primary_key", "partition_by", "columns"],
    ),
    "sql": Listing(
        lambda lake: ["sql", QUERY],
        lambda lake: ["run_id", "name", "start_time"],
        lambda lake: ["start_time"],
    ),
    "history": Listing(lambda lake: ["history", "runs"], **frame_columns(lambda lake: lake.history("runs"))),
    "snapshots": Listing(lambda lake: ["snapshots"], **frame_columns(lambda lake: lake.snapshots())),
    "maintain": Listing(lambda lake: ["maintain", "--dry-run"], lambda lake: field_names(TableMaintenance)),
    "runs list": Listing(
        lambda lake: ["runs", "list"], search_columns, lambda lake: ["start_time", "end_time"]
    ),
    "runs show": Listing(
        lambda lake: ["runs", "show", run_id(lake)],
        run_row_columns,
        lambda lake: ["start_time", "end_time", "recorded_at"],
        document=lambda lake: field_names(RunDetails),
    ),
    "runs compare": Listing(
        lambda lake: ["runs", "compare", run_id(lake, "xgb-4"), run_id(lake, "xgb-6")],
        search_columns,
        lambda lake: ["start_time", "end_time"],
    ),
    "datasets list": Listing(
        lambda lake: ["datasets", "list"], **frame_columns(lambda lake: lake.datasets.list())
    ),
    "datasets show": Listing(
        lambda lake: ["datasets", "show", "churn"],
        lambda lake: ["name", "type", "nullable", *PROFILE_STATISTICS],
        document=lambda lake: field_names(DatasetVersion),
    ),
    "datasets history": Listing(
        lambda lake: ["datasets", "history", "churn"],
        **frame_columns(lambda lake: lake.datasets.history("churn")),
    ),
    "datasets diff": Listing(
        lambda lake: ["datasets", "diff", "churn", "1", "2"],
        lambda lake: lake.datasets.diff("churn", 1, 2).profile.columns,
        document=lambda lake: [*field_names(DatasetDiff), "breaking"],
    ),
    "quality report": Listing(
        lambda lake: ["quality", "report", "churn"],
        **frame_columns(lambda lake: lake.quality.latest("churn")[1]),
        document=lambda lake: ["scorecard", "validations", "latest", "results"],
    ),
    "models list": Listing(
        lambda lake: ["models", "list"], **frame_columns(lambda lake: lake.registry.versions())
    ),
    "models show": Listing(
        lambda lake: ["models", "show", "churn", "champion"],
        lambda lake: field_names(ModelVersion),
        lambda lake: ["registered_at"],
        document=lambda lake: [*field_names(ModelVersion), "trained_on"],
    ),
    "models at": Listing(
        lambda lake: ["models", "at", "churn", "2100-01-01", "--stage", "staging"],
        lambda lake: field_names(ModelVersion),
        lambda lake: ["registered_at"],
    ),
    "deploy list": Listing(
        lambda lake: ["deploy", "list"], **frame_columns(lambda lake: lake.deployments.list())
    ),
    "kpis list": Listing(lambda lake: ["kpis", "list"], **frame_columns(lambda lake: lake.kpis.list())),
    "kpis production-envs": Listing(lambda lake: ["kpis", "production-envs"], lambda lake: ["environment"]),
    "kpis impact": Listing(
        lambda lake: ["kpis", "impact"],
        **frame_columns(lambda lake: lake.kpis.impact(None, None)),
    ),
    "lineage show": Listing(
        lambda lake: ["lineage", "show", NODE],
        **frame_columns(lambda lake: lake.lineage.walk(NODE, "upstream")),
    ),
    "access list": Listing(lambda lake: ["access", "list"], **frame_columns(lambda lake: lake.access.list())),
    "access principal list": Listing(
        lambda lake: ["access", "principal", "list"], **frame_columns(lambda lake: lake.access.principals())
    ),
    "access token list": Listing(
        lambda lake: ["access", "token", "list"], **frame_columns(lambda lake: lake.access.tokens())
    ),
}


def commands(group: typer.Typer) -> dict[str, Any]:
    """Every command of the app by its words (`models policy show`), from the Click tree Typer builds."""
    found: dict[str, Any] = {}

    def walk(command: Any, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found[" ".join(words)] = command
            return
        for name, child in subcommands.items():
            walk(child, [*words, name])

    walk(typer.main.get_command(group), [])
    return found


def assert_utc_timestamps(values: list[Any]) -> None:
    """ISO-8601 text with the UTC offset written out; missing values may be null."""
    present = [value for value in values if value not in (None, "")]
    for value in present:
        assert isinstance(value, str) and value.endswith("+00:00"), value
        assert datetime.fromisoformat(value).utcoffset() == timedelta(0), value


# -- every listing command takes every format ---------------------------------------------------------------


def test_every_command_that_lists_or_shows_things_takes_every_format() -> None:
    """A new command must be classified here: a listing (with --format) or one of the writing commands."""
    found = commands(app)
    unclassified = set(found) - set(LISTINGS) - NOT_LISTINGS
    assert not unclassified, f"add these to LISTINGS (with --format) or NOT_LISTINGS: {sorted(unclassified)}"
    for words in LISTINGS:
        option = next((p for p in found[words].params if "--format" in getattr(p, "opts", [])), None)
        assert option is not None, f"`metalake {words}` has no --format"
        assert set(FORMATS) <= set(format_choices(option)), f"`metalake {words} --format` offers too few"


def format_choices(option: Any) -> tuple[str, ...]:
    """The values an option takes: Click's Choice, or the Literal annotation of newer Typer versions."""
    choices = getattr(getattr(option, "type", None), "choices", None)
    if choices is None:
        choices = get_args(getattr(getattr(option, "type_descriptor", None), "annotation", None))
    return tuple(choices)


@pytest.mark.parametrize("words", LISTINGS)
def test_csv_has_the_api_columns_and_utc_timestamps(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    output = invoke(lake, *listing.args(lake), "--format", "csv").stdout
    reader = csv.DictReader(io.StringIO(output))
    rows = list(reader)
    assert reader.fieldnames == listing.columns(lake)
    assert rows, output  # every listing of the sample lake has rows
    for column in listing.timestamps(lake):
        assert_utc_timestamps([row[column] for row in rows])


@pytest.mark.parametrize("words", LISTINGS)
def test_jsonl_is_one_object_per_line_with_the_api_columns(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    output = invoke(lake, *listing.args(lake), "--format", "jsonl").stdout
    rows = [json.loads(line) for line in output.splitlines()]
    assert rows, output
    columns = listing.columns(lake)
    assert all(list(row) == columns for row in rows), (list(rows[0]), columns)
    for column in listing.timestamps(lake):
        assert_utc_timestamps([row[column] for row in rows])


@pytest.mark.parametrize("words", LISTINGS)
def test_json_is_one_array_or_the_object_a_show_command_returns(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    output = invoke(lake, *listing.args(lake), "--format", "json").stdout
    if words in ("sql", "deploy list", "kpis list", "kpis impact"):
        # These wrote JSON lines for --format json before the contract, and still do: scripts rely on it.
        loaded = [json.loads(line) for line in output.splitlines()]
    else:
        loaded = json.loads(output)
    if listing.document is not None:
        assert isinstance(loaded, dict)
        assert sorted(loaded) == sorted(listing.document(lake))
        return
    assert isinstance(loaded, list) and loaded
    assert all(list(row) == listing.columns(lake) for row in loaded)
    for column in listing.timestamps(lake):
        assert_utc_timestamps([row[column] for row in loaded])


def test_json_of_show_commands_writes_timestamps_in_utc(lake: metalake.Lake) -> None:
    run = json.loads(invoke(lake, "runs", "show", run_id(lake), "--format", "json").stdout)
    assert_utc_timestamps([run["info"]["start_time"], run["info"]["end_time"], run["info"]["recorded_at"]])
    dataset = json.loads(invoke(lake, "datasets", "show", "churn", "--format", "json").stdout)
    assert_utc_timestamps([dataset["recorded_at"]])
    assert dataset["schema_changes"][0] == {
        "column": "id", "change": "type_changed", "old_type": "BIGINT", "new_type": "VARCHAR", "breaking": True,
    }  # fmt: skip
    report = json.loads(invoke(lake, "quality", "report", "churn", "--format", "json").stdout)
    assert_utc_timestamps(
        [report["latest"]["validated_at"], *(v["validated_at"] for v in report["validations"])]
    )


@pytest.mark.parametrize("words", LISTINGS)
def test_the_piped_table_is_plain_lines(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    result = invoke(lake, *listing.args(lake))
    assert result.stdout.strip(), result.output
    assert not BOX_DRAWING & set(result.stdout), result.stdout
    if words in ("lineage show", "models at", "kpis production-envs"):
        return  # a tree and sentences by default; their rows are checked in the other formats
    first = next(line for line in result.stdout.splitlines() if line and not line.startswith("# "))
    assert "\t" in first, first  # a header line: titles and text of several sections start with #


@pytest.mark.parametrize("words", ["history", "runs list", "deploy list", "lineage show"])
def test_the_piped_table_has_a_header_then_one_whole_row_per_line(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    args = [*listing.args(lake), *(["--format", "table"] if words == "lineage show" else [])]
    lines = invoke(lake, *args).stdout.splitlines()
    rows = [
        json.loads(line)
        for line in invoke(lake, *listing.args(lake), "--format", "jsonl").stdout.splitlines()
    ]
    header = lines[0].split("\t")
    assert len(lines) == 1 + len(rows)
    assert all(len(line.split("\t")) == len(header) for line in lines)
    for line, row in zip(lines[1:], rows, strict=True):
        cells = dict(zip(header, line.split("\t"), strict=True))
        for column in header:
            if isinstance(row[column], str):
                assert cells[column] == row[column]  # whole: never cut, wrapped or shortened


# -- history runs | grep --------------------------------------------------------------------------------------


def test_piped_history_keeps_every_value_whole_on_its_line(lake: metalake.Lake) -> None:
    result = invoke(lake, "history", "runs")
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == lake.history("runs").columns
    matches = [line for line in lines if ACTOR in line]
    assert len(matches) == lake.history("runs").height  # every commit's line names its actor whole
    key = next(k for k in lake.history("runs").get_column("idempotency_key").to_list() if k)
    assert any(key in line for line in lines)  # a value longer than the 80 columns, on one line
    assert "History of runs" in result.stderr and "History of runs" not in result.stdout


def test_grep_finds_the_actor_in_a_real_pipe(lake: metalake.Lake) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    command = f"{sys.executable} -m metalake.cli --lake {lake.uri} history runs | grep {ACTOR}"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    found = result.stdout.splitlines()
    assert found and all(line.split("\t")[3] == ACTOR for line in found)


@pytest.mark.parametrize("words", LISTINGS)
def test_in_a_terminal_every_listing_draws_rich_tables(lake: metalake.Lake, words: str) -> None:
    listing = LISTINGS[words]
    drawn = invoke(lake, *listing.args(lake), terminal=True).stdout
    assert BOX_DRAWING & set(drawn) or words in ("models at", "kpis production-envs"), drawn  # sentences


def test_in_a_terminal_the_table_is_drawn_with_rich(lake: metalake.Lake) -> None:
    drawn = re.sub(r"\x1b\[[0-9;]*m", "", invoke(lake, "history", "runs", terminal=True).stdout)
    assert "┃ version" in drawn and "History of runs (newest first)" in drawn


def test_piped_values_with_tabs_and_line_breaks_stay_on_one_line(lake: metalake.Lake) -> None:
    query = "select 'a' || chr(9) || 'b' as tabbed, 'one' || chr(10) || 'two' as broken, null as missing"
    assert invoke(lake, "sql", query).stdout.splitlines() == ["tabbed\tbroken\tmissing", "a\\tb\tone\\ntwo\t"]


def test_piped_lineage_tree_is_indented_lines(lake: metalake.Lake) -> None:
    lines = invoke(lake, "lineage", "show", NODE).stdout.splitlines()
    assert lines[0] == NODE
    assert lines[1] == "  job:airflow-prod/daily_features.join  output"
    assert all(line.startswith("  ") for line in lines[1:])


def test_an_empty_listing_prints_its_header_and_says_why_on_stderr(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake", actor=ACTOR)
    result = invoke(lake, "snapshots")
    assert result.stdout == "snapshot\tdescription\tpinned_at\tpinned_by\ttables\n"
    assert "No snapshots yet" in result.stderr
    assert json.loads(invoke(lake, "snapshots", "--format", "json").stdout) == []
    assert invoke(lake, "snapshots", "--format", "jsonl").stdout == ""


def test_commands_that_wrote_json_lines_also_take_jsonl(lake: metalake.Lake) -> None:
    for args in (["sql", QUERY], ["deploy", "list"], ["kpis", "list"], ["kpis", "impact"]):
        as_json = invoke(lake, *args, "--format", "json").stdout
        assert as_json == invoke(lake, *args, "--format", "jsonl").stdout
        assert not as_json.startswith("[")


def test_a_reader_that_stops_early_ends_the_command_quietly(lake: metalake.Lake) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    query = "select * from range(300000)"
    command = (
        f'{sys.executable} -m metalake.cli --lake {lake.uri} sql "{query}" --max-rows 300000 | head -n 1'
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout == "range\n"
    assert "Error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
