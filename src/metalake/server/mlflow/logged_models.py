"""MLflow 3's logged models (`/api/2.0/mlflow/logged-models/...`) and run outputs, over `lake.logged_models`.

`mlflow.<flavor>.log_model` creates a logged model, uploads its files to the model's artifact location (the
artifact proxy, into the lake), and loading `runs:/<run_id>/<name>` finds it again by a search on its name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from metalake.errors import LoggedModelNotFound, MlflowError, RunError, RunNotFound
from metalake.server.mlflow.entities import key_value_list, millis, page_offset, page_token
from metalake.server.mlflow.protocol import EXPERIMENT, LOGGED_MODEL, Call, MlflowRoutes, named
from metalake.server.mlflow.tracking import active_experiment, readable_experiment_ids

if TYPE_CHECKING:
    from metalake.core.vocabulary import LoggedModelStatus
    from metalake.tracking.logged_models import LoggedModel, OrderField

STATUS_OUT = {
    "pending": "LOGGED_MODEL_PENDING",
    "ready": "LOGGED_MODEL_READY",
    "failed": "LOGGED_MODEL_UPLOAD_FAILED",
}
STATUS_IN: dict[str, LoggedModelStatus] = {
    "LOGGED_MODEL_PENDING": "pending",
    "LOGGED_MODEL_READY": "ready",
    "LOGGED_MODEL_UPLOAD_FAILED": "failed",
    "PENDING": "pending",
    "READY": "ready",
    "UPLOAD_FAILED": "failed",
    "FAILED": "failed",
}
ORDER_FIELDS: dict[str, OrderField] = {
    "name": "name",
    "creation_timestamp": "created_at",
    "creation_time": "created_at",
    "last_updated_timestamp": "updated_at",
    "model_id": "model_id",
}
FILTER_FIELDS = ("name", "source_run_id", "status", "model_type", "model_id")
DEFAULT_MODELS_PER_SEARCH = 100
MAX_MODELS_PER_SEARCH = 1000
_CONDITION = re.compile(
    r"""^\s*(?P<key>[A-Za-z_][\w.]*|(?:tags|params)\.`[^`]+`)\s*=\s*(?P<quote>['"])(?P<value>.*?)(?P=quote)\s*$""",
    re.S,
)


def logged_model_out(model: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "creation_timestamp_ms": millis(model.created_at),
        "last_updated_timestamp_ms": millis(model.updated_at),
        "artifact_uri": model.artifact_location,
        "status": STATUS_OUT[model.status],
        "tags": key_value_list(model.tags),
    }
    for field, value in (
        ("model_type", model.model_type),
        ("source_run_id", model.source_run_id),
        ("status_message", model.status_message),
    ):
        if value:
            info[field] = value
    return {"info": info, "data": {"params": key_value_list(model.params), "metrics": []}}


def model_of(call: Call) -> LoggedModel:
    model_id = call.text("model_id")
    try:
        return call.lake.logged_models.get(model_id)
    except LoggedModelNotFound:
        raise MlflowError(
            f"Logged model with ID '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST"
        ) from None


def add_logged_model_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route("POST", "logged-models", action="write", securable=EXPERIMENT)
    def create_logged_model(call: Call) -> dict[str, Any]:
        lake = call.lake
        experiment = active_experiment(lake, call.text("experiment_id"))
        run_id = call.optional_text("source_run_id")
        if run_id is not None:
            try:
                run_id = lake.runs.resolve_id(run_id)
            except RunNotFound:
                raise MlflowError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST") from None
        model = lake.logged_models.create(
            experiment.experiment_id,
            call.optional_text("name")
            or f"model-{len(lake.logged_models.search([experiment.experiment_id])) + 1}",
            source_run_id=run_id,
            model_type=call.optional_text("model_type"),
            params=call.key_values("params"),
            tags=call.key_values("tags"),
            actor=call.actor,
        )
        return {"model": logged_model_out(model)}

    @route("GET", "logged-models/{model_id}", action="read", securable=LOGGED_MODEL)
    def get_logged_model(call: Call) -> dict[str, Any]:
        return {"model": logged_model_out(model_of(call))}

    @route("PATCH", "logged-models/{model_id}", action="write", securable=LOGGED_MODEL)
    def finalize_logged_model(call: Call) -> dict[str, Any]:
        model = model_of(call)
        given = call.text("status")
        status = STATUS_IN.get(given.upper())
        if status is None or status == "pending":
            raise MlflowError(
                f"Invalid status {given!r}: finalize a logged model as LOGGED_MODEL_READY or "
                "LOGGED_MODEL_UPLOAD_FAILED."
            )
        finalized = call.lake.logged_models.finalize(model.model_id, status, actor=call.actor)
        return {"model": logged_model_out(finalized)}

    @route("DELETE", "logged-models/{model_id}", action="write", securable=LOGGED_MODEL)
    def delete_logged_model(call: Call) -> dict[str, Any]:
        call.lake.logged_models.delete(model_of(call).model_id, actor=call.actor)
        return {}

    @route("POST", "logged-models/{model_id}/params", action="write", securable=LOGGED_MODEL)
    def log_logged_model_params(call: Call) -> dict[str, Any]:
        call.lake.logged_models.log_params(
            model_of(call).model_id, call.key_values("params"), actor=call.actor
        )
        return {}

    @route("PATCH", "logged-models/{model_id}/tags", action="write", securable=LOGGED_MODEL)
    def set_logged_model_tags(call: Call) -> dict[str, Any]:
        call.lake.logged_models.set_tags(model_of(call).model_id, call.key_values("tags"), actor=call.actor)
        return {}

    @route(
        "DELETE",
        "logged-models/{model_id}/tags/{tag_key:path}",
        action="write",
        securable=LOGGED_MODEL,
    )
    def delete_logged_model_tag(call: Call) -> dict[str, Any]:
        model, key = model_of(call), call.text("tag_key")
        try:
            call.lake.logged_models.delete_tag(model.model_id, key, actor=call.actor)
        except RunError as error:
            raise MlflowError(str(error), "RESOURCE_DOES_NOT_EXIST") from None
        return {}

    @route("POST", "logged-models/search", action="read", securable="experiment:*", filtered=True)
    def search_logged_models(call: Call) -> dict[str, Any]:
        return search(call)

    @route("POST", "runs/outputs", action="write", securable=named("run", "run_id"))
    def log_outputs(call: Call) -> dict[str, Any]:
        """A run names the models it produced; each is already linked to its run by `source_run_id`, so this
        checks the run and the models exist."""
        lake = call.lake
        run_id = call.text("run_id")
        try:
            lake.runs.resolve_id(run_id)
        except RunNotFound:
            raise MlflowError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST") from None
        for output in call.objects("models"):
            model_id = output.get("model_id")
            if not isinstance(model_id, str) or not model_id:
                raise MlflowError("Every model output needs a 'model_id'.")
            try:
                lake.logged_models.get(model_id)
            except LoggedModelNotFound:
                raise MlflowError(
                    f"Logged model with ID '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST"
                ) from None
        return {}


def search(call: Call) -> dict[str, Any]:
    """`logged-models/search`: equality filters joined by AND, ordering by name or time, paged by offsets."""
    if call.objects("datasets"):
        raise MlflowError("Searching logged models by dataset is not supported by metalake.")
    where = parse_filter(call.optional_text("filter"))
    order_by: list[tuple[OrderField, bool]] = []
    for item in call.objects("order_by"):
        name = str(item.get("field_name") or "")
        field = ORDER_FIELDS.get(name.removeprefix("attributes."))
        if field is None:
            raise MlflowError(
                f"Cannot order logged models by {name!r}: use one of {', '.join(ORDER_FIELDS)}."
            )
        order_by.append((field, item.get("ascending", True) is not False))
    size = call.integer("max_results", DEFAULT_MODELS_PER_SEARCH, minimum=1, maximum=MAX_MODELS_PER_SEARCH)
    assert size is not None
    offset = page_offset(call.optional_text("page_token"))
    experiment_ids = readable_experiment_ids(call, call.texts("experiment_ids"))
    if experiment_ids == []:
        return {"models": []}
    found = call.lake.logged_models.search(
        experiment_ids, where=where, order_by=order_by or (("created_at", False),)
    )
    page = found[offset : offset + size]
    body: dict[str, Any] = {"models": [logged_model_out(model) for model in page]}
    if len(found) > offset + size:
        body["next_page_token"] = page_token(offset + size)
    return body


def parse_filter(text: str | None) -> dict[str, str]:
    """`name = 'model' AND tags.stage = "prod"` -> {"name": "model", "tags.stage": "prod"}; only equalities."""
    where: dict[str, str] = {}
    if not text or not text.strip():
        return where
    for condition in re.split(r"\s+and\s+(?=(?:[^'\"]|'[^']*'|\"[^\"]*\")*$)", text.strip(), flags=re.I):
        found = _CONDITION.match(condition)
        if found is None:
            raise MlflowError(
                f"Unsupported logged model filter {condition.strip()!r}: metalake supports equalities "
                f"(`field = 'value'`) joined by AND over {', '.join(FILTER_FIELDS)}, tags.<key> and params.<key>."
            )
        key = found["key"].removeprefix("attributes.").replace("`", "")
        if key not in FILTER_FIELDS and not key.startswith(("tags.", "params.")):
            raise MlflowError(
                f"Cannot filter logged models by {key!r}: use {', '.join(FILTER_FIELDS)}, tags.<key> or params.<key>."
            )
        value = found["value"]
        if key == "status":
            value = STATUS_IN.get(value.upper(), value.lower())
        where[key] = value
    return where
