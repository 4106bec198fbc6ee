"""ASGI layers around the API: a cap on request bodies, and idempotent POSTs (`Idempotency-Key`).

An idempotent POST sent again with the same key answers what the first answered, without running again. The
writes underneath also carry the key into their Delta commits, so even after a restart (when this process's
memory of answers is gone) the facts are not written twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from metalake.errors import IdempotencyKeyReused, PayloadTooLarge
from metalake.server.http import MAX_BODY_BYTES, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REMEMBERED_ANSWERS = 10_000


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse (413) a request body beyond `max_bytes`, by its Content-Length or as it streams in.

    Requests that `streamed(method, path)` says are streamed to storage (artifact uploads, which never hold the
    body in memory) are let through whatever their size.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        streamed: Callable[[str, str], bool] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.streamed and self.streamed(scope["method"], scope["path"])):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, 413, PayloadTooLarge.code, self._message())
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_error(send, 413, PayloadTooLarge.code, self._message())

    def _message(self) -> str:
        return (
            f"The request body is larger than {self.max_bytes // (1024 * 1024)} MiB: send less per request."
        )


class _TooLarge(Exception):
    pass


@dataclass
class _Answer:
    request_hash: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class Idempotency:
    """POSTs with an `Idempotency-Key` header run once per key: later ones get the first answer (with
    `Idempotent-Replayed: true`), or 409 if they are a different request; failed answers (5xx) are not kept."""

    def __init__(self, app: ASGIApp, *, remembered: int = REMEMBERED_ANSWERS):
        self.app = app
        self.remembered = remembered
        self._answers: OrderedDict[tuple[str, str, str], _Answer] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        key = headers.get(b"idempotency-key")
        if scope["type"] != "http" or scope["method"] != "POST" or not key:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        credentials = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()
        slot = (credentials, scope["path"], key.decode("latin-1"))
        request_hash = hashlib.sha256(scope.get("query_string", b"") + b"\0" + body).hexdigest()
        earlier = self._answers.get(slot)
        if earlier is not None:
            await earlier.done.wait()
            if earlier.status:
                if earlier.request_hash != request_hash:
                    message = (
                        "This Idempotency-Key was used for another request to this path; the first answer "
                        "stands and nothing was written. Use a new key for a new request."
                    )
                    await _send_error(send, 409, IdempotencyKeyReused.code, message)
                    return
                replayed = [*earlier.headers, (b"idempotent-replayed", b"true")]
                await send({"type": "http.response.start", "status": earlier.status, "headers": replayed})
                await send({"type": "http.response.body", "body": earlier.body})
                return
        answer = self._answers[slot] = _Answer(request_hash)
        while len(self._answers) > self.remembered:
            self._answers.popitem(last=False)
        chunks: list[bytes] = []

        async def replay_body() -> Message:
            nonlocal body
            sent, body = body, b""
            return {"type": "http.request", "body": sent, "more_body": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            answer.body = b"".join(chunks)
            if not answer.status or answer.status >= 500:
                answer.status = 0  # not kept: the next attempt runs again
                self._answers.pop(slot, None)
            answer.done.set()


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)
