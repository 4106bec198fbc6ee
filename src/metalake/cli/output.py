"""The CLI's output contract: every command that lists or shows things writes through `write_rows`.

`--format table` draws Rich tables in a terminal and, when stdout is not one, plain lines (a header line, then one
row per line, columns separated by a tab, every value whole) for grep, cut and awk. csv, json (one array, or one
object for a command that shows one thing) and jsonl (one object per line) carry the Python API's column names
and ISO-8601 UTC timestamps. Also: the red error line, and query results as Parquet files.

Imported by the command functions only, so that `metalake --help` does not pay for Rich, polars or DuckDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

from metalake.errors import MetalakeError, QueryError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

ListFormat = Literal["table", "csv", "json", "jsonl"]
LIST_FORMATS: tuple[str, ...] = get_args(ListFormat)
# Commands that write files (sql, deploy list, kpis list/impact): parquet too, and there `json` stays JSON lines.
OutputFormat = Literal["table", "csv", "json", "jsonl", "parquet"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
MAX_CELL_CHARS = 200
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"  # polars strftime; the same text as iso_utc() writes


def stdout_console(*, finish_when_pipe_closes: bool = False) -> Console:
    """Rich console for results; highlighting off so that values keep their own look. A closed pipe: see pipes."""
    from metalake.cli.pipes import results_console

    return results_console(finish_when_pipe_closes=finish_when_pipe_closes)


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


# -- the output contract -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One block of a command's `--format table` output: a table (columns and rows), or lines of text.

    The styles apply in a terminal only: `cut` shows the first N characters of a column (piped, values are whole),
    `value_styles` styles a column's cells by value, `row_styles` whole rows.
    """

    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    title: str | None = None
    caption: str | None = None
    lines: Sequence[str] = ()
    header: bool = True
    right: Collection[str] = ()
    cut: Mapping[str, int] = field(default_factory=dict)
    value_styles: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    column_styles: Mapping[str, str] = field(default_factory=dict)
    row_styles: Sequence[str | None] = ()

    @property
    def is_text(self) -> bool:
        return not self.columns


def frame_section(
    frame: pl.DataFrame,
    *,
    title: str | None = None,
    caption: str | None = None,
    max_rows: int | None = None,
    cut: Mapping[str, int] | None = None,
    value_styles: Mapping[str, Mapping[Any, str]] | None = None,
) -> Section:
    """A frame as a table section: numbers right-aligned, at most `max_rows` rows with a note on the rest."""
    shown = frame if max_rows is None else frame.head(max_rows)
    hidden = frame.height - shown.height
    if hidden > 0:
        note = f"{hidden:,} more row(s) not shown; raise --max-rows or use --format csv/json/parquet."
        caption = f"{caption}\n{note}" if caption else note
    elif frame.is_empty():
        caption = caption or "(no rows)"
    return Section(
        columns=frame.columns,
        rows=list(shown.iter_rows()),
        title=title,
        caption=caption,
        right={name for name, dtype in frame.schema.items() if dtype.is_numeric()},
        cut=cut or {},
        value_styles=value_styles or {},
    )


def fields_section(fields: Mapping[str, Any], *, title: str) -> Section:
    """One object as `field  value` lines (fields without a value left out), drawn without a header."""
    rows = [(key, value) for key, value in fields.items() if value is not None]
    return Section(columns=("field", "value"), rows=rows, title=title, header=False)


def write_rows(
    rows: pl.DataFrame,
    *,
    output_format: OutputFormat,
    title: str | None = None,
    caption: str | None = None,
    table: pl.DataFrame | Sequence[Section] | None = None,
    document: Any = None,
    empty: str | None = None,
    notes: Sequence[str] = (),
    max_rows: int | None = None,
    cut: Mapping[str, int] | None = None,
    output: Path | None = None,
    json_lines: bool = False,
) -> None:
    """Write what a command lists or shows, in the format asked for: the one place that decides how output looks.

    `rows` (the Python API's frame) is what csv, jsonl and json write; `document`, if given, is what json writes
    instead (the object a show command returns). `table` is what --format table shows, if not `rows` itself: a
    frame (titled `title`) or several sections. `empty` replaces the table when `rows` is empty; `notes` follow
    it (on stderr when piped). `json_lines` keeps `json` meaning JSON lines, for the commands where it did.
    """
    if output is not None:
        check_output_folder(output)
    try:
        if output_format == "table":
            if isinstance(table, Sequence):
                sections = list(table)
            else:
                shown = rows if table is None else table
                sections = [frame_section(shown, title=title, caption=caption, max_rows=max_rows, cut=cut)]
            if output is not None:
                _write_table_file(sections, output)
            else:
                write_sections(sections, empty=empty if rows.is_empty() else None, notes=notes)
        elif output_format == "parquet":
            if output is None:
                raise MetalakeError(
                    "--format parquet writes a binary file: give it a path with --output FILE."
                )
            rows.write_parquet(output)
        else:
            text = machine_text(rows, output_format, document=document, json_lines=json_lines)
            if output is None:
                sys.stdout.write(text)
            else:
                output.write_text(text, encoding="utf-8")
    except BrokenPipeError:
        raise  # the reader stopped early (`| head`): reports_errors ends the command quietly
    except OSError as error:
        target = output or "to standard output"
        raise MetalakeError(f"Cannot write {target}: {error.strerror or error}.") from error


def check_output_folder(output: Path) -> None:
    """Say which part of an --output path is wrong: a file where a folder should be, or a missing folder."""
    if output.parent.is_dir():
        return
    blocking = next((folder for folder in output.parents if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise MetalakeError(
            f"Cannot write {output}: {blocking} is a file, not a folder. Choose another path."
        )
    raise MetalakeError(
        f"Cannot write {output}: the folder {output.parent} does not exist. Create it first, or choose another path."
    )


def stdout_is_terminal() -> bool:
    """Whether --format table draws Rich tables: stdout is a terminal, or TTY_COMPATIBLE=1 says to act as one.

    TTY_COMPATIBLE (Rich's variable) =0 asks for the plain lines in a terminal. FORCE_COLOR, which CI systems
    set for coloured logs, leaves the layout alone: a pipe in CI still gets lines that grep finds.
    """
    override = os.environ.get("TTY_COMPATIBLE", "")
    if override in ("0", "1"):
        return override == "1"
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def write_sections(
    sections: Sequence[Section], *, empty: str | None = None, notes: Sequence[str] = ()
) -> None:
    """--format table: Rich in a terminal, plain lines otherwise (see `stdout_is_terminal`)."""
    if stdout_is_terminal():
        _print_rich(sections, empty=empty, notes=notes)
    else:
        _print_plain(sections, sys.stdout, sys.stderr, empty=empty, notes=notes)


def machine_text(
    rows: pl.DataFrame, output_format: str, *, document: Any = None, json_lines: bool = False
) -> str:
    """csv, json or jsonl text: API column names, ISO-8601 UTC timestamps, binary as hex."""
    if output_format == "csv":
        return machine_frame(rows, nested_as_json=True).write_csv()
    if output_format == "jsonl" or json_lines:
        if _holds_non_finite_floats(rows):
            records = json_ready(machine_frame(rows, nested_as_json=False).to_dicts())
            return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        return machine_frame(rows, nested_as_json=False).write_ndjson()
    if document is not None:
        return json.dumps(json_ready(document), ensure_ascii=False) + "\n"
    if _holds_non_finite_floats(rows):
        return (
            json.dumps(json_ready(machine_frame(rows, nested_as_json=False).to_dicts()), ensure_ascii=False)
            + "\n"
        )
    return machine_frame(rows, nested_as_json=False).write_json() + "\n"


def _holds_non_finite_floats(frame: pl.DataFrame) -> bool:
    """Whether polars' JSON writer would turn a value into null: NaN or an infinity, maybe inside a nested column.

    Such frames are written through json_ready, which keeps them as "NaN", "Infinity" and "-Infinity".
    """

    for name, dtype in frame.schema.items():
        if dtype.is_float():
            if not frame.get_column(name).is_finite().fill_null(True).all():
                return True
        elif dtype.is_nested() and "Float" in str(dtype):
            return True
    return False


def machine_frame(frame: pl.DataFrame, *, nested_as_json: bool) -> pl.DataFrame:
    """Timestamps as ISO-8601 in UTC (the lake's naive ones are UTC), binary as hex, nested values as JSON for CSV."""
    import polars as pl

    replacements: list[pl.Expr | pl.Series] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            column = pl.col(name)
            utc = (
                column.dt.replace_time_zone("UTC")
                if dtype.time_zone is None
                else column.dt.convert_time_zone("UTC")
            )
            replacements.append(utc.dt.strftime(ISO_FORMAT))
        elif dtype == pl.Binary:
            replacements.append(pl.col(name).bin.encode("hex"))
        elif nested_as_json and dtype.is_nested():
            values = [
                None if v is None else json.dumps(json_ready(v)) for v in frame.get_column(name).to_list()
            ]
            replacements.append(pl.Series(name, values, dtype=pl.String))
    return frame.with_columns(replacements) if replacements else frame


NON_FINITE_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_ready(value: Any) -> Any:
    """A value as plain JSON data: dataclasses and frames as objects and arrays, timestamps as ISO-8601 UTC."""
    import polars as pl

    if isinstance(value, pl.DataFrame):
        return json.loads(machine_frame(value, nested_as_json=False).write_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(item) for item in value]
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or infinity: the names as strings, which `metalake ingest` reads back as floats.
        return NON_FINITE_JSON["nan" if math.isnan(value) else "inf" if value > 0 else "-inf"]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 with the UTC offset, microseconds always written (the lake's naive timestamps are UTC)."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="microseconds")


def plain_text(value: Any) -> str:
    """A value whole, on one line (tabs and line breaks written as \\t, \\n), for the piped table."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else _format_float(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        return value.hex()
    text = (
        json.dumps(json_ready(value), ensure_ascii=False)
        if isinstance(value, dict | list | tuple)
        else str(value)
    )
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _print_plain(
    sections: Sequence[Section], out: TextIO, err: TextIO, *, empty: str | None, notes: Sequence[str]
) -> None:
    """Header line and rows on stdout; with several sections, titles and text lines start with `# `. Notes go
    to stderr."""
    several = len(sections) > 1
    for index, section in enumerate(sections):
        if index:
            out.write("\n")
        if section.title:
            if several:
                out.write(f"# {plain_text(section.title)}\n")
            else:
                err.write(f"{section.title}\n")
        for line in section.lines:  # with several sections, every line that is not a table row starts with #
            out.write(f"# {plain_text(line)}\n" if several else f"{line}\n")
        if section.is_text:
            continue
        out.write("\t".join(plain_text(name) for name in section.columns) + "\n")
        for row in section.rows:
            out.write("\t".join(plain_text(value) for value in row) + "\n")
        if section.caption and section.rows:
            err.write(f"{section.caption}\n")
    for message in [empty, *notes]:
        if message:
            err.write(f"{message}\n")


def _print_rich(sections: Sequence[Section], *, empty: str | None, notes: Sequence[str]) -> None:
    from rich.text import Text

    console = stdout_console()
    if empty:
        console.print(Text(empty), soft_wrap=True)
    else:
        for section in sections:
            if section.is_text:
                if section.title:
                    console.print(Text(section.title, style="bold"))
                for line in section.lines:
                    console.print(Text(line))
            else:
                console.print(rich_table(section))
    for note in notes:
        console.print(Text(note), soft_wrap=True)


def rich_table(section: Section) -> Table:
    """A section as a Rich table: the CLI's terminal look (cells as plain text, never markup)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=escape(section.title) if section.title else None,
        title_justify="left",
        caption=escape(section.caption) if section.caption else None,
        caption_justify="left",
        show_header=section.header,
    )
    for name in section.columns:
        justify: Literal["left", "right"] = "right" if name in section.right else "left"
        table.add_column(name, justify=justify, overflow="fold", style=section.column_styles.get(name))
    for index, row in enumerate(section.rows):
        row_style = section.row_styles[index] if index < len(section.row_styles) else None
        cells = []
        for name, value in zip(section.columns, row, strict=True):
            text = cell(value)
            if name in section.cut:
                text = text[: section.cut[name]]
            by_value = section.value_styles.get(name)
            style = row_style or (by_value.get(value) if by_value and isinstance(value, Hashable) else None)
            cells.append(Text(text.plain, style=style) if style else text)
        table.add_row(*cells)
    return table


def _write_table_file(sections: Sequence[Section], output: Path) -> None:
    """--format table --output FILE: the Rich tables, as wide as they need (up to a limit), without colour."""
    from rich.console import Console

    with output.open("w", encoding="utf-8") as handle:
        console = Console(file=handle, width=_natural_width(sections), no_color=True, highlight=False)
        for section in sections:
            console.print(rich_table(section))


def _natural_width(sections: Sequence[Section]) -> int:
    """A width at which a table written to a file needs no wrapping (capped, so a huge cell cannot explode it)."""
    widest = 120
    for section in sections:
        widths = [len(name) + 3 for name in section.columns]
        for row in section.rows[:1000]:
            widths = [
                max(width, len(cell(value).plain) + 3) for width, value in zip(widths, row, strict=True)
            ]
        widest = max(widest, sum(widths) + 1)
    return min(widest, 1000)


# -- trees ---------------------------------------------------------------------------------------------------


@dataclass
class TreeNode:
    """A node of a tree the CLI prints (lineage): its label, details after it as (text, Rich style), children."""

    label: str
    style: str = ""
    details: list[tuple[str, str]] = field(default_factory=list)
    children: list[TreeNode] = field(default_factory=list)


def write_tree(root: TreeNode) -> None:
    """A Rich tree in a terminal; piped, one node per line, indented two spaces a level, never wrapped."""
    if not stdout_is_terminal():
        lines: list[str] = []

        def walk(node: TreeNode, depth: int) -> None:
            lines.append("  " * depth + plain_text(node.label + "".join(text for text, _ in node.details)))
            for child in node.children:
                walk(child, depth + 1)

        walk(root, 0)
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        return
    from rich.text import Text
    from rich.tree import Tree

    def grow(branch: Tree, node: TreeNode) -> None:
        for child in node.children:
            label = Text(child.label, style=child.style)
            for text, style in child.details:
                label.append(text, style=style)
            grow(branch.add(label), child)

    tree = Tree(Text(root.label, style=root.style))
    grow(tree, root)
    stdout_console().print(tree)
