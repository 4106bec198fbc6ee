"""`metalake import ...`: bring metadata from other tools into the lake."""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Annotated

import typer

from metalake.cli.common import open_lake, reports_errors

import_app = typer.Typer(
    name="import", help="Import metadata from other tools (MLflow).", no_args_is_help=True
)


@import_app.command("mlflow")
@reports_errors
def import_mlflow_command(
    ctx: typer.Context,
    tracking_uri: Annotated[
        str,
        typer.Option(
            "--tracking-uri", "-t", help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://host:5000."
        ),
    ],
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Only this experiment (name or id); repeat for several."),
    ] = None,
    registry_uri: Annotated[
        str | None, typer.Option("--registry-uri", help="Model registry URI, if not the tracking URI.")
    ] = None,
) -> None:
    """Copy MLflow experiments, runs, params, tags, full metric histories, dataset inputs and registered models.

    Running it again adds only what is new (new runs, new points, changed statuses, new versions and aliases);
    a crashed import can simply be run again. Needs the mlflow extra: pip install 'metalake\\[mlflow]'.

    Example: metalake import mlflow --tracking-uri sqlite:///mlflow.db --experiment churn
    """
    from rich.progress import TaskID

    from metalake.cli.input_files import ingest_progress
    from metalake.cli.output import Section, write_sections
    from metalake.integrations.mlflow.importer import check_mlflow_source, import_mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    check_mlflow_source(tracking_uri, experiments=experiment or None, registry_uri=registry_uri)
    lake = open_lake(ctx)  # only now: a store that cannot be read leaves no new lake behind
    with ingest_progress() as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"Importing {stage}", total=total or None)
            progress.update(tasks[stage], completed=done, total=total or None)

        summary = import_mlflow(
            lake, tracking_uri, experiments=experiment or None, registry_uri=registry_uri, progress=report
        )
    rows = [(field.name.replace("_", " "), getattr(summary, field.name)) for field in fields(summary)]
    section = Section(
        columns=("what", "rows"), rows=rows, title=f"Imported from MLflow into {lake.uri}", right=("rows",)
    )
    nothing = "Nothing new: the lake already holds everything this MLflow store has."
    write_sections([section], notes=[nothing] if summary.rows_written == 0 else [])
