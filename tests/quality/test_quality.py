"""Data quality: Great Expectations 1.x and pandera validate dataset versions into one scorecard; bad suites."""

from __future__ import annotations

import json
from pathlib import Path

import great_expectations as gx
import pandas as pd
import pandera.errors as pandera_errors
import pandera.pandas as pa
import polars as pl
import pyarrow as pa_arrow
import pyarrow.parquet as pq
import pytest

import metalake
from metalake.core.tables import Tables
from metalake.errors import DatasetError, SuiteError

SUITE_YAML = """
- expect_column_values_to_not_be_null: {column: id}
- expect_column_values_to_be_between: {column: age, min_value: 0, max_value: 120, severity: warning}
- expect_table_row_count_to_be_between: {min_value: 1, max_value: 100}
"""


@pytest.fixture
def people(lake: metalake.Lake, tmp_path: Path) -> metalake.Lake:
    path = tmp_path / "people.parquet"
    pq.write_table(pa_arrow.table({"id": [1, 2, 3, 4], "age": [34, 151, 27, -1], "city": list("abcd")}), path)
    lake.datasets.register("people", path)
    return lake


def suite_file(tmp_path: Path, text: str, name: str = "checks.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_yaml_suite_validates_and_records_one_row_per_expectation(
    people: metalake.Lake, tmp_path: Path
) -> None:
    validation = people.quality.validate("people", suite=suite_file(tmp_path, SUITE_YAML))
    assert (validation.engine, validation.version, validation.suite_name) == (
        "great_expectations",
        1,
        "checks",
    )
    assert validation.engine_version == gx.__version__
    assert (validation.success, validation.evaluated, validation.successful, validation.unsuccessful) == (
        False,
        3,
        2,
        1,
    )
    header = people.read("dq_validations").row(0, named=True)
    assert (
        header["validation_id"] == validation.validation_id and header["suite_hash"] == validation.suite_hash
    )
    assert header["duration_ms"] > 0 and header["recorded_by"] == "tester"
    results = {r["expectation_type"]: r for r in people.quality.results(validation.validation_id).to_dicts()}
    between = results["expect_column_values_to_be_between"]
    assert (between["column"], between["success"], between["unexpected_count"]) == ("age", False, 2)
    assert between["unexpected_percent"] == pytest.approx(50.0)
    assert between["severity"] == "warning"
    assert sorted(json.loads(between["unexpected_sample"])) == [-1, 151]
    assert json.loads(between["kwargs"]) == {"column": "age", "min_value": 0, "max_value": 120}
    assert results["expect_table_row_count_to_be_between"]["observed_value"] == "4"
    assert results["expect_column_values_to_not_be_null"]["severity"] == "critical"


def test_a_gx_suite_object_and_a_gx_json_file_give_the_same_hash(
    people: metalake.Lake, tmp_path: Path
) -> None:
    suite = gx.ExpectationSuite(name="ids")
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeUnique(column="id"))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column="city", value_set=["a", "b"]))
    from_object = people.quality.validate("people", suite=suite)
    path = suite_file(tmp_path, json.dumps(suite.to_json_dict()), "ids.json")
    from_json = people.quality.validate("people", suite=path)
    assert from_object.suite_hash == from_json.suite_hash and from_json.suite_name == "ids"
    in_set = next(
        r for r in from_json.results if r["expectation_type"] == "expect_column_values_to_be_in_set"
    )
    assert (in_set["success"], in_set["unexpected_count"]) == (False, 2)
    assert people.read("dq_validations").height == 2


def test_a_missing_column_is_a_failed_expectation_not_a_crash(people: metalake.Lake, tmp_path: Path) -> None:
    text = "- expect_column_values_to_not_be_null: {column: nope}\n- expect_column_to_exist: {column: id}\n"
    validation = people.quality.validate("people", suite=suite_file(tmp_path, text))
    outcome = {r["column"]: r for r in validation.results}
    assert outcome["nope"]["success"] is False
    assert 'column "nope"' in outcome["nope"]["details"]["error"]
    assert outcome["id"]["success"] is True
    assert people.read("dq_results").height == 2


def test_an_unknown_expectation_is_refused_by_name_and_nothing_is_recorded(
    people: metalake.Lake, tmp_path: Path
) -> None:
    text = "- expect_column_values_to_not_be_null: {column: id}\n- expect_column_valeus_to_be_unique: {column: id}\n"
    with pytest.raises(
        SuiteError,
        match=r"'expect_column_valeus_to_be_unique' \(did you mean 'expect_column_values_to_be_unique'\?\)",
    ):
        people.quality.validate("people", suite=suite_file(tmp_path, text))
    assert people.read("dq_validations").is_empty() and people.read("dq_results").is_empty()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", '{"name": "x", "expectations": [', "is not valid JSON"),
        ("bad.yaml", "- expect_column_values_to_not_be_null: {column: id\n", "is not valid YAML"),
        ("odd.yaml", "just a string\n", "is neither a list of expectations"),
        ("args.yaml", "- expect_column_values_to_not_be_null: id\n", "must be a mapping"),
        ("empty.yaml", "[]\n", "holds no expectations"),
        ("sev.yaml", "- expect_column_to_exist: {column: id, severity: fatal}\n", "is not one of critical"),
        ("suite.txt", "whatever", "use a .json, .yaml or .yml file"),
        ("kw.yaml", "- expect_column_values_to_be_between: {colum: id}\n", "GX cannot build .* colum"),
    ],
)
def test_bad_suite_files_are_refused_before_anything_runs(
    people: metalake.Lake, tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(SuiteError, match=message):
        people.quality.validate("people", suite=suite_file(tmp_path, text, name))
    assert people.read("dq_validations").is_empty()


def test_a_missing_suite_file_and_an_unknown_dataset(people: metalake.Lake, tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=f"Suite file not found: {tmp_path / 'nope.yaml'}"):
        people.quality.validate("people", suite=tmp_path / "nope.yaml")
    with pytest.raises(metalake.MetalakeError, match="Unknown dataset 'ghost'"):
        people.quality.validate("ghost", suite=suite_file(tmp_path, SUITE_YAML))
    with pytest.raises(metalake.MetalakeError, match="has no version 7"):
        people.quality.validate("people", version=7, suite=suite_file(tmp_path, SUITE_YAML))


def test_pandera_schemas_feed_the_same_tables(people: metalake.Lake, tmp_path: Path) -> None:
    schema = pa.DataFrameSchema(
        {
            "id": pa.Column(int, pa.Check.ge(1), unique=True),
            "age": pa.Column(int, pa.Check.in_range(0, 120)),
            "salary": pa.Column(float),
        },
        name="people_schema",
    )
    validation = people.quality.validate("people", suite=schema)
    assert (validation.engine, validation.suite_name, validation.success) == (
        "pandera",
        "people_schema",
        False,
    )
    results = {(r["column"], r["expectation_type"]): r for r in validation.results}
    in_range = results[("age", "pandera.in_range")]
    assert (in_range["success"], in_range["unexpected_count"], in_range["unexpected_percent"]) == (
        False,
        2,
        50.0,
    )
    assert sorted(in_range["unexpected_sample"]) == [-1, 151]
    assert results[("id", "pandera.greater_than_or_equal_to")]["success"] is True
    assert results[("id", "pandera.field_uniqueness")]["success"] is True
    missing = results[("salary", "pandera.column_in_dataframe")]
    assert missing["success"] is False and "missing" in missing["details"]["error"]
    engines = people.read("dq_validations").get_column("engine").to_list()
    assert engines == ["pandera"]


def test_a_pandera_yaml_schema_is_read_with_pandera_io(people: metalake.Lake, tmp_path: Path) -> None:
    schema = pa.DataFrameSchema({"id": pa.Column("int64", pa.Check.le(3)), "city": pa.Column(str)})
    path = suite_file(tmp_path, schema.to_yaml(), "people_schema.yaml")
    validation = people.quality.validate("people", suite=path)
    assert validation.engine == "pandera" and validation.suite_name == "people_schema"
    failed = [(r["column"], r["expectation_type"], r["unexpected_count"]) for r in validation.failed]
    assert failed == [("id", "pandera.less_than_or_equal_to", 1)]


def test_scorecard_pass_rates_and_trend(people: metalake.Lake, tmp_path: Path) -> None:
    failing = suite_file(tmp_path, SUITE_YAML)
    passing = suite_file(tmp_path, "- expect_column_values_to_not_be_null: {column: id}\n", "ok.yaml")
    people.quality.validate("people", suite=failing)
    people.quality.validate("people", suite=passing)
    card = people.quality.scorecard().row(0, named=True)
    assert card["dataset"] == "people" and card["latest_suite"] == "ok" and card["latest_success"] is True
    assert card["latest_pass_rate"] == 1.0 and card["validations"] == 2
    assert card["recent_success_rate"] == 0.5 and card["trend"] == "improving"
    assert card["recent_pass_rates"] == pytest.approx([2 / 3, 1.0])
    header, results = people.quality.latest("people")
    assert header["suite_name"] == "ok" and results.height == 1


def test_validating_a_version_from_a_frame_needs_the_frame(lake: metalake.Lake, tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": [1, None]})
    lake.datasets.register("mem", frame)
    suite = suite_file(tmp_path, "- expect_column_values_to_not_be_null: {column: id}\n")
    with pytest.raises(DatasetError, match="pass the same frame again as `data=`"):
        lake.quality.validate("mem", suite=suite)
    validation = lake.quality.validate("mem", suite=suite, data=frame)
    assert validation.results[0]["unexpected_count"] == 1
    with pytest.raises(DatasetError, match="its content changed"):
        lake.quality.validate("mem", suite=suite, data=pl.DataFrame({"id": [5]}))


def test_a_retried_validation_with_an_idempotency_key_is_recorded_once(
    people: metalake.Lake, tmp_path: Path
) -> None:
    suite = suite_file(tmp_path, SUITE_YAML)
    first = people.quality.validate("people", suite=suite, idempotency_key="nightly-2026-11-26")
    again = people.quality.validate("people", suite=suite, idempotency_key="nightly-2026-11-26")
    assert first.validation_id == again.validation_id
    assert people.read("dq_validations").height == 1 and people.read("dq_results").height == 3


def test_great_expectations_is_imported_only_to_validate(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, metalake, polars as pl\n"
        f"lake = metalake.connect({str(tmp_path / 'lake')!r})\n"
        "lake.datasets.register('d', pl.DataFrame({'x': [1]}))\n"
        "lake.datasets.list(); lake.datasets.history('d')\n"
        "print('great_expectations' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_without_great_expectations_a_gx_suite_says_what_to_install(
    people: metalake.Lake, tmp_path: Path
) -> None:
    """A process where `import great_expectations` fails: GX suites name the extra, pandera still works."""
    import subprocess
    import sys

    gx_suite = suite_file(tmp_path, SUITE_YAML)
    schema = suite_file(tmp_path, pa.DataFrameSchema({"id": pa.Column("int64")}).to_yaml(), "schema.yaml")
    code = (
        "import sys\n"
        "sys.modules['great_expectations'] = None  # makes the import fail, as when it is not installed\n"
        "import metalake\n"
        f"lake = metalake.connect({str(people.uri)!r})\n"
        "try:\n"
        f"    lake.quality.validate('people', suite={str(gx_suite)!r})\n"
        "except metalake.MissingExtraError as error:\n"
        "    print(error)\n"
        f"print(lake.quality.validate('people', suite={str(schema)!r}).success)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'metalake[gx]'" in result.stdout and result.stdout.strip().endswith("True")
    assert people.read("dq_validations").get_column("engine").to_list() == ["pandera"]


# -- review fixes ---------------------------------------------------------------------------------------------


def test_a_pandera_schema_with_ordered_columns_sees_the_data_order(people: metalake.Lake) -> None:
    wrong_order = pa.DataFrameSchema({"age": pa.Column(int), "id": pa.Column(int)}, ordered=True)
    validation = people.quality.validate("people", suite=wrong_order)
    ordered = next(r for r in validation.results if r["expectation_type"] == "pandera.ordered")
    assert validation.success is False and ordered["success"] is False
    right_order = pa.DataFrameSchema({"id": pa.Column(int), "age": pa.Column(int)}, ordered=True)
    assert people.quality.validate("people", suite=right_order).success is True


def test_schema_level_unique_and_strict_are_one_result_each(lake: metalake.Lake) -> None:
    frame = pl.DataFrame({"id": [1, 1, 3], "day": [5, 5, 7], "extra": ["a", "b", "c"]})
    lake.datasets.register("pairs", frame)
    schema = pa.DataFrameSchema(
        {"id": pa.Column(int), "day": pa.Column(int)}, unique=["id", "day"], strict=True
    )
    validation = lake.quality.validate("pairs", suite=schema, data=frame)
    results = {r["expectation_type"]: r for r in validation.results}
    assert len(validation.results) == 8  # presence, dtype and not-null of two columns; unique; strict
    unique = results["pandera.unique"]
    assert (unique["success"], unique["unexpected_count"], unique["column"]) == (False, 2, None)
    assert unique["kwargs"] == {"columns": ["id", "day"]}
    strict = results["pandera.strict"]
    assert (strict["success"], strict["unexpected_count"], strict["observed_value"]) == (False, None, "extra")
    assert lake.read("dq_results").height == 8


def test_regex_columns_give_one_result_per_matched_column_and_check(lake: metalake.Lake) -> None:
    frame = pl.DataFrame({"age_a": [-1, -2, -3, 4], "age_b": [1, 2, 3, -4], "name": list("abcd")})
    lake.datasets.register("ages", frame)
    schema = pa.DataFrameSchema(
        {"^age_": pa.Column(int, pa.Check.ge(0), regex=True), "^zzz": pa.Column(int, regex=True)}
    )
    validation = lake.quality.validate("ages", suite=schema, data=frame)
    failed = {(r["column"], r["expectation_type"]): r for r in validation.failed}
    assert set(failed) == {
        ("age_a", "pandera.greater_than_or_equal_to"),
        ("age_b", "pandera.greater_than_or_equal_to"),
        ("^zzz", "pandera.column_in_dataframe"),
    }
    grouped = failed[("age_a", "pandera.greater_than_or_equal_to")]
    assert grouped["unexpected_count"] == 3 and grouped["unexpected_percent"] == 75.0
    assert sorted(grouped["unexpected_sample"]) == [-3, -2, -1]
    assert validation.evaluated == 9  # presence, dtype, not-null and ge for two columns; the unmatched regex


def test_failures_of_unlisted_checks_are_one_result_per_column_and_check() -> None:
    """A failure case no listed check claims (as a backend may report) is grouped, not one row per value."""
    from metalake.quality.suites import load_suite
    from metalake.quality.validation import run_pandera

    cases = [
        {"column": "x", "check": "custom_rule", "failure_case": value, "index": index}
        for index, value in enumerate([10, 11, 12, 13, 14, 15, 16])
    ]
    suite = load_suite(pa.DataFrameSchema({"x": pa.Column(int)}))
    frame = pd.DataFrame({"x": range(10)})

    class Errors(pandera_errors.SchemaErrors):
        def __init__(self) -> None:
            self.failure_cases = pd.DataFrame(cases)

    def fail(*args: object, **kwargs: object) -> None:
        raise Errors()

    object.__setattr__(suite.schema, "validate", fail)
    results, _ = run_pandera(suite, frame)
    custom = [r for r in results if r["expectation_type"] == "pandera.custom_rule"]
    assert len(custom) == 1
    assert (custom[0]["column"], custom[0]["unexpected_count"], custom[0]["unexpected_percent"]) == (
        "x",
        7,
        70.0,
    )
    assert custom[0]["unexpected_sample"] == [10, 11, 12, 13, 14]


def test_a_schema_whose_columns_are_all_missing_fails_them(people: metalake.Lake) -> None:
    schema = pa.DataFrameSchema({"nope": pa.Column(int), "gone": pa.Column(str)})
    validation = people.quality.validate("people", suite=schema)
    assert validation.unsuccessful == validation.evaluated == 6  # presence, dtype and not-null of each


def test_a_suite_file_that_cannot_be_read_is_a_suite_error(people: metalake.Lake, tmp_path: Path) -> None:
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes("- expect_column_to_exist: {column: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(SuiteError, match=r"Cannot read the suite file .*latin1\.yaml: not UTF-8 text"):
        people.quality.validate("people", suite=binary)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(SuiteError, match="Suite file not found"):
        people.quality.validate("people", suite=folder)


def test_a_reused_idempotency_key_is_scoped_to_dataset_version_and_suite(
    people: metalake.Lake, tmp_path: Path
) -> None:
    first = people.quality.validate(
        "people", suite=suite_file(tmp_path, SUITE_YAML), idempotency_key="nightly"
    )
    assert first.deduplicated is False
    again = people.quality.validate(
        "people", suite=suite_file(tmp_path, SUITE_YAML), idempotency_key="nightly"
    )
    assert again.deduplicated is True and again.validation_id == first.validation_id
    other_suite = suite_file(tmp_path, "- expect_column_to_exist: {column: id}\n", "other.yaml")
    other = people.quality.validate("people", suite=other_suite, idempotency_key="nightly")
    assert other.deduplicated is False and other.validation_id != first.validation_id
    assert people.read("dq_validations").height == 2 and people.read("dq_results").height == 4


def test_both_batches_are_checked_before_either_is_written(
    people: metalake.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare = Tables.prepare

    def refuse_the_header(self: Tables, table: str, data: object, **kwargs: object) -> object:
        if table == "dq_validations":
            raise metalake.ContractError(table, [])
        return prepare(self, table, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Tables, "prepare", refuse_the_header)
    with pytest.raises(metalake.ContractError):
        people.quality.validate("people", suite=suite_file(tmp_path, SUITE_YAML))
    assert people.read("dq_results").is_empty() and people.read("dq_validations").is_empty()
