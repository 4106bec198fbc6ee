"""Junk batches against the real table specs: `append` either stores them or raises MetalakeError, never a raw
TypeError, OverflowError or UnicodeEncodeError (and a refused batch changes no version)."""

from __future__ import annotations

import decimal
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metalake
from metalake import ContractError, MetalakeError
from metalake.core.catalog import bundled_dir, load_spec_file

SPECS = sorted((load_spec_file(path) for path in bundled_dir("tables").glob("*.yaml")), key=lambda s: s.name)
EDGE_INTEGERS = [2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**400]

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=6)  # lone surrogates included
odd_times = st.datetimes(timezones=st.none() | st.just(UTC))
junk_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTEGERS),
    st.floats(),
    any_text,
    st.binary(max_size=4),
    odd_times,
    st.dates(),
    st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
            "0001-01-01T00:00:00+05:00",
            "2026-03-01",
            decimal.Decimal("1.5"),
            1 + 2j,
            object(),
            {1, 2},
            (1, "a"),
            date(2026, 3, 1),
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(any_text, st.integers() | st.floats(), max_size=2),
)


@st.composite
def junk_batches(draw: st.DrawFn) -> tuple[str, Any]:
    spec = draw(st.sampled_from(SPECS))
    names = [column.name for column in spec.columns] + ["not_a_column"]
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        rows.append({name: draw(junk_values) for name in chosen})
    shape = draw(st.sampled_from(["rows", "columns", "pandas", "scalar"]))
    if shape == "pandas":  # object columns, as a notebook's DataFrame of mixed values holds them
        import pandas as pd

        return spec.name, pd.DataFrame(rows)
    if shape == "columns":  # a mapping of column -> values, as from a dict of lists
        columns = sorted({name for row in rows for name in row})
        return spec.name, {name: [row.get(name) for row in rows] for name in columns}
    if shape == "scalar":
        return spec.name, draw(junk_values)
    return spec.name, rows


@pytest.fixture(scope="module")
def junk_lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    return metalake.connect(Path(tmp_path_factory.mktemp("junk")) / "lake", actor="tester")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=junk_batches())
def test_junk_batches_are_stored_or_refused_with_a_metalake_error(
    junk_lake: metalake.Lake, batch: tuple[str, Any]
) -> None:
    table, data = batch
    before = junk_lake.version(table)
    try:
        junk_lake.append(table, data)
    except MetalakeError:
        assert junk_lake.version(table) == before, "a refused batch must leave the table's version unchanged"


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ({"step": 2**63}, "step", "out of the int64 range"),
        ({"step": 1.5}, "step", "fractional part"),
        ({"key": "loss\ud800"}, "key", "lone surrogate"),
        ({"value": 10**400}, "value", "out of the float64 range"),
        ({"timestamp": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}, "timestamp", "range of UTC"),
        ({"timestamp": "0001-01-01T00:00:00+05:00"}, "timestamp", "range of UTC"),
    ],
)
def test_values_that_cannot_be_stored_name_the_column_and_the_reason(
    junk_lake: metalake.Lake, row: dict[str, Any], column: str, reason: str
) -> None:
    batch = [
        {"run_id": "r1", "key": "loss", "value": 0.5, "step": 1, "timestamp": "2026-03-01T00:00:00Z", **row}
    ]
    with pytest.raises(ContractError) as caught:
        junk_lake.append("metrics", batch)
    assert [failure.column for failure in caught.value.failures] == [column]
    assert reason in str(caught.value)


def test_a_columnar_batch_with_a_lone_surrogate_is_a_contract_error(junk_lake: metalake.Lake) -> None:
    with pytest.raises(ContractError, match="cannot be read as the table's columns"):
        junk_lake.append("params", {"run_id": ["r1"], "key": ["k\udce9"], "value": ["v"]})
