"""Eight training jobs logging runs into one lake at the same time lose nothing, on local disk and on S3; and a
job killed before its commit queue drained loses nothing either: its journal is replayed."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from support.workers import (
    SPAWN,
    exit_slowly,
    flush_every_50_steps_then_hang,
    log_a_run_then_hang,
    log_runs,
    run_in_processes,
)

import metalake

JOBS = 8
RUNS_PER_JOB = 25
STEPS = 5


@pytest.fixture(params=["local", "s3"])
def lake_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str] | None]:
    if request.param == "local":
        return str(tmp_path / "lake"), None
    server: Any = request.getfixturevalue("s3_server")
    return request.getfixturevalue("s3_lake_uri"), server.storage_options


@pytest.mark.timeout(900)  # 1,000 commits from 8 processes through one S3 server process
def test_eight_jobs_logging_25_runs_each(lake_target: tuple[str, dict[str, str] | None]) -> None:
    uri, options = lake_target
    lake = metalake.connect(uri, storage_options=options, actor="tester")
    calls = [(uri, options, f"job-{n}", RUNS_PER_JOB, STEPS) for n in range(JOBS)]

    logged = run_in_processes(log_runs, calls, timeout_s=600)

    run_ids = {run_id for ids in logged for run_id in ids}
    assert len(run_ids) == JOBS * RUNS_PER_JOB
    states = lake.sql("select status, count(*) from runs_current group by status").fetchall()
    assert states == [("finished", JOBS * RUNS_PER_JOB)]
    counts = lake.sql(
        "select count(*), count(distinct (run_id, key, step)) from metrics where run_id in (select run_id from runs)"
    ).fetchall()
    assert counts == [(JOBS * RUNS_PER_JOB * STEPS * 2, JOBS * RUNS_PER_JOB * STEPS * 2)]
    assert lake.sql("select count(*) from params").fetchall() == [(JOBS * RUNS_PER_JOB * 2,)]
    summaries = lake.sql("select count(*), sum(count) from run_metrics").fetchall()
    assert summaries == [(JOBS * RUNS_PER_JOB * 2, JOBS * RUNS_PER_JOB * STEPS * 2)]


def test_children_are_waited_for_until_their_exit_has_drained(tmp_path: Path) -> None:
    """A child's exit drains its commit queue after it returned its result; the harness must not kill it then."""
    marker = tmp_path / "exited"

    assert run_in_processes(exit_slowly, [(str(marker), 12.0)]) == ["returned"]

    assert marker.read_text() == "exited"


def test_a_job_killed_after_its_run_block_returned_loses_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    metalake.connect(uri, actor="tester")  # the tables exist before the child logs
    results = SPAWN.Queue()
    child = SPAWN.Process(target=log_a_run_then_hang, args=(uri, results), daemon=True)
    child.start()
    try:
        run_id = results.get(timeout=120)  # `with lake.runs.start()` has returned; its flush is queued
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    lake = metalake.connect(uri, actor="tester")  # replays the killed job's journal segment
    stored = lake.sql("select status from runs_current where run_id = ?", [run_id]).fetchall()
    assert stored == [("finished",)], f"run {run_id} was lost with the killed job"
    assert lake.sql("select count(*) from metrics where run_id = ?", [run_id]).fetchall() == [(1,)]
    assert lake.sql("select count(*) from params where run_id = ?", [run_id]).fetchall() == [(1,)]


def test_flush_waits_for_the_flushes_queued_before_it_even_with_an_empty_buffer(tmp_path: Path) -> None:
    """Five jobs call `flush()` with nothing buffered (the 100th point just queued one) and are killed as soon
    as it returns: every point logged before that `flush()` is in the lake."""
    uri = str(tmp_path / "lake")
    metalake.connect(uri, actor="tester")
    results = SPAWN.Queue()
    children = [
        SPAWN.Process(target=flush_every_50_steps_then_hang, args=(uri, 100, results), daemon=True)
        for _ in range(5)
    ]
    for child in children:
        child.start()
    reported = []
    try:
        for _ in children:
            reported.append(results.get(timeout=120))
    finally:
        for child in children:
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join(timeout=30)

    lake = metalake.connect(uri, actor="tester")
    for run_id, steps in reported:
        stored = lake.sql(
            "select count(*), count(distinct (key, step)) from metrics where run_id = ?", [run_id]
        ).fetchall()
        assert stored == [(2 * steps, 2 * steps)], f"run {run_id} lost points logged before flush() returned"
        assert lake.sql("select status from runs_current where run_id = ?", [run_id]).fetchall() == [
            ("running",)
        ]
