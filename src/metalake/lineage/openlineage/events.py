"""OpenLineage events (spec 2-0-x) -> checked, canonical events, for `lake.lineage` and the HTTP server.

Pure functions, no lake: `parse_event` checks one event against what metalake needs from the spec (the shape
checks are in openlineage_checks.py) and gives it a content id, the hash of its canonical JSON; the rows an
event adds are built by `EventRows` (openlineage_rows.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from metalake.core.moments import EARLIEST_MOMENT, accepted_range, latest_allowed
from metalake.errors import InvalidEvent
from metalake.lineage.openlineage.checks import (
    check_dataset,
    check_datasets,
    check_event_fields,
    check_facets,
    check_job,
)

EventKind = Literal["run", "dataset", "job"]
RunState = Literal["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"]
RUN_STATES: frozenset[str] = frozenset(get_args(RunState))
METALAKE_NAMESPACE = "metalake"  # OpenLineage datasets in this namespace are metalake datasets, by name
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Event(NamedTuple):
    """One checked OpenLineage event: its content id, kind, time, and the event itself.

    A named tuple: made once per event of a file, it costs a fraction of a frozen dataclass.
    """

    event_id: str
    kind: EventKind
    event_time: datetime
    # None when dropped to save memory (parse_event(keep_payload=False)): `content` parses the text again
    payload: dict[str, Any] | None
    canonical: str
    # eventTime as microseconds since the epoch: rows carry it so, as a column of datetimes costs far more to build
    event_us: int

    @property
    def content(self) -> dict[str, Any]:
        """The event as a dict."""
        return self.payload if self.payload is not None else _loads(self.canonical)


def canonical_json(payload: Any) -> str:
    """Sorted keys, no spaces: the same event sent by HTTP or read from a file has the same text, so the same id.

    orjson (a dependency) writes it several times faster than json; what orjson refuses (integers beyond 64
    bits, non-text keys) json writes, so the text only ever depends on the content.
    """
    import orjson

    try:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _CANONICAL.encode(payload)


def _loads(raw: str | bytes | bytearray) -> Any:
    import orjson

    return orjson.loads(raw)


def as_mapping(raw: Any, position: int, source: str) -> dict[str, Any]:
    """An event given as a dict, JSON text (str or bytes), or an openlineage-python event object, as a dict."""
    if isinstance(raw, bytes | str | bytearray):  # first: the common case, and cheaper than the Mapping test
        try:
            loaded = _loads(raw)
        except ValueError as error:
            raise InvalidEvent(position, f"not valid JSON ({error})", source=source) from None
        if not isinstance(loaded, dict):
            raise InvalidEvent(
                position, "a JSON object is expected, got " + type(loaded).__name__, source=source
            )
        return loaded
    if isinstance(raw, Mapping):
        return dict(raw)
    if hasattr(raw, "__attrs_attrs__"):  # an event built with the openlineage-python client
        from openlineage.client.serde import Serde

        converted: dict[str, Any] = Serde.to_dict(raw)
        return converted
    raise InvalidEvent(
        position,
        f"cannot read an event from a {type(raw).__name__}: give a dict, JSON text or an openlineage event",
        source=source,
    )


def parse_event(raw: Any, position: int = 0, *, source: str = "batch", keep_payload: bool = True) -> Event:
    """Check one event and give it its content id; InvalidEvent says which event and what to fix.

    `keep_payload=False` keeps only the canonical text (see `Event.content`): less memory for large files.
    """
    payload = as_mapping(raw, position, source)

    def fail(reason: str) -> InvalidEvent:
        return InvalidEvent(position, reason, source=source)

    event_time = _parse_time(payload.get("eventTime"))
    if event_time is None:
        raise fail(
            f"eventTime {payload.get('eventTime')!r} is not an ISO-8601 date-time with a time, "
            "e.g. '2026-01-31T12:00:00.000Z'"
        )
    if not EARLIEST_MOMENT <= event_time <= latest_allowed():
        # refused here, where the server still answers 400: such a time cannot be stored (year 1 and year
        # 9999 overflow on the way into the tables) or has not happened yet
        raise fail(
            f"eventTime {payload.get('eventTime')!r} is "
            f"{'in the future' if event_time > EARLIEST_MOMENT else 'before 1900'}; "
            f"accepted: {accepted_range()}. Send the time the run or job event happened"
        )
    producer = payload.get("producer")
    if producer is not None and not isinstance(producer, str):
        raise fail("producer must be a URI string")
    kind: EventKind
    if "run" in payload:
        kind = "run"
        run = payload["run"]
        if not isinstance(run, dict) or not isinstance(run.get("runId"), str):
            raise fail("run.runId is missing: a RunEvent needs run: {runId: UUID}")
        if not _UUID.fullmatch(run["runId"]):
            raise fail(f"run.runId {run['runId']!r} is not a UUID")
        check_job(payload.get("job"), fail)
        state = payload.get("eventType")
        if state is not None and (not isinstance(state, str) or state not in RUN_STATES):
            raise fail(f"eventType {state!r} is not one of {', '.join(sorted(RUN_STATES))}")
        check_facets(run.get("facets"), "run.facets", fail)
        check_datasets(payload, fail)
    elif "dataset" in payload:
        kind = "dataset"
        check_dataset(payload["dataset"], "dataset", fail)
    elif "job" in payload:
        kind = "job"
        check_job(payload["job"], fail)
        check_datasets(payload, fail)
    else:
        raise fail("it is neither a RunEvent (run, job), a DatasetEvent (dataset) nor a JobEvent (job)")
    check_event_fields(payload, kind, fail)
    try:
        canonical = canonical_json(payload)
    except RecursionError:
        raise fail("it is nested too deeply to store: flatten its facets") from None
    event_id = hashlib.sha256(canonical.encode()).hexdigest()
    kept = payload if keep_payload else None
    return Event(event_id, kind, event_time, kept, canonical, (event_time - _EPOCH) // _MICROSECOND)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # beyond year 9999 in UTC: refused as unreadable
        return None


def dataset_node(namespace: str, name: str) -> str:
    return f"dataset:{namespace}/{name}"


def dataset_name(namespace: str, name: str) -> str:
    """The metalake dataset an OpenLineage dataset is: its name in the metalake namespace, else NAMESPACE/NAME."""
    return name if namespace == METALAKE_NAMESPACE else f"{namespace}/{name}"
