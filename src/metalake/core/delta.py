"""The one place metalake talks to delta-rs (with file_statistics.py): table loading, creation, atomic commits, history
and time travel."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake._version import __version__
from metalake.core.catalog import TableSpec
from metalake.core.storage import Location, storage_error
from metalake.errors import CommitFailed, StorageError

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

# Commit metadata keys, stored in each Delta commit's commitInfo.
ACTOR, OPERATION, REASON, IDEMPOTENCY_KEY, CLIENT_VERSION = (
    "metalake.actor",
    "metalake.operation",
    "metalake.reason",
    "metalake.idempotency_key",
    "metalake.version",
)
TABLE_CONFIGURATION = {
    # Frequent checkpoints keep loading and idempotency-key look-ups (which replay the log since the last
    # checkpoint) cheap; compaction keeps each checkpoint small.
    "delta.checkpointInterval": "10",
    # Idempotency keys (Delta app transactions) are kept for a week: long enough for any retry.
    "delta.setTransactionRetentionDuration": "interval 7 days",
}
EVOLVED_PROPERTY = "metalake.evolved"
COMMIT_ATTEMPTS = 12
# Every this many commits, the committing writer compacts the table's small files (best effort).
COMPACT_EVERY = 20
COMPACT_TARGET_BYTES = 1024 * 1024
COMPACTION_LOCK = "_metalake_compaction.lock"  # one process rewrites a table's files at a time
INGEST_LOCK = "_metalake_ingest.lock"
# Timestamp statistics in the Delta log are cut to the millisecond: ranges compared with them are widened by this
LOG_CLOCK_SLACK_NS = 100_000_000
MAINTENANCE_OPERATIONS = frozenset({"maintain", "cluster"})  # auto-compaction ("compact") is not one
CLUSTERED_ROW_GROUP_ROWS = 16_384


@dataclass(frozen=True)
class TableMaintenance:
    """What `maintain` did to one table (or would do, in a dry run)."""

    table: str
    action: str
    files_before: int
    files_after: int
    version: int | None
    seconds: float


@dataclass(frozen=True)
class CommitInfo:
    """Who writes what and why; becomes the Delta commit's custom metadata."""

    actor: str
    operation: str
    reason: str | None = None
    idempotency_key: str | None = None

    def custom_metadata(self) -> dict[str, str]:
        metadata = {ACTOR: self.actor, OPERATION: self.operation, CLIENT_VERSION: __version__}
        if self.reason:
            metadata[REASON] = self.reason
        if self.idempotency_key:
            metadata[IDEMPOTENCY_KEY] = self.idempotency_key
        return metadata


def _hooks() -> Any:
    from deltalake import PostCommitHookProperties

    # Checkpoints keep loading fast; the expired-log cleanup lists and stats the whole _delta_log on every
    # commit (the main cost of committing to an old table), and the log is the audit trail anyway.
    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def _commit_properties(actor: str, operation: str) -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata=CommitInfo(actor=actor, operation=operation).custom_metadata())


def _app_id(idempotency_key: str) -> str:
    return f"metalake:{idempotency_key}"


class DeltaStore:
    """Delta tables under a lake root, with loaded table state reused across commits in this process."""

    def __init__(self, location: Location):
        self.location = location
        self._latest: dict[str, DeltaTable] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._log_mtimes: dict[str, int] = {}
        self._created_at: datetime | None = None

    @property
    def _options(self) -> dict[str, str] | None:
        return self.location.storage_options or None

    def load(self, table: str, *, refresh: bool = True) -> DeltaTable | None:
        """The table at its latest version, or None when it does not exist yet.

        `refresh=False` reuses the state this process last saw: a commit made from a stale state still lands
        safely (delta-rs checks the newer commits for conflicts, including a repeated idempotency key), and it
        saves a listing of the table's log, which grows with the table's age.
        """
        from deltalake.exceptions import TableNotFoundError

        cached = self._latest.get(table)
        try:
            if cached is not None:
                if refresh and not self._log_unchanged(table):
                    cached.update_incremental()
                return cached
            from deltalake import DeltaTable

            loaded = DeltaTable(self.location.table_uri(table), storage_options=self._options)
        except TableNotFoundError:
            return None
        except OSError as error:
            raise storage_error(self.location, f"open table {table!r}", error) from error
        self._latest[table] = loaded
        return loaded

    def small_table_rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        """Every row of a small table (the catalog, say) as dicts; [] when the table does not exist.

        Read by delta-rs itself (its DataFusion engine, Arrow through arro3), so that a short command does not pay
        for importing pyarrow's dataset layer and pandas with it: a few milliseconds instead of about 0.3 s.
        Falls back to the pyarrow reader if delta-rs cannot answer.
        """
        loaded = self.load(table)
        if loaded is None:
            return []
        from deltalake import QueryBuilder
        from deltalake.exceptions import DeltaError

        selected = ", ".join('"' + column.replace('"', '""') + '"' for column in columns)
        try:
            read = QueryBuilder().register("t", loaded).execute(f"select {selected} from t").read_all()
            values = [read.column(column).to_pylist() for column in columns]
        except (DeltaError, OSError, ValueError):
            return loaded.to_pyarrow_table(columns=list(columns)).to_pylist()  # type: ignore[no-any-return]
        return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]

    def _log_unchanged(self, table: str) -> bool:
        """On local disk, whether the table's log folder is as it was at the last refresh (then skip it).

        A new commit adds a file, which changes the folder's modification time. File-system clocks tick
        coarsely, so a folder changed in the last moments is always refreshed.
        """
        if not self.location.is_local:
            return False
        try:
            modified = os.stat(Path(self.location.table_uri(table)) / "_delta_log").st_mtime_ns
        except OSError:
            return False
        settled = time.time_ns() - modified > LOG_CLOCK_SLACK_NS
        unchanged = settled and self._log_mtimes.get(table) == modified
        self._log_mtimes[table] = modified if settled else -1
        return unchanged

    def load_version(self, table: str, version: int | None) -> DeltaTable | None:
        """The table at a pinned version; None means it did not exist then."""
        if version is None:
            return None
        from deltalake import DeltaTable

        try:
            return DeltaTable(self.location.table_uri(table), version=version, storage_options=self._options)
        except OSError as error:
            raise storage_error(self.location, f"open table {table!r} at version {version}", error) from error

    def load_at(self, table: str, moment: datetime) -> DeltaTable | None:
        """The table as it was at `moment`; None when it was created later (or never).

        Resolved on the commit timestamps (milliseconds) that `history()` shows, not on the log files'
        modification times, which object stores keep only to the second.
        """
        versions = [record["version"] for record in self.history(table) if record["timestamp"] <= moment]
        return self.load_version(table, max(versions)) if versions else None

    def created_at(self, tables: Sequence[str]) -> datetime | None:
        """When the first of these tables was created (the lake's creation): None when none exists yet.

        Read from each table's metadata (its createdTime), not its history, which would read the whole log;
        kept once found, since a lake's creation never moves.
        """
        if self._created_at is None:
            times = []
            for table in tables:
                loaded = self.load(table)
                created = None if loaded is None else loaded.metadata().created_time
                if created is not None:
                    times.append(datetime.fromtimestamp(created / 1000, tz=UTC))
            self._created_at = min(times) if times else None
        return self._created_at

    def current_version(self, table: str) -> int | None:
        loaded = self.load(table)
        return None if loaded is None else loaded.version()

    def create(self, spec: TableSpec, commit: CommitInfo) -> None:
        """Create an empty table for a spec; a table that already exists is left as it is."""
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import CommitFailedError, DeltaError

        for attempt in range(COMMIT_ATTEMPTS):
            try:
                DeltaTable.create(
                    self.location.table_uri(spec.name),
                    schema=spec.arrow_schema(),
                    mode="ignore",
                    partition_by=list(spec.partition_by) or None,
                    name=spec.name,
                    description=spec.description,
                    configuration=TABLE_CONFIGURATION,
                    storage_options=self._options,
                    commit_properties=CommitProperties(custom_metadata=commit.custom_metadata()),
                    post_commithook_properties=_hooks(),
                )
                return
            except (CommitFailedError, DeltaError):
                # Another process created it at the same moment: that is the outcome we wanted.
                if self.load(spec.name) is not None:
                    return
                _backoff(attempt)
            except OSError as error:
                raise storage_error(self.location, f"create table {spec.name!r}", error) from error
        raise CommitFailed(f"Could not create table {spec.name!r} after {COMMIT_ATTEMPTS} attempts.")

    def evolve(self, spec: TableSpec, commit: CommitInfo) -> None:
        """Add the spec's new (nullable) columns to an existing table, so readers see them at once."""
        import pyarrow as pa
        from deltalake import CommitProperties, Schema

        table = self.load(spec.name)
        if table is None:
            self.create(spec, commit)
            return
        existing = {field.name for field in table.schema().fields}
        missing = [field for field in spec.arrow_schema() if field.name not in existing]
        if not missing:
            return
        try:
            table.alter.add_columns(
                Schema.from_arrow(pa.schema(missing)).fields,
                commit_properties=CommitProperties(custom_metadata=commit.custom_metadata()),
                post_commithook_properties=_hooks(),
            )
            # Tells readers that older Parquet files lack some columns (see Lake._relation_for_sql).
            table.alter.set_table_properties(
                {EVOLVED_PROPERTY: "true"},
                raise_if_not_exists=False,
                commit_properties=CommitProperties(custom_metadata=commit.custom_metadata()),
            )
        except OSError as error:
            raise storage_error(self.location, f"evolve table {spec.name!r}", error) from error

    def commit(
        self, spec: TableSpec, data: pa.Table, commit: CommitInfo, *, key_may_exist: bool = True
    ) -> tuple[int, bool]:
        """Append `data` in one atomic Delta commit; returns (version, deduplicated).

        With an idempotency key, a batch already committed under that key (by this or any process) is not
        written again. Concurrent appends are retried until they land: appends never conflict logically.
        `key_may_exist=False` is for keys minted fresh by the caller (never used before): the look-up of the
        key, which replays the log since the last checkpoint, is then skipped on the first attempt.
        """
        version, written = self.commit_parts(
            spec, [(commit.idempotency_key, data)], commit, keys_may_exist=key_may_exist
        )
        return version, not written[0]

    def commit_parts(
        self,
        spec: TableSpec,
        parts: Sequence[tuple[str | None, pa.Table]],
        commit: CommitInfo,
        *,
        keys_may_exist: bool = True,
    ) -> tuple[int, list[bool]]:
        """Append several batches, each with its own idempotency key (or None), in one atomic Delta commit.

        This is group commit: the flushes of many runs land in one commit, and each keeps its own key (a Delta
        app transaction), so a retried flush is still written once. Returns the version and, per part,
        whether it was written (False: its key was already committed).
        """
        import pyarrow as pa
        from deltalake import CommitProperties, Transaction, write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        for attempt in range(COMMIT_ATTEMPTS):
            table = self.load(spec.name, refresh=attempt > 0)
            if table is None:
                self.create(spec, commit)
                continue
            check_keys = keys_may_exist or attempt > 0
            written = [
                not (key and check_keys and table.transaction_version(_app_id(key)) is not None)
                for key, _ in parts
            ]
            if not any(written):
                return table.version(), written
            batches = [batch for (_, batch), write in zip(parts, written, strict=True) if write]
            data = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
            stamp = time.time_ns() // 1000
            transactions = [
                Transaction(app_id=_app_id(key), version=stamp)
                for (key, _), write in zip(parts, written, strict=True)
                if key and write
            ]
            evolve = set(spec.column_names) - {field.name for field in table.schema().fields}
            try:
                write_deltalake(
                    table,
                    data,
                    mode="append",
                    schema_mode="merge" if evolve else None,
                    commit_properties=CommitProperties(
                        custom_metadata=commit.custom_metadata(), app_transactions=transactions or None
                    ),
                    post_commithook_properties=_hooks(),
                )
            except CommitFailedError as error:
                # Lost a race with another writer (or a repeated idempotency key): reload and try again.
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise CommitFailed(
                        f"Could not commit to table {spec.name!r} after {COMMIT_ATTEMPTS} attempts: {error}"
                    ) from error
                self._latest.pop(spec.name, None)
                _backoff(attempt)
                continue
            except DeltaError as error:
                self._latest.pop(spec.name, None)
                raise CommitFailed(f"Delta refused the commit to table {spec.name!r}: {error}") from error
            except OSError as error:
                self._latest.pop(spec.name, None)
                raise storage_error(self.location, f"write to table {spec.name!r}", error) from error
            version = table.version()
            if version % COMPACT_EVERY == 0 and self.location.is_local:
                self._compact(spec.name, commit.actor)
            return version, written
        raise CommitFailed(f"Could not commit to table {spec.name!r} after {COMMIT_ATTEMPTS} attempts.")

    def _compact(self, table: str, actor: str) -> None:
        """Merge small files so that reads and later commits stay fast (best effort, local disk only).

        delta-rs lets two compactions planned on the same files both commit, which duplicates rows. So one
        process compacts at a time (an exclusive lock file), and it plans on the state it reloads under the
        lock. Object stores have no such lock: there, compaction is left to a single maintenance job.
        """
        from deltalake.exceptions import DeltaError

        with self.table_lock(table, COMPACTION_LOCK, wait=False) as locked:
            if not locked:
                return  # another process is compacting this table right now
            loaded = self.load(table)
            if loaded is None:
                return
            try:
                loaded.optimize.compact(
                    target_size=COMPACT_TARGET_BYTES,
                    commit_properties=_commit_properties(actor, "compact"),
                    post_commithook_properties=_hooks(),
                )
            except (DeltaError, OSError):
                return

    @contextmanager
    def table_lock(self, table: str, lock_name: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold an flock on `lock_name` in the table's folder: one holder across processes on local disk.

        Yields False when `wait` is off and another process holds it. Object stores have no such lock: there
        it yields True at once, and the caller's commits must stay safe without it.
        """
        if not self.location.is_local:
            yield True
            return
        import fcntl

        folder = Path(self.location.table_uri(table))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / lock_name, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def maintain(self, spec: TableSpec, actor: str, *, dry_run: bool = False) -> TableMaintenance:
        """Rewrite a table for fast reads: Z-order by its `cluster_by` columns (else compact), then checkpoint.

        A table whose latest commit is already a maintenance commit is left alone. Row groups of clustered
        tables are kept small so that filters on the clustering columns skip most of them.
        """
        from deltalake.exceptions import CommitFailedError

        started = time.perf_counter()
        with self.table_lock(spec.name, COMPACTION_LOCK):
            for attempt in range(COMMIT_ATTEMPTS):
                try:
                    return self._maintain_once(spec, actor, dry_run=dry_run, started=started)
                except CommitFailedError as error:
                    # appends from other processes kept landing first: plan again on the newer state
                    self._latest.pop(spec.name, None)
                    if attempt == COMMIT_ATTEMPTS - 1:
                        raise storage_error(self.location, f"maintain table {spec.name!r}", error) from error
                    _backoff(attempt)
        raise CommitFailed(f"Could not maintain table {spec.name!r} after {COMMIT_ATTEMPTS} attempts.")

    def _maintain_once(
        self, spec: TableSpec, actor: str, *, dry_run: bool, started: float
    ) -> TableMaintenance:
        """One attempt of `maintain` on the table's latest state; a lost commit race raises CommitFailedError."""
        from deltalake import WriterProperties
        from deltalake.exceptions import CommitFailedError, DeltaError

        table = self.load(spec.name)
        if table is None:
            return TableMaintenance(spec.name, "missing", 0, 0, None, 0.0)
        files = len(table.file_uris())
        latest = self.history(spec.name, up_to_version=table.version())[0]
        if latest["operation"] in MAINTENANCE_OPERATIONS or files == 0:
            action = "up to date"
        elif spec.cluster_by:
            action = f"cluster by {', '.join(spec.cluster_by)}"
        elif files > 1:
            action = "compact"
        else:
            action = "up to date"
        if dry_run or action == "up to date":
            return TableMaintenance(spec.name, action, files, files, table.version(), 0.0)
        try:
            if spec.cluster_by:
                table.optimize.z_order(
                    list(spec.cluster_by),
                    writer_properties=WriterProperties(max_row_group_size=CLUSTERED_ROW_GROUP_ROWS),
                    commit_properties=_commit_properties(actor, "cluster"),
                    post_commithook_properties=_hooks(),
                )
            else:
                table.optimize.compact(
                    commit_properties=_commit_properties(actor, "maintain"),
                    post_commithook_properties=_hooks(),
                )
            table.create_checkpoint()
        except CommitFailedError:
            raise
        except (DeltaError, OSError) as error:
            raise storage_error(self.location, f"maintain table {spec.name!r}", error) from error
        return TableMaintenance(
            spec.name,
            action,
            files,
            len(table.file_uris()),
            table.version(),
            time.perf_counter() - started,
        )

    def vacuum(
        self, table: str, *, retention_hours: int, keep_versions: Sequence[int], dry_run: bool, actor: str
    ) -> list[str]:
        """Delete files no version newer than the retention window needs, except those of `keep_versions`.

        Returns the files deleted (or, in a dry run, that would be). Time travel to versions older than the
        window stops working, except to the kept versions (named snapshots).
        """
        from deltalake.exceptions import DeltaError

        with self.table_lock(table, COMPACTION_LOCK):
            loaded = self.load(table)
            if loaded is None:
                return []
            try:
                files: list[str] = loaded.vacuum(
                    retention_hours=retention_hours,
                    dry_run=dry_run,
                    enforce_retention_duration=False,
                    keep_versions=sorted(set(keep_versions)) or None,
                    commit_properties=_commit_properties(actor, "vacuum"),
                    post_commithook_properties=_hooks(),
                )
            except (DeltaError, OSError) as error:
                raise storage_error(self.location, f"vacuum table {table!r}", error) from error
            return files

    def delete_rows(self, table: str, predicate: str, *, actor: str, reason: str) -> int:
        """Delete the rows matching a (trusted, metalake-built) SQL predicate in one commit; returns how many."""
        from deltalake import CommitProperties
        from deltalake.exceptions import DeltaError

        info = CommitInfo(actor=actor, operation="retention", reason=reason)
        with self.table_lock(table, COMPACTION_LOCK):
            loaded = self.load(table)
            if loaded is None:
                return 0
            try:
                outcome = loaded.delete(
                    predicate,
                    commit_properties=CommitProperties(custom_metadata=info.custom_metadata()),
                    post_commithook_properties=_hooks(),
                )
            except (DeltaError, OSError) as error:
                raise storage_error(self.location, f"delete from table {table!r}", error) from error
            return int(outcome.get("num_deleted_rows", 0))

    def history(self, table: str, up_to_version: int | None = None) -> list[dict[str, Any]]:
        """Commit records, newest first, as plain dicts with metalake's metadata unpacked.

        Commits never change, so records are cached and only newer commits are read on later calls. delta-rs
        lists the commits from `loaded version - limit + 1` up to the newest one in storage, but numbers them
        down from the loaded version: when another process commits between the load and the listing, its
        labels are off. So records are numbered by their position above the oldest one listed, whose version
        is known (0, or the newest cached, which must match); a cache that no longer matches is read again.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            latest = self.load(table)
            if latest is None:
                return []
            cached = self._history.get(table, [])
            newest_known = cached[0]["version"] if cached else -1
            version = latest.version()
            if version > newest_known:
                base = max(newest_known, 0)
                try:
                    raw = latest.history(limit=version - base + 1)
                except OSError as error:
                    raise storage_error(self.location, "read table history", error) from error
                fresh = [_history_record(entry) for entry in raw]
                if cached and (not fresh or fresh[-1]["timestamp"] != cached[0]["timestamp"]):
                    self._history.pop(table, None)  # the log changed under the cache: read it whole again
                    self._latest.pop(table, None)
                    _backoff(attempt)
                    continue
                if cached or len(fresh) >= version + 1:
                    for offset, record in enumerate(reversed(fresh)):
                        record["version"] = base + offset
                # else: older log files were cleaned up, so positions say nothing; the labels are the best guess
                cached = [r for r in fresh if r["version"] > newest_known] + cached
                self._history[table] = cached
            return [r for r in cached if up_to_version is None or r["version"] <= up_to_version]
        raise CommitFailed(f"Could not read a consistent history of table {table!r}; try again.")


def _history_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    metrics = entry.get("operationMetrics") or {}
    return {
        "version": int(entry.get("version", -1)),
        "timestamp": datetime.fromtimestamp(int(entry.get("timestamp", 0)) / 1000, tz=UTC),
        "operation": entry.get(OPERATION) or str(entry.get("operation", "")).lower(),
        "actor": entry.get(ACTOR),
        "reason": entry.get(REASON),
        "rows_added": _as_int(metrics.get("num_added_rows", metrics.get("numOutputRows"))),
        "idempotency_key": entry.get(IDEMPOTENCY_KEY),
        "engine_operation": entry.get("operation"),
        "metalake_version": entry.get(CLIENT_VERSION),
    }


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.01 * (2**attempt)) * (0.5 + random.random()))


__all__ = ["CommitInfo", "DeltaStore", "StorageError", "TableMaintenance"]
