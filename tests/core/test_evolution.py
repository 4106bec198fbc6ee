"""Users' own tables, a self-describing catalog, and schema evolution (safe additions vs breaking changes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import metalake
from metalake import SchemaEvolutionError

KPI_SPEC = """
name: weekly_revenue
description: Revenue per week and region, from the finance warehouse.
primary_key: [week, region]
columns:
  - {name: week, type: date, nullable: false, description: Monday of the week}
  - {name: region, type: string, nullable: false, checks: {isin: [emea, amer, apac]}, description: Sales region}
  - {name: revenue, type: float64, nullable: false, checks: {ge: 0}, description: Revenue in EUR}
"""


@pytest.fixture
def spec_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my_tables"
    folder.mkdir()
    (folder / "weekly_revenue.yaml").write_text(KPI_SPEC)
    return folder


def row(**extra: object) -> dict[str, object]:
    return {"week": "2026-03-02", "region": "emea", "revenue": 1200.5, **extra}


def test_user_tables_come_from_a_folder_and_are_stored_in_the_lake(
    lake_path: Path, spec_folder: Path
) -> None:
    lake = metalake.connect(lake_path, extra_specs=spec_folder)
    lake.append("weekly_revenue", [row()])
    with pytest.raises(metalake.ContractError, match="'region': value not in the allowed set"):
        lake.append("weekly_revenue", [row(region="mars")])
    # A later reader does not pass the folder: the lake describes itself.
    reader = metalake.connect(lake_path)
    assert "weekly_revenue" in [spec.name for spec in reader.tables()]
    assert reader.spec("weekly_revenue").column("region").checks == {"isin": ["emea", "amer", "apac"]}
    assert reader.sql("select sum(revenue) from weekly_revenue").fetchall() == [(1200.5,)]


def test_adding_a_nullable_column_evolves_the_table(lake_path: Path, spec_folder: Path) -> None:
    lake = metalake.connect(lake_path, extra_specs=spec_folder)
    lake.append("weekly_revenue", [row()])
    (spec_folder / "weekly_revenue.yaml").write_text(
        KPI_SPEC + "  - {name: currency, type: string, description: ISO currency code}\n"
    )
    evolved = metalake.connect(lake_path, extra_specs=spec_folder)
    assert evolved.read("weekly_revenue").get_column("currency").to_list() == [None]
    evolved.append("weekly_revenue", [row(week="2026-03-09", currency="EUR")])
    assert sorted(evolved.read("weekly_revenue").get_column("currency").to_list(), key=str) == ["EUR", None]
    assert metalake.connect(lake_path).spec("weekly_revenue").column_names[3] == "currency"
    assert "evolve" in evolved.history("weekly_revenue").get_column("operation").to_list()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda text: text.replace("type: float64", "type: string"), "changes type from float64 to string"),
        (
            lambda text: text.replace(
                "  - {name: revenue, type: float64, nullable: false, checks: {ge: 0}, description: Revenue in EUR}\n",
                "",
            ),
            "'revenue' is dropped",
        ),
        (
            lambda text: text + "  - {name: owner, type: string, nullable: false, description: Owner}\n",
            "new column 'owner' is required",
        ),
    ],
    ids=["type-change", "dropped-column", "new-required-column"],
)
def test_breaking_changes_are_refused_with_an_explanation(
    lake_path: Path, spec_folder: Path, edit: object, reason: str
) -> None:
    metalake.connect(lake_path, extra_specs=spec_folder).append("weekly_revenue", [row()])
    path = spec_folder / "weekly_revenue.yaml"
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(SchemaEvolutionError, match=reason) as caught:
        metalake.connect(lake_path, extra_specs=spec_folder)
    assert "add a new nullable" in str(caught.value)
    # Nothing changed: the stored spec is still the old one.
    assert metalake.connect(lake_path).spec("weekly_revenue").column("revenue").type == "float64"


def test_nullable_to_required_is_breaking(lake_path: Path, spec_folder: Path) -> None:
    path = spec_folder / "weekly_revenue.yaml"
    path.write_text(KPI_SPEC + "  - {name: note, type: string, description: Free text}\n")
    metalake.connect(lake_path, extra_specs=spec_folder)
    path.write_text(KPI_SPEC + "  - {name: note, type: string, nullable: false, description: Free text}\n")
    with pytest.raises(SchemaEvolutionError, match="from nullable to required"):
        metalake.connect(lake_path, extra_specs=spec_folder)


def test_a_user_spec_cannot_redeclare_a_shipped_table(lake_path: Path, spec_folder: Path) -> None:
    (spec_folder / "metrics.yaml").write_text(KPI_SPEC.replace("weekly_revenue", "metrics"))
    with pytest.raises(metalake.SpecError, match="declared twice"):
        metalake.connect(lake_path, extra_specs=spec_folder)


def test_missing_spec_folder_is_a_clear_error(lake_path: Path, tmp_path: Path) -> None:
    with pytest.raises(metalake.SpecError, match="does not exist"):
        metalake.connect(lake_path, extra_specs=tmp_path / "nope")


def test_time_travel_before_a_user_table_existed(lake_path: Path, spec_folder: Path) -> None:
    lake = metalake.connect(lake_path)
    before = datetime.now(UTC)
    lake = metalake.connect(lake_path, extra_specs=spec_folder)
    lake.append("weekly_revenue", [row()])
    assert lake.as_of(before).read("weekly_revenue").is_empty()


def test_sql_sees_an_added_column_before_any_row_has_it(lake_path: Path, spec_folder: Path) -> None:
    metalake.connect(lake_path, extra_specs=spec_folder).append("weekly_revenue", [row()])
    (spec_folder / "weekly_revenue.yaml").write_text(
        KPI_SPEC + "  - {name: currency, type: string, description: ISO currency code}\n"
    )
    evolved = metalake.connect(lake_path, extra_specs=spec_folder)
    assert evolved.sql("select region, currency from weekly_revenue").fetchall() == [("emea", None)]
    evolved.append("weekly_revenue", [row(week="2026-03-09", currency="EUR")])
    assert evolved.sql("select count(currency), count(*) from weekly_revenue").fetchall() == [(1, 2)]


def test_time_travel_to_before_a_column_was_added_reads_it_as_null(
    lake_path: Path, spec_folder: Path
) -> None:
    metalake.connect(lake_path, extra_specs=spec_folder).append("weekly_revenue", [row()])
    before = datetime.now(UTC)
    (spec_folder / "weekly_revenue.yaml").write_text(
        KPI_SPEC + "  - {name: currency, type: string, description: ISO currency code}\n"
    )
    evolved = metalake.connect(lake_path, extra_specs=spec_folder)
    evolved.append("weekly_revenue", [row(week="2026-03-09", currency="EUR")])
    then = evolved.as_of(before)
    assert then.sql("select region, currency from weekly_revenue").fetchall() == [("emea", None)]
    assert then.read("weekly_revenue", columns=["region", "currency"]).rows() == [("emea", None)]
    # the bundled views, which use the newest columns, answer on old versions of their tables too
    assert then.sql("select count(*) from dataset_versions_current").fetchall() == [(0,)]
