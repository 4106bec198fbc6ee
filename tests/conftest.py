"""Shared fixtures: real lakes under tmp_path, the demo lake, and a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from support.api_server import SampleApi, Server, start_server_process
from support.sample_lake import fill_sample_lake

import metalake

if TYPE_CHECKING:
    from support.demo_lake import DemoLake


def pytest_configure(config: pytest.Config) -> None:
    """Fixtures built before any test (the demo lake, sample lakes) keep their run journal out of ~/.cache too."""
    os.environ["METALAKE_JOURNAL"] = tempfile.mkdtemp(prefix="metalake-journal-")
    # Servers in grant mode load the masking key at start: one for the session, never the developer's.
    os.environ["METALAKE_MASK_KEY"] = "7a" * 32


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's lake, identity or run journal; each test has a journal of its own."""
    monkeypatch.delenv("METALAKE_URI", raising=False)
    monkeypatch.delenv("METALAKE_OFFLINE", raising=False)
    monkeypatch.delenv("METALAKE_JOURNAL_MAX_BYTES", raising=False)
    monkeypatch.setenv("METALAKE_ACTOR", "tester")
    monkeypatch.setenv("METALAKE_JOURNAL", str(tmp_path / "journal"))


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def lake(lake_path: Path) -> metalake.Lake:
    return metalake.connect(lake_path, actor="tester")


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    """Two rounds of `metalake demo`, built once per session: tests that use it must not write to it."""
    from support.demo_lake import build_demo_lake  # the CLI and the demo load only in sessions that need them

    return build_demo_lake(tmp_path_factory.mktemp("demo") / "demo-lake")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server process: its endpoint and the storage options that reach it."""

    endpoint: str

    @property
    def storage_options(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ALLOW_HTTP": "true",
        }

    def create_bucket(self) -> str:
        from support.workers import s3_client

        name = f"lake-{uuid.uuid4().hex[:12]}"
        s3_client(self.endpoint).create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto in server mode, a separate process speaking S3 over HTTP on a free local port."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=0.5)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    try:
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_lake_uri(s3_server: S3Server) -> str:
    return f"s3://{s3_server.create_bucket()}/lake"


@pytest.fixture(scope="module")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    """A lake with rows for every view (tests/support/sample_lake.py), built once per test module; do not write to it."""
    folder = tmp_path_factory.mktemp("sample")
    lake = metalake.connect(folder / "lake", actor="tester")
    fill_sample_lake(lake, folder)
    return lake


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the moto S3 server `s3` (`pytest -m s3`, or `-m 'not s3'` without it)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_s3 = callspec is not None and "s3" in callspec.id.split("-")
        if on_s3 or {"s3_server", "s3_lake_uri"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)


# -- servers for the HTTP tests (tests/server/): real `metalake serve` processes on loopback --------------


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
