"""Short commands stay short: opening a lake and `metalake tables`/`describe` load no heavy reader they do not use.

pyarrow's dataset layer pulls in pandas (about 0.35 s of imports); the catalog is read by delta-rs instead. The
timings themselves are in bench/bench_cli_start.py; this checks the cause, which does not depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import metalake

if TYPE_CHECKING:
    from conftest import S3Server

HEAVY = ("pyarrow.dataset", "pandas")
PROBE = """
import sys
from typer.testing import CliRunner
from metalake.cli.app import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(",".join(name for name in {heavy!r} if name in sys.modules))
"""


@pytest.fixture
def logged_lake(lake_path: Path) -> Path:
    lake = metalake.connect(lake_path)
    with lake.runs.start(experiment="churn") as run:
        run.log_metric("auc", 0.9)
    lake.close()
    return lake_path


@pytest.mark.parametrize("command", [["tables"], ["describe", "metrics"], ["history", "runs"]])
def test_short_commands_import_no_heavy_reader(logged_lake: Path, command: list[str]) -> None:
    probe = PROBE.format(heavy=HEAVY)
    found = subprocess.run(
        [sys.executable, "-c", probe, "--lake", str(logged_lake), *command],
        check=True,
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "", f"{' '.join(command)} imported {found.stdout.strip()}"


def same_catalog_both_ways(uri: str, storage_options: dict[str, str] | None = None) -> None:
    from metalake.core.catalog_store import read_catalog
    from metalake.core.delta import DeltaStore
    from metalake.core.storage import resolve

    store = DeltaStore(resolve(uri, storage_options))
    loaded = store.load("_catalog")
    assert loaded is not None
    by_delta_rs = read_catalog(store)
    assert by_delta_rs and by_delta_rs == read_catalog(store, loaded.to_pyarrow_table())


def test_the_catalog_read_by_delta_rs_is_the_one_pyarrow_reads(logged_lake: Path) -> None:
    same_catalog_both_ways(str(logged_lake))


@pytest.mark.s3
def test_the_catalog_read_by_delta_rs_on_s3(s3_server: S3Server, s3_lake_uri: str) -> None:
    metalake.connect(s3_lake_uri, storage_options=s3_server.storage_options)
    same_catalog_both_ways(s3_lake_uri, s3_server.storage_options)
