"""The model registry: `/api/v1/models`, versions by number, alias or stage, stage history, "in a stage at T",
and the governed writes (register, transition, aliases); a policy refusal answers 409 with every failing rule."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from metalake.core.vocabulary import Stage
from metalake.errors import InvalidRequest
from metalake.server.api import AsOf
from metalake.server.http import PageRequest, frame_rows, jsonable
from metalake.server.models import Body
from metalake.server.rows import ModelVersionRow, Page, StagePeriod

if TYPE_CHECKING:
    from metalake.registry.registry import ModelVersion
    from metalake.server.api import Api

REGISTRY_TABLES = ("models", "model_versions", "model_events", "policies")


class ModelVersionOut(BaseModel):
    model: str
    version: int
    run_id: str | None
    artifact_uri: str
    flavor: str | None
    signature: Any = None
    card: dict[str, Any]
    description: str | None
    stage: str
    aliases: list[str]
    registered_at: datetime
    registered_by: str


class ModelList(BaseModel):
    items: list[str]


class InStage(BaseModel):
    model: str
    stage: str
    when: datetime
    version: ModelVersionOut | None = Field(description="The version in the stage then (null: none was)")


class VersionRegister(Body):
    run_id: str | None = None
    artifact_uri: str = Field(min_length=1, max_length=2000)
    flavor: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    card: dict[str, Any] | None = None


class Transition(Body):
    stage: Stage
    reason: str | None = Field(default=None, max_length=2000)
    archive_others: bool = False


class AliasSet(Body):
    version: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=2000)


class AliasDeleted(BaseModel):
    model: str
    alias: str


def version_out(found: "ModelVersion") -> ModelVersionOut:
    return ModelVersionOut(
        model=found.model,
        version=found.version,
        run_id=found.run_id,
        artifact_uri=found.artifact_uri,
        flavor=found.flavor,
        signature=jsonable(found.signature),
        card=jsonable(found.card),
        description=found.description,
        stage=found.stage,
        aliases=list(found.aliases),
        registered_at=found.registered_at,
        registered_by=found.registered_by,
    )


def model_securable(path: Any) -> str:
    return f"model:{path['model']}"


def add_registry_routes(api: "Api") -> None:
    from fastapi import Query, Request, Response

    @api.get(
        "/api/v1/models",
        securable="model:*",
        filtered=True,
        response_model=ModelList,
        summary="Registered models (those the caller may read)",
    )
    def list_models(request: Request, response: Response, as_of: AsOf = None) -> ModelList:
        readable = api.readable(request)
        with api.reading(request, response, as_of, REGISTRY_TABLES) as lake:
            return ModelList(
                items=[name for name in lake.registry.models() if readable is None or name in readable]
            )

    @api.get(
        "/api/v1/models/{model}/versions",
        securable=model_securable,
        response_model=Page[ModelVersionRow],
        summary="A model's versions, with their stage and aliases",
    )
    def list_versions(
        model: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"versions:{model}")
        with api.reading(request, response, as_of, REGISTRY_TABLES) as lake:
            versions = lake.registry.versions(model)
            return page.cut(versions)

    @api.get(
        "/api/v1/models/{model}/versions/{version}",
        securable=model_securable,
        response_model=ModelVersionOut,
        summary="A version by number, alias (`champion`), stage (`production`) or `latest`",
    )
    def get_version(
        model: str, version: str, request: Request, response: Response, as_of: AsOf = None
    ) -> ModelVersionOut:
        with api.reading(request, response, as_of, REGISTRY_TABLES) as lake:
            wanted: int | str = int(version) if version.isascii() and version.isdigit() else version
            return version_out(lake.registry.get(model, wanted))

    @api.get(
        "/api/v1/models/{model}/stages",
        securable=model_securable,
        response_model=Page[StagePeriod],
        summary="Stage history: one row per period a version spent in a stage (who moved it, why)",
    )
    def stage_history(model: str, request: Request, response: Response, as_of: AsOf = None) -> dict[str, Any]:
        with api.reading(request, response, as_of, REGISTRY_TABLES) as lake:
            lake.registry.versions(model)  # an unknown model is a 404 with suggestions
            rows = lake.sql(
                "select * from model_stage_history where model = ? order by valid_from, version", [model]
            ).pl()
            return {"items": frame_rows(rows), "next_page_token": None}

    @api.get(
        "/api/v1/models/{model}/at",
        securable=model_securable,
        response_model=InStage,
        summary="The version that was in a stage at a moment",
    )
    def version_at(
        model: str,
        when: datetime,
        request: Request,
        response: Response,
        stage: Annotated[Stage, Query()] = "production",
        as_of: AsOf = None,
    ) -> InStage:
        with api.reading(request, response, as_of, REGISTRY_TABLES) as lake:
            found = lake.registry.at(model, when, stage)
            return InStage(model=model, stage=stage, when=when, version=version_out(found) if found else None)

    @api.post(
        "/api/v1/models/{model}/versions",
        securable=model_securable,
        response_model=ModelVersionOut,
        status_code=201,
        summary="Register a new version of a model",
    )
    def register(model: str, body: VersionRegister, request: Request) -> ModelVersionOut:
        write = api.writing(request)
        return version_out(
            write.lake.registry.register(
                model,
                run_id=body.run_id,
                artifact_uri=body.artifact_uri,
                flavor=body.flavor,
                description=body.description,
                card=body.card,
            )
        )

    @api.post(
        "/api/v1/models/{model}/versions/{version}/transition",
        securable=model_securable,
        response_model=ModelVersionOut,
        summary="Move a version to a stage, as the stored governance policy allows",
    )
    def transition(model: str, version: int, body: Transition, request: Request) -> ModelVersionOut:
        write = api.writing(request)
        moved = write.lake.registry.transition(
            model, version, body.stage, reason=body.reason, archive_others=body.archive_others
        )
        return version_out(moved)

    @api.post(
        "/api/v1/models/{model}/aliases/{alias}",
        securable=model_securable,
        response_model=ModelVersionOut,
        summary="Point an alias at a version",
    )
    def set_alias(model: str, alias: str, body: AliasSet, request: Request) -> ModelVersionOut:
        write = api.writing(request)
        if alias.isdigit() or alias == "latest":
            raise InvalidRequest(f"{alias!r} cannot be an alias: it would read as a version.", field="alias")
        return version_out(write.lake.registry.set_alias(model, alias, body.version, reason=body.reason))

    @api.delete(
        "/api/v1/models/{model}/aliases/{alias}",
        securable=model_securable,
        response_model=AliasDeleted,
        summary="Remove an alias",
    )
    def delete_alias(model: str, alias: str, request: Request) -> AliasDeleted:
        write = api.writing(request)
        write.lake.registry.delete_alias(model, alias)
        return AliasDeleted(model=model, alias=alias)
