"""Data quality: `lake.quality.validate(...)` runs Great Expectations or pandera on a dataset version and records it.

Both engines feed the same two tables (`dq_validations`, one row per run of a suite; `dq_results`, one row per
expectation or check), so one scorecard (`dq_scorecard` view) covers both.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metalake.errors import DatasetError
from metalake.quality.suites import COLUMN_KWARGS, Suite, build_gx_expectation, import_gx, load_suite

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

    from metalake.core.tables import Tables
    from metalake.datasets.datasets import Datasets

SAMPLE_SIZE = 5
# pandera checks about the frame's columns rather than its rows: they have no per-row counts.
SCHEMA_LEVEL_CHECKS = (
    "column_in_dataframe",
    "dtype",
    "strict",
    "column_in_schema",
    "ordered",
    "column_ordered",
)


@dataclass(frozen=True)
class Validation:
    """One validation of a dataset version by a suite: the overall outcome and one result per expectation."""

    validation_id: str
    dataset: str
    version: int
    suite_name: str
    suite_hash: str
    engine: str
    engine_version: str
    success: bool
    evaluated: int
    successful: int
    unsuccessful: int
    duration_ms: float
    validated_at: datetime
    results: list[dict[str, Any]] = field(default_factory=list)
    # True when the idempotency key had already recorded this validation: nothing new was written, and the
    # recorded outcome is the one `lake.quality.results(validation_id)` returns.
    deduplicated: bool = False

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [result for result in self.results if not result["success"]]


def _json_safe(value: Any) -> Any:
    """Engine outputs (numpy scalars, NaN, timestamps) as plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        try:
            return _json_safe(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _observed_text(value: Any) -> str | None:
    if value is None:
        return None
    safe = _json_safe(value)
    return safe if isinstance(safe, str) else json.dumps(safe)


class Quality:
    """`lake.quality`: validate dataset versions and read the outcomes back."""

    def __init__(self, tables: Tables, *, datasets: Datasets):
        self._tables = tables
        self._datasets = datasets

    def validate(
        self,
        name: str,
        *,
        suite: Any,
        version: int | None = None,
        data: Any = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Validation:
        """Run `suite` on version `version` (default: the latest) of dataset `name` and record the outcome.

        `suite` is a GX ExpectationSuite, a path to a GX suite JSON file or to a YAML list of expectations,
        or a pandera schema (object, or YAML file). The suite is checked first: an expectation GX does not
        know is refused by name and nothing is recorded. An expectation on a column the data lacks fails; it
        does not stop the others. `data` is needed only for versions registered from an in-memory frame.

        With `idempotency_key`, a retried call records the validation once (`.deduplicated` is True on the
        retry); the key is scoped to the dataset, version and suite, so reusing it for another of them
        records that one. Without a key every call is a new validation.
        """
        loaded = load_suite(suite)
        started = time.perf_counter()
        datasets = self._datasets
        dataset_version = datasets.get(name, version)
        columns = loaded.needed_columns(dataset_version.columns)
        frame = datasets.frame_of(dataset_version, columns=columns, data=data)
        validated_at = datetime.now(UTC)
        if loaded.engine == "great_expectations":
            results, engine_version = run_great_expectations(loaded, frame)
        else:
            results, engine_version = run_pandera(loaded, frame)
        duration_ms = (time.perf_counter() - started) * 1000
        successful = sum(1 for r in results if r["success"])
        validation = Validation(
            validation_id=_validation_id(
                idempotency_key and f"{name}:{dataset_version.version}:{loaded.hash}:{idempotency_key}",
                validated_at,
            ),
            dataset=name,
            version=dataset_version.version,
            suite_name=loaded.name,
            suite_hash=loaded.hash,
            engine=loaded.engine,
            engine_version=engine_version,
            success=successful == len(results),
            evaluated=len(results),
            successful=successful,
            unsuccessful=len(results) - successful,
            duration_ms=duration_ms,
            validated_at=validated_at,
            results=results,
        )
        recorded = self._record(validation, run_id)
        return validation if recorded else replace(validation, deduplicated=True)

    def _record(self, validation: Validation, run_id: str | None) -> bool:
        """Results first, the validation row last: a reader never sees a validation without its results.

        Both batches are checked against their contracts before either is written. Each commit's key derives
        from the validation id, so a retry under the same idempotency key writes only what is missing. Returns
        False when the validation row was already recorded.
        """
        key = validation.validation_id
        reason = f"validate {validation.dataset} v{validation.version} with {validation.suite_name}"
        results = [{"validation_id": validation.validation_id, **row} for row in validation.results]
        header = {
            name: getattr(validation, name)
            for name in (
                "validation_id",
                "dataset",
                "version",
                "suite_name",
                "suite_hash",
                "engine",
                "engine_version",
                "success",
                "evaluated",
                "successful",
                "unsuccessful",
                "duration_ms",
                "validated_at",
            )
        }
        prepared_results = self._tables.prepare("dq_results", results)
        prepared_header = self._tables.prepare("dq_validations", [{**header, "run_id": run_id}])
        self._tables.commit(
            "dq_results", [(f"dq:{key}:results", prepared_results)], operation="validate", reason=reason
        )
        _, written = self._tables.commit(
            "dq_validations", [(f"dq:{key}:validation", prepared_header)], operation="validate", reason=reason
        )
        return written[0]

    # -- reading --------------------------------------------------------------------------------------------

    def validations(self, name: str | None = None, *, limit: int | None = None) -> pl.DataFrame:
        """Validations, newest first (of one dataset if `name` is given)."""
        import polars as pl

        where = None if name is None else pl.col("dataset") == name
        frame = self._tables.read("dq_validations", where=where).sort("validated_at", descending=True)
        return frame if limit is None else frame.head(limit)

    def results(self, validation_id: str) -> pl.DataFrame:
        """The per-expectation results of one validation."""
        import polars as pl

        return self._tables.read("dq_results", where=pl.col("validation_id") == validation_id)

    def dataset_of(self, validation_id: str) -> str:
        """The dataset a validation checked (what decides who may read its results); KeyError if unknown."""
        import polars as pl

        found = self._tables.read("dq_validations", where=pl.col("validation_id") == validation_id)
        if found.is_empty():
            raise KeyError(validation_id)
        return str(found["dataset"][0])

    def latest(self, name: str) -> tuple[dict[str, Any], pl.DataFrame]:
        """The latest validation of a dataset and its results; DatasetNotFound when it was never validated."""
        recent = self.validations(name, limit=1)
        if recent.is_empty():
            self._datasets.get(name)  # DatasetNotFound when the dataset itself is unknown
            raise DatasetError(
                f"Dataset {name!r} has not been validated yet: "
                f"run `metalake quality validate {name} --suite FILE`."
            )
        header = recent.row(0, named=True)
        return header, self.results(header["validation_id"])

    def scorecard(self) -> pl.DataFrame:
        """Per dataset: latest validation, pass rates and the trend (the `dq_scorecard` view)."""
        frame: pl.DataFrame = self._tables.sql("select * from dq_scorecard order by dataset").pl()
        return frame


def _validation_id(idempotency_key: str | None, at: datetime) -> str:
    if idempotency_key:
        return "v-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:30]
    from metalake.core.ids import new_id

    return new_id(at)


# -- Great Expectations -------------------------------------------------------------------------------------


def run_great_expectations(suite: Suite, frame: pd.DataFrame) -> tuple[list[dict[str, Any]], str]:
    """Validate a pandas frame with GX 1.x in an ephemeral context; one result row per expectation."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("metalake").add_dataframe_asset("dataset")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": frame}
    )
    expectations = [build_gx_expectation(expectation, suite.name) for expectation in suite.expectations]
    gx_suite = gx.ExpectationSuite(name=suite.name, expectations=expectations)
    outcome = batch.validate(
        gx_suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    )
    results = []
    for result in outcome.results:  # GX orders results its own way: read each one's configuration
        configuration = result.expectation_config
        kwargs = {k: v for k, v in dict(configuration.kwargs).items() if k != "batch_id"}
        severity = getattr(configuration, "severity", None)
        details = dict(result.result or {})
        failure = _gx_error(result.exception_info)
        sample = details.get("partial_unexpected_list")
        results.append(
            {
                "expectation_type": str(configuration.type),
                "column": next((str(kwargs[k]) for k in COLUMN_KWARGS if k in kwargs), None),
                "success": bool(result.success) and failure is None,
                "observed_value": _observed_text(details.get("observed_value")),
                "unexpected_count": _int_or_none(details.get("unexpected_count")),
                "unexpected_percent": _percent_or_none(details.get("unexpected_percent")),
                "severity": str(getattr(severity, "value", severity) or "critical"),
                "kwargs": _json_safe(kwargs),
                "unexpected_sample": _json_safe(list(sample)[:SAMPLE_SIZE]) if sample else None,
                "details": _json_safe(
                    {"error": failure}
                    if failure
                    else {k: v for k, v in details.items() if "partial" not in k}
                ),
            }
        )
    return results, str(gx.__version__)


def _gx_error(info: Any) -> str | None:
    """The message of an exception GX caught while computing an expectation (e.g. a missing column)."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for nested in info.values():
        if isinstance(nested, Mapping) and nested.get("raised_exception"):
            return str(nested.get("exception_message") or "error")
    return None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _percent_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else min(max(number, 0.0), 100.0)


# -- pandera --------------------------------------------------------------------------------------------------


def _index_key(index: Any) -> Any:
    """A failure case's row index as a set member (a multi-index may come as a list)."""
    return index if isinstance(index, Hashable) else json.dumps(_json_safe(index))


def run_pandera(suite: Suite, frame: pd.DataFrame) -> tuple[list[dict[str, Any]], str]:
    """Validate with a pandera schema (lazily, every failure at once); one result row per column check."""
    import pandera
    from pandera.errors import SchemaError, SchemaErrors

    schema = suite.schema
    data: Any = frame
    if type(schema).__module__.startswith("pandera.api.polars"):
        import polars as pl

        data = pl.from_pandas(frame)
    failures: list[dict[str, Any]] = []
    try:
        schema.validate(data, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        failures = cases.to_dicts() if hasattr(cases, "to_dicts") else cases.to_dict("records")
    except SchemaError as error:  # raised alone by some backends
        failures = [{"column": None, "check": str(error.check or error), "failure_case": None}]
    rows = len(frame)
    present = set(frame.columns)
    results = []
    claimed: set[int] = set()
    for column, label, kind, kwargs in _pandera_checks(schema, [str(c) for c in frame.columns]):
        matching = [
            i
            for i, case in enumerate(failures)
            if str(case.get("check")) == label and _concerns(case, column, label)
        ]
        claimed.update(matching)
        result = _pandera_result(column, kind, kwargs, [failures[i] for i in matching], rows)
        if column is not None and column not in present:
            # pandera reports the missing column once; every check on it fails with it.
            result |= {"success": False, "unexpected_count": None, "unexpected_percent": None}
            result["details"] = {"error": f"column {column!r} is missing from the data"}
        results.append(result)
    # Failures of checks the schema does not list: one result per (column, check), however many values fail.
    leftovers: dict[tuple[str | None, str], list[Mapping[str, Any]]] = {}
    for index, case in enumerate(failures):
        if index not in claimed:
            column = None if case.get("column") is None else str(case.get("column"))
            leftovers.setdefault((column, str(case.get("check"))), []).append(case)
    for (column, check), cases in leftovers.items():
        results.append(_pandera_result(column, check, {}, cases, rows))
    return results, str(pandera.__version__)


def _concerns(case: Mapping[str, Any], column: str | None, label: str) -> bool:
    """Whether a pandera failure case is about `column` (a missing column is named in its failure_case)."""
    if column is None:
        return True
    if label == "column_in_dataframe":
        return case.get("failure_case") == column or case.get("column") == column
    return bool(case.get("column") == column)


def _pandera_checks(schema: Any, present: list[str]) -> list[tuple[str | None, str, str, dict[str, Any]]]:
    """(column, label in failure cases, check name, arguments) for every check the schema makes.

    A regex column's checks apply to every data column its pattern matches (as pandera does, `re.match`).
    """
    checks: list[tuple[str | None, str, str, dict[str, Any]]] = []
    for key, column in schema.columns.items():
        names = [str(key)]
        if getattr(column, "regex", False):
            names = [c for c in present if re.match(str(key), c)]
            if not names:
                label = f"no_regex_column_match('{key}')"
                checks.append((str(key), label, "column_in_dataframe", {"regex": str(key)}))
        for name in names:
            checks.append((name, "column_in_dataframe", "column_in_dataframe", {}))
            if column.dtype is not None:
                checks.append((name, f"dtype('{column.dtype}')", "dtype", {"dtype": str(column.dtype)}))
            if not column.nullable:
                checks.append((name, "not_nullable", "not_nullable", {}))
            if column.unique:
                checks.append((name, "field_uniqueness", "field_uniqueness", {}))
            for check in column.checks:
                statistics = _json_safe(check.statistics or {})
                checks.append((name, _check_label(check), str(check.name), statistics))
    for check in schema.checks or []:
        checks.append((None, _check_label(check), str(check.name), _json_safe(check.statistics or {})))
    unique = getattr(schema, "unique", None)
    if unique:
        fields = [unique] if isinstance(unique, str) else [str(c) for c in unique]
        checks.append((None, "multiple_fields_uniqueness", "unique", {"columns": fields}))
    if getattr(schema, "strict", False):
        checks.append((None, "column_in_schema", "strict", {"strict": _json_safe(schema.strict)}))
    if getattr(schema, "ordered", False):
        checks.append((None, "column_ordered", "ordered", {}))
    return checks


def _check_label(check: Any) -> str:
    """How pandera names a check in its failure cases: `error` if set, else e.g. `greater_than_or_equal_to(0)`."""
    text = str(check)
    if text.startswith("<Check ") and ": " in text:
        return text.split(": ", 1)[1].rstrip(">")
    return str(check.error or check.name)


def _pandera_result(
    column: str | None, kind: str, kwargs: dict[str, Any], cases: list[Mapping[str, Any]], rows: int
) -> dict[str, Any]:
    """One result row from a check's failure cases; unexpected_count counts failing rows, not values.

    A schema-level `unique` names each failing row once per column: rows are told apart by their index.
    """
    row_level = kind not in SCHEMA_LEVEL_CHECKS and not kind.startswith("dtype(")
    failed_values = [case.get("failure_case") for case in cases]
    indexes = {_index_key(case["index"]) for case in cases if case.get("index") is not None}
    unexpected = len(indexes) if indexes else len(cases)
    if not row_level and failed_values:
        observed = _observed_text(failed_values[0] if len(failed_values) == 1 else failed_values)
    else:
        observed = None
    return {
        "expectation_type": f"pandera.{kind}",
        "column": column,
        "success": not cases,
        "observed_value": observed,
        "unexpected_count": unexpected if row_level else None,
        "unexpected_percent": min(100.0, 100.0 * unexpected / rows) if row_level and rows else None,
        "severity": "critical",
        "kwargs": kwargs,
        "unexpected_sample": _json_safe(failed_values[:SAMPLE_SIZE]) if failed_values else None,
        "details": None,
    }
