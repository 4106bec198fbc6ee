"""Runs keep logging while S3 misbehaves (a fault-injecting proxy in front of moto): flushes retry, the journal
holds what could not be committed, and once the faults stop every fact is in the lake exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fault_proxy import FaultProxy
from support.workers import batch_rows, log_runs_slowly, run_in_processes

import metalake
from metalake import FlushError, StorageUnreachableWarning
from metalake.tracking.journal import decode

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def proxy(s3_server: Any) -> Iterator[FaultProxy]:
    faulty = FaultProxy(s3_server.endpoint).start()
    try:
        yield faulty
    finally:
        faulty.stop()


@pytest.fixture
def lake_through_proxy(s3_server: Any, proxy: FaultProxy) -> metalake.Lake:
    uri = f"s3://{s3_server.create_bucket()}/lake"
    options = {**s3_server.storage_options, "AWS_ENDPOINT_URL": proxy.endpoint}
    return metalake.connect(uri, storage_options=options, actor="tester")  # created with no faults


def wait_until_committed(lake: metalake.Lake, attempts: int = 10) -> None:
    for _ in range(attempts):
        try:
            lake.runs.wait()
            return
        except FlushError:
            continue
    lake.runs.wait()


def test_runs_keep_logging_through_faults_and_an_outage_and_lose_nothing(
    lake_through_proxy: metalake.Lake, proxy: FaultProxy, tmp_path: Path
) -> None:
    lake = lake_through_proxy
    logged: list[str] = []
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", StorageUnreachableWarning)
        proxy.set_faults(0.15)
        for number in range(12):
            if number == 6:
                proxy.down()  # storage gone for the next runs: they go on logging
            with lake.runs.start(experiment="faults", name=f"run-{number}") as run:
                run.log_params({"number": number})
                for step in range(10):
                    run.log_metrics({"loss": 1 / (step + 1), "acc": step / 10}, step=step)
                run.flush()  # returns: committed, or kept in the journal
            logged.append(run.run_id)
        lake.runs.flush_queue.settle()
        holding = [path for path in (tmp_path / "journal").glob("*/*.journal") if decode(path.read_bytes())]
        assert holding, "the journal holds what is not committed"
        proxy.up()
        proxy.set_faults(0.0)
        wait_until_committed(lake)
    assert [w for w in said if issubclass(w.category, StorageUnreachableWarning)], "the outage is said"
    assert proxy.plan.counts.get("forwarded", 0) > 0 and len(proxy.plan.counts) > 2, proxy.plan.counts

    states = lake.sql("select status, count(*) from runs_current group by status").fetchall()
    assert states == [("finished", 12)]
    assert lake.sql("select count(*), count(distinct (run_id, key, step)) from metrics").fetchall() == [
        (12 * 20, 12 * 20)
    ]
    assert lake.sql("select count(*) from params").fetchall() == [(12,)]
    assert lake.sql("select sum(count) from run_metrics").fetchall() == [(12 * 20,)]
    kept = [path for path in (tmp_path / "journal").glob("*/*.journal") if decode(path.read_bytes())]
    assert kept == [], "once committed, nothing is left in the journal"


def test_logging_processes_through_faults_and_an_outage_lose_nothing(
    s3_server: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Three training processes log through the faulty proxy; storage goes away while they train and stays away
    until they have exited. What they could not commit is in their journal segments, which the next connect
    replays: every run once, every point once."""
    import threading
    import time

    uri = f"s3://{s3_server.create_bucket()}/lake"
    options = {**s3_server.storage_options, "AWS_ENDPOINT_URL": proxy.endpoint}
    metalake.connect(uri, storage_options=options, actor="tester").close()
    ready = tmp_path / "ready"
    ready.mkdir()

    def outage_once_all_are_logging() -> None:
        while len(list(ready.iterdir())) < 3:
            time.sleep(0.05)
        time.sleep(2.0)
        proxy.down()

    proxy.set_faults(0.1)
    outage = threading.Thread(target=outage_once_all_are_logging, daemon=True)
    outage.start()
    calls = [(uri, options, f"job-{n}", 6, 0.8, str(ready)) for n in range(3)]
    logged = run_in_processes(log_runs_slowly, calls, timeout_s=300)
    outage.join(timeout=10)
    assert proxy.plan.is_down, "the outage began while the jobs were logging"
    left = [path for path in (tmp_path / "journal").glob("*/*.journal") if decode(path.read_bytes())]
    assert left, "the jobs left what they could not commit in their journals"

    proxy.up()
    proxy.set_faults(0.0)
    # Later, on the same machine: `metalake sync` (its own process, as a user runs it) commits the segments.
    synced = subprocess.run(
        [sys.executable, "-m", "metalake.cli", "sync", "--lake", uri],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **options},
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "Committed" in synced.stdout + synced.stderr
    lake = metalake.connect(uri, storage_options=s3_server.storage_options, actor="tester")  # straight to S3
    run_ids = {run_id for ids in logged for run_id in ids}
    assert lake.sql("select status, count(*) from runs_current group by status").fetchall() == [
        ("finished", len(run_ids))
    ]
    assert lake.sql("select count(*), count(distinct (run_id, key, step)) from metrics").fetchall() == [
        (len(run_ids) * 20, len(run_ids) * 20)
    ]
    assert lake.sql("select count(*) from params").fetchall() == [(len(run_ids) * 2,)]


def test_an_append_retried_through_faults_under_one_key_is_written_once(
    lake_through_proxy: metalake.Lake, proxy: FaultProxy
) -> None:
    lake = lake_through_proxy
    rows = batch_rows("params", "run-1", 0, 5)
    proxy.set_faults(0.5, ("drop_after", "status_503", "cut_body"))
    for _ in range(40):
        try:
            lake.append("params", rows, idempotency_key="import-1")
            break
        except metalake.MetalakeError:
            continue
    proxy.set_faults(0.0)
    lake.append("params", rows, idempotency_key="import-1")  # once more, after the faults: a duplicate
    assert lake.sql("select count(*) from params").fetchall() == [(5,)]
