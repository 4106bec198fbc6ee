"""Per-value contracts: whether one Python value can be stored in a spec column, and if not, why.

Core's contract path (`contracts.conform`) converts lists of dicts value by value with these converters, and
writers that buffer facts before a commit (a training run's `log_metric`) check each value at the call with
`value_failures` or `column_checker`, so a bad value is refused where it was given instead of failing a whole
flush later.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from metalake.core.catalog import ColumnSpec, TableSpec
from metalake.errors import ContractFailure

INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Refusal:
    """Why a value cannot be stored in a column (what a converter returns instead of the converted value)."""

    reason: str


def to_storable(column_type: str, value: Any) -> Any:
    """`value` converted for a column of `column_type` (None stays None), or a Refusal saying why it cannot be."""
    if value is None:
        return None
    return _CONVERTERS[column_type](value)


def value_failures(
    spec: TableSpec, values: Mapping[str, Any], *, context: Mapping[str, Any] | None = None
) -> list[ContractFailure]:
    """Why some columns' values of one row cannot be stored, as contract failures (empty when all can be).

    `context` values (e.g. the metric key) are shown beside a failing value in the failure's sample.
    """
    failures = []
    for name, value in values.items():
        problem = column_problem(spec.column(name), value)
        if problem is not None:
            failures.append(ContractFailure(name, problem, 1, [{**(context or {}), name: value}]))
    return failures


def column_problem(column: ColumnSpec, value: Any) -> str | None:
    """The reason `value` cannot be stored in `column`, or None when it can."""
    return column_checker(column)(value)


def column_checker(column: ColumnSpec) -> Callable[[Any], str | None]:
    """`column_problem` for one column with its checks prepared once, for calls in a training loop."""
    convert = _CONVERTERS[column.type]
    checks = [_prepared_check(check, arg) for check, arg in column.checks.items()]
    nullable = column.nullable

    def problem(value: Any) -> str | None:
        if value is None:
            return None if nullable else "null in a required column"
        converted = convert(value)
        if isinstance(converted, Refusal):
            return f"wrong type: {converted.reason}"
        for check in checks:
            broken = check(converted)
            if broken is not None:
                return broken
        return None

    return problem


def _prepared_check(check: str, arg: Any) -> Callable[[Any], str | None]:
    """One spec check (the rules of the pandera checks in contracts.py) as a function of a converted value."""
    label = _check_label(check, arg)
    compare: dict[str, Callable[[Any], bool]] = {
        "ge": lambda v: v >= arg,
        "gt": lambda v: v > arg,
        "le": lambda v: v <= arg,
        "lt": lambda v: v < arg,
    }
    if check in compare:
        holds = compare[check]
        # NaN passes range checks, as in pandera
        return lambda v: None if v != v or holds(v) else f"value out of range [{label}]"
    if check == "isin":
        allowed = list(arg)
        return lambda v: None if v in allowed else f"value not in the allowed set {allowed} [{label}]"
    if check == "str_length":
        low, high = arg.get("min"), arg.get("max")

        def length_problem(text: Any) -> str | None:
            length = len(text)
            if (low is not None and length < low) or (high is not None and length > high):
                return f"text length {length} out of range [{label}]"
            return None

        return length_problem
    if check == "str_matches":
        pattern = re.compile(arg)
        return lambda v: None if pattern.fullmatch(v) else f"text does not match the pattern [{label}]"
    raise ValueError(f"unknown check {check!r}")


def _check_label(check: str, arg: Any) -> str:
    if check == "str_length":
        return f"str_length({arg.get('min')}, {arg.get('max')})"
    if check == "str_matches":
        return f"str_matches({arg!r})"
    return f"{check}({arg!r})"


# -- converters: Python value -> the value polars and Arrow store for a column type --------------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _as_text(value: Any) -> Any:
    if not isinstance(value, str):
        return Refusal(f"expected text, got {_type_name(value)}")
    return text_refusal(value) or value


def text_refusal(text: str) -> Refusal | None:
    """A Refusal for text that UTF-8 cannot encode (a lone surrogate, e.g. from a badly decoded file name)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Refusal(
            "text holding a lone surrogate, which UTF-8 cannot store; decode the source text properly"
        )
    return None


def storable_text(text: str) -> str:
    """`text` with each lone surrogate written as its escape (`\\udce9`), so UTF-8 can store it.

    For text that describes a write rather than being its fact (an exception's message, a command line from
    undecodable bytes): refusing it would lose the facts it describes.
    """
    if text_refusal(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        return _as_text(value)
    try:  # standard JSON only: NaN and infinities become null, as JSON has no such numbers
        return json.dumps(_finite(value), default=str, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        return Refusal(f"a value that cannot be written as JSON ({type(error).__name__})")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _integer_converter(column_type: str) -> Callable[[Any], Any]:
    low, high = INTEGER_RANGES[column_type]

    def convert(value: Any) -> Any:
        if type(value) is int and low <= value <= high:
            return value
        if isinstance(value, bool):
            return Refusal("expected an integer, got a bool")
        if isinstance(value, float):
            if not math.isfinite(value):
                return Refusal("expected an integer, got NaN or an infinity")
            if not value.is_integer():
                return Refusal("a number with a fractional part; give a whole number")
            value = int(value)
        elif isinstance(value, numbers.Integral):
            value = int(value)
        else:
            return Refusal(f"expected an integer, got {_type_name(value)}")
        if not low <= value <= high:
            return Refusal(f"out of the {column_type} range [{low}, {high}]")
        return value

    return convert


def _float_converter(column_type: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is float and column_type == "float64":
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return Refusal(f"expected a real number, got {_type_name(value)}")
        try:
            number = float(value)
        except (OverflowError, TypeError, ValueError):
            return Refusal(f"out of the {column_type} range")
        if column_type == "float32" and math.isfinite(number) and abs(number) > FLOAT32_MAX:
            return Refusal("out of the float32 range")
        return number

    return convert


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else Refusal(f"expected true or false, got {_type_name(value)}")


def _as_date(value: Any) -> Any:
    if isinstance(value, datetime):
        return Refusal("expected a date, got a datetime")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return Refusal("text that is not an ISO date (YYYY-MM-DD)")
    return Refusal(f"expected a date, got {_type_name(value)}")


def _as_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        parsed = parse_timestamp_text(value)
        return parsed if parsed is not None else Refusal("text that is not an ISO time")
    if isinstance(value, datetime):
        return timestamp_in_utc(value)
    return Refusal(f"expected a datetime, got {_type_name(value)}")


def parse_timestamp_text(text: str) -> datetime | Refusal | None:
    """An ISO time as UTC (naive means UTC); None when the text is not a time."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return timestamp_in_utc(moment)


def timestamp_in_utc(moment: datetime) -> datetime | Refusal:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return Refusal("a time outside the range of UTC times (years 1 to 9999)")


def _as_binary(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return Refusal(f"expected bytes, got {_type_name(value)}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _as_text,
    "json": _as_json,
    "int32": _integer_converter("int32"),
    "int64": _integer_converter("int64"),
    "float32": _float_converter("float32"),
    "float64": _float_converter("float64"),
    "bool": _as_bool,
    "date": _as_date,
    "timestamp[us, UTC]": _as_timestamp,
    "binary": _as_binary,
}
