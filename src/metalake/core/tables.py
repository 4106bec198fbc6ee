"""The lake's tables, knowing no domain: the write protocol (prepare, commit, append), reads, SQL, history, time
travel and snapshots. Domain namespaces receive a Tables; the facade `Lake` composes one with them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from metalake.core.catalog import TableSpec
from metalake.core.catalog_store import CATALOG_TABLE
from metalake.core.contracts import conform
from metalake.core.delta import EVOLVED_PROPERTY, CommitInfo, DeltaStore, TableMaintenance
from metalake.core.pending import settle_pending_writes
from metalake.core.sql import DEFAULT_LOST_AFTER_S
from metalake.core.storage import Location
from metalake.errors import (
    OfflineLakeError,
    QueryError,
    ReadOnlyLakeError,
    SnapshotExists,
    SnapshotNotFound,
    TableNotFound,
    TimeTravelError,
)

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa
    from deltalake import DeltaTable

    from metalake.core.masking import Masker
    from metalake.core.sql import SqlSession

SNAPSHOTS_TABLE = "snapshots"
POLICIES_TABLE = (
    "policies"  # lake-wide settings documents (the registry policy, KPI environments), latest wins
)
HISTORY_COLUMNS = ["version", "timestamp", "operation", "actor", "reason", "rows_added", "idempotency_key"]


@dataclass(frozen=True)
class Commit:
    """What one append did: the table, the version it created, and whether it was a retried duplicate."""

    table: str
    version: int
    rows: int
    operation: str
    idempotency_key: str | None = None
    deduplicated: bool = False


@dataclass(frozen=True)
class Moment:
    """Where a read-only lake stands: a point in time, or the table versions a snapshot pinned."""

    label: str
    at: datetime | None = None
    versions: Mapping[str, int | None] | None = None
    pinned_at: datetime | None = None  # a snapshot's: when its versions were pinned


class Tables:
    """Delta tables described by the catalog, readable live or as of a past moment, written only through
    `prepare` + `commit` (or `append`, both in one call).

    With a `masker` (see `masked`), every read masks the values the specs mark sensitive: DuckDB reads each table
    through a masking view, Arrow and polars reads get masked tables, commit actors are hashed. Such tables are
    read-only: they are what a reader without the `unmask` privilege is given.
    """

    def __init__(
        self,
        location: Location,
        actor: str,
        specs: Mapping[str, TableSpec],
        store: DeltaStore,
        moment: Moment | None = None,
        *,
        offline: bool = False,
        lost_after_s: float = DEFAULT_LOST_AFTER_S,
        masker: Masker | None = None,
    ):
        self.location = location
        self.actor = actor
        self._specs = dict(specs)
        self._store = store
        self.moment = moment
        self.offline = offline
        self.lost_after_s = lost_after_s
        self.masker = masker
        self._unmasked: Tables | None = None  # what masked tables were made from
        self.commit_window_s = 0.0  # how long queued journaled writes may wait for others (the group commit)
        # One SQL session per thread: a DuckDB cursor and its registrations serve one query at a time, and a
        # server answers requests from several threads (a cursor on the shared database costs nothing).
        self._sql = threading.local()
        self._sql_sessions: list[SqlSession] = []
        self._sql_lock = threading.Lock()
        self._pinned: dict[str, DeltaTable | None] = {}

    def __repr__(self) -> str:
        at = f", as_of={self.moment.label!r}" if self.moment else ""
        masked = ", masked" if self.masker is not None else ""
        return f"Tables({self.location.uri!r}{at}{masked})"

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def read_only(self) -> bool:
        return self.moment is not None or self.masker is not None

    def masked(self, masker: Masker) -> Tables:
        """These tables (at the same moment) as a reader without `unmask` reads them; read-only."""
        masked = Tables(
            self.location,
            self.actor,
            self._specs,
            self._store,
            self.moment,
            lost_after_s=self.lost_after_s,
            masker=masker,
        )
        masked._unmasked = self.unmasked
        return masked

    @property
    def unmasked(self) -> Tables:
        """The tables masked tables were made from (self for tables that do not mask): for state this process
        shares between readers, which must hold clear values (see tracking/remote.py's run state)."""
        return self._unmasked or self

    def close(self) -> None:
        """Release the SQL sessions; the tables can still be used afterwards."""
        with self._sql_lock:
            sessions, self._sql_sessions = self._sql_sessions, []
            self._sql = threading.local()
        for session in sessions:
            session.close()

    # -- catalog --------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every table name in the catalog, sorted."""
        return sorted(self._specs)

    def specs(self) -> list[TableSpec]:
        """Every table spec in force, by name."""
        return [self._specs[name] for name in sorted(self._specs)]

    def spec(self, table: str) -> TableSpec:
        """A table's spec: columns, types, checks and documentation."""
        try:
            return self._specs[table]
        except KeyError:
            raise TableNotFound(table, self._specs) from None

    # -- writing: the one write path ------------------------------------------------------------------------

    def append(
        self,
        table: str,
        data: Any,
        *,
        actor: str | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        operation: str = "append",
    ) -> Commit:
        """Validate a batch against the table's contract and commit it atomically: `prepare` then `commit`.

        `data` is a pyarrow Table, a polars or pandas DataFrame, or a list of dicts. A refused batch raises
        `ContractError` and writes nothing; a batch retried with the same `idempotency_key` is written once.
        """
        rows = self.prepare(table, data, actor=actor)
        version, written = self.commit(
            table, [(idempotency_key, rows)], actor=actor, reason=reason, operation=operation
        )
        return Commit(
            table=table,
            version=version,
            rows=rows.num_rows if written[0] else 0,
            operation=operation,
            idempotency_key=idempotency_key,
            deduplicated=not written[0],
        )

    def prepare(self, table: str, data: Any, *, actor: str | None = None) -> pa.Table:
        """The first half of a write: check the batch against the table's contract and cast it."""
        self.check_writable()
        return conform(self.spec(table), data, actor=actor or self.actor)

    def commit(
        self,
        table: str,
        parts: Sequence[tuple[str | None, pa.Table]],
        *,
        operation: str,
        actor: str | None = None,
        reason: str | None = None,
        keys_may_exist: bool = True,
    ) -> tuple[int, list[bool]]:
        """The second half: batches that passed `prepare`, each under its own idempotency key, in one commit.

        `keys_may_exist=False` says the caller's keys are new (fresh ids), which skips their look-up.
        Returns the new version and, per batch, whether it was written (False: its key was already used).
        """
        self._check_online(f"write to {table!r}")
        self.check_writable()
        keys = [key for key, _ in parts if key]
        info = CommitInfo(
            actor=actor or self.actor,
            operation=operation,
            reason=reason,
            idempotency_key=" ".join(keys) if keys else None,
        )
        return self._store.commit_parts(self.spec(table), parts, info, keys_may_exist=keys_may_exist)

    def check_writable(self) -> None:
        """Raise ReadOnlyLakeError for tables of a past moment or masked tables: writes go to the live lake."""
        if self.moment is not None:
            raise ReadOnlyLakeError(
                f"This lake is read-only: it shows the past ({self.moment.label}). "
                "Write through the live lake returned by metalake.connect()."
            )
        if self.masker is not None:
            raise ReadOnlyLakeError(
                "This lake is read-only: it shows masked values. Write through the lake it was made from."
            )

    def delete_rows(self, table: str, predicate: str, *, reason: str) -> int:
        """Delete the rows matching a SQL predicate, for retention only (facts are otherwise never removed)."""
        if self.moment is not None:
            raise ReadOnlyLakeError("Retention rewrites the present: run it on the live lake.")
        self.spec(table)
        return self._store.delete_rows(table, predicate, actor=self.actor, reason=reason)

    @contextmanager
    def lock(self, table: str, lock_name: str) -> Iterator[None]:
        """Take turns with other processes of this machine on a table (a lock file; a no-op on object stores)."""
        with self._store.table_lock(table, lock_name):
            yield

    # -- reading --------------------------------------------------------------------------------------------

    def _check_online(self, action: str) -> None:
        if self.offline:
            raise OfflineLakeError(
                f"This lake ({self.location.uri}) was opened offline: it cannot {action}. Offline, runs log into "
                "the local journal only; connect without offline=True (or unset METALAKE_OFFLINE) where the "
                "storage is reachable, and `metalake sync` commits what the offline runs logged."
            )

    def load(self, table: str) -> DeltaTable | None:
        """The Delta table at this lake's moment; None when it did not exist then."""
        self.spec(table)
        self._check_online(f"read {table!r}")
        if self.moment is None:
            settle_pending_writes(self.location.uri)  # this process's queued writes first: read your writes
            return self._store.load(table)
        if table not in self._pinned:  # a moment never changes: open each table once
            if self.moment.versions is not None:  # a snapshot: vacuum keeps its files
                loaded = self._store.load_version(table, self.moment.versions.get(table))
            else:
                assert self.moment.at is not None
                loaded = self._store.load_at(table, self.moment.at)
                if loaded is not None:  # load_at read the history: only a later vacuum costs a file check
                    self._check_not_vacuumed(table, loaded)
            self._pinned[table] = loaded
        return self._pinned[table]

    def _check_not_vacuumed(self, table: str, loaded: DeltaTable) -> None:
        """Raise TimeTravelError when a vacuum deleted files of this past version, naming what is readable."""
        from metalake.core.time_travel import missing_files, vacuum_after, vacuumed_error

        history = self._store.history(table)
        vacuum = vacuum_after(history, loaded.version())
        if vacuum is None or not missing_files(loaded):
            return
        low, high = loaded.version() + 1, history[0]["version"]
        while low < high:  # the oldest version whose files are all there: versions after it keep theirs
            middle = (low + high) // 2
            candidate = self._store.load_version(table, middle)
            if candidate is not None and not missing_files(candidate):
                high = middle
            else:
                low = middle + 1
        stamps = {record["version"]: record["timestamp"] for record in history}
        oldest = (high, stamps[high]) if high in stamps else None
        assert self.moment is not None
        raise vacuumed_error(
            table, self.moment.label, loaded.version(), vacuum, oldest, self._live_snapshot_names()
        )

    def _live_snapshot_names(self) -> list[str]:
        """The names of every snapshot pinned until now (for messages)."""
        pins = self._store.load(SNAPSHOTS_TABLE)
        if pins is None:
            return []
        import polars as pl

        names: list[str] = (
            pl.scan_pyarrow_dataset(pins.to_pyarrow_dataset())
            .select("snapshot")
            .unique()
            .collect()
            .get_column("snapshot")
            .to_list()
        )
        return names

    def arrow_dataset(self, table: str) -> Any:
        """The table as a pyarrow dataset (an empty table when it does not exist at this moment)."""
        import pyarrow as pa

        loaded = self.load(table)
        if loaded is None:
            return pa.Table.from_batches([], schema=self.spec(table).arrow_schema())
        if self.masker is not None:
            return self._masked_arrow(table, loaded)
        return self._version_dataset(table, loaded)

    def _masked_arrow(self, table: str, loaded: DeltaTable) -> pa.Table:
        """The whole table version, read and masked (a masked reader's Arrow and polars reads)."""
        assert self.masker is not None
        return self.masker.mask_arrow(table, self._version_dataset(table, loaded).to_table())

    def scan(self, table: str) -> pl.LazyFrame:
        """A lazy polars scan of the table; filters and projections reach the Parquet files."""
        import polars as pl

        loaded = self.load(table)
        if loaded is None:
            return pl.LazyFrame(schema=pl.Schema(self.spec(table).arrow_schema()))
        if self.masker is not None:
            masked = pl.from_arrow(self._masked_arrow(table, loaded))
            assert isinstance(masked, pl.DataFrame)
            return masked.lazy()
        return pl.scan_pyarrow_dataset(self._version_dataset(table, loaded))

    def _version_dataset(self, table: str, loaded: DeltaTable) -> Any:
        """A table version as a pyarrow dataset. A version from before the spec gained columns (time travel)
        reads them as nulls, so queries and views written for the current spec run on it."""
        spec = self.spec(table)
        older = {field.name for field in loaded.schema().fields} < set(spec.column_names)
        return loaded.to_pyarrow_dataset(schema=spec.arrow_schema() if older else None)

    def read(
        self, table: str, *, columns: Sequence[str] | None = None, where: str | pl.Expr | None = None
    ) -> pl.DataFrame:
        """The table as a polars DataFrame; `where` is a SQL predicate (`"step > 3"`) or a polars expression."""
        import polars as pl

        spec = self.spec(table)
        frame = self.scan(table)
        if where is not None:
            try:
                predicate = pl.sql_expr(where) if isinstance(where, str) else where
                frame = frame.filter(predicate)
            except Exception as error:  # polars raises several types for a bad expression
                raise QueryError(f"Invalid filter for table {table!r}: {where!r}: {error}") from error
        if columns is not None:
            unknown = [c for c in columns if c not in spec.column_names]
            if unknown:
                raise QueryError(
                    f"Unknown column(s) {unknown} in table {table!r}. Columns: {', '.join(spec.column_names)}."
                )
            frame = frame.select(list(columns))
        try:
            return frame.collect()
        except (
            pl.exceptions.ColumnNotFoundError,
            pl.exceptions.SQLInterfaceError,
            pl.exceptions.InvalidOperationError,
        ) as error:
            raise QueryError(f"Invalid filter for table {table!r}: {where!r}: {error}") from error

    def version(self, table: str) -> int | None:
        """The table's version at this lake's moment (None when it did not exist then)."""
        loaded = self.load(table)
        return None if loaded is None else loaded.version()

    def sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL over every table and view (at this lake's moment); returns a relation."""
        return self.sql_session().query(query, params)

    def sql_session(self) -> SqlSession:
        """The DuckDB session that binds this lake's tables and views (made on first use)."""
        from metalake.core.sql import SqlSession

        self._check_online("run SQL")
        session: SqlSession | None = getattr(self._sql, "session", None)
        if session is None:
            session = SqlSession(
                list(self._specs),
                self._relation_for_sql,
                self._commits_table,
                clock=self._clock_table,
                masking=self.masker,
            )
            with self._sql_lock:
                self._sql_sessions.append(session)
            self._sql.session = session
        return session

    def clock(self) -> datetime:
        """The lake's moment as a time: the as-of time, a snapshot's pin time, else now."""
        if self.moment is not None:
            when = self.moment.at or self.moment.pinned_at
            if when is not None:
                return when
        return datetime.now(UTC)

    def _clock_table(self) -> pa.Table:
        from metalake.core.sql import clock_table

        return clock_table(self.clock(), self.lost_after_s)

    def arrow_relations(self, names: Collection[str]) -> dict[str, Any]:
        """What SQL reads for each named table, `lake_commits` or `lake_clock` at this moment, in memory only
        (Arrow datasets and tables, never DuckDB's file readers): for a database that may not touch files."""
        from metalake.core.sql import CLOCK_RELATION, COMMITS_RELATION

        self._check_online("run SQL")
        built = {COMMITS_RELATION: self._commits_table, CLOCK_RELATION: self._clock_table}
        return {name: built[name]() if name in built else self.arrow_dataset(name) for name in names}

    def _relation_for_sql(self, table: str) -> tuple[object, Callable[[], Any]]:
        """A table's version (the token) and how to build what DuckDB reads for it, built only when needed."""
        loaded = self.load(table)
        token = None if loaded is None else loaded.version()
        if self.masker is not None and self.masker.masks_in_arrow(table):
            return token, lambda: self.arrow_dataset(table)  # masked in Arrow: profiles are JSON per row
        return token, lambda: self._relation(table, loaded)

    def _relation(self, table: str, loaded: DeltaTable | None) -> Any:
        """What DuckDB reads for a table: its Parquet files on local disk, else an Arrow dataset."""
        import pyarrow as pa

        from metalake.core.sql import ParquetFiles

        spec = self.spec(table)
        if loaded is None:
            return pa.Table.from_batches([], schema=spec.arrow_schema())
        if self.location.is_local and not spec.partition_by:
            files = tuple(loaded.file_uris())
            columns = {field.name for field in loaded.schema().fields}
            if files and columns <= set(spec.column_names):
                # an evolved table's older files, or a version from before the spec gained columns (time
                # travel), lack columns: the empty relation of the full schema gives them as nulls
                evolved = (
                    columns != set(spec.column_names) or EVOLVED_PROPERTY in loaded.metadata().configuration
                )
                empty = pa.Table.from_batches([], schema=spec.arrow_schema()) if evolved else None
                return ParquetFiles(files, empty)
        return self._version_dataset(table, loaded)

    def _commits_table(self) -> pa.Table:
        from metalake.core.sql import lake_commits_table

        names = sorted([*self._specs, CATALOG_TABLE])
        return lake_commits_table({name: self._history_records(name) for name in names})

    def _history_records(self, table: str) -> list[dict[str, Any]]:
        if table == CATALOG_TABLE:
            loaded = self._store.load(table) if self.moment is None else None
        else:
            loaded = self.load(table)
        if loaded is None:
            return []
        records = self._store.history(table, up_to_version=loaded.version())
        if self.moment is not None and self.moment.at is not None:
            records = [r for r in records if r["timestamp"] <= self.moment.at]
        if self.masker is not None:
            records = [{**r, "actor": self.masker.mask_actor(r["actor"])} for r in records]
        return records

    def history(self, table: str, *, limit: int | None = None) -> pl.DataFrame:
        """Every commit of a table, newest first: version, timestamp, operation, actor, reason, rows added, key."""
        import polars as pl

        self.spec(table)
        records = self._history_records(table)[: limit if limit is not None else None]
        schema: dict[str, pl.DataType | type[pl.DataType]] = {
            "version": pl.Int64,
            "timestamp": pl.Datetime("us", "UTC"),
            "operation": pl.String,
            "actor": pl.String,
            "reason": pl.String,
            "rows_added": pl.Int64,
            "idempotency_key": pl.String,
        }
        return pl.DataFrame(
            [{k: r[k] for k in HISTORY_COLUMNS} for r in records], schema=schema, orient="row"
        )

    # -- time travel and snapshots --------------------------------------------------------------------------

    def created_at(self) -> datetime | None:
        """When the lake was created (its first table); `as_of` refuses earlier moments. None: no table yet."""
        self._check_online("read its history")
        return self._store.created_at(self.names())

    def as_of(self, when: datetime | date | str) -> Tables:
        """Read-only tables at a moment: a datetime, an ISO-8601 string, or a snapshot name."""
        self._check_online("travel in time")
        settle_pending_writes(self.location.uri)
        moment = self._resolve_moment(when)
        past = Tables(
            self.location, self.actor, self._specs, self._store, moment, lost_after_s=self.lost_after_s
        )
        return past if self.masker is None else past.masked(self.masker)

    @contextmanager
    def live(self) -> Iterator[Tables]:
        """These tables as they are now (self when already live; else opened for the block, then closed): to
        tell a name unknown at a past moment from one that came later."""
        if self.moment is None:
            yield self
            return
        now = Tables(
            self.location,
            self.actor,
            self._specs,
            self._store,
            lost_after_s=self.lost_after_s,
            masker=self.masker,
        )
        try:
            yield now
        finally:
            now.close()

    def is_unknown_name(
        self, name: str, known: Collection[str], names: Callable[[Tables], Collection[str]]
    ) -> bool:
        """Whether a name a query filters by is a typo, to answer with "did you mean" rather than nothing.

        `known` are the names of its kind at these tables' moment, `names` reads them from any tables. A name
        among them is known; with none of its kind at all (a new lake, or a moment before the first) there is
        nothing to mistype, so the answer is empty; at a past moment, a name that came later was only absent then.
        """
        if name in known or not known:
            return False
        if not self.read_only:
            return True
        with self.live() as now:
            return name not in names(now)

    def _resolve_moment(self, when: datetime | date | str) -> Moment:
        """A moment by the one rule of time travel (core/time_travel.py): times in the future or before the
        lake was created are refused; text that is no time must name a snapshot."""
        from metalake.core.time_travel import TIME_FORMS, check_moment, parse_time_text

        if isinstance(when, datetime):
            moment = when if when.tzinfo else when.replace(tzinfo=UTC)
            try:
                at = moment.astimezone(UTC)
            except OverflowError:
                raise TimeTravelError(f"as_of {when!r} is out of the range of times.") from None
            label = moment.isoformat()
            check_moment(label, at, self.created_at(), self._live_snapshot_names)
            return Moment(label, at=at)
        if isinstance(when, date):
            return self._resolve_moment(datetime(when.year, when.month, when.day, tzinfo=UTC))
        if not isinstance(when, str) or not when.strip():
            raise TimeTravelError(f"as_of takes {TIME_FORMS}, not {when!r}.")
        text = when.strip()
        parsed = parse_time_text(text)
        if parsed is None:
            versions, pinned_at = self._snapshot_versions(text)
            return Moment(f"snapshot {text}", versions=versions, pinned_at=pinned_at)
        return self._resolve_moment(datetime.fromisoformat(text.replace("Z", "+00:00")))

    def _snapshot_versions(self, name: str) -> tuple[dict[str, int | None], datetime | None]:
        import polars as pl

        from metalake.core.time_travel import unknown_moment

        pins = self.read(SNAPSHOTS_TABLE, columns=["snapshot", "table_name", "table_version", "pinned_at"])
        chosen = pins.filter(pl.col("snapshot") == name)
        if chosen.is_empty():
            known = pins.get_column("snapshot").unique().to_list()
            raise SnapshotNotFound(name, known, unknown_moment(name, known))
        versions = {row["table_name"]: row["table_version"] for row in chosen.iter_rows(named=True)}
        return versions, chosen.get_column("pinned_at").max()  # type: ignore[return-value]

    def snapshot(self, name: str, *, description: str | None = None) -> Commit:
        """Pin the current version of every table under `name`; `as_of(name)` reads them back."""
        import polars as pl

        if self.moment is not None:
            raise ReadOnlyLakeError(
                "Snapshots pin the present: take them on the live lake, not on lake.as_of(...)."
            )
        settle_pending_writes(self.location.uri)
        self.check_snapshot_name(name)
        taken = self.read(SNAPSHOTS_TABLE, columns=["snapshot"], where=pl.col("snapshot") == name)
        if not taken.is_empty():
            raise SnapshotExists(
                f"Snapshot {name!r} already exists; snapshots never change. Pick another name."
            )
        pinned_at = datetime.now(UTC)
        rows = [
            {
                "snapshot": name,
                "table_name": table,
                "table_version": self._store.current_version(table),
                "description": description,
                "pinned_at": pinned_at,
            }
            for table in sorted(self._specs)
        ]
        return self.append(
            SNAPSHOTS_TABLE,
            rows,
            reason=description,
            idempotency_key=f"snapshot:{name}",
            operation="snapshot",
        )

    def check_snapshot_name(self, name: str) -> None:
        """Raise InvalidSnapshotName unless `name` is a valid snapshot name (the snapshots table's pattern)."""
        from metalake.core.time_travel import parse_time_text
        from metalake.errors import InvalidSnapshotName

        pattern = self.spec(SNAPSHOTS_TABLE).column("snapshot").checks.get("str_matches")
        if isinstance(name, str) and parse_time_text(name) is not None:
            raise InvalidSnapshotName(
                f"{name!r} is not a valid snapshot name: it reads as a time, so `as_of({name!r})` would read the "
                f"lake at that moment, not the snapshot. Add a word, e.g. 'release-{name}'."
            )
        if pattern and not re.fullmatch(pattern, name):
            raise InvalidSnapshotName(
                f"{name!r} is not a valid snapshot name: start with a letter or digit, then letters, digits, "
                f"'.', '_' or '-' (pattern {pattern})."
            )

    def snapshots(self) -> pl.DataFrame:
        """Every named snapshot: name, description, when it was pinned, by whom, how many tables it holds."""
        import polars as pl

        pins = self.read(SNAPSHOTS_TABLE)
        return (
            pins.group_by("snapshot")
            .agg(
                pl.col("description").first(),
                pl.col("pinned_at").min(),
                pl.col("recorded_by").first().alias("pinned_by"),
                pl.col("table_version").is_not_null().sum().cast(pl.Int64).alias("tables"),
            )
            .sort("pinned_at")
        )

    # -- maintenance ----------------------------------------------------------------------------------------

    def maintain(
        self, names: Sequence[str], *, dry_run: bool = False, vacuum_days: float | None = None
    ) -> list[TableMaintenance]:
        """Cluster or compact each table, then delete files unreferenced for more than `vacuum_days`, except
        those that named snapshots pin."""
        from metalake.core.moments import age_in_days
        from metalake.core.retention import vacuum

        if vacuum_days is not None:
            vacuum_days = age_in_days(vacuum_days, what="vacuum_days")
        if self.moment is not None:
            raise ReadOnlyLakeError("Maintenance rewrites the present: run it on the live lake.")
        settle_pending_writes(self.location.uri)
        specs = [self.spec(name) for name in names]
        results = [self._store.maintain(spec, self.actor, dry_run=dry_run) for spec in specs]
        if vacuum_days is not None:
            results += vacuum(self._store, self, specs, vacuum_days, dry_run=dry_run)
        return results
