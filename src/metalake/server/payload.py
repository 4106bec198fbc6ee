"""Request bodies for the server: one OpenLineage event or a JSON list of them, gunzipped within a size cap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metalake.errors import InvalidEvent, PayloadTooLarge

MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # of one POST body, after gunzip


def read_events_payload(
    body: bytes, *, gzipped: bool, source: str = "request", max_bytes: int = MAX_PAYLOAD_BYTES
) -> list[Any]:
    """A POST body (one event, or a JSON list of events), gunzipped when the client compressed it.

    The gunzipped body may not pass `max_bytes` (PayloadTooLarge): a few kilobytes of gzip can hold gigabytes.
    """
    import zlib

    import orjson

    if gzipped:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes + 1)
            complete = inflater.eof
        except zlib.error as error:
            raise InvalidEvent(
                0, f"the body says gzip but cannot be decompressed ({error})", source=source
            ) from None
        if len(body) > max_bytes:
            raise PayloadTooLarge(max_bytes, source=source)
        if not complete:
            raise InvalidEvent(0, "the body says gzip but the gzip stream is cut short", source=source)
    try:
        payload = orjson.loads(body)  # refuses nesting deeper than 1024, unlike a recursion error
    except ValueError as error:
        raise InvalidEvent(0, f"the body is not valid JSON ({error})", source=source) from None
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, Mapping) for item in items):
        raise InvalidEvent(0, "the body must be a JSON object (one event) or a list of them", source=source)
    return items
