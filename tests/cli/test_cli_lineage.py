"""`metalake lineage ingest|show` and `metalake serve` from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from openlineage.client import OpenLineageClient
from openlineage.client.transport.file import FileConfig, FileTransport
from support.openlineage_samples import airflow_dag, spark_events
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app


def run(lake_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})


def write_with_file_transport(path: Path, events: list[object]) -> None:
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
    for event in events:
        client.emit(event)  # type: ignore[arg-type]


def test_ingest_a_file_written_by_the_file_transport(lake_path: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    events = airflow_dag() + spark_events()
    write_with_file_transport(events_file, events)
    first = run(lake_path, "lineage", "ingest", str(events_file))
    assert first.exit_code == 0, first.output
    assert f"Ingested {len(events)} new event(s) of {len(events)}" in first.stdout
    again = run(lake_path, "lineage", "ingest", str(events_file))
    assert f"Ingested 0 new event(s) of {len(events)} ({len(events)} already stored)" in again.stdout
    assert metalake.connect(lake_path).read("lineage_events").height == len(events)


def test_an_invalid_line_refuses_the_file(lake_path: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    write_with_file_transport(events_file, airflow_dag())
    with events_file.open("a") as handle:
        handle.write('{"eventTime": "2026-01-01T00:00:00Z", "run": {"runId": "nope"}, "job": {}}\n')
    result = run(lake_path, "lineage", "ingest", str(events_file))
    assert result.exit_code == 1
    assert "line 5" in result.output and "not a UUID" in result.output and "Traceback" not in result.output
    assert metalake.connect(lake_path).read("lineage_events").height == 0
    missing = run(lake_path, "lineage", "ingest", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "is not a file" in missing.output


def test_show_prints_a_tree_now_and_as_of_a_moment(lake_path: Path, tmp_path: Path) -> None:
    assert run(lake_path, "init").exit_code == 0  # as_of refuses moments before the lake was created
    before = datetime.now(UTC)
    time.sleep(0.05)
    events_file = tmp_path / "events.jsonl"
    write_with_file_transport(events_file, airflow_dag())
    assert run(lake_path, "lineage", "ingest", str(events_file)).exit_code == 0

    tree = run(lake_path, "lineage", "show", "dataset:metalake/train")
    assert tree.exit_code == 0, tree.output
    lines = tree.stdout.splitlines()
    assert lines[0] == "dataset:metalake/train"
    assert "job:airflow-prod/daily_features.join" in lines[1]
    assert any("dataset:postgres://warehouse:5432/public.orders  input v1" in line for line in lines)

    shallow = run(lake_path, "lineage", "show", "dataset:metalake/train", "--depth", "1")
    assert len(shallow.stdout.splitlines()) == 2
    down = run(
        lake_path, "lineage", "show", "dataset:postgres://warehouse:5432/public.orders", "--downstream"
    )
    assert "dataset:metalake/train" in down.stdout

    past = run(lake_path, "lineage", "show", "dataset:metalake/train", "--as-of", before.isoformat())
    assert past.exit_code == 0 and "No upstream lineage for dataset:metalake/train" in past.stdout

    bad = run(lake_path, "lineage", "show", "train")
    assert bad.exit_code == 1 and "is not a lineage node id" in bad.output


def test_the_cli_imports_no_server_or_openlineage_library() -> None:
    heavy = ["fastapi", "uvicorn", "starlette", "pydantic", "openlineage"]
    code = f"import sys, metalake.cli.app; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_serve_without_fastapi_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # makes the import fail, as when it is not installed\n"
        "from metalake.cli.app import main\n"
        f"sys.argv = ['metalake', '--lake', {str(tmp_path / 'lake')!r}, 'serve']\n"
        "main()\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "pip install 'metalake[server]'" in result.stderr and "Traceback" not in result.stderr


def test_a_field_of_the_wrong_shape_is_a_readable_line_error(lake_path: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    write_with_file_transport(events_file, airflow_dag())
    with events_file.open("a") as handle:
        handle.write(
            '{"eventTime": "2026-01-01T00:00:00Z", "eventType": "COMPLETE", "schemaURL": 3,'
            ' "run": {"runId": "01234567-89ab-cdef-0123-456789abcdef"}, "job": {"namespace": "n", "name": "j"}}\n'
        )
    result = run(lake_path, "lineage", "ingest", str(events_file))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "line 5" in result.output and "schemaURL must be a string" in result.output
    assert metalake.connect(lake_path).read("lineage_events").height == 0
