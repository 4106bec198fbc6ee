"""`metalake datasets ...` and `metalake quality ...` on a real lake."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from metalake.cli.app import app


def invoke(lake_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "220"})
    return result.exit_code, result.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "orders"
    folder.mkdir()
    pq.write_table(pa.table({"order_id": [1, 2, 3], "amount": [9.5, 20.0, -3.0]}), folder / "part-0.parquet")
    return folder


def test_register_list_show_history(lake_path: Path, data: Path) -> None:
    code, output = invoke(
        lake_path, "datasets", "register", "orders", str(data), "--owner", "sales", "-t", "k=v"
    )
    assert code == 0, output
    assert "Registered orders version 1: 3 rows, 2 columns" in output
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data))
    assert code == 0 and "Unchanged" in output and "version 1" in output
    pq.write_table(pa.table({"order_id": [1, 2], "note": ["a", "b"]}), data / "part-0.parquet")
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data))
    assert code == 0 and "version 2" in output and "Breaking schema change" in output and "removed" in output
    code, output = invoke(lake_path, "datasets", "list")
    assert code == 0 and "orders" in output and "sales" in output and "1 dataset(s)" in output
    code, output = invoke(lake_path, "datasets", "show", "orders", "--version", "1")
    assert code == 0 and "amount" in output and "DOUBLE" in output and "fingerprint" in output
    code, output = invoke(lake_path, "datasets", "history", "orders")
    assert code == 0 and "- amount DOUBLE (breaking)" in output
    code, output = invoke(lake_path, "datasets", "diff", "orders", "1", "2")
    assert code == 0, output
    assert "version 1 has 3 rows, version 2 has 2" in output and "note" in output and "yes" in output


def test_register_marks_sensitive_columns_and_says_so(lake_path: Path, data: Path) -> None:
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data), "--sensitive", "order_id")
    assert code == 0 and "Sensitive (readers without unmask see only their counts): order_id." in output, (
        output
    )
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data), "--sensitive", "amount")
    assert code == 0 and "Unchanged" in output and "Not marked: amount" in output, output
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data), "--sensitive", "nope")
    assert code == 1 and "Columns marked sensitive are not in" in output and "order_id, amount" in output
    assert "Traceback" not in output


def test_datasets_errors_are_one_line_without_traceback(lake_path: Path, tmp_path: Path) -> None:
    assert invoke(lake_path, "init")[0] == 0  # a refused register creates no lake, and `show` reads one
    code, output = invoke(lake_path, "datasets", "register", "x", str(tmp_path / "missing.csv"))
    assert code == 1 and f"Path not found: {tmp_path / 'missing.csv'}" in output and "Traceback" not in output
    code, output = invoke(lake_path, "datasets", "show", "ghost")
    assert code == 1 and "Unknown dataset 'ghost'" in output
    code, output = invoke(lake_path, "datasets", "register", "x", str(tmp_path), "-t", "novalue")
    assert code == 2 and "KEY=VALUE" in output
    code, output = invoke(lake_path, "datasets", "list")
    assert code == 0 and "No datasets yet" in output


def test_quality_validate_and_report(lake_path: Path, data: Path, tmp_path: Path) -> None:
    invoke(lake_path, "datasets", "register", "orders", str(data))
    passing = tmp_path / "ok.yaml"
    passing.write_text("- expect_column_values_to_not_be_null: {column: order_id}\n")
    code, output = invoke(lake_path, "quality", "validate", "orders", "--suite", str(passing))
    assert code == 0, output
    assert "Validation passed: 1/1" in output
    failing = tmp_path / "amounts.yaml"
    failing.write_text("- expect_column_values_to_be_between: {column: amount, min_value: 0}\n")
    code, output = invoke(
        lake_path, "quality", "validate", "orders", "--suite", str(failing), "--version", "1"
    )
    assert code == 1 and "Validation failed: 0/1" in output and "FAIL" in output and "-3" in output
    code, output = invoke(lake_path, "quality", "report", "orders")
    assert code == 0, output
    assert "Quality scorecard of orders" in output and "declining" in output and "amounts" in output


def test_quality_errors(lake_path: Path, data: Path, tmp_path: Path) -> None:
    invoke(lake_path, "datasets", "register", "orders", str(data))
    unknown = tmp_path / "typo.yaml"
    unknown.write_text("- expect_colum_to_exist: {column: order_id}\n")
    code, output = invoke(lake_path, "quality", "validate", "orders", "--suite", str(unknown))
    assert code == 1 and "does not know: 'expect_colum_to_exist'" in output and "Traceback" not in output
    code, output = invoke(lake_path, "quality", "report", "orders")
    assert code == 1 and "has not been validated yet" in output


@pytest.mark.parametrize("group", ["datasets", "quality"])
def test_every_subcommand_has_an_example(group: str) -> None:
    commands = {
        "datasets": ["register", "list", "show", "history", "diff"],
        "quality": ["validate", "report"],
    }
    for command in commands[group]:
        result = CliRunner().invoke(app, [group, command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Example: metalake" in result.output


def test_column_names_that_look_like_markup_are_shown_as_text(lake_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    pq.write_table(pa.table({"[/y]": [1, 2], "[bold]x": ["a", "b"]}), folder / "part-0.parquet")
    code, output = invoke(lake_path, "datasets", "register", "odd", str(folder))
    assert code == 0, output
    pq.write_table(pa.table({"[/y]": ["1", "2"], "[red]z": [1.0, 2.0]}), folder / "part-0.parquet")
    code, output = invoke(lake_path, "datasets", "register", "odd", str(folder))
    assert code == 0, output
    assert "[/y]" in output and "[bold]x" in output and "[red]z" in output  # the schema changes table
    code, output = invoke(lake_path, "datasets", "show", "odd", "--version", "2")
    assert code == 0, output
    assert "[/y]" in output and "[red]z" in output
    code, output = invoke(lake_path, "datasets", "diff", "odd", "1", "2")
    assert code == 0, output
    assert "[/y]" in output and "[bold]x" in output


def test_registering_the_same_content_with_a_new_description_says_so(lake_path: Path, data: Path) -> None:
    invoke(lake_path, "datasets", "register", "orders", str(data))
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data), "-d", "all orders")
    assert code == 0 and "Unchanged" in output and "description, owner or tags updated" in output
    code, output = invoke(lake_path, "datasets", "register", "orders", str(data), "-d", "all orders")
    assert code == 0 and "nothing recorded" in output
