"""Small rough edges of the command line: an empty query, a bad --output path, Rust warnings before an S3 error,
a closed pipe, and registering the same model version again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import assert_fails, assert_ok, run

import metalake

SRC = str(Path(metalake.__file__).resolve().parents[1])


def metalake_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m metalake.cli ARGS` in a real process, with this checkout's code."""
    environment = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "metalake.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


@pytest.mark.parametrize("query", ["", "   \n"])
def test_an_empty_query_is_a_usage_error(lake: metalake.Lake, lake_path: Path, query: str) -> None:
    result = run(lake_path, "sql", query)
    assert_fails(result, 2, "the query is empty")
    assert "Done" not in result.output


def test_output_under_a_file_says_it_is_a_file(lake: metalake.Lake, lake_path: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    target = a_file / "out" / "runs.csv"
    assert_fails(
        run(lake_path, "sql", "select 1 as one", "-f", "csv", "-o", str(target)),
        1,
        f"{a_file} is a file, not a folder",
    )
    missing = tmp_path / "missing" / "runs.csv"
    assert_fails(
        run(lake_path, "sql", "select 1", "-f", "csv", "-o", str(missing)), 1, "does not exist. Create it"
    )


def test_an_s3_lake_without_credentials_prints_only_the_error(tmp_path: Path) -> None:
    clean = {
        key: value for key, value in os.environ.items() if not key.startswith("AWS_") and key != "RUST_LOG"
    }
    clean.update(
        {"PYTHONPATH": SRC, "HOME": str(tmp_path), "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}
    )
    result = subprocess.run(
        [sys.executable, "-m", "metalake.cli", "--lake", "s3://metalake-no-such-bucket/lake", "runs", "list"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: "), result.stderr
    assert "WARN" not in result.stderr and "aws_config" not in result.stderr


def with_closed_stdout(command: list[str]) -> tuple[int, str]:
    """Run a process whose stdout is a pipe that nobody reads any more, as after `| head` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        finished = subprocess.run(
            command,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC, "TTY_COMPATIBLE": "1", "COLUMNS": "80"},
            timeout=120,
        )
    finally:
        os.close(write_end)
    return finished.returncode, finished.stderr


@pytest.mark.parametrize("shown", [["--format", "csv"], []], ids=["csv", "rich-table"])
def test_a_closed_pipe_stops_a_reader_quietly(lake: metalake.Lake, lake_path: Path, shown: list[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "metalake.cli",
        "--lake",
        str(lake_path),
        "sql",
        "select 1 as one",
        *shown,
    ]
    code, stderr = with_closed_stdout(command)
    assert code == 141, stderr  # as a Unix filter stopped by SIGPIPE
    assert "Traceback" not in stderr and "Error" not in stderr


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from metalake.cli.output import stdout_console

    console = stdout_console(finish_when_pipe_closes=True)
    for line in range(1000):
        console.print(f"line {line}")
    Path(sys.argv[1]).write_text("finished")
    """
)


def test_a_closed_pipe_lets_a_writer_finish(tmp_path: Path) -> None:
    """The demo's console: the round goes on to the end after `| head` has gone."""
    done = tmp_path / "done"
    code, stderr = with_closed_stdout([sys.executable, "-c", WRITER, str(done)])
    assert code == 0, stderr
    assert done.read_text() == "finished" and "Traceback" not in stderr


@pytest.mark.slow
def test_the_demo_piped_into_head_writes_its_whole_round(tmp_path: Path) -> None:
    demo_lake = tmp_path / "demo-lake"
    command = f"{sys.executable} -m metalake.cli demo --lake {demo_lake} | head -2"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    snapshots = metalake.connect(demo_lake, create=False).snapshots().get_column("snapshot").to_list()
    assert snapshots == ["demo-round-1"]


def test_registering_the_same_version_again_says_so(lake: metalake.Lake, lake_path: Path) -> None:
    with lake.runs.start(experiment="churn") as training:
        training.log_metric("val_auc", 0.7)
    args = ["models", "register", "churn", "--run-id", training.run_id, "--artifact-uri", "s3://m/1"]
    first = run(lake_path, *args)
    assert_ok(first)
    assert "Registered churn version 1." in first.output
    again = run(lake_path, *args)
    assert_ok(again)
    assert "churn version 1 was already registered" in again.output and "Registered" not in again.output
    other = run(
        lake_path, "models", "register", "churn", "--run-id", training.run_id, "--artifact-uri", "s3://m/2"
    )
    assert "Registered churn version 2." in other.output
    assert lake.registry.versions("churn").height == 2
