"""What the MLflow importer's parts share: constants, the import summary, typed frames and the idempotent writer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from metalake.lake import Lake

Progress = Callable[[str, int, int], None]

OPERATION = "import_mlflow"
SOURCE = "mlflow"
SEARCH_PAGE_SIZE = 1_000
MODEL_VERSION_PAGE_SIZE = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
VERSION_COLUMNS = ["model", "version", "run_id", "artifact_uri", "description", "source"]
EVENT_COLUMNS = ["event_id", "model", "version", "event_type", "stage", "alias", "key", "value", "event_time"]


@dataclass
class ImportSummary:
    """Rows one import wrote, by kind; all zero when the lake already held everything MLflow has."""

    experiments: int = 0
    runs: int = 0  # runs events: one per new run, and one per run whose status or details changed
    params: int = 0
    tags: int = 0
    metric_points: int = 0
    inputs: int = 0
    models: int = 0
    model_versions: int = 0
    model_events: int = 0
    runs_seen: int = 0
    # Points the metrics contract cannot hold: a negative step, or a second value at the same step and time.
    skipped_metric_points: int = 0

    @property
    def rows_written(self) -> int:
        uncounted = ("runs_seen", "skipped_metric_points")
        return sum(getattr(self, field.name) for field in fields(self) if field.name not in uncounted)


def paged(search: Callable[..., Any], *args: Any, **options: Any) -> list[Any]:
    """Every result of an MLflow search, page after page."""
    found: list[Any] = []
    token: str | None = None
    while True:
        page = search(*args, **options, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def ms(milliseconds: int | None) -> datetime | None:
    """An MLflow time (ms since the epoch) as an exact UTC datetime."""
    return None if milliseconds is None else EPOCH + timedelta(milliseconds=int(milliseconds))


def optional_text(value: Any) -> str | None:
    """MLflow uses "" and None alike for an unset text; the lake keeps null."""
    return None if value is None or value == "" else str(value)


def tags_json(tags: Mapping[str, Any]) -> str | None:
    return json.dumps({str(k): str(v) for k, v in tags.items()}, sort_keys=True) if tags else None


def latest_rows(frame: pl.DataFrame, keys: list[str], order: list[str]) -> pl.DataFrame:
    """The last row per key, in `order` (the current state of append-only facts)."""
    return frame.sort(order).group_by(keys, maintain_order=True).last()


def typed_frame(lake: Lake, table: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> pl.DataFrame:
    """Rows typed as the table's spec declares them, so an empty batch still joins with what the lake holds."""
    types = pl.DataFrame(lake.spec(table).arrow_schema().empty_table()).schema
    return pl.DataFrame(rows, schema={name: types[name] for name in columns})


def changed_rows(
    lake: Lake, table: str, current: pl.DataFrame, keys: list[str], where: pl.Expr
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of `current` that differ from the lake's latest row per key; and those latest rows they replace."""
    known = lake.read(table, columns=[*current.columns, "recorded_at"], where=where)
    latest = latest_rows(known, keys, ["recorded_at"]).drop("recorded_at")
    changed = current.join(latest, on=current.columns, how="anti", nulls_equal=True)
    return changed, latest.join(changed, on=keys, how="semi")


class Writer:
    """One commit per table and batch, keyed by its content, so a retried import never writes a row twice.

    `basis` is the lake state a batch replaces (e.g. a tag's previous value): it enters the key, so a value
    that returns to an earlier one (A, B, then A again) is a new batch, not a repeat of the first.
    """

    def __init__(self, lake: Lake, reason: str):
        self.lake = lake
        self.reason = reason

    def append(self, table: str, rows: pl.DataFrame, basis: pl.DataFrame | None = None) -> int:
        if rows.is_empty():
            return 0
        digest = hashlib.sha256(table.encode())
        for frame in (rows, basis):
            if frame is not None and not frame.is_empty():
                digest.update(frame.sort(frame.columns).write_csv().encode())
            digest.update(b"\0")
        key = f"{OPERATION}:{table}:{digest.hexdigest()[:40]}"
        commit = self.lake.append(table, rows, reason=self.reason, idempotency_key=key, operation=OPERATION)
        return commit.rows
