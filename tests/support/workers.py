"""Spawned child processes for the storage and concurrency tests, and the helpers those tests share.

Children are started with the spawn method because deltalake does not survive `fork`. Every child is a fresh
interpreter that imports this module by name: the parent's `sys.path`, which pytest extends with the tests
folder, travels with the spawn. Children receive the lake URI and storage options as arguments, wait on a
barrier so that their writes really overlap, and report their result (or their traceback) on a queue.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import metalake

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 300.0  # a child's exit drains its commit queue: on one busy moto server, >10 s
ABANDON_TIMEOUT_S = 10.0  # after a failure or a timeout, how long children get before they are killed

Options = Mapping[str, str] | None
CommitRecord = tuple[int, bool]


# -- rows ----------------------------------------------------------------------------------------------------


def batch_rows(table: str, writer: str, batch: int, size: int) -> list[dict[str, Any]]:
    """Rows whose keys no other (writer, batch) pair makes: `writer` is the run id, `batch` a key prefix."""
    if table == "metrics":
        now = datetime.now(UTC)
        return [
            {
                "run_id": writer,
                "key": "loss",
                "value": batch + i / size,
                "step": batch * size + i,
                "timestamp": now,
            }
            for i in range(size)
        ]
    if table in ("params", "run_tags"):
        return [{"run_id": writer, "key": f"b{batch:03d}-{i:03d}", "value": str(i)} for i in range(size)]
    raise ValueError(f"No row builder for table {table!r}")


def table_versions(lake: metalake.Lake) -> dict[str, int]:
    """The latest version of every table (the catalog included), from the `lake_commits` relation."""
    rows = lake.sql("SELECT table_name, max(version) FROM lake_commits GROUP BY table_name").fetchall()
    return dict(rows)


def s3_client(endpoint: str) -> Any:
    """A boto3 client for the test S3 server (moto accepts any credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def object_keys(endpoint: str, uri: str) -> set[str]:
    """Every object under an s3:// lake URI, listed straight from the server."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    keys: set[str] = set()
    for page in (
        s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    ):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def copy_lake(endpoint: str, source_uri: str, target_uri: str) -> None:
    """Copy a lake object by object, server side (Delta logs hold relative paths, so the copy is a lake too).

    Creating the ~20 tables of a new lake takes seconds on moto; tests that need a fresh lake start from a
    copy of one that `metalake.connect` created.
    """
    client = s3_client(endpoint)
    source_bucket, _, source_prefix = source_uri.removeprefix("s3://").partition("/")
    target_bucket, _, target_prefix = target_uri.removeprefix("s3://").partition("/")
    for key in object_keys(endpoint, source_uri):
        client.copy_object(
            Bucket=target_bucket,
            Key=target_prefix + key.removeprefix(source_prefix),
            CopySource={"Bucket": source_bucket, "Key": key},
        )


def _warm_up() -> None:
    """Import what the first append needs, so that the writers' commits, not their imports, overlap."""
    import pandera.polars  # noqa: F401


# -- child entry points --------------------------------------------------------------------------------------


def append_batches(
    uri: str, storage_options: Options, table: str, writer: str, batches: int, size: int, start: Any
) -> list[CommitRecord]:
    """Append `batches` batches of `size` distinct rows; returns each commit's (version, deduplicated)."""
    lake = metalake.connect(uri, storage_options=storage_options, actor=writer)
    _warm_up()
    start.wait(START_TIMEOUT_S)
    records = []
    for batch in range(batches):
        commit = lake.append(table, batch_rows(table, writer, batch, size))
        records.append((commit.version, commit.deduplicated))
    return records


def append_keyed_batches(
    uri: str, storage_options: Options, writer: str, keys: Sequence[str], size: int, start: Any
) -> list[CommitRecord]:
    """Append one metrics batch per idempotency key; every writer sends the same rows for the same key."""
    lake = metalake.connect(uri, storage_options=storage_options, actor=writer)
    _warm_up()
    start.wait(START_TIMEOUT_S)
    records = []
    for number, key in enumerate(keys):
        commit = lake.append("metrics", batch_rows("metrics", "race", number, size), idempotency_key=key)
        records.append((commit.version, commit.deduplicated))
    return records


def describe_lake(uri: str, storage_options: Options, table: str, start: Any) -> dict[str, Any]:
    """What a fresh reader of the lake sees: the catalog (specs as JSON), one table's rows and row count."""
    lake = metalake.connect(uri, storage_options=storage_options, actor="reader")
    start.wait(START_TIMEOUT_S)
    rows = lake.read(table).drop("recorded_at").to_dicts()
    counted = lake.sql(f'SELECT count(*) FROM "{table}"').fetchall()
    return {
        "catalog": {spec.name: spec.to_json() for spec in lake.tables()},
        "rows": rows,
        "sql_count": counted[0][0],
    }


# -- running children ----------------------------------------------------------------------------------------


def _child(target: Callable[..., Any], args: tuple[Any, ...], index: int, start: Any, results: Any) -> None:
    try:
        results.put((index, "ok", target(*args, start)))
    except BaseException:
        start.abort()  # do not leave the other children waiting for this one
        results.put((index, "error", traceback.format_exc()))


def run_in_processes(
    target: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    *,
    timeout_s: float = 120.0,
    exit_timeout_s: float = EXIT_TIMEOUT_S,
) -> list[Any]:
    """Run `target(*args, start)` in a spawned process per `args`, released together; results in call order.

    A child's failure is raised here with the child's traceback, so the test report shows it. A child that
    returned its result is not done: its interpreter's exit drains its commit queue (to S3 on a loaded machine
    that takes many seconds), so every child is waited for until it exits by itself, for up to
    `exit_timeout_s`. One that does not exit in time (or exits with an error) fails the call rather than
    being killed quietly, which would lose the runs still queued.
    """
    start = SPAWN.Barrier(len(calls))
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_child, args=(target, args, index, start, results), daemon=True)
        for index, args in enumerate(calls)
    ]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in processes:
            try:
                index, status, value = results.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(
                    f"{target.__name__}: a child process gave no result within {timeout_s}s"
                ) from None
            if status == "ok":
                collected[index] = value
            else:
                errors.append(f"child {index}:\n{value}")
    finally:
        every_result_in = len(collected) == len(processes)
        errors += _wait_for_exits(processes, exit_timeout_s if every_result_in else ABANDON_TIMEOUT_S)
    if errors:
        raise AssertionError("A child process failed:\n" + "\n".join(errors))
    return [collected[index] for index in range(len(calls))]


def _wait_for_exits(processes: Sequence[Any], timeout_s: float) -> list[str]:
    """Join every process within one shared deadline; kill (and report) those still running after it."""
    deadline = time.monotonic() + timeout_s
    problems = []
    for index, process in enumerate(processes):
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
            problems.append(
                f"child {index} did not exit within {timeout_s:.0f}s of the start of the wait and was killed; "
                "its exit drains its commit queue, so the runs it still had queued are lost"
            )
        elif process.exitcode != 0:
            problems.append(f"child {index} exited with code {process.exitcode}")
    return problems


def log_runs(uri: str, storage_options: Options, worker: str, runs: int, steps: int, start: Any) -> list[str]:
    """Log `runs` complete runs (params, a tag, two metrics over `steps` steps) as a training job would."""
    lake = metalake.connect(uri, storage_options=storage_options, actor=worker)
    _warm_up()
    start.wait(START_TIMEOUT_S)
    run_ids = []
    for number in range(runs):
        with lake.runs.start(
            experiment="concurrent", name=f"{worker}-{number}", tags={"worker": worker}
        ) as run:
            run.log_params({"worker": worker, "number": number})
            for step in range(steps):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / steps}, step=step)
        run_ids.append(run.run_id)
    return run_ids


def register_versions(uri: str, model: str, worker: str, count: int, start: Any) -> list[int]:
    """Register `count` versions of `model` (each its own artifact) as soon as the other children are ready."""
    lake = metalake.connect(uri, actor=worker)
    _warm_up()
    start.wait(START_TIMEOUT_S)
    return [
        lake.registry.register(model, run_id=None, artifact_uri=f"s3://models/{worker}/{index}").version
        for index in range(count)
    ]


def ingest_lineage(uri: str, events: list[str], batch: int, start: Any) -> int:
    """Ingest OpenLineage events (JSON text) in batches of `batch`, as a second ingesting job would."""
    lake = metalake.connect(uri, actor="ingest")
    _warm_up()
    start.wait(START_TIMEOUT_S)
    return sum(lake.lineage.ingest(events[i : i + batch]).new for i in range(0, len(events), batch))


def read_while_others_write(
    uri: str, storage_options: Options, table: str, rounds: int, start: Any
) -> list[str]:
    """One long-lived lake reading history, the recent past and the table in a loop; returns the failures."""
    from datetime import timedelta

    lake = metalake.connect(uri, storage_options=storage_options, actor="reader")
    _warm_up()
    start.wait(START_TIMEOUT_S)
    failures = []
    for _ in range(rounds):
        try:
            lake.history(table)
            lake.as_of(datetime.now(UTC) - timedelta(seconds=1)).read(table)
            lake.read(table)
        except metalake.MetalakeError as error:
            failures.append(f"{type(error).__name__}: {error}")
    seen = lake.history(table)
    fresh = metalake.connect(uri, storage_options=storage_options).history(table)
    if not fresh.filter(fresh["version"] <= seen["version"].max()).equals(seen):
        failures.append("the long-lived lake's history differs from a fresh connect's")
    return failures


def maintain_while_others_write(
    uri: str, storage_options: Options, table: str, rounds: int, start: Any
) -> list[str]:
    """One long-lived lake maintaining a table in a loop while others append; returns the failures."""
    lake = metalake.connect(uri, storage_options=storage_options, actor="maintainer")
    _warm_up()
    start.wait(START_TIMEOUT_S)
    failures = []
    for _ in range(rounds):
        try:
            lake.maintain(tables=[table])
        except metalake.MetalakeError as error:
            failures.append(f"{type(error).__name__}: {error}")
    return failures


def write_or_read(kind: str, uri: str, storage_options: Options, table: str, rounds: int, start: Any) -> Any:
    """A child that appends (`kind` "append"), reads or maintains, so one barrier releases them all together."""
    if kind == "append":
        return append_batches(uri, storage_options, table, f"writer-{rounds}", rounds, 5, start)
    if kind == "read":
        return read_while_others_write(uri, storage_options, table, rounds, start)
    return maintain_while_others_write(uri, storage_options, table, rounds, start)


def exit_slowly(marker: str, exit_seconds: float, start: Any) -> str:
    """Return at once, then take `exit_seconds` to exit (as a long drain of the commit queue does) and say so."""
    import atexit

    def finish() -> None:
        time.sleep(exit_seconds)
        with open(marker, "w") as handle:
            handle.write("exited")

    atexit.register(finish)
    start.wait(START_TIMEOUT_S)
    return "returned"


def log_a_run_then_hang(uri: str, results: Any) -> None:
    """Log one run, report its id, and hang with its flush still queued (the committer is held), to be killed.

    Holding the committer makes the window between the end of the `with` block and the commit, which is
    milliseconds long in real jobs, last until the kill: the test sees the loss every time, not by chance.
    """
    lake = metalake.connect(uri, actor="doomed-job")
    _warm_up()
    with lake.runs.flush_queue.holding():
        with lake.runs.start(experiment="killed", name="last-run") as run:
            run.log_params({"lr": 0.1})
            run.log_metrics({"loss": 0.5}, step=0)
        results.put(run.run_id)
        time.sleep(600)


def flush_every_50_steps_then_hang(uri: str, steps: int, results: Any) -> None:
    """Log 2 metrics a step with flush_every_points=100 and call `run.flush()` every 50 steps, as a job that
    checkpoints does; report the steps whose `flush()` returned, then hang until killed.

    The 100th point queues a flush automatically, so each `flush()` finds an empty buffer: it must still wait
    for the queued flush before it returns.
    """
    lake = metalake.connect(uri, actor="checkpointing-job")
    run = lake.runs.start(experiment="checkpoints", flush_every_points=100)
    for step in range(steps):
        run.log_metrics({"loss": 1 / (step + 1), "acc": step / steps}, step=step)
        if (step + 1) % 50 == 0:
            run.flush()
    results.put((run.run_id, steps))
    time.sleep(600)


def log_until_killed(uri: str, run_id: str, acknowledged: str, flush_every_points: int) -> None:
    """Log 2 metrics a step until killed, calling `flush()` every 10 steps and appending the last step each
    `flush()` acknowledged to the file `acknowledged` (one line per flush, written in one call)."""
    import os

    lake = metalake.connect(uri, actor="killed-job")
    run = lake.runs.start(experiment="kills", run_id=run_id, flush_every_points=flush_every_points)
    handle = os.open(acknowledged, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    step = 0
    while True:
        run.log_metrics({"loss": 1 / (step + 1), "acc": step / (step + 1)}, step=step)
        if step % 10 == 9:
            run.flush()
            os.write(handle, f"{step}\n".encode())
        step += 1
        time.sleep(0.001)


def log_offline(uri: str, storage_options: Options, limit: str | None, start: Any) -> str:
    """Open the lake offline (its storage may be unreachable) and log a run; returns its id, or the error."""
    import os

    if limit is not None:
        os.environ["METALAKE_JOURNAL_MAX_BYTES"] = limit
    lake = metalake.connect(uri, storage_options=storage_options, actor="offline-job", offline=True)
    try:
        with lake.runs.start(experiment="offline", name="on-a-plane") as run:
            run.log_params({"lr": 0.1})
            for step in range(300 if limit else 30):
                run.log_metrics({"loss": 1 / (step + 1)}, step=step)
                run.flush()
    except metalake.JournalFull as error:
        return f"JournalFull: {error}"
    return run.run_id


def log_runs_slowly(
    uri: str, storage_options: Options, worker: str, runs: int, pause_s: float, ready: str, start: Any
) -> list[str]:
    """Log `runs` runs with a pause between them, each flushed (committed or journaled) before the next: a job
    whose storage may go away while it trains. A file named after the worker in folder `ready` says it is
    connected."""
    import time
    from pathlib import Path

    lake = metalake.connect(uri, storage_options=storage_options, actor=worker)
    _warm_up()
    (Path(ready) / worker).touch()
    start.wait(START_TIMEOUT_S)
    run_ids = []
    for number in range(runs):
        with lake.runs.start(experiment="faults", name=f"{worker}-{number}") as run:
            run.log_params({"worker": worker, "number": number})
            for step in range(10):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / 10}, step=step)
            run.flush()
        run_ids.append(run.run_id)
        time.sleep(pause_s)
    return run_ids
