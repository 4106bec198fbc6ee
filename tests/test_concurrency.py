"""Idempotent and concurrent appends: many processes write to one lake, on local disk and on S3, and lose nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

import polars as pl
import pytest
from workers import append_batches, append_keyed_batches, batch_rows, run_in_processes

import metalake

WRITERS = 4
BATCHES = 15
BATCH_ROWS = 10


@dataclass(frozen=True)
class Target:
    """Where a test lake lives: a URI and the storage options that reach it."""

    uri: str
    storage_options: dict[str, str] | None

    def connect(self, **kwargs: object) -> metalake.Lake:
        return metalake.connect(self.uri, storage_options=self.storage_options, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, lake_path: object) -> Target:
    if request.param == "local":
        return Target(str(lake_path), None)
    server = request.getfixturevalue("s3_server")
    return Target(request.getfixturevalue("s3_lake_uri"), server.storage_options)


def assert_contiguous_history(lake: metalake.Lake, table: str) -> pl.DataFrame:
    """The table's history, checked to hold every version from 0 to the latest exactly once."""
    history = lake.history(table)
    versions = sorted(history.get_column("version").to_list())
    assert versions == list(range(len(versions))), f"history of {table!r} has gaps or repeats: {versions}"
    return history


# -- idempotency --------------------------------------------------------------------------------------------------


def test_a_retried_append_with_the_same_key_is_written_once(target: Target) -> None:
    lake = target.connect(actor="tester")
    rows = batch_rows("metrics", "run-1", 0, 3)

    first = lake.append("metrics", rows, idempotency_key="flush-1")
    retry = lake.append("metrics", rows, idempotency_key="flush-1")

    assert (first.deduplicated, first.rows) == (False, 3)
    assert (retry.deduplicated, retry.rows, retry.version) == (True, 0, first.version)
    assert lake.read("metrics").height == 3
    history = lake.history("metrics")
    assert history.get_column("idempotency_key").to_list().count("flush-1") == 1
    assert history.get_column("version").max() == first.version


def test_an_idempotency_key_is_remembered_by_the_lake_not_the_process(target: Target) -> None:
    rows = batch_rows("metrics", "run-1", 0, 3)
    first = target.connect(actor="tester").append("metrics", rows, idempotency_key="flush-1")

    reopened = target.connect(actor="tester")
    retry = reopened.append("metrics", rows, idempotency_key="flush-1")
    other = reopened.append("metrics", batch_rows("metrics", "run-1", 1, 3), idempotency_key="flush-2")

    assert retry.deduplicated and retry.version == first.version
    assert not other.deduplicated and other.version == first.version + 1
    assert reopened.read("metrics").height == 6


def test_racing_writers_with_the_same_keys_write_each_batch_once(target: Target) -> None:
    lake = target.connect(actor="tester")
    keys = [f"flush-{uuid.uuid4().hex[:8]}-{n}" for n in range(5)]

    results = run_in_processes(
        append_keyed_batches,
        [(target.uri, target.storage_options, f"writer-{n}", keys, BATCH_ROWS) for n in range(WRITERS)],
    )

    for position, key in enumerate(keys):
        written = [records[position] for records in results if not records[position][1]]
        assert len(written) == 1, f"key {key!r} was written {len(written)} times: {results}"
    metrics = lake.read("metrics")
    assert metrics.height == len(keys) * BATCH_ROWS
    assert metrics.select("run_id", "step").n_unique() == metrics.height
    history = assert_contiguous_history(lake, "metrics")
    assert Counter(history.get_column("idempotency_key").drop_nulls().to_list()) == dict.fromkeys(keys, 1)


# -- concurrent appends -------------------------------------------------------------------------------------------


def test_concurrent_appends_to_one_table_lose_and_duplicate_no_row(target: Target) -> None:
    lake = target.connect(actor="tester")
    writers = [f"writer-{n}" for n in range(WRITERS)]

    results = run_in_processes(
        append_batches,
        [(target.uri, target.storage_options, "metrics", writer, BATCHES, BATCH_ROWS) for writer in writers],
    )

    commits = [version for records in results for version, deduplicated in records if not deduplicated]
    assert sorted(commits) == list(range(1, WRITERS * BATCHES + 1)), "each append must get its own version"
    metrics = lake.read("metrics")
    assert metrics.height == WRITERS * BATCHES * BATCH_ROWS
    for writer in writers:
        steps = metrics.filter(pl.col("run_id") == writer).get_column("step").sort().to_list()
        assert steps == list(range(BATCHES * BATCH_ROWS)), f"rows of {writer} lost or duplicated"
    assert lake.sql("SELECT count(*), count(DISTINCT (run_id, step)) FROM metrics").fetchone() == (
        metrics.height,
        metrics.height,
    )
    history = assert_contiguous_history(lake, "metrics")
    appends = history.filter(pl.col("operation") == "append")
    assert Counter(appends.get_column("actor").to_list()) == dict.fromkeys(writers, BATCHES)
    assert set(appends.get_column("rows_added").to_list()) == {BATCH_ROWS}


def test_concurrent_appends_to_different_tables_each_land_in_full(target: Target) -> None:
    lake = target.connect(actor="tester")
    tables = ["metrics", "params", "run_tags"]
    before = {name: lake.history(name).get_column("version").max() for name in ["runs", "_catalog"]}

    run_in_processes(
        append_batches,
        [(target.uri, target.storage_options, table, f"writer-{table}", BATCHES, 5) for table in tables],
    )

    for table in tables:
        frame = lake.read(table)
        assert frame.height == BATCHES * 5, table
        assert frame.select("run_id", "key" if table != "metrics" else "step").n_unique() == frame.height
        history = assert_contiguous_history(lake, table)
        assert history.get_column("version").max() == BATCHES
        assert set(history.get_column("actor").to_list()) == {"tester", f"writer-{table}"}
    after = {name: lake.history(name).get_column("version").max() for name in before}
    assert after == before, "tables nobody wrote to must not move"
