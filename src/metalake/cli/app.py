"""The `metalake` command line: a thin Typer layer over the Lake facade, with Rich output.

Polars, DuckDB, deltalake, pandera and Rich load inside the commands, never at import, so that `metalake --help`
starts in a fraction of a second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from metalake._version import __version__
from metalake.cli.catalog import describe, tables
from metalake.cli.common import (
    MAX_AGE_DAYS,
    CliState,
    FileFormatOption,
    FormatOption,
    OutputOption,
    clamp_count,
    cli_state,
    lake_option,
    open_lake,
    reports_errors,
)
from metalake.core.file_formats import EXTENSION_FORMATS, INPUT_FORMATS, InputFormat
from metalake.errors import IngestError, MetalakeError

if TYPE_CHECKING:
    from metalake.lake import Lake

P = ParamSpec("P")
R = TypeVar("R")
QUIET_RUST_LOG = "warn,aws_config::imds=error"

app = typer.Typer(
    name="metalake",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold storage credentials
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"metalake {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    lake: Annotated[
        str | None,
        typer.Option(
            "--lake",
            envvar="METALAKE_URI",
            metavar="URI",
            show_default=False,
            help="Where the lake lives: a folder, or s3://, gs://, az:// URI. Default: $METALAKE_URI, else ./lake.",
        ),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            envvar="METALAKE_ACTOR",
            show_default=False,
            help="Who is writing, recorded with every row and commit. Default: $METALAKE_ACTOR, else your user.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """metalake: the single source of truth for ML metadata, as versioned Delta Lake tables.

    Every write is checked against its table's contract and kept forever.

    Query any table or view with SQL, now or as of a past moment or a named snapshot.

    Example: metalake --lake ./lake demo
    """
    # delta-rs logs through env_logger at warn: without AWS credentials or region, aws_config's IMDS probes
    # print long warnings before metalake's own error. Set before deltalake loads; RUST_LOG, if set, wins.
    os.environ.setdefault("RUST_LOG", QUIET_RUST_LOG)
    source = ctx.get_parameter_source("lake")
    ctx.obj = CliState(lake, actor, lake_on_command_line=getattr(source, "name", "") == "COMMANDLINE")


# -- catalog ------------------------------------------------------------------------------------------------


@app.command()
@reports_errors
def init(ctx: typer.Context) -> None:
    """Create the lake and every table (if needed), and say where it is.

    Safe to run again: existing tables and their data are left as they are.

    Example: metalake --lake s3://my-bucket/lake init
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    lake = open_lake(ctx)
    console = stdout_console()
    console.print(
        f"Lake ready at [bold]{escape(lake.uri)}[/] with {len(lake.tables())} tables.", soft_wrap=True
    )
    console.print(
        "Next: [bold]metalake tables[/], [bold]metalake describe runs[/], or [bold]metalake demo[/].",
        soft_wrap=True,
    )


app.command()(tables)
app.command()(describe)


# -- reading ------------------------------------------------------------------------------------------------


@app.command()
@reports_errors
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="DuckDB SQL over every table and view.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="WHEN",
            help="Query the lake as it was: an ISO time (between the lake's creation and now) or a snapshot name.",
        ),
    ] = None,
    output_format: FileFormatOption = "table",
    output: OutputOption = None,
    max_rows: Annotated[
        int,
        typer.Option("--max-rows", min=1, callback=clamp_count, help="Rows shown by --format table."),
    ] = 100,
) -> None:
    """Run SQL over the lake's tables and views, now or as of a past moment or snapshot.

    JSON output is JSON lines (--format json or jsonl), which `metalake ingest` reads back.

    Example: metalake sql "select name, status, duration_s from runs_current" --format csv

    Example: metalake sql "select count(*) from metrics" --as-of paper-v1
    """
    from rich.markup import escape

    from metalake.cli.output import fetch_frame, stderr_console, write_rows

    if not query.strip():
        raise typer.BadParameter(
            'the query is empty: give a SQL statement, e.g. "select * from runs_current".', param_hint="QUERY"
        )
    if output_format == "parquet" and output is None:
        raise typer.BadParameter(
            "--format parquet writes a binary file: add --output FILE.", param_hint="--output"
        )
    lake = open_lake(ctx)
    relation = (lake.as_of(as_of) if as_of else lake).sql(query)
    if relation is None:
        stderr_console().print("Done: the statement returns no rows.", soft_wrap=True)
        return
    frame = fetch_frame(relation)
    write_rows(
        frame,
        output_format=output_format,
        caption=_rows(frame.height),
        max_rows=max_rows,
        output=output,
        json_lines=True,
    )
    if output is not None:
        stderr_console().print(f"Wrote {frame.height:,} row(s) to {escape(str(output))}.", soft_wrap=True)


@app.command()
@reports_errors
def history(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="Table name.")],
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, callback=clamp_count, help="Show only the newest N commits."),
    ] = None,
    output_format: FormatOption = "table",
) -> None:
    """Show a table's commits, newest first: when, who, what operation, why, and how many rows.

    Example: metalake history metrics --limit 5

    Example: metalake history runs | grep alice
    """
    from metalake.cli.output import write_rows

    lake = open_lake(ctx)
    frame = lake.history(table, limit=limit)
    write_rows(frame, output_format=output_format, title=f"History of {table} (newest first)")


# -- writing ------------------------------------------------------------------------------------------------


@app.command()
@reports_errors
def ingest(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="Table to append to.")],
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON-lines file.", show_default=False)],
    input_format: Annotated[
        InputFormat | None,
        typer.Option(
            "--format",
            "-f",
            show_default=False,
            help="File format; default from the extension (.csv, .parquet/.pq, .jsonl/.ndjson, .json).",
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, recorded with the commit. Default: the file name.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            show_default=False,
            help="Ingesting again with the same key writes nothing (safe retries). Default: the file's SHA-256.",
        ),
    ] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again", help="Append the rows even if this same file was ingested into TABLE before."
        ),
    ] = False,
) -> None:
    """Append a file's rows to a table as one atomic commit: every row is written, or none.

    Columns are matched by name (see metalake describe TABLE). recorded_at and recorded_by are set by
    metalake (the time of this commit and --actor); a file that has them, such as an export of the table by
    `metalake sql --format csv|json`, has them dropped, with a notice.

    The whole file is checked against the table's contract first; a refused file lists every failing check.

    A file is ingested once: the same content again writes nothing and says so (--again appends it anyway).

    A .json file may hold JSON lines or one JSON array.

    Example: metalake ingest params params.csv --reason "backfill from the old tracker"
    """
    from rich.markup import escape

    from metalake.cli.input_files import content_digest, ingest_progress, read_input
    from metalake.cli.output import stderr_console, stdout_console
    from metalake.core.catalog import AUDIT_COLUMN_NAMES

    if again and idempotency_key is not None:
        raise typer.BadParameter(
            "--again appends without a key; --idempotency-key writes once per key: give one of them.",
            param_hint="--again",
        )
    file_format = _input_format(file, input_format)
    if not file.exists():
        raise IngestError(f"File not found: {file}")
    if not file.is_file():
        raise IngestError(f"{file} is not a file: give a CSV, Parquet or JSON-lines file.")
    lake = open_lake(ctx)
    spec = lake.spec(table)
    key = idempotency_key
    if key is None and not again:
        key = f"ingest-file:{content_digest(file)}"
    with ingest_progress() as progress:
        frame = read_input(file, file_format, spec, progress)
        audit = [column for column in AUDIT_COLUMN_NAMES if column in frame.columns]
        frame = frame.drop(audit)
        task = progress.add_task(f"validating and committing {_rows(frame.height)}", total=None)
        commit = lake.append(
            table,
            frame,
            reason=reason or f"metalake ingest {file.name}",
            idempotency_key=key,
            operation="ingest",
        )
        progress.update(task, total=1, completed=1)
    if audit:
        stderr_console().print(
            f"Dropped the file's {' and '.join(audit)} column(s): recorded_at and recorded_by are set by metalake "
            "on every write (this commit's time and actor). Keep a source's own time in a column of its own.",
            soft_wrap=True,
        )
    if commit.deduplicated:
        if idempotency_key is None:
            said = (
                f"Nothing written: {escape(str(file))} was already ingested into {table} (same content). "
                "To append its rows once more on purpose, add --again."
            )
        else:
            said = f"Nothing written: idempotency key {escape(repr(idempotency_key))} was already used on {table}."
        stderr_console().print(said, soft_wrap=True)
        return
    stdout_console().print(
        f"Ingested {_rows(commit.rows)} from {escape(str(file))} into [bold]{table}[/] (version {commit.version}).",
        soft_wrap=True,
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _input_format(file: Path, given: InputFormat | None) -> InputFormat:
    if given is not None:
        return given
    found = EXTENSION_FORMATS.get(file.suffix.lower())
    if found is None:
        raise typer.BadParameter(
            f"cannot tell the format of {file.name} from its extension; use --format {'|'.join(INPUT_FORMATS)}.",
            param_hint="--format",
        )
    return found


# -- snapshots ----------------------------------------------------------------------------------------------


@app.command()
@reports_errors
def snapshot(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Snapshot name: letters, digits, '.', '_' or '-'.")],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Why the snapshot is taken.")
    ] = None,
) -> None:
    """Pin the current version of every table under a name, to query the lake as it is now, forever.

    Example: metalake snapshot paper-v1 --description "numbers in the paper"
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    lake = open_lake(ctx)
    _check_snapshot_name(lake, name)
    commit = lake.snapshot(name, description=description)
    console = stdout_console()
    console.print(f"Pinned snapshot [bold]{escape(name)}[/] ({commit.rows} tables).", soft_wrap=True)
    console.print(
        f'Query it with: metalake sql "select count(*) from runs" --as-of {escape(name)}', soft_wrap=True
    )


def _check_snapshot_name(lake: Lake, name: str) -> None:
    """A bad name is a usage error (exit 2), said before anything is read or written."""
    try:
        lake.check_snapshot_name(name)
    except MetalakeError as error:
        raise typer.BadParameter(str(error), param_hint="NAME") from None


@app.command()
@reports_errors
def snapshots(ctx: typer.Context, output_format: FormatOption = "table") -> None:
    """List the named snapshots: when each was pinned, by whom, and why.

    Example: metalake snapshots
    """
    from metalake.cli.output import write_rows

    frame = open_lake(ctx).snapshots()
    write_rows(
        frame,
        output_format=output_format,
        title="Snapshots",
        empty="No snapshots yet. Pin one with: metalake snapshot NAME --description TEXT",
    )


# -- maintenance --------------------------------------------------------------------------------------------


MAINTENANCE_SCHEMA = {
    "table": "String", "action": "String", "files_before": "Int64", "files_after": "Int64", "version": "Int64",
    "seconds": "Float64",
}  # fmt: skip


@app.command()
@reports_errors
def maintain(
    ctx: typer.Context,
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="Only this table (repeat for several).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")
    ] = False,
    metric_history_days: Annotated[
        float | None,
        typer.Option(
            "--metric-history-days",
            min=0,
            max=MAX_AGE_DAYS,
            help="Drop the metric points of archived runs that ended more than N days ago (summaries stay).",
        ),
    ] = None,
    vacuum_days: Annotated[
        float | None,
        typer.Option(
            "--vacuum-days",
            min=0,
            max=MAX_AGE_DAYS,
            help="Delete files unreferenced for more than N days (named snapshots keep theirs).",
        ),
    ] = None,
    output_format: FormatOption = "table",
) -> None:
    """Rewrite tables for fast reads (metrics clustered by key and run, small files merged), apply retention.

    Retention never removes what a named snapshot, a non-archived model version or its run still needs. Writers
    may keep appending while it runs. On object stores, run it from one job at a time.

    csv, json and jsonl give one row per table and action, as lake.maintain returns them (table, action,
    files_before, files_after, version, seconds), tables without data files included.

    Example: metalake maintain --metric-history-days 90 --vacuum-days 7 --dry-run
    """
    import dataclasses

    import polars as pl

    from metalake.cli.output import Section, write_rows

    lake = open_lake(ctx)
    results = lake.maintain(
        tables=table, dry_run=dry_run, metric_history_days=metric_history_days, vacuum_days=vacuum_days
    )
    schema = {name: getattr(pl, dtype) for name, dtype in MAINTENANCE_SCHEMA.items()}
    frame = pl.DataFrame([dataclasses.asdict(result) for result in results], schema=schema)
    shown = [r for r in results if r.files_before > 0 or r.action.startswith(("drop", "vacuum"))]
    rows = [
        (r.table, r.action, r.files_before, "" if dry_run else r.files_after, f"{r.seconds:.2f}")
        for r in shown
    ]
    section = Section(
        columns=("table", "action", "files before", "files after", "seconds"),
        rows=rows,
        title="Maintenance (dry run)" if dry_run else "Maintenance",
        right=("files before", "files after", "seconds"),
    )
    empty = len(results) - len(shown)
    notes = [f"{empty} table(s) without data files left out."] if empty else []
    write_rows(frame, output_format=output_format, table=[section], notes=notes)


# -- demo ---------------------------------------------------------------------------------------------------


@app.command()
@reports_errors
def demo(
    ctx: typer.Context,
    lake: Annotated[
        str | None,
        lake_option(
            "Lake for the demo. Default: the global --lake if given, else ./demo-lake (never $METALAKE_URI)."
        ),
    ] = None,
) -> None:
    """Build a realistic lake from real scikit-learn data and models, then show what it answers.

    Registers datasets and a broken delivery, validated with Great Expectations; trains scikit-learn models.

    Promotes the best under a policy (and shows a refused promotion); records deployments and KPIs.

    Records the ETL runs as OpenLineage events, pins a snapshot demo-round-N, prints the main views.

    Run it again to add a round. Writes only to a new or empty lake or one an earlier demo built; refuses others.

    Needs the demo extra: pip install 'metalake\\[demo]'. Ignores $METALAKE_URI.

    Example: metalake demo --lake ./demo-lake
    """
    from metalake.cli.output import stdout_console
    from metalake.demo import DEFAULT_DEMO_LAKE, run_demo

    state = cli_state(ctx)
    uri = lake or (state.lake_uri if state.lake_on_command_line else None) or DEFAULT_DEMO_LAKE
    # A closed pipe (`metalake demo | head`) must not cut a round short: the round is written to the end.
    run_demo(uri, stdout_console(finish_when_pipe_closes=True), actor=state.actor)


def _register_subcommands() -> None:
    from metalake.cli.access import access_app
    from metalake.cli.datasets import datasets_app, quality_app
    from metalake.cli.deploy import deploy_app, kpis_app
    from metalake.cli.export import export_app, views_app
    from metalake.cli.imports import import_app
    from metalake.cli.lineage import lineage_app, serve
    from metalake.cli.models import models_app
    from metalake.cli.runs import runs_app, sync

    app.add_typer(runs_app, name="runs")
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(quality_app, name="quality")
    app.add_typer(import_app, name="import")
    app.add_typer(models_app, name="models")
    app.add_typer(deploy_app, name="deploy")
    app.add_typer(kpis_app, name="kpis")
    app.add_typer(lineage_app, name="lineage")
    app.add_typer(views_app, name="views")
    app.add_typer(export_app, name="export")
    app.add_typer(access_app, name="access")
    app.command("serve")(serve)
    app.command("sync")(sync)


_register_subcommands()


def main() -> None:
    """Entry point of the `metalake` script."""
    app()
