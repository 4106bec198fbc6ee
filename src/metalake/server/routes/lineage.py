"""Lineage: `POST /api/v1/lineage` takes OpenLineage events as the openlineage HttpTransport sends them
(checked, then spooled and group-committed), and `GET /api/v1/lineage` walks the graph."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel

from metalake.errors import CommitFailed, MetalakeError, NotReadable, PayloadTooLarge
from metalake.server.api import AsOf
from metalake.server.http import frame_rows
from metalake.server.payload import MAX_PAYLOAD_BYTES, read_events_payload
from metalake.server.rows import LineageEdge, Page, Row
from metalake.server.spool import Ack, GroupCommitter

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import Request

    from metalake.lake import Lake
    from metalake.server.api import Api

LINEAGE_PATH = "/api/v1/lineage"


EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "description": "One OpenLineage RunEvent, DatasetEvent or JobEvent, or a JSON list of them (gzip allowed)",
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
            }
        },
    }
}


class EventsAccepted(BaseModel):
    accepted: int
    event_ids: list[str]


class LineageGraph(BaseModel):
    node: str
    direction: str
    nodes: list[str]
    edges: list[LineageEdge]


def node_readable(api: "Api", request: "Request", lake: "Lake") -> "Callable[[str], bool] | None":
    """Whether the caller may see a lineage node, for a caller restricted to some namespaces (None: it may see
    all). A dataset or job node is its namespace's (`dataset:NAMESPACE/NAME`; a namespace may hold slashes, so a
    node is a granted namespace's when it starts with it); a run is its experiment's, a model version and a
    deployment their model's."""
    namespaces = api.readable(request)
    if namespaces is None:
        return None
    experiments = api.also_readable(request, "experiment")
    models = api.also_readable(request, "model")
    prefixes = tuple(f"{namespace}/" for namespace in namespaces.names)

    def readable(node: str) -> bool:
        kind, _, name = node.partition(":")
        try:
            if kind in ("dataset", "job"):
                return name.startswith(prefixes)
            if kind == "run":
                return experiments is None or lake.runs.request_state(name)["experiment"] in experiments
            if kind == "model":
                return models is None or name.rsplit("/", 1)[0] in models
            if kind == "deployment":
                return models is None or lake.deployments.get(name).model in models
        except LookupError:
            return False
        return False

    return readable


def reachable_edges(rows: list[dict[str, Any]], start: str, direction: str) -> list[dict[str, Any]]:
    """The edges of a walk still connected to its start once the hidden nodes' edges are dropped: a walk never
    reaches what it found only through a node the caller may not see."""
    near, far = ("target_node", "source_node") if direction == "upstream" else ("source_node", "target_node")
    reached, kept, changed = {start}, [], True
    left = list(rows)
    while changed:
        changed, rest = False, []
        for row in left:
            if row[near] in reached:
                kept.append(row)
                changed = changed or row[far] not in reached
                reached.add(row[far])
            else:
                rest.append(row)
        left = rest
    return kept


async def events_fields(request: "Request") -> dict[str, Any]:
    """The namespaces of the jobs a POST's events come from, read once (the events are kept for the handler):
    a producer needs write on the namespaces it reports on, not on the whole lake."""
    body = bytearray()
    async for chunk in request.stream():  # read up to the cap only, whatever Content-Length says
        body += chunk
        if len(body) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(MAX_PAYLOAD_BYTES)
    gzipped = request.headers.get("content-encoding", "").lower() == "gzip"
    raws = read_events_payload(bytes(body), gzipped=gzipped)
    request.state.lineage_events = raws
    namespaces = set()
    for raw in raws:
        job = raw.get("job")
        namespace = job.get("namespace") if isinstance(job, dict) else None
        namespaces.add(namespace if isinstance(namespace, str) and namespace else None)
    return {"namespaces": namespaces}


def job_namespaces(fields: Any) -> str | tuple[str, ...]:
    """`namespace:NS` for each job namespace of the events; events without one are decided on the lake (the
    event check then refuses them with its own message)."""
    namespaces = fields["namespaces"]
    if not namespaces or None in namespaces:
        return "namespace:*"
    return tuple(f"namespace:{namespace}" for namespace in sorted(namespaces))


def add_lineage_routes(api: "Api", committer: GroupCommitter, *, ack: Ack) -> None:
    """Add the lineage endpoints; with `ack="committed"` the POST's 201 waits for the group commit."""
    from fastapi import Query, Request, Response

    from metalake.lineage.openlineage.events import parse_event

    @api.post(
        LINEAGE_PATH,
        securable=job_namespaces,
        fields=events_fields,
        response_model=EventsAccepted,
        status_code=201,
        summary="Take OpenLineage events (one, or a JSON list)",
        openapi_extra=EVENTS_BODY,
    )
    async def receive_lineage(request: Request) -> Any:
        """Accept one OpenLineage event (or a JSON list of them), as the openlineage HttpTransport sends them."""
        raws = request.state.lineage_events  # read and decided on by events_fields
        events = [parse_event(raw, position, source="request") for position, raw in enumerate(raws)]
        waiter = committer.submit(events, wait=ack == "committed")
        if waiter is not None:
            try:
                await asyncio.wrap_future(waiter)
            except MetalakeError as error:
                raise CommitFailed(f"The events could not be committed yet: {error}") from error
        return EventsAccepted(accepted=len(events), event_ids=[event.event_id for event in events])

    @api.get(
        LINEAGE_PATH,
        securable="namespace:*",
        filtered=True,
        response_model=LineageGraph,
        summary="The lineage graph around a node, upstream or downstream (the nodes the caller may see)",
    )
    def walk_lineage(
        request: Request,
        response: Response,
        node: Annotated[str, Query(min_length=1, max_length=2000, examples=["dataset:warehouse/orders"])],
        direction: Literal["upstream", "downstream"] = "downstream",
        depth: Annotated[int | None, Query(ge=1, le=100)] = None,
        as_of: AsOf = None,
    ) -> LineageGraph:
        with api.reading(request, response, as_of, ["lineage_edges", "lineage_events"]) as lake:
            readable = node_readable(api, request, lake)
            if readable is not None and not readable(node):
                raise NotReadable("lineage node", node)
            edges = lake.lineage.walk(node, direction, depth)
            rows = frame_rows(edges)
            if readable is not None:
                shown = [row for row in rows if readable(row["source_node"]) and readable(row["target_node"])]
                rows = reachable_edges(shown, node, direction)
            nodes = sorted(
                {node, *(row["source_node"] for row in rows), *(row["target_node"] for row in rows)}
            )
            return LineageGraph(
                node=node, direction=direction, nodes=nodes, edges=[LineageEdge(**row) for row in rows]
            )

    @api.get(
        f"{LINEAGE_PATH}/columns",
        securable="namespace:*",
        filtered=True,
        response_model=Page[Row],
        summary="Column lineage of a dataset (the datasets the caller may see)",
    )
    def column_lineage(
        request: Request,
        response: Response,
        dataset: Annotated[str, Query(min_length=1, max_length=2000)],
        as_of: AsOf = None,
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, ["lineage_edges", "lineage_events"]) as lake:
            readable = node_readable(api, request, lake)
            node = dataset if dataset.startswith("dataset:") else f"dataset:{dataset}"
            if readable is not None and not readable(node):
                raise NotReadable("dataset", dataset)
            rows = frame_rows(lake.lineage.column_lineage(dataset))
            if readable is not None:
                rows = [row for row in rows if readable(row["source_node"])]
            return {"items": rows, "next_page_token": None}
