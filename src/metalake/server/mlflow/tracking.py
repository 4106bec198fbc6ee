"""MLflow's tracking API over the lake: experiments, runs, their params, tags, metrics and dataset inputs.

Writes call `lake.experiments` and `lake.runs` (the one write path). Logging calls (log-metric, log-batch,
log-parameter, set-tag) answer once the flush is journaled and share group commits with concurrent requests;
creating and ending a run answer once committed. A run id MLflow clients get back is the lake's run id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from metalake.errors import ExperimentNotFound, MlflowError, RunNotFound
from metalake.server.mlflow.entities import (
    EPOCH,
    GIT_COMMIT_TAG,
    PARENT_RUN_TAG,
    RUN_NAME_TAG,
    SOURCE_NAME_TAG,
    USER_TAG,
    dataset_input_in,
    experiment_out,
    from_millis,
    page_offset,
    page_token,
    run_out,
    run_status_in,
)
from metalake.server.mlflow.experiment_search import search_experiments
from metalake.server.mlflow.metrics import add_metric_routes
from metalake.server.mlflow.protocol import EXPERIMENT, RUN, Call, MlflowRoutes, integer_in, named, number_in
from metalake.tracking.remote import Durable, MetricPoint

if TYPE_CHECKING:
    from metalake.lake import Lake
    from metalake.tracking.experiments import Experiment
    from metalake.tracking.search import RunDetails

MAX_METRICS_PER_BATCH = 1000  # MLflow's limits (mlflow/utils/validation.py)
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_RUNS_PER_SEARCH = 50_000
DEFAULT_RUNS_PER_SEARCH = 1_000
VIEW_TYPES = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}
LOGGED: Durable = "journaled"  # logging calls answer once journaled (see tracking/remote.py)


def experiment_of(lake: Lake, experiment_id: str) -> Experiment:
    try:
        return lake.experiments.get(experiment_id)
    except ExperimentNotFound:
        raise MlflowError(
            f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST"
        ) from None


def active_experiment(lake: Lake, experiment_id: str, *, cached: bool = False) -> Experiment:
    """The experiment, refused if deleted. `cached`: reuse a look-up of the last seconds (creating runs one
    after another must not wait for each one's queued commit to read the experiments)."""
    key, now = (lake.uri, experiment_id), time.monotonic()
    known = _experiments_by_id.get(key) if cached else None
    if known is not None and known[1] >= now:
        experiment = known[0]
    else:
        experiment = experiment_of(lake, experiment_id)
        _experiments_by_id[key] = (experiment, now + EXPERIMENT_IDS_FOR)
        _experiment_ids[(lake.uri, experiment.name)] = (experiment.experiment_id, now + EXPERIMENT_IDS_FOR)
    if experiment.deleted:
        raise MlflowError(
            f"The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
        )
    return experiment


def readable_experiment_ids(call: Call, wanted: list[str]) -> list[str] | None:
    """The experiments a filtered search may look in, of those it names (none named: all of them, None when the
    caller may read every experiment); a caller restricted to some experiments searches only those."""
    if call.readable is None or call.readable.everything:
        return wanted or None
    known = call.lake.experiments.list(lifecycle="all")
    allowed = {experiment.experiment_id for experiment in known if call.may_read(experiment.name)}
    return [given for given in wanted if given in allowed] if wanted else sorted(allowed)


def run_id_of(call: Call) -> str:
    """The run a request names (`run_id`, or the older `run_uuid`), as the lake knows it."""
    given = call.run_id()
    try:
        return call.lake.runs.resolve_id(given)
    except RunNotFound:
        raise MlflowError(f"Run with id={given} not found", "RESOURCE_DOES_NOT_EXIST") from None


def active_run_id(call: Call) -> str:
    run_id = run_id_of(call)
    if call.lake.runs.get_as_written(run_id).info.get("deleted"):
        raise MlflowError(f"The run {run_id} must be in the 'active' state. Current state is deleted.")
    return run_id


def logged_run_id(call: Call) -> str:
    """The run a logging call names, as given: `lake.runs.log_batch` checks it exists and is active, once
    per run and process, so logging point by point reads nothing (a read would wait for queued commits)."""
    return call.run_id()


def written_run(lake: Lake, run_id: str, tags: Mapping[str, str]) -> RunDetails:
    """The run a write request just changed, from the state the writes keep (reading would wait for commits)."""
    from metalake.tracking.search import RunDetails

    return RunDetails(run_id, lake.runs.request_state(run_id), {}, dict(tags), {}, [], [])


_experiment_ids: dict[tuple[str, str], tuple[str, float]] = {}
_experiments_by_id: dict[tuple[str, str], tuple[Experiment, float]] = {}


def forget_experiments() -> None:
    """After an experiment write through this server: the next look-up reads the lake."""
    _experiment_ids.clear()
    _experiments_by_id.clear()


EXPERIMENT_IDS_FOR = 5.0  # seconds a name's experiment id is reused by write answers


def cached_experiment_id(lake: Lake, name: str) -> str:
    key, now = (lake.uri, name), time.monotonic()
    known = _experiment_ids.get(key)
    if known is None or known[1] < now:
        known = (lake.experiments.id_of(name), now + EXPERIMENT_IDS_FOR)
        _experiment_ids[key] = known
    return known[0]


def mlflow_run(lake: Lake, run_id: str) -> dict[str, Any]:
    """The run as this server's writes left it: journaled writes not committed yet are shown, not waited for."""
    try:
        details = lake.runs.get_as_written(run_id)
    except RunNotFound:
        raise MlflowError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST") from None
    return run_out(details, cached_experiment_id(lake, details.info["experiment"]))


def add_tracking_routes(routes: MlflowRoutes) -> None:
    add_experiment_routes(routes)
    add_run_routes(routes)
    add_metric_routes(routes)


def add_experiment_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route("POST", "experiments/create", action="write", securable="experiment:*")
    def create_experiment(call: Call) -> dict[str, Any]:
        tags = call.key_values("tags")
        created = call.lake.experiments.create(
            call.text("name"),
            tags=tags,
            artifact_location=call.optional_text("artifact_location"),
            actor=call.actor,
        )
        forget_experiments()
        call.made(f"experiment:{created.name}")
        return {"experiment_id": created.experiment_id}

    @route("GET", "experiments/get", action="read", securable=EXPERIMENT)
    def get_experiment(call: Call) -> dict[str, Any]:
        return {"experiment": experiment_out(experiment_of(call.lake, call.text("experiment_id")))}

    @route("GET", "experiments/get-by-name", action="read", securable=named("experiment", "experiment_name"))
    def get_experiment_by_name(call: Call) -> dict[str, Any]:
        name = call.text("experiment_name")
        try:
            return {"experiment": experiment_out(call.lake.experiments.by_name(name))}
        except ExperimentNotFound:
            raise MlflowError(
                f"Could not find experiment with name '{name}'", "RESOURCE_DOES_NOT_EXIST"
            ) from None

    def search(call: Call) -> dict[str, Any]:
        return search_experiments(call)

    route("GET", "experiments/search", action="read", securable="experiment:*", filtered=True)(search)
    route("POST", "experiments/search", action="read", securable="experiment:*", filtered=True)(search)

    @route("POST", "experiments/update", action="write", securable=EXPERIMENT)
    def update_experiment(call: Call) -> dict[str, Any]:
        experiment_id = call.text("experiment_id")
        experiment_of(call.lake, experiment_id)
        new_name = call.optional_text("new_name")
        if new_name is not None:
            call.lake.experiments.rename(experiment_id, new_name, actor=call.actor)
        forget_experiments()
        return {}

    @route("POST", "experiments/delete", action="manage", securable=EXPERIMENT)
    def delete_experiment(call: Call) -> dict[str, Any]:
        experiment_id = call.text("experiment_id")
        experiment_of(call.lake, experiment_id)
        call.lake.experiments.delete(experiment_id, actor=call.actor)
        forget_experiments()
        return {}

    @route("POST", "experiments/restore", action="manage", securable=EXPERIMENT)
    def restore_experiment(call: Call) -> dict[str, Any]:
        experiment_id = call.text("experiment_id")
        experiment_of(call.lake, experiment_id)
        call.lake.experiments.restore(experiment_id, actor=call.actor)
        forget_experiments()
        return {}

    @route(
        "POST",
        "experiments/set-experiment-tag",
        action="write",
        securable=EXPERIMENT,
    )
    def set_experiment_tag(call: Call) -> dict[str, Any]:
        experiment_id = call.text("experiment_id")
        active_experiment(call.lake, experiment_id)
        value = call.fields.get("value")
        call.lake.experiments.set_tag(
            experiment_id, call.text("key"), "" if value is None else str(value), actor=call.actor
        )
        return {}

    @route(
        "POST",
        "experiments/delete-experiment-tag",
        action="write",
        securable=EXPERIMENT,
    )
    def delete_experiment_tag(call: Call) -> dict[str, Any]:
        experiment_id = call.text("experiment_id")
        active_experiment(call.lake, experiment_id)
        try:
            call.lake.experiments.delete_tag(experiment_id, call.text("key"), actor=call.actor)
        except ExperimentNotFound as error:
            raise MlflowError(str(error), "RESOURCE_DOES_NOT_EXIST") from None
        return {}


def add_run_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route(
        "POST", "runs/create", action="write", securable=named("experiment_id", "experiment_id", default="0")
    )
    def create_run(call: Call) -> dict[str, Any]:
        lake = call.lake
        experiment = active_experiment(lake, call.optional_text("experiment_id") or "0", cached=True)
        tags = call.key_values("tags")
        name = call.optional_text("run_name") or tags.get(RUN_NAME_TAG)
        user = call.optional_text("user_id") or tags.get(USER_TAG) or call.actor
        parent = tags.get(PARENT_RUN_TAG)
        if parent is not None:
            try:
                parent = lake.runs.resolve_id(parent)
            except RunNotFound:
                raise MlflowError(
                    f"Parent run with id={parent} not found", "RESOURCE_DOES_NOT_EXIST"
                ) from None
        name = name or f"run-{secrets.token_hex(4)}"  # MLflow names every run; the tag and the field agree
        tags = {**tags, RUN_NAME_TAG: name, USER_TAG: user}
        run_id = lake.runs.create(
            experiment.name,
            name,
            tags=tags,
            parent_run_id=parent,
            start_time=from_millis(call.integer("start_time")),
            user=user,
            command=tags.get(SOURCE_NAME_TAG),
            git_commit=tags.get(GIT_COMMIT_TAG),
            durable=LOGGED,
        )
        return {"run": run_out(written_run(lake, run_id, tags), experiment.experiment_id)}

    @route("GET", "runs/get", action="read", securable=RUN)
    def get_run(call: Call) -> dict[str, Any]:
        return {"run": mlflow_run(call.lake, call.run_id())}

    @route("POST", "runs/update", action="write", securable=RUN)
    def update_run(call: Call) -> dict[str, Any]:
        lake, run_id = call.lake, logged_run_id(call)
        if lake.runs.request_state(run_id)["deleted"]:
            raise MlflowError(f"The run {run_id} must be in the 'active' state. Current state is deleted.")
        name = call.optional_text("run_name")
        if name is not None:
            lake.runs.rename(run_id, name)
            lake.runs.log_batch(run_id, tags={RUN_NAME_TAG: name}, durable=LOGGED)
        status = call.optional_text("status")
        if status is not None:
            wanted = run_status_in(status)
            end = from_millis(call.integer("end_time"))
            if wanted in ("finished", "failed", "killed"):
                lake.runs.end(run_id, wanted, end_time=end, durable=LOGGED)  # type: ignore[arg-type]
        state = lake.runs.request_state(run_id)
        experiment_id = cached_experiment_id(lake, state["experiment"])
        return {"run_info": run_out(written_run(lake, run_id, {}), experiment_id)["info"]}

    @route("POST", "runs/delete", action="write", securable=RUN)
    def delete_run(call: Call) -> dict[str, Any]:
        call.lake.runs.delete(run_id_of(call))
        return {}

    @route("POST", "runs/restore", action="write", securable=RUN)
    def restore_run(call: Call) -> dict[str, Any]:
        call.lake.runs.restore(run_id_of(call))
        return {}

    @route("POST", "runs/log-metric", action="write", securable=RUN)
    def log_metric(call: Call) -> dict[str, Any]:
        log(call, logged_run_id(call), metrics=[metric_point(call.fields)])
        return {}

    @route("POST", "runs/log-parameter", action="write", securable=RUN)
    def log_parameter(call: Call) -> dict[str, Any]:
        value = call.fields.get("value")
        log(call, logged_run_id(call), params={call.text("key"): "" if value is None else str(value)})
        return {}

    @route("POST", "runs/set-tag", action="write", securable=RUN)
    def set_tag(call: Call) -> dict[str, Any]:
        value = call.fields.get("value")
        log(call, logged_run_id(call), tags={call.text("key"): "" if value is None else str(value)})
        return {}

    @route("POST", "runs/delete-tag", action="write", securable=RUN)
    def delete_tag(call: Call) -> dict[str, Any]:
        run_id, key = active_run_id(call), call.text("key")
        if key not in call.lake.runs.get_as_written(run_id).tags:
            raise MlflowError(f"No tag with name: {key} in run with id {run_id}", "RESOURCE_DOES_NOT_EXIST")
        call.lake.runs.delete_tag(run_id, key, durable=LOGGED)
        return {}

    @route("POST", "runs/log-batch", action="write", securable=RUN)
    def log_batch(call: Call) -> dict[str, Any]:
        metrics, params, tags = call.objects("metrics"), call.objects("params"), call.objects("tags")
        check_batch_limits(len(metrics), len(params), len(tags))
        keys = [item.get("key") for item in params]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise MlflowError(
                f"Duplicate parameter keys have been submitted: {repeated}. Please ensure the "
                "request contains only one param value per param key."
            )
        log(
            call,
            logged_run_id(call),
            params=call.key_values("params"),
            tags=call.key_values("tags"),
            metrics=[metric_point(item) for item in metrics],
        )
        return {}

    @route("POST", "runs/log-inputs", action="write", securable=RUN)
    def log_inputs(call: Call) -> dict[str, Any]:
        run_id = active_run_id(call)
        inputs = [dataset_input_in(item) for item in call.objects("datasets")]
        call.lake.runs.log_inputs(run_id, inputs, durable=LOGGED)
        return {}

    @route("POST", "runs/search", action="read", securable="experiment:*", filtered=True)
    def search_runs(call: Call) -> dict[str, Any]:
        return search(call)


def log(
    call: Call,
    run_id: str,
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    metrics: list[Any] | None = None,
) -> None:
    """One logging call into the run; `mlflow.runName` set as a tag renames the run as MLflow does."""
    lake = call.lake
    if tags and RUN_NAME_TAG in tags:
        lake.runs.rename(run_id, tags[RUN_NAME_TAG])
    lake.runs.log_batch(run_id, params=params, tags=tags, metrics=metrics or (), durable=LOGGED)


def metric_point(item: Mapping[str, Any]) -> MetricPoint:
    """A `Metric` of a request -> the lake's point (MLflow's timestamp is required, in ms)."""
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise MlflowError("Every metric needs a non-empty 'key'.")
    if "value" not in item:
        raise MlflowError(f"Metric '{key}' has no 'value'.")
    value = number_in(f"value of metric '{key}'", item["value"])
    timestamp = integer_in(f"timestamp of metric '{key}'", item.get("timestamp"))
    if timestamp is None:
        raise MlflowError(f"Missing value for required parameter 'timestamp' of metric '{key}'.")
    step = integer_in(f"step of metric '{key}'", item.get("step"), 0) or 0
    return MetricPoint(key, value, step, EPOCH + timedelta(milliseconds=timestamp))


def check_batch_limits(metrics: int, params: int, tags: int) -> None:
    for name, limit, length in (
        ("metrics", MAX_METRICS_PER_BATCH, metrics),
        ("params", MAX_PARAMS_TAGS_PER_BATCH, params),
        ("tags", MAX_PARAMS_TAGS_PER_BATCH, tags),
        ("entities", MAX_ENTITIES_PER_BATCH, metrics + params + tags),
    ):
        if length > limit:
            raise MlflowError(
                f"A batch logging request can contain at most {limit} {name}. Got {length} {name}. "
                f"Please split up {name} across multiple requests and try again."
            )


def search(call: Call) -> dict[str, Any]:
    """`runs/search`: MLflow's filter and order (server/mlflow/filters.py), paged by offset tokens."""
    from metalake.server.mlflow.filters import plan_run_search

    lake = call.lake
    view = call.optional_text("run_view_type") or "ACTIVE_ONLY"
    if view not in VIEW_TYPES:
        raise MlflowError(f"Invalid run_view_type {view!r}: use one of {', '.join(VIEW_TYPES)}.")
    size = call.integer("max_results", DEFAULT_RUNS_PER_SEARCH, minimum=1, maximum=MAX_RUNS_PER_SEARCH)
    assert size is not None
    offset = page_offset(call.optional_text("page_token"))
    known = lake.experiments.list(lifecycle="all")
    wanted = set(call.texts("experiment_ids"))
    names = sorted(
        {name for e in known if e.experiment_id in wanted and call.may_read(e.name) for name in e.names}
    )
    if not names:
        return {"runs": []}
    experiment = names[0] if len(names) == 1 else None
    columns = set(lake.runs.table_cache.wide_runs(experiment).columns)
    plan = plan_run_search(call.optional_text("filter"), call.texts("order_by"), known_columns=columns)
    if plan.matches_nothing:
        return {"runs": []}
    clauses = [] if experiment else ["experiment in (" + ", ".join(_quoted(n) for n in names) + ")"]
    if plan.where:
        clauses.append(f"({plan.where})")
    found = lake.runs.search(
        experiment=experiment,
        where=" and ".join(clauses) or None,
        order_by=plan.order_by,
        limit=offset + size + 1,
        lifecycle=VIEW_TYPES[view],  # type: ignore[arg-type]
        columns=["run_id"],
    )
    ids = found.get_column("run_id").to_list()[offset : offset + size + 1]
    answer: dict[str, Any] = {"runs": runs_out(lake, ids[:size])}
    if len(ids) > size:
        answer["next_page_token"] = page_token(offset + size)
    return answer


RUN_TABLES = ("runs", "params", "run_tags", "metric_summaries", "run_inputs", "artifacts", "model_versions")


def runs_out(lake: Lake, run_ids: list[str]) -> list[dict[str, Any]]:
    """MLflow's JSON of a page of runs. A run that has ended is answered again from the JSON built last time
    while the tables it is read from keep their versions and its experiment its id: a page read again (a UI's
    refresh, a script polling) skips rebuilding each run. A running run is built each time (it may be lost)."""
    from metalake.core.vocabulary import FINAL_RUN_STATUSES

    cache = lake.runs.table_cache
    kept = cache.kept("mlflow-runs")
    experiment_ids = lake.experiments.ids_by_name()
    with cache.pinned():
        versions = cache.versions(RUN_TABLES)
        answers: dict[str, dict[str, Any]] = {}
        for run_id in run_ids:
            hit = kept.get(run_id)
            if hit is not None and hit[0] == versions and experiment_ids.get(hit[1]) == hit[2]:
                answers[run_id] = hit[3]
        for details in lake.runs.get_many([run_id for run_id in run_ids if run_id not in answers]):
            name = details.info["experiment"]
            answers[details.run_id] = run_out(details, experiment_ids.get(name) or "0")
            if details.status in FINAL_RUN_STATUSES:
                kept[details.run_id] = (versions, name, experiment_ids.get(name), answers[details.run_id])
    return [answers[run_id] for run_id in run_ids]


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
