"""Contracts at write: any frame-like batch -> a typed, validated Arrow table, or a ContractError naming every failure."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence, Sized
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.catalog import AUDIT_COLUMN_NAMES, RECORDED_AT, RECORDED_BY, TableSpec
from metalake.core.values import Refusal, parse_timestamp_text, to_storable
from metalake.errors import ContractError, ContractFailure, MetalakeError

if TYPE_CHECKING:
    import pandera.polars as pandera_polars
    import polars as pl
    import pyarrow as pa

SAMPLE_ROWS = 3


def polars_dtype(column_type: str) -> pl.DataType:
    import polars as pl

    dtypes: dict[str, pl.DataType] = {
        "string": pl.String(),
        "json": pl.String(),
        "int32": pl.Int32(),
        "int64": pl.Int64(),
        "float32": pl.Float32(),
        "float64": pl.Float64(),
        "bool": pl.Boolean(),
        "date": pl.Date(),
        "timestamp[us, UTC]": pl.Datetime("us", "UTC"),
        "binary": pl.Binary(),
    }
    return dtypes[column_type]


def conform(spec: TableSpec, data: Any, *, actor: str, recorded_at: datetime | None = None) -> pa.Table:
    """Validate `data` against the table's contract and return it cast to the table's Arrow schema.

    Every failure (unknown or missing columns, wrong types, nulls, out-of-range values, duplicate keys) is
    collected before raising, so the user fixes a batch in one go.
    """
    failures: list[ContractFailure] = []
    mistyped: dict[str, set[int]] = {}
    try:
        frame = _to_typed_frame(spec, data, failures, mistyped)
    except MetalakeError:
        raise
    except Exception as error:  # a value no converter foresaw must still be refused, never crash the writer
        rows = len(data) if isinstance(data, Sized) and not isinstance(data, Mapping) else 0
        reason = f"the batch cannot be read as the table's columns ({type(error).__name__}: {error})"
        raise ContractError(spec.name, [ContractFailure(None, reason[:500], rows)]) from error
    failures += _audit_columns_given(frame, mistyped)
    frame = _fill_audit_columns(frame, actor=actor, recorded_at=recorded_at or datetime.now(UTC))
    failures += pandera_failures(spec, frame, mistyped)
    if failures:
        raise ContractError(spec.name, failures)
    return frame.select(spec.column_names).to_arrow().cast(spec.arrow_schema())


def _to_typed_frame(
    spec: TableSpec, data: Any, failures: list[ContractFailure], mistyped: dict[str, set[int]]
) -> pl.DataFrame:
    import polars as pl

    if (
        isinstance(data, Sequence)
        and not isinstance(data, str | bytes)
        and all(isinstance(r, Mapping) for r in data)
    ):
        frame = _frame_from_rows(spec, data, failures, mistyped)
    else:
        frame = _frame_from_framelike(data)
        for name in spec.column_names:
            if name in frame.columns:
                frame = frame.with_columns(_coerce_column(spec, frame, name, failures, mistyped))
    known = set(spec.column_names)
    for name in frame.columns:
        if name not in known:
            failures.append(
                ContractFailure(name, f"unknown column: table {spec.name!r} has no such column", frame.height)
            )
    missing_columns = []
    for column in spec.columns:
        if column.name in frame.columns:
            continue
        if not column.nullable and column.name not in (RECORDED_AT, RECORDED_BY):
            failures.append(
                ContractFailure(column.name, "required column is missing from the batch", frame.height)
            )
        missing_columns.append(pl.lit(None, dtype=polars_dtype(column.type)).alias(column.name))
    frame = frame.with_columns(missing_columns) if missing_columns else frame
    return frame.select(spec.column_names)


def _frame_from_framelike(data: Any) -> pl.DataFrame:
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    module = type(data).__module__
    if module.startswith("pyarrow"):
        converted = pl.from_arrow(data)
        assert isinstance(converted, pl.DataFrame)
        return converted
    if module.startswith("pandas"):
        from_pandas: pl.DataFrame = pl.from_pandas(data)
        return from_pandas
    if isinstance(data, Mapping):
        return pl.DataFrame(dict(data))
    raise MetalakeError(
        f"Cannot append data of type {type(data).__name__}: give a pyarrow Table, a polars or pandas "
        "DataFrame, or a list of dicts."
    )


def _coerce_column(
    spec: TableSpec,
    frame: pl.DataFrame,
    name: str,
    failures: list[ContractFailure],
    mistyped: dict[str, set[int]],
) -> pl.Series:
    """Cast one column to its spec type; lossless casts only, every value that cannot convert is a failure."""
    import polars as pl

    series = frame.get_column(name)
    column = spec.column(name)
    target = polars_dtype(column.type)
    source = series.dtype
    if source == target or source == pl.Null or series.null_count() == len(series):
        return series.cast(target, strict=False)
    converted: pl.Series | None = None
    if column.type in ("string", "json") and (source == pl.Categorical or isinstance(source, pl.Enum)):
        converted = series.cast(pl.String)
    elif column.type == "json" and isinstance(source, pl.Struct | pl.List):
        converted = pl.Series(
            name, [None if v is None else json.dumps(v, default=str) for v in series.to_list()]
        )
    elif target.is_integer() and (source.is_integer() or source.is_float()):
        converted = series.cast(target, strict=False)
        if source.is_float():
            lossy = series.is_not_null() & (series != series.floor())
            converted = pl.select(pl.when(pl.lit(lossy)).then(None).otherwise(pl.lit(converted))).to_series()
    elif target.is_float() and source.is_numeric():
        converted = series.cast(target, strict=False)
    elif column.type == "timestamp[us, UTC]" and isinstance(source, pl.Datetime):
        as_utc = (
            series.dt.replace_time_zone("UTC")
            if source.time_zone is None
            else series.dt.convert_time_zone("UTC")
        )
        converted = as_utc.cast(target)
    elif column.type == "timestamp[us, UTC]" and source == pl.Date:
        converted = series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif column.type == "timestamp[us, UTC]" and source == pl.String:
        converted = _parse_timestamps(series)
    elif column.type == "date" and source == pl.String:
        converted = series.str.to_date(strict=False)
    if converted is None:
        failures.append(
            ContractFailure(
                name,
                f"wrong type: got {source}, expected {column.type}",
                int(series.is_not_null().sum()),
                _sample(frame, series.is_not_null(), [name]),
            )
        )
        mistyped[name] = set(range(len(series)))
        return pl.Series(name, [None] * len(series), dtype=target)
    unconvertible = series.is_not_null() & converted.is_null()
    if unconvertible.any():
        mistyped[name] = set(unconvertible.arg_true().to_list())
        failures.append(
            ContractFailure(
                name,
                f"wrong type: value cannot be stored as {column.type}",
                int(unconvertible.sum()),
                _sample(frame, unconvertible, [name]),
            )
        )
    return converted.alias(name)


def _parse_timestamps(series: pl.Series) -> pl.Series:
    import polars as pl

    parsed = []
    for value in series.to_list():
        moment = None if value is None else parse_timestamp_text(value)
        parsed.append(None if isinstance(moment, Refusal) else moment)
    return pl.Series(series.name, parsed, dtype=pl.Datetime("us", "UTC"))


def _sample(frame: pl.DataFrame, mask: pl.Series, columns: list[str]) -> list[dict[str, Any]]:
    import polars as pl

    rows = (
        frame.with_row_index("row")
        .filter(pl.lit(mask))
        .select(["row", *[c for c in columns if c in frame.columns]])
        .head(SAMPLE_ROWS)
    )
    return rows.to_dicts()


# -- lists of dicts: checked value by value, since Python objects carry their own types ---------------------


def _frame_from_rows(
    spec: TableSpec,
    rows: Sequence[Mapping[str, Any]],
    failures: list[ContractFailure],
    mistyped: dict[str, set[int]],
) -> pl.DataFrame:
    import polars as pl

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    known = set(spec.column_names)
    columns: dict[str, pl.Series] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if name not in known:
            columns[name] = pl.Series(name, [None] * len(rows), dtype=pl.Null)
            continue
        column_type = spec.column(name).type
        converted: list[Any] = []
        refused: dict[str, list[int]] = {}
        for index, value in enumerate(values):
            result = to_storable(column_type, value)
            if isinstance(result, Refusal):
                refused.setdefault(result.reason, []).append(index)
                mistyped.setdefault(name, set()).add(index)
                result = None
            converted.append(result)
        for reason, indices in refused.items():
            sample = [{"row": index, name: values[index]} for index in indices[:SAMPLE_ROWS]]
            failures.append(ContractFailure(name, f"wrong type: {reason}", len(indices), sample))
        columns[name] = pl.Series(name, converted, dtype=polars_dtype(column_type))
    return (
        pl.DataFrame(list(columns.values()))
        if columns
        else pl.DataFrame({"__empty__": [None] * len(rows)}).drop("__empty__")
    )


AUDIT_COLUMNS_SET_BY_METALAKE = (
    "set by metalake on every write (the time and the actor of the write), not by the batch: drop the column; "
    "to keep a source's own time in a column of its own, add one to the table's spec"
)


def _audit_columns_given(frame: pl.DataFrame, mistyped: Mapping[str, set[int]]) -> list[ContractFailure]:
    """recorded_at and recorded_by belong to metalake: a batch that gives values for them is refused, so that no
    row can claim another time or actor (the latest recorded_at decides current values). Nulls give nothing."""
    failures = []
    for name in AUDIT_COLUMN_NAMES:
        if name not in frame.columns:
            continue
        given = frame.get_column(name).is_not_null()
        count = int(given.sum()) + len(mistyped.get(name, ()))  # values of the wrong type were given too
        if count:
            failures.append(
                ContractFailure(name, AUDIT_COLUMNS_SET_BY_METALAKE, count, _sample(frame, given, [name]))
            )
    return failures


def _fill_audit_columns(frame: pl.DataFrame, *, actor: str, recorded_at: datetime) -> pl.DataFrame:
    import polars as pl

    return frame.with_columns(
        pl.lit(recorded_at, dtype=pl.Datetime("us", "UTC")).alias(RECORDED_AT),
        pl.lit(actor, dtype=pl.String).alias(RECORDED_BY),
    )


# -- pandera: nullability, value checks and primary-key uniqueness --------------------------------------------


_SCHEMAS: dict[str, Any] = {}


def pandera_schema(spec: TableSpec) -> pandera_polars.DataFrameSchema:
    """The pandera (polars backend) schema a spec declares; built once per distinct spec."""
    key = spec.to_json()
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _build_pandera_schema(spec)
    schema: pandera_polars.DataFrameSchema = _SCHEMAS[key]
    return schema


def _build_pandera_schema(spec: TableSpec) -> pandera_polars.DataFrameSchema:
    import pandera.polars as pandera_polars

    columns = {
        column.name: pandera_polars.Column(
            polars_dtype(column.type),
            checks=[_pandera_check(name, arg) for name, arg in column.checks.items()],
            nullable=column.nullable,
        )
        for column in spec.columns
    }
    return pandera_polars.DataFrameSchema(
        columns, unique=list(spec.primary_key) or None, strict=True, name=spec.name
    )


def _pandera_check(name: str, arg: Any) -> Any:
    from pandera import Check

    if name == "str_length":
        return Check.str_length(arg.get("min"), arg.get("max"))
    if name == "str_matches":
        return Check.str_matches(f"^(?:{arg})$")
    factories: dict[str, Callable[[Any], Any]] = {
        "ge": Check.ge,
        "gt": Check.gt,
        "le": Check.le,
        "lt": Check.lt,
        "isin": Check.isin,
    }
    return factories[name](arg)


def passes_quick_check(spec: TableSpec, frame: pl.DataFrame) -> bool:
    """The spec's checks as one vectorised polars pass: True when the batch surely satisfies its contract.

    pandera costs several milliseconds per batch whatever its size, which adds up for small, frequent writes
    (a training job's flushes). Valid batches, the common case, pass here; any doubt goes to pandera, which
    stays the judge and explains every failure. A property test keeps both verdicts equal.
    """
    import polars as pl

    if frame.height == 0:
        return True
    violations: list[pl.Expr] = []
    for column in spec.columns:
        value = pl.col(column.name)
        if not column.nullable:
            violations.append(value.is_null().any())
        for name, arg in column.checks.items():
            violations.append(_violation(name, arg, value).fill_null(False).any())
    if spec.primary_key:
        # Distinct row hashes prove distinct keys; a hash collision only sends the batch to pandera.
        key_hashes = pl.struct(list(spec.primary_key)).hash()
        violations.append(key_hashes.n_unique() < pl.len())
    if not violations:
        return True
    verdicts = frame.select(pl.any_horizontal(violations).alias("violated"))
    return not bool(verdicts.item())


def _violation(name: str, arg: Any, value: pl.Expr) -> pl.Expr:
    """Rows that break one check; nulls never do (pandera ignores them too)."""
    import polars as pl

    broken: pl.Expr
    if name == "ge":
        broken = value < arg
    elif name == "gt":
        broken = value <= arg
    elif name == "le":
        broken = value > arg
    elif name == "lt":
        broken = value >= arg
    elif name == "isin":
        broken = ~value.is_in(list(arg))
    elif name == "str_length":
        length = value.str.len_chars()
        broken = pl.lit(False)
        if arg.get("min") is not None:
            broken = broken | (length < arg["min"])
        if arg.get("max") is not None:
            broken = broken | (length > arg["max"])
    elif name == "str_matches":
        broken = ~value.str.contains(f"^(?:{arg})$")
    else:
        raise ValueError(f"unknown check {name!r}")
    return value.is_not_null() & broken


def pandera_failures(
    spec: TableSpec, frame: pl.DataFrame, mistyped: Mapping[str, set[int]], *, quick: bool = True
) -> list[ContractFailure]:
    """Every check of the spec's pandera schema the frame fails; `quick` first tries the vectorized pre-check,
    which decides most clean batches without pandera (and without importing it: about 0.4 s)."""
    if quick and not mistyped and passes_quick_check(spec, frame):
        return []
    from pandera.errors import SchemaErrors

    try:
        pandera_schema(spec).validate(frame, lazy=True)
    except SchemaErrors as errors:
        return _failures_from_pandera(spec, frame, errors.failure_cases, mistyped)
    return []


def _failures_from_pandera(
    spec: TableSpec, frame: pl.DataFrame, cases: pl.DataFrame, mistyped: Mapping[str, set[int]]
) -> list[ContractFailure]:
    import polars as pl

    grouped: dict[tuple[str | None, str], list[int]] = defaultdict(list)
    for case in cases.iter_rows(named=True):
        check = str(case["check"])
        if check.startswith("dtype(") or check == "column_in_schema":
            continue  # type problems were reported, with examples, while coercing
        index = case["index"]
        grouped[(case["column"], check)].append(-1 if index is None else int(index))
    failures = []
    for (column, check), indices in grouped.items():
        readable = _READABLE_CHECKS.get(check.split("(")[0], check)
        if check == "multiple_fields_uniqueness":
            readable = f"duplicate primary key {list(spec.primary_key)} within the batch"
            column = None
        if check == "not_nullable" and column is not None:
            # A value that could not be converted was already reported as a wrong type, and pandera counts
            # NaN as null where NaN is a legal float (a diverged loss): only true nulls break the rule.
            nulls = frame.get_column(column).is_null()
            indices = [i for i in indices if i not in mistyped.get(column, set()) and (i < 0 or nulls[i])]
            if not indices:
                continue
        sample_columns = [column] if column else list(spec.primary_key)
        rows = sorted({i for i in indices if i >= 0})
        mask = pl.Series([False] * frame.height)
        if rows:
            mask = pl.Series(range(frame.height)).is_in(rows)
        count = len(rows) or len(indices)
        detail = readable if readable == check else f"{readable} [{check}]"
        failures.append(ContractFailure(column, detail, count, _sample(frame, mask, sample_columns)))
    return failures


_READABLE_CHECKS = {
    "not_nullable": "null in a required column",
    "greater_than_or_equal_to": "value out of range",
    "greater_than": "value out of range",
    "less_than_or_equal_to": "value out of range",
    "less_than": "value out of range",
    "isin": "value not in the allowed set",
    "str_length": "text length out of range",
    "str_matches": "text does not match the pattern",
}
