"""KPI observations as given (frames, row dicts, CSV or JSON-lines files) turned into checked columns, refusing
bad values and times by row: the input side of `lake.kpis.observe_many` and `ingest`."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.core.csv_files import check_csv
from metalake.core.file_formats import InputFormat
from metalake.core.moments import (
    EARLIEST_MOMENT,
    accepted_range,
    latest_allowed,
    utc_moment,
)
from metalake.errors import IngestError, KpiError

if TYPE_CHECKING:
    import polars as pl


SAMPLE_ROWS = 5


def _moment(value: datetime | date | str) -> datetime:
    return utc_moment(value, what="Observation time", error=KpiError)


def as_frame(data: Any) -> pl.DataFrame:
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if isinstance(data, list | tuple):
        if not all(isinstance(row, Mapping) for row in data):
            raise KpiError("Observations as a list must be dicts with keys kpi, value, observed_at, ...")
        return _frame_from_rows(data)
    module = type(data).__module__
    if module.startswith("pandas"):
        from_pandas: pl.DataFrame = pl.from_pandas(data)
        return from_pandas
    if module.startswith("pyarrow"):
        converted = pl.from_arrow(data)
        if isinstance(converted, pl.DataFrame):
            return converted
    raise KpiError(
        f"Cannot read observations from {type(data).__name__}: give a polars, pandas or pyarrow frame, or a "
        "list of dicts."
    )


def _frame_from_rows(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Rows may mix types in a column (a datetime here, ISO text there): times and values are read one by one."""
    import polars as pl

    names = list(dict.fromkeys(key for row in rows for key in row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    if "value" in columns:
        columns["value"] = _row_values(columns["value"])
    if "observed_at" in columns:
        columns["observed_at"] = _row_moments(columns["observed_at"])
    return pl.DataFrame([pl.Series(name, values, strict=False) for name, values in columns.items()])


def _row_values(values: list[Any]) -> list[float | None]:
    converted: list[float | None] = []
    bad: list[tuple[int, Any]] = []
    for row, value in enumerate(values):
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value.strip())
        if number is None and value is not None:
            bad.append((row, value))
        converted.append(number)
    _refuse(bad, "the value is not a number")
    return converted


def _row_moments(values: list[Any]) -> list[datetime | None]:
    converted: list[datetime | None] = []
    bad: list[tuple[int, Any]] = []
    for row, value in enumerate(values):
        moment = None
        if value is not None:
            try:
                moment = _moment(value)
            except KpiError:
                bad.append((row, value))
        converted.append(moment)
    _refuse(bad, "observed_at is not an ISO-8601 time or a datetime")
    return converted


def value_column(values: pl.Series) -> pl.Series:
    """KPI values as float64; text that is not a number, and NaN or infinite values, are refused with rows."""
    import polars as pl

    if values.dtype == pl.String:
        converted = values.str.strip_chars().cast(pl.Float64, strict=False)
        _refuse_rows(values.is_not_null() & converted.is_null(), values, "is not a number")
        values = converted
    elif values.dtype == pl.Boolean or not (values.dtype.is_numeric() or values.dtype == pl.Null):
        raise KpiError(f"KPI values must be numbers, not {values.dtype}.")
    values = values.cast(pl.Float64)
    _refuse_rows(values.is_not_null() & ~values.is_finite(), values, "is not a finite number")
    return values


def time_column(values: pl.Series) -> pl.Series:
    """observed_at as UTC microseconds; text is parsed by polars when one format fits, else by the contract."""
    import polars as pl

    if isinstance(values.dtype, pl.Datetime):
        zoned = values.dt.replace_time_zone("UTC") if values.dtype.time_zone is None else values
        return zoned.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    if values.dtype == pl.String:
        try:
            parsed = values.str.strip_chars().str.to_datetime(time_unit="us", strict=False)
        except pl.exceptions.PolarsError:
            return values
        if (values.is_not_null() & parsed.is_null()).any():  # mixed formats: parsed value by value
            return pl.Series(values.name, _row_moments(values.to_list()), pl.Datetime("us", "UTC"))
        return time_column(parsed)
    return values


def refuse_times_out_of_range(times: pl.Series) -> None:
    """Observations in the future (beyond the clock skew) or before 1900 are refused, naming the rows."""
    import polars as pl

    if not isinstance(times.dtype, pl.Datetime):
        return  # text the contract parses: it refuses what it cannot read
    outside = ((times > latest_allowed()) | (times < EARLIEST_MOMENT)).fill_null(False)
    if outside.any():
        rows = outside.arg_true().to_list()
        sample = [(row, times[row]) for row in rows[:SAMPLE_ROWS]]
        _refuse(
            sample, f"observed_at is in the future or before 1900; accepted: {accepted_range()}", len(rows)
        )


def _refuse_rows(mask: pl.Series, values: pl.Series, problem: str) -> None:
    if mask.any():
        rows = mask.arg_true().to_list()
        _refuse([(row, values[row]) for row in rows[:SAMPLE_ROWS]], f"the value {problem}", len(rows))


def _refuse(bad: Sequence[tuple[int, Any]], problem: str, count: int | None = None) -> None:
    """Raise KpiError naming a few refused rows (0-based, as in the frame given) and how many there are."""
    if not bad:
        return
    sample = ", ".join(f"row {row}: {value!r}" for row, value in bad[:SAMPLE_ROWS])
    total = len(bad) if count is None else count
    raise KpiError(f"{total:,} KPI observation(s) refused: {problem} ({sample}). Nothing was written.")


def read_observations(file: Path, file_format: InputFormat) -> pl.DataFrame:
    import polars as pl

    text_columns = {"kpi": pl.String, "segment": pl.String, "environment": pl.String, "source": pl.String}
    try:
        if file_format == "csv":
            check_csv(file, error=IngestError)  # polars pads a ragged row with nulls: refuse it with the line
            # All text, typed by observe_many: polars' inference guesses wrong on late values and is slow on times.
            frame = pl.read_csv(file, infer_schema=False)
        elif file_format == "parquet":
            frame = pl.read_parquet(file)
        elif file_format == "json" and file.read_bytes().lstrip().startswith(b"["):
            frame = pl.read_json(file, infer_schema_length=None)
        else:
            columns = pl.read_ndjson(file, infer_schema_length=None).columns
            overrides = {c: t for c, t in text_columns.items() if c in columns}
            frame = pl.read_ndjson(file, schema_overrides=overrides, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IngestError(f"Cannot read {file} as {file_format}: {first_line}") from error
    if frame.is_empty():
        raise IngestError(f"{file} holds no observations: nothing to ingest.")
    return frame


def file_digest(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
