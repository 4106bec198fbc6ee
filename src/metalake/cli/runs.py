"""`metalake runs ...`: list, show and compare training runs in the terminal."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metalake.cli.common import (
    FormatOption,
    ShowFormatOption,
    clamp_count,
    lake_option,
    open_lake,
    reports_errors,
)

if TYPE_CHECKING:
    import polars as pl

    from metalake.cli.output import Section
    from metalake.tracking.search import RunDetails

runs_app = typer.Typer(name="runs", help="List, show and compare training runs.", no_args_is_help=True)

SUMMARY_COLUMNS = ["run_id", "experiment", "name", "status", "start_time", "duration_s"]
MAX_EXTRA = 6
METRIC_SUMMARY = {
    "last": "last_value", "step": "last_step", "min": "min_value", "max": "max_value", "mean": "mean_value",
    "count": "count",
}  # fmt: skip


@runs_app.command("list")
@reports_errors
def list_runs(
    ctx: typer.Context,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="Filter, e.g. \"params.depth = '6' and metrics.val_auc > 0.8\"; with AND, OR, NOT, "
            "parentheses, IN (...), BETWEEN x AND y, LIKE and IS [NOT] NULL.",
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.val_auc desc'. Default: newest first."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, callback=clamp_count, help="Show at most N runs.")
    ] = 50,
    output_format: FormatOption = "table",
) -> None:
    """List runs with their params and the last value of each metric.

    Filters use params.KEY, metrics.KEY (also metrics.KEY.min/.max/.mean/.count), tags.KEY and run attributes
    (status, name, experiment, ...) with =, !=, <, >, AND, OR, NOT, IN (...), IS [NOT] NULL, LIKE. Quote a key
    to be exact: metrics.`loss`.min is the minimum of loss, metrics.`loss.min` a metric named loss.min.

    The table shows the columns the filter and the order name, then the params that differ and the first
    metrics; in a terminal run ids are cut to a prefix that `runs show` accepts, piped they are whole. csv, json
    and jsonl give every column of lake.runs.search: run attributes (run_id whole), then params.KEY, tags.KEY,
    metrics.KEY, keys sorted, then the metric ranges the filter or order named, e.g. min(metrics.loss).

    Example: metalake runs list -e churn -w "metrics.val_auc > 0.8" -o "metrics.val_auc desc"
    """
    from metalake.cli.output import write_rows
    from metalake.tracking.search import referenced_columns

    lake = open_lake(ctx)
    runs = stable_columns(
        lake.runs.search(experiment=experiment, where=where, order_by=order_by, limit=limit)
    )
    # What the listing filters and sorts by is always shown, first; of the rest, params that are the same for
    # every listed run say nothing about the differences: leave them out.
    asked = [c for c in referenced_columns(where, order_by, runs.columns) if c not in SUMMARY_COLUMNS]
    varying = [c for c in runs.columns if c.startswith("params.") and runs.get_column(c).n_unique() > 1]
    extra = [
        c
        for c in sorted(varying) + sorted(c for c in runs.columns if c.startswith("metrics."))
        if c not in asked
    ]
    room = max(MAX_EXTRA - len(asked), 0)
    shown = runs.select(*[c for c in SUMMARY_COLUMNS if c in runs.columns], *asked, *extra[:room])
    notes = []
    if len(extra) > room:
        notes.append(
            f"Not shown: {', '.join(extra[room:])}. See every field with `metalake runs show RUN_ID`."
        )
    write_rows(
        runs,
        output_format=output_format,
        table=shown,
        title=f"{runs.height} run(s)",
        cut={"run_id": unique_prefix_length(runs.get_column("run_id").to_list())},
        notes=notes,
    )


def unique_prefix_length(run_ids: list[str], *, shortest: int = 12) -> int:
    """How many leading characters tell the listed ids apart (at least `shortest`): what a terminal shows of
    each id, and what `runs show` then accepts. Ids started in the same millisecond share 12 characters."""
    ordered = sorted(run_ids)
    shared = [_shared_prefix(before, after) for before, after in itertools.pairwise(ordered)]
    return max([shortest, *(length + 1 for length in shared)])


def _shared_prefix(first: str, second: str) -> int:
    return next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), len(first))


@runs_app.command("show")
@reports_errors
def show_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id, or any unique prefix of it.")],
    output_format: ShowFormatOption = "table",
) -> None:
    """Show one run: state and context, params, tags, metric summaries, inputs and artifacts.

    json: what lake.runs.get returns, {run_id, info, params, tags, metrics, inputs, artifacts}. csv and jsonl:
    the run as one row, its info fields then params.KEY, tags.KEY and metrics.KEY (last value), keys sorted.

    The id may be shortened to any prefix that only this run's id has, e.g. what `runs list` shows.

    Example: metalake runs show 0193a7c2e4f8
    """
    import polars as pl

    from metalake.cli.output import write_rows

    details = open_lake(ctx).runs.get(run_id)
    row = {
        **details.info,
        **{f"params.{key}": value for key, value in sorted(details.params.items())},
        **{f"tags.{key}": value for key, value in sorted(details.tags.items())},
        **{f"metrics.{key}": summary["last_value"] for key, summary in sorted(details.metrics.items())},
    }
    write_rows(
        pl.DataFrame([row]), output_format=output_format, table=run_sections(details), document=details
    )


def stable_columns(runs: pl.DataFrame) -> pl.DataFrame:
    """Run attributes, then params.KEY, tags.KEY, metrics.KEY and the metric ranges a search kept
    (`min(metrics.KEY)`, ...) each sorted, so that a CSV header is the same from one call to the next (the search
    frame's order of keys may vary)."""
    from metalake.tracking.search import is_summary_column

    summaries = sorted(c for c in runs.columns if is_summary_column(c))
    keyed = [c for c in runs.columns if c.startswith(("params.", "tags.", "metrics."))]
    attributes = [c for c in runs.columns if c not in keyed and c not in summaries]
    by_kind = [
        sorted(c for c in keyed if c.startswith(prefix)) for prefix in ("params.", "tags.", "metrics.")
    ]
    return runs.select(attributes + [c for group in by_kind for c in group] + summaries)


def run_sections(details: RunDetails) -> list[Section]:
    """What `runs show` draws: the run's fields, then params, tags, metrics, inputs and artifacts if any."""
    from metalake.cli.output import Section, fields_section

    info = {key: value for key, value in details.info.items() if key != "run_id"}
    sections = [fields_section(info, title=f"Run {details.run_id}")]
    for title, mapping in (("Params", details.params), ("Tags", details.tags)):
        if mapping:
            rows = [(key, mapping[key]) for key in sorted(mapping)]
            sections.append(Section(columns=("key", "value"), rows=rows, title=title))
    if details.metrics:
        rows = [
            (key, *(summary[name] for name in METRIC_SUMMARY.values()))
            for key, summary in details.metrics.items()
        ]
        columns = ("key", *METRIC_SUMMARY)
        sections.append(Section(columns=columns, rows=rows, title="Metrics", right=columns[1:]))
    for title, records in (("Inputs", details.inputs), ("Artifacts", details.artifacts)):
        if records:
            columns = tuple(c for c in records[0] if c not in ("recorded_at", "recorded_by"))
            rows = [tuple(record[c] for c in columns) for record in records]
            sections.append(Section(columns=columns, rows=rows, title=title))
    return sections


@runs_app.command("compare")
@reports_errors
def compare_runs(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or unique prefixes).")],
    output_format: FormatOption = "table",
) -> None:
    """Show runs side by side: params, tags and the last value of each metric; differences are highlighted.

    The table has one row per field and one column per run; csv, json and jsonl give one row per run, in the
    order given, with the columns of lake.runs.search.

    Example: metalake runs compare 0193a7c2... 0193a7c3...
    """
    import polars as pl

    from metalake.cli.output import write_rows
    from metalake.errors import MetalakeError

    if len(run_ids) < 2:
        raise MetalakeError("Give at least two run ids to compare.")
    lake = open_lake(ctx)
    run_ids = [lake.runs.resolve_id(run_id) for run_id in run_ids]
    runs = stable_columns(
        lake.runs.search(where="run_id in (" + ", ".join(_literal(r) for r in run_ids) + ")")
    )
    ordered = runs.join(pl.DataFrame({"run_id": run_ids}).with_row_index("_order"), on="run_id")
    ordered = ordered.sort("_order").drop("_order")
    write_rows(ordered, output_format=output_format, table=[comparison_section(ordered.to_dicts())])


def comparison_section(runs: list[dict[str, Any]]) -> Section:
    """One row per field, one column per run; fields whose values differ are shown in bold yellow."""
    from metalake.cli.output import Section

    fields = ["run_id", "experiment", "status", "start_time", "duration_s"]
    fields += sorted({key for run in runs for key in run if key.startswith(("params.", "tags.", "metrics."))})
    rows, styles = [], []
    for name in fields:
        values = [run.get(name) for run in runs]
        rows.append((name, *values))
        styles.append("bold yellow" if len({repr(value) for value in values}) > 1 else None)
    return Section(
        columns=("field", *(str(run.get("name") or run["run_id"][:12]) for run in runs)),
        rows=rows,
        title="Run comparison (differences in yellow)",
        column_styles={"field": "bold"},
        row_styles=styles,
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@reports_errors
def sync(
    ctx: typer.Context,
    lake: Annotated[
        str | None,
        lake_option("The lake to sync. Default: the global --lake, else $METALAKE_URI, else ./lake."),
    ] = None,
) -> None:
    """Commit the run flushes that ended processes left in this machine's local journal for the lake.

    Every run flush is written to the journal (METALAKE_JOURNAL, default ~/.cache/metalake/journal) first.

    What a killed job or an offline one (METALAKE_OFFLINE=1) left there is committed now, under its original
    idempotency keys: nothing is written twice. metalake.connect does it too; sync says what it committed.

    Journals of processes still running are left to them. Exit 1 if a flush could not be committed (it stays
    in the journal for the next sync).

    Example: metalake sync --lake s3://ml/lake
    """
    import dataclasses

    from rich.markup import escape

    from metalake.cli.common import cli_state
    from metalake.cli.output import print_error, stdout_console

    if lake is not None:
        root = ctx.find_root()
        root.obj = dataclasses.replace(cli_state(ctx), lake_uri=lake, lake_on_command_line=True)
    opened = open_lake(ctx)
    report = opened.runs.sync()
    if opened.replayed_at_connect is not None:
        report = opened.replayed_at_connect.plus(report)
    console = stdout_console()
    console.print(escape(report.summary()), soft_wrap=True)
    for uri, count in sorted(report.other_lakes.items()):
        console.print(
            escape(f"The journal also holds {count} segment(s) for {uri}: metalake sync --lake {uri}"),
            soft_wrap=True,
        )
    if report.failed:
        print_error(f"{report.failed} flush(es) could not be committed; run metalake sync again later.")
        raise typer.Exit(1)
