"""Where a lake lives: URI normalisation, storage options from arguments and the environment, storage errors."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from metalake.errors import StorageError

Scheme = Literal["file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure"]
SCHEMES: frozenset[str] = frozenset(get_args(Scheme))
DEFAULT_LAKE = "./lake"

# Remote stores: fail within seconds on an unreachable endpoint rather than retrying for minutes.
REMOTE_DEFAULTS = {"timeout": "30s", "connect_timeout": "5s", "max_retries": "3", "retry_timeout": "20s"}
_ENV_KEYS_THAT_ARE_NOT_OPTIONS = {"AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"}


@dataclass(frozen=True)
class Location:
    """A lake's root: a normalised URI plus the options delta-rs needs to reach it."""

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def table_uri(self, table: str) -> str:
        return f"{self.uri.rstrip('/')}/{table}"


def resolve(uri: str | os.PathLike[str] | None, storage_options: Mapping[str, str] | None = None) -> Location:
    """Normalise a lake URI (default `$METALAKE_URI`, else ./lake) and merge explicit and environment options."""
    text = os.fspath(uri) if uri is not None else os.environ.get("METALAKE_URI") or DEFAULT_LAKE
    text = text.strip()
    if not text:
        raise StorageError(
            "The lake URI is empty: give a folder path or an object-store URI such as s3://bucket/lake."
        )
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text)
    if match is None:
        path = Path(text).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise StorageError(f"The lake path {path} is a file; a lake is a folder.")
        return Location(str(path))
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in SCHEMES:
        raise StorageError(
            f"Unsupported lake URI scheme {scheme!r} in {text!r}. Use a local path or one of: "
            + ", ".join(f"{s}://" for s in sorted(SCHEMES))
            + "."
        )
    if scheme == "file":
        return resolve(rest or "/", storage_options)
    if not rest.split("/", 1)[0]:
        raise StorageError(f"The lake URI {text!r} names no bucket or container: use {scheme}://BUCKET/PATH.")
    options = _environment_options(scheme)
    options.update({k: str(v) for k, v in (storage_options or {}).items()})
    for key, value in REMOTE_DEFAULTS.items():
        options.setdefault(key, value)
    endpoint = (
        options.get("AWS_ENDPOINT_URL") or options.get("endpoint_url") or options.get("aws_endpoint_url")
    )
    if endpoint and endpoint.startswith("http://"):
        options.setdefault("AWS_ALLOW_HTTP", "true")
    return Location(f"{scheme}://{rest.rstrip('/')}", options)


def _environment_options(scheme: str) -> dict[str, str]:
    prefix = {"s3": "AWS_", "s3a": "AWS_", "gs": "GOOGLE_", "gcs": "GOOGLE_"}.get(scheme, "AZURE_")
    return {
        key: value
        for key, value in os.environ.items()
        if key.startswith(prefix) and key not in _ENV_KEYS_THAT_ARE_NOT_OPTIONS and value
    }


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def storage_error(location: Location, action: str, error: BaseException) -> StorageError:
    """Turn a delta-rs/object-store failure into a message that says where and what to check."""
    detail = _ANSI.sub("", str(error)).strip()
    hint = ""
    lowered = detail.lower()
    if "connection refused" in lowered or "timed out" in lowered or "dns" in lowered or "connect" in lowered:
        hint = " The storage endpoint did not answer: check the endpoint URL (AWS_ENDPOINT_URL) and your network."
    elif "404" in lowered or "nosuchbucket" in lowered:
        hint = " The bucket or container does not exist: create it first."
    elif "403" in lowered or "credential" in lowered or "access denied" in lowered:
        hint = " Access was denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or equivalent)."
    first_line = detail.splitlines()[0] if detail else type(error).__name__
    if len(first_line) > 400:
        first_line = first_line[:400] + "..."
    return StorageError(f"Could not {action} at {location.uri}.{hint}\n  cause: {first_line}")


def arrow_filesystem(uri: str, storage_options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """A pyarrow filesystem that reaches `uri` with the lake's storage options, and the path of `uri` on it.

    S3 with explicit options (an endpoint, keys) gets an S3FileSystem built from them; anything else is left to
    `pyarrow.fs.FileSystem.from_uri`, which reads the usual environment variables.
    """
    from pyarrow import fs

    if "://" not in uri:
        return fs.LocalFileSystem(), str(Path(uri)).rstrip("/") or "/"
    options = {k.upper(): v for k, v in (storage_options or {}).items()}
    if uri.startswith(("s3://", "s3a://")) and options:
        endpoint = options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        filesystem = fs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"),
            region=options.get("AWS_REGION"),
            endpoint_override=endpoint,
            scheme="http" if endpoint and endpoint.startswith("http://") else "https",
        )
        return filesystem, uri.split("://", 1)[1].rstrip("/")
    filesystem, root = fs.FileSystem.from_uri(uri)
    return filesystem, root.rstrip("/")
