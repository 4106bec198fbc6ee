"""Table specs: the shipped catalog covers the domain, every column is documented, bad specs are refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from metalake.core.catalog import (
    COLUMN_TYPES,
    RECORDED_AT,
    RECORDED_BY,
    breaking_changes,
    bundled_dir,
    load_spec_file,
    parse_spec,
    spec_files,
)
from metalake.errors import SpecError

DOMAIN_TABLES = {
    "experiments", "runs", "params", "metrics", "run_tags", "run_inputs", "artifacts",
    "datasets", "dataset_versions", "dq_validations", "dq_results",
    "models", "model_versions", "model_events",
    "pipelines", "pipeline_runs", "lineage_edges",
    "deployments", "kpis", "kpi_observations", "alerts", "snapshots",
}  # fmt: skip

REQUIRED_COLUMNS = {
    "runs": {"run_id", "experiment", "name", "status", "start_time", "end_time"},
    "metrics": {"run_id", "key", "value", "step", "timestamp"},
    "params": {"run_id", "key", "value"},
    "model_versions": {"model", "version", "run_id"},
    "dataset_versions": {"dataset", "version"},
    "dq_validations": {"success"},
    "deployments": {"model", "version", "environment"},
}


@pytest.fixture(scope="module")
def shipped() -> dict[str, object]:
    return {path.stem: load_spec_file(path) for path in spec_files(bundled_dir("tables"))}


def test_shipped_catalog_covers_the_whole_domain(shipped: dict[str, object]) -> None:
    assert set(shipped) >= DOMAIN_TABLES


@pytest.mark.parametrize(("table", "columns"), sorted(REQUIRED_COLUMNS.items()))
def test_columns_that_other_work_relies_on(shipped: dict, table: str, columns: set[str]) -> None:
    assert columns <= set(shipped[table].column_names)


def test_every_column_is_documented_and_audited(shipped: dict) -> None:
    for spec in shipped.values():
        assert spec.description
        assert spec.column_names[-2:] == [RECORDED_AT, RECORDED_BY]
        for column in spec.columns:
            assert column.description, f"{spec.name}.{column.name} has no description"
            assert column.type in COLUMN_TYPES


def test_spec_yields_arrow_schema_and_round_trips_through_json(shipped: dict) -> None:
    metrics = shipped["metrics"]
    schema = metrics.arrow_schema()
    assert schema.field("value").type == pa.float64()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("run_id").nullable
    assert type(metrics).from_json(metrics.to_json()) == type(metrics).from_json(metrics.to_json())
    assert type(metrics).from_json(metrics.to_json()).to_json() == metrics.to_json()


def _spec(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "name": "things",
        "description": "Things.",
        "columns": [{"name": "id", "type": "string", "nullable": False, "description": "Id."}],
    }
    document.update(overrides)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_spec(colour="red"), "unknown key"),
        (_spec(columns=[{"name": "id", "type": "uuid", "description": "Id."}]), "is not one of"),
        (_spec(columns=[{"name": "id", "type": "string"}]), "needs a description"),
        (
            _spec(columns=[{"name": "id", "type": "string", "description": "x", "checks": {"between": 1}}]),
            "unknown check",
        ),
        (_spec(primary_key=["nope"]), "unknown column"),
        (_spec(name="Bad-Name"), "lower_snake_case"),
        (
            _spec(columns=[{"name": "recorded_at", "type": "string", "description": "x"}]),
            "added to every table",
        ),
        (
            _spec(columns=[{"name": "a", "type": "string", "description": "x"}] * 2),
            "duplicate column",
        ),
    ],
)
def test_bad_specs_are_refused_with_a_reason(document: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(document, "test.yaml")


def test_file_name_must_match_table_name(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(_spec()))
    with pytest.raises(SpecError, match="file name must match"):
        load_spec_file(path)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "things.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"things\.yaml"):
        load_spec_file(path)


def test_breaking_changes_are_explained() -> None:
    old = parse_spec(
        _spec(
            columns=[
                {"name": "id", "type": "string", "nullable": False, "description": "Id."},
                {"name": "score", "type": "float64", "description": "Score."},
                {"name": "note", "type": "string", "description": "Note."},
            ]
        ),
        "old",
    )
    evolved = parse_spec(
        _spec(
            columns=[
                {"name": "id", "type": "string", "nullable": False, "description": "Id."},
                {"name": "score", "type": "float64", "description": "Score."},
                {"name": "note", "type": "string", "description": "Note."},
                {"name": "extra", "type": "int64", "description": "New, nullable."},
            ]
        ),
        "new",
    )
    assert breaking_changes(old, evolved) == []
    broken = parse_spec(
        _spec(
            columns=[
                {"name": "id", "type": "int64", "nullable": False, "description": "Id."},
                {"name": "score", "type": "float64", "nullable": False, "description": "Score."},
                {"name": "must", "type": "string", "nullable": False, "description": "New, required."},
            ]
        ),
        "new",
    )
    problems = " | ".join(breaking_changes(old, broken))
    assert "'id' changes type" in problems
    assert "'score' changes from nullable to required" in problems
    assert "'note' is dropped" in problems
    assert "new column 'must' is required" in problems
