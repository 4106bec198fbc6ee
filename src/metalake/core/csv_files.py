"""The one verdict on a CSV file's shape, shared by `metalake ingest`, `lake.datasets.register` and `kpis ingest`.

The first line is the header; every other non-blank line has as many fields. Readers (polars, DuckDB, pyarrow)
each guess differently on a ragged file: one pads short rows with nulls, another reads the whole file as one
column. Walking the file once with the stdlib csv module first gives every caller the same answer, with the line.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from metalake.errors import MetalakeError

# The stdlib csv module refuses fields over 128 KiB by default; a JSON column can hold more than that.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
TextOpener = Callable[[Path], AbstractContextManager[IO[str]]]


@dataclass(frozen=True)
class CsvShape:
    """What one walk over a CSV file found: the header (empty for an empty file), data rows and blank lines.

    `one_line_per_row`: no blank lines and no line breaks inside values, so data row i is on line i + 2.
    """

    header: list[str]
    rows: int
    blank_lines: int
    one_line_per_row: bool = True


def open_csv_text(path: Path) -> AbstractContextManager[IO[str]]:
    """UTF-8 text; utf-8-sig because spreadsheets start their CSV exports with a byte-order mark."""
    return path.open("r", encoding="utf-8-sig", newline="")


def check_csv(
    path: Path,
    *,
    delimiter: str = ",",
    error: type[MetalakeError],
    open_text: TextOpener = open_csv_text,
) -> CsvShape:
    """Walk the file once: refuse a ragged row, a NUL byte, text that is not UTF-8, or another delimiter.

    Raises `error` (the caller's error class) with the file and the line number.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    line = 1
    try:
        with open_text(path) as handle:
            reader = csv.reader(_refusing_nul(handle, path, error), delimiter=delimiter, strict=True)
            header = next(reader, None) or []
            _check_delimiter(path, header, delimiter, error)
            rows = blank_lines = 0
            for row in reader:
                line = reader.line_num
                if not row:
                    blank_lines += 1
                elif len(row) != len(header):
                    raise error(
                        f"{path} is malformed: line {line} has {len(row)} field(s) but the header has "
                        f"{len(header)} ({', '.join(header)}). Every line needs one value per column (quote "
                        'values that hold the delimiter: "a, b").'
                    )
                else:
                    rows += 1
            one_line_per_row = blank_lines == 0 and reader.line_num == rows + 1
    except UnicodeDecodeError as decode_error:
        raise error(
            f"{path} is not UTF-8 text (near line {line + 1}): is it really a CSV file? Save it as UTF-8."
        ) from decode_error
    except csv.Error as csv_error:
        raise error(f"{path} is malformed near line {line + 1}: {csv_error}.") from csv_error
    return CsvShape(header, rows, blank_lines, one_line_per_row)


def _check_delimiter(path: Path, header: list[str], delimiter: str, error: type[MetalakeError]) -> None:
    """A one-column header holding another delimiter means the file is separated by it (a European export)."""
    if len(header) != 1:
        return
    for other, name in OTHER_DELIMITERS.items():
        if other != delimiter and other in header[0]:
            expected = "commas" if delimiter == "," else repr(delimiter)
            raise error(
                f"{path} seems to be separated by {name}, not {expected}: its header line is one column "
                f"{header[0]!r}. Save the file with {expected} as the delimiter."
            )


def _refusing_nul(lines: Iterable[str], path: Path, error: type[MetalakeError]) -> Iterator[str]:
    """Python 3.11's csv module accepts NUL bytes; in a CSV file they mean binary or UTF-16 data."""
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            raise error(
                f"{path} is malformed: line {number} holds a NUL byte (binary or UTF-16 data?). Save it as UTF-8 CSV."
            )
        yield line
