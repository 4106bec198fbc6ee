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
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from metalake.errors import LineageError, LineageNodeNotFound, MetalakeError
from metalake.lineage.openlineage.events import Event, canonical_json, parse_event
from metalake.lineage.openlineage.rows import EDGE_COLUMNS, EVENT_COLUMNS, RUN_COLUMNS, EventRows
from metalake.lineage.versions import (
    record_dataset_versions,
    typed_columns,
    typed_frame,
)

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from metalake.core.tables import Tables

Direction = Literal["upstream", "downstream"]
NODE = re.compile(r"(dataset|job|run|model|deployment):.+")
EVENTS_TABLE = "lineage_events"
UNLIMITED_DEPTH = 1_000_000
# Commit order: derived facts first, the raw events last. An event is "seen" once it is in lineage_events, so a
# batch interrupted midway is derived again in full when it is sent again.
COMMIT_ORDER = ("dq_results", "dq_validations", "pipelines", "pipeline_runs", "lineage_edges", EVENTS_TABLE)


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


NODES_QUERY = """
    SELECT source_node AS node FROM lineage_graph
    UNION SELECT target_node FROM lineage_graph
    UNION SELECT 'run:' || run_id FROM runs
    UNION SELECT 'model:' || model || '/' || version FROM model_versions
    UNION SELECT 'dataset:metalake/' || dataset FROM dataset_versions WHERE coalesce(source_format, '') <> 'openlineage'
    UNION SELECT 'deployment:' || environment || '/' || deployment_id FROM deployments
    ORDER BY node
"""


class Lineage:
    """`lake.lineage`: ingest OpenLineage events, and walk the lineage graph upstream or downstream."""

    def __init__(self, tables: Tables):
        self._tables = tables

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
        if chunk_events < 1:
            raise LineageError(f"chunk_events must be at least 1, not {chunk_events}.")
        file = event_file(path)
        checked: list[Event] = []
        source = f"file {file}"
        with file.open("rb") as handle, _no_cyclic_gc():
            for number, line in enumerate(handle):
                if line.strip():
                    # kept as text: parsed again only if it turns out to be new (measured: no slower than
                    # building its rows at once, and far less memory until then)
                    checked.append(parse_event(line, number, source=source, keep_payload=False))
        with self._ingest_turn(len(checked)):
            return self._ingest_in_chunks(checked, chunk_events)

    def _ingest_in_chunks(self, checked: list[Event], chunk_events: int) -> IngestResult:
        """The new events in time order, chunk by chunk: a thread commits a chunk while the next one's rows are
        built (commits spend most of their time in delta-rs, outside the interpreter lock). At most one chunk
        waits, so memory stays bounded; a failed chunk stops the ones after it.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        new = self._new_events(checked)
        results: list[IngestResult] = []
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metalake-lineage") as committer:
                pending: list[Future[IngestResult]] = []
                for start in range(0, len(new), chunk_events):
                    chunk = new[start : start + chunk_events]
                    rows = EventRows()
                    for event in chunk:
                        rows.add(event)
                    if pending:
                        results.append(pending.pop().result())
                    pending.append(committer.submit(self._commit_rows, len(chunk), chunk, rows))
                results += [future.result() for future in pending]
        except Exception as error:
            if not results:
                raise
            written = sum(result.new for result in results)
            raise LineageError(
                f"Stopped after storing {written:,} of the file's {len(new):,} new event(s), in event-time order: "
                f"{type(error).__name__}: {error}. Ingesting the file again stores the rest (events already "
                "stored are skipped)."
            ) from error
        total = _sum_results(results) if results else IngestResult(0, 0, 0, 0, 0, 0, 0)
        return replace(total, received=len(checked), duplicates=len(checked) - total.new)

    def ingest_checked(self, checked: Sequence[Event]) -> IngestResult:
        """`ingest` for events that `parse_event` already checked (the HTTP server checks them on arrival)."""
        with self._ingest_turn(len(checked)):
            return self._ingest_new(checked)

    @contextlib.contextmanager
    def _ingest_turn(self, count: int) -> Iterator[None]:
        """One ingest at a time per lake on local disk, across processes (between looking up which events are
        stored and committing them, another ingest of the same events would store them twice); a bug in
        deriving rows is reported with the batch size, its cause kept.
        """
        from metalake.core.delta import INGEST_LOCK

        with _no_cyclic_gc(), self._tables.lock(EVENTS_TABLE, INGEST_LOCK):
            try:
                yield
            except (MetalakeError, OSError):
                raise
            except Exception as error:
                raise LineageError(
                    f"Could not derive rows from {count} OpenLineage event(s): "
                    f"{type(error).__name__}: {error}. Nothing of the batch's events was recorded as seen; "
                    "report it with the events."
                ) from error

    def _ingest_new(self, checked: Sequence[Event]) -> IngestResult:
        new = self._new_events(checked)
        if not new:
            return IngestResult(len(checked), 0, len(checked), 0, 0, 0, 0)
        rows = EventRows()
        for event in new:
            rows.add(event)
        return self._commit_rows(len(checked), new, rows)

    def _commit_rows(self, received: int, new: Sequence[Event], rows: EventRows) -> IngestResult:
        """Write the rows of events not stored yet: derived tables first, the raw events last."""
        batch_key = hashlib.sha256(" ".join(sorted(e.event_id for e in new)).encode()).hexdigest()[:32]
        frames = self._frames(rows)
        prepared = {table: self._tables.prepare(table, frame) for table, frame in frames.items()}
        versions_written = record_dataset_versions(self._tables, rows, batch_key, prepared)
        self._drop_already_derived(prepared, new)
        reason = f"ingest {len(new)} OpenLineage event(s)"
        for table in COMMIT_ORDER:
            if table in prepared and prepared[table].num_rows:
                self._tables.commit(
                    table,
                    [(f"lineage:{batch_key}:{table}", prepared[table])],
                    operation="ingest_lineage",
                    reason=reason,
                )
        return IngestResult(
            received=received,
            new=len(new),
            duplicates=received - len(new),
            pipeline_runs=len(rows.pipeline_runs),
            edges=len(rows.edges),
            dataset_versions=versions_written,
            validations=len(rows.quality),
        )

    def _new_events(self, checked: Sequence[Event]) -> list[Event]:
        """The events not stored yet, each once, in event-time order."""
        unique = list({event.event_id: event for event in checked}.values())
        stored = self._stored_ids(unique)
        return sorted(
            (e for e in unique if e.event_id not in stored), key=lambda e: (e.event_time, e.event_id)
        )

    def _stored_ids(self, events: Sequence[Event]) -> set[str]:
        """Ids of these events already in lineage_events."""
        import polars as pl

        if not events:
            return set()
        low = min(e.event_time for e in events)
        high = max(e.event_time for e in events)
        ids = pl.Series("event_id", [e.event_id for e in events], pl.String)
        found = self._stored_among(EVENTS_TABLE, ids, "event_time", low, high)
        return set(found.to_list())

    def _drop_already_derived(self, prepared: dict[str, pa.Table], new: Sequence[Event]) -> None:
        """Leave out derived rows already stored: an ingest that crashed after the derived commits, before the
        lineage_events one, left them, and the batch key does not match when the events are sent regrouped.

        Derived ids come from the event id (run rows carry it, edge and validation ids start with it), so a
        stored id means the same event's row.
        """
        import polars as pl
        import pyarrow.compute as pc

        low = min(e.event_time for e in new)
        high = max(e.event_time for e in new)
        for table, column, time_column in DERIVED_IDS:
            if table not in prepared or not prepared[table].num_rows:
                continue
            ids = pl.Series(column, prepared[table].column(column), pl.String)
            found = self._stored_among(table, ids, time_column, low, high)
            if len(found):
                keep = pc.invert(pc.is_in(prepared[table].column(column), value_set=found.to_arrow()))
                prepared[table] = prepared[table].filter(keep)

    def _stored_among(
        self, table: str, ids: pl.Series, time_column: str | None, low: datetime, high: datetime
    ) -> pl.Series:
        """Which of `ids` the table holds. The time range lets Parquet statistics skip files; the ids are
        matched by a hash join (a filter listing hundreds of thousands of ids costs far more to evaluate).
        """
        import polars as pl

        from metalake.core.file_statistics import files_may_hold

        column = str(ids.name)
        if time_column is not None:
            loaded = self._tables.load(table)
            if loaded is None or not files_may_hold(loaded, time_column, low, high):
                return pl.Series(column, [], pl.String)
        scan = self._tables.scan(table)
        if time_column is not None:
            scan = scan.filter(pl.col(time_column).is_between(low, high))
        wanted = pl.LazyFrame({column: ids.unique()})
        found = scan.select(column).join(wanted, on=column, how="semi").unique().collect()
        return found.get_column(column)

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
        frames = {
            table: typed_frame(self._tables, table, records) for table, records in tables.items() if records
        }
        for table, names, tuples in (
            (EVENTS_TABLE, EVENT_COLUMNS, rows.events),
            ("pipeline_runs", RUN_COLUMNS, rows.pipeline_runs),
            ("lineage_edges", EDGE_COLUMNS, rows.edges),
        ):
            if tuples:
                columns = dict(zip(names, map(list, zip(*tuples, strict=True)), strict=True))
                frames[table] = typed_columns(self._tables, table, columns)
        return frames

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
        stored = (
            self._tables.scan("pipelines")
            .filter(pl.col("name").is_in(names))
            .sort("event_time", "recorded_at", nulls_last=False)
            .group_by("namespace", "name")
            .agg(pl.col("facets").last(), pl.col("event_time").last())
            .collect()
        )
        return {
            (r["namespace"], r["name"]): (r["facets"], r["event_time"]) for r in stored.iter_rows(named=True)
        }

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
        frame: pl.DataFrame = self._tables.sql(
            query, {"node": node, "depth": UNLIMITED_DEPTH if depth is None else depth}
        ).pl()
        if frame.is_empty():  # a typo answers "did you mean", a known node without edges an empty walk
            known = self.nodes()
            if self._tables.is_unknown_name(node, known, _nodes):
                raise LineageNodeNotFound(node, known)
        return frame

    def nodes(self) -> list[str]:
        """Every node id the lake knows (by its moment), sorted: the ends of lineage_graph's edges, and
        metalake's own runs, model versions, datasets and deployments even where no edge reaches them yet."""
        return _nodes(self._tables)

    def column_lineage(self, dataset: str) -> pl.DataFrame:
        """Column-level edges into `dataset` (a node id or NAMESPACE/NAME): which source columns feed which."""
        node = dataset if dataset.startswith("dataset:") else f"dataset:{dataset}"
        frame: pl.DataFrame = self._tables.sql(
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


def event_file(path: str | Path) -> Path:
    """The JSONL file of OpenLineage events at `path`; LineageError when there is no such file."""
    file = Path(path)
    if not file.is_file():
        raise LineageError(f"{file} is not a file: give a JSONL file of OpenLineage events, one per line.")
    return file


def _nodes(tables: Tables) -> list[str]:
    return [row[0] for row in tables.sql(NODES_QUERY).fetchall()]


def check_node(node: str) -> None:
    """A node id of the lineage graph, else LineageError listing the kinds of node ids."""
    if not isinstance(node, str) or not NODE.fullmatch(node):
        raise LineageError(
            f"{node!r} is not a lineage node id. Use dataset:NAMESPACE/NAME (metalake datasets are "
            "dataset:metalake/NAME), job:NAMESPACE/NAME, run:RUN_ID, model:NAME/VERSION or deployment:ENV/ID."
        )


def _sum_results(results: Sequence[IngestResult]) -> IngestResult:
    """The results of several chunks of one ingest, added up."""
    fields = IngestResult.__dataclass_fields__
    return IngestResult(**{name: sum(getattr(r, name) for r in results) for name in fields})
