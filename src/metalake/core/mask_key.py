"""The lake-wide masking key, kept outside the lake: the secret that makes `hash` masks unguessable.

A keyed hash of a user name cannot be reversed by hashing a list of likely names, as long as the key stays out of
reach of those who see the hashes; so the key is never stored in the lake. Every server and export of one lake
must use the same key, or the same actor hashes differently in each (and joins across them break).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from metalake.errors import MaskKeyError

MASK_KEY_ENV = "METALAKE_MASK_KEY"  # the key itself, hex
MASK_KEY_FILE_ENV = "METALAKE_MASK_KEY_FILE"  # where the key file is, instead of the default
KEY_BYTES = 32
MIN_KEY_BYTES = 16


def default_key_path() -> Path:
    """`$XDG_CONFIG_HOME/metalake/mask-key`, by default `~/.config/metalake/mask-key`."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "metalake" / "mask-key"


def load_mask_key(path: Path | None = None) -> bytes:
    """The masking key: from the file at `path` when given, else `$METALAKE_MASK_KEY`, else the key file
    (`$METALAKE_MASK_KEY_FILE` or `default_key_path()`), which is created on first use (mode 0600, 32 random
    bytes as hex). An explicit path wins over the environment, so tests never pick up a developer's key."""
    if path is None:
        from_environment = os.environ.get(MASK_KEY_ENV)
        if from_environment:
            return _parse_key(from_environment, f"${MASK_KEY_ENV}")
        path = Path(os.environ.get(MASK_KEY_FILE_ENV) or default_key_path())
    path = path.expanduser()
    if not path.exists():
        _create_key_file(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise MaskKeyError(f"Cannot read the masking key file {path}: {error}") from error
    return _parse_key(text, str(path))


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise MaskKeyError(
            f"{where}: the masking key must be hex (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)."
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise MaskKeyError(
            f"{where}: the masking key has {len(key)} bytes; it needs at least {MIN_KEY_BYTES}."
        )
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key where none is; of two processes racing, the first link wins and both read its key."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
            with contextlib.suppress(FileExistsError):  # another process wrote its key first: keep that one
                os.link(draft, path)  # atomic: the key file appears whole or not at all
        finally:
            draft.unlink(missing_ok=True)
    except OSError as error:
        raise MaskKeyError(
            f"Cannot create the masking key file {path}: {error}. Set ${MASK_KEY_ENV} or ${MASK_KEY_FILE_ENV}."
        ) from error
