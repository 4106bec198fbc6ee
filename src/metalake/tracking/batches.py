"""A run's buffered facts as columns, and their Arrow tables: what a flush hands to the journal and the lake."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass
class MetricBuffer:
    """Metric points as columns, cheap to append to and to turn into one Arrow table."""

    keys: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)  # microseconds since the epoch (UTC)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, value: float, step: int, timestamp: int) -> None:
        self.keys.append(key)
        self.values.append(value)
        self.steps.append(step)
        self.timestamps.append(timestamp)

    def take(self) -> MetricBuffer:
        taken = MetricBuffer(self.keys, self.values, self.steps, self.timestamps)
        self.keys, self.values, self.steps, self.timestamps = [], [], [], []
        return taken


def key_values(run_id: str, values: Mapping[str, str]) -> pa.Table:
    keys = list(values)
    columns = {"run_id": [run_id] * len(keys), "key": keys, "value": [values[k] for k in keys]}
    return _arrow_table(columns, {"run_id": "string", "key": "string", "value": "string"})


def metric_table(run_id: str, buffer: MetricBuffer) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "run_id": [run_id] * len(buffer),
        "key": buffer.keys,
        "value": buffer.values,
        "step": buffer.steps,
        "timestamp": buffer.timestamps,
    }
    types = {"run_id": "string", "key": "string", "value": "float64", "step": "int64", "timestamp": "micros"}
    return _arrow_table(columns, types)


def _arrow_table(columns: dict[str, list[Any]], types: dict[str, str]) -> pa.Table:
    """Python lists -> an Arrow table of exactly these types, converted by polars (`micros`: integers of
    microseconds since the epoch -> timestamp[us, UTC]).

    pyarrow's conversion of Python objects imports pandas whenever it is installed (0.15 s or more per
    process, for a short job most of its cost); polars converts without it and is loaded for the contracts
    anyway. Times travel as integers since polars converts aware datetimes five times slower than pyarrow.
    """
    import polars as pl
    import pyarrow as pa

    polars_types = {
        "string": pl.String(),
        "float64": pl.Float64(),
        "int64": pl.Int64(),
        "micros": pl.Int64(),
    }
    arrow_types = {
        "string": pa.string(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "micros": pa.timestamp("us", tz="UTC"),
    }
    frame = pl.DataFrame(columns, schema={name: polars_types[kind] for name, kind in types.items()})
    return frame.to_arrow().cast(pa.schema([(name, arrow_types[kind]) for name, kind in types.items()]))
