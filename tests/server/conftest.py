"""Servers for the HTTP tests: real `metalake serve` processes on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from support.api_server import Server, start_server_process
from support.sample_lake import fill_sample_lake

import metalake


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers (options as on the command line) over `tmp_path / "lake"` or a given lake; all stopped after."""
    started: list[Server] = []

    def start(*options: str, lake_path: Path | None = None) -> Server:
        server = start_server_process(lake_path or tmp_path / "lake", tmp_path / "spool", *options)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


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


@pytest.fixture(scope="module")
def sample_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleApi]:
    """One server per test module over a lake holding every kind of metadata (tests/support/sample_lake.py)."""
    folder = tmp_path_factory.mktemp("api")
    lake = metalake.connect(folder / "lake", actor="tester")
    lake.sql("select 1").fetchall()
    time.sleep(0.05)
    before_runs = datetime.now(UTC)
    time.sleep(0.05)
    fill_sample_lake(lake, folder)
    lake.runs.wait()
    lake.snapshot("sample-complete")
    lake.close()
    server = start_server_process(folder / "lake", folder / "spool", "--data-root", str(folder / "data"))
    (folder / "data").mkdir(exist_ok=True)
    with requests.Session() as http:
        yield SampleApi(server, http, folder / "lake", before_runs, "sample-complete")
    server.stop()
