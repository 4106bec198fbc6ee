"""KPIs: definitions (latest wins), observations (one, many, files; all or nothing), and model_kpi_impact."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from support.datasets import register_dataset_versions

import metalake
from metalake.core.vocabulary import DEFAULT_PRODUCTION_ENVIRONMENTS
from metalake.errors import IngestError, KpiError, KpiNotFound, MetalakeError
from metalake.kpis.environments import PRODUCTION_ENVIRONMENTS_POLICY, sql_list
from metalake.kpis.kpis import DEFAULT_IMPACT_WINDOW, LAKE_SETTING, Kpi

T0 = datetime(2026, 3, 1, tzinfo=UTC)
pytestmark = pytest.mark.filterwarnings("ignore::metalake.deployments.UnregisteredModelVersionWarning")
DAY = timedelta(days=1)


@pytest.fixture
def defined(lake: metalake.Lake) -> metalake.Lake:
    lake.kpis.define("conversion", unit="%", direction="higher_is_better", models=["churn"], owner="growth")
    return lake


# -- definitions ------------------------------------------------------------------------------------------------


def test_define_get_and_list(defined: metalake.Lake) -> None:
    kpi = defined.kpis.get("conversion")
    assert kpi == Kpi("conversion", "%", "higher_is_better", None, "growth", ("churn",), {})
    listed = defined.kpis.list().row(0, named=True)
    assert listed["kpi"] == "conversion" and json.loads(listed["models"]) == ["churn"]
    assert listed["observations"] == 0 and listed["last_value"] is None


def test_redefining_updates_and_the_latest_definition_wins(defined: metalake.Lake) -> None:
    defined.kpis.define(
        "conversion", unit="ratio", direction="higher_is_better", description="orders / visits"
    )
    kpi = defined.kpis.get("conversion")
    assert kpi.unit == "ratio" and kpi.description == "orders / visits"
    assert kpi.owner == "growth" and kpi.models == ("churn",)  # left out: kept
    defined.kpis.define("conversion", unit="ratio", direction="higher_is_better", models=[])
    assert defined.kpis.get("conversion").models == ()  # follows every model again
    row = defined.kpis.list().row(0, named=True)
    assert (
        row["unit"] == "ratio" and json.loads(row["models"]) == [] and row["updated_at"] > row["defined_at"]
    )
    version = defined.version("kpis")
    defined.kpis.define("conversion", unit="ratio", direction="higher_is_better")  # unchanged: no write
    assert defined.version("kpis") == version


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unit": "%", "direction": "up"}, "not one of higher_is_better, lower_is_better"),
        ({"unit": "", "direction": "higher_is_better"}, "KPI unit ''"),
        ({"unit": "x" * 40, "direction": "higher_is_better"}, "1 to 32 characters"),
        ({"unit": "%", "direction": "higher_is_better", "models": "churn"}, r"models=\['churn'\]"),
    ],
)
def test_bad_definitions_are_refused(lake: metalake.Lake, options: dict[str, object], message: str) -> None:
    with pytest.raises(KpiError, match=message):
        lake.kpis.define("conversion", **options)  # type: ignore[arg-type]
    with pytest.raises(KpiError, match="KPI name"):
        lake.kpis.define(" conversion", unit="%", direction="higher_is_better")
    assert lake.version("kpis") is None or lake.read("kpis").is_empty()


# -- observations -----------------------------------------------------------------------------------------------


def test_observe_records_a_value_in_utc(defined: metalake.Lake) -> None:
    commit = defined.kpis.observe("conversion", 3, at=datetime(2026, 3, 1, 12), segment="country=DE")
    assert commit.rows == 1 and commit.operation == "kpi_observe"
    row = defined.read("kpi_observations").row(0, named=True)
    assert row["value"] == 3.0 and row["observed_at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert row["segment"] == "country=DE"
    assert defined.kpis.list()["last_value"][0] == 3.0


def test_observing_an_undefined_kpi_names_the_defined_ones(defined: metalake.Lake) -> None:
    with pytest.raises(KpiNotFound, match=r"Unknown KPI\(s\) 'revenue'\. Defined KPIs: conversion") as raised:
        defined.kpis.observe("revenue", 1.0)
    assert isinstance(raised.value, KeyError) and isinstance(raised.value, MetalakeError)
    with pytest.raises(KpiNotFound, match="Defined KPIs: none yet"):
        metalake.connect(defined.uri + "-other").kpis.observe("revenue", 1.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, "high"])
def test_values_must_be_finite_numbers(defined: metalake.Lake, value: object) -> None:
    with pytest.raises(KpiError, match=r"refused|must be numbers"):
        defined.kpis.observe("conversion", value)  # type: ignore[arg-type]
    assert defined.read("kpi_observations").is_empty()


def test_observe_many_writes_everything_or_nothing(defined: metalake.Lake) -> None:
    rows = [
        {"kpi": "conversion", "value": 1.5, "observed_at": "2026-03-01T00:00:00Z"},
        {"kpi": "conversion", "value": 2, "observed_at": T0 + DAY, "environment": "production"},
    ]
    commit = defined.kpis.observe_many(rows, source="warehouse")
    assert commit.rows == 2
    stored = defined.read("kpi_observations").sort("observed_at")
    assert stored["value"].to_list() == [1.5, 2.0] and stored["source"].to_list() == ["warehouse"] * 2
    version = defined.version("kpi_observations")
    bad = [*rows, {"kpi": "revenue", "value": 1.0, "observed_at": T0}]
    with pytest.raises(KpiNotFound, match="'revenue'"):
        defined.kpis.observe_many(bad)
    with pytest.raises(KpiError, match="unknown: colour"):
        defined.kpis.observe_many([{**rows[0], "colour": "red"}])
    with pytest.raises(KpiError, match=r"observed_at is not an ISO-8601 time .*row 1: 'last tuesday'"):
        defined.kpis.observe_many([rows[0], {**rows[0], "observed_at": "last tuesday"}])
    with pytest.raises(metalake.ContractError, match="observed_at"):
        defined.kpis.observe_many(
            pl.DataFrame({"kpi": ["conversion"], "value": [1.0], "observed_at": ["soon"]})
        )
    assert defined.version("kpi_observations") == version


def test_bulk_ingest_of_100k_rows_is_one_fast_commit(defined: metalake.Lake) -> None:
    n = 100_000
    frame = pl.DataFrame(
        {
            "kpi": ["conversion"] * n,
            "value": [float(i % 100) for i in range(n)],
            "observed_at": pl.datetime_range(T0, T0 + timedelta(seconds=n - 1), "1s", eager=True),
        }
    )
    started = time.perf_counter()
    commit = defined.kpis.observe_many(frame)
    elapsed = time.perf_counter() - started
    assert commit.rows == n and defined.history("kpi_observations").height == 2  # create + one append
    assert elapsed < 1, f"100k observations took {elapsed:.2f}s"  # README: under a second


def test_ingest_reads_csv_jsonl_and_parquet_once_each(defined: metalake.Lake, tmp_path: Path) -> None:
    csv_file = tmp_path / "obs.csv"
    csv_file.write_text(
        "kpi,value,observed_at,segment\n"
        "conversion,1.5,2026-03-01T00:00:00Z,\n"
        "conversion, 2.5 ,2026-03-02T00:00:00Z,country=DE\n"
    )
    commit = defined.kpis.ingest(csv_file)
    assert commit.rows == 2 and commit.operation == "kpi_observe"
    assert defined.kpis.ingest(csv_file).deduplicated  # the same file again: nothing written
    jsonl_file = tmp_path / "obs.jsonl"
    jsonl_file.write_text('{"kpi": "conversion", "value": 3, "observed_at": "2026-03-03T00:00:00+01:00"}\n')
    assert defined.kpis.ingest(jsonl_file).rows == 1
    parquet_file = tmp_path / "obs.parquet"
    pl.DataFrame({"kpi": ["conversion"], "value": [4.0], "observed_at": [T0]}).write_parquet(parquet_file)
    assert defined.kpis.ingest(parquet_file, source="nightly").rows == 1
    stored = defined.read("kpi_observations").sort("observed_at", "value")
    assert stored["value"].to_list() == [1.5, 4.0, 2.5, 3.0]
    assert stored["segment"].to_list() == [None, None, "country=DE", None]
    assert stored["source"].to_list() == ["obs.csv", "nightly", "obs.csv", "obs.jsonl"]
    assert stored["observed_at"][3] == datetime(2026, 3, 2, 23, tzinfo=UTC)


def test_ingest_refuses_a_bad_file_whole(defined: metalake.Lake, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("kpi,value,observed_at\nconversion,1,2026-03-01\nconversion,n/a,2026-03-02\n")
    with pytest.raises(
        KpiError, match=r"1 KPI observation\(s\) refused: the value is not a number \(row 1: 'n/a'\)"
    ):
        defined.kpis.ingest(bad)
    assert defined.read("kpi_observations").is_empty()
    with pytest.raises(IngestError, match="Cannot tell the format"):
        defined.kpis.ingest(tmp_path / "obs.txt")
    with pytest.raises(IngestError, match="is not a file"):
        defined.kpis.ingest(tmp_path / "missing.csv")


# -- impact -----------------------------------------------------------------------------------------------------


@pytest.fixture
def rollout(lake: metalake.Lake) -> metalake.Lake:
    """churn v1 in production from T0, replaced by v2 at T0 + 10 days; one observation a day at noon.

    Day d holds d while v1 serves (days 0-9) and 20 + d while v2 serves (days 10-16); a staging value and a
    segment sit around the switch.
    """
    lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.record("churn", 2, "production", at=T0 + 10 * DAY)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better", models=["churn"])
    lake.kpis.define("latency_ms", unit="ms", direction="lower_is_better")  # no models: follows every model
    lake.kpis.define("fraud_rate", unit="%", direction="lower_is_better", models=["fraud"])
    rows = []
    for day in range(17):
        value = float(day if day < 10 else 20 + day)
        noon = T0 + day * DAY + timedelta(hours=12)
        rows += [
            {"kpi": "conversion", "value": value, "observed_at": noon},
            {"kpi": "latency_ms", "value": value, "observed_at": noon, "environment": "production"},
            {"kpi": "fraud_rate", "value": value, "observed_at": noon},
        ]
    rows += [
        {"kpi": "conversion", "value": 1000.0, "observed_at": T0 + 9 * DAY, "environment": "staging"},
        {"kpi": "conversion", "value": 50.0, "observed_at": T0 + 9 * DAY, "segment": "country=DE"},
        {"kpi": "conversion", "value": 60.0, "observed_at": T0 + 10 * DAY, "segment": "country=DE"},
    ]
    lake.kpis.observe_many(rows)
    return lake


def row_for(frame: pl.DataFrame, version: int, kpi: str, segment: str | None = None) -> dict[str, object]:
    chosen = frame.filter(
        (pl.col("version") == version)
        & (pl.col("kpi") == kpi)
        & (pl.col("segment").is_null() if segment is None else pl.col("segment") == segment)
    )
    assert chosen.height == 1, chosen
    return chosen.row(0, named=True)


def test_impact_compares_the_week_before_and_after_a_deployment(rollout: metalake.Lake) -> None:
    impact = rollout.kpis.impact(model="churn")
    second = row_for(impact, 2, "conversion")
    assert second["before_count"] == 7 and second["before_mean"] == 6.0  # days 3-9; staging left out
    assert second["after_count"] == 7 and second["after_mean"] == 33.0  # days 10-16
    assert second["change"] == 27.0 and second["relative_change"] == 4.5 and second["improved"] is True
    assert second["previous_version"] == 1 and second["window_s"] == 7 * 86400
    assert second["before_from"] == T0 + 3 * DAY and second["after_until"] == T0 + 17 * DAY
    first = row_for(impact, 1, "conversion")
    assert first["before_count"] == 0 and first["before_mean"] is None and first["improved"] is None
    assert first["after_count"] == 7 and first["after_mean"] == 3.0  # days 0-6


def test_impact_follows_the_kpi_direction_and_its_models(rollout: metalake.Lake) -> None:
    impact = rollout.kpis.impact()
    latency = row_for(impact, 2, "latency_ms")
    assert latency["change"] == 27.0 and latency["improved"] is False  # lower is better: worse
    assert set(impact["kpi"].unique()) == {"conversion", "latency_ms"}  # fraud_rate follows only "fraud"
    assert rollout.kpis.impact(kpi="fraud_rate").is_empty()


def test_impact_compares_each_segment_on_its_own(rollout: metalake.Lake) -> None:
    segment = row_for(rollout.kpis.impact(), 2, "conversion", "country=DE")
    assert (segment["before_mean"], segment["after_mean"], segment["improved"]) == (50.0, 60.0, True)


def test_the_window_is_configurable(rollout: metalake.Lake) -> None:
    two_days = rollout.kpis.impact(kpi="conversion", window="2d")
    second = row_for(two_days, 2, "conversion")
    assert (second["before_count"], second["before_mean"]) == (2, 8.5)  # days 8-9
    assert (second["after_count"], second["after_mean"]) == (2, 30.5)  # days 10-11
    assert second["window_s"] == 2 * 86400
    long = rollout.kpis.impact(kpi="conversion", window=timedelta(days=14))
    first = row_for(long, 1, "conversion")
    assert first["after_count"] == 10 and first["after_until"] == T0 + 10 * DAY  # cut at v1's end
    second = row_for(long, 2, "conversion")
    assert second["before_count"] == 10 and second["before_from"] == T0  # not before v1 started
    with pytest.raises(KpiError, match="not a duration"):
        rollout.kpis.impact(window="7x")
    with pytest.raises(KpiError, match="longer than zero"):
        rollout.kpis.impact(window="0d")


IMPACT_ORDER = ["deployment_id", "kpi", "segment"]


@pytest.mark.parametrize("time_zone", ["UTC", "America/New_York"])
def test_the_bound_query_and_the_view_agree_at_the_default_settings(
    rollout: metalake.Lake, time_zone: str
) -> None:
    rollout.sql(f"SET TimeZone = '{time_zone}'")  # a fixed test value; New York moves its clocks on 8 March
    view = rollout.kpis.impact()  # the defaults: the materialized view
    bound = rollout.kpis.impact_rows(
        DEFAULT_IMPACT_WINDOW, DEFAULT_PRODUCTION_ENVIRONMENTS, {}, from_view=False
    )  # the view's query, with the settings bound as parameters
    assert view.height > 0
    assert view.sort(IMPACT_ORDER, nulls_last=False).equals(bound.sort(IMPACT_ORDER, nulls_last=False))
    second = row_for(view, 2, "conversion")
    assert second["before_from"] == T0 + 3 * DAY  # exactly 7 x 24 h before, across the clock change
    assert rollout.kpis.impact(window="168h").equals(view)


def test_the_default_window_is_exact_under_a_local_time_zone(rollout: metalake.Lake) -> None:
    """The same comparison in a process whose local time zone (TZ) is not UTC."""
    script = f"""
import polars as pl
import metalake
from metalake.kpis.kpis import DEFAULT_IMPACT_WINDOW
from metalake.core.vocabulary import DEFAULT_PRODUCTION_ENVIRONMENTS
lake = metalake.connect({rollout.uri!r})
order = {IMPACT_ORDER!r}
view = lake.kpis.impact().sort(order, nulls_last=False)
bound = lake.kpis.impact_rows(DEFAULT_IMPACT_WINDOW, DEFAULT_PRODUCTION_ENVIRONMENTS, {{}}, from_view=False)
assert view.equals(bound.sort(order, nulls_last=False))
row = view.filter((pl.col("version") == 2) & (pl.col("kpi") == "conversion") & pl.col("segment").is_null())
print(row["before_from"][0].isoformat())
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TZ": "America/New_York"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (T0 + 3 * DAY).isoformat()


def test_after_a_canary_the_rollout_is_compared_with_the_old_version(lake: metalake.Lake) -> None:
    lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.record("churn", 2, "production", at=T0 + 10 * DAY, replace_active=False)  # canary
    lake.deployments.record("churn", 2, "production", at=T0 + 12 * DAY)  # full rollout
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(
        [{"kpi": "conversion", "value": float(day), "observed_at": T0 + day * DAY} for day in range(16)]
    )
    impact = lake.kpis.impact()
    rollout = impact.filter(pl.col("deployed_at") == T0 + 12 * DAY).row(0, named=True)
    assert rollout["previous_version"] == 1  # not the canary
    assert rollout["before_from"] == T0 + 5 * DAY  # the week before, not just the canary's two days
    assert (rollout["before_count"], rollout["before_mean"]) == (7, 8.0)  # days 5-11


def test_the_before_window_never_reaches_back_past_an_earlier_end(lake: metalake.Lake) -> None:
    first = lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.end(first.deployment_id, at=T0 + 5 * DAY, reason="incident")
    lake.deployments.record("churn", 2, "production", at=T0 + 10 * DAY)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(
        [{"kpi": "conversion", "value": float(day), "observed_at": T0 + day * DAY} for day in range(14)]
    )
    second = row_for(lake.kpis.impact(), 2, "conversion")
    assert second["previous_version"] is None  # it replaced nothing: nothing served
    assert (
        second["before_from"] == T0 + 5 * DAY and second["before_count"] == 5
    )  # days 5-9, not v1's days 3-4


def test_unlabeled_observations_count_for_production_only(lake: metalake.Lake) -> None:
    from metalake.cli.deploy import impact_summary

    lake.deployments.record("churn", 1, "staging", at=T0 + 10 * DAY)
    lake.deployments.record("churn", 1, "production", at=T0 + 10 * DAY)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(  # production traffic, not labeled with an environment
        [{"kpi": "conversion", "value": float(day), "observed_at": T0 + day * DAY} for day in range(20)]
    )
    impact = lake.kpis.impact()
    staging = impact.filter(pl.col("environment") == "staging").row(0, named=True)
    assert (staging["before_count"], staging["after_count"], staging["improved"]) == (0, 0, None)
    production = impact.filter(pl.col("environment") == "production").row(0, named=True)
    assert (production["before_count"], production["after_count"]) == (7, 7)
    verdicts = dict(zip(impact["environment"], impact_summary(impact)["verdict"], strict=True))
    assert verdicts == {"staging": "not enough data", "production": "better"}
    elsewhere = lake.kpis.impact(unlabeled_environment="staging")
    assert elsewhere.filter(pl.col("environment") == "staging")["after_count"].to_list() == [7]
    nowhere = lake.kpis.impact(unlabeled_environment=None)
    assert nowhere["after_count"].to_list() == [0, 0]
    with pytest.raises(KpiError, match="unlabeled_environment"):
        lake.kpis.impact(unlabeled_environment=" ")


# -- production environments ----------------------------------------------------------------------------------


def unlabeled_traffic(lake: metalake.Lake, *environments: str) -> metalake.Lake:
    """churn v1 deployed to each environment at T0 + 10 days; conversion observed daily without an environment."""
    for environment in environments:
        lake.deployments.record("churn", 1, environment, at=T0 + 10 * DAY)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(
        [{"kpi": "conversion", "value": float(day), "observed_at": T0 + day * DAY} for day in range(20)]
    )
    return lake


def counts(impact: pl.DataFrame) -> dict[str, tuple[int, int]]:
    return {
        row["environment"]: (row["before_count"], row["after_count"]) for row in impact.iter_rows(named=True)
    }


@pytest.mark.parametrize("environment", ["prod", "prd", "live"])
def test_a_deployment_to_prod_is_judged_by_unlabeled_observations(
    lake: metalake.Lake, environment: str
) -> None:
    """The trap: a deployment to `prod` and observations without an environment gave 0 and 0 and no word why."""
    unlabeled_traffic(lake, environment, "staging")
    assert counts(lake.kpis.impact()) == {environment: (7, 7), "staging": (0, 0)}
    row = lake.sql(
        "select before_mean, after_mean, improved from model_kpi_impact where environment = $e",
        {"e": environment},
    ).fetchall()
    assert row == [(6.0, 13.0, True)]  # days 3-9 and 10-16


def test_the_view_holds_the_default_production_environments() -> None:
    from metalake.core.sql import bundled_views

    select = bundled_views()["model_kpi_impact"].select
    assert DEFAULT_PRODUCTION_ENVIRONMENTS == ("production", "prod", "prd", "live")
    assert sql_list(DEFAULT_PRODUCTION_ENVIRONMENTS) in select
    assert f"policy = '{PRODUCTION_ENVIRONMENTS_POLICY}'" in select


def test_production_environments_are_an_audited_lake_setting(lake: metalake.Lake) -> None:
    unlabeled_traffic(lake, "production", "main")
    assert lake.kpis.production_environments() == DEFAULT_PRODUCTION_ENVIRONMENTS
    assert counts(lake.kpis.impact()) == {"production": (7, 7), "main": (0, 0)}
    time.sleep(0.05)
    before_the_change = datetime.now(UTC)
    time.sleep(0.05)
    assert lake.kpis.set_production_environments(["main"], reason="main is our production") == ("main",)
    assert lake.kpis.production_environments() == ("main",)
    assert metalake.connect(lake.uri).kpis.production_environments() == ("main",)  # every client
    assert lake.registry.policy.gates == {}  # the registry's policy is another row of `policies`
    latest = lake.history("policies").row(0, named=True)
    assert (latest["operation"], latest["actor"], latest["reason"]) == (
        "set_production_environments",
        "tester",
        "main is our production",
    )
    assert lake.sql(
        "select operation from audit_log where table_name = 'policies' order by committed_at desc limit 1"
    ).fetchall() == [("set_production_environments",)]
    # the view, the bound query and lake.kpis.impact() all follow the stored list
    assert counts(lake.kpis.impact()) == {"production": (0, 0), "main": (7, 7)}
    assert lake.sql(
        "select environment, after_count from model_kpi_impact order by environment"
    ).fetchall() == [("main", 7), ("production", 0)]
    assert counts(lake.kpis.impact(window="7d", unlabeled_environment=LAKE_SETTING)) == counts(
        lake.kpis.impact_rows(DEFAULT_IMPACT_WINDOW, None, {}, from_view=False)
    )
    assert counts(lake.kpis.impact(window="2d")) == {"production": (0, 0), "main": (2, 2)}
    # time travel reads the list in force then
    past = lake.as_of(before_the_change)
    assert past.kpis.production_environments() == DEFAULT_PRODUCTION_ENVIRONMENTS
    assert counts(past.kpis.impact()) == {"production": (7, 7), "main": (0, 0)}
    assert past.sql(
        "select count(*) from model_kpi_impact where after_count = 7 and environment = 'production'"
    )
    version = lake.version("policies")
    lake.kpis.set_production_environments(("main",))  # the list in force: nothing written
    assert lake.version("policies") == version
    lake.kpis.set_production_environments(DEFAULT_PRODUCTION_ENVIRONMENTS)  # back to the defaults, recorded
    assert lake.version("policies") == version + 1
    assert counts(lake.kpis.impact()) == {"production": (7, 7), "main": (0, 0)}


@pytest.mark.parametrize(
    ("environments", "message"),
    [
        ([], r"needs at least one environment, e\.g\. \['production', 'prod'\]"),
        ("prod", r"takes a list of environment names, e\.g\. \['prod'\]"),
        (None, "takes a list of environment names"),
        (["prod", 7], r"environment names are text .* not 7"),
        (["prod", " live"], r"without surrounding spaces.* not ' live'"),
        (["prod", ""], r"not ''"),
        (["prod", "live", "prod"], r"lists 'prod' more than once: name each environment once"),
    ],
)
def test_bad_production_environments_are_refused_and_nothing_is_written(
    lake: metalake.Lake, environments: object, message: str
) -> None:
    version = lake.version("policies")
    with pytest.raises(KpiError, match=message) as refused:
        lake.kpis.set_production_environments(environments)  # type: ignore[arg-type]
    assert isinstance(refused.value, MetalakeError) and isinstance(refused.value, ValueError)
    assert lake.version("policies") == version
    assert lake.kpis.production_environments() == DEFAULT_PRODUCTION_ENVIRONMENTS


def test_impact_takes_other_unlabeled_environments_for_one_query(lake: metalake.Lake) -> None:
    unlabeled_traffic(lake, "production", "main", "staging")
    both = lake.kpis.impact(unlabeled_environment=["main", "staging"])
    assert counts(both) == {"production": (0, 0), "main": (7, 7), "staging": (7, 7)}
    assert counts(lake.kpis.impact(unlabeled_environment=[])) == counts(
        lake.kpis.impact(unlabeled_environment=None)
    )
    assert lake.kpis.production_environments() == DEFAULT_PRODUCTION_ENVIRONMENTS  # nothing stored
    with pytest.raises(KpiError, match="unlabeled_environment lists 'main' more than once"):
        lake.kpis.impact(unlabeled_environment=["main", "main"])


def test_a_malformed_stored_list_says_how_to_set_it_again(lake: metalake.Lake) -> None:
    lake.append("policies", [{"policy": PRODUCTION_ENVIRONMENTS_POLICY, "document": '{"prod": true}'}])
    with pytest.raises(KpiError, match=r"cannot be read: .*set_production_environments"):
        lake.kpis.production_environments()


# -- the note: why a side has no observations -------------------------------------------------------------------


def note_for(impact: pl.DataFrame, environment: str) -> str | None:
    chosen = impact.filter(pl.col("environment") == environment)
    assert chosen.height == 1, chosen
    note: str | None = chosen["note"][0]
    return note


def test_the_note_says_which_observations_were_searched_and_which_did_not_count(lake: metalake.Lake) -> None:
    unlabeled_traffic(lake, "production", "staging")
    lake.kpis.observe_many(
        [{"kpi": "conversion", "value": 1.0, "observed_at": T0 + 9 * DAY, "environment": "canary"}]
    )
    impact = lake.kpis.impact()
    assert note_for(impact, "production") is None  # both sides observed
    assert note_for(impact, "staging") == (
        "no observations labeled 'staging' in the 7 days before or in the 7 days after; "
        "14 unlabeled observations there count only for deployments to production environments "
        "(production, prod, prd, live); 1 observation there is labeled with another environment, e.g. 'canary'"
    )
    assert lake.sql("select note from model_kpi_impact where environment = 'staging'").fetchall() == [
        (note_for(impact, "staging"),)
    ]
    lake.kpis.set_production_environments(["production", "edge"])
    assert "(production, edge)" in str(note_for(lake.kpis.impact(), "staging"))
    hours = note_for(lake.kpis.impact(window="36h"), "staging")
    assert str(hours).startswith(
        "no observations labeled 'staging' in the 36 hours before or in the 36 hours"
    )
    nowhere = note_for(lake.kpis.impact(unlabeled_environment=None), "production")
    assert nowhere == (
        "no observations labeled 'production' in the 7 days before or in the 7 days after; 14 unlabeled "
        "observations there count only for deployments to production environments (none in this query); "
        "1 observation there is labeled with another environment, e.g. 'canary'"
    )


def test_the_note_names_an_environment_labeled_differently(lake: metalake.Lake) -> None:
    lake.deployments.record("churn", 1, "prd", at=T0 + 10 * DAY)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(
        [
            {
                "kpi": "conversion",
                "value": float(day),
                "observed_at": T0 + day * DAY,
                "environment": "production",
            }
            for day in range(20)
        ]
    )
    assert note_for(lake.kpis.impact(), "prd") == (
        "no observations labeled 'prd' or unlabeled in the 7 days before or in the 7 days after; "
        "14 observations there are labeled with another environment, e.g. 'production'"
    )


def test_the_note_says_when_nothing_has_counted_since_the_deployment(lake: metalake.Lake) -> None:
    unlabeled_traffic(lake)
    lake.deployments.record("churn", 1, "production", at=T0 + 19 * DAY + timedelta(hours=1))  # after the last
    row = lake.kpis.impact().row(0, named=True)
    assert (row["before_count"], row["after_count"]) == (7, 0)
    assert row["note"] == (
        "no observations labeled 'production' or unlabeled in the 7 days after; none since it started: the "
        "window has not passed yet, or the values have not arrived"
    )


def test_the_note_says_when_a_window_was_cut_short_or_has_no_time(lake: metalake.Lake) -> None:
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    lake.kpis.observe_many(  # days 5 to 19, none in the first days
        [{"kpi": "conversion", "value": float(day), "observed_at": T0 + day * DAY} for day in range(5, 20)]
    )
    lake.deployments.record("churn", 1, "production", at=T0)
    lake.deployments.record("churn", 2, "production", at=T0 + 2 * DAY)  # replaces v1 after two days
    brief = lake.deployments.record("churn", 1, "live", at=T0 + 30 * DAY)
    lake.deployments.end(brief.deployment_id, at=T0 + 30 * DAY + timedelta(hours=3))
    lake.deployments.record("churn", 2, "live", at=T0 + 33 * DAY)  # 3 days after v1 there ended
    instant = lake.deployments.record("churn", 1, "prod", at=T0 + 6 * DAY)
    lake.deployments.end(instant.deployment_id, at=T0 + 6 * DAY)
    lake.deployments.record("churn", 3, "prd", at=T0 + 8 * DAY)
    lake.deployments.record("churn", 4, "prd", at=T0 + 8 * DAY)  # replaces v3 at the same moment
    impact = lake.kpis.impact()
    notes = {(r["environment"], r["version"]): r["note"] for r in impact.iter_rows(named=True)}
    assert notes[("production", 2)] == (
        "no observations labeled 'production' or unlabeled before it, since the deployment it replaced started"
    )
    assert notes[("live", 1)] == (
        "no observations labeled 'live' or unlabeled in the 7 days before or in the time it served, until it ended"
    )
    assert notes[("live", 2)] == (
        "no observations labeled 'live' or unlabeled before it, since an earlier deployment there ended or in the "
        "7 days after"
    )
    assert notes[("prod", 1)] == "nothing after it to compare: it ended as it started"  # day 5 is before
    assert str(notes[("prd", 4)]).startswith(
        "nothing before it to compare: the deployment it replaced started"
    )
    assert notes[("prd", 3)] is not None and notes[("production", 1)] is not None


def test_impact_shows_offline_metrics_and_training_data_quality(rollout: metalake.Lake) -> None:
    register_dataset_versions(rollout, "churn_train", 2)
    register_dataset_versions(rollout, "churn_holdout", 1)
    with rollout.runs.start(experiment="churn", wait=True) as run:
        run.log_metric("val_auc", 0.91)
        run.log_input("churn_train", version=2)
        run.log_input("churn_holdout", version=1)
    rollout.append(
        "model_versions", [{"model": "churn", "version": 2, "run_id": run.run_id, "artifact_uri": "s3://m/2"}]
    )
    validation = {"engine": "pandera", "suite_name": "schema", "unsuccessful": 0}
    rollout.append(
        "dq_validations",
        [
            {**validation, "validation_id": "v1", "dataset": "churn_train", "version": 2, "success": False,
             "evaluated": 10, "successful": 6, "unsuccessful": 4, "validated_at": T0},
            {**validation, "validation_id": "v2", "dataset": "churn_train", "version": 2, "success": True,
             "evaluated": 10, "successful": 10, "validated_at": T0 + DAY},
            {**validation, "validation_id": "v3", "dataset": "churn_train", "version": 1, "success": False,
             "evaluated": 10, "successful": 0, "unsuccessful": 10, "validated_at": T0},
        ],
    )  # fmt: skip
    impact = rollout.kpis.impact(kpi="conversion")
    second = row_for(impact, 2, "conversion")
    assert second["registered"] and second["run_id"] == run.run_id
    assert second["offline_metrics"] == {"val_auc": 0.91}
    assert second["training_inputs"] == 2 and second["validated_inputs"] == 1  # the holdout is not validated
    assert second["training_data_pass_rate"] == 1.0  # the latest validation of churn_train v2 passed
    assert second["training_data_ok"] is None  # unknown while the holdout is not validated (as the gate says)
    first = row_for(impact, 1, "conversion")
    assert not first["registered"] and first["offline_metrics"] is None and first["training_data_ok"] is None
    assert rollout.sql(
        "select offline_metrics['val_auc'] from model_kpi_impact where version = 2"
    ).fetchall()[0] == (0.91,)


def test_an_unversioned_training_input_has_unknown_quality(rollout: metalake.Lake) -> None:
    with rollout.runs.start(experiment="churn", wait=True) as run:
        run.log_input("churn_raw")  # which version it read is unknown
    rollout.append(
        "model_versions", [{"model": "churn", "version": 2, "run_id": run.run_id, "artifact_uri": "s3://m/2"}]
    )
    rollout.append(  # a validation of some unversioned churn_raw: not necessarily the data the run read
        "dq_validations",
        [
            {"validation_id": "v1", "dataset": "churn_raw", "version": None, "engine": "pandera",
             "suite_name": "schema", "success": False, "evaluated": 10, "successful": 0, "unsuccessful": 10,
             "validated_at": T0},
        ],
    )  # fmt: skip
    second = row_for(rollout.kpis.impact(kpi="conversion"), 2, "conversion")
    assert (second["training_inputs"], second["validated_inputs"]) == (1, 0)
    assert second["training_data_ok"] is None and second["training_data_pass_rate"] is None


def test_observations_in_the_future_are_refused_one_by_one_and_in_batches(lake: metalake.Lake) -> None:
    lake.kpis.define("conversion", unit="%", direction="higher_is_better")
    with pytest.raises(KpiError, match=r"Observation time \(at\) 2099-01-01T00:00:00Z is in the future"):
        lake.kpis.observe("conversion", 3.2, at="2099-01-01")
    rows = [
        {"kpi": "conversion", "value": 1.0, "observed_at": "2026-03-01T00:00:00Z"},
        {"kpi": "conversion", "value": 2.0, "observed_at": datetime(2099, 1, 1, tzinfo=UTC)},
    ]
    with pytest.raises(
        KpiError, match=r"1 KPI observation\(s\) refused: observed_at is in the future.*row 1"
    ):
        lake.kpis.observe_many(rows)
    frame = pl.DataFrame(
        {"kpi": ["conversion"] * 2, "value": [1.0, 2.0], "observed_at": ["2026-03-01", "2099-01-01"]}
    )
    with pytest.raises(KpiError, match="row 1"):
        lake.kpis.observe_many(frame)
    assert lake.read("kpi_observations").is_empty()
