"""Idempotent and concurrent appends: processes writing to one lake, on disk and on S3, lose no row."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from support.workers import (
    append_batches,
    append_keyed_batches,
    batch_rows,
    copy_lake,
    run_in_processes,
    table_versions,
    write_or_read,
)

import metalake
from metalake.core import delta

METRIC_WRITERS = 4
RACING_WRITERS = 3
BATCHES = 15
BATCH_ROWS = 10


@dataclass(frozen=True)
class Target:
    """Where a test lake lives: a URI and the storage options that reach it."""

    uri: str
    storage_options: dict[str, str] | None

    def connect(self, actor: str = "tester") -> metalake.Lake:
        return metalake.connect(self.uri, storage_options=self.storage_options, actor=actor)


@pytest.fixture(scope="module")
def created_local_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("created") / "lake"
    metalake.connect(path, actor="tester")
    return path


@pytest.fixture(scope="module")
def created_s3_lake(s3_server: Any) -> str:
    uri = f"s3://{s3_server.create_bucket()}/lake"
    metalake.connect(uri, storage_options=s3_server.storage_options, actor="tester")
    return uri


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, lake_path: Path) -> Target:
    """A new lake on each backend, copied from one that `connect` created (creating it takes seconds)."""
    if request.param == "local":
        shutil.copytree(request.getfixturevalue("created_local_lake"), lake_path)
        return Target(str(lake_path), None)
    server = request.getfixturevalue("s3_server")
    uri = request.getfixturevalue("s3_lake_uri")
    copy_lake(server.endpoint, request.getfixturevalue("created_s3_lake"), uri)
    return Target(uri, server.storage_options)


def assert_contiguous_history(lake: metalake.Lake, table: str) -> pl.DataFrame:
    """The table's history, checked to hold every version from 0 to the latest exactly once."""
    history = lake.history(table)
    versions = sorted(history.get_column("version").to_list())
    assert versions == list(range(len(versions))), f"history of {table!r} has gaps or repeats: {versions}"
    return history


# -- idempotency ---------------------------------------------------------------------------------------------


def test_a_retried_append_with_the_same_key_is_written_once(target: Target) -> None:
    lake = target.connect()
    rows = batch_rows("metrics", "run-1", 0, 3)

    first = lake.append("metrics", rows, idempotency_key="flush-1")
    retry = lake.append("metrics", rows, idempotency_key="flush-1")

    assert (first.deduplicated, first.rows) == (False, 3)
    assert (retry.deduplicated, retry.rows, retry.version) == (True, 0, first.version)
    assert lake.read("metrics").height == 3
    history = lake.history("metrics")
    assert history.get_column("idempotency_key").to_list().count("flush-1") == 1
    assert history.get_column("version").max() == first.version


def test_an_idempotency_key_is_remembered_by_the_lake_across_connections(target: Target) -> None:
    rows = batch_rows("metrics", "run-1", 0, 3)
    first = target.connect().append("metrics", rows, idempotency_key="flush-1")

    reopened = target.connect()
    retry = reopened.append("metrics", rows, idempotency_key="flush-1")
    other = reopened.append("metrics", batch_rows("metrics", "run-1", 1, 3), idempotency_key="flush-2")

    assert retry.deduplicated and retry.version == first.version
    assert not other.deduplicated and other.version == first.version + 1
    assert reopened.read("metrics").height == 6


def test_racing_writers_with_the_same_keys_write_each_batch_once(target: Target) -> None:
    lake = target.connect()
    keys = [f"flush-{uuid.uuid4().hex[:8]}-{n}" for n in range(4)]

    results = run_in_processes(
        append_keyed_batches,
        [
            (target.uri, target.storage_options, f"writer-{n}", keys, BATCH_ROWS)
            for n in range(RACING_WRITERS)
        ],
    )

    for position, key in enumerate(keys):
        written = [records[position] for records in results if not records[position][1]]
        assert len(written) == 1, f"key {key!r} was written {len(written)} times: {results}"
    metrics = lake.read("metrics")
    assert metrics.height == len(keys) * BATCH_ROWS
    assert metrics.select("run_id", "step").n_unique() == metrics.height
    history = assert_contiguous_history(lake, "metrics")
    assert Counter(history.get_column("idempotency_key").drop_nulls().to_list()) == dict.fromkeys(keys, 1)


# -- concurrent appends --------------------------------------------------------------------------------------


def test_concurrent_appends_lose_and_duplicate_no_row(target: Target) -> None:
    """Several writers on one table and, at the same moment, one writer on each of two other tables."""
    lake = target.connect()
    before = table_versions(lake)
    metric_writers = [f"writer-{n}" for n in range(METRIC_WRITERS)]
    other_tables = ["params", "run_tags"]
    written = {"metrics", *other_tables}
    calls = [
        (target.uri, target.storage_options, "metrics", writer, BATCHES, BATCH_ROWS)
        for writer in metric_writers
    ]
    calls += [
        (target.uri, target.storage_options, table, f"writer-{table}", BATCHES, 5) for table in other_tables
    ]

    results = run_in_processes(append_batches, calls)

    metric_versions = [version for records in results[:METRIC_WRITERS] for version, _ in records]
    assert len(set(metric_versions)) == METRIC_WRITERS * BATCHES, "two appends reported the same version"
    metrics = lake.read("metrics")
    expected_rows = METRIC_WRITERS * BATCHES * BATCH_ROWS
    assert metrics.height == expected_rows, f"{metrics.height - expected_rows:+d} rows"
    for writer in metric_writers:
        steps = metrics.filter(pl.col("run_id") == writer).get_column("step").sort().to_list()
        assert steps == list(range(BATCHES * BATCH_ROWS)), f"rows of {writer} lost or duplicated"
    distinct = lake.sql("SELECT count(*), count(DISTINCT (run_id, step)) FROM metrics").fetchall()
    assert distinct == [(metrics.height, metrics.height)]
    history = assert_contiguous_history(lake, "metrics")
    appends = history.filter(pl.col("operation") == "append")
    assert sorted(appends.get_column("version").to_list()) == sorted(metric_versions)
    assert Counter(appends.get_column("actor").to_list()) == dict.fromkeys(metric_writers, BATCHES)
    assert set(appends.get_column("rows_added").to_list()) == {BATCH_ROWS}
    assert set(history.get_column("operation").to_list()) <= {"create_table", "append", "compact"}

    for table in other_tables:
        frame = lake.read(table)
        assert frame.height == BATCHES * 5, table
        assert frame.select("run_id", "key").n_unique() == frame.height, table
        history = assert_contiguous_history(lake, table)
        assert history.filter(pl.col("operation") == "append").height == BATCHES, table
    untouched_before = {table: version for table, version in before.items() if table not in written}
    untouched_after = {
        table: version for table, version in table_versions(lake).items() if table not in written
    }
    assert untouched_after == untouched_before, "tables nobody wrote to must not move"


def test_writers_compacting_at_the_same_time_duplicate_no_row(
    lake: metalake.Lake, lake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overlapping compactions of the same files both commit in delta-rs and duplicate rows.

    Writers compact under an exclusive lock and plan on the state they reload under it, so however often
    they compact, and however they interleave, every row is there exactly once.
    """
    monkeypatch.setattr(delta, "COMPACT_EVERY", 2)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            own_lake = metalake.connect(lake_path)
            for batch in range(20):
                own_lake.append("params", batch_rows("params", f"run-{worker}", batch, 2))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    params = lake.read("params")
    assert params.height == 3 * 20 * 2, f"{params.height - 120} rows duplicated by overlapping compactions"
    assert params.select("run_id", "key").n_unique() == params.height
    assert "compact" in lake.history("params").get_column("operation").to_list()


# -- a long-lived lake while others write ----------------------------------------------------------------------


def test_a_long_lived_lake_reads_and_maintains_while_processes_append(target: Target) -> None:
    """The server is one Lake for hours: its history, time travel, reads and maintenance must not fail (or
    mislabel versions) because other processes commit between its steps."""
    batches = 30 if target.storage_options is None else 10
    writers = [
        ("append", target.uri, target.storage_options, "metrics", batches + number)
        for number in range(METRIC_WRITERS)
    ]
    readers = [("read", target.uri, target.storage_options, "metrics", batches // 2)]
    # on object stores one maintainer at a time (README): nothing there stops two compactions of the same files
    maintainer_count = 2 if target.storage_options is None else 1
    maintainers = [
        ("maintain", target.uri, target.storage_options, "metrics", batches // 3)
    ] * maintainer_count
    outcomes = run_in_processes(write_or_read, [*writers, *readers, *maintainers], timeout_s=300)
    failures = [failure for outcome in outcomes[METRIC_WRITERS:] for failure in outcome]
    assert failures == []
    lake = target.connect()
    assert_contiguous_history(lake, "metrics")
    assert lake.read("metrics").height == sum(batches + number for number in range(METRIC_WRITERS)) * 5
