"""`metalake runs list | show | compare` on a real lake."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app


@pytest.fixture
def logged(lake_path: Path) -> list[str]:
    lake = metalake.connect(lake_path)
    run_ids = []
    for depth, auc in ((4, 0.81), (6, 0.93)):
        with lake.runs.start(experiment="churn", name=f"xgb-depth{depth}") as run:
            run.log_params({"depth": depth, "lr": 0.1})
            run.log_metric("val_auc", auc, step=1)
        run_ids.append(run.run_id)
    return run_ids


def invoke(lake_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_runs_list_filters_and_orders(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "list", "-e", "churn", "-w", "metrics.val_auc > 0.9")
    assert code == 0, output
    assert "xgb-depth6" in output and "xgb-depth4" not in output and "1 run(s)" in output
    code, output = invoke(lake_path, "runs", "list", "-o", "metrics.val_auc desc")
    assert output.index("xgb-depth6") < output.index("xgb-depth4")
    assert "params.depth" in output and "params.lr" not in output  # only params that differ are shown


def test_runs_list_explains_a_bad_filter(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "list", "-w", "params.nope = 1")
    assert code == 1 and "No params key 'nope'" in output and "Traceback" not in output


def test_runs_list_shows_where_a_filter_breaks_under_a_caret(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "list", "-w", "(metrics.val_auc > 0.9 or")
    assert code == 1 and "Traceback" not in output
    assert "a condition must follow 'OR', not the end of the expression" in output
    assert "  (metrics.val_auc > 0.9 or\n" + " " * 27 + "^\n" in output
    assert "Parser Error" not in output and "__runs" not in output


def test_runs_list_filters_by_a_range(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "list", "-w", "metrics.val_auc between 0.8 and 0.85")
    assert code == 0, output
    assert "xgb-depth4" in output and "xgb-depth6" not in output


def test_runs_list_csv_puts_the_metric_ranges_it_kept_last(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(
        lake_path,
        "runs",
        "list",
        "-f",
        "csv",
        "-w",
        "metrics.val_auc.min > 0",
        "-o",
        "metrics.val_auc.max desc",
    )
    assert code == 0, output
    header = output.splitlines()[0].split(",")
    assert header[-2:] == ["max(metrics.val_auc)", "min(metrics.val_auc)"]
    assert header.index("source") < header.index("params.depth") < header.index("metrics.val_auc")


def test_runs_show(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "show", logged[1])
    assert code == 0, output
    assert "xgb-depth6" in output and "finished" in output and "val_auc" in output and "0.93" in output
    code, output = invoke(lake_path, "runs", "show", "nope")
    assert code == 1 and "No run 'nope'" in output


def test_runs_compare_highlights_differences(lake_path: Path, logged: list[str]) -> None:
    code, output = invoke(lake_path, "runs", "compare", *logged)
    assert code == 0, output
    assert "params.depth" in output and "metrics.val_auc" in output and "0.81" in output and "0.93" in output
    code, output = invoke(lake_path, "runs", "compare", logged[0])
    assert code == 1 and "at least two" in output
    code, output = invoke(lake_path, "runs", "compare", logged[0], "missing")
    assert code == 1 and "missing" in output
