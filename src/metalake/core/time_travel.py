"""Time travel's one rule, for every `as_of` (Python, `sql --as-of`, `export duckdb --as-of`, ...): what a moment
given as text means, and which moments the lake can be read at.

A moment in the future (beyond the clock skew) is refused, and so is one before the lake was created; a moment
after that but before one table's creation reads that table as empty. A moment whose files a vacuum deleted says
which snapshots and versions are still readable, instead of failing later in DuckDB or polars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.moments import describe_moment, latest_allowed
from metalake.errors import TimeTravelError

if TYPE_CHECKING:
    from deltalake import DeltaTable

TIME_FORMS = (
    "an ISO-8601 date or time (2026-03-01, 2026-03-01T12:00:00Z; without a zone it is UTC), a datetime, "
    "or the name of a snapshot"
)
VACUUM_OPERATIONS = frozenset({"vacuum", "vacuum start", "vacuum end"})


def parse_time_text(text: str) -> datetime | None:
    """The moment `as_of` reads in text (ISO-8601, naive means UTC); None when the text is not a time."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        return None


def time_reading_problem(text: str) -> str | None:
    """Why text that starts like a date or a number is not a time (for the message); None for other text."""
    stripped = text.strip()
    if not stripped[:1].isdigit():
        return None
    if stripped.isdigit():
        return "a number is not read as a time (no epoch seconds): write it as ISO-8601"
    try:
        datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError as error:
        return str(error)
    return "it is out of the range of times"


def check_moment(
    label: str,
    at: datetime,
    started: datetime | None,
    snapshots: Callable[[], Iterable[str]],
    now: datetime | None = None,
) -> None:
    """Refuse a moment the lake cannot answer for: in the future, or before the lake was created.

    `snapshots` gives the known snapshot names for the message, read only when a moment is refused.
    """
    current = now or datetime.now(UTC)
    if at > latest_allowed(current):
        raise TimeTravelError(
            f"Cannot read the lake as of {label}: that is in the future (now is {describe_moment(current)}). "
            "Give a past time or a snapshot name, or leave the moment out for the lake now."
        )
    if started is not None and at < started:
        raise TimeTravelError(
            f"Cannot read the lake as of {label}: the lake was created at {describe_moment(started)}, so it held "
            f"nothing then. Give a later time or a snapshot name (known snapshots: {_listing(snapshots())})."
        )


def unknown_moment(text: str, snapshots: Sequence[str]) -> str:
    """The message for text that is neither a time nor a snapshot name."""
    problem = time_reading_problem(text)
    as_time = f" (as a time: {problem})" if problem else ""
    return (
        f"{text!r} is not a valid time, nor a snapshot{as_time}. Give {TIME_FORMS}. "
        f"Known snapshots: {_listing(snapshots)}."
    )


def vacuum_after(history: Sequence[Mapping[str, Any]], version: int) -> Mapping[str, Any] | None:
    """The first vacuum commit after `version` (history is newest first), or None: then its files are all there."""
    later = [
        record
        for record in history
        if record["version"] > version
        and (
            str(record.get("operation") or "").lower() in VACUUM_OPERATIONS
            or str(record.get("engine_operation") or "").lower() in VACUUM_OPERATIONS
        )
    ]
    return later[-1] if later else None


def missing_files(loaded: DeltaTable) -> int:
    """How many of a table version's data files are gone from storage (one metadata request per file)."""
    from pyarrow.fs import FileType

    dataset = loaded.to_pyarrow_dataset()
    infos = dataset.filesystem.get_file_info(list(dataset.files))
    return sum(1 for info in infos if info.type == FileType.NotFound)


def vacuumed_error(
    table: str,
    label: str,
    version: int,
    vacuum: Mapping[str, Any],
    oldest_readable: tuple[int, datetime] | None,
    snapshots: Iterable[str],
) -> TimeTravelError:
    """The error for a moment whose files a vacuum deleted, naming what can still be read."""
    readable = (
        f"versions {oldest_readable[0]} and later (moments from {describe_moment(oldest_readable[1])} on)"
        if oldest_readable is not None
        else "the current version"
    )
    return TimeTravelError(
        f"Cannot read table {table!r} as of {label}: the files of its version {version} were deleted by a "
        f"vacuum at {describe_moment(vacuum['timestamp'])} (retention). Still readable: {readable}, and the "
        f"named snapshots, whose files vacuum keeps (known snapshots: {_listing(snapshots)})."
    )


def _listing(snapshots: Iterable[str]) -> str:
    names = sorted(set(snapshots))
    return ", ".join(names) if names else "none yet; pin one with `metalake snapshot NAME`"
