"""The data file formats metalake reads (`metalake ingest`, `kpis.ingest`), and how a file's extension names one."""

from __future__ import annotations

from typing import Literal, get_args

InputFormat = Literal["csv", "parquet", "jsonl", "json"]
INPUT_FORMATS: tuple[str, ...] = get_args(InputFormat)
EXTENSION_FORMATS: dict[str, InputFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
