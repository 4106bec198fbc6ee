"""The CLI's output: Rich tables and red errors, query results as CSV, JSON lines or Parquet.

Imported by the command functions only, so that `metalake --help` does not pay for Rich, polars or DuckDB.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from metalake.errors import MetalakeError, QueryError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

OutputFormat = Literal["table", "csv", "json", "parquet"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
MAX_CELL_CHARS = 200


def stdout_console() -> Console:
    """Rich console for results; highlighting off so that values keep their own look."""
    from rich.console import Console

    return Console(highlight=False)


def stderr_console() -> Console:
    """Rich console for messages and progress, so that stdout stays clean for piping results."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One clear message in red on stderr, never a traceback."""
    from rich.text import Text

    stderr_console().print(Text(f"Error: {message}", style="red"), soft_wrap=True)


# -- rendering ------------------------------------------------------------------------------------------------


def cell(value: Any) -> Text:
    """A value as plain text for a table cell (never interpreted as Rich markup)."""
    from rich.text import Text

    if value is None:
        return Text("null", style="dim")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    if isinstance(value, float):
        return Text(_format_float(value))
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="milliseconds" if value.microsecond else "seconds")
        return Text(text.replace("+00:00", " UTC"))
    if isinstance(value, date | time):
        return Text(value.isoformat())
    if isinstance(value, timedelta):
        return Text(f"{value.total_seconds():g}s")
    if isinstance(value, bytes):
        return Text(_shorten(value.hex()))
    if isinstance(value, dict | list):
        return Text(_shorten(json.dumps(value, default=str)))
    return Text(_shorten(str(value)))


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def frame_table(
    frame: pl.DataFrame, *, title: str | None = None, max_rows: int | None = None, caption: str | None = None
) -> Table:
    """A polars frame as a Rich table; numbers right-aligned, at most `max_rows` rows with a note on the rest."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name, dtype in frame.schema.items():
        justify: Literal["left", "right"] = "right" if dtype.is_numeric() else "left"
        table.add_column(name, justify=justify, overflow="fold")
    shown = frame if max_rows is None else frame.head(max_rows)
    for row in shown.iter_rows():
        table.add_row(*(cell(value) for value in row))
    hidden = frame.height - shown.height
    if hidden > 0:
        note = f"{hidden:,} more row(s) not shown; raise --max-rows or use --format csv/json/parquet."
        table.caption = f"{caption}\n{note}" if caption else note
    elif frame.is_empty():
        table.caption = caption or "(no rows)"
    return table


# -- query results ---------------------------------------------------------------------------------------------


def fetch_frame(relation: Any) -> pl.DataFrame:
    """Fetch a DuckDB relation completely (DuckDB refuses a new query while one is half-read) as a polars frame.

    DuckDB runs a query lazily, so errors found while executing (a failed cast, say) surface here, not in
    `lake.sql()`; they become QueryError like the ones DuckDB finds while planning.
    """
    import duckdb

    try:
        fetched = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
        table = fetched.read_all() if hasattr(fetched, "read_all") else fetched
    except duckdb.Error as error:
        # Release the half-run query now rather than at interpreter exit (see the note in the CLI report).
        with contextlib.suppress(duckdb.Error):
            relation.close()
        raise QueryError(f"Query failed: {str(error).strip()}") from error
    return arrow_to_frame(table)


def arrow_to_frame(table: pa.Table) -> pl.DataFrame:
    """Arrow -> polars, column by column: a type polars cannot import (e.g. DuckDB's INTERVAL) becomes text."""
    import polars as pl

    columns = []
    for name, column in zip(unique_names(table.column_names), table.columns, strict=True):
        try:
            series = pl.Series(name, column)
        except Exception:  # polars raises several error types for an Arrow type it lacks
            series = pl.Series(
                name, [None if v is None else str(v) for v in column.to_pylist()], dtype=pl.String
            )
        columns.append(series)
    return pl.DataFrame(columns)


def unique_names(names: Sequence[str]) -> list[str]:
    """`SELECT 1 AS a, 2 AS a` is valid SQL but not a valid frame: number the repeats (a, a_1)."""
    seen: set[str] = set()
    result = []
    for name in names:
        candidate, counter = name, 0
        while candidate in seen:
            counter += 1
            candidate = f"{name}_{counter}"
        seen.add(candidate)
        result.append(candidate)
    return result


def _text_ready(frame: pl.DataFrame, *, nested_as_json: bool) -> pl.DataFrame:
    """Binary as hex for text formats; nested values (lists, structs) as JSON text for CSV."""
    import polars as pl

    replacements: list[pl.Expr | pl.Series] = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Binary:
            replacements.append(pl.col(name).bin.encode("hex"))
        elif nested_as_json and dtype.is_nested():
            values = [
                None if v is None else json.dumps(v, default=str) for v in frame.get_column(name).to_list()
            ]
            replacements.append(pl.Series(name, values, dtype=pl.String))
    return frame.with_columns(replacements) if replacements else frame


def write_result(
    frame: pl.DataFrame, output_format: OutputFormat, output: Path | None, *, max_rows: int | None = None
) -> None:
    """Write a query result to `output` or stdout.

    `json` is JSON lines (one object per row): it streams, and `metalake ingest` reads it back.
    """
    if output is not None and not output.parent.is_dir():
        raise MetalakeError(f"Cannot write {output}: the folder {output.parent} does not exist.")
    try:
        if output_format == "table":
            _write_table(frame, output, max_rows)
        elif output_format == "csv":
            text_frame = _text_ready(frame, nested_as_json=True)
            if output is None:
                sys.stdout.write(text_frame.write_csv())
            else:
                text_frame.write_csv(output)
        elif output_format == "json":
            json_frame = _text_ready(frame, nested_as_json=False)
            if output is None:
                sys.stdout.write(json_frame.write_ndjson())
            else:
                json_frame.write_ndjson(output)
        else:
            if output is None:
                raise MetalakeError(
                    "--format parquet writes a binary file: give it a path with --output FILE."
                )
            frame.write_parquet(output)
    except OSError as error:
        raise MetalakeError(f"Cannot write {output}: {error.strerror or error}.") from error


def _write_table(frame: pl.DataFrame, output: Path | None, max_rows: int | None) -> None:
    from rich.console import Console

    rows = "row" if frame.height == 1 else "rows"
    table = frame_table(frame, max_rows=max_rows, caption=f"{frame.height:,} {rows}")
    if output is None:
        stdout_console().print(table)
        return
    with output.open("w", encoding="utf-8") as handle:
        Console(file=handle, width=max(120, _natural_width(frame)), no_color=True, highlight=False).print(
            table
        )


def _natural_width(frame: pl.DataFrame) -> int:
    """A width at which a table written to a file needs no wrapping (capped, so a huge cell cannot explode it)."""
    widths = []
    for name in frame.columns:
        longest = max([len(name), *(len(cell(v).plain) for v in frame.get_column(name).head(1000).to_list())])
        widths.append(longest + 3)
    return min(sum(widths) + 1, 1000)
