"""How a REST route is declared: its authorization, the lake it reads (live or `as_of`), its ETag.

A route says `@api.get(path, securable=..., reads=(tables...), response_model=...)` and opens
`api.reading(request, response, as_of, reads)` for the lake to answer from; writes open `api.writing(request)`.
Routes never build their own authorization or time travel, so the seam and `as_of` hold everywhere.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Query

from metalake.core.pending import reads_without_waiting_for_queued_writes
from metalake.errors import InvalidRequest, MetalakeError
from metalake.server.auth import (
    Action,
    Authenticator,
    Authorize,
    FieldsOf,
    Principal,
    SecurableOf,
    grant_creator,
    path_fields,
)
from metalake.server.http import etag_for, etag_matches
from metalake.server.models import ErrorResponse

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response

    from metalake.access import Readable
    from metalake.core.vocabulary import SecurableKind
    from metalake.lake import Lake
    from metalake.server.access_log import AccessLog

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Answered = TypeVar("Answered")
PAST_LAKES = 16  # lakes opened `as_of` a past moment, kept for the next request about the same moment
SETTLED_AFTER = timedelta(seconds=5)  # a moment this far in the past cannot gain commits any more

AS_OF_HELP = (
    "Answer as the lake was then: an ISO-8601 time (`2026-03-01`, `2026-03-01T12:00:00Z`) or a snapshot name. "
    "Without it, the answer is the lake now."
)


# The `as_of` query parameter, the same on every GET.
AsOf = Annotated[str | None, Query(description=AS_OF_HELP, max_length=200)]


class NotModified(Exception):
    """The client's ETag names the answer: 304, no body."""

    def __init__(self, etag: str):
        self.etag = etag


@dataclass(frozen=True)
class Write:
    """What a write request brings: the lake to write to, who asks, and the client's idempotency key."""

    lake: "Lake"
    actor: str
    idempotency_key: str | None
    principal: "Principal | None" = None

    def made(self, securable: str) -> None:
        """Record that the caller created `securable`: it manages it (see `grant_creator`)."""
        grant_creator(self.lake, self.principal, securable)

    @property
    def restricted(self) -> bool:
        """Whether the caller's grants decide (tokens of the lake's principals), not an open or shared-token
        server."""
        return self.principal is not None and not self.principal.unrestricted


class Api:
    """The REST API's routes on one FastAPI app, over one lake."""

    def __init__(
        self,
        app: "FastAPI",
        lake: "Lake",
        authenticator: Authenticator,
        access_log: "AccessLog | None" = None,
    ):
        self.app = app
        self.lake = lake
        self.authenticator = authenticator
        self.access_log = access_log
        self._past: OrderedDict[tuple[str, bool], Lake] = OrderedDict()
        self._past_lock = threading.Lock()
        # Readers without `unmask` read this lake: the same tables through the masking layer. Made at start
        # when grants decide (a missing or bad masking key fails then, not at the first request).
        self._masked: Lake | None = lake.masked() if authenticator.mode == "lake" else None

    # -- declaring routes ---------------------------------------------------------------------------------------

    def get(
        self,
        path: str,
        *,
        securable: str | SecurableOf,
        response_model: Any,
        summary: str | None = None,
        action: Action = "read",
        filtered: bool = False,
    ) -> Callable[[Endpoint], Endpoint]:
        return self._route("GET", path, action, securable, response_model, 200, summary, filtered=filtered)

    def post(
        self,
        path: str,
        *,
        securable: str | SecurableOf,
        response_model: Any,
        status_code: int = 200,
        action: Action = "write",
        summary: str | None = None,
        openapi_extra: dict[str, Any] | None = None,
        filtered: bool = False,
        fields: FieldsOf = path_fields,
    ) -> Callable[[Endpoint], Endpoint]:
        """`fields`: what `securable` is computed from (the path parameters; `body_fields` adds the JSON body's)."""
        return self._route(
            "POST",
            path,
            action,
            securable,
            response_model,
            status_code,
            summary,
            openapi_extra,
            filtered=filtered,
            fields=fields,
        )

    def delete(
        self,
        path: str,
        *,
        securable: str | SecurableOf,
        response_model: Any,
        summary: str | None = None,
        action: Action = "write",
    ) -> Callable[[Endpoint], Endpoint]:
        return self._route("DELETE", path, action, securable, response_model, 200, summary)

    def _route(
        self,
        method: str,
        path: str,
        action: Action,
        securable: str | SecurableOf,
        response_model: Any,
        status_code: int,
        summary: str | None,
        openapi_extra: dict[str, Any] | None = None,
        *,
        filtered: bool = False,
        fields: FieldsOf = path_fields,
    ) -> Callable[[Endpoint], Endpoint]:
        from fastapi import Depends

        decide = Authorize(
            self.authenticator, action, securable, self.access_log, filtered=filtered, fields=fields
        )

        def register(endpoint: Endpoint) -> Endpoint:
            self.app.add_api_route(
                path,
                endpoint,
                methods=[method],
                response_model=response_model,
                status_code=status_code,
                summary=summary,
                dependencies=[Depends(decide)],
                responses=_ERROR_RESPONSES,
                openapi_extra=openapi_extra,
            )
            return endpoint

        return register

    # -- answering ----------------------------------------------------------------------------------------------

    @contextmanager
    def reading(
        self, request: "Request", response: "Response", as_of: str | None, reads: Sequence[str] | None
    ) -> Iterator["Lake"]:
        """The lake to answer from (as of `as_of`), after the ETag check: raises NotModified (304) when the
        client's `If-None-Match` names the answer, else sets the ETag and yields.

        Reads see what is committed: they do not wait for the group commits that other requests queued (each
        write request answers only once its own commit is done, so a client still reads its writes).
        """
        with reads_without_waiting_for_queued_writes():
            lake = self.lake_for(request, as_of)
            key = str(request.url.include_query_params())
            if lake.masked_by is not None:  # a masked answer differs from the clear one at the same URL
                key += "|masked"
            readable = self.readable(request)
            if readable is not None:  # a filtered answer is the caller's own
                key += "|readable:" + readable.digest
            etag = etag_for(lake, reads, key)
            if etag_matches(request.headers.get("if-none-match"), etag):
                raise NotModified(etag)
            response.headers["ETag"] = etag
            response.headers["Cache-Control"] = "no-cache"  # revalidate with the ETag: cheap, and never stale
            yield lake

    async def run_read(self, answer: Callable[[], Answered]) -> Answered:
        """Run a read that memory usually answers (one run by id). On a lake on local disk it runs right on the
        event loop: its file checks take microseconds, and a worker-thread hop costs more than the read itself
        (about 0.4 ms of a 1 ms answer). On object storage a check is a network call, so it runs in a thread."""
        if self.lake.location.is_local:
            return answer()
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(answer)

    @staticmethod
    def readable(request: "Request") -> "Readable | None":
        """What the caller may read of the kind a filtered route lists; None: everything."""
        readable: Readable | None = getattr(request.state, "readable", None)
        return readable

    def also_readable(self, request: "Request", kind: "SecurableKind") -> "Readable | None":
        """What the caller of a filtered route may read of another kind (the models of a KPI-impact row, the
        experiments of a lineage graph's runs); None: everything."""
        principal: Principal | None = getattr(request.state, "principal", None)
        if self.readable(request) is None or principal is None or principal.unrestricted:
            return None
        readable = self.lake.access.readable(principal.name, kind)
        return None if readable.everything else readable

    def relations_readable(self, request: "Request") -> "Callable[[str], bool] | None":
        """For the SQL endpoint: whether the caller may read a table or view by name (`table:NAME`,
        `view:NAME`, or the lake); None when it may read them all."""
        tables = self.readable(request)
        principal: Principal | None = getattr(request.state, "principal", None)
        if tables is None or principal is None:
            return None
        views = self.lake.access.readable(principal.name, "view")
        return lambda name: name in tables or name in views

    def writing(self, request: "Request") -> Write:
        """A write request's lake and idempotency key; refused if it asks for a past moment."""
        if "as_of" in request.query_params:
            raise InvalidRequest(
                "Writes go to the lake as it is now: drop `as_of` from the request.", field="as_of"
            )
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= 200 and key.isprintable()):
            raise InvalidRequest(
                "Idempotency-Key must be 1 to 200 printable characters.", field="Idempotency-Key"
            )
        principal = getattr(request.state, "principal", None)
        return Write(self.lake, principal.name if principal is not None else self.lake.actor, key, principal)

    def masks_for(self, request: "Request") -> bool:
        """Whether the caller reads sensitive values masked: unless it holds `unmask` on the lake (admins do),
        or the server does not decide by grants (`--no-auth`, `--token`)."""
        principal: Principal | None = getattr(request.state, "principal", None)
        if self._masked is None or principal is None or principal.unrestricted:
            return False
        return not self.lake.access.sees_clear(principal.name)

    def lake_for(self, request: "Request", as_of: str | None) -> "Lake":
        """The lake a read request answers from: as of `as_of`, masked unless the caller may see values in clear.
        Every read route and MLflow read handler takes its lake from here: the one masking layer's seam."""
        return self.lake_at(as_of, masked=self.masks_for(request))

    def lake_at(self, as_of: str | None, *, masked: bool = False) -> "Lake":
        """The lake now, or as of a moment (ISO-8601 time or snapshot name), masked or not; past lakes are
        reused."""
        base = self.lake
        if masked:
            assert self._masked is not None, "masked reads need a server whose grants decide"
            base = self._masked
        if as_of is None or not as_of.strip():
            return base
        with self._past_lock:
            found = self._past.get((as_of, masked))
            if found is not None:
                self._past.move_to_end((as_of, masked))
                return found
        try:
            past = base.as_of(as_of)
        except MetalakeError:
            raise
        except (ValueError, TypeError) as error:
            raise InvalidRequest(
                f"as_of {as_of!r} is not a time or a snapshot name: {error}", field="as_of"
            ) from None
        when = past.moment.at if past.moment is not None else None
        if when is None or when < datetime.now(UTC) - SETTLED_AFTER:  # a snapshot, or a settled moment
            with self._past_lock:
                self._past[(as_of, masked)] = past
                while len(self._past) > PAST_LAKES:
                    self._past.popitem(last=False)
        return past


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "model": ErrorResponse}
    for status, description in (
        (400, "Bad input: the error's code and message say what to fix"),
        (401, "No or wrong bearer token"),
        (403, "Not allowed"),
        (404, "No such resource"),
        (409, "Conflict or policy refusal"),
        (413, "The request body is too large"),
        (422, "A contract refused the data; nothing was written"),
        (503, "Storage unavailable; retry"),
    )
}
