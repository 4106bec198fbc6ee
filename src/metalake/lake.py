"""The facade: `metalake.connect()` -> Lake, which composes core's Tables with the domain namespaces.

Lake only composes and delegates: the tables (append, read, SQL, history, time travel, snapshots) come from
`metalake.core.tables.Tables`, the metadata kinds from the namespaces (`lake.runs`, `lake.registry`, ...), each
built once per Lake with the Tables and the collaborators it needs. Nothing below this module imports it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalake.core.catalog_store import CATALOG_TABLE, shipped_specs, sync_catalog
from metalake.core.delta import DeltaStore, TableMaintenance
from metalake.core.storage import Location, resolve
from metalake.core.tables import Commit, Moment, Tables
from metalake.errors import LakeNotFound, RunError, StorageError

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from metalake.access import Access
    from metalake.core.catalog import TableSpec
    from metalake.core.masking import Masker
    from metalake.datasets import Datasets
    from metalake.deployments import Deployments
    from metalake.kpis.kpis import Kpis
    from metalake.lineage import Lineage
    from metalake.quality import Quality
    from metalake.registry import Registry
    from metalake.tracking import Runs
    from metalake.tracking.artifact_store import ArtifactStore
    from metalake.tracking.experiments import Experiments
    from metalake.tracking.logged_models import LoggedModels
    from metalake.tracking.sync import SyncReport

__all__ = ["Commit", "Lake", "connect", "default_actor"]


def default_actor() -> str:
    """`$METALAKE_ACTOR`, else the OS user."""
    actor = os.environ.get("METALAKE_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def connect(
    uri: str | os.PathLike[str] | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
    actor: str | None = None,
    extra_specs: str | os.PathLike[str] | None = None,
    create: bool = True,
    offline: bool | None = None,
    lost_after: float | timedelta | None = None,
) -> Lake:
    """Open the lake at `uri` (default `$METALAKE_URI`, else ./lake), creating it if needed.

    `uri` is a local folder or an object-store URI (s3://, gs://, az://, file://). `extra_specs` is a folder of
    the user's own table specs; they are stored in the lake, so later readers need not pass it again.
    `create=False` opens only an existing lake and raises LakeNotFound otherwise, leaving nothing behind: for
    readers such as the exports, where a mistyped path should not become an empty lake.

    Opening replays what run flushes of dead processes on this machine left in the local journal for this lake
    (see `lake.runs.sync`). `offline=True` (default: `$METALAKE_OFFLINE` set to 1) touches no storage at all:
    runs started on such a lake log into the local journal only, for `metalake sync` to commit later from a
    machine that reaches the storage; reads and other writes raise OfflineLakeError.

    `lost_after` (seconds or a timedelta; default `$METALAKE_LOST_AFTER`, else 600) is how long a running run
    may go without a heartbeat before `runs_current` and `lake.runs` show it `lost`.
    """
    lost_after_s = _lost_after_seconds(lost_after)
    if offline is None:
        offline = os.environ.get("METALAKE_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    location = resolve(uri, storage_options)
    if offline:
        specs = shipped_specs(Path(extra_specs) if extra_specs is not None else None)
        tables = Tables(
            location,
            actor or default_actor(),
            specs,
            DeltaStore(location),
            offline=True,
            lost_after_s=lost_after_s,
        )
        return Lake(tables)
    if create and location.is_local:
        try:
            Path(location.uri).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"Cannot create the lake folder {location.uri}: {error.strerror}. "
                "Check that the path is a folder you can write to."
            ) from error
    who = actor or default_actor()
    store = DeltaStore(location)
    if not create and not _holds_lake(location, store):
        raise LakeNotFound(location.uri)
    specs = sync_catalog(store, Path(extra_specs) if extra_specs is not None else None, who)
    tables = Tables(location, who, specs, store, lost_after_s=lost_after_s)
    from metalake.tracking.sync import replay_at_connect

    lake = Lake(tables)
    lake.replayed_at_connect = replay_at_connect(tables)
    return lake


def _lost_after_seconds(given: float | timedelta | None) -> float:
    from metalake.core.sql import DEFAULT_LOST_AFTER_S

    if given is None:
        text = os.environ.get("METALAKE_LOST_AFTER", "").strip()
        if not text:
            return DEFAULT_LOST_AFTER_S
        try:
            given = float(text)
        except ValueError:
            raise RunError(
                f"METALAKE_LOST_AFTER={text!r} is not a number of seconds: give e.g. 600 for ten minutes."
            ) from None
    seconds = given.total_seconds() if isinstance(given, timedelta) else float(given)
    if not seconds > 0:
        raise RunError(f"lost_after must be a positive number of seconds, not {given!r}.")
    return seconds


def _holds_lake(location: Location, store: DeltaStore) -> bool:
    """Whether the location holds a lake (its catalog table); looks without creating anything."""
    if location.is_local and not Path(location.uri).is_dir():
        return False
    return store.load(CATALOG_TABLE) is not None


class Lake:
    """A metalake: Delta tables described by the catalog, readable live or as of a past moment."""

    def __init__(self, tables: Tables):
        self._tables = tables
        # What `connect` replayed from the local journal (dead processes' run flushes), if anything.
        self.replayed_at_connect: SyncReport | None = None

    def __repr__(self) -> str:
        at = f", as_of={self.moment.label!r}" if self.moment else ""
        masked = ", masked" if self.masked_by is not None else ""
        return f"Lake({self.location.uri!r}{at}{masked})"

    def close(self) -> None:
        """Wait for queued run flushes, release the SQL session; the lake can still be used afterwards.

        Raises FlushError if queued run flushes could not be committed.
        """
        from metalake.tracking.group_commit import release_queue

        try:
            release_queue(self._tables)
        finally:
            self._tables.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def location(self) -> Location:
        return self._tables.location

    @property
    def actor(self) -> str:
        return self._tables.actor

    @property
    def moment(self) -> Moment | None:
        """Where a read-only lake stands: a moment or a snapshot; None for the live lake."""
        return self._tables.moment

    @property
    def uri(self) -> str:
        return self._tables.uri

    @property
    def read_only(self) -> bool:
        return self._tables.read_only

    # -- namespaces -----------------------------------------------------------------------------------------

    @cached_property
    def access(self) -> Access:
        """Principals, groups, tokens and grants, and who may do what (`check`): what the server enforces."""
        from metalake.access import Access

        return Access(self._tables)

    @cached_property
    def runs(self) -> Runs:
        """Training runs: `lake.runs.start(experiment=...)`, `resume`, `search`, `get`, `metric_history`."""
        from metalake.tracking import Runs

        return Runs(self._tables, datasets=self.datasets)

    @cached_property
    def experiments(self) -> Experiments:
        """Experiments with ids, tags and a lifecycle: `lake.experiments.list()`, `get`, `by_name`, `create`,
        `rename`, `delete`, `restore`, `set_tag` (what MLflow clients need of them)."""
        from metalake.tracking.experiments import Experiments

        return Experiments(self._tables, renamed=self._move_grants)

    def _move_grants(self, kind: str, old: str, new: str) -> None:
        """Grants follow a renamed experiment or model (one commit to the grants table, after the rename's)."""
        self.access.move_grants(f"{kind}:{old}", f"{kind}:{new}")

    @cached_property
    def logged_models(self) -> LoggedModels:
        """MLflow 3's logged models (a run's model files with params, tags and a status): `create`, `get`,
        `finalize`, `search`, `set_tags`, `log_params`, `delete`."""
        from metalake.tracking.logged_models import LoggedModels

        return LoggedModels(self._tables)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """Files of runs and logged models stored in the lake's `artifacts/` folder, each recorded in the
        `artifacts` table: `write`, `read`, `list`, `delete`."""
        from metalake.tracking.artifact_store import ArtifactStore

        return ArtifactStore(self._tables, logged_models=self.logged_models)

    @cached_property
    def registry(self) -> Registry:
        """Model registry: `lake.registry.register(...)`, `transition`, `set_alias`, `get`, `versions`, `at`."""
        from metalake.registry import Registry

        return Registry(self._tables, runs=self.runs, renamed=self._move_grants)

    @cached_property
    def datasets(self) -> Datasets:
        """Datasets and their versions: `lake.datasets.register(name, path)`, `get`, `list`, `history`, `diff`."""
        from metalake.datasets import Datasets

        return Datasets(self._tables)

    @cached_property
    def quality(self) -> Quality:
        """Data quality: `lake.quality.validate(name, suite=...)` with Great Expectations or pandera."""
        from metalake.quality import Quality

        return Quality(self._tables, datasets=self.datasets)

    @cached_property
    def deployments(self) -> Deployments:
        """Deployments of model versions: `lake.deployments.record(model, version, environment)`, `end`, `list`."""
        from metalake.deployments import Deployments

        return Deployments(self._tables)

    @cached_property
    def kpis(self) -> Kpis:
        """Business and online KPIs: `lake.kpis.define(...)`, `observe`, `ingest`, `impact` of deployments."""
        from metalake.kpis.kpis import Kpis

        return Kpis(self._tables)

    @cached_property
    def lineage(self) -> Lineage:
        """Pipelines and lineage: `lake.lineage.ingest(openlineage_events)`, `upstream(node)`, `downstream(node)`."""
        from metalake.lineage import Lineage

        return Lineage(self._tables)

    # -- the tables -----------------------------------------------------------------------------------------

    def tables(self) -> list[TableSpec]:
        """Every table spec in force, by name."""
        return self._tables.specs()

    def spec(self, table: str) -> TableSpec:
        """A table's spec: columns, types, checks and documentation."""
        return self._tables.spec(table)

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
        """Validate a batch against the table's contract and commit it atomically.

        `data` is a pyarrow Table, a polars or pandas DataFrame, or a list of dicts. A refused batch raises
        `ContractError` and writes nothing; a batch retried with the same `idempotency_key` is written once.
        metalake sets `recorded_at` and `recorded_by` on every row; a batch that gives them is refused.
        """
        return self._tables.append(
            table, data, actor=actor, reason=reason, idempotency_key=idempotency_key, operation=operation
        )

    def arrow_dataset(self, table: str) -> Any:
        """The table as a pyarrow dataset (an empty table when it does not exist at this moment)."""
        return self._tables.arrow_dataset(table)

    def scan(self, table: str) -> pl.LazyFrame:
        """A lazy polars scan of the table; filters and projections reach the Parquet files."""
        return self._tables.scan(table)

    def read(
        self, table: str, *, columns: Sequence[str] | None = None, where: str | pl.Expr | None = None
    ) -> pl.DataFrame:
        """The table as a polars DataFrame; `where` is a SQL predicate (`"step > 3"`) or a polars expression."""
        return self._tables.read(table, columns=columns, where=where)

    def sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL over every table and view (at this lake's moment); returns a relation."""
        return self._tables.sql(query, params)

    def arrow_relations(self, names: Collection[str]) -> dict[str, Any]:
        """What SQL reads for each named table, `lake_commits` or `lake_clock`, as in-memory Arrow (datasets or
        tables): for a DuckDB database with no file access, like the server's user-SQL runner."""
        return self._tables.arrow_relations(names)

    def history(self, table: str, *, limit: int | None = None) -> pl.DataFrame:
        """Every commit of a table, newest first: version, timestamp, operation, actor, reason, rows added, key."""
        return self._tables.history(table, limit=limit)

    def version(self, table: str) -> int | None:
        """The table's version at this lake's moment (None when it did not exist then)."""
        return self._tables.version(table)

    # -- time travel and snapshots --------------------------------------------------------------------------

    def as_of(self, when: datetime | date | str) -> Lake:
        """A read-only lake at a moment: a datetime, an ISO-8601 string, or a snapshot name.

        A moment in the future (beyond 5 minutes of clock skew) or before the lake was created raises
        TimeTravelError; so does reading a table whose files of that moment a vacuum deleted (the message names
        the versions and snapshots still readable). Text that is neither a time nor a snapshot raises
        SnapshotNotFound (a TimeTravelError).
        """
        return Lake(self._tables.as_of(when))

    def masked(self, masker: Masker | None = None) -> Lake:
        """This lake (at its moment) as a reader without the `unmask` privilege sees it, read-only.

        Every read masks what the specs mark sensitive, whichever path it takes: SQL and the views, `read` and
        `scan`, the namespaces (`runs.get`, searches, the registry), the audit log's actors. Default masker: the
        lake's specs, the key from `load_mask_key()` and the default secret-key patterns (see `masker`).
        """
        return Lake(self._tables.masked(masker or self.masker()))

    def masker(self, *, key: bytes | None = None, secret_key_patterns: Sequence[str] | None = None) -> Masker:
        """The masking layer for this lake's specs: `key` defaults to `load_mask_key()`, the patterns to
        DEFAULT_SECRET_KEY_PATTERNS plus the tags that name a person (`mlflow.user`)."""
        from metalake.core.mask_key import load_mask_key
        from metalake.core.masking import DEFAULT_SECRET_KEY_PATTERNS, IDENTITY_KEYS, Masker

        patterns = secret_key_patterns if secret_key_patterns is not None else DEFAULT_SECRET_KEY_PATTERNS
        return Masker(
            {spec.name: spec for spec in self._tables.specs()},
            key if key is not None else load_mask_key(),
            secret_key_patterns=(*patterns, *IDENTITY_KEYS),
        )

    @property
    def masked_by(self) -> Masker | None:
        """The masker of a lake from `masked()`; None for a lake that shows values in clear."""
        return self._tables.masker

    def created_at(self) -> datetime | None:
        """When the lake was created (its first table); `as_of` refuses earlier moments. None: no table yet."""
        return self._tables.created_at()

    def snapshot(self, name: str, *, description: str | None = None) -> Commit:
        """Pin the current version of every table under `name`; `lake.as_of(name)` reads them back."""
        return self._tables.snapshot(name, description=description)

    def check_snapshot_name(self, name: str) -> None:
        """Raise MetalakeError unless `name` is a valid snapshot name (the snapshots table's pattern)."""
        self._tables.check_snapshot_name(name)

    def snapshots(self) -> pl.DataFrame:
        """Every named snapshot: name, description, when it was pinned, by whom, how many tables it holds."""
        return self._tables.snapshots()

    def maintain(
        self,
        *,
        tables: Sequence[str] | None = None,
        dry_run: bool = False,
        metric_history_days: float | None = None,
        vacuum_days: float | None = None,
    ) -> list[TableMaintenance]:
        """Rewrite tables for fast reads, and apply retention rules when asked.

        In order: drop the metric points of archived runs older than `metric_history_days` (never those of a
        run behind a non-archived model version; summaries stay); cluster tables with `cluster_by` (metrics by
        key and run) and compact the rest; delete files unreferenced for more than `vacuum_days`, except those that
        named snapshots pin. Run it from one job at a time on object stores (on local disk a lock file
        serializes it); writers may keep appending. `dry_run=True` only reports what would be done.
        """
        from metalake.core.moments import age_in_days
        from metalake.tracking.group_commit import METRICS_TABLE
        from metalake.tracking.retention import drop_metric_history

        if metric_history_days is not None:
            metric_history_days = age_in_days(metric_history_days, what="metric_history_days")
        if vacuum_days is not None:
            vacuum_days = age_in_days(vacuum_days, what="vacuum_days")
        names = list(tables) if tables is not None else self._tables.names()
        for name in names:
            self._tables.spec(name)
        results = []
        if metric_history_days is not None and METRICS_TABLE in names:
            if self.read_only:
                self._tables.maintain([], dry_run=True)  # raises ReadOnlyLakeError with the reason
            results.append(drop_metric_history(self._tables, metric_history_days, dry_run=dry_run))
        return results + self._tables.maintain(names, dry_run=dry_run, vacuum_days=vacuum_days)
