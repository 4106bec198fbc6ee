"""`metalake tables` and `metalake describe`: what the lake holds, and each table's contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metalake.cli.common import FormatOption, ShowFormatOption, open_lake, reports_errors

if TYPE_CHECKING:
    from metalake.lake import Lake


@reports_errors
def tables(
    ctx: typer.Context,
    rows: Annotated[
        bool,
        typer.Option("--rows", help="Also count rows (reads every data file's footer; slower on big lakes)."),
    ] = False,
    output_format: FormatOption = "table",
) -> None:
    """List the tables, with their current version, and the SQL views built on them.

    csv, json and jsonl give one row per table and view: name, kind (table or view), version, columns, rows
    (with --rows) and description.

    Example: metalake tables --rows
    """
    import polars as pl

    from metalake.cli.output import Section, frame_section, write_rows
    from metalake.core.sql import bundled_views

    lake = open_lake(ctx)
    records = []
    for spec in lake.tables():
        record: dict[str, object] = {
            "name": spec.name,
            "kind": "table",
            "version": lake.version(spec.name),
            "columns": len(spec.columns),
        }
        if rows:
            record["rows"] = _row_count(lake, spec.name)
        record["description"] = _first_sentence(spec.description)
        records.append(record)
    views = [
        {
            "name": view.name,
            "kind": "view",
            "description": view.documentation.splitlines()[0].removeprefix(f"{view.name}:").strip(),
        }
        for view in bundled_views().values()
    ]
    listing = pl.DataFrame(records + views, infer_schema_length=None)
    table_rows = pl.DataFrame(records).drop("kind").rename({"name": "table"})
    view_rows = pl.DataFrame(views).select(view="name", question="description")
    sections: list[Section] = [
        frame_section(table_rows, title=f"Tables in {lake.uri}"),
        frame_section(view_rows, title="Views (query them with metalake sql)"),
    ]
    write_rows(listing, output_format=output_format, table=sections)


def _row_count(lake: Lake, table: str) -> int:
    dataset = lake.arrow_dataset(table)
    return int(dataset.count_rows() if hasattr(dataset, "count_rows") else dataset.num_rows)


def _first_sentence(text: str) -> str:
    head, dot, _ = text.partition(". ")
    return head + dot.strip()


@reports_errors
def describe(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="Table or view name.")],
    output_format: ShowFormatOption = "table",
) -> None:
    """Show a table's contract: what a row means, its primary key, every column's type, checks and meaning.

    Views (metric_summary, runs_current, audit_log) show their documentation.

    json: {name, kind, description, primary_key, partition_by, columns}; csv and jsonl: the columns (column,
    type, nullable, checks, primary_key, description). A view gives name, kind and documentation.

    Example: metalake describe metrics
    """
    import polars as pl

    from metalake.cli.output import Section, frame_section, write_rows
    from metalake.core.catalog import describe_columns
    from metalake.core.sql import bundled_views

    lake = open_lake(ctx)
    views = bundled_views()
    if table in views and table not in {spec.name for spec in lake.tables()}:
        documentation = views[table].documentation
        view = {"name": table, "kind": "view", "documentation": documentation}
        write_rows(
            pl.DataFrame([view]),
            output_format=output_format,
            table=[Section(title=f"View {table}", lines=[documentation])],
            document=view,
        )
        return
    spec = lake.spec(table)
    columns = list(describe_columns(spec))
    frame = pl.DataFrame(
        columns,
        schema={
            "column": pl.String,
            "type": pl.String,
            "nullable": pl.Boolean,
            "checks": pl.String,
            "primary_key": pl.Boolean,
            "description": pl.String,
        },
    )
    lines = [spec.description, f"Primary key: {', '.join(spec.primary_key) or '(none)'}"]
    if spec.partition_by:
        lines.append(f"Partitioned by: {', '.join(spec.partition_by)}")
    shown = frame.select(
        "column",
        "type",
        pl.when("nullable").then(pl.lit("yes")).otherwise(pl.lit("no")).alias("nullable"),
        "checks",
        "description",
    )
    contract = {
        "name": spec.name,
        "kind": "table",
        "description": spec.description,
        "primary_key": list(spec.primary_key),
        "partition_by": list(spec.partition_by),
        "columns": columns,
    }
    sections = [
        Section(title=f"Table {spec.name}", lines=lines),
        frame_section(shown, value_styles={"column": dict.fromkeys(spec.primary_key, "bold")}),
    ]
    write_rows(frame, output_format=output_format, table=sections, document=contract)
