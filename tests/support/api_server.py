"""`metalake serve` as a real uvicorn process on loopback, for the server tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `metalake serve` process."""

    process: subprocess.Popen[bytes]
    url: str
    lake_path: Path

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as response:
            loaded: dict[str, Any] = json.load(response)
            return loaded

    def wait_committed(self, events: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.health()["committed"] < events:
            assert time.monotonic() < deadline, f"server committed {self.health()} of {events} events"
            time.sleep(0.05)

    def wait_settled(self, timeout: float = 30) -> None:
        """Wait until the server has committed every run flush it answered: only then do other processes see them."""
        deadline = time.monotonic() + timeout
        while (health := self.health())["run_flushes_pending"] or health["queued"]:
            assert time.monotonic() < deadline, f"server still holds uncommitted writes: {health}"
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down, the committer commits what is queued."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def start_server_process(
    lake_path: Path,
    spool: Path,
    *options: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    lake_auth: bool = False,
) -> Server:
    """Start `metalake --lake LAKE serve` on a free port and wait until it answers its health check.

    Without `--token` in `options` or `lake_auth` (tokens of the lake's principals), it serves `--no-auth`."""
    port = free_port()
    command = [sys.executable, "-m", "metalake.cli", "--lake", str(lake_path), "serve", "--port", str(port)]
    command += ["--spool", str(spool), *options]
    if "--token" not in options and not lake_auth:
        command.append("--no-auth")
    env = {**os.environ, "METALAKE_ACTOR": "server", **(env or {})}
    env.pop("METALAKE_API_TOKEN", None)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    server = Server(process, f"http://127.0.0.1:{port}", lake_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.health()
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"metalake serve did not start: {stderr}") from None
            time.sleep(0.1)


@dataclass
class SampleApi:
    """A server over the sample lake, with moments to travel to."""

    server: Server
    http: requests.Session
    lake_path: Path
    before_runs: datetime  # the lake existed, no run was logged yet
    snapshot: str  # pinned once the sample was complete

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **params: object) -> requests.Response:
        return self.http.get(f"{self.url}{path}", params=params, timeout=30)

    def post(self, path: str, body: object = None, **options: object) -> requests.Response:
        return self.http.post(f"{self.url}{path}", json=body, timeout=30, **options)  # type: ignore[arg-type]
