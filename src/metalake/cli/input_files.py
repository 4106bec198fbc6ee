"""The files `metalake ingest` reads (CSV, Parquet, JSON lines or a JSON array), with a progress bar on stderr.

Imported by the command functions only, so that `metalake --help` does not pay for Rich or polars.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from metalake.cli.output import stderr_console
from metalake.core.csv_files import check_csv
from metalake.errors import IngestError

if TYPE_CHECKING:
    import polars as pl
    from rich.progress import Progress

    from metalake.core.catalog import TableSpec
    from metalake.core.file_formats import InputFormat

BATCH_ROWS = 100_000
UTF8_BOM = b"\xef\xbb\xbf"
SAMPLE_VALUES = 5  # refused values named in an error


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


def content_digest(path: Path) -> str:
    """The file's SHA-256: `ingest`'s default idempotency key, so that the same file is ingested once."""
    import hashlib

    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        raise IngestError(f"Cannot read {path}: {error.strerror or error}") from error


def read_input(path: Path, file_format: InputFormat, spec: TableSpec, progress: Progress) -> pl.DataFrame:
    """Read a whole file into one frame, in batches so that progress shows; errors name the file.

    The table's text columns stay text (so "6" stays "6"); other columns get the table's types. A value that
    does not convert is refused by name (its line, where lines and rows match), not its whole column.
    """
    import polars as pl

    first_line: int | None = None
    try:
        if file_format == "csv":
            frame, first_line = _read_csv(path, spec, progress)
        elif file_format == "parquet":
            scan = pl.scan_parquet(path)
            frame = _collect(scan, scan.select(pl.len()).collect().item(), path, progress)
        elif file_format == "json" and _starts_with(path, b"["):
            frame = _read_json_array(path, spec)
        else:
            frame, first_line = _read_json_lines(path, spec, progress)
    except pl.exceptions.PolarsError as error:
        if file_format in ("json", "jsonl"):
            _refuse_bad_json_line(path, file_format)
        raise IngestError(f"Cannot read {path} as {file_format}: {_first_line(error)}") from error
    except OSError as error:
        raise IngestError(f"Cannot read {path}: {error.strerror or error}") from error
    if frame.is_empty():
        raise IngestError(f"{path} holds no rows: nothing to ingest.")
    return _typed_from_text(frame, spec, first_line)


def _read_csv(path: Path, spec: TableSpec, progress: Progress) -> tuple[pl.DataFrame, int | None]:
    import polars as pl

    shape = check_csv(path, error=IngestError, open_text=lambda file: _progress_text(progress, file))
    if not shape.header:
        raise IngestError(f"{path} has no header line: a CSV file starts with the column names.")
    rows, blank_lines = shape.rows, shape.blank_lines
    # All text, typed afterwards by the table's spec: polars' own inference over a whole file is slow with
    # dates (seconds per 100k rows) and fails on a late value that the first rows did not predict.
    scan = pl.scan_csv(path, infer_schema=False)
    frame = _collect(scan, rows + blank_lines, path, progress)
    if blank_lines:  # polars reads a blank line as a row of nulls
        frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))
    return frame, 2 if shape.one_line_per_row else None


def _progress_text(progress: Progress, path: Path) -> AbstractContextManager[IO[str]]:
    """The file as open_csv_text opens it, advancing the "checking" bar as it is read."""
    return progress.open(path, "r", encoding="utf-8-sig", newline="", description="checking")


def _read_json_lines(path: Path, spec: TableSpec, progress: Progress) -> tuple[pl.DataFrame, int | None]:
    import io

    import polars as pl

    rows = blank_lines = 0
    with progress.open(path, "rb", description="checking") as handle:
        for raw in handle:
            if raw.strip():
                rows += 1
            else:
                blank_lines += 1
    first_line = 1 if blank_lines == 0 else None
    if _starts_with(path, UTF8_BOM, strip=False):  # a BOM that editors on Windows write; polars refuses it
        data = io.BytesIO(path.read_bytes()[len(UTF8_BOM) :])
        columns = pl.read_ndjson(data, infer_schema_length=None).columns
        data.seek(0)
        overrides = _text_overrides(spec, columns)
        return pl.read_ndjson(data, schema_overrides=overrides, infer_schema_length=None), first_line
    columns = pl.scan_ndjson(path, infer_schema_length=None).collect_schema().names()
    scan = pl.scan_ndjson(path, schema_overrides=_text_overrides(spec, columns), infer_schema_length=None)
    return _collect(scan, rows, path, progress), first_line


def _refuse_bad_json_line(path: Path, file_format: str) -> None:
    """Name the first line that is not a JSON object (polars names a character offset, at best)."""
    try:
        with path.open("r", encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    raise IngestError(
                        f"Cannot read {path} as {file_format}: line {number} is not valid JSON: {error.msg} "
                        f"(column {error.colno}). Each line holds one JSON object."
                    ) from None
                if not isinstance(value, dict):
                    raise IngestError(
                        f"Cannot read {path} as {file_format}: line {number} is not a JSON object; each line holds "
                        "one object."
                    )
    except UnicodeDecodeError:
        raise IngestError(
            f"Cannot read {path} as {file_format}: it is not UTF-8 text; save it as UTF-8."
        ) from None


def _read_json_array(path: Path, spec: TableSpec) -> pl.DataFrame:
    """One JSON array of objects, read as JSON lines so that both forms type their columns the same way."""
    import io

    import polars as pl

    try:
        rows = json.loads(path.read_bytes().decode("utf-8-sig"))
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


def _typed_from_text(frame: pl.DataFrame, spec: TableSpec, first_line: int | None) -> pl.DataFrame:
    """Give text columns their table type (CSV is all text; JSON may quote numbers).

    A number or boolean that does not convert is refused by itself: its column, its line (data row i is on line
    `first_line + i`, when known) or row, and the value, rather than a type error that lists every row.
    Timestamps in mixed formats stay text: the contract parses each value.
    """
    import polars as pl

    from metalake.errors import ContractError, ContractFailure

    known = set(spec.column_names)
    typed_columns = []
    failures = []
    for name, dtype in frame.schema.items():
        if name not in known or dtype != pl.String:
            continue
        text = frame.get_column(name)
        column_type = spec.column(name).type
        typed = _parse_text(text, column_type)
        if typed is None:
            continue
        unconverted = text.is_not_null() & typed.is_null()
        if not unconverted.any():
            typed_columns.append(typed.alias(name))
            continue
        if column_type.startswith("timestamp"):  # one format did not fit all: the contract parses each value
            continue
        rows = unconverted.arg_true()
        where = "line" if first_line is not None else "row"
        offset = first_line if first_line is not None else 1
        sample = [{where: row + offset, "value": text[row]} for row in rows.head(SAMPLE_VALUES).to_list()]
        failures.append(ContractFailure(name, f"not a {column_type}", len(rows), sample))
    if failures:
        raise ContractError(spec.name, failures)
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


def _starts_with(path: Path, prefix: bytes, *, strip: bool = True) -> bool:
    """Whether the file starts with `prefix`; with `strip`, after a byte-order mark and white space."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if strip:
        head = head.removeprefix(UTF8_BOM).lstrip()
    return head.startswith(prefix)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
