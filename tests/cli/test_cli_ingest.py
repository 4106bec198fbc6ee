"""`metalake ingest` and `datasets register` on real files: a file is ingested once, one CSV verdict for both,
and errors that name the bad values, the line and the likely cause."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from test_cli import assert_fails, assert_ok, run, write_csv

import metalake
from metalake.cli.output import machine_text


def test_ingesting_the_same_file_again_writes_nothing(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"], ["r1", "lr", "0.1"]]
    )
    assert_ok(run(lake_path, "ingest", "params", str(source)))
    again = run(lake_path, "ingest", "params", str(source))
    assert_ok(again)
    assert (
        "Nothing written" in again.stderr and "already ingested" in again.stderr and "--again" in again.stderr
    )
    assert lake.read("params").height == 2


def test_a_changed_file_is_ingested(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"]])
    assert_ok(run(lake_path, "ingest", "params", str(source)))
    write_csv(source, ["run_id", "key", "value"], [["r2", "epochs", "7"]])
    assert_ok(run(lake_path, "ingest", "params", str(source)))
    assert sorted(lake.read("params").get_column("run_id")) == ["r1", "r2"]


def test_again_appends_the_same_file_on_purpose(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "params.csv", ["run_id", "key", "value"], [["r1", "epochs", "6"]])
    assert_ok(run(lake_path, "ingest", "params", str(source)))
    assert_ok(run(lake_path, "ingest", "params", str(source), "--again"))
    assert lake.read("params").height == 2
    assert_fails(
        run(lake_path, "ingest", "params", str(source), "--again", "--idempotency-key", "k"), 2, "--again"
    )


RAGGED = "run_id,key,value\nr1,epochs,6,extra\nr1,lr\nr2,epochs,7\n"


def test_a_ragged_csv_gets_one_verdict_from_ingest_and_datasets_register(
    lake_path: Path, tmp_path: Path
) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(RAGGED)
    metalake.connect(lake_path)
    verdict = "line 2 has 4 field(s) but the header has 3"
    assert_fails(run(lake_path, "ingest", "params", str(ragged)), 1, verdict)
    assert_fails(run(lake_path, "datasets", "register", "ragged", str(ragged)), 1, verdict)
    lake = metalake.connect(lake_path)
    assert lake.read("params").is_empty() and lake.read("dataset_versions").is_empty()


def test_a_ragged_csv_is_refused_by_kpis_ingest(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    assert_ok(
        run(lake_path, "kpis", "define", "conversion", "--unit", "%", "--direction", "higher_is_better")
    )
    ragged = tmp_path / "observations.csv"
    ragged.write_text("kpi,value,observed_at\nconversion,3.2\n")
    assert_fails(
        run(lake_path, "kpis", "ingest", str(ragged)), 1, "line 2 has 2 field(s) but the header has 3"
    )
    assert lake.read("kpi_observations").is_empty()


def test_a_registered_csv_keeps_its_header_and_tabs_for_tsv(lake: metalake.Lake, tmp_path: Path) -> None:
    text_only = tmp_path / "cities.csv"
    text_only.write_text("name,city\nalice,paris\nbob,rome\n")
    assert lake.datasets.register("cities", text_only).columns == ["name", "city"]
    tabs = tmp_path / "rows.tsv"
    tabs.write_text("id\tname\n1\ta,b\n2\tc\n")
    registered = lake.datasets.register("tsv", tabs)
    assert registered.columns == ["id", "name"] and registered.row_count == 2


NON_FINITE = [0.5, float("nan"), float("inf"), float("-inf")]


def metric_rows(values: list[float]) -> list[dict[str, object]]:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {"run_id": "r1", "key": "loss", "value": value, "step": step, "timestamp": moment}
        for step, value in enumerate(values)
    ]


def same_floats(found: list[float], expected: list[float]) -> bool:
    return all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(found, expected, strict=True))


@pytest.mark.parametrize("output_format", ["json", "jsonl", "csv"])
def test_sql_output_keeps_nan_and_infinity_for_ingest(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path, output_format: str
) -> None:
    lake.append("metrics", metric_rows(NON_FINITE))
    exported = tmp_path / f"metrics.{'csv' if output_format == 'csv' else 'jsonl'}"
    query = "select run_id, key, value, step, timestamp from metrics order by step"
    assert_ok(run(lake_path, "sql", query, "--format", output_format, "--output", str(exported)))
    if output_format != "csv":
        first, *_ = exported.read_text().splitlines()
        assert json.loads(first)["value"] == 0.5  # finite values stay JSON numbers
        assert "NaN" in exported.read_text() and "-Infinity" in exported.read_text()
    other = tmp_path / "other-lake"
    assert_ok(run(other, "ingest", "metrics", str(exported)))
    stored = metalake.connect(other).read("metrics").sort("step").get_column("value").to_list()
    assert same_floats(stored, NON_FINITE)


def test_json_arrays_and_documents_keep_nan_and_infinity() -> None:
    frame = pl.DataFrame({"value": NON_FINITE, "name": ["a", "b", "c", "d"]})
    assert json.loads(machine_text(frame, "json")) == [
        {"value": 0.5, "name": "a"},
        {"value": "NaN", "name": "b"},
        {"value": "Infinity", "name": "c"},
        {"value": "-Infinity", "name": "d"},
    ]
    assert json.loads(machine_text(frame, "json", document={"best": float("inf")})) == {"best": "Infinity"}


METRIC_HEADER = ["run_id", "key", "value", "step", "timestamp"]


def test_a_bad_value_is_named_alone(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    moment = "2026-01-01T00:00:00Z"
    rows = [
        ["r1", "auc", "0.9", "0", moment],
        ["r1", "auc", "high", "1", moment],
        ["r1", "auc", "0.1", "2", moment],
    ]
    source = write_csv(tmp_path / "metrics.csv", METRIC_HEADER, rows)
    result = run(lake_path, "ingest", "metrics", str(source))
    assert_fails(result, 1, "column 'value': not a float64 (1 row)", "line=3, value='high'")
    assert "0.9" not in result.output and "0.1" not in result.output
    assert lake.read("metrics").is_empty()


def test_a_semicolon_separated_csv_is_named_as_such(
    lake: metalake.Lake, lake_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "params.csv"
    source.write_text("run_id;key;value\nr1;epochs;6\n")
    assert_fails(run(lake_path, "ingest", "params", str(source)), 1, "separated by semicolons", "commas")


BOM = b"\xef\xbb\xbf"


def test_json_lines_with_a_byte_order_mark(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    good = tmp_path / "params.jsonl"
    good.write_bytes(BOM + b'{"run_id": "r1", "key": "epochs", "value": "6"}\n')
    assert_ok(run(lake_path, "ingest", "params", str(good)))
    assert lake.read("params").get_column("key").to_list() == ["epochs"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(BOM + b'{"run_id": "r1", "key": "a", "value": "1"}\n{"run_id": "r1", "key": oops}\n')
    assert_fails(run(lake_path, "ingest", "params", str(bad)), 1, "line 2 is not valid JSON")
    array = tmp_path / "array.json"
    array.write_bytes(BOM + b'[{"run_id": "r2", "key": "epochs", "value": "7"}]')
    assert_ok(run(lake_path, "ingest", "params", str(array)))
    assert lake.read("params").height == 2
