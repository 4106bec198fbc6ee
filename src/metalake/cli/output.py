"""The CLI's input and output: Rich tables and red errors, query results as CSV, JSON lines or Parquet, and the
files `metalake ingest` reads (CSV, Parquet, JSON lines), with a progress bar.

Imported by the command functions only, so that `metalake --help` does not pay for Rich, polars or DuckDB.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from metalake.errors import IngestError, MetalakeError, QueryError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

    from metalake.core.catalog import TableSpec
    from metalake.core.file_formats import InputFormat

OutputFormat = Literal["table", "csv", "json", "parquet"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
MAX_CELL_CHARS = 200
BATCH_ROWS = 100_000
# The stdlib csv module refuses fields over 128 KiB by default; a JSON column can hold more than that.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


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


# -- files to ingest --------------------------------------------------------------------------------------------


def ingest_progress() -> Progress:
    """Progress on stderr: checking the file, reading it in batches, then validating and committing."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
    )


def read_input(path: Path, file_format: InputFormat, spec: TableSpec, progress: Progress) -> pl.DataFrame:
    """Read a whole file into one frame, in batches so that progress shows; errors name the file.

    The table's text columns stay text (so "6" stays "6"); other columns get the table's types where every
    value converts, and the contract checks the rest on append.
    """
    import polars as pl

    try:
        if file_format == "csv":
            frame = _read_csv(path, spec, progress)
        elif file_format == "parquet":
            scan = pl.scan_parquet(path)
            frame = _collect(scan, scan.select(pl.len()).collect().item(), path, progress)
        elif file_format == "json" and _starts_with(path, b"["):
            frame = _read_json_array(path, spec)
        else:
            frame = _read_json_lines(path, spec, progress)
    except pl.exceptions.PolarsError as error:
        raise IngestError(f"Cannot read {path} as {file_format}: {_first_line(error)}") from error
    except OSError as error:
        raise IngestError(f"Cannot read {path}: {error.strerror or error}") from error
    if frame.is_empty():
        raise IngestError(f"{path} holds no rows: nothing to ingest.")
    return _typed_from_text(frame, spec)


def _read_csv(path: Path, spec: TableSpec, progress: Progress) -> pl.DataFrame:
    import polars as pl

    _, rows, blank_lines = _check_csv(path, progress)
    # All text, typed afterwards by the table's spec: polars' own inference over a whole file is slow with
    # dates (seconds per 100k rows) and fails on a late value that the first rows did not predict.
    scan = pl.scan_csv(path, infer_schema=False)
    frame = _collect(scan, rows + blank_lines, path, progress)
    if blank_lines:  # polars reads a blank line as a row of nulls
        frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))
    return frame


def _check_csv(path: Path, progress: Progress) -> tuple[list[str], int, int]:
    """Walk the file once with the stdlib csv module: the header, the row count, and the number of blank lines.

    polars silently pads a short row with nulls; here a ragged row, a NUL byte or bytes that are not UTF-8 text
    (a binary file) are refused with the line number.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    line = 1
    try:
        # utf-8-sig: spreadsheets start their CSV exports with a byte-order mark.
        with progress.open(path, "r", encoding="utf-8-sig", newline="", description="checking") as handle:
            reader = csv.reader(_refusing_nul(handle, path), strict=True)
            header = next(reader, None)
            if not header:
                raise IngestError(f"{path} has no header line: a CSV file starts with the column names.")
            rows = blank_lines = 0
            for row in reader:
                line = reader.line_num
                if not row:
                    blank_lines += 1
                elif len(row) != len(header):
                    raise IngestError(
                        f"{path} is malformed: line {line} has {len(row)} field(s) but the header has "
                        f"{len(header)} ({', '.join(header)})."
                    )
                else:
                    rows += 1
    except UnicodeDecodeError as error:
        raise IngestError(
            f"{path} is not UTF-8 text (near line {line + 1}): is it really a CSV file? Save it as UTF-8."
        ) from error
    except csv.Error as error:
        raise IngestError(f"{path} is malformed near line {line + 1}: {error}.") from error
    return header, rows, blank_lines


def _refusing_nul(lines: Iterable[str], path: Path) -> Iterator[str]:
    """Python 3.11's csv module accepts NUL bytes; in a CSV file they mean binary or UTF-16 data."""
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            raise IngestError(
                f"{path} is malformed: line {number} holds a NUL byte (binary or UTF-16 data?). Save it as UTF-8 CSV."
            )
        yield line


def _read_json_lines(path: Path, spec: TableSpec, progress: Progress) -> pl.DataFrame:
    import polars as pl

    rows = 0
    with progress.open(path, "rb", description="checking") as handle:
        for raw in handle:
            rows += bool(raw.strip())
    columns = pl.scan_ndjson(path, infer_schema_length=None).collect_schema().names()
    scan = pl.scan_ndjson(path, schema_overrides=_text_overrides(spec, columns), infer_schema_length=None)
    return _collect(scan, rows, path, progress)


def _read_json_array(path: Path, spec: TableSpec) -> pl.DataFrame:
    """One JSON array of objects, read as JSON lines so that both forms type their columns the same way."""
    import io

    import polars as pl

    try:
        rows = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IngestError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise IngestError(f"{path} must hold JSON objects, one per line, or one array of objects.")
    if not rows:
        return pl.DataFrame()
    lines = "\n".join(json.dumps(row) for row in rows).encode()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return pl.read_ndjson(
        io.BytesIO(lines), schema_overrides=_text_overrides(spec, columns), infer_schema_length=None
    )


def _collect(scan: pl.LazyFrame, total_rows: int, path: Path, progress: Progress) -> pl.DataFrame:
    import polars as pl

    task = progress.add_task(f"reading {path.name}", total=total_rows)
    batches = []
    for batch in scan.collect_batches(chunk_size=BATCH_ROWS):
        batches.append(batch)
        progress.advance(task, batch.height)
    if not batches:
        return scan.collect()
    return pl.concat(batches, how="vertical", rechunk=True)


def _text_overrides(spec: TableSpec, columns: list[str]) -> dict[str, pl.DataType]:
    """Read the table's text and JSON columns as text, whatever the values look like."""
    import polars as pl

    text_columns = {column.name for column in spec.columns if column.type in ("string", "json")}
    return {name: pl.String() for name in columns if name in text_columns}


def _typed_from_text(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Give text columns their table type (CSV is all text; JSON may quote numbers), where every value converts.

    A column with a value that does not convert stays text, and the contract refuses it with examples. (Better
    in contracts.py, which would then name the exact rows: see the CLI report.)
    """
    import polars as pl

    known = set(spec.column_names)
    typed_columns = []
    for name, dtype in frame.schema.items():
        if name not in known or dtype != pl.String:
            continue
        text = frame.get_column(name)
        typed = _parse_text(text, spec.column(name).type)
        if typed is not None and not (text.is_not_null() & typed.is_null()).any():
            typed_columns.append(typed.alias(name))
    return frame.with_columns(typed_columns) if typed_columns else frame


def _parse_text(text: pl.Series, column_type: str) -> pl.Series | None:
    """Text -> the column's type, null where a value does not convert; None for types the contract converts."""
    import polars as pl

    from metalake.core.contracts import polars_dtype

    target = polars_dtype(column_type)
    stripped = text.str.strip_chars()
    try:
        if target.is_integer():
            whole = stripped.cast(target, strict=False)
            number = stripped.cast(pl.Float64, strict=False)  # "3.0", as spreadsheets write integers
            integral = pl.select(pl.when(number == number.floor()).then(number)).to_series()
            return whole.fill_null(integral.cast(target, strict=False))
        if target.is_float():
            return stripped.cast(target, strict=False)
        if target == pl.Boolean:
            words = {"true": True, "false": False, "1": True, "0": False}
            return stripped.str.to_lowercase().replace_strict(words, default=None, return_dtype=pl.Boolean)
        if column_type == "timestamp[us, UTC]":
            return stripped.str.to_datetime(time_unit="us", strict=False)
    except pl.exceptions.PolarsError:  # e.g. no single timestamp format fits: the contract parses each value
        return None
    return None


def _starts_with(path: Path, prefix: bytes) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    return head.startswith(prefix)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
