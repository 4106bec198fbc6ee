"""`metalake runs ...`: list, show and compare training runs in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from metalake.cli.common import cli_state, reports_errors

if TYPE_CHECKING:
    from rich.table import Table

runs_app = typer.Typer(name="runs", help="List, show and compare training runs.", no_args_is_help=True)

SUMMARY_COLUMNS = ["run_id", "experiment", "name", "status", "start_time", "duration_s"]
MAX_EXTRA = 6


@runs_app.command("list")
@reports_errors
def list_runs(
    ctx: typer.Context,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", "-w", help="Filter, e.g. \"params.depth = '6' and metrics.val_auc > 0.8\"."),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.val_auc desc'. Default: newest first."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N runs.")] = 50,
) -> None:
    """List runs with their params and the last value of each metric.

    Filters use params.KEY, metrics.KEY (also metrics.KEY.min/.max/.mean/.count), tags.KEY and run attributes
    (status, name, experiment, ...) with =, !=, <, >, AND, OR, NOT, IN (...), IS [NOT] NULL, LIKE.

    Example: metalake runs list -e churn -w "metrics.val_auc > 0.8" -o "metrics.val_auc desc"
    """
    import polars as pl

    from metalake.cli.output import frame_table, stdout_console

    lake = cli_state(ctx).connect()
    runs = lake.runs.search(experiment=experiment, where=where, order_by=order_by, limit=limit)
    # Params that are the same for every listed run say nothing about the differences: leave them out.
    varying = [c for c in runs.columns if c.startswith("params.") and runs.get_column(c).n_unique() > 1]
    extra = sorted(varying) + sorted(c for c in runs.columns if c.startswith("metrics."))
    shown = runs.select(
        pl.col("run_id").str.slice(0, 12),
        *[c for c in SUMMARY_COLUMNS[1:] if c in runs.columns],
        *extra[:MAX_EXTRA],
    )
    console = stdout_console()
    console.print(frame_table(shown, title=f"{runs.height} run(s)"))
    if len(extra) > MAX_EXTRA:
        hidden = ", ".join(extra[MAX_EXTRA:])
        console.print(
            f"Not shown: {hidden}. See every field with `metalake runs show RUN_ID`.", soft_wrap=True
        )


@runs_app.command("show")
@reports_errors
def show_run(ctx: typer.Context, run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Show one run: state and context, params, tags, metric summaries, inputs and artifacts.

    Example: metalake runs show 0193a7c2e4f87b6e9d1c2a3b4c5d6e7f
    """
    from rich.table import Table

    from metalake.cli.output import cell, stdout_console

    details = cli_state(ctx).connect().runs.get(run_id)
    console = stdout_console()
    info = Table(title=f"Run {run_id}", show_header=False)
    for key, value in details.info.items():
        if value is not None and key not in ("run_id",):
            info.add_row(key, cell(value))
    console.print(info)
    for title, mapping in (("Params", details.params), ("Tags", details.tags)):
        if mapping:
            table = Table(title=title)
            table.add_column("key")
            table.add_column("value")
            for key in sorted(mapping):
                table.add_row(key, cell(mapping[key]))
            console.print(table)
    if details.metrics:
        metrics = Table(title="Metrics")
        for column in ("key", "last", "step", "min", "max", "mean", "count"):
            metrics.add_column(column, justify="left" if column == "key" else "right")
        for key, summary in details.metrics.items():
            metrics.add_row(
                key,
                *(
                    cell(summary[name])
                    for name in ("last_value", "last_step", "min_value", "max_value", "mean_value", "count")
                ),
            )
        console.print(metrics)
    for title, rows in (("Inputs", details.inputs), ("Artifacts", details.artifacts)):
        if rows:
            console.print(_rows_table(title, rows))


@runs_app.command("compare")
@reports_errors
def compare_runs(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
) -> None:
    """Show runs side by side: params, tags and the last value of each metric; differences are highlighted.

    Example: metalake runs compare 0193a7c2... 0193a7c3...
    """
    from metalake.cli.output import stdout_console
    from metalake.errors import MetalakeError

    if len(run_ids) < 2:
        raise MetalakeError("Give at least two run ids to compare.")
    lake = cli_state(ctx).connect()
    runs = lake.runs.search(where="run_id in (" + ", ".join(_literal(r) for r in run_ids) + ")")
    missing = [run_id for run_id in run_ids if run_id not in set(runs.get_column("run_id").to_list())]
    if missing:
        raise MetalakeError(
            f"No run(s) {', '.join(missing)} in this lake; list runs with `metalake runs list`."
        )
    ordered = {row["run_id"]: row for row in runs.to_dicts()}
    stdout_console().print(comparison_table([ordered[run_id] for run_id in run_ids]))


def comparison_table(runs: list[dict[str, Any]]) -> Table:
    """One row per field, one column per run; fields whose values differ are shown in bold yellow."""
    from rich.table import Table
    from rich.text import Text

    from metalake.cli.output import cell

    table = Table(title="Run comparison (differences in yellow)")
    table.add_column("field", style="bold")
    for run in runs:
        table.add_column(str(run.get("name") or run["run_id"][:12]))
    fields = ["run_id", "experiment", "status", "start_time", "duration_s"]
    fields += sorted({key for run in runs for key in run if key.startswith(("params.", "tags.", "metrics."))})
    for field in fields:
        values = [run.get(field) for run in runs]
        differs = len({repr(value) for value in values}) > 1
        rendered = [cell(value) for value in values]
        if differs:
            rendered = [Text(text.plain, style="bold yellow") for text in rendered]
        table.add_row(Text(field, style="bold yellow" if differs else ""), *rendered)
    return table


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    from metalake.cli.output import cell

    table = Table(title=title)
    columns = [c for c in rows[0] if c not in ("recorded_at", "recorded_by")]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell(row[c]) for c in columns))
    return table


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
