"""Registered dataset versions for tests whose runs log inputs (run.log_input refuses versions the lake lacks)."""

from __future__ import annotations

import polars as pl

import metalake


def register_dataset_versions(lake: metalake.Lake, name: str, count: int) -> None:
    """Register versions 1..count of a tiny dataset `name` (each with other content, so each is a new version)."""
    for version in range(1, count + 1):
        lake.datasets.register(name, pl.DataFrame({"id": list(range(version))}))
