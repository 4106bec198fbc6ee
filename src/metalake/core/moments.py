"""Moments and durations as users give them (datetimes, ISO text, "7d"), turned into UTC values domain code stores."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

from metalake.errors import MetalakeError

# How far ahead of this machine's clock a user's time may be: the clocks of writers drift by seconds to minutes.
CLOCK_SKEW = timedelta(minutes=5)
# The earliest time metalake records or reads the lake at: older times are typos (year 0001), and Python's
# datetime arithmetic near its own limits (year 1, year 9999) overflows on the way in or out of the lake.
EARLIEST_MOMENT = datetime(1900, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Durations and ages beyond a century reach before any lake existed; capping them keeps every date arithmetic
# (a deployment start minus a window, now minus a retention age) inside the range a datetime can hold.
MAX_DAYS = 36_525
MAX_DURATION = timedelta(days=MAX_DAYS)


def utc_moment(
    value: datetime | date | str, *, what: str, error: type[MetalakeError] = MetalakeError
) -> datetime:
    """A datetime (naive means UTC), a date (its midnight UTC) or ISO-8601 text, as an aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise error(
                f"{what} {value!r} is not an ISO-8601 time; write e.g. 2026-03-01T12:00:00Z."
            ) from None
    else:
        raise error(f"{what} takes a datetime or ISO-8601 text, not {type(value).__name__}.")
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past the last representable UTC moment
        raise error(
            f"{what} {value!r} is out of the range of times; write e.g. 2026-03-01T12:00:00Z."
        ) from None


def latest_allowed(now: datetime | None = None) -> datetime:
    """The latest moment a user's time may name: now plus the clock-skew allowance."""
    return (now or datetime.now(UTC)) + CLOCK_SKEW


def describe_moment(moment: datetime) -> str:
    """A moment as users read it in messages: ISO-8601 in UTC, to the second (milliseconds when set)."""
    plain = moment.astimezone(UTC).replace(tzinfo=None)
    return plain.isoformat(timespec="milliseconds" if plain.microsecond else "seconds") + "Z"


def accepted_range(now: datetime | None = None) -> str:
    """The range `check_recordable` accepts, for messages."""
    latest = latest_allowed(now)
    return (
        f"from {describe_moment(EARLIEST_MOMENT)} to now ({describe_moment(latest - CLOCK_SKEW)}) "
        f"plus {int(CLOCK_SKEW.total_seconds() // 60)} minutes of clock skew"
    )


def check_recordable(
    moment: datetime,
    *,
    what: str,
    error: type[MetalakeError] = MetalakeError,
    now: datetime | None = None,
) -> datetime:
    """Refuse a user's time that has not happened yet (beyond the clock skew) or lies before 1900.

    A lake records what happened: a time in the future would, for example, end a serving deployment years from
    now and make every later end fail. Returns the moment (aware, UTC) when it is accepted.
    """
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    current = now or datetime.now(UTC)
    if aware > latest_allowed(current):
        raise error(
            f"{what} {describe_moment(aware)} is in the future: metalake records what has happened, so it takes "
            f"times {accepted_range(current)}. Give the time it happened, or leave it out for now."
        )
    if aware < EARLIEST_MOMENT:
        raise error(
            f"{what} {describe_moment(aware)} is before {EARLIEST_MOMENT.year}: metalake takes times "
            f"{accepted_range(current)}. Check the year."
        )
    return aware


def recordable_moment(
    value: datetime | date | str, *, what: str, error: type[MetalakeError] = MetalakeError
) -> datetime:
    """A user's time for a write (`utc_moment`), refused when it is in the future or before 1900."""
    return check_recordable(utc_moment(value, what=what, error=error), what=what, error=error)


def parse_duration(
    value: timedelta | str, *, what: str, error: type[MetalakeError] = MetalakeError
) -> timedelta:
    """A positive duration from a timedelta or text such as "90s", "30m", "12h", "7d", "2w"."""
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        amount, unit = match.groups()
        seconds = float(amount) * _UNIT_SECONDS[unit.lower()]
        if not seconds <= MAX_DURATION.total_seconds():
            raise error(f"{what} {value!r} is longer than {MAX_DAYS} days (100 years); give a shorter one.")
        duration = timedelta(seconds=seconds)
    else:
        raise error(
            f"{what} {value!r} is not a duration: give a timedelta or a number with a unit s, m, h, d or w "
            "(e.g. '12h', '7d', '2w')."
        )
    if duration <= timedelta(0):
        raise error(f"{what} must be longer than zero, not {value!r}.")
    if duration > MAX_DURATION:
        raise error(f"{what} {value!r} is longer than {MAX_DAYS} days (100 years); give a shorter one.")
    return duration


def age_in_days(value: float, *, what: str, error: type[MetalakeError] = MetalakeError) -> float:
    """An age for a retention rule ("older than N days"): a finite number from 0 to MAX_DAYS."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not 0 <= number <= MAX_DAYS:
        raise error(
            f"{what} must be a number of days from 0 to {MAX_DAYS} (100 years), not {value!r}; "
            "e.g. 7 to delete what is older than a week."
        )
    return float(number)
