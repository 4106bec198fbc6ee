"""metalake on S3, end to end against a moto server: a lake reached by URI behaves as on local disk."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.workers import (
    batch_rows,
    copy_lake,
    describe_lake,
    object_keys,
    run_in_processes,
    table_versions,
)

import metalake

TEAM_KPIS_SPEC = """\
name: team_kpis
description: A team's weekly KPI values, declared by the user rather than shipped with metalake.
primary_key: [kpi, week]
columns:
  - {name: kpi, type: string, nullable: false, checks: {str_length: {min: 1}}, description: KPI name.}
  - {name: week, type: date, nullable: false, description: Monday of the week.}
  - {name: value, type: float64, nullable: true, description: KPI value that week.}
"""


def run_events(run_id: str) -> list[dict[str, Any]]:
    started = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    event = {"run_id": run_id, "experiment": "churn", "name": "baseline", "start_time": started}
    return [
        {**event, "event_id": f"{run_id}-1", "status": "running", "event_time": started},
        {
            **event,
            "event_id": f"{run_id}-2",
            "status": "finished",
            "event_time": started + timedelta(minutes=5),
            "end_time": started + timedelta(minutes=5),
        },
    ]


def wait_for_next_second() -> None:
    """moto, like S3, records LastModified to the second: step past it, so a cut-off parts two commits."""
    now = time.time()
    time.sleep(1.05 - (now - int(now)))


@pytest.fixture(scope="module")
def created_lake_uri(s3_server: Any) -> str:
    """A lake that `connect` created in an empty bucket; tests that write start from copies of it."""
    uri = f"s3://{s3_server.create_bucket()}/lake"
    metalake.connect(uri, storage_options=s3_server.storage_options, actor="tester")
    return uri


@pytest.fixture
def fresh_lake_uri(s3_server: Any, s3_lake_uri: str, created_lake_uri: str) -> str:
    copy_lake(s3_server.endpoint, created_lake_uri, s3_lake_uri)
    return s3_lake_uri


@pytest.fixture
def s3_lake(s3_server: Any, fresh_lake_uri: str) -> metalake.Lake:
    return metalake.connect(fresh_lake_uri, storage_options=s3_server.storage_options, actor="tester")


def test_connect_creates_every_table_once(s3_server: Any, created_lake_uri: str) -> None:
    keys = object_keys(s3_server.endpoint, created_lake_uri)

    lake = metalake.connect(created_lake_uri, storage_options=s3_server.storage_options)

    assert object_keys(s3_server.endpoint, created_lake_uri) == keys, "connecting again must write nothing"
    for spec in lake.tables():
        assert f"lake/{spec.name}/_delta_log/00000000000000000000.json" in keys, spec.name
    assert lake.uri == created_lake_uri
    versions = table_versions(lake)
    assert {name: versions[name] for name in versions if name != "_catalog"} == dict.fromkeys(
        [spec.name for spec in lake.tables()], 0
    )


def test_append_read_scan_sql_and_history_round_trip(s3_lake: metalake.Lake) -> None:
    runs = s3_lake.append("runs", run_events("r1"))
    metrics = s3_lake.append("metrics", batch_rows("metrics", "r1", 0, 4), reason="first flush")

    assert (runs.version, runs.rows, metrics.version, metrics.rows) == (1, 2, 1, 4)
    late_steps = s3_lake.read("metrics", columns=["step"], where="step >= 2")
    assert late_steps.get_column("step").sort().to_list() == [2, 3]
    assert s3_lake.scan("metrics").filter(pl.col("run_id") == "r1").select(pl.len()).collect().item() == 4
    assert s3_lake.sql("SELECT count(*) FROM metrics WHERE run_id = ?", ["r1"]).fetchall() == [(4,)]
    current = s3_lake.sql("SELECT status, event_count, duration_s FROM runs_current WHERE run_id = 'r1'")
    assert current.fetchall() == [("finished", 2, 300.0)]
    summary = s3_lake.sql(
        'SELECT last_step, "count" FROM metric_summary WHERE run_id = ? AND "key" = ?', ["r1", "loss"]
    )
    assert summary.fetchall() == [(3, 4)]
    audit = s3_lake.sql(
        "SELECT table_name, version, actor, reason, rows_added FROM audit_log "
        "WHERE table_name IN ('runs', 'metrics') AND operation = 'append' ORDER BY table_name"
    ).fetchall()
    assert audit == [("metrics", 1, "tester", "first flush", 4), ("runs", 1, "tester", None, 2)]
    history = s3_lake.history("metrics")
    assert history.select("version", "operation", "rows_added").rows() == [
        (1, "append", 4),
        (0, "create_table", None),
    ]


def test_time_travel_by_time_and_by_snapshot_name(s3_lake: metalake.Lake) -> None:
    s3_lake.append("metrics", batch_rows("metrics", "r1", 0, 3))
    s3_lake.snapshot("after-first", description="three values")
    cut = datetime.now(UTC)
    wait_for_next_second()
    s3_lake.append("metrics", batch_rows("metrics", "r1", 1, 3))

    assert s3_lake.read("metrics").height == 6
    assert s3_lake.as_of(cut.isoformat()).read("metrics").height == 3
    zulu = cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert s3_lake.as_of(zulu).sql("SELECT count(*) FROM metrics").fetchall() == [(3,)]
    pinned = s3_lake.as_of("after-first")
    assert pinned.read("metrics").get_column("step").sort().to_list() == [0, 1, 2]
    assert pinned.sql('SELECT "count" FROM metric_summary').fetchall() == [(3,)]
    snapshots = s3_lake.snapshots()
    assert snapshots.get_column("snapshot").to_list() == ["after-first"]
    assert snapshots.row(0, named=True)["tables"] == len(s3_lake.tables())
    assert snapshots.row(0, named=True)["description"] == "three values"
    with pytest.raises(metalake.ReadOnlyLakeError):
        pinned.append("metrics", batch_rows("metrics", "r1", 2, 1))


def test_history_as_of_a_moment_lists_the_commits_made_until_then(s3_lake: metalake.Lake) -> None:
    s3_lake.append("metrics", batch_rows("metrics", "r1", 0, 1))
    s3_lake.snapshot("one-append")
    cut = datetime.now(UTC)
    wait_for_next_second()
    s3_lake.append("metrics", batch_rows("metrics", "r1", 1, 1))
    s3_lake.append("metrics", batch_rows("metrics", "r1", 2, 1))
    until_then = s3_lake.history("metrics").filter(pl.col("version") <= 1)

    assert s3_lake.as_of("one-append").history("metrics").equals(until_then)
    assert s3_lake.as_of(cut).history("metrics").equals(until_then)


def test_as_of_a_time_excludes_a_commit_made_later_in_the_same_second(s3_lake: metalake.Lake) -> None:
    """S3 records an object's LastModified to the second, so it cannot order commits within one second."""
    for _ in range(3):
        wait_for_next_second()
        second = int(time.time())
        before_cut = s3_lake.append("metrics", batch_rows("metrics", "r1", 0, 1))
        time.sleep(0.05)
        cut = datetime.now(UTC)
        rows_at_cut = s3_lake.read("metrics").height
        time.sleep(0.05)
        s3_lake.append("metrics", batch_rows("metrics", "r1", 1, 1))
        if int(time.time()) == second:
            break
    else:
        pytest.fail("could not make two commits within one second")

    past = s3_lake.as_of(cut)
    assert past.history("metrics").get_column("version").max() == before_cut.version
    assert past.read("metrics").height == rows_at_cut, "as_of(T) shows a commit made after T"


def test_storage_options_come_from_aws_environment_variables(
    s3_server: Any, fresh_lake_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    lake = metalake.connect(fresh_lake_uri, actor="tester")
    commit = lake.append("metrics", batch_rows("metrics", "r1", 0, 2))

    assert lake.location.storage_options["AWS_ENDPOINT_URL"] == s3_server.endpoint
    assert metalake.connect(fresh_lake_uri).read("metrics").height == 2
    log_file = f"lake/metrics/_delta_log/{commit.version:020d}.json"
    assert log_file in object_keys(s3_server.endpoint, fresh_lake_uri)


def test_another_process_sees_the_same_catalog_with_user_tables(
    s3_server: Any, fresh_lake_uri: str, tmp_path: Path
) -> None:
    specs = tmp_path / "my_tables"
    specs.mkdir()
    (specs / "team_kpis.yaml").write_text(TEAM_KPIS_SPEC)
    options = s3_server.storage_options
    lake = metalake.connect(fresh_lake_uri, storage_options=options, actor="tester", extra_specs=specs)
    rows = [
        {"kpi": "nps", "week": datetime(2024, 6, 3).date(), "value": 41.0},
        {"kpi": "nps", "week": datetime(2024, 6, 10).date(), "value": None},
    ]
    lake.append("team_kpis", rows)
    catalog = {spec.name: spec.to_json() for spec in lake.tables()}

    again = metalake.connect(fresh_lake_uri, storage_options=options)
    [seen] = run_in_processes(describe_lake, [(fresh_lake_uri, options, "team_kpis")])

    assert "team_kpis" in catalog
    assert {spec.name: spec.to_json() for spec in again.tables()} == catalog
    assert again.read("team_kpis").height == 2
    assert seen["catalog"] == catalog
    assert sorted(seen["rows"], key=lambda row: row["week"]) == [
        {**row, "recorded_by": "tester"} for row in rows
    ]
    assert seen["sql_count"] == 2


def test_refused_batches_leave_every_table_unchanged(
    s3_server: Any, fresh_lake_uri: str, s3_lake: metalake.Lake
) -> None:
    s3_lake.append("metrics", batch_rows("metrics", "r1", 0, 2))
    versions = table_versions(s3_lake)
    objects = object_keys(s3_server.endpoint, fresh_lake_uri)
    good = batch_rows("metrics", "r1", 1, 2)

    with pytest.raises(metalake.ContractError):
        s3_lake.append("metrics", [*good, {**good[0], "step": -1}])
    with pytest.raises(metalake.ContractError):
        s3_lake.append("runs", [{"event_id": "e1", "run_id": "r1", "status": "exploded"}])
    with pytest.raises(metalake.TableNotFound):
        s3_lake.append("no_such_table", good)
    with pytest.raises(metalake.ReadOnlyLakeError):
        s3_lake.as_of(datetime.now(UTC)).append("metrics", good)

    assert table_versions(s3_lake) == versions
    assert object_keys(s3_server.endpoint, fresh_lake_uri) == objects, (
        "a refused batch must not leave files behind"
    )
    assert s3_lake.read("metrics").height == 2
