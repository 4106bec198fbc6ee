"""`lake.runs.search`: runs as one wide row each, filtered and ordered by MLflow-style expressions, safely."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalake.errors import QueryError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from metalake.core.masking import Masker
    from metalake.core.tables import Tables
    from metalake.tracking.experiments import Lifecycle

METRIC_STATS = ("last", "min", "max", "mean", "count")
SUMMARY_STATS = METRIC_STATS[1:]  # "last" is the metric's own column
RUN_ATTRIBUTES = (
    "run_id", "experiment", "name", "status", "start_time", "end_time", "duration_s", "parent_run_id", "user",
    "source",
)  # fmt: skip


def run_table(tables: Tables, experiment: str | None) -> pl.DataFrame:
    """Every run (of an experiment) as one row: state, `params.K`, `tags.K`, `metrics.K`, and the summaries of
    each metric as `min(metrics.K)`, `max(...)`, `mean(...)`, `count(...)` (see `summary_column`)."""
    import polars as pl

    scope = "where experiment = ?" if experiment else ""
    args = [experiment] if experiment else None
    runs = tables.sql(f"select {', '.join(RUN_ATTRIBUTES)}, deleted from runs_current {scope}", args).pl()
    in_scope = f"where run_id in (select run_id from runs_current {scope})"
    frame = runs
    for table, prefix, kept in (
        ("params", "params.", ""),
        ("run_tags", "tags.", "having not arg_max(coalesce(deleted, false), recorded_at)"),  # deleted tags
    ):
        facts = tables.sql(
            f'select run_id, "key", arg_max("value", recorded_at) as "value" from {table} {in_scope} '
            f'group by run_id, "key" {kept}',
            args,
        ).pl()
        frame = _join_pivot(frame, facts, "value", lambda key, p=prefix: f"{p}{key}")
    metrics = tables.sql(
        f"select run_id, key, last_value, min_value, max_value, mean_value, count from run_metrics {in_scope}",
        args,
    ).pl()
    frame = _join_pivot(frame, metrics, "last_value", lambda key: f"metrics.{key}")
    for stat in SUMMARY_STATS:
        column = "count" if stat == "count" else f"{stat}_value"
        frame = _join_pivot(frame, metrics, column, lambda key, s=stat: summary_column(key, s))
    return frame.with_columns(pl.col("start_time").dt.convert_time_zone("UTC"))


def summary_column(key: str, stat: str) -> str:
    """The wide table's column of one summary of a metric, e.g. `min(metrics.loss)`.

    Metric values are `metrics.KEY` columns, so a summary named `metrics.loss.min` would collide with a metric
    whose key is `loss.min`; nothing a key holds can make a `metrics.` column look like this.
    """
    return f"{stat}(metrics.{key})"


def is_summary_column(column: str) -> bool:
    return column.endswith(")") and column.startswith(tuple(f"{stat}(metrics." for stat in SUMMARY_STATS))


def _join_pivot(frame: pl.DataFrame, facts: pl.DataFrame, value: str, name: object) -> pl.DataFrame:
    if facts.is_empty():
        return frame
    wide = facts.pivot(on="key", index="run_id", values=value)
    wide = wide.rename({c: name(c) for c in wide.columns if c != "run_id"})  # type: ignore[operator]
    return frame.join(wide, on="run_id", how="left")


def search_runs(
    cache: TableCache,
    *,
    experiment: str | None = None,
    where: str | None = None,
    order_by: str | Iterable[str] | None = None,
    limit: int | None = None,
    lifecycle: Lifecycle = "active",
    experiments: Collection[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Runs as a polars DataFrame, one row each; see `Runs.search` for the expression language. `experiments`
    keeps the runs of those experiments only, inside the query (before the order and the limit); `columns`
    answers only those."""
    import duckdb
    import pyarrow as pa

    from metalake.core.sql import shared_database

    frame, arrow = cache.wide_runs_with_arrow(experiment)
    known = set(frame.columns)
    kept = {"active": ["not deleted"], "deleted": ["deleted"], "all": []}[lifecycle]
    if where:
        kept.append(f"({translate(where, known)})")
    if experiments is not None:
        kept.append("experiment in (select name from __experiments)")
    clauses = [f"where {' and '.join(kept)}"] if kept else []
    orders = [order_by] if isinstance(order_by, str) else list(order_by or [])
    if orders:
        clauses.append("order by " + ", ".join(translate_order(item, known) for item in orders))
    else:
        clauses.append("order by start_time desc")
    if limit is not None:
        if limit < 0:
            raise QueryError("limit must be >= 0.")
        clauses.append(f"limit {int(limit)}")
    shown = "*"
    if columns is not None:
        unknown = sorted(set(columns) - known)
        if unknown:
            raise QueryError(f"Unknown columns {unknown}: the run table has {sorted(known)}.")
        shown = ", ".join('"' + column.replace('"', '""') + '"' for column in columns)
    cursor = shared_database().cursor()
    try:
        cursor.register("__runs", arrow)
        if experiments is not None:
            cursor.register("__experiments", pa.table({"name": pa.array(sorted(experiments), pa.string())}))
        result: pl.DataFrame = cursor.sql(f"select {shown} from __runs {' '.join(clauses)}").pl()
    except duckdb.Error as error:
        # a value DuckDB cannot compare (a bad timestamp, say): its first line only, the rest quotes the SQL
        reason = str(error).strip().splitlines()[0]
        raise QueryError(
            f"Search failed: {reason}. Expression: where={where!r}, order_by={order_by!r}."
        ) from error
    finally:
        cursor.close()
    if columns is not None:
        return result
    asked = set(referenced_columns(where, orders, known))  # a range filtered or sorted by stays in view
    hidden = [c for c in result.columns if is_summary_column(c) and c not in asked]
    return result.drop([*hidden, *(["deleted"] if lifecycle == "active" else [])])


def referenced_columns(
    where: str | None, order_by: str | Iterable[str] | None, columns: Iterable[str]
) -> list[str]:
    """The columns of the wide run table that a filter and an ordering name, in the order they appear.

    For listings that must show what they filter and sort by (`metalake runs list -o "metrics.auc desc"`).
    """
    known = set(columns)
    orders = [order_by] if isinstance(order_by, str) else list(order_by or [])
    named: list[str] = []
    for expression in [where or "", *orders]:
        for kind, text in _tokens(expression):
            if kind == "field":
                named.append(_resolve(text, known))
            elif kind == "word" and text in RUN_ATTRIBUTES:
                named.append(text)
    return list(dict.fromkeys(named))


def translate(expression: str, columns: set[str]) -> str:
    """An MLflow-style filter -> a DuckDB predicate over the wide relation; anything unknown is refused.

    The whole expression is parsed first (metalake.tracking.expressions), so a mistake is reported with a caret
    under it, never as a DuckDB parser error quoting the generated SQL.
    """
    from metalake.tracking.expressions import Operand, expression_error, parse, to_sql

    def resolve(operand: Operand) -> str:
        if operand.kind == "attribute":
            return _quote(operand.text)
        try:
            return _quote(_resolve(operand.text, columns))
        except QueryError as error:
            raise expression_error(expression, operand.position, str(error)) from None

    return to_sql(parse(expression, RUN_ATTRIBUTES), expression, resolve)


def translate_order(item: str, columns: set[str]) -> str:
    tokens = list(_tokens(item))
    direction = "ASC"
    if tokens and tokens[-1][0] == "word" and tokens[-1][1].lower() in ("asc", "desc"):
        direction = tokens.pop()[1].upper()
    if len(tokens) != 1 or tokens[0][0] not in ("field", "word"):
        raise QueryError(
            f"Cannot order by {item!r}: give one name and an optional asc/desc, e.g. 'metrics.auc desc'."
        )
    kind, text = tokens[0]
    if kind == "word" and text not in RUN_ATTRIBUTES:
        raise QueryError(
            f"Cannot order by {text!r}: use params.KEY, metrics.KEY, tags.KEY or a run attribute."
        )
    column = _resolve(text, columns) if kind == "field" else text
    return f"{_quote(column)} {direction} NULLS LAST"


def _tokens(expression: str) -> list[tuple[str, str]]:
    """The (kind, text) tokens of an expression, read by the one tokenizer of the search language."""
    from metalake.tracking.expressions import tokenize

    return [(token.kind, token.text) for token in tokenize(expression) if token.kind != "end"]


def _resolve(field: str, columns: set[str]) -> str:
    """A field -> its column. `metrics.loss.min` is the metric named `loss.min` if one was logged, else the
    minimum of `loss`; quoting decides for sure: metrics.`loss.min` is the metric, metrics.`loss`.min the minimum."""
    prefix, _, rest = field.partition(".")
    stat = None
    quoted = rest[:1] in ("`", '"')
    for candidate in METRIC_STATS:
        suffix = f".{candidate}"
        if prefix == "metrics" and rest.endswith(suffix) and (quoted or f"metrics.{rest}" not in columns):
            rest, stat = rest[: -len(suffix)], candidate
            break
    key = rest.strip('`"')
    if prefix == "attributes":
        if key not in RUN_ATTRIBUTES:
            raise QueryError(f"Unknown run attribute {key!r}; known: {', '.join(RUN_ATTRIBUTES)}.")
        return key
    column = summary_column(key, stat) if stat and stat != "last" else f"{prefix}.{key}"
    if column not in columns:
        known = sorted(_keys(columns, prefix))
        listing = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "") if known else "none logged"
        raise QueryError(f"No {prefix} key {key!r} among the runs searched. Known {prefix} keys: {listing}.")
    return column


def _keys(columns: set[str], prefix: str) -> set[str]:
    return {c[len(prefix) + 1 :] for c in columns if c.startswith(prefix + ".")}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# -- one run, for tables.runs.get --------------------------------------------------------------------------


def current_state(events: list[dict[str, Any]], *, lost_before: datetime | None = None) -> dict[str, Any]:
    """A run's state from its events, as `runs_current` computes it: the latest event, context filled in; a
    running run whose last heartbeat is before `lost_before` is `lost`."""
    ordered = sorted(events, key=lambda row: (row["event_time"], row["recorded_at"], row["event_id"]))
    latest = ordered[-1]
    state: dict[str, Any] = {}
    for row in ordered:  # descriptive columns: the latest non-null value
        state.update({column: value for column, value in row.items() if value is not None})
    for column in (
        "status",
        "end_time",
        "error_type",
        "error_message",
        "event_time",
        "recorded_at",
        "recorded_by",
    ):
        state[column] = latest[column]
    state["start_time"] = min(row["start_time"] for row in ordered)
    state["event_count"] = len(ordered)
    state["last_event_id"] = state.pop("event_id")
    end, start = state["end_time"], state["start_time"]
    state["duration_s"] = (end - start).total_seconds() if end is not None else None
    heartbeats = state.get("source") == "metalake"  # imported runs record none: never lost
    if (
        lost_before is not None
        and heartbeats
        and state["status"] == "running"
        and state["event_time"] < lost_before
    ):
        state["status"] = "lost"
    return state


def latest_values(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each key's latest value; a key whose latest row deletes it (run tags) is left out."""
    latest = {row["key"]: row for row in sorted(rows, key=lambda row: row["recorded_at"])}
    return {key: row["value"] for key, row in latest.items() if not row.get("deleted")}


def without_run_id(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "run_id"}


class TableCache:
    """In-memory copies of small run tables (indexed by run) and of the wide run table, reloaded only when the
    tables they come from have new commits: repeated reads in a warm process skip the work."""

    WIDE_ENTRIES = 8

    def __init__(self, tables: Tables):
        self._tables = tables
        self._lock = threading.RLock()  # a server reads from several threads
        self._by_run: dict[str, _RunIndex] = {}
        self._wide: dict[tuple[object, ...], tuple[pl.DataFrame, pa.Table]] = {}
        self._pin = threading.local()  # tables checked once for the reads of one request (`pinned`)
        self._kept: dict[str, dict[Any, Any]] = {}

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within it, each table's freshness is checked once per thread: reading many runs to answer one
        request (a search page) costs one look at each table's log, not one per run. Nested, the outer pin
        holds."""
        if getattr(self._pin, "checked", None) is not None:
            yield
            return
        self._pin.checked = {}
        try:
            yield
        finally:
            self._pin.checked = None

    def versions(self, tables: Sequence[str]) -> tuple[int | None, ...]:
        """The versions of `tables` that reads through this cache see now (within `pinned`, those checked for
        this request): what an answer built from their rows is valid for."""
        for table in tables:
            self.rows(table, "")
        checked: dict[str, _RunIndex] | None = getattr(self._pin, "checked", None)
        with self._lock:
            return tuple((checked or self._by_run)[table].version for table in tables)

    def kept(self, purpose: str, *, limit: int = 20_000) -> dict[Any, Any]:
        """A dictionary that lives as long as this cache, for a caller to keep answers built from its rows
        (checked against `versions` before reuse); emptied when it holds more than `limit` entries."""
        with self._lock:
            kept = self._kept.setdefault(purpose, {})
            if len(kept) > limit:
                kept.clear()
            return kept

    def wide_runs(self, experiment: str | None) -> pl.DataFrame:
        """`run_table(tables, experiment)`, cached per version of runs, params, run_tags and metric_summaries."""
        return self.wide_runs_with_arrow(experiment)[0]

    def wide_runs_with_arrow(self, experiment: str | None) -> tuple[pl.DataFrame, pa.Table]:
        """`wide_runs` and the same as an Arrow table, made once per version (what DuckDB queries)."""
        versions = []
        for table in ("runs", "params", "run_tags", "metric_summaries"):
            loaded = self._tables.load(table)
            versions.append(None if loaded is None else loaded.version())
        key = (experiment, *versions)
        with self._lock:
            if key not in self._wide:
                if len(self._wide) >= self.WIDE_ENTRIES:
                    self._wide.pop(next(iter(self._wide)))
                frame = run_table(self._tables, experiment)
                self._wide[key] = (frame, frame.to_arrow())
            return self._wide[key]

    def run_ids(self) -> Collection[str]:
        """Every run id the lake holds (at this moment), from the indexed copy of the runs table."""
        self.rows("runs", "")
        return self._by_run["runs"].index.keys()

    def rows(self, table: str, run_id: str) -> list[dict[str, Any]]:
        checked: dict[str, _RunIndex] | None = getattr(self._pin, "checked", None)
        if checked is not None and table in checked:
            return checked[table].index.get(run_id, [])
        loaded = self._tables.load(table)
        version = None if loaded is None else loaded.version()
        with self._lock:
            cached = self._by_run.get(table)
            if cached is None or cached.version != version:
                cached = _indexed(loaded, version, cached, self._tables.masker, table)
                self._by_run[table] = cached
        if checked is not None:
            checked[table] = cached
        return cached.index.get(run_id, [])


@dataclass(frozen=True)
class _RunIndex:
    """A table's rows by run id, as of a version, and the data files they were read from."""

    version: int | None
    files: frozenset[str]
    index: dict[str, list[dict[str, Any]]]


def _indexed(
    loaded: Any, version: int | None, cached: _RunIndex | None, masker: Masker | None, table: str
) -> _RunIndex:
    """The table's rows by run: only the files added since `cached` are read when no file was removed (facts
    are appended), so a lake taking writes does not re-read a whole table at every new version. A `masker`
    masks the rows as they are read (the tables of a reader without `unmask`)."""
    if loaded is None:
        return _RunIndex(version, frozenset(), {})
    import pyarrow.dataset as ds

    dataset = loaded.to_pyarrow_dataset()
    fragments = {fragment.path: fragment for fragment in dataset.get_fragments()}
    files = frozenset(fragments)
    incremental = cached is not None and cached.files <= files
    fresh = (
        [fragments[path] for path in sorted(files - cached.files)]
        if incremental and cached
        else list(fragments.values())
    )
    index: dict[str, list[dict[str, Any]]] = dict(cached.index) if incremental and cached else {}
    if fresh:
        added: dict[str, list[dict[str, Any]]] = {}
        rows = ds.FileSystemDataset(fresh, dataset.schema, dataset.format, dataset.filesystem).to_table()
        if masker is not None:
            rows = masker.mask_arrow(table, rows)
        for row in rows.to_pylist():
            added.setdefault(row["run_id"], []).append(row)
        for run_id, new_rows in added.items():
            index[run_id] = [*index.get(run_id, []), *new_rows]  # new lists: readers may hold the old ones
    return _RunIndex(version, files, index)


@dataclass(frozen=True)
class RunDetails:
    """What `lake.runs.get` returns: everything known about one run."""

    run_id: str
    info: dict[str, Any]
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, dict[str, Any]]
    inputs: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    model_versions: list[dict[str, Any]] = field(default_factory=list)  # registered from this run

    @property
    def status(self) -> str:
        return str(self.info["status"])
