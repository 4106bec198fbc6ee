"""`metalake runs`: the ids it prints are the ids it takes, and a listing shows what it sorts and filters by."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app

METRICS = [f"m{index}" for index in range(10)]  # more than the listing shows by default


@pytest.fixture
def many_metrics(lake_path: Path) -> list[str]:
    lake = metalake.connect(lake_path)
    ids = []
    for number, run_id in enumerate(("0193dddd0001aaaa", "0193dddd0001bbbb", "0193eeee0002cccc")):
        with lake.runs.start(experiment="churn", name=f"run-{number}", run_id=run_id) as run:
            run.log_params({"depth": 6, "seed": number})
            for step in range(2):
                run.log_metrics({key: number + step / 10 for key in METRICS}, step=step)
        ids.append(run.run_id)
    return ids


def invoke(lake_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def header(output: str) -> list[str]:
    return output.splitlines()[0].split("\t")


def test_piped_listing_shows_whole_ids_that_show_accepts_by_prefix(
    lake_path: Path, many_metrics: list[str]
) -> None:
    code, output = invoke(lake_path, "runs", "list")
    assert code == 0 and all(run_id in output for run_id in many_metrics)
    code, output = invoke(lake_path, "runs", "show", "0193eeee")
    assert code == 0 and "0193eeee0002cccc" in output and "run-2" in output


def test_an_ambiguous_prefix_lists_the_runs_it_could_mean(lake_path: Path, many_metrics: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "show", "0193dddd0001")
    assert (
        code == 1 and "ambiguous" in output and "0193dddd0001aaaa" in output and "0193dddd0001bbbb" in output
    )


def test_compare_takes_prefixes(lake_path: Path, many_metrics: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "compare", "0193dddd0001a", "0193eeee", "--format", "csv")
    assert code == 0, output
    assert [line.split(",")[0] for line in output.splitlines()[1:]] == [many_metrics[0], many_metrics[2]]


@pytest.mark.parametrize(
    ("option", "expression", "column"),
    [
        ("--order-by", "metrics.m9 desc", "metrics.m9"),
        ("--where", "metrics.m8 > 0.5", "metrics.m8"),
        ("--where", "metrics.m7.min >= 0", "min(metrics.m7)"),
        ("--where", "params.depth = '6'", "params.depth"),
    ],
)
def test_the_listing_shows_the_columns_it_sorts_and_filters_by(
    lake_path: Path, many_metrics: list[str], option: str, expression: str, column: str
) -> None:
    code, output = invoke(lake_path, "runs", "list", option, expression)
    assert code == 0, output
    assert column in header(output)


def test_search_keeps_the_metric_range_it_was_asked_about(lake_path: Path, many_metrics: list[str]) -> None:
    runs = metalake.connect(lake_path).runs.search(order_by="metrics.m3.max desc")
    assert runs.get_column("max(metrics.m3)").to_list() == [2.1, 1.1, 0.1]
    assert "max(metrics.m4)" not in runs.columns
