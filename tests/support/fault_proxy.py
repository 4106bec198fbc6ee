"""A fault-injecting HTTP proxy on loopback, in front of the moto S3 server: storage that misbehaves on purpose.

Every request is forwarded to moto unless a fault is drawn for it: the connection dropped before the request
reaches the store or after the store acted on it (the client never learns that its write landed), a 500 or a
503 with an S3 error body, a response cut in the middle of its body, or a delay. `down()` refuses everything
until `up()`. Faults are drawn per request with `probability`, so a run of the suite meets a different mix.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("drop_before", "drop_after", "status_500", "status_503", "cut_body", "delay")
ERROR_BODY = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected fault</Message></Error>'
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class FaultPlan:
    """What the proxy does: the chance of a fault per request, which faults, and whether it is down."""

    probability: float = 0.0
    faults: tuple[str, ...] = FAULTS
    is_down: bool = False
    delay_s: float = 0.5
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def draw(self) -> str | None:
        with self.lock:
            if self.is_down:
                fault: str | None = "drop_before"
            elif self.probability and self.random.random() < self.probability:
                fault = self.random.choice(self.faults)
            else:
                fault = None
            key = fault or "forwarded"
            self.counts[key] = self.counts.get(key, 0) + 1
            return fault


class FaultProxy:
    """The proxy server: `endpoint` is what storage options point at; it forwards to `upstream`."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None):
        self.plan = plan or FaultPlan()
        target = urlsplit(upstream)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 80)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def down(self) -> None:
        with self.plan.lock:
            self.plan.is_down = True

    def up(self) -> None:
        with self.plan.lock:
            self.plan.is_down = False

    def set_faults(self, probability: float, faults: tuple[str, ...] = FAULTS) -> None:
        with self.plan.lock:
            self.plan.probability, self.plan.faults = probability, faults

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        fault = self.plan.draw()
        if fault == "drop_before":
            request.close_connection = True
            request.connection.close()
            return
        if fault in ("status_500", "status_503"):
            code = "InternalError" if fault == "status_500" else "SlowDown"
            self._answer(
                request, 500 if fault == "status_500" else 503, ERROR_BODY.format(code=code).encode()
            )
            return
        if fault == "delay":
            time.sleep(self.plan.delay_s)
        status, headers, payload = self._forward(request, body)
        if fault == "drop_after":  # the store acted on the request; its answer never arrives
            request.close_connection = True
            request.connection.close()
            return
        request.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        if fault == "cut_body" and len(payload) > 1:
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(payload[: len(payload) // 2])
            request.wfile.flush()
            request.close_connection = True
            request.connection.close()
            return
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
            connection.request(request.command, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/xml")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
