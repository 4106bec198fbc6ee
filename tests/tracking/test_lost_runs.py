"""A run whose heartbeats stop is shown `lost`, derived from the lake's moment, never stored; it comes back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import metalake
from metalake.tracking import heartbeat


def status(lake: metalake.Lake, run_id: str) -> str:
    [(found,)] = lake.sql("select status from runs_current where run_id = ?", [run_id]).fetchall()
    return str(found)


def test_a_run_that_stops_beating_is_lost_then_running_again_once_resumed(lake_path: Path) -> None:
    lake = metalake.connect(lake_path, actor="tester", lost_after=1.0)
    run = lake.runs.start(experiment="lost")
    run.log_metric("loss", 0.5)
    run.flush()
    alive_at = datetime.now(UTC)
    assert status(lake, run.run_id) == "running"
    lake.snapshot("while-alive")

    time.sleep(1.5)  # no flush, no heartbeat (the timer beats after 60 s): as if the process had died

    assert status(lake, run.run_id) == "lost"
    assert lake.runs.get(run.run_id).status == "lost"
    assert lake.runs.search("lost").get_column("status").to_list() == ["lost"]
    assert status(lake.as_of(alive_at), run.run_id) == "running", (
        "as of a past moment, the clock is that moment"
    )
    assert status(lake.as_of("while-alive"), run.run_id) == "running"
    assert lake.sql("select count(*) from runs where status = 'lost'").fetchall() == [(0,)], (
        "nothing is stored"
    )

    again = lake.runs.resume(run.run_id)
    again.log_metric("loss", 0.4, step=1)
    again.flush()
    assert status(lake, run.run_id) == "running"
    again.end()
    time.sleep(1.2)
    assert status(lake, run.run_id) == "finished", "an ended run is never lost"
    assert metalake.connect(lake_path, actor="tester").sql("select status from runs_current").fetchall() == [
        ("finished",)
    ]


def test_the_heartbeat_timer_keeps_a_silent_run_from_looking_lost(
    lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 0.3)
    monkeypatch.setattr(heartbeat, "_THREAD", None)  # a timer that reads the short period
    lake = metalake.connect(lake_path, actor="tester", lost_after=1.0)
    with lake.runs.start(experiment="long-step") as run:
        run.log_metric("loss", 0.5)
        run.flush()
        time.sleep(2.0)  # a long evaluation that logs nothing
        assert status(lake, run.run_id) == "running"
    beats = lake.sql("select count(*) from runs where event_id like '%:heartbeat'").fetchall()[0][0]
    assert beats >= 2


def test_lost_after_comes_from_the_environment_and_is_checked(
    lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METALAKE_LOST_AFTER", "soon")
    with pytest.raises(metalake.RunError, match="METALAKE_LOST_AFTER='soon' is not a number of seconds"):
        metalake.connect(lake_path, actor="tester")
    monkeypatch.setenv("METALAKE_LOST_AFTER", "0.5")
    lake = metalake.connect(lake_path, actor="tester")
    assert lake.sql("select lost_after_s from lake_clock").fetchall() == [(0.5,)]
    with pytest.raises(metalake.RunError, match="positive"):
        metalake.connect(lake_path, actor="tester", lost_after=0)
