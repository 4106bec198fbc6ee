"""Every numeric option of the CLI answers odd numbers (huge, negative, NaN, infinities, 1e308, 99999999999d) with
a result or a clear error and a non-zero exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.sample_lake import fill_sample_lake
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app

# Each command with "{}" where the number goes; options take it as --option=VALUE and arguments after "--", so a
# negative number is read as a number, not as an option.
COUNTS = [
    ["sql", "select 1", "--max-rows={}"],
    ["history", "metrics", "--limit={}"],
    ["runs", "list", "--limit={}"],
    ["deploy", "list", "--limit={}"],
    ["lineage", "show", "model:churn/1", "--depth={}"],
]
VERSIONS = [
    ["datasets", "show", "churn", "--version={}"],
    ["datasets", "diff", "churn", "1", "--", "{}"],
    ["models", "show", "churn", "--", "{}"],
    ["models", "alias", "churn", "fuzz", "--", "{}"],
    ["deploy", "record", "--model", "churn", "--version={}", "--env", "fuzz"],
]
AMOUNTS = [
    ["kpis", "observe", "conversion", "--", "{}"],
    ["maintain", "--table", "snapshots", "--dry-run", "--vacuum-days={}"],
    ["maintain", "--table", "metrics", "--dry-run", "--metric-history-days={}"],
]
DURATIONS = [["kpis", "impact", "--window={}"]]

ODD_NUMBERS = [
    "1e308",
    "-1e308",
    "1e400",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "-0",
    "0",
    "9" * 40,
    "0x10",
    "1_000",
    " 7",
]
numbers = st.one_of(
    st.integers().map(str),
    st.sampled_from([str(2**31), str(2**63 - 1), str(2**63), str(-(2**63) - 1), *ODD_NUMBERS]),
    st.floats().map(repr),
)
durations = st.one_of(
    st.tuples(numbers, st.sampled_from(["s", "m", "h", "d", "w", ""])).map("".join),
    st.sampled_from(["99999999999d", "1e3d", "0d", "-7d", "36525d", "36526d", "5200w", "7 d"]),
)


@st.composite
def numeric_calls(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["count", "version", "amount", "duration"]))
    templates = {"count": COUNTS, "version": VERSIONS, "amount": AMOUNTS, "duration": DURATIONS}[kind]
    template = draw(st.sampled_from(templates))
    value = draw(durations if kind == "duration" else numbers)
    return [part.replace("{}", value) for part in template]


@pytest.fixture(scope="module")
def sample_lake_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("numbers")
    lake = metalake.connect(folder / "lake", actor="tester")
    fill_sample_lake(lake, folder)
    lake.close()
    return folder / "lake"


def invoke(lake_path: Path, args: list[str]) -> Result:
    return CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})


def assert_no_traceback(result: Result, args: list[str]) -> None:
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not unexpected, f"metalake {' '.join(args)} raised {result.exception!r}"
    assert "Traceback" not in result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=numeric_calls())
def test_numeric_options_answer_a_result_or_a_clear_error(sample_lake_path: Path, args: list[str]) -> None:
    assert_no_traceback(invoke(sample_lake_path, args), args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["maintain", "--vacuum-days", "1e308"], "--vacuum-days"),
        (["maintain", "--metric-history-days=inf"], "--metric-history-days"),
        (["kpis", "impact", "--window", "99999999999d"], "longer than 36525 days"),
        (["models", "alias", "churn", "fuzz", str(10**30)], "less than or equal to 9223372036854775807"),
        (["deploy", "record", "--model", "churn", "--version", str(2**63), "--env", "prod"], "--version"),
    ],
)
def test_the_reported_cases_say_what_is_wrong(sample_lake_path: Path, args: list[str], message: str) -> None:
    result = invoke(sample_lake_path, args)
    assert_no_traceback(result, args)
    assert result.exit_code != 0 and message in result.output


def test_a_huge_limit_means_all(sample_lake_path: Path) -> None:
    result = invoke(sample_lake_path, ["runs", "list", "--limit", str(10**30), "--format", "csv"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 1 + 4  # header and the four runs


def test_the_library_refuses_retention_ages_it_cannot_compute(sample_lake_path: Path) -> None:
    lake = metalake.connect(sample_lake_path)
    for days in (1e308, float("nan"), -1, float("inf")):
        with pytest.raises(metalake.MetalakeError, match="number of days from 0 to 36525"):
            lake.maintain(tables=["snapshots"], dry_run=True, vacuum_days=days)
