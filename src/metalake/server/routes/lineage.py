"""`POST /api/v1/lineage`: OpenLineage events as the openlineage HttpTransport sends them, checked, then spooled."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request) at runtime.
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalake.errors import InvalidEvent, MetalakeError, PayloadTooLarge
from metalake.server.payload import MAX_PAYLOAD_BYTES, read_events_payload
from metalake.server.spool import Ack, GroupCommitter

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

LINEAGE_PATH = "/api/v1/lineage"


def add_lineage_routes(
    app: "FastAPI",
    committer: GroupCommitter,
    *,
    authorized: "Callable[[Request], bool]",
    refusal: "Callable[[int, str, str], JSONResponse]",
    ack: Ack,
) -> None:
    """Add the OpenLineage endpoint; with `ack="committed"` its 201 waits for the group commit."""
    from fastapi import Request

    from metalake.lineage.openlineage.events import parse_event

    @app.post(LINEAGE_PATH, status_code=201)
    async def receive_lineage(request: Request) -> Any:
        """Accept one OpenLineage event (or a JSON list of them), as the openlineage HttpTransport sends them."""
        if not authorized(request):
            return refusal(401, "unauthorized", "Send the server's token as `Authorization: Bearer TOKEN`.")
        body = bytearray()
        async for chunk in request.stream():  # read up to the cap only, whatever Content-Length says
            body += chunk
            if len(body) > MAX_PAYLOAD_BYTES:
                return refusal(413, PayloadTooLarge.code, str(PayloadTooLarge(MAX_PAYLOAD_BYTES)))
        gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
        try:
            raws = read_events_payload(bytes(body), gzipped=gzipped)
            events = [parse_event(raw, position, source="request") for position, raw in enumerate(raws)]
        except PayloadTooLarge as error:
            return refusal(413, error.code, str(error))
        except InvalidEvent as error:
            return refusal(400, error.code, str(error))
        waiter = committer.submit(events, wait=ack == "committed")
        if waiter is not None:
            try:
                await asyncio.wrap_future(waiter)
            except MetalakeError as error:
                return refusal(503, error.code, f"The events could not be committed yet: {error}")
        return {"accepted": len(events), "event_ids": [event.event_id for event in events]}
