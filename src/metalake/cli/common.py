"""What every `metalake` command shares: the global options and the way errors reach the user."""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from metalake.cli.output import ListFormat, OutputFormat
from metalake.core.moments import MAX_DAYS
from metalake.errors import MetalakeError

# Bounds of the numeric options, so that no number reaches code that cannot hold it (an OverflowError deep in
# polars or a datetime). Counts (rows, runs, commits, edges) clamp: a larger limit means "all" anyway.
MAX_COUNT = 1_000_000_000
MAX_VERSION = 2**63 - 1  # versions are int64 in the lake
MAX_AGE_DAYS = MAX_DAYS


def clamp_count(value: int | None) -> int | None:
    """A count option's callback: above MAX_COUNT means "all", so clamp instead of passing on what polars cannot
    hold (the option's min still refuses 0 and negatives)."""
    return None if value is None else min(value, MAX_COUNT)


if TYPE_CHECKING:
    from metalake.lake import Lake

P = ParamSpec("P")
R = TypeVar("R")

TABLE_HELP = (
    "table (Rich in a terminal; piped: a header line, then one row per line, tab-separated, values whole)"
)
FormatOption = Annotated[
    ListFormat,
    typer.Option(
        "--format",
        "-f",
        help=f"{TABLE_HELP}, csv, json (one array), jsonl (one object per line). Columns as the Python API names them.",
    ),
]
FileFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-f",
        help=f"{TABLE_HELP}, csv, json (JSON lines, one object per row, as this command always wrote; same as "
        "jsonl), jsonl, parquet (needs --output).",
    ),
]
ShowFormatOption = Annotated[
    ListFormat,
    typer.Option(
        "--format",
        "-f",
        help=f"{TABLE_HELP}, json (one object with every part), csv and jsonl (the main table, named below).",
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write to FILE instead of stdout.")
]


@dataclass(frozen=True)
class CliState:
    """The global options, handed to every command through the Typer context."""

    lake_uri: str | None
    actor: str | None
    lake_on_command_line: bool = False

    def connect(self, *, create: bool = True) -> Lake:
        import metalake

        return metalake.connect(self.lake_uri, actor=self.actor, create=create)


def cli_state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState(None, None)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a MetalakeError into one red message and exit code 1: users need the fix, not a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except MetalakeError as error:
            from metalake.cli.output import print_error

            print_error(str(error))
            raise typer.Exit(1) from None
        except BrokenPipeError:
            # The reader stopped early (`| head`): not an error to report. Exit as a Unix filter killed by
            # SIGPIPE does (128 + 13), with stdout pointed at /dev/null so that the flush at exit stays quiet.
            _discard_stdout()
            raise typer.Exit(141) from None

    return run


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (CliRunner): nothing to flush
        pass
