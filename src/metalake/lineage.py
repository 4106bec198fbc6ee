"""Pipelines and lineage: `lake.lineage.ingest(events)` stores OpenLineage events, `upstream`/`downstream` walk the graph.

Ingestion keeps every distinct event (lineage_events, keyed by a hash of its content) and derives pipelines,
pipeline_runs, lineage_edges, dataset versions (schema facet) and data-quality results from the events not seen
before. Current state (a run's state, the graph) is computed in views from the events, so events that arrive
twice or out of order give the same answers. The graph is the `lineage_graph` view: OpenLineage edges plus
metalake's own facts (run inputs, model versions, deployments).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from metalake.errors import InvalidEvent, LineageError, MetalakeError
from metalake.openlineage_events import (
    EDGE_COLUMNS,
    EVENT_COLUMNS,
    RUN_COLUMNS,
    Event,
    EventRows,
    canonical_json,
    parse_event,
)

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from metalake.lake import Lake

Direction = Literal["upstream", "downstream"]
NODE = re.compile(r"(dataset|job|run|model|deployment):.+")
EVENTS_TABLE = "lineage_events"
VERSION_CLAIM_ATTEMPTS = 10
UNLIMITED_DEPTH = 1_000_000
# Commit order: derived facts first, the raw events last. An event is "seen" once it is in lineage_events, so a
# batch interrupted midway is derived again in full when it is sent again.
COMMIT_ORDER = ("dq_results", "dq_validations", "pipelines", "pipeline_runs", "lineage_edges", EVENTS_TABLE)


class VersionClaimConflict(LineageError):
    """Concurrent writers kept taking the dataset version numbers this ingest claimed: sending again may pass."""

    code = "version_claim_conflict"


MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # of one POST body, after gunzip


class PayloadTooLarge(InvalidEvent):
    """A request body larger than the server takes (HTTP 413)."""

    code = "payload_too_large"

    def __init__(self, max_bytes: int, *, source: str = "request"):
        super().__init__(
            0,
            f"the body is larger than {max_bytes // (1024 * 1024)} MiB (uncompressed): "
            "send the events in several requests",
            source=source,
        )


# (table, id column, time column): derived rows whose id is stored are not written again
DERIVED_IDS = (
    ("pipeline_runs", "event_id", "event_time"),
    ("lineage_edges", "edge_id", "event_time"),
    ("dq_validations", "validation_id", "validated_at"),
    ("dq_results", "validation_id", None),
)


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did: events received, how many were new, and the rows derived from them."""

    received: int
    new: int
    duplicates: int
    pipeline_runs: int
    edges: int
    dataset_versions: int
    validations: int


class Lineage:
    """`lake.lineage`: ingest OpenLineage events, and walk the lineage graph upstream or downstream."""

    def __init__(self, lake: Lake):
        self._lake = lake

    # -- ingestion ------------------------------------------------------------------------------------------

    def ingest(self, events: Iterable[Any], *, source: str = "batch") -> IngestResult:
        """Store OpenLineage events (dicts, JSON text or openlineage-python event objects) and their facts.

        The whole batch is checked first: one invalid event refuses the batch (InvalidEvent says which and
        why) and nothing is written. Events already stored, or repeated in the batch, are written once.
        """
        with _no_cyclic_gc():
            checked = [parse_event(raw, position, source=source) for position, raw in enumerate(events)]
            return self.ingest_checked(checked)

    def ingest_file(self, path: str | Path, *, chunk_events: int = 20_000) -> IngestResult:
        """Ingest a JSONL file of OpenLineage events (one per line, as the file transport writes them).

        Every line is checked before anything is written; then the events are committed in chunks.
        """
        file = Path(path)
        if not file.is_file():
            raise LineageError(
                f"{file} is not a file: give a JSONL file of OpenLineage events, one per line."
            )
        checked: list[Event] = []
        source = f"file {file}"
        with file.open("rb") as handle, _no_cyclic_gc():
            for number, line in enumerate(handle):
                if line.strip():
                    # kept as text: parsed again only if it turns out to be new
                    checked.append(parse_event(line, number, source=source, keep_payload=False))
            return self._ingest_chunks(checked, chunk_events)

    def _ingest_chunks(self, checked: list[Event], chunk_events: int) -> IngestResult:
        totals = [
            self.ingest_checked(checked[i : i + chunk_events]) for i in range(0, len(checked), chunk_events)
        ]
        return _sum_results(totals) if totals else IngestResult(0, 0, 0, 0, 0, 0, 0)

    def ingest_checked(self, checked: Sequence[Event]) -> IngestResult:
        """`ingest` for events that `parse_event` already checked (the HTTP server checks them on arrival)."""
        with _no_cyclic_gc():
            try:
                return self._ingest_new(checked)
            except (MetalakeError, OSError):
                raise
            except Exception as error:  # a bug in deriving rows: say which batch, keep the cause
                raise LineageError(
                    f"Could not derive rows from {len(checked)} OpenLineage event(s): "
                    f"{type(error).__name__}: {error}. Nothing of the batch's events was recorded as seen; "
                    "report it with the events."
                ) from error

    def _ingest_new(self, checked: Sequence[Event]) -> IngestResult:
        unique = list({event.event_id: event for event in checked}.values())
        stored = self._stored_ids(unique)
        new = sorted(
            (e for e in unique if e.event_id not in stored), key=lambda e: (e.event_time, e.event_id)
        )
        if not new:
            return IngestResult(len(checked), 0, len(checked), 0, 0, 0, 0)
        rows = EventRows()
        for event in new:
            rows.add(event)
        batch_key = hashlib.sha256(" ".join(sorted(e.event_id for e in new)).encode()).hexdigest()[:32]
        frames = self._frames(rows)
        prepared = {table: self._lake._prepare(table, frame) for table, frame in frames.items()}
        versions_written = self._record_dataset_versions(rows, batch_key, prepared)
        self._drop_already_derived(prepared, new)
        reason = f"ingest {len(new)} OpenLineage event(s)"
        for table in COMMIT_ORDER:
            if table in prepared and prepared[table].num_rows:
                self._lake._commit_prepared(
                    table,
                    [(f"lineage:{batch_key}:{table}", prepared[table])],
                    operation="ingest_lineage",
                    reason=reason,
                )
        return IngestResult(
            received=len(checked),
            new=len(new),
            duplicates=len(checked) - len(new),
            pipeline_runs=len(rows.pipeline_runs),
            edges=len(rows.edges),
            dataset_versions=versions_written,
            validations=len(rows.quality),
        )

    def _stored_ids(self, events: Sequence[Event]) -> set[str]:
        """Ids of these events already in lineage_events; the time range lets Parquet statistics skip files."""
        import polars as pl

        if not events:
            return set()
        low = min(e.event_time for e in events)
        high = max(e.event_time for e in events)
        ids = [e.event_id for e in events]
        found = (
            self._lake.scan(EVENTS_TABLE)
            .filter(pl.col("event_time").is_between(low, high) & pl.col("event_id").is_in(ids))
            .select("event_id")
            .collect()
        )
        return set(found.get_column("event_id").to_list())

    def _drop_already_derived(self, prepared: dict[str, pa.Table], new: Sequence[Event]) -> None:
        """Leave out derived rows already stored: an ingest that crashed after the derived commits, before the
        lineage_events one, left them, and the batch key does not match when the events are sent regrouped.

        Derived ids come from the event id (run rows carry it, edge and validation ids start with it), so a
        stored id means the same event's row; the event time range lets Parquet statistics skip files.
        """
        import polars as pl
        import pyarrow as pa
        import pyarrow.compute as pc

        low = min(e.event_time for e in new)
        high = max(e.event_time for e in new)
        for table, column, time_column in DERIVED_IDS:
            if table not in prepared or not prepared[table].num_rows:
                continue
            ids = pc.unique(prepared[table].column(column)).to_pylist()
            where = pl.col(column).is_in(ids)
            if time_column is not None:
                where = pl.col(time_column).is_between(low, high) & where
            found = self._lake.scan(table).filter(where).select(column).unique().collect()
            if found.height:
                stored = pa.array(found.get_column(column).to_list(), pa.string())
                keep = pc.invert(pc.is_in(prepared[table].column(column), value_set=stored))
                prepared[table] = prepared[table].filter(keep)

    def _frames(self, rows: EventRows) -> dict[str, pl.DataFrame]:
        """The derived rows as typed frames (the fast path of the contract check), dataset versions excluded."""
        current = self._current_pipelines(list(rows.pipelines))
        pipelines = [
            row
            for key, row in rows.pipeline_rows().items()
            if key not in current
            or (
                row["facets"] is not None
                and current[key][0] != row["facets"]
                and (current[key][1] is None or row["event_time"] >= current[key][1])  # older news: skip
            )
        ]
        results, validations = [], []
        for quality in rows.quality:
            for result in quality.results:
                results.append(
                    {
                        "validation_id": quality.validation_id,
                        **result,
                        "kwargs": None if result["kwargs"] is None else canonical_json(result["kwargs"]),
                        "details": None if result["details"] is None else canonical_json(result["details"]),
                    }
                )
            validations.append(
                {
                    "validation_id": quality.validation_id,
                    "dataset": quality.dataset,
                    "version": None,  # filled with the dataset version once observations are resolved
                    "suite_name": "openlineage",
                    "engine": "openlineage",
                    "success": quality.successful == quality.evaluated,
                    "evaluated": quality.evaluated,
                    "successful": quality.successful,
                    "unsuccessful": quality.evaluated - quality.successful,
                    "validated_at": quality.event_time,  # a datetime: few rows
                    "run_id": quality.run_id,
                }
            )
        tables = {"pipelines": pipelines, "dq_results": results, "dq_validations": validations}
        frames = {table: self._typed_frame(table, records) for table, records in tables.items() if records}
        for table, names, tuples in (
            (EVENTS_TABLE, EVENT_COLUMNS, rows.events),
            ("pipeline_runs", RUN_COLUMNS, rows.pipeline_runs),
            ("lineage_edges", EDGE_COLUMNS, rows.edges),
        ):
            if tuples:
                frames[table] = self._typed_columns(
                    table, dict(zip(names, map(list, zip(*tuples, strict=True)), strict=True))
                )
        return frames

    def _typed_frame(self, table: str, records: list[dict[str, Any]]) -> pl.DataFrame:
        return self._typed_columns(table, {name: [r[name] for r in records] for name in records[0]})

    def _typed_columns(self, table: str, columns: dict[str, list[Any]]) -> pl.DataFrame:
        """Columns of Python values as a frame of the table's types (the fast path of the contract check)."""
        import polars as pl

        from metalake.contracts import polars_dtype

        specs = [c for c in self._lake.spec(table).columns if c.name in columns]
        # Timestamps come as epoch microseconds: building a column of datetime objects costs far more.
        times = [
            c.name for c in specs if c.type == "timestamp[us, UTC]" and isinstance(columns[c.name][0], int)
        ]
        schema = {c.name: pl.Int64() if c.name in times else polars_dtype(c.type) for c in specs}
        frame = pl.DataFrame({c.name: columns[c.name] for c in specs}, schema=schema)
        return frame.with_columns(pl.col(name).cast(pl.Datetime("us", "UTC")) for name in times)

    def _current_pipelines(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str | None, datetime | None]]:
        """The current stored facets of these jobs and the time of the event that reported them.

        Current is the row of the latest event (rows written before event_time was stored come first, by
        recorded_at); jobs never stored are absent.
        """
        import polars as pl

        if not keys:
            return {}
        names = sorted({name for _, name in keys})
        scan = self._lake.scan("pipelines")
        if "event_time" not in scan.collect_schema().names():  # a table written before the column was added
            scan = scan.with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias("event_time"))
        stored = (
            scan.filter(pl.col("name").is_in(names))
            .sort("event_time", "recorded_at", nulls_last=False)
            .group_by("namespace", "name")
            .agg(pl.col("facets").last(), pl.col("event_time").last())
            .collect()
        )
        return {
            (r["namespace"], r["name"]): (r["facets"], r["event_time"]) for r in stored.iter_rows(named=True)
        }

    def _record_dataset_versions(self, rows: EventRows, batch_key: str, prepared: dict[str, pa.Table]) -> int:
        """Find or claim the dataset version of every schema observation; fill edge and validation versions.

        A version is identified by its fingerprint (schema and datasetVersion facet): a schema seen before maps
        to its version, a new one becomes the dataset's next version, claimed with the same per-(dataset,
        version) idempotency key as `lake.datasets.register`, so concurrent writers never share a number.
        """
        if not rows.observations:
            return 0
        for _ in range(VERSION_CLAIM_ATTEMPTS):
            versions, new_rows = self._assign_versions(rows)
            if new_rows:
                table = self._lake._prepare(
                    "dataset_versions", self._typed_frame("dataset_versions", new_rows)
                )
                parts = [
                    (f"dataset_version:{row['dataset']}:{row['version']}", table.slice(i, 1))
                    for i, row in enumerate(new_rows)
                ]
                # The numbers were free in the state just read, which the commit starts from: a writer that
                # claims one since makes this commit conflict, and the retry checks every key.
                _, written = self._lake._commit_prepared(
                    "dataset_versions",
                    parts,
                    operation="ingest_lineage",
                    reason=f"lineage batch {batch_key}",
                    keys_may_exist=False,
                )
                if not all(written):
                    continue  # another writer claimed a number first: look again
            self._fill_versions(rows, versions, prepared)
            return len(new_rows)
        raise VersionClaimConflict(
            "Could not claim dataset version numbers after several attempts: too many concurrent writers. "
            "Send the batch again; events already stored are not written twice."
        )

    def _assign_versions(self, rows: EventRows) -> tuple[list[int], list[dict[str, Any]]]:
        import polars as pl

        from metalake.datasets import schema_changes

        names = sorted({o.dataset for o in rows.observations})
        stored = (
            self._lake.read(
                "dataset_versions",
                columns=["dataset", "version", "fingerprint", "schema"],
                where=pl.col("dataset").is_in(names),
            )
            .sort("version")
            .to_dicts()
        )
        by_fingerprint = {(r["dataset"], r["fingerprint"]): int(r["version"]) for r in stored}
        latest: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        for r in stored:
            latest[r["dataset"]] = (int(r["version"]), json.loads(r["schema"] or "[]"))
        versions: list[int] = []
        new_rows: list[dict[str, Any]] = []
        seen: dict[str, list[tuple[datetime, list[dict[str, Any]]]]] = {}  # by dataset: (time, schema)
        loaded = False  # the stored versions' times, read once and only when a stored version exists
        for observation in sorted(rows.observations, key=lambda o: o.event_time):
            key = (observation.dataset, observation.fingerprint)
            if key not in by_fingerprint:
                number, previous_schema = latest.get(observation.dataset, (0, []))
                if number and not loaded:
                    for dataset, times in self._observed_versions(rows, stored).items():
                        seen.setdefault(dataset, []).extend(times)
                    loaded = True
                observed = seen.setdefault(observation.dataset, [])
                late = bool(observed) and observation.event_time < max(t for t, _ in observed)
                # Numbers follow arrival; the changes are against the version observed just before in time.
                earlier = [(t, schema) for t, schema in observed if t <= observation.event_time]
                if earlier:
                    changes = schema_changes(max(earlier, key=lambda e: e[0])[1], observation.schema)
                elif late or number == 0:
                    changes = None
                else:  # no stored version has a known time: the latest by number
                    changes = schema_changes(previous_schema, observation.schema)
                observed.append((observation.event_time, observation.schema))
                by_fingerprint[key] = number + 1
                latest[observation.dataset] = (number + 1, observation.schema)
                new_rows.append(
                    {
                        "dataset": observation.dataset,
                        "version": number + 1,
                        "fingerprint": observation.fingerprint,
                        "row_count": observation.row_count,
                        "bytes": observation.bytes,
                        "file_count": observation.file_count,
                        "schema": canonical_json(observation.schema),
                        "source_uri": observation.source_uri,
                        "source_format": "openlineage",
                        "run_id": observation.run_id,
                        "description": "schema reported in an OpenLineage event"
                        + (
                            f" (datasetVersion {observation.dataset_version})"
                            if observation.dataset_version
                            else ""
                        )
                        + (", older than the dataset's latest observed schema" if late else ""),
                        "schema_changes": None
                        if changes is None
                        else canonical_json([c.__dict__ for c in changes]),
                    }
                )
        versions = [by_fingerprint[(o.dataset, o.fingerprint)] for o in rows.observations]
        return versions, new_rows

    def _observed_versions(
        self, rows: EventRows, stored: list[dict[str, Any]]
    ) -> dict[str, list[tuple[datetime, list[dict[str, Any]]]]]:
        """When each stored version of these datasets was first seen in an event, with its schema.

        The time comes from the input and output edges that carry the version (versions only a DatasetEvent or
        `lake.datasets.register` reported have none and are left out).
        """
        import polars as pl

        datasets = {o.node: o.dataset for o in rows.observations}
        edges = self._lake.scan("lineage_edges").filter(pl.col("edge_type").is_in(["input", "output"]))
        ends = pl.concat(
            [
                edges.filter(pl.col("source_node").is_in(list(datasets))).select(
                    pl.col("source_node").alias("node"),
                    pl.col("source_version").alias("version"),
                    "event_time",
                ),
                edges.filter(pl.col("target_node").is_in(list(datasets))).select(
                    pl.col("target_node").alias("node"),
                    pl.col("target_version").alias("version"),
                    "event_time",
                ),
            ]
        )
        first_seen = (
            ends.filter(pl.col("version").str.contains(r"^[0-9]+$"))
            .group_by("node", "version")
            .agg(pl.col("event_time").min())
            .collect()
        )
        times = {
            (datasets[r["node"]], int(r["version"])): r["event_time"]
            for r in first_seen.iter_rows(named=True)
        }
        observed: dict[str, list[tuple[datetime, list[dict[str, Any]]]]] = {}
        for r in stored:
            moment = times.get((r["dataset"], int(r["version"])))
            if moment is not None:
                observed.setdefault(r["dataset"], []).append((moment, json.loads(r["schema"] or "[]")))
        return observed

    def _fill_versions(self, rows: EventRows, versions: list[int], prepared: dict[str, pa.Table]) -> None:
        """Put the resolved dataset versions on the edges and validations already prepared."""
        import pyarrow as pa

        if "lineage_edges" in prepared and rows.versioned_ends:
            edges = prepared["lineage_edges"]
            columns = {end: edges.column(f"{end}_version").to_pylist() for end in ("source", "target")}
            for edge_index, end, observation in rows.versioned_ends:
                columns[end][edge_index] = str(versions[observation])
            for end, values in columns.items():
                name = f"{end}_version"
                edges = edges.set_column(
                    edges.schema.get_field_index(name), name, pa.array(values, pa.string())
                )
            prepared["lineage_edges"] = edges
        if "dq_validations" in prepared:
            table = prepared["dq_validations"]
            filled = [None if q.observation is None else versions[q.observation] for q in rows.quality]
            index = table.schema.get_field_index("version")
            prepared["dq_validations"] = table.set_column(index, "version", pa.array(filled, pa.int64()))

    # -- the graph ------------------------------------------------------------------------------------------

    def upstream(self, node: str, depth: int | None = None) -> pl.DataFrame:
        """Every edge on the paths that lead to `node`, at most `depth` edges away (None: all the way)."""
        return self.walk(node, "upstream", depth)

    def downstream(self, node: str, depth: int | None = None) -> pl.DataFrame:
        """Every edge on the paths that start at `node`, at most `depth` edges away (None: all the way)."""
        return self.walk(node, "downstream", depth)

    def walk(self, node: str, direction: Direction, depth: int | None = None) -> pl.DataFrame:
        """The edges reached from `node` (recursive SQL over the `lineage_graph` view), nearest first.

        Columns: depth (edges from `node`), source_node, target_node, edge_type, origin, runs, last_run_id,
        source_version, target_version, last_seen. Each node is visited once, so cycles end the walk.
        """
        check_node(node)
        if depth is not None and depth < 1:
            raise LineageError(
                f"depth must be at least 1, not {depth}; leave it out to walk the whole graph."
            )
        here, there = (
            ("target_node", "source_node") if direction == "upstream" else ("source_node", "target_node")
        )
        query = f"""
            WITH RECURSIVE walk(node, depth) USING KEY (node) AS (
                SELECT CAST($node AS VARCHAR), 0
                UNION
                SELECT g.{there}, w.depth + 1
                FROM walk AS w JOIN lineage_graph AS g ON g.{here} = w.node
                WHERE w.depth < $depth
                  AND NOT EXISTS (SELECT 1 FROM recurring.walk AS r WHERE r.node = g.{there})
            )
            SELECT w.depth + 1 AS depth, g.*
            FROM walk AS w JOIN lineage_graph AS g ON g.{here} = w.node
            WHERE w.depth < $depth AND g.{there} IN (SELECT node FROM walk)
            ORDER BY depth, g.source_node, g.target_node, g.edge_type
        """
        frame: pl.DataFrame = self._lake.sql(
            query, {"node": node, "depth": UNLIMITED_DEPTH if depth is None else depth}
        ).pl()
        return frame

    def column_lineage(self, dataset: str) -> pl.DataFrame:
        """Column-level edges into `dataset` (a node id or NAMESPACE/NAME): which source columns feed which."""
        node = dataset if dataset.startswith("dataset:") else f"dataset:{dataset}"
        frame: pl.DataFrame = self._lake.sql(
            """
            SELECT DISTINCT target_field, source_node, source_field, transformation
            FROM lineage_edges
            WHERE edge_type = 'column' AND target_node = $node
            ORDER BY target_field, source_node, source_field
            """,
            {"node": node},
        ).pl()
        return frame


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that stay alive.

    Each collection walks every live object, so parsing 100,000 events (millions of dicts and strings, no
    cycles) with it on spends most of its time collecting nothing: about 2x slower. Reference counting still
    frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_node(node: str) -> None:
    if not isinstance(node, str) or not NODE.fullmatch(node):
        raise LineageError(
            f"{node!r} is not a lineage node id. Use dataset:NAMESPACE/NAME (metalake datasets are "
            "dataset:metalake/NAME), job:NAMESPACE/NAME, run:RUN_ID, model:NAME/VERSION or deployment:ENV/ID."
        )


def _sum_results(results: Sequence[IngestResult]) -> IngestResult:
    fields = IngestResult.__dataclass_fields__
    return IngestResult(**{name: sum(getattr(r, name) for r in results) for name in fields})


def read_events_payload(
    body: bytes, *, gzipped: bool, source: str = "request", max_bytes: int = MAX_PAYLOAD_BYTES
) -> list[Any]:
    """A POST body (one event, or a JSON list of events), gunzipped when the client compressed it.

    The gunzipped body may not pass `max_bytes` (PayloadTooLarge): a few kilobytes of gzip can hold gigabytes.
    """
    import zlib

    import orjson

    if gzipped:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, max_bytes + 1)
            complete = inflater.eof
        except zlib.error as error:
            raise InvalidEvent(
                0, f"the body says gzip but cannot be decompressed ({error})", source=source
            ) from None
        if len(body) > max_bytes:
            raise PayloadTooLarge(max_bytes, source=source)
        if not complete:
            raise InvalidEvent(0, "the body says gzip but the gzip stream is cut short", source=source)
    try:
        payload = orjson.loads(body)  # refuses nesting deeper than 1024, unlike a recursion error
    except ValueError as error:
        raise InvalidEvent(0, f"the body is not valid JSON ({error})", source=source) from None
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, Mapping) for item in items):
        raise InvalidEvent(0, "the body must be a JSON object (one event) or a list of them", source=source)
    return items
