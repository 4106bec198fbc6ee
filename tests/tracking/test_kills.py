"""Jobs SIGKILLed at random moments lose no acknowledged point and duplicate none once their journal is replayed.

Each job logs one run (2 metrics a step, an automatic flush every few points, `flush()` every 10 steps) and is
killed at a random moment: during its imports, while it connects, between flushes, in the middle of a commit.
The next `metalake.connect` replays what the dead jobs left. Then every table reads, every step up to the last
one a `flush()` acknowledged is there once, and what was logged after it is a prefix of the steps, never a gap.
`make test` kills 20 jobs; the test marked slow kills 200.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from support.workers import SPAWN, log_until_killed

import metalake
from metalake.core.ids import new_id

JOBS_AT_ONCE = 4


def kill_jobs_at_random(tmp_path: Path, rounds: int, seed: int) -> tuple[int, int]:
    """Kill JOBS_AT_ONCE logging jobs per round at random moments; check the lake after each round.

    Returns how many jobs were killed and how many flushes the replays committed again."""
    chance = random.Random(seed)
    uri = str(tmp_path / "lake")
    metalake.connect(uri, actor="tester").close()
    killed = replayed = 0
    for round_number in range(rounds):
        jobs = []
        for n in range(JOBS_AT_ONCE):
            run_id, acknowledged = new_id(), tmp_path / f"ack-{round_number}-{n}"
            points = chance.choice([7, 20, 64])
            child = SPAWN.Process(target=log_until_killed, args=(uri, run_id, str(acknowledged), points))
            child.start()
            jobs.append((child, run_id, acknowledged, time.monotonic() + chance.uniform(0.5, 4.0)))
        for child, *_, kill_at in sorted(jobs, key=lambda job: job[3]):
            time.sleep(max(0.0, kill_at - time.monotonic()))
            os.kill(child.pid or 0, signal.SIGKILL)
        for child, *_ in jobs:
            child.join(timeout=30)
            assert child.exitcode == -signal.SIGKILL
            killed += 1
        lake = metalake.connect(uri, actor="tester")  # replays the dead jobs' journal segments
        replayed += lake.replayed_at_connect.flushes if lake.replayed_at_connect else 0
        for spec in lake.tables():
            lake.read(spec.name)  # every table reads
        for _, run_id, acknowledged, _ in jobs:
            check_run(lake, run_id, acknowledged)
        lake.close()
    return killed, replayed


def check_run(lake: metalake.Lake, run_id: str, acknowledged: Path) -> None:
    lines = acknowledged.read_text().split() if acknowledged.exists() else []
    last_acknowledged = int(lines[-1]) if lines else -1
    [(points, distinct, steps, top)] = lake.sql(
        "select count(*), count(distinct (key, step)), count(distinct step), max(step) from metrics "
        "where run_id = ?",
        [run_id],
    ).fetchall()
    assert points == distinct, f"run {run_id}: {points - distinct} point(s) written twice"
    assert (top if top is not None else -1) >= last_acknowledged, (
        f"run {run_id}: points up to step {last_acknowledged} were acknowledged, the lake has {top}"
    )
    assert steps == (top + 1 if top is not None else 0), f"run {run_id}: a gap in the steps"
    assert points == 2 * steps, f"run {run_id}: a step with one of its two metrics"
    summarized = lake.sql(
        "select coalesce(sum(count), 0) from run_metrics where run_id = ?", [run_id]
    ).fetchall()
    assert summarized == [(points,)], (
        f"run {run_id}: summaries count {summarized}, the lake holds {points} points"
    )
    if last_acknowledged >= 0:
        status = lake.sql("select status from runs_current where run_id = ?", [run_id]).fetchall()
        assert status == [("running",)], f"run {run_id}: {status}"


@pytest.mark.timeout(600)
def test_twenty_jobs_killed_at_random_moments_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    killed, replayed = kill_jobs_at_random(tmp_path, rounds=5, seed=20261203)
    assert killed == 20
    assert replayed > 0, "no kill left a journal segment: the kills missed the moments that matter"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_two_hundred_jobs_killed_at_random_moments_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    killed, replayed = kill_jobs_at_random(tmp_path, rounds=50, seed=14)
    assert killed == 200
    assert replayed > 0
