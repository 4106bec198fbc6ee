"""User-given times for writes: refused when they have not happened yet (beyond the clock skew) or before 1900."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metalake.core.moments import CLOCK_SKEW, check_recordable, recordable_moment, utc_moment
from metalake.errors import DeploymentError, MetalakeError


def test_a_time_within_the_clock_skew_is_accepted_and_later_ones_are_refused() -> None:
    now = datetime.now(UTC)
    assert check_recordable(now, what="At") == now
    assert check_recordable(now + CLOCK_SKEW - timedelta(seconds=5), what="At") > now
    with pytest.raises(
        DeploymentError, match=r"The start time 2099-01-01T00:00:00Z is in the future"
    ) as caught:
        recordable_moment("2099-01-01", what="The start time", error=DeploymentError)
    assert "from 1900-01-01T00:00:00Z to now (" in str(caught.value)
    assert "plus 5 minutes of clock skew" in str(caught.value)


def test_times_before_1900_are_refused_and_naive_times_are_utc() -> None:
    with pytest.raises(MetalakeError, match="At 0001-01-01T00:00:00Z is before 1900"):
        recordable_moment("0001-01-01T00:00:00Z", what="At")
    assert recordable_moment(datetime(2020, 5, 1, 12), what="At") == datetime(2020, 5, 1, 12, tzinfo=UTC)


def test_a_time_past_the_last_representable_moment_is_an_error_not_an_overflow() -> None:
    with pytest.raises(MetalakeError, match="out of the range of times"):
        utc_moment("9999-12-31T23:00:00-05:00", what="At")
