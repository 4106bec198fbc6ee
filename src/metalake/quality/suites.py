"""Loading data-quality suites: a GX suite (object, JSON or YAML list) or a pandera schema (object or YAML).

A suite is checked before any data is read: an expectation Great Expectations does not know is refused by name.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from metalake.core.vocabulary import SEVERITIES
from metalake.errors import MissingExtraError, SuiteError

Engine = Literal["great_expectations", "pandera"]
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list", "column_set")
# Table-level expectations that read every column; the others read only the columns they name.
WHOLE_TABLE_PREFIXES = (
    "expect_table_column",
    "expect_compound_columns",
    "expect_select_column",
    "expect_multicolumn",
)


@dataclass(frozen=True)
class Expectation:
    """One GX expectation as plain data: its type, arguments and severity."""

    type: str
    kwargs: dict[str, Any]
    severity: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        named = [str(self.kwargs[k]) for k in COLUMN_KWARGS if k in self.kwargs]
        for key in COLUMN_LIST_KWARGS:
            named += [str(c) for c in self.kwargs.get(key) or []]
        return named

    @property
    def column(self) -> str | None:
        for key in COLUMN_KWARGS:
            if key in self.kwargs:
                return str(self.kwargs[key])
        return None


@dataclass(frozen=True)
class Suite:
    """What `quality.validate` runs: the engine, a name, a hash of the definition, and the definition itself."""

    engine: Engine
    name: str
    hash: str
    expectations: tuple[Expectation, ...] = ()
    schema: Any = None  # a pandera DataFrameSchema when engine == "pandera"

    def needed_columns(self, available: list[str]) -> list[str] | None:
        """The columns the suite reads (None: all of them), so validation loads no more than it needs."""
        if self.engine == "pandera":
            return _pandera_columns(self.schema)
        needed: list[str] = []
        for expectation in self.expectations:
            if "row_condition" in expectation.kwargs:  # a condition may name any column
                return None
            if expectation.type.startswith(WHOLE_TABLE_PREFIXES) or (
                not expectation.columns and not expectation.type.startswith("expect_table_row_count")
            ):
                return None
            needed += expectation.columns
        present = [c for c in dict.fromkeys(needed) if c in available]
        return present or available[:1]


def _pandera_columns(schema: Any) -> list[str] | None:
    """The columns a pandera schema reads; None when it looks at the whole frame.

    That is when it checks the frame's column names or their order, gives every column a type, or matches
    columns by regex.
    """
    whole_frame = ("strict", "checks", "ordered", "unique_column_names", "add_missing_columns", "dtype")
    if any(getattr(schema, option, None) for option in whole_frame):
        return None
    if any(getattr(column, "regex", False) for column in schema.columns.values()):
        return None
    unique = getattr(schema, "unique", None) or []
    return list(
        dict.fromkeys([*(str(c) for c in schema.columns), *([unique] if isinstance(unique, str) else unique)])
    )


def definition_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_suite(suite: Any) -> Suite:
    """A Suite from a GX ExpectationSuite, a pandera schema or model, a path to a JSON or YAML file, or what such
    a file holds (a list of expectations, `{name, expectations}`, a pandera schema document)."""
    if isinstance(suite, str | os.PathLike):
        return _suite_from_file(Path(suite))
    if isinstance(suite, list | Mapping):  # the document a suite file holds, e.g. a request's JSON
        return _suite_from_document(suite, None, Path("suite"))
    module = type(suite).__module__
    if module.startswith("great_expectations"):
        return _suite_from_gx(suite)
    if module.startswith("pandera") or _is_pandera_model(suite):
        return _suite_from_pandera(suite.to_schema() if _is_pandera_model(suite) else suite)
    raise SuiteError(
        f"Cannot use {type(suite).__name__} as a suite: give a Great Expectations ExpectationSuite, a pandera "
        "DataFrameSchema or DataFrameModel, or a path to a GX suite JSON file, an expectations YAML list or a "
        "pandera YAML schema."
    )


def _is_pandera_model(value: Any) -> bool:
    return isinstance(value, type) and value.__module__ != "builtins" and hasattr(value, "to_schema")


def _suite_from_file(path: Path) -> Suite:
    if not path.is_file():
        raise SuiteError(f"Suite file not found: {path}. Give a .json GX suite or a .yaml/.yml file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = (
            (error.strerror or str(error))
            if isinstance(error, OSError)
            else f"not UTF-8 text ({error.reason})"
        )
        raise SuiteError(
            f"Cannot read the suite file {path}: {reason}. Give a readable UTF-8 .json, .yaml or .yml file."
        ) from error
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise SuiteError(
                f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}). "
                'A GX suite file holds {"name": ..., "expectations": [...]}.'
            ) from error
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as error:
            raise SuiteError(f"{path} is not valid YAML: {error}") from error
    else:
        raise SuiteError(f"Cannot tell the kind of suite file {path}: use a .json, .yaml or .yml file.")
    return _suite_from_document(document, text, path)


def _suite_from_document(document: Any, text: str | None, path: Path) -> Suite:
    """A suite from a parsed document: a list of expectations, a GX suite, or a pandera YAML schema."""
    if isinstance(document, Mapping) and "schema_type" in document:
        if text is None:
            import yaml

            text = yaml.safe_dump(dict(document))
        return _suite_from_pandera(_pandera_from_yaml(text, document, path), name=path.stem)
    if isinstance(document, list):
        return gx_suite(path.stem, [_expectation_from_item(item, path) for item in document])
    if isinstance(document, Mapping) and isinstance(document.get("expectations"), list):
        expectations = [_expectation_from_item(item, path) for item in document["expectations"]]
        return gx_suite(str(document.get("name") or path.stem), expectations)
    raise SuiteError(
        f"{path} is neither a list of expectations (`- expect_column_values_to_not_be_null: {{column: id}}`), "
        "a GX suite ({name, expectations: [...]}) nor a pandera schema (schema_type: dataframe)."
    )


def _expectation_from_item(item: Any, path: Path) -> Expectation:
    """`{type: ..., kwargs: {...}}` (GX JSON) or `{expect_x: {...}}` (the short YAML form)."""
    if isinstance(item, Mapping) and "type" in item:
        kwargs = dict(item.get("kwargs") or {})
        return Expectation(str(item["type"]), kwargs, item.get("severity"), dict(item.get("meta") or {}))
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, arguments),) = item.items()
        if arguments is not None and not isinstance(arguments, Mapping):
            raise SuiteError(f"{path}: the arguments of {name} must be a mapping, e.g. {{column: id}}.")
        kwargs = dict(arguments or {})
        severity = kwargs.pop("severity", None)
        return Expectation(str(name), kwargs, severity)
    raise SuiteError(
        f"{path}: cannot read the expectation {item!r}; write `- expect_name: {{column: c, ...}}`."
    )


def gx_suite(name: str, expectations: list[Expectation]) -> Suite:
    """A GX suite, refused as a whole when it names an expectation GX does not know or a bad severity."""
    known = _known_expectations()
    unknown = [e.type for e in expectations if e.type not in known]
    if unknown:
        hints = []
        for kind in dict.fromkeys(unknown):
            close = difflib.get_close_matches(kind, known, n=1)
            hints.append(f"{kind!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SuiteError(
            f"Suite {name!r} names expectation(s) that Great Expectations does not know: {', '.join(hints)}. "
            "Nothing was validated or recorded. See https://greatexpectations.io/expectations for the list."
        )
    bad = [e for e in expectations if e.severity is not None and e.severity not in SEVERITIES]
    if bad:
        raise SuiteError(
            f"Suite {name!r}: severity {bad[0].severity!r} of {bad[0].type} is not one of {', '.join(SEVERITIES)}."
        )
    if not expectations:
        raise SuiteError(f"Suite {name!r} holds no expectations: nothing to validate.")
    for expectation in expectations:
        build_gx_expectation(expectation, name)
    payload = [[e.type, e.kwargs, e.severity or "critical"] for e in expectations]
    return Suite("great_expectations", name, definition_hash(payload), tuple(expectations))


def build_gx_expectation(expectation: Expectation, suite_name: str) -> Any:
    """The GX Expectation object; arguments GX refuses (a misspelt or missing one) raise SuiteError."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    try:
        return ExpectationConfiguration(
            type=expectation.type,
            kwargs=expectation.kwargs,
            meta=expectation.meta or None,
            severity=FailureSeverity(expectation.severity or "critical"),
        ).to_domain_obj()
    except Exception as error:  # GX refuses bad arguments with several exception types
        message = " ".join(str(error).split())[:500]
        raise SuiteError(
            f"Suite {suite_name!r}: GX cannot build {expectation.type} with {expectation.kwargs}: {message}. "
            "Nothing was validated or recorded."
        ) from error


def _suite_from_gx(suite: Any) -> Suite:
    expectations = []
    for expectation in suite.expectations:
        configuration = expectation.configuration
        severity = getattr(configuration, "severity", None)
        expectations.append(
            Expectation(
                str(configuration.type),
                {k: v for k, v in dict(configuration.kwargs).items() if k != "batch_id"},
                getattr(severity, "value", severity),
                dict(configuration.meta or {}),
            )
        )
    return gx_suite(str(suite.name), expectations)


def import_gx() -> Any:
    """Great Expectations, imported on the validation path only (it takes seconds to import)."""
    try:
        import great_expectations
    except ImportError as error:
        raise MissingExtraError(
            "Validating with a Great Expectations suite needs the great_expectations package: "
            "pip install 'metalake[gx]'."
        ) from error
    return great_expectations


def _known_expectations() -> list[str]:
    import_gx()
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    return sorted(list_registered_expectation_implementations())


def _pandera_from_yaml(text: str, document: Mapping[str, Any], path: Path) -> Any:
    api = str(document.get("api") or "pandas")
    try:
        from importlib import import_module

        io_module = import_module("pandera.io.polars_io" if api == "polars" else "pandera.io.pandas_io")
        return io_module.from_yaml(text)
    except Exception as error:  # pandera raises several types for a schema it cannot build
        raise SuiteError(f"{path} is not a pandera schema pandera can read: {error}") from error


def _suite_from_pandera(schema: Any, name: str | None = None) -> Suite:
    if not hasattr(schema, "columns") or not hasattr(schema, "validate"):
        raise SuiteError(f"{type(schema).__name__} is not a pandera DataFrameSchema.")
    try:
        definition: Any = json.loads(schema.to_json())
    except Exception:  # schemas with custom (unregistered) checks cannot be serialized: hash their repr
        definition = repr(schema)
    return Suite(
        "pandera", name or str(schema.name or "pandera_schema"), definition_hash(definition), schema=schema
    )
