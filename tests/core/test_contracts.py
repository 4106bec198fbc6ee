"""Contracts at write: every kind of bad batch is refused whole, with every failure named, and nothing is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metalake
from metalake import ContractError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def metric(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {"run_id": "r1", "key": "loss", "value": 0.5, "step": 1, "timestamp": NOW}
    row.update(overrides)
    return row


def versions(lake: metalake.Lake) -> dict[str, int | None]:
    return {spec.name: lake.version(spec.name) for spec in lake.tables()}


def refused(lake: metalake.Lake, table: str, data: object) -> ContractError:
    before = versions(lake)
    with pytest.raises(ContractError) as caught:
        lake.append(table, data)
    assert versions(lake) == before, "a refused batch must leave every table's version unchanged"
    return caught.value


@pytest.mark.parametrize(
    "make",
    [
        lambda rows: rows,
        lambda rows: pl.DataFrame(rows),
        lambda rows: pd.DataFrame(rows),
        lambda rows: pa.Table.from_pylist(rows),
    ],
    ids=["list-of-dicts", "polars", "pandas", "arrow"],
)
def test_every_input_kind_is_accepted_and_cast_to_the_table_schema(lake: metalake.Lake, make: object) -> None:
    rows = [metric(step=1), metric(step=2, value=1)]
    commit = lake.append("metrics", make(rows))  # type: ignore[operator]
    assert commit.rows == 2
    stored = lake.read("metrics")
    assert stored.schema["value"] == pl.Float64
    assert stored.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert set(stored.get_column("recorded_by")) == {"tester"}


def test_wrong_types_are_refused_with_examples(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(value="high"), metric(step=2.5)])
    text = str(error)
    assert "'value': wrong type" in text and "high" in text
    assert "'step': wrong type" in text
    assert error.table == "metrics"
    assert {f.column for f in error.failures} == {"value", "step"}


def test_wrong_column_type_in_a_frame(lake: metalake.Lake) -> None:
    frame = pl.DataFrame([metric()]).with_columns(pl.lit(True).alias("value"))
    error = refused(lake, "metrics", frame)
    assert "got Boolean, expected float64" in str(error)


def test_nulls_in_required_columns(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(run_id=None)])
    assert "'run_id': null in a required column" in str(error)


def test_out_of_range_values(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(step=-1), metric(key="")])
    text = str(error)
    assert "'step': value out of range" in text
    assert "'key': text length out of range" in text


def test_values_outside_an_allowed_set(lake: metalake.Lake) -> None:
    run = {
        "event_id": "e1",
        "run_id": "r1",
        "experiment": "x",
        "status": "exploded",
        "start_time": NOW,
        "event_time": NOW,
    }
    error = refused(lake, "runs", [run])
    assert "'status': value not in the allowed set" in str(error)


def test_unknown_columns_are_refused_by_name(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(colour="red")])
    assert "'colour': unknown column" in str(error)


def test_missing_required_column(lake: metalake.Lake) -> None:
    row = metric()
    del row["value"]
    error = refused(lake, "metrics", [row])
    assert "'value': required column is missing" in str(error)


def test_duplicate_primary_keys_within_a_batch(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(), metric()])
    assert "duplicate primary key ['run_id', 'key', 'step', 'timestamp']" in str(error)


def test_every_failure_is_reported_at_once(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(run_id=None, step=-3, colour=1), metric(value="x")])
    assert len(error.failures) == 4
    assert str(error).startswith("Refused batch for table 'metrics': 4 contract check(s) failed.")
    assert "Nothing was written" in str(error)


def test_unknown_table_lists_known_ones(lake: metalake.Lake) -> None:
    with pytest.raises(metalake.TableNotFound) as caught:
        lake.append("metricz", [metric()])
    assert "Known tables:" in str(caught.value) and "metrics" in str(caught.value)
    assert isinstance(caught.value, KeyError)


def test_iso_strings_and_naive_datetimes_are_read_as_utc(lake: metalake.Lake) -> None:
    lake.append(
        "metrics",
        [
            metric(timestamp="2026-03-01T12:00:00Z", step=1),
            metric(timestamp=NOW.replace(tzinfo=None), step=2),
        ],
    )
    stamps = lake.read("metrics").get_column("timestamp").to_list()
    assert stamps == [NOW, NOW]


# -- property: random invalid batches never change any table's version -------------------------------------------

bad_values = st.one_of(
    st.none(), st.text(max_size=3), st.integers(-5, -1), st.booleans(), st.floats(allow_nan=False)
)


@st.composite
def invalid_metric_batches(draw: st.DrawFn) -> list[dict[str, object]]:
    rows = [metric(step=i) for i in range(draw(st.integers(1, 5)))]
    victim = draw(st.integers(0, len(rows) - 1))
    column = draw(st.sampled_from(["run_id", "key", "value", "step", "timestamp", "unknown_column"]))
    value = draw(bad_values)
    if column == "key":
        value = draw(st.sampled_from(["", "k" * 300, None, 7]))
    if column == "value":
        value = draw(st.sampled_from([None, "text", True]))
    if column == "step":
        value = draw(st.sampled_from([None, -1, "1", 1.5]))
    if column == "timestamp":
        value = draw(st.sampled_from([None, "not a time", 12]))
    if column == "run_id":
        value = draw(st.sampled_from([None, 3, 2.5]))
    rows[victim] = {**rows[victim], column: value}
    return rows


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    return metalake.connect(Path(tmp_path_factory.mktemp("prop")) / "lake", actor="tester")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=invalid_metric_batches())
def test_random_invalid_batches_never_change_any_version(
    shared_lake: metalake.Lake, batch: list[dict[str, object]]
) -> None:
    refused(shared_lake, "metrics", batch)


@st.composite
def any_metric_batches(draw: st.DrawFn) -> list[dict[str, object]]:
    """Batches that are valid or break checks in random ways (all values already of the right type)."""
    size = draw(st.integers(1, 6))
    rows = []
    for i in range(size):
        rows.append(
            metric(
                run_id=draw(st.one_of(st.none(), st.sampled_from(["r1", "r2"]))),
                key=draw(st.sampled_from(["loss", "", "k" * 251, "acc"])),
                value=draw(st.one_of(st.none(), st.just(float("nan")), st.floats(allow_nan=True))),
                step=draw(st.sampled_from([0, 1, i, -1, None])),
            )
        )
    return rows


@settings(max_examples=150, deadline=None)
@given(batch=any_metric_batches())
def test_quick_check_agrees_with_pandera(batch: list[dict[str, object]]) -> None:
    from metalake.core.catalog import bundled_dir, load_spec_file
    from metalake.core.contracts import pandera_failures, passes_quick_check, polars_dtype

    spec = load_spec_file(bundled_dir("tables") / "metrics.yaml")
    frame = pl.DataFrame(
        [{**row, "recorded_at": NOW, "recorded_by": "t"} for row in batch],
        schema={c.name: polars_dtype(c.type) for c in spec.columns},
        orient="row",
    )
    pandera_ok = pandera_failures(spec, frame, {}, quick=False) == []
    assert passes_quick_check(spec, frame) == pandera_ok


def test_nan_is_a_legal_float_even_beside_other_failures(lake: metalake.Lake) -> None:
    error = refused(lake, "metrics", [metric(value=float("nan")), metric(step=2, key="")])
    assert [f.column for f in error.failures] == ["key"]
    lake.append("metrics", [metric(value=float("nan"))])


def test_an_all_null_column_of_another_type_is_just_nulls(lake: metalake.Lake) -> None:
    frame = pl.DataFrame([metric()]).with_columns(pl.lit(None, dtype=pl.String).alias("value"))
    error = refused(lake, "metrics", frame)
    assert "'value': null in a required column" in str(error)
    assert "wrong type" not in str(error)


def test_json_columns_hold_standard_json(lake: metalake.Lake) -> None:
    lake.append(
        "datasets", [{"dataset": "d", "tags": {"score": float("nan"), "bounds": [1.0, float("inf")]}}]
    )
    stored = lake.read("datasets")["tags"].item()
    assert json.loads(stored) == {"bounds": [1.0, None], "score": None}


@pytest.mark.parametrize(
    ("column", "forged"),
    [
        ("recorded_at", datetime(2000, 1, 1, tzinfo=UTC)),
        ("recorded_at", "2000-01-01"),
        ("recorded_by", "someone-else"),
    ],
)
def test_audit_columns_carried_by_a_batch_are_refused(
    lake: metalake.Lake, column: str, forged: object
) -> None:
    rows = [{"run_id": "r1", "key": "lr", "value": "0.1", column: forged}]
    error = refused(lake, "params", rows)
    assert f"column {column!r}: set by metalake on every write" in str(error)
    assert "keep a source's own time in a column of its own" in str(error)


def test_audit_columns_in_a_frame_are_refused_and_all_null_ones_ignored(lake: metalake.Lake) -> None:
    frame = pl.DataFrame({"run_id": ["r1"], "key": ["lr"], "value": ["0.1"], "recorded_by": ["someone-else"]})
    refused(lake, "params", frame)
    empty = frame.with_columns(pl.lit(None, dtype=pl.String).alias("recorded_by"))
    lake.append("params", empty)  # a column of nulls gives nothing: metalake fills it
    assert lake.read("params")["recorded_by"].to_list() == ["tester"]


def test_a_forged_time_cannot_decide_a_params_current_value(lake: metalake.Lake) -> None:
    lake.append("params", [{"run_id": "r1", "key": "lr", "value": "0.1"}])
    with pytest.raises(ContractError):
        lake.append("params", [{"run_id": "r1", "key": "lr", "value": "9", "recorded_at": "2999-01-01"}])
    lake.append("params", [{"run_id": "r1", "key": "lr", "value": "0.2"}])
    stored = lake.read("params").sort("recorded_at")
    assert stored["value"].to_list() == ["0.1", "0.2"]
    assert stored["recorded_at"].is_sorted() and set(stored["recorded_by"]) == {"tester"}
