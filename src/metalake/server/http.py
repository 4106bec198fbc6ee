"""What every REST route shares: error bodies and statuses, JSON of lake answers, page tokens and ETags.

Errors leave as `{"error": {"code", "message", "details"}}`, with the `MetalakeError` code and a status chosen by
the error's class (`status_for`), so a client can branch on the code and show the message as it is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from metalake.errors import (
    ContractError,
    DeploymentNotFound,
    IdempotencyKeyReused,
    InvalidEvent,
    InvalidRequest,
    MetalakeError,
    NameNotFound,
    NotAuthenticated,
    NotAuthorized,
    NotReadable,
    PayloadTooLarge,
    PolicyViolation,
    QueryTimeout,
    ReadOnlyLakeError,
    SnapshotExists,
    TimeTravelError,
    TransientError,
    UnsafeQuery,
)

if TYPE_CHECKING:
    import polars as pl

    from metalake.lake import Lake

MAX_LIMIT = 1000  # rows per page of any listing
DEFAULT_LIMIT = 100
MAX_BODY_BYTES = 16 * 1024 * 1024

# Most specific first: the first class an error is an instance of decides its status.
_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (NotAuthenticated, 401),
    (NotAuthorized, 403),
    (NotReadable, 404),
    (PayloadTooLarge, 413),
    (QueryTimeout, 400),
    (UnsafeQuery, 400),
    (IdempotencyKeyReused, 409),
    (TimeTravelError, 400),  # a snapshot name that does not exist is a bad `as_of`, not a missing resource
    (NameNotFound, 404),
    (DeploymentNotFound, 404),
    (ContractError, 422),
    (PolicyViolation, 409),
    (SnapshotExists, 409),
    (ReadOnlyLakeError, 400),
    (TransientError, 503),
    (InvalidEvent, 400),
    (InvalidRequest, 400),
    (MetalakeError, 400),
)


def status_for(error: BaseException) -> int:
    """The HTTP status of a refusal, by its error class (400 for any other MetalakeError)."""
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return status
    return 500


def error_details(error: BaseException) -> dict[str, Any]:
    """What a client can act on beyond the message: failing checks and rules, known names."""
    if isinstance(error, ContractError):
        return {
            "table": error.table,
            "failures": [
                {
                    "column": failure.column,
                    "check": failure.check,
                    "failing_rows": failure.failing_rows,
                    "reason": failure.describe(),
                }
                for failure in error.failures
            ],
        }
    if isinstance(error, PolicyViolation):
        return {
            "model": error.model,
            "version": error.version,
            "stage": error.stage,
            "failures": [{"rule": failure.rule, "reason": failure.reason} for failure in error.failures],
        }
    if isinstance(error, NameNotFound):
        return {"name": error.name, "suggestions": error.suggestions}
    if isinstance(error, InvalidRequest) and error.field:
        return {"field": error.field}
    return {}


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def jsonable(value: Any) -> Any:
    """A lake value as JSON: times as ISO-8601, non-finite floats as null, decimals as strings, bytes as base64."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, Iterable):
        return [jsonable(item) for item in value]
    return str(value)


def frame_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """A polars frame as JSON-ready rows."""
    return [jsonable(row) for row in frame.to_dicts()]


# -- pages -----------------------------------------------------------------------------------------------------


def check_limit(limit: int | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise InvalidRequest(f"limit must be between 1 and {maximum}, not {limit}.", field="limit")
    return limit


def page_token(offset: int, scope: str) -> str:
    """An opaque token for the page starting at `offset` of the listing that `scope` names."""
    payload = json.dumps({"o": offset, "s": _scope_hash(scope)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def page_offset(token: str | None, scope: str) -> int:
    """The offset a page token stands for; InvalidRequest if it is damaged or belongs to another listing."""
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset, token_scope = payload["o"], payload["s"]
        valid = isinstance(offset, int) and offset >= 0 and token_scope == _scope_hash(scope)
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise InvalidRequest(
            "page_token is not a token this listing gave (damaged, or from a listing with other filters): "
            "start again without page_token.",
            field="page_token",
        )
    return int(offset)


def _scope_hash(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PageRequest:
    """The page a listing was asked for: where it starts, how many rows, and the filters (`scope`) that its
    tokens are tied to."""

    offset: int
    size: int
    scope: str

    @classmethod
    def parse(
        cls,
        limit: int | None,
        token: str | None,
        scope: str,
        *,
        default: int = DEFAULT_LIMIT,
        maximum: int = MAX_LIMIT,
    ) -> PageRequest:
        """From the `limit` and `page_token` parameters; InvalidRequest when either is wrong."""
        size = check_limit(limit, default=default, maximum=maximum)
        return cls(page_offset(token, scope), size, scope)

    @property
    def fetch(self) -> int:
        """Rows to fetch from `offset`: one more than the page, to know whether another page follows."""
        return self.size + 1

    def next_token(self, more: bool) -> str | None:
        return page_token(self.offset + self.size, self.scope) if more else None

    def cut(self, listing: pl.DataFrame) -> dict[str, Any]:
        """The page out of a whole listing (or one that holds at least `offset + fetch` rows)."""
        return self.starting(listing.slice(self.offset, self.fetch))

    def starting(self, rows: pl.DataFrame) -> dict[str, Any]:
        """The page from rows that start at `offset` (a query's `LIMIT fetch OFFSET offset`)."""
        return {
            "items": frame_rows(rows.head(self.size)),
            "next_page_token": self.next_token(rows.height > self.size),
        }


# -- ETags -----------------------------------------------------------------------------------------------------


def etag_for(lake: Lake, tables: Iterable[str] | None, request_key: str) -> str:
    """An ETag naming what the answer read: the request, the lake's moment and the versions of its tables.

    A Delta version names a table's state, so equal versions mean an equal answer; computing it costs a look at
    the loaded tables' versions, not a read.
    """
    names = sorted(tables) if tables is not None else sorted(spec.name for spec in lake.tables())
    moment = lake.moment.label if lake.moment is not None else "live"
    versions = ",".join(f"{name}={lake.version(name)}" for name in names)
    digest = hashlib.sha256(f"{request_key}|{moment}|{versions}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def json_response(payload: Any, response: Any) -> Any:
    """`payload` (JSON-ready) as a response with the headers set on `response` (the ETag): for hot reads whose
    answer is built to its model's shape, so FastAPI's validation of the model can be skipped."""
    import orjson
    from fastapi.responses import Response

    headers = {key: value for key, value in response.headers.items() if key.lower() != "content-length"}
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)
