"""Writes answered once journaled (what a server does): the commit window that groups them, and reads that show
them before they are committed (`lake.runs.get_as_written`) without waiting."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

import metalake
from metalake.tracking.group_commit import queue_for
from metalake.tracking.remote import MetricPoint

HELD = (
    3600.0  # a commit window nobody outwaits in a test: whatever commits did so because a reader hurried it
)


def uncommitted(lake: metalake.Lake) -> bool:
    """Flushes wait in the lake's commit queue (any read of the lake in this process would commit them)."""
    return queue_for(lake._tables).busy


def log_a_run(lake: metalake.Lake, *, end: bool = True) -> str:
    run_id = lake.runs.create("churn", "first", tags={"team": "ml"}, durable="journaled")
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    points = [MetricPoint("loss", 1.0 / (step + 1), step, moment) for step in range(5)]
    lake.runs.log_batch(run_id, params={"depth": "6"}, metrics=points, durable="journaled")
    lake.runs.log_batch(run_id, metrics=[MetricPoint("loss", 9.0, 2, moment)], durable="journaled")
    if end:
        lake.runs.end(run_id, "finished", durable="journaled")
    return run_id


def test_within_the_window_journaled_writes_wait_and_a_read_shows_them_without_committing(
    lake: metalake.Lake,
) -> None:
    lake.runs.set_commit_window(HELD)
    run_id = log_a_run(lake)
    time.sleep(0.3)
    assert uncommitted(lake), "held by the window"

    shown = lake.runs.get_as_written(run_id)

    assert uncommitted(lake), "the read did not wait for the commit"
    assert shown.status == "finished" and shown.info["name"] == "first"
    assert (shown.params, shown.tags) == ({"depth": "6"}, {"team": "ml"})
    loss = shown.metrics["loss"]
    assert (loss["last_value"], loss["last_step"]) == (0.2, 4), "the last point by step, not the last sent"
    assert (loss["min_value"], loss["max_value"]) == (0.2, 9.0)


def test_a_plain_read_cuts_the_window_short_and_both_reads_then_agree(lake: metalake.Lake) -> None:
    lake.runs.set_commit_window(HELD)
    run_id = log_a_run(lake)
    as_written = lake.runs.get_as_written(run_id)

    began = time.monotonic()
    committed = lake.runs.get(run_id)  # read-your-writes: waits for the queue, which stops gathering

    assert time.monotonic() - began < 30 and not uncommitted(lake)
    assert lake.sql("select count(distinct run_id) from runs").fetchall() == [(1,)]
    assert (committed.status, committed.params, committed.tags) == (
        as_written.status,
        as_written.params,
        as_written.tags,
    )
    keys = ("last_value", "last_step", "last_timestamp", "min_value", "max_value")
    assert {key: committed.metrics["loss"][key] for key in keys} == {
        key: as_written.metrics["loss"][key] for key in keys
    }
    assert lake.runs.get_as_written(run_id) == committed, "nothing left to lay over"


def test_changes_are_laid_over_a_committed_run(lake: metalake.Lake) -> None:
    run_id = log_a_run(lake, end=False)
    lake.runs.wait()
    lake.runs.set_commit_window(HELD)
    lake.runs.log_batch(run_id, params={"seed": "1"}, tags={"team": "data"}, durable="journaled")
    lake.runs.delete_tag(run_id, "team", durable="journaled")
    lake.runs.log_inputs(run_id, [{"dataset": "orders", "context": "training"}], durable="journaled")
    lake.runs.end(run_id, "failed", durable="journaled")

    shown = lake.runs.get_as_written(run_id)

    assert uncommitted(lake)
    assert shown.status == "failed" and shown.info["end_time"] is not None
    assert shown.params == {"depth": "6", "seed": "1"} and shown.tags == {}
    assert [row["dataset"] for row in shown.inputs] == ["orders"]
    assert shown.metrics["loss"]["last_value"] == 0.2, "the committed points are still there"


def test_a_committed_write_is_not_held_by_the_window(lake: metalake.Lake) -> None:
    lake.runs.set_commit_window(HELD)
    began = time.monotonic()
    run_id = lake.runs.create("churn", "waited", durable="committed")
    assert time.monotonic() - began < 30 and not uncommitted(lake)
    assert lake.runs.get_as_written(run_id).info["name"] == "waited"


@pytest.mark.parametrize("seconds", [-1.0, 3601.0])
def test_a_commit_window_out_of_range_is_refused(lake: metalake.Lake, seconds: float) -> None:
    with pytest.raises(ValueError, match="0 to 3,600 seconds"):
        lake.runs.set_commit_window(seconds)
