"""The facade: connect, append, read, scan, SQL, history, time travel and snapshots on a real local lake."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import metalake
from metalake import Commit, QueryError, ReadOnlyLakeError, SnapshotExists, SnapshotNotFound

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def metrics(run_id: str, values: list[float], key: str = "loss") -> list[dict[str, object]]:
    return [
        {"run_id": run_id, "key": key, "value": v, "step": i, "timestamp": T0 + timedelta(seconds=i)}
        for i, v in enumerate(values)
    ]


def run_event(run_id: str, status: str, at: datetime, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"{run_id}-{status}",
        "run_id": run_id,
        "experiment": "churn",
        "name": f"name-{run_id}",
        "status": status,
        "start_time": T0,
        "end_time": at if status != "running" else None,
        "event_time": at,
        **extra,
    }


def test_connect_creates_every_table_and_defaults_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METALAKE_ACTOR", "ci-bot")
    lake = metalake.connect()
    assert Path(lake.uri) == tmp_path / "lake"
    assert lake.actor == "ci-bot"
    assert (tmp_path / "lake" / "metrics" / "_delta_log").is_dir()
    monkeypatch.setenv("METALAKE_URI", str(tmp_path / "elsewhere"))
    assert Path(metalake.connect().uri) == tmp_path / "elsewhere"


def test_file_uri_is_a_local_lake(tmp_path: Path) -> None:
    lake = metalake.connect(f"file://{tmp_path / 'lake'}")
    assert lake.uri == str(tmp_path / "lake")


def test_append_returns_the_commit_and_records_metadata(lake: metalake.Lake) -> None:
    commit = lake.append(
        "metrics", metrics("r1", [0.9, 0.5]), actor="trainer", reason="epoch 1", idempotency_key="r1:1"
    )
    assert commit == Commit("metrics", 1, 2, "append", "r1:1", False)
    again = lake.append("metrics", metrics("r1", [0.9, 0.5]), idempotency_key="r1:1")
    assert again.deduplicated and again.rows == 0 and again.version == 1
    assert lake.read("metrics").height == 2
    history = lake.history("metrics")
    assert history.columns == [
        "version",
        "timestamp",
        "operation",
        "actor",
        "reason",
        "rows_added",
        "idempotency_key",
    ]
    latest = history.row(0, named=True)
    assert (latest["version"], latest["actor"], latest["reason"], latest["rows_added"]) == (
        1,
        "trainer",
        "epoch 1",
        2,
    )
    assert latest["idempotency_key"] == "r1:1" and latest["operation"] == "append"
    assert lake.history("metrics", limit=1).height == 1
    assert lake.read("metrics").get_column("recorded_by").to_list() == ["trainer", "trainer"]


def test_read_with_columns_and_filters(lake: metalake.Lake) -> None:
    lake.append("metrics", metrics("r1", [3.0, 2.0, 1.0]) + metrics("r2", [5.0]))
    assert lake.read("metrics", where="run_id = 'r1' and step >= 1", columns=["step"]).get_column(
        "step"
    ).to_list() == [1, 2]
    assert lake.read("metrics", where=pl.col("value") > 2.5).height == 2
    assert lake.scan("metrics").filter(pl.col("run_id") == "r2").collect().height == 1
    with pytest.raises(QueryError, match="Unknown column"):
        lake.read("metrics", columns=["nope"])
    with pytest.raises(QueryError, match="Invalid filter"):
        lake.read("metrics", where="no_such_column > 1")


def test_sql_sees_tables_and_views_and_binds_parameters(lake: metalake.Lake) -> None:
    lake.append("metrics", metrics("r1", [0.9, 0.4, 0.6]))
    lake.append(
        "runs", [run_event("r1", "running", T0), run_event("r1", "finished", T0 + timedelta(minutes=5))]
    )
    summary = lake.sql("select * from metric_summary where run_id = ?", ["r1"]).pl().row(0, named=True)
    assert (summary["last_value"], summary["min_value"], summary["max_value"], summary["count"]) == (
        0.6,
        0.4,
        0.9,
        3,
    )
    current = lake.sql(
        "select run_id, experiment, name, status, start_time, end_time from runs_current"
    ).fetchall()
    assert current == [("r1", "churn", "name-r1", "finished", T0, T0 + timedelta(minutes=5))]
    assert lake.sql("select count(*) from metrics").fetchall()[0] == (3,)
    # A live lake sees new commits in the same session.
    lake.append("metrics", metrics("r2", [1.0]))
    assert lake.sql("select count(*) from metrics").fetchall()[0] == (4,)


def test_audit_log_lists_every_commit_with_actor_and_reason(lake: metalake.Lake) -> None:
    lake.append("metrics", metrics("r1", [1.0]), actor="alice", reason="first numbers")
    lake.append("params", [{"run_id": "r1", "key": "depth", "value": "6"}], actor="bob")
    log = lake.sql("select table_name, version, operation, actor, reason, rows_added from audit_log").pl()
    assert log.row(0) == ("params", 1, "append", "bob", None, 1)
    assert ("metrics", 1, "append", "alice", "first numbers", 1) in log.rows()
    assert log.filter(pl.col("operation") == "create_table").height >= 22


def test_bad_sql_gives_a_query_error_listing_tables(lake: metalake.Lake) -> None:
    with pytest.raises(QueryError, match="Available tables and views"):
        lake.sql("select * from metricz").fetchall()
    with pytest.raises(QueryError):
        lake.sql("selec 1")


def test_as_of_time_resolves_every_table_and_view(lake: metalake.Lake) -> None:
    lake.append("metrics", metrics("r1", [1.0, 2.0]))
    lake.append("runs", [run_event("r1", "running", T0)])
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    lake.append("metrics", metrics("r2", [7.0]))
    lake.append("runs", [run_event("r1", "finished", T0 + timedelta(hours=1))])
    past = lake.as_of(middle)
    assert past.read("metrics").height == 2
    assert past.sql("select count(*) from metrics").fetchall()[0] == (2,)
    assert past.sql("select status from runs_current").fetchall()[0] == ("running",)
    assert past.history("metrics").get_column("version").to_list() == [1, 0]
    assert lake.as_of(middle.isoformat()).read("metrics").height == 2
    assert lake.sql("select status from runs_current").fetchall()[0] == ("finished",)
    assert "as_of" in repr(past)


def test_a_time_before_the_first_commit_of_a_table_gives_an_empty_table(lake: metalake.Lake) -> None:
    created = lake.created_at()
    assert created is not None
    time.sleep(0.05)
    lake.append("metrics", metrics("r1", [1.0]))
    early = lake.as_of(created)
    assert early.read("metrics").is_empty()
    assert early.read("metrics").columns == lake.spec("metrics").column_names
    assert early.sql("select count(*) from metric_summary").fetchall()[0] == (0,)
    with pytest.raises(metalake.TimeTravelError, match="the lake was created at"):
        lake.as_of("2001-01-01")


def test_writes_on_a_past_lake_are_refused(lake: metalake.Lake) -> None:
    past = lake.as_of(datetime.now(UTC))
    with pytest.raises(ReadOnlyLakeError, match="read-only"):
        past.append("metrics", metrics("r1", [1.0]))
    with pytest.raises(ReadOnlyLakeError):
        past.snapshot("nope")


def test_snapshots_pin_every_table(lake: metalake.Lake) -> None:
    lake.append("metrics", metrics("r1", [1.0]))
    lake.snapshot("before-tuning", description="baseline")
    lake.append("metrics", metrics("r2", [2.0, 3.0]))
    lake.append("params", [{"run_id": "r2", "key": "lr", "value": "0.1"}])
    pinned = lake.as_of("before-tuning")
    assert pinned.read("metrics").height == 1
    assert pinned.read("params").is_empty()
    assert pinned.sql("select count(*) from metrics").fetchall()[0] == (1,)
    listing = lake.snapshots().row(0, named=True)
    assert (listing["snapshot"], listing["description"], listing["pinned_by"]) == (
        "before-tuning",
        "baseline",
        "tester",
    )
    assert listing["tables"] == len(lake.tables())
    with pytest.raises(SnapshotExists):
        lake.snapshot("before-tuning")
    with pytest.raises(SnapshotNotFound, match="before-tuning"):
        lake.as_of("after-tuning")


def test_snapshot_names_follow_the_contract(lake: metalake.Lake) -> None:
    with pytest.raises(metalake.MetalakeError, match="'no spaces allowed' is not a valid snapshot name"):
        lake.snapshot("no spaces allowed")


def test_a_lake_closes_its_sql_session(lake_path: Path) -> None:
    with metalake.connect(lake_path) as lake:
        assert lake.sql("select count(*) from metrics").fetchall() == [(0,)]
    assert lake.sql("select count(*) from params").fetchall() == [(0,)]
    lake.close()


def test_tables_and_specs_describe_the_catalog(lake: metalake.Lake) -> None:
    names = [spec.name for spec in lake.tables()]
    assert names == sorted(names) and "metrics" in names and "_catalog" not in names
    spec = lake.spec("metrics")
    assert spec.primary_key == ("run_id", "key", "step", "timestamp")
    assert spec.column("step").checks == {"ge": 0}
    with pytest.raises(metalake.TableNotFound):
        lake.spec("nope")


def test_another_connection_sees_the_same_data(lake: metalake.Lake, lake_path: Path) -> None:
    lake.append("metrics", metrics("r1", [1.0]))
    other = metalake.connect(lake_path)
    assert other.read("metrics").height == 1
    other.append("metrics", metrics("r2", [1.0]))
    assert lake.read("metrics").height == 2


def test_a_reader_sees_another_writers_commits_at_once(lake_path: Path) -> None:
    writer = metalake.connect(lake_path)
    reader = metalake.connect(lake_path)
    assert reader.read("metrics").height == 0
    for round_number in range(3):
        writer.append("metrics", metrics(f"r{round_number}", [1.0]))
        assert reader.read("metrics").height == round_number + 1
        assert reader.sql("select count(*) from metrics").fetchall() == [(round_number + 1,)]
        time.sleep(0.15)  # past the file-system clock slack: the reader's cached state must still refresh
