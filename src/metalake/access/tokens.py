"""Tokens and names: how a token reads (mlk_ID_SECRET), what the lake keeps of it (its SHA-256), when it expires,
and which principal names are accepted."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

from metalake.access.state import TokenRecord
from metalake.core.moments import parse_duration, utc_moment
from metalake.errors import AccessError

TOKEN_PREFIX = "mlk"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


def check_name(name: str) -> None:
    """Refuse a principal name that would be hard to type or to quote (spaces, colons, leading dots)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AccessError(
            f"{name!r} is not a principal name: use 1 to 128 letters, digits and . _ @ + -, starting with a "
            "letter or digit (e.g. alice, ci-bot, alice@example.com)."
        )


def expiry(expires: timedelta | str | datetime | None) -> datetime | None:
    """When a token made now with `expires` (a duration or a moment) stops working."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        moment = utc_moment(expires, what="The expiry", error=AccessError)
    else:
        try:
            moment = datetime.now(UTC) + parse_duration(expires, what="The expiry", error=AccessError)
        except AccessError:
            if not isinstance(expires, str):
                raise
            moment = utc_moment(
                expires, what="The expiry (a duration such as 30d, or a time)", error=AccessError
            )
    if moment <= datetime.now(UTC):
        raise AccessError(
            f"The expiry {expires!s} is in the past; give a duration such as 30d or a later time."
        )
    return moment


def token_hash(token: str) -> str:
    """What the lake keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(text: str, *, strict: bool = True) -> str:
    """The id in a token (mlk_ID_SECRET), or `text` itself when it is an id; "" for a malformed token unless
    `strict` (then an AccessError)."""
    given = str(text).strip()
    if not given.startswith(TOKEN_PREFIX + "_"):
        if strict:
            return given
        return ""
    token_id, underscore, secret = given[len(TOKEN_PREFIX) + 1 :].partition("_")
    if not (token_id and underscore and secret) and strict:
        raise AccessError(
            "A token reads mlk_ID_SECRET; give the token, or its id (`metalake access token list`)."
        )
    return token_id if secret else ""


def token_state(record: TokenRecord, now: datetime) -> str:
    """active, expired or revoked."""
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"
