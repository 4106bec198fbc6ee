"""`metalake sync` commits what killed jobs left in the local journal and says what it did."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.workers import SPAWN, log_a_run_then_hang
from test_cli import assert_ok, run

import metalake


def test_sync_commits_a_killed_jobs_flushes_and_says_so(lake_path: Path, tmp_path: Path) -> None:
    metalake.connect(lake_path, actor="tester").close()
    other = tmp_path / "other-lake"
    metalake.connect(other, actor="tester").close()
    for uri in (lake_path, other):
        results = SPAWN.Queue()
        child = SPAWN.Process(target=log_a_run_then_hang, args=(str(uri), results), daemon=True)
        child.start()
        try:
            results.get(timeout=120)
        finally:
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join(timeout=30)

    result = run(lake_path, "sync")

    assert_ok(result)
    assert "Committed 1 flush(es) of 1 run(s) (1 metric points) from 1 journal segment(s)." in result.output
    assert f"The journal also holds 1 segment(s) for {other}: metalake sync --lake {other}" in result.output
    again = run(lake_path, "sync")
    assert_ok(again)
    assert "Nothing to sync" in again.output
    other_result = run(tmp_path / "elsewhere", "sync", "--lake", str(other))
    assert_ok(other_result)
    assert "Committed 1 flush(es)" in other_result.output
