"""A run's buffered facts as columns: what a flush hands to the journal and the commit queue, and their Arrow form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

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


ColumnType = Literal["string", "float64", "int64", "micros"]
KEY_VALUE_TYPES: dict[str, ColumnType] = {"run_id": "string", "key": "string", "value": "string"}
METRIC_TYPES: dict[str, ColumnType] = {
    "run_id": "string",
    "key": "string",
    "value": "float64",
    "step": "int64",
    "timestamp": "micros",
}


@dataclass
class Columns:
    """One flush's rows of one table as Python columns, the way the run buffered them.

    The training loop hands these over as they are: the journal stores them without Arrow, and the commit
    queue turns a whole group's columns into one Arrow table at once, on its own thread. `constants` are
    columns holding one value on every row (the run id), stored once.
    """

    types: dict[str, ColumnType]
    columns: dict[str, list[Any]]
    constants: dict[str, Any]
    rows: int

    def __len__(self) -> int:
        return self.rows


def key_values(run_id: str, values: Mapping[str, str]) -> Columns:
    keys = list(values)
    columns = {"key": keys, "value": [values[key] for key in keys]}
    return Columns(KEY_VALUE_TYPES, columns, {"run_id": run_id}, len(keys))


def metric_table(run_id: str, buffer: MetricBuffer) -> Columns:
    columns: dict[str, list[Any]] = {
        "key": buffer.keys,
        "value": buffer.values,
        "step": buffer.steps,
        "timestamp": buffer.timestamps,
    }
    return Columns(METRIC_TYPES, columns, {"run_id": run_id}, len(buffer))


def columns_to_arrow(parts: list[Columns]) -> pa.Table:
    """Several flushes' columns of one table (the same types) as one Arrow table, rows in order."""
    types = parts[0].types
    joined: dict[str, list[Any]] = {}
    for name in types:
        column: list[Any] = []
        for part in parts:
            if name in part.constants:
                column.extend([part.constants[name]] * part.rows)
            else:
                column.extend(part.columns[name])
        joined[name] = column
    return _arrow_table(joined, types)


def _arrow_table(columns: dict[str, list[Any]], types: dict[str, ColumnType]) -> pa.Table:
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
