"""`lake.masked()`: the lake as a reader without `unmask` sees it, whichever read path it takes (SQL and views,
`read` and `scan`, the namespaces' caches, the audit log, the past), read-only, and without changing what the
clear lake and its writers see."""

from __future__ import annotations

import getpass
from pathlib import Path

import duckdb
import pytest

import metalake
from metalake.core.masking import REDACTED

KEY = bytes.fromhex("3c" * 32)


@pytest.fixture
def logged(lake: metalake.Lake) -> tuple[metalake.Lake, str]:
    with lake.runs.start("churn", name="nightly") as run:
        run.log_params({"lr": 0.1, "db_password": "hunter2"})
        run.set_tags({"mlflow.user": "someone@example.com", "team": "growth"})
        run.log_metrics({"auc": 0.9}, step=1)
    lake.runs.wait()
    return lake, run.run_id


def test_every_read_path_masks_identities_and_secret_values(logged: tuple[metalake.Lake, str]) -> None:
    lake, run_id = logged
    masked = lake.masked(lake.masker(key=KEY))
    tester, user = (masked.masked_by.mask_value("hash", name) for name in ("tester", getpass.getuser()))  # type: ignore[union-attr]

    details = masked.runs.get(run_id)
    assert details.params == {"lr": "0.1", "db_password": REDACTED}
    assert details.tags == {"mlflow.user": REDACTED, "team": "growth"}
    assert details.info["user"] == user
    assert masked.sql("select distinct recorded_by from metrics").fetchall() == [(tester,)]
    assert masked.sql("select distinct user from runs_current").fetchall() == [(user,)]
    assert masked.read("params", where="key = 'db_password'")["value"].to_list() == [REDACTED]
    assert masked.scan("runs").select("user").unique().collect()["user"].to_list() == [user]
    assert masked.runs.search("churn")["user"].to_list() == [user]
    assert set(masked.history("runs")["actor"]) == {tester}
    assert {actor for (actor,) in masked.sql("select distinct actor from audit_log").fetchall()} == {tester}
    assert "hunter2" not in str(masked.arrow_relations(["params"])["params"].to_pylist())


def test_masking_comes_before_predicates_and_keeps_joins(logged: tuple[metalake.Lake, str]) -> None:
    lake, _ = logged
    masked = lake.masked(lake.masker(key=KEY))
    assert masked.sql("select count(*) from runs where recorded_by = 'tester'").fetchall() == [(0,)]
    joined = masked.sql(
        "select count(distinct m.key) from metrics m join runs r on r.run_id = m.run_id "
        "and r.recorded_by = m.recorded_by"
    ).fetchall()
    assert joined == [(1,)], "the same actor hashes the same in every table"


def test_the_clear_lake_is_unchanged_and_its_writers_are_not_misled(
    logged: tuple[metalake.Lake, str],
) -> None:
    lake, run_id = logged
    masked = lake.masked(lake.masker(key=KEY))
    assert masked.runs.request_state(run_id)["user"].startswith("h:")
    assert masked.runs.get(run_id).params["db_password"] == REDACTED
    lake.runs.log_batch(run_id, params={"db_password": "hunter2"})  # the same value again: no change
    assert lake.runs.get(run_id).params["db_password"] == "hunter2"
    assert lake.sql("select distinct recorded_by from runs").fetchall() == [("tester",)]


def test_the_past_of_a_masked_lake_is_masked(logged: tuple[metalake.Lake, str]) -> None:
    lake, run_id = logged
    lake.snapshot("v1")
    past = lake.masked(lake.masker(key=KEY)).as_of("v1")
    assert past.masked_by is not None and past.moment is not None
    assert past.runs.get(run_id).params["db_password"] == REDACTED
    assert "masked" in repr(past)


def test_a_masked_lake_refuses_writes_and_leaves_nothing_to_replay(
    logged: tuple[metalake.Lake, str], tmp_path: Path
) -> None:
    lake, run_id = logged
    masked = lake.masked(lake.masker(key=KEY))
    journal = {path: path.read_bytes() for path in (tmp_path / "journal").rglob("*.journal")}
    with pytest.raises(metalake.ReadOnlyLakeError, match="masked values"):
        masked.runs.start("churn")
    with pytest.raises(metalake.ReadOnlyLakeError, match="masked values"):
        masked.runs.log_batch(run_id, params={"x": "1"})
    with pytest.raises(metalake.ReadOnlyLakeError, match="masked values"):
        masked.append("kpi_observations", [])
    assert {path: path.read_bytes() for path in (tmp_path / "journal").rglob("*.journal")} == journal
    assert metalake.connect(lake.location.uri).runs.search("churn").height == 1


def test_an_export_for_a_principal_is_masked_unless_it_may_unmask(
    logged: tuple[metalake.Lake, str], tmp_path: Path
) -> None:
    from metalake.exports.duckdb_file import export_duckdb

    lake, _ = logged
    lake.access.init("root")
    lake.access.create_principal("analyst")
    masked = export_duckdb(lake, tmp_path / "analyst.duckdb", masked_for="analyst")
    clear = export_duckdb(lake, tmp_path / "root.duckdb", masked_for="root")
    assert (masked.masked, clear.masked) == (True, False)
    with duckdb.connect(str(tmp_path / "analyst.duckdb"), read_only=True) as database:
        assert database.sql("select value from params where key = 'db_password'").fetchall() == [(REDACTED,)]
        [(user,)] = database.sql("select distinct user from runs_current").fetchall()
        assert user.startswith("h:")
        assert database.sql("select distinct masked_for, masked from metalake_export").fetchall() == [
            ("analyst", True)
        ]
    with duckdb.connect(str(tmp_path / "root.duckdb"), read_only=True) as database:
        assert database.sql("select value from params where key = 'db_password'").fetchall() == [("hunter2",)]
    with pytest.raises(metalake.PrincipalNotFound):
        export_duckdb(lake, tmp_path / "nobody.duckdb", masked_for="nobody")


@pytest.mark.parametrize("actors", [3, 40])
def test_sql_hashes_from_a_dictionary_of_the_values_match_the_hash_of_each_value(
    lake: metalake.Lake, actors: int
) -> None:
    """A masked session looks the hashes of a column's few distinct values up (a CASE for up to 8, an ENUM
    index for more) instead of hashing every row: the hashes are those of `mask_value`, a value added in a
    later version is hashed too, and filters, group-bys and joins see the same values."""
    names = [f"trainer-{number}@example.com" for number in range(actors)]
    for name in names:
        writer = metalake.connect(lake.location.uri, actor=name)
        with writer.runs.start("churn", name=name) as run:
            run.log_metrics({"auc": 0.5}, step=1)
        writer.close()
    masked = lake.masked(lake.masker(key=KEY))
    masker = masked.masked_by
    assert masker is not None
    hashed = sorted(str(masker.mask_value("hash", name)) for name in names)
    grouped = masked.sql(
        "select recorded_by, count(*) from metrics group by recorded_by order by 1"
    ).fetchall()
    assert grouped == [(value, 1) for value in hashed]
    one = hashed[0]
    assert masked.sql("select count(*) from metrics where recorded_by = ?", [one]).fetchall() == [(1,)]
    joined = masked.sql(
        "select count(distinct m.run_id) from metrics m join runs r on r.run_id = m.run_id "
        "and r.recorded_by = m.recorded_by"
    ).fetchall()
    assert joined == [(actors,)]

    late = metalake.connect(lake.location.uri, actor="late@example.com")
    with late.runs.start("churn", name="late") as run:
        run.log_metrics({"auc": 0.5}, step=1)
    late.close()
    seen = {value for (value,) in masked.sql("select distinct recorded_by from metrics").fetchall()}
    assert seen == {*hashed, masker.mask_value("hash", "late@example.com")}


def test_a_value_missing_from_the_dictionary_is_hashed_all_the_same(lake: metalake.Lake) -> None:
    from metalake.core.masking import HashDictionary

    masker = lake.masker(key=KEY)
    relation = "(select * from (values ('a'), ('b'), ('c'), (null)) as t(recorded_by))"
    for known in (HashDictionary(("a",)), HashDictionary(tuple("abcdefghij"), "__enum_test")):
        connection = duckdb.connect()
        if known.enum_type:
            values = ", ".join(f"'{value}'" for value in known.values)
            connection.execute(f'create type "{known.enum_type}" as enum ({values})')
        select = masker.replacing_select("metrics", relation, {"recorded_by": known})
        got = connection.sql(f"select recorded_by from ({select})").fetchall()
        assert got == [(masker.mask_value("hash", value),) for value in ("a", "b", "c", None)]


def test_profiles_hide_the_statistics_of_sensitive_dataset_columns(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    """min, max and top values reveal values: a masked reader keeps only the counts of a column marked
    sensitive at registration (and by later versions) or named like a secret, on every read path."""
    import polars as pl

    first, second = tmp_path / "v1.parquet", tmp_path / "v2.parquet"
    frame = {"customer_id": ["C-1001", "C-1002"], "contact_email": ["a@x.io", "b@x.io"], "amount": [5.0, 7.0]}
    pl.DataFrame(frame).write_parquet(first)
    pl.DataFrame({**frame, "amount": [6.0, 8.0]}).write_parquet(second)
    lake.datasets.register("orders", first, sensitive=["customer_id"])
    later = lake.datasets.register("orders", second)
    assert later.sensitive_columns == ["customer_id"], "a later version keeps the marks"
    assert later.profile["customer_id"]["min"] == "C-1001", "the clear lake is unchanged"
    with pytest.raises(metalake.errors.DatasetError, match="customer"):
        lake.datasets.register("orders", second, sensitive=["customer"])

    masked = lake.masked(lake.masker(key=KEY))
    for version in (masked.datasets.get("orders", 1), masked.datasets.get("orders")):
        for column in ("customer_id", "contact_email"):
            assert version.profile[column]["masked"] is True
            assert not {"min", "max", "top_values"} & set(version.profile[column]), version.profile[column]
            assert version.profile[column]["null_count"] == 0
        assert version.profile["amount"]["max"] in (7.0, 8.0), "other columns keep their statistics"
    diff = masked.datasets.diff("orders", 1, 2).profile
    assert "C-1001" not in str(diff.to_dicts())
    for query in ("select profile from dataset_versions", "select * from dataset_versions_current"):
        text = str(masked.sql(query).fetchall())
        assert "C-1001" not in text and "a@x.io" not in text, query
    assert "C-1001" not in str(masked.arrow_relations(["dataset_versions"])["dataset_versions"].to_pylist())
    recorded = masked.sql("select distinct recorded_by from dataset_versions").fetchall()
    assert recorded == [(masked.masked_by.mask_value("hash", "tester"),)], "hashed once, not twice"  # type: ignore[union-attr]
