"""`metalake lineage ...` and `metalake serve`: ingest OpenLineage events, print lineage trees, run the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from metalake.cli.common import TABLE_HELP, clamp_count, open_lake, reports_errors

if TYPE_CHECKING:
    import polars as pl

    from metalake.cli.output import TreeNode
    from metalake.lake import Lake
    from metalake.lineage.lineage import Direction
    from metalake.server.auth import AuthMode

LineageFormat = Literal["tree", "table", "csv", "json", "jsonl"]

lineage_app = typer.Typer(
    name="lineage",
    help="Pipelines and data lineage: ingest OpenLineage events, walk the graph.",
    no_args_is_help=True,
)


@lineage_app.command("ingest")
@reports_errors
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSONL file of OpenLineage events, one per line.")],
) -> None:
    """Store OpenLineage events from a file (e.g. written by the openlineage FileTransport).

    Every line is checked before anything is written; events already stored are skipped.

    Example: metalake lineage ingest events.jsonl
    """
    import time

    from metalake.cli.output import stdout_console
    from metalake.lineage.lineage import event_file

    started = time.perf_counter()
    result = open_lake(ctx, before_creating=lambda: event_file(file)).lineage.ingest_file(file)
    seconds = time.perf_counter() - started
    stdout_console().print(
        f"Ingested {result.new} new event(s) of {result.received} ({result.duplicates} already stored) in "
        f"{seconds:.2f}s: {result.pipeline_runs} run event(s), {result.edges} edge(s), "
        f"{result.dataset_versions} new dataset version(s), {result.validations} data-quality result set(s).",
        soft_wrap=True,
        markup=False,
    )


@lineage_app.command("show")
@reports_errors
def show(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Argument(
            help="dataset:NAMESPACE/NAME (metalake: dataset:metalake/NAME), job:NAMESPACE/NAME, run:ID (a "
            "unique prefix of a metalake run's id will do), model:NAME/VERSION or deployment:ENV/ID."
        ),
    ],
    upstream: Annotated[bool, typer.Option("--upstream", help="What the node comes from (default).")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="What comes from the node.")] = False,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, callback=clamp_count, help="At most N edges away.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", metavar="WHEN", help="The graph as it was: an ISO time or a snapshot name."),
    ] = None,
    output_format: Annotated[
        LineageFormat,
        typer.Option(
            "--format",
            "-f",
            help="tree (Rich in a terminal; piped: one node per line, indented two spaces a level), or the "
            f"edges walked: {TABLE_HELP}, csv, json (one array), jsonl (one object per line).",
        ),
    ] = "tree",
) -> None:
    """Print the lineage of a node as a tree, upstream (default) or downstream.

    --format table, csv, json and jsonl give the edges walked, nearest first, with the columns of
    lake.lineage.walk: depth, source_node, target_node, edge_type, origin, runs, last_run_id, source_version,
    target_version, last_seen.

    Example: metalake lineage show model:churn/3 --upstream --depth 6

    Example: metalake lineage show dataset:metalake/train --format csv
    """
    from metalake.cli.output import stdout_console, write_rows, write_tree
    from metalake.errors import LineageError

    if upstream and downstream:
        raise LineageError("Choose one of --upstream and --downstream.")
    lake = open_lake(ctx)
    if as_of:
        lake = lake.as_of(as_of)
    direction: Direction = "downstream" if downstream else "upstream"
    if node.startswith("run:"):
        node = "run:" + _whole_run_id(lake, node.removeprefix("run:"))
    edges = lake.lineage.walk(node, direction, depth)
    nothing = f"No {direction} lineage for {node}."
    if output_format != "tree":
        write_rows(
            edges, output_format=output_format, title=f"Lineage of {node} ({direction})", empty=nothing
        )
    elif edges.is_empty():
        stdout_console().print(nothing, markup=False, soft_wrap=True)
    else:
        write_tree(lineage_tree(node, edges, direction))


def _whole_run_id(lake: Lake, run_id: str) -> str:
    """A metalake run's whole id from a unique prefix; other run ids (OpenLineage's) stay as given."""
    from metalake.errors import RunNotFound

    try:
        return lake.runs.resolve_id(run_id)
    except RunNotFound:
        return run_id


def lineage_tree(node: str, edges: pl.DataFrame, direction: str) -> TreeNode:
    """Edges of a walk as a tree; a node reached again is shown once more, marked, without its branches."""
    from metalake.cli.output import TreeNode

    here, there = (
        ("target_node", "source_node") if direction == "upstream" else ("source_node", "target_node")
    )
    children: dict[str, list[dict[str, Any]]] = {}
    for edge in edges.iter_rows(named=True):
        children.setdefault(edge[here], []).append(edge)
    root = TreeNode(node, style="bold")
    shown: set[str] = {node}

    def grow(branch: TreeNode, parent: str) -> None:
        for edge in children.get(parent, []):
            child = edge[there]
            label = TreeNode(child, style="bold" if child.startswith(("model:", "deployment:")) else "")
            version = edge["source_version"] if direction == "upstream" else edge["target_version"]
            label.details.append((f"  {edge['edge_type']}", "dim"))
            if version:
                label.details.append((f" v{version}", "cyan"))
            branch.children.append(label)
            if child in shown:
                label.details.append((" (shown above)", "dim"))
                continue
            shown.add(child)
            grow(label, child)

    grow(root, node)
    return root


@reports_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="METALAKE_API_TOKEN",
            show_default=False,
            help="One shared token instead of the lake's principals: requests must carry `Authorization: "
            "Bearer TOKEN`, and every holder may do everything. Default: $METALAKE_API_TOKEN.",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without authentication: every request may do everything. Only on a loopback --host.",
        ),
    ] = False,
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            show_default=False,
            help="Folder where accepted events wait for their commit. Default: ~/.cache/metalake/lineage-spool/.",
        ),
    ] = None,
    ack: Annotated[
        str,
        typer.Option(
            "--ack",
            help="When to answer 201: 'spooled' (event in the spool file) or 'committed' (after its group commit).",
        ),
    ] = "spooled",
    commit_interval: Annotated[
        float,
        typer.Option(
            "--commit-interval",
            min=0.001,
            max=3600,
            help="Seconds between group commits of accepted events and of MLflow logging calls (which answer "
            "once journaled): fewer, larger commits leave the CPU to the requests.",
        ),
    ] = 0.5,
    data_roots: Annotated[
        list[Path] | None,
        typer.Option(
            "--data-root",
            show_default=False,
            help="A folder the server may read data from when a client registers a dataset version by path "
            "(repeat for several). Default: none, object storage only.",
        ),
    ] = None,
) -> None:
    """Serve the metalake REST API (/api/v1/..., docs at /docs), MLflow's API and the OpenLineage endpoint.

    Every GET takes `as_of`, a time or a snapshot name. POST /api/v1/sql runs one read-only SELECT.

    MLflow clients log into the lake unchanged: set MLFLOW_TRACKING_URI=http://HOST:PORT (tracking, model
    registry, logged models and artifacts, stored in the lake).

    POST /api/v1/lineage takes OpenLineage events (the openlineage HttpTransport).

    Requests carry a token of one of the lake's principals (`metalake access init` makes the first admin and
    its token; `metalake access token create NAME` makes more), and each route is decided by their grants.
    `--token` serves with one shared token instead, `--no-auth` without any (loopback only).

    Example: metalake --lake ./lake serve --port 5000
    """
    from metalake.errors import AccessError, LineageError
    from metalake.server.app import import_server_libraries, is_loopback
    from metalake.server.app import serve as run_server

    import_server_libraries()
    if ack not in ("spooled", "committed"):
        raise LineageError(f"--ack must be 'spooled' or 'committed', not {ack!r}.")
    if no_auth and token:
        raise AccessError("--no-auth and --token exclude each other: drop one of them.")
    if no_auth and not is_loopback(host):
        raise AccessError(
            f"--no-auth serves on a loopback address only (127.0.0.1, ::1, localhost), not {host!r}: anyone "
            "who reaches it could do everything. Serve with tokens (`metalake access init`) to listen there."
        )
    lake = open_lake(ctx)
    auth: AuthMode = "none" if no_auth else ("token" if token else "lake")
    if auth == "lake" and lake.access.principals().is_empty():
        raise AccessError(
            f"The lake at {lake.uri} has no principals yet, so no request could be let in. Run `metalake access "
            "init` to create the first admin and its token, or serve with --no-auth (loopback only)."
        )
    typer.echo(f"metalake serving {lake.uri} on http://{host}:{port} (API docs at /docs)", err=True)
    if auth == "none":
        typer.echo(
            "authentication is off (--no-auth): every request may do everything; listening on loopback only",
            err=True,
        )
    run_server(
        lake,
        host=host,
        port=port,
        spool_dir=spool,
        auth=auth,
        token=token,
        ack="committed" if ack == "committed" else "spooled",
        commit_interval=commit_interval,
        data_roots=tuple(data_roots or ()),
    )
