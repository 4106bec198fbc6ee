"""Moments and durations as users give them (datetimes, ISO text, "7d"), turned into UTC values domain code stores."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

from metalake.errors import MetalakeError

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
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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
