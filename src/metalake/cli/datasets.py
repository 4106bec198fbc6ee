"""`metalake datasets ...` and `metalake quality ...`: register and inspect dataset versions, validate them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metalake.cli.common import MAX_VERSION, FormatOption, ShowFormatOption, open_lake, reports_errors

if TYPE_CHECKING:
    import polars as pl

    from metalake.cli.output import Section
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
OUTCOME_STYLES = {"result": {"pass": "green", "FAIL": "bold red"}}
BREAKING_STYLES = {"breaking": {"yes": "bold red"}}


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
    sensitive: Annotated[
        list[str] | None,
        typer.Option(
            "--sensitive",
            help="A column whose values are sensitive: readers without unmask see only its counts in the profile "
            "(later versions keep the mark). Repeat for more.",
        ),
    ] = None,
) -> None:
    """Record a version of a dataset: content fingerprint, row count, size, schema and column profile.

    The data is streamed once; the same content registered again returns the existing version.

    Example: metalake datasets register churn-train data/train/ --owner ml-team -t source=warehouse
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console, write_sections
    from metalake.datasets.profile import resolve_source

    tags = _parse_tags(tag or [])
    lake = open_lake(ctx, before_creating=lambda: resolve_source(path))
    version = lake.datasets.register(
        name, path, description=description, owner=owner, tags=tags, sensitive=sensitive or ()
    )
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
        unmarked = sorted(set(sensitive or ()) - set(version.sensitive_columns))
        if unmarked:
            console.print(
                f"[bold yellow]Not marked:[/] {escape(', '.join(unmarked))}. Marks go with a new version; this "
                "content was registered before, and keeps its own.",
                soft_wrap=True,
            )
        return
    console.print(
        f"Registered [bold]{escape(name)}[/] version {version.version}: {version.row_count:,} rows, "
        f"{len(version.schema)} columns, {_size(version.bytes)}, fingerprint {version.fingerprint[:12]}.",
        soft_wrap=True,
    )
    if version.sensitive_columns:
        console.print(
            f"Sensitive (readers without unmask see only their counts): {escape(', '.join(version.sensitive_columns))}.",
            soft_wrap=True,
        )
    if version.schema_changes:
        write_sections(
            [_changes_section(version.schema_changes, f"Schema changes from version {version.version - 1}")]
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
def list_datasets(ctx: typer.Context, output_format: FormatOption = "table") -> None:
    """List every dataset with its latest version, size and owner.

    csv, json and jsonl give every column of lake.datasets.list (the dataset_versions_current view).

    Example: metalake datasets list
    """
    from metalake.cli.output import write_rows

    frame = open_lake(ctx).datasets.list()
    shown = frame.select(
        "dataset", "version", "versions", "row_count", "bytes", "source_format", "owner", "registered_at"
    )
    write_rows(
        frame,
        output_format=output_format,
        table=shown,
        title=f"{frame.height} dataset(s)",
        empty="No datasets yet. Register one with: metalake datasets register NAME PATH",
    )


@datasets_app.command("show")
@reports_errors
def show_dataset(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, max=MAX_VERSION, help="Default: the latest.")
    ] = None,
    output_format: ShowFormatOption = "table",
) -> None:
    """Show one dataset version: where it came from, its size, and each column's type and profile.

    json: what lake.datasets.get returns (name, version, fingerprint, row_count, ..., schema, profile,
    schema_changes). csv and jsonl: one row per column: name, type, nullable and its profile statistics.

    Example: metalake datasets show churn-train --version 2
    """
    from metalake.cli.output import write_rows

    found = open_lake(ctx).datasets.get(name, version)
    sections = [_version_section(found), _profile_section(found)]
    if found.schema_changes:
        sections.append(
            _changes_section(found.schema_changes, f"Schema changes from version {found.version - 1}")
        )
    write_rows(_column_profiles(found), output_format=output_format, table=sections, document=found)


def _column_profiles(found: DatasetVersion) -> pl.DataFrame:
    """One row per column; min and max as text, since their type is the column's."""
    import polars as pl

    from metalake.datasets.datasets import PROFILE_STATISTICS

    records = []
    for column in found.schema:
        stats = found.profile.get(column["name"], {})
        record: dict[str, Any] = {
            "name": column["name"], "type": column.get("type"), "nullable": column.get("nullable"),
        }  # fmt: skip
        for statistic in PROFILE_STATISTICS:
            value = stats.get(statistic)
            record[statistic] = str(value) if statistic in ("min", "max") and value is not None else value
        records.append(record)
    schema = {"name": pl.String, "type": pl.String, "nullable": pl.Boolean, "null_count": pl.Int64,
              "distinct_estimate": pl.Int64, "min": pl.String, "max": pl.String, "mean": pl.Float64}  # fmt: skip
    return pl.DataFrame(records, schema=schema)


def _version_section(found: DatasetVersion) -> Section:
    from metalake.cli.output import fields_section

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
    return fields_section(fields, title=f"Dataset {found.name} version {found.version}")


def _profile_section(found: DatasetVersion) -> Section:
    from metalake.cli.output import Section

    rows = []
    for column in found.schema:
        stats = found.profile.get(column["name"], {})
        rows.append((column["name"], *(stats.get(key, column.get(key)) for key in PROFILE_COLUMNS)))
    return Section(
        columns=("column", *PROFILE_COLUMNS), rows=rows, title="Columns", right=PROFILE_COLUMNS[1:]
    )


def _changes_section(changes: list[SchemaChange], title: str) -> Section:
    from metalake.cli.output import Section

    rows = [(c.column, c.change, c.old_type, c.new_type, "yes" if c.breaking else "no") for c in changes]
    return Section(
        columns=("column", "change", "old type", "new type", "breaking"),
        rows=rows,
        title=title,
        value_styles=BREAKING_STYLES,
    )


@datasets_app.command("history")
@reports_errors
def dataset_history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    output_format: FormatOption = "table",
) -> None:
    """List every version of a dataset, oldest first, with its size and schema changes.

    Example: metalake datasets history churn-train
    """
    from metalake.cli.output import write_rows

    frame = open_lake(ctx).datasets.history(name)
    write_rows(frame, output_format=output_format, title=f"Versions of {name}")


@datasets_app.command("diff")
@reports_errors
def diff_versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    v1: Annotated[int, typer.Argument(help="Older version.", min=1, max=MAX_VERSION)],
    v2: Annotated[int, typer.Argument(help="Newer version.", min=1, max=MAX_VERSION)],
    all_statistics: Annotated[
        bool, typer.Option("--all", help="Also show statistics that did not change.")
    ] = False,
    output_format: ShowFormatOption = "table",
) -> None:
    """Show how two versions differ: schema changes (breaking ones flagged) and column profiles side by side.

    json: {name, old_version, new_version, row_count: [old, new], breaking, schema_changes, profile}, as
    lake.datasets.diff returns it. csv and jsonl: the profile (column, statistic, old, new, changed).

    Example: metalake datasets diff churn-train 1 2
    """
    import polars as pl

    from metalake.cli.output import Section, frame_section, write_rows

    difference = open_lake(ctx).datasets.diff(name, v1, v2)
    profile = difference.profile if all_statistics else difference.profile.filter(pl.col("changed"))
    old_rows, new_rows = ("unknown" if n is None else f"{n:,}" for n in difference.row_count)
    summary = f"{name}: version {v1} has {old_rows} rows, version {v2} has {new_rows}."
    sections = [Section(lines=[summary] if difference.schema_changes else [summary, "Same schema."])]
    if difference.schema_changes:
        sections.append(_changes_section(difference.schema_changes, "Schema changes"))
    sections.append(frame_section(profile.drop("changed"), title="Profile differences"))
    document = {
        "name": difference.name,
        "old_version": difference.old_version,
        "new_version": difference.new_version,
        "row_count": list(difference.row_count),
        "breaking": difference.breaking,
        "schema_changes": difference.schema_changes,
        "profile": profile,
    }
    write_rows(profile, output_format=output_format, table=sections, document=document)


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
        int | None, typer.Option("--version", "-v", min=1, max=MAX_VERSION, help="Default: the latest.")
    ] = None,
) -> None:
    """Validate a dataset version and record every expectation's outcome; exit 1 when any critical one fails.

    Example: metalake quality validate churn-train --suite checks.yaml
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console, write_sections

    result = open_lake(ctx).quality.validate(name, suite=suite, version=version)
    title = f"{result.suite_name} on {name} version {result.version}"
    write_sections([_results_section(result.results, title)])
    verdict = "[bold green]passed[/]" if result.success else "[bold red]failed[/]"
    stdout_console().print(
        f"Validation {verdict}: {result.successful}/{result.evaluated} expectations passed "
        f"({result.engine} {escape(result.engine_version)}, {result.duration_ms:.0f} ms). "
        f"Recorded as {result.validation_id}.",
        soft_wrap=True,
    )
    critical = [r for r in result.failed if (r["severity"] or "critical") == "critical"]
    if critical:
        raise typer.Exit(1)


def _results_section(results: list[dict[str, Any]], title: str) -> Section:
    """One row per expectation: pass or FAIL, what was observed, how many rows failed and a sample."""
    import json

    from metalake.cli.output import Section

    rows = []
    for result in results:
        details = result.get("details") or {}
        if isinstance(details, str):
            details = json.loads(details)
        observed = result["observed_value"] if result["observed_value"] is not None else details.get("error")
        rows.append(
            (
                result["expectation_type"],
                result["column"],
                "pass" if result["success"] else "FAIL",
                observed,
                result["unexpected_count"],
                result["unexpected_percent"],
                result["severity"],
                result["unexpected_sample"],
            )
        )
    columns = (
        "expectation",
        "column",
        "result",
        "observed",
        "unexpected",
        "unexpected %",
        "severity",
        "sample",
    )
    return Section(
        columns=columns,
        rows=rows,
        title=title,
        right=("unexpected", "unexpected %"),
        value_styles=OUTCOME_STYLES,
    )


@quality_app.command("report")
@reports_errors
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    output_format: ShowFormatOption = "table",
) -> None:
    """Show a dataset's quality: scorecard (pass rates, trend), recent validations, the latest results.

    json: {scorecard, validations, latest, results}: the dataset's row of lake.quality.scorecard, its ten most
    recent lake.quality.validations, and lake.quality.latest (the validation and its results). csv and jsonl:
    the latest validation's results (the dq_results columns).

    Example: metalake quality report churn-train
    """
    import polars as pl

    from metalake.cli.output import frame_section, write_rows

    lake = open_lake(ctx)
    header, results = lake.quality.latest(name)
    card = lake.quality.scorecard().filter(pl.col("dataset") == name)
    recent = lake.quality.validations(name, limit=10)
    card_columns = (
        "latest_version", "latest_suite", "latest_success", "latest_pass_rate", "recent_success_rate", "trend",
        "validations",
    )  # fmt: skip
    recent_columns = (
        "validated_at", "version", "suite_name", "engine", "success", "successful", "evaluated", "duration_ms",
    )  # fmt: skip
    latest_title = f"Latest results: {header['suite_name']}, version {header['version']}"
    sections = [
        frame_section(card.select(card_columns), title=f"Quality scorecard of {name}"),
        frame_section(recent.select(recent_columns), title="Recent validations (newest first)"),
        _results_section(results.to_dicts(), latest_title),
    ]
    document = {
        "scorecard": card.row(0, named=True) if card.height else None,
        "validations": recent,
        "latest": header,
        "results": results,
    }
    write_rows(results, output_format=output_format, table=sections, document=document)
