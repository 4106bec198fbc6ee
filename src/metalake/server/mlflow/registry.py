"""MLflow's model-registry API over `lake.registry`: registered models, versions, tags, aliases and stages.

Every write calls `lake.registry` (model_versions, model_events, models), so the registry's history, views and
time travel see MLflow's changes, and a stage transition passes the lake's governance policy: a refused one
answers INVALID_STATE naming the failing rules. MLflow's stages None, Staging, Production and Archived are the
lake's none, staging, production and archived. A version's `source` is kept as its artifact URI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metalake.core.vocabulary import STAGES
from metalake.errors import MlflowError, PolicyViolation, RunError
from metalake.server.mlflow.entities import millis, page_offset, page_token, run_artifact_uri
from metalake.server.mlflow.protocol import MODEL, Call, MlflowRoutes
from metalake.server.mlflow.registry_search import matches, order_key, parse_filter, sort_entities

if TYPE_CHECKING:
    from metalake.lake import Lake
    from metalake.registry import RegisteredModel

STAGE_OUT = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
MODEL_FIELDS = ("name", "creation_timestamp", "last_updated_timestamp")
VERSION_FIELDS = (
    "name",
    "version_number",
    "run_id",
    "source_path",
    "current_stage",
    "creation_timestamp",
    "last_updated_timestamp",
)
MAX_MODELS_PER_SEARCH = 1000  # MLflow's limits (mlflow/server/handlers.py)
DEFAULT_MODELS_PER_SEARCH = 100
MAX_VERSIONS_PER_SEARCH = 200_000
DEFAULT_VERSIONS_PER_SEARCH = 10_000
LOGGED_MODEL_PREFIX = "models:/m-"


def stage_in(stage: str) -> str:
    """MLflow's stage (any case) -> the lake's; INVALID_PARAMETER_VALUE naming the valid ones otherwise."""
    wanted = stage.strip().lower()
    if wanted not in STAGES:
        raise MlflowError(
            f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(STAGE_OUT.values())}."
        )
    return wanted


def version_in(call: Call) -> int:
    text = call.text("version")
    if not (text.isascii() and text.isdigit()):
        raise MlflowError(f"Model version must be an integer, got {text!r}.")
    return int(text)


def logged_model_id(source: str) -> str | None:
    """The logged model (MLflow 3) a `models:/m-...` source names."""
    if source.startswith(LOGGED_MODEL_PREFIX):
        return source[len("models:/") :].split("/", 1)[0]
    return None


class RegistryView:
    """One model's registry state (`lake.registry.versions` and `registered_model`) as MLflow's entities."""

    def __init__(self, lake: Lake, model: str):
        self.lake = lake
        self.record: RegisteredModel = lake.registry.registered_model(model)
        frame = lake.registry.versions(model)
        self.rows = {int(row["version"]): row for row in frame.iter_rows(named=True)}

    def version(self, number: int) -> dict[str, Any]:
        row, notes = self.rows.get(number), self.record.versions.get(number)
        if row is None or notes is None:
            known = ", ".join(str(v) for v in sorted(self.rows)) or "none"
            raise MlflowError(
                f"Model Version (name={self.record.name}, version={number}) not found (versions: {known}).",
                "RESOURCE_DOES_NOT_EXIST",
            )
        updated = max(moment for moment in (notes.updated_at, row["stage_since"]) if moment is not None)
        source = row["artifact_uri"]
        body: dict[str, Any] = {
            "name": self.record.name,
            "version": str(number),
            "creation_timestamp": millis(row["registered_at"]),
            "last_updated_timestamp": millis(updated),
            "current_stage": STAGE_OUT.get(row["stage"], "None"),
            "description": notes.description or "",
            "user_id": row["registered_by"] or "",
            "source": source,
            "run_id": row["run_id"] or "",
            "status": "READY",
            "tags": [{"key": key, "value": value} for key, value in sorted(notes.tags.items())],
            "aliases": list(row["aliases"] or []),
            "run_link": "",
        }
        model_id = logged_model_id(source)
        if model_id is not None:
            body["model_id"] = model_id
        return body

    def versions(self) -> list[dict[str, Any]]:
        return [self.version(number) for number in sorted(self.rows) if number in self.record.versions]

    def latest(self, stages: list[str]) -> list[dict[str, Any]]:
        """The newest version in each stage (every stage if none named), as MLflow's get-latest-versions."""
        wanted = [stage_in(stage) for stage in stages] if stages else list(STAGES)
        newest: dict[str, int] = {}
        for number, row in self.rows.items():
            if row["stage"] in wanted and number in self.record.versions:
                newest[row["stage"]] = max(number, newest.get(row["stage"], 0))
        return [self.version(newest[stage]) for stage in wanted if stage in newest]

    def model(self) -> dict[str, Any]:
        record = self.record
        stage_times = [row["stage_since"] for row in self.rows.values() if row["stage_since"] is not None]
        updated = max([record.updated_at, *stage_times])
        aliases = sorted(
            (alias, number) for number, row in self.rows.items() for alias in row["aliases"] or []
        )
        return {
            "name": record.name,
            "creation_timestamp": millis(record.created_at),
            "last_updated_timestamp": millis(updated),
            "description": record.description or "",
            "latest_versions": self.latest([]),
            "tags": [{"key": key, "value": value} for key, value in sorted(record.tags.items())],
            "aliases": [{"alias": alias, "version": str(number)} for alias, number in aliases],
        }


def model_value(entity: Mapping[str, Any], field: str) -> Any:
    if field.startswith("tags."):
        return {tag["key"]: tag["value"] for tag in entity["tags"]}.get(field[5:])
    return entity.get(field)


def version_value(entity: Mapping[str, Any], field: str) -> Any:
    if field == "version_number":
        return int(entity["version"])
    if field == "source_path":
        return entity["source"]
    return model_value(entity, field)


def paged(
    call: Call, entities: list[dict[str, Any]], key: str, default_size: int, max_size: int
) -> dict[str, Any]:
    size = call.integer("max_results", default_size, minimum=1, maximum=max_size)
    assert size is not None
    offset = page_offset(call.optional_text("page_token"))
    answer: dict[str, Any] = {key: entities[offset : offset + size]}
    if len(entities) > offset + size:
        answer["next_page_token"] = page_token(offset + size)
    return answer


def download_uri(lake: Lake, version: Mapping[str, Any]) -> str:
    """Where a version's files are: a run's artifacts through the artifact proxy, a logged model's location
    (when this lake knows logged models), else the source as registered."""
    source = str(version["source"])
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/") :].partition("/")
        try:
            run_id = lake.runs.resolve_id(run_id)
            experiment = lake.runs.get(run_id).info["experiment"]
        except RunError:
            return source
        base = run_artifact_uri(lake.experiments.id_of(experiment), run_id)
        return f"{base}/{path}" if path else base
    model_id = logged_model_id(source)
    logged_models = getattr(lake, "logged_models", None)
    if model_id is not None and logged_models is not None:
        location = getattr(logged_models.get(model_id), "artifact_location", None)
        if location:
            return str(location)
    return source


def add_registry_routes(routes: MlflowRoutes) -> None:
    add_registered_model_routes(routes)
    add_model_version_routes(routes)


def add_registered_model_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route("POST", "registered-models/create", action="write", securable="model:*")
    def create_registered_model(call: Call) -> dict[str, Any]:
        name = call.text("name")
        call.lake.registry.create_model(
            name, description=call.optional_text("description"), tags=call.key_values("tags")
        )
        call.made(f"model:{name}")
        return {"registered_model": RegistryView(call.lake, name).model()}

    @route("GET", "registered-models/get", action="read", securable=MODEL)
    def get_registered_model(call: Call) -> dict[str, Any]:
        return {"registered_model": RegistryView(call.lake, call.text("name")).model()}

    def search(call: Call) -> dict[str, Any]:
        clauses = parse_filter(call.optional_text("filter"), ("name",))
        keys = order_key(call.texts("order_by") or ["name ASC"], MODEL_FIELDS)
        name_clauses = [clause for clause in clauses if clause.field == "name"]
        names = [
            name
            for name in call.lake.registry.models()
            if call.may_read(name) and matches({"name": name}, name_clauses, model_value)
        ]
        found = [RegistryView(call.lake, name).model() for name in names]
        found = [entity for entity in found if matches(entity, clauses, model_value)]
        ordered = sort_entities(found, keys, model_value)
        return paged(call, ordered, "registered_models", DEFAULT_MODELS_PER_SEARCH, MAX_MODELS_PER_SEARCH)

    route("GET", "registered-models/search", action="read", securable="model:*", filtered=True)(search)

    @route("POST", "registered-models/rename", action="manage", securable=MODEL)
    def rename_registered_model(call: Call) -> dict[str, Any]:
        new_name = call.text("new_name")
        call.lake.registry.rename_model(call.text("name"), new_name)
        return {"registered_model": RegistryView(call.lake, new_name).model()}

    @route("PATCH", "registered-models/update", action="write", securable=MODEL)
    def update_registered_model(call: Call) -> dict[str, Any]:
        name = call.text("name")
        call.lake.registry.set_description(name, call.optional_text("description"))
        return {"registered_model": RegistryView(call.lake, name).model()}

    @route("DELETE", "registered-models/delete", action="manage", securable=MODEL)
    def delete_registered_model(call: Call) -> dict[str, Any]:
        call.lake.registry.delete_model(call.text("name"))
        return {}

    @route("POST", "registered-models/set-tag", action="write", securable=MODEL)
    def set_registered_model_tag(call: Call) -> dict[str, Any]:
        value = call.fields.get("value")
        call.lake.registry.set_tag(call.text("name"), call.text("key"), "" if value is None else str(value))
        return {}

    @route("DELETE", "registered-models/delete-tag", action="write", securable=MODEL)
    def delete_registered_model_tag(call: Call) -> dict[str, Any]:
        call.lake.registry.delete_tag(call.text("name"), call.text("key"))
        return {}

    def latest_versions(call: Call) -> dict[str, Any]:
        return {"model_versions": RegistryView(call.lake, call.text("name")).latest(call.texts("stages"))}

    route("GET", "registered-models/get-latest-versions", action="read", securable=MODEL)(latest_versions)
    route("POST", "registered-models/get-latest-versions", action="read", securable=MODEL)(latest_versions)

    @route("POST", "registered-models/alias", action="write", securable=MODEL)
    def set_alias(call: Call) -> dict[str, Any]:
        call.lake.registry.set_alias(call.text("name"), call.text("alias"), version_in(call))
        return {}

    @route("DELETE", "registered-models/alias", action="write", securable=MODEL)
    def delete_alias(call: Call) -> dict[str, Any]:
        call.lake.registry.delete_alias(call.text("name"), call.text("alias"))
        return {}

    @route("GET", "registered-models/alias", action="read", securable=MODEL)
    def get_by_alias(call: Call) -> dict[str, Any]:
        name, alias = call.text("name"), call.text("alias")
        view = RegistryView(call.lake, name)
        for number, row in view.rows.items():
            if alias in (row["aliases"] or []):
                return {"model_version": view.version(number)}
        raise MlflowError(f"Registered model alias {alias} not found.", "RESOURCE_DOES_NOT_EXIST")


def add_model_version_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route("POST", "model-versions/create", action="write", securable=MODEL)
    def create_model_version(call: Call) -> dict[str, Any]:
        lake, name, source = call.lake, call.text("name"), call.text("source")
        lake.registry.registered_model(name)  # MLflow creates versions of existing models only
        run_id = call.optional_text("run_id")
        if run_id is None and source.startswith("runs:/"):
            run_id = source[len("runs:/") :].split("/", 1)[0] or None
        model_id = call.optional_text("model_id") or (
            source[len("models:/") :] if source.startswith("models:/m-") else None
        )
        if run_id is None and model_id is not None:  # MLflow 3: a logged model, made by its run
            run_id = lake.logged_models.get(model_id).source_run_id
        created = lake.registry.register(
            name,
            run_id=run_id,
            artifact_uri=source,
            description=call.optional_text("description"),
            reuse=False,  # MLflow makes a new version per request, even of the same source
        )
        for key, value in call.key_values("tags").items():
            lake.registry.set_tag(name, key, value, version=created.version)
        return {"model_version": RegistryView(lake, name).version(created.version)}

    @route("GET", "model-versions/get", action="read", securable=MODEL)
    def get_model_version(call: Call) -> dict[str, Any]:
        return {"model_version": RegistryView(call.lake, call.text("name")).version(version_in(call))}

    @route("GET", "model-versions/search", action="read", securable="model:*", filtered=True)
    def search_model_versions(call: Call) -> dict[str, Any]:
        clauses = parse_filter(call.optional_text("filter"), VERSION_FIELDS)
        keys = order_key(call.texts("order_by") or ["name ASC", "version_number DESC"], VERSION_FIELDS)
        name_clauses = [clause for clause in clauses if clause.field == "name"]
        names = [
            name
            for name in call.lake.registry.models()
            if call.may_read(name) and matches({"name": name}, name_clauses, model_value)
        ]
        found = [version for name in names for version in RegistryView(call.lake, name).versions()]
        found = [entity for entity in found if matches(entity, clauses, version_value)]
        ordered = sort_entities(found, keys, version_value)
        return paged(call, ordered, "model_versions", DEFAULT_VERSIONS_PER_SEARCH, MAX_VERSIONS_PER_SEARCH)

    @route("PATCH", "model-versions/update", action="write", securable=MODEL)
    def update_model_version(call: Call) -> dict[str, Any]:
        name, number = call.text("name"), version_in(call)
        call.lake.registry.set_description(name, call.optional_text("description"), version=number)
        return {"model_version": RegistryView(call.lake, name).version(number)}

    @route("POST", "model-versions/transition-stage", action="write", securable=MODEL)
    def transition_stage(call: Call) -> dict[str, Any]:
        name, number = call.text("name"), version_in(call)
        stage = stage_in(call.text("stage"))
        try:
            call.lake.registry.transition(
                name,
                number,
                stage,  # type: ignore[arg-type]
                archive_others=call.boolean("archive_existing_versions"),
            )
        except PolicyViolation as refused:
            raise MlflowError(
                f"The lake's governance policy refused the transition: {refused}", "INVALID_STATE"
            ) from None
        return {"model_version": RegistryView(call.lake, name).version(number)}

    @route("POST", "model-versions/set-tag", action="write", securable=MODEL)
    def set_model_version_tag(call: Call) -> dict[str, Any]:
        value = call.fields.get("value")
        call.lake.registry.set_tag(
            call.text("name"), call.text("key"), "" if value is None else str(value), version=version_in(call)
        )
        return {}

    @route("DELETE", "model-versions/delete-tag", action="write", securable=MODEL)
    def delete_model_version_tag(call: Call) -> dict[str, Any]:
        call.lake.registry.delete_tag(call.text("name"), call.text("key"), version=version_in(call))
        return {}

    @route("DELETE", "model-versions/delete", action="write", securable=MODEL)
    def delete_model_version(call: Call) -> dict[str, Any]:
        call.lake.registry.delete_version(call.text("name"), version_in(call))
        return {}

    @route("GET", "model-versions/get-download-uri", action="read", securable=MODEL)
    def get_download_uri(call: Call) -> dict[str, Any]:
        version = RegistryView(call.lake, call.text("name")).version(version_in(call))
        return {"artifact_uri": download_uri(call.lake, version)}
