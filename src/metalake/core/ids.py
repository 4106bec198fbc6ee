"""Identifiers: time-sortable UUIDv7 strings for runs, events and every other generated id."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime


def new_id(at: datetime | None = None) -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: unique, and sortable by creation time (`at`, default now)."""
    milliseconds = (time.time_ns() // 1_000_000 if at is None else int(at.timestamp() * 1000)) & (
        (1 << 48) - 1
    )
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (milliseconds << 80) | (random_bits & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value).hex
