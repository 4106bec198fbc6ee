"""`metalake views export` and `metalake export duckdb`: the lake's views and data for other engines and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metalake.cli.common import cli_state, open_lake, reports_errors
from metalake.exports.dialects import ExportDialect

views_app = typer.Typer(
    name="views", help="The SQL views (sql/*.sql) beyond DuckDB: export them for Spark, Databricks or Trino.",
    no_args_is_help=True,
)  # fmt: skip
export_app = typer.Typer(
    name="export", help="Copy the lake into a file that other tools open (DuckDB).", no_args_is_help=True
)


@views_app.command("export")
@reports_errors
def export_views_command(
    ctx: typer.Context,
    dialect: Annotated[
        ExportDialect,
        typer.Option(
            "--dialect", "-d", show_default=False, help="SQL dialect to write: spark, databricks or trino."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", file_okay=False, show_default=False, help="Folder for the .sql files (created)."
        ),
    ],
    lake_uri: Annotated[
        str | None,
        typer.Option(
            "--lake-uri",
            metavar="URI",
            show_default=False,
            help="Lake location written into 00_tables.sql, as the engine sees it (a local path becomes an "
            "absolute file:// URI). Default: the global --lake or $METALAKE_URI if set (it must be a lake), "
            "else the placeholder <LAKE_URI>.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a folder that is not empty: the files of a previous export there (its order.txt) "
            "are removed first, other files kept.",
        ),
    ] = False,
) -> None:
    """Write every view as NAME.sql for Spark, Databricks or Trino, to run over the same Delta tables there.

    Each file is a CREATE OR REPLACE VIEW with the view's documentation. 00_tables.sql registers the lake's Delta tables under their own names (Spark/Databricks: CREATE TABLE ... USING DELTA LOCATION; Trino: the Delta Lake connector's register_table); README.md lists the files in the order they must be run, since views read views. DuckDB-only constructs are translated so that answers stay the same; a view that cannot be is an error, and nothing is written.

    Example: metalake views export --dialect spark --output spark_views --lake-uri s3://bucket/lake
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console
    from metalake.exports.views import export_views

    state = cli_state(ctx)
    location = lake_uri or (open_lake(ctx).uri if state.lake_uri else None)
    result = export_views(output, dialect, lake_uri=location, force=force)
    console = stdout_console()
    console.print(
        f"Wrote {len(result.views)} views and {len(result.tables)} table registrations for {dialect} to "
        f"[bold]{escape(str(output))}[/]; run them in the order of {escape(str(output / 'README.md'))}.",
        soft_wrap=True,
    )
    for name, reason in result.skipped.items():
        console.print(f"Not exported: {name}: {escape(reason)}", soft_wrap=True)


@export_app.command("duckdb")
@reports_errors
def export_duckdb_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(dir_okay=False, show_default=False, help="DuckDB file to write.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="WHEN",
            help="Export the lake as it was: an ISO time (between the lake's creation and now) or a snapshot name.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    masked_for: Annotated[
        str | None,
        typer.Option(
            "--masked-for",
            metavar="PRINCIPAL",
            help="Make the file for PRINCIPAL: unless it holds unmask on the lake, sensitive values are masked "
            "as the server shows them to it.",
        ),
    ] = None,
) -> None:
    """Write a DuckDB file with every table (a copy of its rows, now or as of WHEN) and every view over them.

    BI tools and notebooks open it with plain DuckDB, without metalake or access to the lake. Views that metalake materializes are tables in the file; the table metalake_export says where the copy came from: lake, as_of, exported_at and each table's Delta version and row count.

    The lake must exist (nothing is created), and WHEN must lie between the lake's first commit and now.

    With --masked-for PRINCIPAL the copy holds what that principal may see: the values the table specs mark sensitive (actors, run users, secret-looking params and tags) masked, unless it holds unmask on the lake.

    Example: metalake export duckdb lake.duckdb --as-of paper-v1 --masked-for analysts
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console
    from metalake.exports.duckdb_file import export_duckdb

    lake = open_lake(ctx)
    result = export_duckdb(lake, file, as_of=as_of, force=force, masked_for=masked_for)
    moment = f"as of {result.as_of}" if result.as_of else f"as of {result.exported_at:%Y-%m-%d %H:%M:%S} UTC"
    if result.masked_for is not None:
        seen = "sensitive values masked" if result.masked else "in clear: it may unmask"
        moment += f", for {result.masked_for} ({seen})"
    rows = sum(count for name, count in result.table_rows.items() if name in result.table_versions)
    console = stdout_console()
    console.print(
        f"Wrote [bold]{escape(str(file))}[/] {escape(moment)}: {len(result.table_versions)} tables "
        f"({rows:,} rows) and {len(result.views)} views.",
        soft_wrap=True,
    )
    console.print(
        f'Open it with: duckdb -readonly {escape(str(file))} "select * from runs_current"', soft_wrap=True
    )
