"""Sensitivity marks in table specs: parsed and refused with reasons, present on the built-in tables, kept by the
lake's stored catalog, shown in the docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import metalake
from metalake.core.catalog import (
    AUDIT_COLUMNS,
    RECORDED_BY,
    TableSpec,
    bundled_dir,
    describe_columns,
    load_spec_file,
    parse_spec,
    spec_files,
)
from metalake.errors import SpecError


def _spec(*columns: dict[str, object], **table: object) -> dict[str, object]:
    return {
        "name": "people",
        "description": "People.",
        "columns": [
            {"name": "id", "type": "string", "nullable": False, "description": "Id."},
            *columns,
        ],
        **table,
    }


def _column(**marks: object) -> dict[str, object]:
    return {"name": "email", "type": "string", "description": "Email address.", **marks}


@pytest.fixture(scope="module")
def shipped() -> dict[str, TableSpec]:
    return {path.stem: load_spec_file(path) for path in spec_files(bundled_dir("tables"))}


@pytest.mark.parametrize("mask", ["hash", "redact", "partial", "null"])
def test_a_string_column_takes_every_mask(mask: str) -> None:
    column = parse_spec(_spec(_column(sensitivity="pii", mask=mask)), "people.yaml").column("email")
    assert (column.sensitivity, column.mask) == ("pii", mask)


def test_a_sensitivity_without_mask_gets_the_default_of_its_type() -> None:
    spec = parse_spec(
        _spec(
            _column(sensitivity="pii"),
            {"name": "age", "type": "int64", "description": "Age.", "sensitivity": "pii"},
        ),
        "people.yaml",
    )
    assert spec.column("email").mask == "hash"  # joins and distinct counts keep working
    assert spec.column("age").mask == "null"  # nothing else can hide a number
    assert spec.column("id").sensitivity is None and spec.column("id").mask is None


def test_a_null_mask_applies_to_any_type() -> None:
    spec = parse_spec(
        _spec(
            {
                "name": "born",
                "type": "date",
                "description": "Birth date.",
                "sensitivity": "pii",
                "mask": "null",
            }
        ),
        "people.yaml",
    )
    assert spec.column("born").mask == "null"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (
            _column(sensitivity="secret"),
            r"people\.yaml: table 'people', column 'email': sensitivity 'secret' is not one of \['pii'\]",
        ),
        (
            _column(sensitivity="pii", mask="scramble"),
            r"column 'email': mask 'scramble' is not one of \['hash', 'redact', 'partial', 'null'\]",
        ),
        (_column(mask="hash"), r"column 'email': 'mask' applies to a sensitive column; add 'sensitivity'"),
        (
            {"name": "age", "type": "int64", "description": "Age.", "sensitivity": "pii", "mask": "partial"},
            r"column 'age': mask 'partial' yields text and cannot apply to a column of type int64; use mask 'null'",
        ),
        (
            {"name": "doc", "type": "json", "description": "Doc.", "sensitivity": "pii", "mask": "hash"},
            r"column 'doc': mask 'hash' yields text and cannot apply to a column of type json",
        ),
    ],
)
def test_bad_marks_are_refused_naming_table_column_and_choices(
    column: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(_spec(column), "people.yaml")


def test_a_key_value_table_names_its_key_and_value_columns() -> None:
    spec = parse_spec(
        _spec(
            {"name": "key", "type": "string", "description": "Key."},
            {"name": "value", "type": "string", "description": "Value."},
            key_value=["key", "value"],
        ),
        "people.yaml",
    )
    assert spec.key_value == ("key", "value")
    assert parse_spec(_spec(), "people.yaml").key_value is None


@pytest.mark.parametrize(
    ("key_value", "message"),
    [
        (["key"], r"'key_value' takes two column names, \[key column, value column\]"),
        (["key", "key"], "'key_value' takes two column names"),
        ("key", "'key_value' takes two column names"),
        (["key", "nope"], r"'key_value' names 'nope', which must be a string column of the table"),
        (["key", "count"], r"'key_value' names 'count'.*string columns: \['id', 'key'\]"),
    ],
)
def test_bad_key_value_marks_are_refused(key_value: object, message: str) -> None:
    document = _spec(
        {"name": "key", "type": "string", "description": "Key."},
        {"name": "count", "type": "int64", "description": "Count."},
        key_value=key_value,
    )
    with pytest.raises(SpecError, match=message):
        parse_spec(document, "people.yaml")


def test_every_table_hashes_its_actor_column(shipped: dict[str, TableSpec]) -> None:
    for spec in shipped.values():
        column = spec.column(RECORDED_BY)
        assert (column.sensitivity, column.mask) == ("pii", "hash"), spec.name


def test_built_in_identities_and_key_value_tables_are_marked(shipped: dict[str, TableSpec]) -> None:
    user = shipped["runs"].column("user")
    assert (user.sensitivity, user.mask, user.type, user.nullable) == ("pii", "hash", "string", True)
    key_value_tables = {name for name, spec in shipped.items() if spec.key_value is not None}
    assert key_value_tables == {"params", "run_tags", "model_events"}
    for name in key_value_tables:
        assert shipped[name].key_value == ("key", "value")


def test_marks_round_trip_through_the_stored_json() -> None:
    spec = parse_spec(
        _spec(
            _column(sensitivity="pii", mask="partial"),
            {"name": "key", "type": "string", "description": "Key."},
            {"name": "value", "type": "string", "description": "Value."},
            key_value=["key", "value"],
        ),
        "people.yaml",
    )
    again = TableSpec.from_json(spec.to_json())
    assert again.column("email").mask == "partial"
    assert again.key_value == ("key", "value")
    assert again.to_json() == spec.to_json()
    columns = {column["name"]: column for column in json.loads(spec.to_json())["columns"]}
    assert "sensitivity" not in columns["id"] and "mask" not in columns["id"]  # unmarked JSON reads as before


def test_a_spec_stored_before_marks_existed_gets_the_current_audit_columns() -> None:
    """A lake's catalog keeps the JSON of specs whose YAML did not change: its recorded_by is masked all the same."""
    spec = parse_spec(_spec(), "people.yaml")
    stored = json.loads(spec.to_json())
    for column in stored["columns"]:
        column.pop("sensitivity", None)
        column.pop("mask", None)
    again = TableSpec.from_json(json.dumps(stored))
    assert again.column(RECORDED_BY) == AUDIT_COLUMNS[1]
    assert again.column(RECORDED_BY).mask == "hash"


def test_the_lake_catalog_keeps_a_users_marks(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "people.yaml").write_text(
        "name: people\n"
        "description: People.\n"
        "columns:\n"
        "  - {name: id, type: string, nullable: false, description: Id.}\n"
        "  - {name: email, type: string, description: Email., sensitivity: pii, mask: partial}\n"
    )
    lake_path = tmp_path / "lake"
    metalake.connect(lake_path, extra_specs=folder, actor="tester")
    reader = metalake.connect(lake_path, actor="tester")  # the lake describes itself, without the folder
    email = reader.spec("people").column("email")
    assert (email.sensitivity, email.mask) == ("pii", "partial")
    assert reader.spec("runs").column("user").mask == "hash"


def test_the_docs_show_each_mark(shipped: dict[str, TableSpec]) -> None:
    described = {row["column"]: row["description"] for row in describe_columns(shipped["runs"])}
    assert described["user"].endswith("[pii, masked: hash]")
    assert described[RECORDED_BY].endswith("[pii, masked: hash]")
    assert "masked" not in described["host"]


def test_the_readme_example_of_marks_is_a_valid_spec() -> None:
    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Masking sensitive values", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(yaml.safe_load(example), "README.md")
    assert {c.name: c.mask for c in spec.columns if c.mask} == {
        "email": "hash",
        "card": "partial",
        "birth_date": "null",
        RECORDED_BY: "hash",
    }
    assert spec.key_value == ("key", "value")
