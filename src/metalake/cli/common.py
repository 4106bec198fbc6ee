"""What every `metalake` command shares: the global options and the way errors reach the user."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar

import typer

from metalake.cli.output import ListFormat, OutputFormat
from metalake.cli.pipes import discard_stdout
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

    def connect(self, *, create: bool) -> Lake:
        import metalake

        return metalake.connect(self.lake_uri, actor=self.actor, create=create)


def lake_option(help: str) -> Any:
    """A command's own `--lake URI` (besides the global one), for commands whose default lake is their own."""
    return typer.Option("--lake", metavar="URI", show_default=False, help=help)


def cli_state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState(None, None)


LakeUse = Literal["reads", "updates", "writes", "reads or writes", "own"]
"""How a command uses the lake given by --lake: whether it may create it.

- reads: opens an existing lake; a missing one is LakeNotFound (a mistyped --lake must not become an empty lake).
- updates: writes, but only to what an existing lake already holds (a model version, a KPI, tables to maintain):
  opens an existing lake, so a typo fails before anything is created.
- writes: records new facts; creates the lake if needed, as `init` does.
- reads or writes: shows, or with an option sets (`kpis production-envs --set`); the command says which.
- own: picks its lake itself (the demo ignores $METALAKE_URI).
"""

LAKE_USE: dict[str, LakeUse] = {
    "init": "writes",
    "tables": "reads",
    "describe": "reads",
    "sql": "reads",
    "history": "reads",
    "ingest": "writes",
    "snapshot": "updates",
    "snapshots": "reads",
    "maintain": "updates",
    "demo": "own",
    "serve": "writes",
    "access init": "writes",
    "access principal create": "updates",
    "access principal list": "reads",
    "access principal disable": "updates",
    "access principal enable": "updates",
    "access group add": "updates",
    "access group remove": "updates",
    "access token create": "updates",
    "access token revoke": "updates",
    "access token list": "reads",
    "access grant": "updates",
    "access revoke": "updates",
    "access list": "reads",
    "access check": "reads",
    "sync": "writes",
    "runs list": "reads",
    "runs show": "reads",
    "runs compare": "reads",
    "datasets register": "writes",
    "datasets list": "reads",
    "datasets show": "reads",
    "datasets history": "reads",
    "datasets diff": "reads",
    "quality validate": "updates",
    "quality report": "reads",
    "import mlflow": "writes",
    "models list": "reads",
    "models show": "reads",
    "models register": "writes",
    "models alias": "updates",
    "models transition": "updates",
    "models at": "reads",
    "models policy set": "writes",
    "models policy show": "reads",
    "deploy record": "writes",
    "deploy end": "updates",
    "deploy list": "reads",
    "kpis define": "writes",
    "kpis observe": "updates",
    "kpis ingest": "updates",
    "kpis list": "reads",
    "kpis impact": "reads",
    "kpis production-envs": "reads or writes",
    "lineage ingest": "writes",
    "lineage show": "reads",
    "views export": "reads",
    "export duckdb": "reads",
}


def command_name(ctx: typer.Context) -> str:
    """The command as typed after the global options: "runs list", "export duckdb"."""
    names: list[str] = []
    current: Any = ctx  # typer.Context, whose parents are typer's click Contexts
    while current.parent is not None:
        names.append(current.info_name or "")
        current = current.parent
    return " ".join(reversed(names))


def lake_use(ctx: typer.Context) -> LakeUse:
    name = command_name(ctx)
    if name not in LAKE_USE:
        raise RuntimeError(f"metalake {name}: classify the command in LAKE_USE (cli/common.py).")
    return LAKE_USE[name]


def open_lake(
    ctx: typer.Context, *, writing: bool | None = None, before_creating: Callable[[], object] | None = None
) -> Lake:
    """The lake of --lake, opened as the command uses it (LAKE_USE): only writing commands create a lake.

    A "reads or writes" command passes `writing`, as its options decide. A writing command that creates the lake
    says so on stderr (except `init`, whose answer is the lake), so that a mistyped --lake is seen at once.
    `before_creating` checks the command's own input (a file that must exist, a policy that must parse) before a
    new lake is created, so that a write refused for its input leaves no lake behind; an existing lake skips it.
    """
    from metalake.errors import LakeNotFound

    use = lake_use(ctx)
    if use == "reads or writes":
        if writing is None:
            raise RuntimeError(
                f"metalake {command_name(ctx)} reads or writes: pass open_lake(ctx, writing=...)."
            )
        use = "writes" if writing else "reads"
    state = cli_state(ctx)
    if use != "writes":
        return state.connect(create=False)
    try:
        return state.connect(create=False)
    except LakeNotFound:
        if before_creating is not None:
            before_creating()
        lake = state.connect(create=True)
    if command_name(ctx) != "init":
        from rich.markup import escape

        from metalake.cli.output import stderr_console

        stderr_console().print(f"Created a new lake at {escape(lake.uri)}.", soft_wrap=True)
    return lake


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
            discard_stdout()
            raise typer.Exit(141) from None

    return run
