"""Deployments and KPIs: `/api/v1/deployments`, `/api/v1/kpis`, observations and the deployments' KPI impact."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from metalake.deployments import Deployment
from metalake.errors import NotReadable
from metalake.server.api import AsOf
from metalake.server.auth import body_fields
from metalake.server.http import PageRequest, frame_rows
from metalake.server.models import Body
from metalake.server.routes.datasets import as_record
from metalake.server.rows import DeploymentRow, KpiImpactRow, KpiRow, ObservationRow, Page

if TYPE_CHECKING:
    from metalake.server.api import Api

DEPLOYMENT_TABLES = ("deployments",)
KPI_TABLES = ("kpis", "kpi_observations", "deployments", "policies")


class DeploymentRecord(Body):
    model: str = Field(min_length=1, max_length=250)
    version: int = Field(ge=1)
    environment: str = Field(min_length=1, max_length=250)
    at: datetime | None = None
    endpoint: str | None = Field(default=None, max_length=2000)
    git_sha: str | None = Field(default=None, max_length=100)
    pipeline_run: str | None = Field(default=None, max_length=250)
    ci_run_id: str | None = Field(default=None, max_length=250)
    reason: str | None = Field(default=None, max_length=2000)


class DeploymentEnd(Body):
    at: datetime | None = None
    reason: str | None = Field(default=None, max_length=2000)


class Observation(Body):
    kpi: str = Field(min_length=1, max_length=250)
    value: float
    observed_at: datetime | None = None
    segment: str | None = Field(default=None, max_length=250)
    environment: str | None = Field(default=None, max_length=250)


class ObservationsWritten(BaseModel):
    observations: int
    version: int = Field(description="The kpi_observations version the batch created")
    deduplicated: bool = Field(description="True when the batch was committed before under its key")


class Observations(Body):
    observations: list[Observation] = Field(min_length=1, max_length=100_000)
    source: str | None = Field(default=None, max_length=250)
    reason: str | None = Field(default=None, max_length=2000)


def add_deployment_routes(api: "Api") -> None:
    from fastapi import Request, Response

    def kpi_securable(path: Any) -> str:
        return f"kpi:{path['name']}"

    def deployment_securable(path: Any) -> str:
        return f"deployment:{path['deployment_id']}"  # decided by grants on its model

    def deployed_model(body: Any) -> str:
        model = body.get("model")
        return f"model:{model}" if isinstance(model, str) and model else "model:*"

    def observed_kpis(body: Any) -> str | tuple[str, ...]:
        observations = body.get("observations")
        if not isinstance(observations, list):
            return "kpi:*"  # the endpoint's validation answers 422, after a decision on the lake
        names = [item.get("kpi") if isinstance(item, dict) else None for item in observations]
        named = sorted({name for name in names if isinstance(name, str) and name})
        if not named or len(named) < len(set(names)):  # one without a KPI name: decided on the lake
            return "kpi:*"
        return tuple(f"kpi:{name}" for name in named)

    @api.get(
        "/api/v1/deployments",
        securable="model:*",
        filtered=True,
        response_model=Page[DeploymentRow],
        summary="Deployments (of the models the caller may read)",
    )
    def list_deployments(
        request: Request,
        response: Response,
        as_of: AsOf = None,
        environment: str | None = None,
        model: str | None = None,
        active: bool | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"deployments:{environment}:{model}:{active}")
        readable = api.readable(request)
        if readable is not None and model is not None and model not in readable:
            raise NotReadable("model", model)
        with api.reading(request, response, as_of, DEPLOYMENT_TABLES) as lake:
            found = lake.deployments.list(environment, model=model, active=active)
            if readable is not None:
                import polars as pl

                found = found.filter(pl.col("model").is_in(sorted(readable.names)))
            return page.cut(found)

    @api.get(
        "/api/v1/deployments/{deployment_id}",
        securable=deployment_securable,
        response_model=Deployment,
        summary="One deployment",
    )
    def get_deployment(
        deployment_id: str, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, DEPLOYMENT_TABLES) as lake:
            return as_record(lake.deployments.get(deployment_id))

    @api.post(
        "/api/v1/deployments",
        securable=deployed_model,
        fields=body_fields,
        response_model=Deployment,
        status_code=201,
        summary="Record that a model version went live in an environment",
    )
    def record_deployment(body: DeploymentRecord, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        deployment = write.lake.deployments.record(
            body.model,
            body.version,
            body.environment,
            at=body.at,
            endpoint=body.endpoint,
            git_sha=body.git_sha,
            pipeline_run=body.pipeline_run,
            ci_run_id=body.ci_run_id,
            reason=body.reason,
            idempotency_key=write.idempotency_key,
        )
        return as_record(deployment)

    @api.post(
        "/api/v1/deployments/{deployment_id}/end",
        securable=deployment_securable,
        response_model=Deployment,
        summary="Record that a deployment stopped serving",
    )
    def end_deployment(deployment_id: str, body: DeploymentEnd, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        ended = write.lake.deployments.end(
            deployment_id, at=body.at, reason=body.reason, idempotency_key=write.idempotency_key
        )
        return as_record(ended)

    @api.get(
        "/api/v1/kpis",
        securable="kpi:*",
        filtered=True,
        response_model=Page[KpiRow],
        summary="KPI definitions (those the caller may read)",
    )
    def list_kpis(request: Request, response: Response, as_of: AsOf = None) -> dict[str, Any]:
        readable = api.readable(request)
        with api.reading(request, response, as_of, KPI_TABLES) as lake:
            found = lake.kpis.list()
            if readable is not None:
                import polars as pl

                found = found.filter(pl.col("kpi").is_in(sorted(readable.names)))
            return {"items": frame_rows(found), "next_page_token": None}

    @api.get(
        "/api/v1/kpis/{name}/observations",
        securable=kpi_securable,
        response_model=Page[ObservationRow],
        summary="A KPI's observations, oldest first",
    )
    def kpi_observations(
        name: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"observations:{name}:{since}:{until}")
        with api.reading(request, response, as_of, KPI_TABLES) as lake:
            lake.kpis.get(name)
            rows = lake.sql(
                "select kpi, value, observed_at, segment, environment, source from kpi_observations "
                "where kpi = ? and observed_at >= coalesce(?::timestamptz, '-infinity'::timestamptz) "
                "and observed_at <= coalesce(?::timestamptz, 'infinity'::timestamptz) "
                "order by observed_at limit ? offset ?",
                [name, since, until, page.fetch, page.offset],
            ).pl()
            return page.starting(rows)

    @api.get(
        "/api/v1/kpis/impact",
        securable="kpi:*",
        filtered=True,
        response_model=Page[KpiImpactRow],
        summary="For each deployment and KPI: the mean before and after, the change, whether it helped (the KPIs "
        "and models the caller may read)",
    )
    def kpi_impact(
        request: Request,
        response: Response,
        as_of: AsOf = None,
        model: str | None = None,
        kpi: str | None = None,
        window: str = "7d",
        environment: str | None = None,
    ) -> dict[str, Any]:
        kpis, models = api.readable(request), api.also_readable(request, "model")
        if kpis is not None and kpi is not None and kpi not in kpis:
            raise NotReadable("KPI", kpi)
        if models is not None and model is not None and model not in models:
            raise NotReadable("model", model)
        with api.reading(request, response, as_of, KPI_TABLES) as lake:
            impact = lake.kpis.impact(model, kpi, window=window, environment=environment)
            if kpis is not None:
                import polars as pl

                impact = impact.filter(pl.col("kpi").is_in(sorted(kpis.names)))
                if models is not None:
                    impact = impact.filter(pl.col("model").is_in(sorted(models.names)))
            return {"items": frame_rows(impact), "next_page_token": None}

    @api.post(
        "/api/v1/kpis/observations",
        securable=observed_kpis,
        fields=body_fields,
        response_model=ObservationsWritten,
        status_code=201,
        summary="Record a batch of KPI observations (all, or none when one is refused)",
    )
    def observe(body: Observations, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        rows = [observation.model_dump(exclude_none=True) for observation in body.observations]
        commit = write.lake.kpis.observe_many(
            rows, source=body.source, reason=body.reason, idempotency_key=write.idempotency_key
        )
        return {"observations": len(rows), "version": commit.version, "deduplicated": commit.deduplicated}
