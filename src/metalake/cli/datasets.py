"""`metalake datasets ...` and `metalake quality ...`: register and inspect dataset versions, validate them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metalake.cli.common import cli_state, reports_errors

if TYPE_CHECKING:
    from rich.table import Table

    from metalake.datasets.datasets import DatasetVersion, SchemaChange

datasets_app = typer.Typer(
    name="datasets", help="Register dataset versions; list, show, diff them.", no_args_is_help=True
)
quality_app = typer.Typer(
    name="quality",
    help="Validate dataset versions with Great Expectations or pandera; see the scorecard.",
    no_args_is_help=True,
)
PROFILE_COLUMNS = ("type", "null_count", "distinct_estimate", "min", "max", "mean")


@datasets_app.command("register")
@reports_errors
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[
        str,
        typer.Argument(help="Parquet, CSV or JSON-lines file, a folder of them, a glob, or a Delta table."),
    ],
    description: Annotated[str | None, typer.Option("--description", "-d", help="What the data is.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Person or team responsible.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="KEY=VALUE label; repeat for more.")
    ] = None,
) -> None:
    """Record a version of a dataset: content fingerprint, row count, size, schema and column profile.

    The data is streamed once; the same content registered again returns the existing version.

    Example: metalake datasets register churn-train data/train/ --owner ml-team -t source=warehouse
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    tags = _parse_tags(tag or [])
    lake = cli_state(ctx).connect()
    version = lake.datasets.register(name, path, description=description, owner=owner, tags=tags)
    console = stdout_console()
    if not version.created:
        recorded = (
            "no new version; description, owner or tags updated"
            if version.metadata_updated
            else "nothing recorded"
        )
        console.print(
            f"Unchanged: {escape(path)} holds the same content as [bold]{escape(name)}[/] "
            f"version {version.version}; {recorded}.",
            soft_wrap=True,
        )
        return
    console.print(
        f"Registered [bold]{escape(name)}[/] version {version.version}: {version.row_count:,} rows, "
        f"{len(version.schema)} columns, {_size(version.bytes)}, fingerprint {version.fingerprint[:12]}.",
        soft_wrap=True,
    )
    if version.schema_changes:
        console.print(
            _changes_table(version.schema_changes, f"Schema changes from version {version.version - 1}")
        )
    if version.breaking:
        console.print(
            "[bold yellow]Breaking schema change:[/] readers of the previous version may fail.",
            soft_wrap=True,
        )


def _parse_tags(pairs: list[str]) -> dict[str, str] | None:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint="--tag")
        tags[key] = value
    return tags or None


def _size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@datasets_app.command("list")
@reports_errors
def list_datasets(ctx: typer.Context) -> None:
    """List every dataset with its latest version, size and owner.

    Example: metalake datasets list
    """
    from metalake.cli.output import frame_table, stdout_console

    frame = cli_state(ctx).connect().datasets.list()
    console = stdout_console()
    if frame.is_empty():
        console.print(
            "No datasets yet. Register one with: metalake datasets register NAME PATH", soft_wrap=True
        )
        return
    shown = frame.select(
        "dataset", "version", "versions", "row_count", "bytes", "source_format", "owner", "registered_at"
    )
    console.print(frame_table(shown, title=f"{frame.height} dataset(s)"))


@datasets_app.command("show")
@reports_errors
def show_dataset(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
) -> None:
    """Show one dataset version: where it came from, its size, and each column's type and profile.

    Example: metalake datasets show churn-train --version 2
    """
    from metalake.cli.output import stdout_console

    found = cli_state(ctx).connect().datasets.get(name, version)
    console = stdout_console()
    console.print(_version_table(found))
    console.print(_profile_table(found))
    if found.schema_changes:
        console.print(
            _changes_table(found.schema_changes, f"Schema changes from version {found.version - 1}")
        )


def _version_table(found: DatasetVersion) -> Table:
    from rich.table import Table

    from metalake.cli.output import cell

    table = Table(
        title=f"Dataset {found.name} version {found.version}", show_header=False, title_justify="left"
    )
    fields: dict[str, Any] = {
        "rows": found.row_count,
        "columns": len(found.schema),
        "size": _size(found.bytes),
        "files": found.file_count,
        "fingerprint": found.fingerprint,
        "source": found.source_uri,
        "format": found.source_format,
        "delta version": found.delta_version,
        "recorded at": found.recorded_at,
        "recorded by": found.recorded_by,
        "breaking change": found.breaking,
    }
    for key, value in fields.items():
        if value is not None:
            table.add_row(key, cell(value))
    return table


def _profile_table(found: DatasetVersion) -> Table:
    from rich.table import Table

    from metalake.cli.output import cell

    table = Table(title="Columns", title_justify="left")
    table.add_column("column")
    for heading in PROFILE_COLUMNS:
        table.add_column(heading, justify="left" if heading == "type" else "right")
    for column in found.schema:
        stats = found.profile.get(column["name"], {})
        table.add_row(
            cell(column["name"]), *(cell(stats.get(key, column.get(key))) for key in PROFILE_COLUMNS)
        )
    return table


def _changes_table(changes: list[SchemaChange], title: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    from metalake.cli.output import cell

    table = Table(title=Text(title), title_justify="left")
    for heading in ("column", "change", "old type", "new type", "breaking"):
        table.add_column(heading)
    for change in changes:
        breaking = Text("yes", style="bold red") if change.breaking else Text("no")
        table.add_row(
            cell(change.column), cell(change.change), cell(change.old_type), cell(change.new_type), breaking
        )
    return table


@datasets_app.command("history")
@reports_errors
def dataset_history(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """List every version of a dataset, oldest first, with its size and schema changes.

    Example: metalake datasets history churn-train
    """
    from metalake.cli.output import frame_table, stdout_console

    frame = cli_state(ctx).connect().datasets.history(name)
    stdout_console().print(frame_table(frame, title=f"Versions of {name}"))


@datasets_app.command("diff")
@reports_errors
def diff_versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    v1: Annotated[int, typer.Argument(help="Older version.", min=1)],
    v2: Annotated[int, typer.Argument(help="Newer version.", min=1)],
    all_statistics: Annotated[
        bool, typer.Option("--all", help="Also show statistics that did not change.")
    ] = False,
) -> None:
    """Show how two versions differ: schema changes (breaking ones flagged) and column profiles side by side.

    Example: metalake datasets diff churn-train 1 2
    """
    import polars as pl

    from metalake.cli.output import frame_table, stdout_console

    difference = cli_state(ctx).connect().datasets.diff(name, v1, v2)
    console = stdout_console()
    old_rows, new_rows = ("unknown" if n is None else f"{n:,}" for n in difference.row_count)
    console.print(f"{name}: version {v1} has {old_rows} rows, version {v2} has {new_rows}.", soft_wrap=True)
    if difference.schema_changes:
        console.print(_changes_table(difference.schema_changes, "Schema changes"))
    else:
        console.print("Same schema.", soft_wrap=True)
    profile = difference.profile if all_statistics else difference.profile.filter(pl.col("changed"))
    console.print(frame_table(profile.drop("changed"), title="Profile differences"))


@quality_app.command("validate")
@reports_errors
def validate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    suite: Annotated[
        Path,
        typer.Option(
            "--suite",
            "-s",
            help="GX suite JSON, a YAML list of expectations, or a pandera YAML schema.",
            show_default=False,
        ),
    ],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
) -> None:
    """Validate a dataset version and record every expectation's outcome; exit 1 when any critical one fails.

    Example: metalake quality validate churn-train --suite checks.yaml
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    result = cli_state(ctx).connect().quality.validate(name, suite=suite, version=version)
    console = stdout_console()
    console.print(_results_table(result.results, f"{result.suite_name} on {name} version {result.version}"))
    verdict = "[bold green]passed[/]" if result.success else "[bold red]failed[/]"
    console.print(
        f"Validation {verdict}: {result.successful}/{result.evaluated} expectations passed "
        f"({result.engine} {escape(result.engine_version)}, {result.duration_ms:.0f} ms). "
        f"Recorded as {result.validation_id}.",
        soft_wrap=True,
    )
    critical = [r for r in result.failed if (r["severity"] or "critical") == "critical"]
    if critical:
        raise typer.Exit(1)


def _results_table(results: list[dict[str, Any]], title: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    from metalake.cli.output import cell

    table = Table(title=Text(title), title_justify="left")  # a suite's name is not markup
    for heading in (
        "expectation",
        "column",
        "result",
        "observed",
        "unexpected",
        "unexpected %",
        "severity",
        "sample",
    ):
        table.add_column(heading, justify="right" if heading.startswith("unexpected") else "left")
    for result in results:
        outcome = Text("pass", style="green") if result["success"] else Text("FAIL", style="bold red")
        details = result.get("details") or {}
        if isinstance(details, str):
            import json

            details = json.loads(details)
        observed = result["observed_value"] if result["observed_value"] is not None else details.get("error")
        table.add_row(
            cell(result["expectation_type"]),
            cell(result["column"]),
            outcome,
            cell(observed),
            cell(result["unexpected_count"]),
            cell(result["unexpected_percent"]),
            cell(result["severity"]),
            cell(result["unexpected_sample"]),
        )
    return table


@quality_app.command("report")
@reports_errors
def report(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Show a dataset's quality: scorecard (pass rates, trend), recent validations, the latest results.

    Example: metalake quality report churn-train
    """
    import polars as pl

    from metalake.cli.output import frame_table, stdout_console

    lake = cli_state(ctx).connect()
    header, results = lake.quality.latest(name)
    console = stdout_console()
    card = lake.quality.scorecard().filter(pl.col("dataset") == name)
    console.print(
        frame_table(
            card.select(
                "latest_version",
                "latest_suite",
                "latest_success",
                "latest_pass_rate",
                "recent_success_rate",
                "trend",
                "validations",
            ),
            title=f"Quality scorecard of {name}",
        )
    )
    recent = lake.quality.validations(name, limit=10).select(
        "validated_at", "version", "suite_name", "engine", "success", "successful", "evaluated", "duration_ms"
    )
    console.print(frame_table(recent, title="Recent validations (newest first)"))
    console.print(
        _results_table(
            results.to_dicts(), f"Latest results: {header['suite_name']}, version {header['version']}"
        )
    )
