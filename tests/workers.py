"""Entry points for the child processes of the storage and concurrency tests, started with the spawn method.

deltalake does not survive `fork`, so every child is a fresh interpreter that imports this module by name: the
parent's `sys.path` (which pytest extends with the tests folder) travels with the spawn. Children receive the
lake URI and storage options as arguments, wait on a barrier so that their writes really overlap, and report a
JSON-friendly result (or their traceback) on a queue.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import metalake

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 60.0

Options = Mapping[str, str] | None
CommitRecord = tuple[int, bool]


# -- rows ---------------------------------------------------------------------------------------------------------


def batch_rows(table: str, writer: str, batch: int, size: int) -> list[dict[str, Any]]:
    """A batch whose keys no other (writer, batch) pair produces: `writer` is the run id, `batch` the key prefix."""
    if table == "metrics":
        now = datetime.now(UTC)
        return [
            {"run_id": writer, "key": "loss", "value": batch + i / size, "step": batch * size + i, "timestamp": now}
            for i in range(size)
        ]
    if table in ("params", "run_tags"):
        return [{"run_id": writer, "key": f"b{batch:03d}-{i:03d}", "value": str(i)} for i in range(size)]
    raise ValueError(f"No row builder for table {table!r}")


# -- child entry points -------------------------------------------------------------------------------------------


def append_batches(
    uri: str, storage_options: Options, table: str, writer: str, batches: int, size: int, start: Any
) -> list[CommitRecord]:
    """Append `batches` batches of `size` distinct rows to `table`; returns each commit's (version, deduplicated)."""
    lake = metalake.connect(uri, storage_options=storage_options, actor=writer)
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
    start.wait(START_TIMEOUT_S)
    records = []
    for number, key in enumerate(keys):
        commit = lake.append("metrics", batch_rows("metrics", "race", number, size), idempotency_key=key)
        records.append((commit.version, commit.deduplicated))
    return records


def describe_lake(uri: str, storage_options: Options, table: str, start: Any) -> dict[str, Any]:
    """What a fresh reader of the lake sees: the catalog (specs as JSON) and one table's rows and row count."""
    lake = metalake.connect(uri, storage_options=storage_options, actor="reader")
    start.wait(START_TIMEOUT_S)
    rows = lake.read(table).drop("recorded_at").to_dicts()
    counted = lake.sql(f'SELECT count(*) FROM "{table}"').fetchone()
    return {
        "catalog": {spec.name: spec.to_json() for spec in lake.tables()},
        "rows": rows,
        "sql_count": counted[0] if counted else None,
    }


# -- running children ---------------------------------------------------------------------------------------------


def _child(target: Callable[..., Any], args: tuple[Any, ...], index: int, start: Any, results: Any) -> None:
    try:
        results.put((index, "ok", target(*args, start)))
    except BaseException:
        start.abort()  # do not leave the other children waiting for this one
        results.put((index, "error", traceback.format_exc()))


def run_in_processes(
    target: Callable[..., Any], calls: Sequence[tuple[Any, ...]], *, timeout_s: float = 120.0
) -> list[Any]:
    """Run `target(*args, start)` in one spawned process per `args`, all released at once; results in call order.

    A child that fails re-raises here with its traceback, so a test shows the child's error.
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
                raise TimeoutError(f"{target.__name__}: a child process gave no result within {timeout_s}s") from None
            if status == "ok":
                collected[index] = value
            else:
                errors.append(f"child {index}:\n{value}")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    if errors:
        raise AssertionError("A child process failed:\n" + "\n".join(errors))
    return [collected[index] for index in range(len(calls))]
