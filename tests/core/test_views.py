"""Views in sql/: documented, created in dependency order, and a broken file is named in the error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import metalake
from metalake.core.sql import SqlSession, ViewDefinition, bundled_views, load_views, view_order
from metalake.errors import ViewError

REQUIRED_VIEWS = {"runs_current", "metric_summary", "audit_log"}


def test_required_views_ship_and_are_documented() -> None:
    views = bundled_views()
    assert set(views) >= REQUIRED_VIEWS
    for view in views.values():
        assert view.documentation, f"{view.path} needs a header comment"
        assert "Columns" in view.documentation or "columns" in view.documentation


def session_over(folder: Path) -> SqlSession:
    numbers = pa.table({"n": [1, 2, 3]})
    return SqlSession(
        ["numbers"], lambda table: (1, lambda: numbers), lambda: pa.table({"x": [1]}), load_views(folder)
    )


def test_views_are_created_in_dependency_order(tmp_path: Path) -> None:
    (tmp_path / "a_total.sql").write_text(
        "-- total of doubled numbers\nselect sum(d) as total from b_doubled"
    )
    (tmp_path / "b_doubled.sql").write_text("-- doubled numbers\nselect n * 2 as d from numbers;")
    session = session_over(tmp_path)
    assert view_order(session.views, ["a_total"]) == ["b_doubled", "a_total"]
    assert session.query("select total from a_total").fetchall() == [(12,)]


def test_a_broken_view_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "broken.sql").write_text("select no_such_column from numbers")
    with pytest.raises(ViewError, match=r"broken\.sql"):
        session_over(tmp_path).query("select * from broken")


def test_a_view_cycle_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "left_side.sql").write_text("select * from right_side")
    (tmp_path / "right_side.sql").write_text("select * from left_side")
    with pytest.raises(ViewError, match="cycle"):
        session_over(tmp_path).query("select * from left_side")


def test_an_empty_view_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.sql").write_text("  \n")
    with pytest.raises(ViewError, match=r"empty\.sql"):
        load_views(tmp_path)


def test_a_materialized_view_is_recomputed_when_a_table_it_reads_changes(tmp_path: Path) -> None:
    (tmp_path / "total.sql").write_text(
        "-- total: the sum of n.\n--\n-- metalake: materialize\nSELECT sum(n) AS s FROM numbers\n"
    )
    (tmp_path / "doubled.sql").write_text("-- doubled: twice the total.\nSELECT s * 2 AS d FROM total\n")
    state = {"version": 1, "rows": pa.table({"n": [1, 2, 3]})}
    session = SqlSession(
        ["numbers"],
        lambda table: (state["version"], lambda: state["rows"]),
        lambda: pa.table({"x": [1]}),
        load_views(tmp_path),
    )
    views = load_views(tmp_path)
    assert views["total"].materialized and not views["doubled"].materialized
    assert "materialize" not in views["total"].documentation
    assert session.query("select d from doubled").fetchall() == [(12,)]
    state["rows"] = pa.table({"n": [10, 20]})  # same version: the stored result stands
    assert session.query("select s from total").fetchall() == [(6,)]
    state["version"] = 2  # a new version: recomputed, and views over it follow
    assert session.query("select s from total").fetchall() == [(30,)]
    assert session.query("select d from doubled").fetchall() == [(60,)]


def test_the_leaderboard_follows_new_runs(lake: metalake.Lake) -> None:
    for value in (0.5, 0.7):
        with lake.runs.start(experiment="e", name=f"v{value}") as run:
            run.log_metric("auc", value)
        best = lake.sql("select name, value from leaderboard where metric = 'auc' and direction = 'max'")
        assert best.fetchall() == [(f"v{value}", value)]
    assert lake.as_of(datetime.now(UTC)).sql("select count(*) from leaderboard").fetchall() == [(2,)]


def test_sql_date_arithmetic_is_in_utc(lake: metalake.Lake) -> None:
    result = lake.sql(
        "select current_setting('TimeZone'), TIMESTAMPTZ '2026-03-30 12:00:00+00' - INTERVAL 7 DAY"
    )
    zone, week_before = result.fetchall()[0]
    assert zone == "UTC"
    assert week_before == datetime(2026, 3, 23, 12, 0, tzinfo=UTC)


# One entry of a view's `Columns:` list: three spaces, the column name(s), then (after two spaces) the meaning.
COLUMN_ENTRY = re.compile(r"^--   (?P<names>\w+(?:, \w+)*)(?:\s{2,}\S.*)?$")


def documented_columns(view: ViewDefinition) -> list[str]:
    header = view.header
    start = header.index("-- Columns:")
    names: list[str] = []
    for line in header[start + 1 :]:
        entry = COLUMN_ENTRY.match(line)
        if entry:
            names += entry["names"].split(", ")
    return names


@pytest.mark.parametrize("name", sorted(bundled_views()))
def test_every_view_says_what_it_answers_and_lists_its_real_columns(
    sample_lake: metalake.Lake, name: str
) -> None:
    view = bundled_views()[name]
    question = view.documentation.splitlines()[0]
    assert question.startswith(f"{name}: ") and len(question) > len(name) + 10, f"{view.path}: first line"
    assert "-- Columns:" in view.header, f"{view.path} needs a Columns: list in its header"
    relation = sample_lake.sql(f"select * from {name}")
    assert documented_columns(view) == relation.columns, f"{view.path}: Columns: list"
    assert relation.fetchall(), f"the sample lake should give {name} rows"


def test_nan_metrics_in_a_file_with_other_values_are_left_out_of_ranges_and_never_lead(
    lake: metalake.Lake,
) -> None:
    # One group commit puts the three runs' points in one Parquet file, whose min/max statistics leave NaN out.
    for name, value in (("good", 0.9), ("diverged", float("nan")), ("fair", 0.8)):
        with lake.runs.start(experiment="nan", name=name) as run:
            run.log_metrics({"auc": value}, step=0)
    lake.runs.wait()
    ranges = lake.sql(
        "select r.name, s.min_value, s.max_value, s.mean_value from metric_summary s "
        "join runs_current r using (run_id) order by r.name"
    ).fetchall()
    assert ranges == [("diverged", None, None, None), ("fair", 0.8, 0.8, 0.8), ("good", 0.9, 0.9, 0.9)]
    leaders = lake.sql(
        "select direction, name, runs from leaderboard where experiment = 'nan' order by 1"
    ).fetchall()
    assert leaders == [("max", "good", 2), ("min", "fair", 2)]
