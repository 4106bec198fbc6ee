"""Integration: copy an MLflow tracking store and model registry into the lake, incrementally and idempotently."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from metalake.core.vocabulary import RUN_STATUSES
from metalake.errors import MetalakeError, ReadOnlyLakeError
from metalake.integrations.mlflow.common import (
    EPOCH,
    ONE_MICROSECOND,
    SEARCH_PAGE_SIZE,
    SOURCE,
    ImportSummary,
    Progress,
    Writer,
    changed_rows,
    latest_rows,
    ms,
    optional_text,
    paged,
    tags_json,
    typed_frame,
)
from metalake.tracking.summaries import summarize_frame

if TYPE_CHECKING:
    from metalake.lake import Lake

# Runs whose facts share one commit per table; bounds memory on very large stores.
RUNS_PER_CHUNK = 5_000
# Runs whose metric histories are read together (one query on a SQL store); also the progress step.
RUNS_PER_METRIC_QUERY = 200
SUMMARY_FLUSH_PREFIX = "mlflow-import:"

MLFLOW_RUN_STATUSES = {status.upper(): status for status in RUN_STATUSES}

TIMESTAMP = pl.Datetime("us", "UTC")
METRIC_KEY = ["run_id", "key", "step", "timestamp"]
MLFLOW_POINT = {
    "run_id": pl.String,
    "key": pl.String,
    "value": pl.Float64,
    "step": pl.Int64,
    "timestamp": pl.Int64,
    "is_nan": pl.Boolean,
}
INPUT_COLUMNS = ["run_id", "dataset", "version", "path", "context", "digest"]
# What a runs event records about a run; a change to any of them in MLflow becomes a new event.
RUN_STATE = [
    *("experiment", "name", "status", "start_time", "end_time", "parent_run_id", "user", "command"),
    *("git_commit", "git_branch", "source"),
]
RUN_COLUMNS = ["event_id", "run_id", *RUN_STATE, "event_time"]
EXPERIMENT_COLUMNS = ["experiment", "description", "tags", "artifact_location", "source"]


def import_mlflow(
    lake: Lake,
    tracking_uri: str,
    *,
    experiments: Sequence[str] | None = None,
    registry_uri: str | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Copy into the lake what an MLflow store holds and the lake lacks: experiments, runs, their params,
    tags, full metric histories and dataset inputs, then registered models, versions, aliases, tags and stages.

    `experiments` limits the import to these experiment names (or ids), and the registry to the versions
    their runs produced. Each table gets one commit per chunk of runs, with a key derived from its content:
    facts before run events, so no reader sees a finished run without its metrics; a crashed or repeated
    import completes the lake without writing any row twice. `progress(stage, done, total)` follows the read.
    """
    mlflow = _require_mlflow()
    from mlflow.exceptions import MlflowException

    if lake.read_only:
        raise ReadOnlyLakeError(
            "Import into the live lake returned by metalake.connect(), not lake.as_of(...)."
        )
    _check_local_store(tracking_uri)
    report = progress or _no_progress
    summary = ImportSummary()
    writer = Writer(lake, reason=f"import from MLflow at {_redact(tracking_uri)}")
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        chosen = _select_experiments(client, experiments)
        report("experiments", 0, len(chosen))
        summary.experiments = writer.append("experiments", *_changed_experiments(lake, chosen))
        report("experiments", len(chosen), len(chosen))
        names = {str(experiment.experiment_id): str(experiment.name) for experiment in chosen}
        runs = _list_runs(client, list(names))
        summary.runs_seen = len(runs)
        report("runs", 0, len(runs))
        for start in range(0, len(runs), RUNS_PER_CHUNK):
            chunk = runs[start : start + RUNS_PER_CHUNK]

            def report_runs(done: int, start: int = start) -> None:
                report("runs", start + done, len(runs))

            _import_runs(lake, writer, client, chunk, names, summary, report_runs)
        run_ids = None if experiments is None else {str(run.info.run_id) for run in runs}
        from metalake.integrations.mlflow.registry import import_registry

        import_registry(lake, writer, client, run_ids, summary, report)
    except MlflowException as error:
        raise MetalakeError(
            f"MLflow at {_redact(tracking_uri)} could not be read: {error.message}. "
            "Nothing further was imported; fix the cause and run the import again to complete it."
        ) from error
    return summary


def check_mlflow_source(
    tracking_uri: str, *, experiments: Sequence[str] | None = None, registry_uri: str | None = None
) -> None:
    """Check, before any lake is opened or created, that the MLflow store exists and holds the experiments asked.

    The CLI calls it first so that a failed import leaves no new, empty lake behind.
    """
    mlflow = _require_mlflow()
    from mlflow.exceptions import MlflowException

    _check_local_store(tracking_uri)
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        _select_experiments(client, experiments)
    except MlflowException as error:
        raise MetalakeError(
            f"MLflow at {_redact(tracking_uri)} could not be read: {error.message}. Nothing was imported."
        ) from error


def _require_mlflow() -> Any:
    try:
        import mlflow
        import mlflow.tracking
    except ImportError as error:
        raise MetalakeError(
            "Importing from MLflow needs the mlflow package: pip install 'metalake[mlflow]'"
        ) from error
    return mlflow


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def _check_local_store(tracking_uri: str) -> None:
    """MLflow silently creates an empty store at a mistyped local path; refuse instead of importing nothing."""
    parts = urlsplit(tracking_uri)
    if parts.scheme == "sqlite" and tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :].split("?", 1)[0])
    elif parts.scheme == "file" or (not parts.scheme and tracking_uri != "databricks"):
        path = Path(parts.path if parts.scheme == "file" else tracking_uri)
    else:
        return
    if not path.exists():
        raise MetalakeError(
            f"No MLflow store at {path}. Give the tracking URI of an existing store, e.g. "
            "sqlite:///mlflow.db, a ./mlruns folder or http://mlflow-server:5000."
        )


def _redact(uri: str) -> str:
    """The URI without a user name or password, fit for commit metadata and messages."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# -- experiments --------------------------------------------------------------------------------------------


def _select_experiments(client: Any, wanted: Sequence[str] | None) -> list[Any]:
    from mlflow.entities import ViewType

    found = paged(client.search_experiments, view_type=ViewType.ACTIVE_ONLY, max_results=SEARCH_PAGE_SIZE)
    if wanted is None:
        return found
    asked = set(wanted)
    chosen = [e for e in found if e.name in asked or str(e.experiment_id) in asked]
    unknown = asked - {e.name for e in chosen} - {str(e.experiment_id) for e in chosen}
    if unknown:
        known = ", ".join(sorted(str(e.name) for e in found)) or "none"
        raise MetalakeError(
            f"No active MLflow experiment named {', '.join(map(repr, sorted(unknown)))}. "
            f"Experiments in this store: {known}."
        )
    return chosen


def _changed_experiments(lake: Lake, chosen: list[Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Experiments new to the lake, or whose description, tags or artifact location changed in MLflow."""
    current = typed_frame(
        lake,
        "experiments",
        [
            {
                "experiment": experiment.name,
                "description": optional_text(experiment.tags.get("mlflow.note.content")),
                "tags": tags_json(experiment.tags),
                "artifact_location": optional_text(experiment.artifact_location),
                "source": f"mlflow:{experiment.experiment_id}",
            }
            for experiment in chosen
        ],
        EXPERIMENT_COLUMNS,
    )
    names = pl.col("experiment").is_in([str(experiment.name) for experiment in chosen])
    return changed_rows(lake, "experiments", current, ["experiment"], names)


# -- runs and their facts -----------------------------------------------------------------------------------


def _list_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    """Every active run of the experiments, oldest first, so chunks stay stable while MLflow gains runs."""
    from mlflow.entities import ViewType

    if not experiment_ids:
        return []
    return paged(
        client.search_runs,
        experiment_ids,
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=SEARCH_PAGE_SIZE,
        order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
    )


def _import_runs(
    lake: Lake,
    writer: Writer,
    client: Any,
    runs: list[Any],
    experiment_names: Mapping[str, str],
    summary: ImportSummary,
    report_runs: Callable[[int], None],
) -> None:
    """Read one chunk of runs from MLflow, keep what the lake lacks, and write it: facts first, events last."""
    in_chunk = pl.col("run_id").is_in([str(run.info.run_id) for run in runs])

    params = typed_frame(lake, "params", _key_values(runs, "params"), ["run_id", "key", "value"]).join(
        lake.read("params", columns=["run_id", "key"], where=in_chunk), on=["run_id", "key"], how="anti"
    )
    tags = typed_frame(lake, "run_tags", _key_values(runs, "tags"), ["run_id", "key", "value"])
    tags, replaced_tags = changed_rows(lake, "run_tags", tags, ["run_id", "key"], in_chunk)
    inputs = typed_frame(lake, "run_inputs", _dataset_inputs(runs), INPUT_COLUMNS).join(
        lake.read("run_inputs", columns=INPUT_COLUMNS, where=in_chunk),
        on=INPUT_COLUMNS,
        how="anti",
        nulls_equal=True,
    )

    points, skipped = _metric_history(client, runs, report_runs)
    known_points = lake.read("metrics", columns=[*METRIC_KEY, "value", "recorded_at"], where=in_chunk)
    points = points.join(known_points, on=METRIC_KEY, how="anti").sort(METRIC_KEY)
    known_summaries = lake.read(
        "metric_summaries", columns=["run_id", "key", "flush_id", "recorded_at"], where=in_chunk
    )
    summaries = _summaries(pl.concat([points, _unsummarized(known_points, known_summaries)]), known_summaries)

    known_events = lake.read("runs", columns=[*RUN_COLUMNS, "recorded_at"], where=in_chunk)
    events = typed_frame(lake, "runs", _run_events(runs, experiment_names, known_events), RUN_COLUMNS)

    summary.params += writer.append("params", params)
    summary.tags += writer.append("run_tags", tags, replaced_tags)
    summary.inputs += writer.append("run_inputs", inputs)
    summary.metric_points += writer.append("metrics", points)
    writer.append("metric_summaries", summaries)
    summary.skipped_metric_points += skipped
    summary.runs += writer.append("runs", events)


def _key_values(runs: list[Any], kind: str) -> list[dict[str, Any]]:
    return [
        {"run_id": run.info.run_id, "key": key, "value": value}
        for run in runs
        for key, value in getattr(run.data, kind).items()
    ]


def _dataset_inputs(runs: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for dataset_input in getattr(run.inputs, "dataset_inputs", None) or []:
            dataset = dataset_input.dataset
            context = next((t.value for t in dataset_input.tags if t.key == "mlflow.data.context"), None)
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "dataset": optional_text(dataset.name) or optional_text(dataset.digest) or "dataset",
                    "version": None,
                    "path": _dataset_path(dataset.source),
                    "context": optional_text(context),
                    "digest": optional_text(dataset.digest),
                }
            )
    return rows


def _dataset_path(source: Any) -> str | None:
    """Where the data was read: the URI inside MLflow's JSON source description, else the source as given."""
    text = optional_text(source)
    if text is None:
        return None
    try:
        described = json.loads(text)
    except ValueError:
        return text
    if isinstance(described, dict):
        for key in ("uri", "url", "path", "table_name"):
            if described.get(key):
                return str(described[key])
    return text


def _metric_history(
    client: Any, runs: list[Any], report_runs: Callable[[int], None]
) -> tuple[pl.DataFrame, int]:
    """Every point of every metric of the runs; and how many points the metrics contract cannot hold."""
    read_points = sql_metric_reader(client)
    batches = []
    for start in range(0, len(runs), RUNS_PER_METRIC_QUERY):
        batch = runs[start : start + RUNS_PER_METRIC_QUERY]
        if read_points is not None:
            rows = read_points([str(run.info.run_id) for run in batch])
        else:
            rows = [
                (run.info.run_id, key, point.value, point.step, point.timestamp, False)
                for run in batch
                for key in run.data.metrics
                for point in client.get_metric_history(run.info.run_id, key)
            ]
        batches.append(pl.DataFrame(rows, schema=MLFLOW_POINT, orient="row"))
        report_runs(start + len(batch))
    frame = pl.concat([pl.DataFrame(schema=MLFLOW_POINT), *batches]).select(
        "run_id",
        "key",
        pl.when("is_nan").then(float("nan")).otherwise("value").alias("value"),
        "step",
        pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC").cast(TIMESTAMP),
    )
    # MLflow keeps several values at one (step, timestamp); the lake keys points by them and keeps the largest.
    kept = (
        frame.filter(pl.col("step") >= 0)
        .sort([*METRIC_KEY, "value"])
        .unique(subset=METRIC_KEY, keep="last", maintain_order=True)
    )
    return kept, frame.height - kept.height


def sql_metric_reader(client: Any) -> Callable[[list[str]], list[Any]] | None:
    """For a SQL store, a reader of all points of many runs in one query; None for other stores.

    MLflow's own API builds an ORM object per point (tens of microseconds each, minutes for a large store) or
    needs a call per run and key; this reads MLflow's metrics table, as MLflow's own model declares it, with
    SQLAlchemy Core.
    """
    engine = getattr(getattr(getattr(client, "_tracking_client", None), "store", None), "engine", None)
    if engine is None:
        return None
    try:
        import sqlalchemy
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        columns = SqlMetric.__table__.c
        query = sqlalchemy.select(
            columns.run_uuid, columns.key, columns.value, columns.step, columns.timestamp, columns.is_nan
        )
    except (ImportError, AttributeError):
        return None

    def read(run_ids: list[str]) -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(query.where(columns.run_uuid.in_(run_ids))).all())

    return read


def _unsummarized(points: pl.DataFrame, summaries: pl.DataFrame) -> pl.DataFrame:
    """Points in the lake that no summary covers: those committed after the last summary of their run and key.

    An import interrupted between its metrics and metric_summaries commits leaves such points; the next import
    summarizes them with its own (the lake's points of an imported run come from imports alone).
    """
    covered = summaries.group_by("run_id", "key").agg(pl.col("recorded_at").max().alias("covered"))
    return (
        points.join(covered, on=["run_id", "key"], how="left")
        .filter(pl.col("covered").is_null() | (pl.col("recorded_at") > pl.col("covered")))
        .select("run_id", "key", "value", "step", "timestamp")
    )


def _summaries(points: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """One metric_summaries row per run and key of the new points, numbered after the run's earlier imports."""
    imports = (
        known.filter(pl.col("flush_id").str.starts_with(SUMMARY_FLUSH_PREFIX))
        .group_by("run_id")
        .agg(pl.col("flush_id").n_unique().cast(pl.Int64).alias("earlier"))
    )
    return (
        summarize_frame(points)
        .join(imports, on="run_id", how="left")
        .with_columns(
            pl.format(
                SUMMARY_FLUSH_PREFIX + "{}:{}", pl.col("run_id"), pl.col("earlier").fill_null(0) + 1
            ).alias("flush_id")
        )
        .drop("earlier")
    )


def _run_state(run: Any, experiment_names: Mapping[str, str]) -> dict[str, Any]:
    info, tags = run.info, run.data.tags
    start, end = ms(info.start_time), ms(info.end_time)
    return {
        "experiment": experiment_names[str(info.experiment_id)],
        "name": optional_text(info.run_name),
        "status": MLFLOW_RUN_STATUSES.get(str(info.status).upper(), "finished" if end else "running"),
        "start_time": start or end or EPOCH,
        "end_time": end,
        "parent_run_id": optional_text(tags.get("mlflow.parentRunId")),
        "user": optional_text(tags.get("mlflow.user")) or optional_text(info.user_id),
        "command": optional_text(tags.get("mlflow.source.name")),
        "git_commit": optional_text(tags.get("mlflow.source.git.commit")),
        "git_branch": optional_text(tags.get("mlflow.source.git.branch")),
        "source": SOURCE,
    }


def _run_events(
    runs: list[Any], experiment_names: Mapping[str, str], known: pl.DataFrame
) -> list[dict[str, Any]]:
    """A runs event for each run new to the lake or whose state (status, end, name, ...) changed in MLflow.

    Event ids and times derive from MLflow and the lake's earlier events, so any importer computes the same
    rows; a new event is never dated before the run's previous one (a resumed run keeps its start time).
    """
    latest = {
        row["run_id"]: row
        for row in latest_rows(known, ["run_id"], ["event_time", "recorded_at", "event_id"]).iter_rows(
            named=True
        )
    }
    taken: dict[str, set[str]] = defaultdict(set)
    for run_id, event_id in known.select("run_id", "event_id").iter_rows():
        taken[run_id].add(event_id)
    rows = []
    for run in runs:
        run_id = str(run.info.run_id)
        state = _run_state(run, experiment_names)
        previous = latest.get(run_id)
        if previous is not None and all(previous[column] == state[column] for column in RUN_STATE):
            continue
        end = "open" if run.info.end_time is None else str(run.info.end_time)
        event_id = base_id = f"mlflow:{run_id}:{state['status']}:{end}"
        suffix = len(taken[run_id])
        while event_id in taken[run_id]:
            event_id, suffix = f"{base_id}:{suffix}", suffix + 1
        event_time = state["end_time"] or state["start_time"]
        if previous is not None:
            event_time = max(event_time, previous["event_time"] + ONE_MICROSECOND)
        rows.append({"event_id": event_id, "run_id": run_id, **state, "event_time": event_time})
    return rows


# -- model registry -----------------------------------------------------------------------------------------
