"""`metalake ingest` and `datasets register` on real files: a file is ingested once, one CSV verdict for both,
and errors that name the bad values, the line and the likely cause."""

from __future__ import annotations

from pathlib import Path

from test_cli import assert_fails, assert_ok, run, write_csv

import metalake


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
