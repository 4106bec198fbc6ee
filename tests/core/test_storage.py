"""Where a lake lives: URIs, storage options, and clear errors for storage that is wrong or out of reach."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.workers import s3_client

import metalake
from metalake.core.storage import REMOTE_DEFAULTS, resolve

SECRET = "s3cr3t-never-printed"
FAST_FAILURE = {"timeout": "1s", "connect_timeout": "1s", "max_retries": "1", "retry_timeout": "2s"}


def closed_port() -> int:
    """A local port that nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers, like a firewall that drops packets."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, to prove that a refused URI leaves nothing behind (not even a folder)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def unreachable_options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        **FAST_FAILURE,
    }


# -- URIs ----------------------------------------------------------------------------------------------------


def test_an_unsupported_scheme_is_refused_with_the_supported_ones(workdir: Path) -> None:
    with pytest.raises(metalake.StorageError) as refused:
        metalake.connect("ftp://x")

    message = str(refused.value)
    assert "'ftp'" in message and "ftp://x" in message
    for scheme in ("s3://", "gs://", "az://", "file://"):
        assert scheme in message
    assert "local path" in message
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("uri", ["s3://", "s3:///", "gs://", "az://", "s3:///lake"])
def test_an_object_store_uri_without_a_bucket_is_refused(uri: str, workdir: Path) -> None:
    options = unreachable_options(f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(metalake.StorageError, match="BUCKET") as refused:
        metalake.connect(uri, storage_options=options)

    assert uri in str(refused.value)
    assert list(workdir.iterdir()) == []


def test_a_local_lake_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "lake.parquet"
    not_a_folder.write_bytes(b"PAR1")

    for uri in (str(not_a_folder), f"file://{not_a_folder}"):
        with pytest.raises(metalake.StorageError, match="folder") as refused:
            metalake.connect(uri)
        assert str(not_a_folder) in str(refused.value)
    assert not_a_folder.read_bytes() == b"PAR1"


def test_a_local_lake_path_inside_a_file_is_refused(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("not a folder")

    with pytest.raises(metalake.StorageError) as refused:
        metalake.connect(not_a_folder / "lake")

    assert str(not_a_folder) in str(refused.value)


# -- reaching the store --------------------------------------------------------------------------------------


def test_a_missing_bucket_is_named_in_the_error(s3_server: Any, workdir: Path) -> None:
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    uri = f"s3://{bucket}/lake"
    options = {**s3_server.storage_options, "AWS_SECRET_ACCESS_KEY": SECRET}

    with pytest.raises(metalake.StorageError) as refused:
        metalake.connect(uri, storage_options=options)

    message = str(refused.value)
    assert uri in message
    assert "bucket" in message.lower() and "does not exist" in message
    assert SECRET not in message
    existing = {entry["Name"] for entry in s3_client(s3_server.endpoint).list_buckets()["Buckets"]}
    assert bucket not in existing, "connect must not create buckets"
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_an_unreachable_endpoint_fails_within_the_timeouts_and_writes_nothing(
    answer: str, request: pytest.FixtureRequest, workdir: Path
) -> None:
    endpoint = (
        f"http://127.0.0.1:{closed_port()}"
        if answer == "refused"
        else request.getfixturevalue("silent_endpoint")
    )
    uri = "s3://bucket/lake"
    started = time.monotonic()

    with pytest.raises(metalake.StorageError) as refused:
        metalake.connect(uri, storage_options=unreachable_options(endpoint))

    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert uri in message
    assert "AWS_ENDPOINT_URL" in message and "network" in message
    assert SECRET not in message
    assert list(workdir.iterdir()) == []


# -- storage options -----------------------------------------------------------------------------------------


def test_remote_lakes_get_short_default_timeouts_that_options_override() -> None:
    location = resolve("s3://bucket/lake", {"timeout": "2s"})

    assert location.storage_options["timeout"] == "2s"
    for key in REMOTE_DEFAULTS.keys() - {"timeout"}:
        assert location.storage_options[key] == REMOTE_DEFAULTS[key]
    assert resolve("lake").storage_options == {}


def test_environment_options_are_read_for_their_own_store_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", "/keys/sa.json")

    s3 = resolve("s3://bucket/lake", {"AWS_ACCESS_KEY_ID": "from-argument"}).storage_options
    gcs = resolve("gs://bucket/lake").storage_options

    assert (s3["AWS_REGION"], s3["AWS_ACCESS_KEY_ID"]) == ("eu-west-1", "from-argument")
    assert "AWS_PROFILE" not in s3 and "GOOGLE_SERVICE_ACCOUNT" not in s3
    assert gcs["GOOGLE_SERVICE_ACCOUNT"] == "/keys/sa.json"
    assert not any(key.startswith("AWS_") for key in gcs)


@pytest.mark.parametrize(
    ("endpoint", "allow_http"), [("http://127.0.0.1:9000", "true"), ("https://s3.example.com", None)]
)
def test_a_plain_http_endpoint_is_allowed_explicitly(endpoint: str, allow_http: str | None) -> None:
    options = resolve("s3://bucket/lake", {"AWS_ENDPOINT_URL": endpoint}).storage_options

    assert options.get("AWS_ALLOW_HTTP") == allow_http


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/lake/", "s3://bucket/lake"),
        ("S3://bucket/lake", "s3://bucket/lake"),
        ("gs://b/x", "gs://b/x"),
    ],
)
def test_object_store_uris_are_normalised(uri: str, expected: str) -> None:
    assert resolve(uri).uri == expected


def test_local_uris_resolve_to_absolute_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert resolve("lake").uri == str(tmp_path / "lake")
    assert resolve(f"file://{tmp_path}/lake").uri == str(tmp_path / "lake")
    monkeypatch.setenv("METALAKE_URI", str(tmp_path / "from-env"))
    assert resolve(None).uri == str(tmp_path / "from-env")
    with pytest.raises(metalake.StorageError, match="empty"):
        resolve("  ")
