"""`metalake deploy ...` and `metalake kpis ...`: deployments from CI/CD, KPIs, and whether deployments helped."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from metalake.cli.common import (
    MAX_VERSION,
    FileFormatOption,
    FormatOption,
    OutputOption,
    clamp_count,
    open_lake,
    reports_errors,
)
from metalake.core.file_formats import InputFormat
from metalake.core.vocabulary import KpiDirection
from metalake.kpis.kpis import LAKE_SETTING

if TYPE_CHECKING:
    import polars as pl
    from typer._click import Context as ClickContext  # Typer ships its own Click

    from metalake.deployments import Deployment

deploy_app = typer.Typer(
    name="deploy", help="Record model deployments (from CI/CD) and list them.", no_args_is_help=True
)
kpis_app = typer.Typer(
    name="kpis",
    help="Define KPIs, record their values, and see how deployments moved them.",
    no_args_is_help=True,
)

AtOption = Annotated[
    str | None,
    typer.Option("--at", metavar="WHEN", help="When, as ISO-8601 (e.g. 2026-03-01T12:00:00Z). Default: now."),
]
NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class NegativeNumberArguments(TyperCommand):
    """A command where a negative number in place of an argument is that argument (`observe profit -3`), where
    Click would read it as an unknown option. A token after an option that takes a value stays that value."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        takes_value = {
            name
            for param in self.params
            if param.param_type_name == "option" and not getattr(param, "is_flag", False)
            for name in param.opts
        }
        end = args.index("--") if "--" in args else len(args)
        kept: list[str] = []
        numbers: list[str] = []
        for index, token in enumerate(args[:end]):
            is_value = index > 0 and args[index - 1] in takes_value
            (numbers if NEGATIVE_NUMBER.fullmatch(token) and not is_value else kept).append(token)
        if numbers:  # after `--`, where Click reads every token as an argument
            args = [*kept, "--", *numbers, *args[end + 1 :]]
        return super().parse_args(ctx, args)


LIST_COLUMNS = [
    "deployment_id", "model", "version", "environment", "started_at", "ended_at", "is_active", "git_sha",
    "ci_run_id", "endpoint",
]  # fmt: skip


# -- deploy ---------------------------------------------------------------------------------------------------


@deploy_app.command("record")
@reports_errors
def record_deployment(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model deployed.", show_default=False)],
    version: Annotated[
        int,
        typer.Option("--version", "-v", min=1, max=MAX_VERSION, help="Model version.", show_default=False),
    ],
    environment: Annotated[
        str, typer.Option("--env", "-e", help="Environment, e.g. staging or production.", show_default=False)
    ],
    at: AtOption = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Serving URL or endpoint name.")] = None,
    git_sha: Annotated[
        str | None, typer.Option("--git-sha", help="Commit deployed. Default: from the CI variables.")
    ] = None,
    ci_run_id: Annotated[
        str | None, typer.Option("--ci-run-id", help="CI run. Default: from the CI variables.")
    ] = None,
    pipeline_run: Annotated[
        str | None,
        typer.Option("--pipeline-run", help="Pipeline run that deployed it (pipeline_runs.run_id)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, recorded with the event.")] = None,
    keep_active: Annotated[
        bool,
        typer.Option(
            "--keep-active",
            help="Leave the model's active deployment in this environment serving (canary, A/B test).",
        ),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Recording again with the same key writes nothing. Default: derived from the CI run.",
        ),
    ] = None,
) -> None:
    """Record that a model version started serving in an environment; ends the version it replaces there.

    The git commit and CI run id come from the usual CI variables when not given (GITHUB_SHA/GITHUB_RUN_ID,
    CI_COMMIT_SHA/CI_PIPELINE_ID, BUILD_SOURCEVERSION/BUILD_BUILDID, CIRCLE_SHA1, BUILDKITE_COMMIT, ...), and a
    re-run of the same CI job records the deployment once.

    Example: metalake deploy record --model churn --version 3 --env production
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console
    from metalake.deployments import detect_ci

    ci = detect_ci()
    lake = open_lake(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deployment = lake.deployments.record(
            model,
            version,
            environment,
            at=at,
            endpoint=endpoint,
            git_sha=git_sha or ci.git_sha,
            ci_run_id=ci_run_id or ci.ci_run_id,
            pipeline_run=pipeline_run,
            reason=reason,
            replace_active=not keep_active,
            idempotency_key=idempotency_key,
        )
    _print_warnings(caught)
    console = stdout_console()
    if deployment.deduplicated:
        console.print(
            f"Already recorded (same CI run or idempotency key): deployment {escape(_summary(deployment))}.",
            soft_wrap=True,
        )
        return
    console.print(f"Recorded deployment {escape(_summary(deployment))}.", soft_wrap=True)
    source = []
    if deployment.git_sha:
        source.append(f"commit {deployment.git_sha}")
    if deployment.ci_run_id:
        source.append(f"CI run {deployment.ci_run_id}")
    if source:
        via = f" ({ci.provider})" if ci.provider and not (git_sha or ci_run_id) else ""
        console.print(escape(", ".join(source) + via), soft_wrap=True)
    for replaced in deployment.replaced:
        console.print(f"Ended deployment {escape(replaced)}, which it replaces.", soft_wrap=True)


@deploy_app.command("end")
@reports_errors
def end_deployment(
    ctx: typer.Context,
    deployment_id: Annotated[
        str | None, typer.Argument(help="Deployment to end; or give --env (and --model).", show_default=False)
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model whose deployment ends.")] = None,
    environment: Annotated[
        str | None, typer.Option("--env", "-e", help="Environment the deployment serves in.")
    ] = None,
    at: AtOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, e.g. 'rollback after KPI drop'.")
    ] = None,
) -> None:
    """End a deployment: by id, or the active one of a model in an environment.

    Example: metalake deploy end --model churn --env production --reason "rollback after KPI drop"
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    lake = open_lake(ctx)
    ended = lake.deployments.end(deployment_id, model=model, environment=environment, at=at, reason=reason)
    assert ended.ended_at is not None
    stdout_console().print(
        f"Ended deployment {escape(ended.describe())} at {ended.ended_at.isoformat()}.", soft_wrap=True
    )


@deploy_app.command("list")
@reports_errors
def list_deployments(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only deployments still serving.")] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", min=1, callback=clamp_count, help="Show at most N (newest first)."),
    ] = 50,
    output_format: FileFormatOption = "table",
    output: OutputOption = None,
) -> None:
    """List deployments, newest first: model version, environment, window, commit and CI run.

    Example: metalake deploy list --env production --active
    """
    from metalake.cli.output import write_rows

    lake = open_lake(ctx)
    frame = lake.deployments.list(environment, model=model, active=True if active else None).head(limit)
    write_rows(
        frame,
        output_format=output_format,
        table=frame.select(LIST_COLUMNS),
        caption=_rows(frame.height),
        empty="No deployments recorded. Record one with: metalake deploy record --model M --version N --env E",
        output=output,
        json_lines=True,
    )


# -- kpis -----------------------------------------------------------------------------------------------------


@kpis_app.command("define")
@reports_errors
def define_kpi(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="KPI name, e.g. conversion_rate.", show_default=False)],
    unit: Annotated[str, typer.Option("--unit", "-u", help="Unit, e.g. %, EUR, ms.", show_default=False)],
    direction: Annotated[
        KpiDirection,
        typer.Option("--direction", "-d", help="Which way is better.", show_default=False),
    ],
    description: Annotated[str | None, typer.Option("--description", help="What it measures.")] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Person or team responsible.")] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model whose deployments it follows (repeat). Left out: the current list on an update, every "
            "model for a new KPI.",
        ),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Follow every model (clears the --model list).")
    ] = False,
) -> None:
    """Define a KPI, or update its definition; options left out keep their current values.

    Example: metalake kpis define conversion_rate --unit % --direction higher_is_better --model churn
    """
    from rich.markup import escape

    from metalake.cli.output import stdout_console

    if all_models and models:
        raise typer.BadParameter("give --model or --all-models, not both", param_hint="--all-models")
    lake = open_lake(ctx)
    kpi = lake.kpis.define(
        name,
        unit=unit,
        direction=direction,
        description=description,
        owner=owner,
        models=[] if all_models else (models or None),
    )
    follows = ", ".join(kpi.models) if kpi.models else "every model"
    stdout_console().print(
        f"KPI [bold]{escape(kpi.name)}[/] ({escape(kpi.unit or '')}, {kpi.direction}) follows "
        f"{escape(follows)}.",
        soft_wrap=True,
    )


@kpis_app.command("observe", cls=NegativeNumberArguments)
@reports_errors
def observe_kpi(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="KPI name.", show_default=False)],
    value: Annotated[float, typer.Argument(help="Observed value.", show_default=False)],
    at: AtOption = None,
    segment: Annotated[str | None, typer.Option("--segment", help="Slice, e.g. country=DE.")] = None,
    environment: Annotated[str | None, typer.Option("--env", "-e", help="Environment observed.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Where the value comes from.")] = None,
) -> None:
    """Record one observed value of a KPI (for many values, see `metalake kpis ingest`).

    A negative value is written as it is (`metalake kpis observe profit -3`), or after `--`.

    Example: metalake kpis observe conversion_rate 3.2 --at 2026-03-01T00:00:00Z --env production
    """
    from metalake.cli.output import stdout_console

    lake = open_lake(ctx)
    lake.kpis.observe(name, value, at=at, segment=segment, environment=environment, source=source)
    stdout_console().print(f"Recorded {name} = {value:g}.", soft_wrap=True, markup=False)


@kpis_app.command("ingest")
@reports_errors
def ingest_kpis(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON-lines file.", show_default=False)],
    file_format: Annotated[
        InputFormat | None, typer.Option("--format", help="File format. Default: from the extension.")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Default: the file name.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, recorded with the commit.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Default: the file's SHA-256, so a file is ingested once."),
    ] = None,
) -> None:
    """Record every observation in a file in one commit, all or nothing.

    Columns: kpi, value, observed_at, and optionally segment, environment, source.

    Example: metalake kpis ingest observations.csv
    """
    from rich.markup import escape

    from metalake.cli.output import stderr_console, stdout_console

    lake = open_lake(ctx)
    commit = lake.kpis.ingest(
        file,
        file_format=file_format,
        source=source,
        reason=reason,
        idempotency_key=idempotency_key,
    )
    if commit.deduplicated:
        stderr_console().print(
            f"Nothing written: {escape(str(file))} was already ingested (same idempotency key).",
            soft_wrap=True,
        )
        return
    stdout_console().print(
        f"Recorded {commit.rows:,} observation(s) from {escape(str(file))} (version {commit.version}).",
        soft_wrap=True,
    )


@kpis_app.command("list")
@reports_errors
def list_kpis(
    ctx: typer.Context, output_format: FileFormatOption = "table", output: OutputOption = None
) -> None:
    """List the KPIs: definition, models they follow, number of observations and the last value.

    Example: metalake kpis list
    """
    from metalake.cli.output import write_rows

    frame = open_lake(ctx).kpis.list()
    shown = frame.select(
        "kpi", "unit", "direction", "models", "owner", "observations", "last_observed_at", "last_value"
    )
    write_rows(
        frame,
        output_format=output_format,
        table=shown,
        caption=_rows(frame.height),
        empty="No KPIs defined. Define one with: metalake kpis define NAME --unit U --direction D",
        output=output,
        json_lines=True,
    )


@kpis_app.command("impact")
@reports_errors
def kpi_impact(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only deployments of this model.")
    ] = None,
    kpi: Annotated[str | None, typer.Option("--kpi", "-k", help="Only this KPI.")] = None,
    environment: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    window: Annotated[
        str, typer.Option("--window", "-w", help="Window before and after each deployment: 12h, 7d, 2w, ...")
    ] = "7d",
    unlabeled_environment: Annotated[
        str | None,
        typer.Option(
            "--unlabeled-env",
            metavar="ENVS",
            help="Environments (comma-separated) whose deployments observations without an environment count "
            "for, in this query only; '' for none. Default: the lake's production environments "
            "(`metalake kpis production-envs`).",
        ),
    ] = None,
    output_format: FileFormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Did the new model help? KPI mean before and after each deployment, with offline metrics and data quality.

    Before = [start - window, start) within what the deployment replaced, after = [start, start + window) cut
    at the deployment's end. Observations without an environment count for deployments to the lake's production
    environments only (`metalake kpis production-envs`). Below the table, a note says why a deployment has no
    observations on a side (the column `note` in csv and json).

    Example: metalake kpis impact --model churn --kpi conversion_rate --window 14d
    """
    from metalake.cli.output import stderr_console, write_rows

    lake = open_lake(ctx)
    frame = lake.kpis.impact(
        model,
        kpi,
        window=window,
        environment=environment,
        unlabeled_environment=LAKE_SETTING
        if unlabeled_environment is None
        else _comma_list(unlabeled_environment),
    )
    write_rows(
        frame,
        output_format=output_format,
        table=impact_summary(frame),
        caption=_rows(frame.height),
        empty="No deployment has a KPI to compare yet: record deployments with `metalake deploy record` and "
        "KPIs with `metalake kpis define` (a KPI without --model follows every model).",
        output=output,
        json_lines=True,
    )
    notes = impact_notes(frame) if output_format == "table" else []  # csv and json carry the `note` column
    if notes:
        console = stderr_console()
        console.print("Why some deployments lack data:", soft_wrap=True, markup=False)
        for note in notes:
            console.print(f"  {note}", soft_wrap=True, markup=False, highlight=False)


@kpis_app.command("production-envs")
@reports_errors
def production_environments(
    ctx: typer.Context,
    set_to: Annotated[
        str | None,
        typer.Option(
            "--set",
            metavar="ENVS",
            help="Store these environments (comma-separated) as the lake's production environments.",
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, recorded with the commit.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="WHEN", help="The list in force then: an ISO time or a snapshot name."
        ),
    ] = None,
    output_format: FormatOption = "table",
) -> None:
    """Show or set the production environments: observations without an environment count for deployments there.

    The list is kept in the lake (a recorded commit of `policies`, so every client uses it and `--as-of` shows
    an earlier one). Default: production, prod, prd, live.

    Example: metalake kpis production-envs --set production,main
    """
    import polars as pl

    from metalake.cli.output import stdout_console, write_rows
    from metalake.errors import MetalakeError

    console = stdout_console()
    lake = open_lake(ctx, writing=set_to is not None)
    if set_to is None:
        names = (lake.as_of(as_of) if as_of else lake).kpis.production_environments()
        if output_format == "table":  # a sentence, as `models at` answers
            console.print(f"Production environments: {', '.join(names)}", soft_wrap=True, markup=False)
            return
        write_rows(
            pl.DataFrame({"environment": list(names)}, schema={"environment": pl.String}),
            output_format=output_format,
            title="Production environments",
        )
        return
    if as_of:
        raise MetalakeError("--as-of shows the list in force then; it cannot be given with --set.")
    from metalake.core.tables import POLICIES_TABLE

    version = lake.version(POLICIES_TABLE)
    names = lake.kpis.set_production_environments(_comma_list(set_to), reason=reason)
    verb = "unchanged" if lake.version(POLICIES_TABLE) == version else "now"
    console.print(f"Production environments {verb}: {', '.join(names)}", soft_wrap=True, markup=False)


def impact_notes(frame: pl.DataFrame) -> list[str]:
    """The impact rows' notes as lines: which deployment, KPI and segment, and why a side has no observations."""
    lines = []
    for row in frame.filter(frame["note"].is_not_null()).iter_rows(named=True):
        segment = f" [{row['segment']}]" if row["segment"] is not None else ""
        deployment = f"{row['model']} v{row['version']} ({row['environment']})"
        lines.append(f"{deployment}, {row['kpi']}{segment}: {row['note']}")
    return list(dict.fromkeys(lines))


def impact_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """The impact frame as a person reads it: one line per deployment and KPI, verdict and evidence."""
    import polars as pl

    def metrics_text(value: Any) -> str | None:
        if not value:
            return None
        return ", ".join(f"{key}={number:.4g}" for key, number in value.items())

    verdict = (
        pl.when((pl.col("before_count") == 0) | (pl.col("after_count") == 0))
        .then(pl.lit("not enough data"))
        .when(pl.col("direction").is_null())
        .then(pl.lit("no direction"))
        .when(pl.col("change") == 0)
        .then(pl.lit("unchanged"))
        .when(pl.col("improved"))
        .then(pl.lit("better"))
        .otherwise(pl.lit("worse"))
    )
    summary = frame.select(
        pl.format("{} v{} ({})", "model", "version", "environment").alias("deployment"),
        "deployed_at",
        pl.col("kpi"),
        pl.col("segment"),
        pl.format("{} (n={})", pl.col("before_mean").round(4), "before_count").alias("before"),
        pl.format("{} (n={})", pl.col("after_mean").round(4), "after_count").alias("after"),
        pl.col("change").round(4),
        (pl.col("relative_change") * 100).round(2).alias("change_%"),
        verdict.alias("verdict"),
        pl.col("offline_metrics").map_elements(metrics_text, return_dtype=pl.String).alias("offline_metrics"),
        pl.col("training_data_ok"),
    )
    if (
        summary.get_column("segment").null_count() == summary.height
    ):  # no segments: a column of nulls says nothing
        summary = summary.drop("segment")
    return summary


# -- helpers ----------------------------------------------------------------------------------------------------


def _comma_list(text: str) -> list[str]:
    """`a, b` as ["a", "b"]; '' as an empty list."""
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _summary(deployment: Deployment) -> str:
    return f"{deployment.describe()} since {deployment.at.isoformat()}"


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    from rich.text import Text

    from metalake.cli.output import stderr_console

    console = stderr_console()
    for warning in caught:
        console.print(Text(f"Warning: {warning.message}", style="yellow"), soft_wrap=True)
