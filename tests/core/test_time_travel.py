"""One rule for every `as_of`: the future and the time before the lake are refused, text is a time or a snapshot
(never both), and a moment whose files a vacuum deleted says what can still be read."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

import metalake
from metalake.errors import MetalakeError, SnapshotNotFound, TimeTravelError


def append_metric(lake: metalake.Lake, run_id: str, value: float) -> None:
    lake.append(
        "metrics",
        [{"run_id": run_id, "key": "loss", "value": value, "step": 0, "timestamp": datetime.now(UTC)}],
    )


@pytest.mark.parametrize("name", ["2026-03-01", "20260301", "2026-03-01T12:00:00Z", "2026-03-01 12:00"])
def test_a_snapshot_name_that_reads_as_a_time_is_refused(lake: metalake.Lake, name: str) -> None:
    with pytest.raises(MetalakeError, match=f"'{name}' is not a valid snapshot name: it reads as a time"):
        lake.snapshot(name)
    assert lake.snapshots().is_empty()


def test_a_dated_snapshot_name_with_a_word_reads_back(lake: metalake.Lake) -> None:
    append_metric(lake, "r1", 1.0)
    lake.snapshot("release-2026-03-01")
    append_metric(lake, "r2", 2.0)
    assert lake.as_of("release-2026-03-01").read("metrics").height == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-13-01", "month must be in 1..12"),
        ("yesterday", None),
        ("1767225600", "a number is not read as a time"),
    ],
)
def test_text_that_is_neither_a_time_nor_a_snapshot_says_both(
    lake: metalake.Lake, text: str, reason: str | None
) -> None:
    lake.snapshot("baseline")
    with pytest.raises(SnapshotNotFound) as raised:
        lake.as_of(text)
    message = str(raised.value)
    assert f"{text!r} is not a valid time, nor a snapshot" in message
    assert "ISO-8601 date or time (2026-03-01, 2026-03-01T12:00:00Z" in message
    assert "Known snapshots: baseline." in message
    if reason:
        assert reason in message
    assert isinstance(raised.value, TimeTravelError)


def test_the_future_is_refused_within_the_clock_skew_it_reads_now(lake: metalake.Lake) -> None:
    append_metric(lake, "r1", 1.0)
    with pytest.raises(TimeTravelError, match=r"as of 2099-01-01T00:00:00\+00:00: that is in the future"):
        lake.as_of("2099-01-01")
    assert lake.as_of(datetime.now(UTC) + timedelta(minutes=1)).read("metrics").height == 1


def test_a_moment_before_the_lake_was_created_is_refused(lake: metalake.Lake) -> None:
    created = lake.created_at()
    assert created is not None and created <= datetime.now(UTC)
    with pytest.raises(TimeTravelError, match=r"the lake was created at .*held nothing then") as raised:
        lake.as_of("2020-01-01")
    assert "none yet; pin one with `metalake snapshot NAME`" in str(raised.value)
    assert lake.as_of(created).read("metrics").is_empty()


def test_a_moment_whose_files_were_vacuumed_names_what_is_still_readable(lake: metalake.Lake) -> None:
    append_metric(lake, "r0", 0.0)
    lake.snapshot("pinned")
    for number in range(1, 3):
        append_metric(lake, f"r{number}", float(number))
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    append_metric(lake, "r9", 9.0)
    lake.maintain(tables=["metrics"])  # rewrites the files: older versions' files are now unreferenced
    lake.maintain(tables=["metrics"], vacuum_days=0)
    past = lake.as_of(moment)
    with pytest.raises(TimeTravelError, match="files of its version 3 were deleted by a vacuum") as raised:
        past.read("metrics")
    message = str(raised.value)
    assert f"Still readable: versions {lake.version('metrics') - 2} and later" in message
    assert "known snapshots: pinned" in message
    with pytest.raises(TimeTravelError, match="deleted by a vacuum"):
        past.sql("select count(*) from metrics").fetchall()
    assert lake.as_of("pinned").read("metrics").height == 1
