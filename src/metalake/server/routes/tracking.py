"""Experiments and runs: `/api/v1/experiments`, `/api/v1/runs`, a run, its metric histories, and run writes."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import math
from typing import TYPE_CHECKING, Annotated, Any

from metalake.errors import InvalidRequest, NotReadable
from metalake.server.api import AsOf
from metalake.server.auth import body_fields
from metalake.server.http import PageRequest, json_response, jsonable
from metalake.server.models import (
    ExperimentList,
    ExperimentOut,
    MetricHistory,
    MetricPointOut,
    RunCreate,
    RunCreated,
    RunEnd,
    RunEnded,
    RunLog,
    RunLogged,
    RunOut,
)
from metalake.server.rows import Page, RunRow

if TYPE_CHECKING:
    from metalake.lake import Lake
    from metalake.server.api import Api

RUN_TABLES = ("runs", "params", "run_tags", "metric_summaries", "run_inputs", "artifacts", "model_versions")
SEARCH_TABLES = ("runs", "params", "run_tags", "metric_summaries")
MAX_HISTORY_PAGE = 100_000  # points per page of a full metric history
MAX_POINTS = 100_000  # of a downsampled history


def run_securable(path: Any) -> str:
    return f"run:{path['run_id']}"


def run_experiment(body: Any) -> str:
    """A new run's experiment, named in the body: write on it (or on the lake) lets a caller start runs there,
    creating the experiment if it is new."""
    experiment = body.get("experiment")
    return f"experiment:{experiment}" if isinstance(experiment, str) and experiment else "experiment:*"


def run_answer(lake: "Lake", run_id: str) -> dict[str, Any]:
    """A run as `RunOut` describes it, built as plain JSON: the most frequent read skips model validation."""
    details = lake.runs.get(run_id)
    info = jsonable(details.info)
    return {
        "run_id": details.run_id,
        "experiment": info["experiment"],
        "name": info.get("name"),
        "status": details.status,
        "start_time": info.get("start_time"),
        "end_time": info.get("end_time"),
        "info": info,
        "params": details.params,
        "tags": details.tags,
        "metrics": jsonable(details.metrics),
        "inputs": jsonable(details.inputs),
        "artifacts": jsonable(details.artifacts),
        "model_versions": jsonable(details.model_versions),
    }


def add_tracking_routes(api: "Api") -> None:
    from fastapi import Query, Request, Response

    from metalake.tracking.remote import MetricPoint

    @api.get(
        "/api/v1/experiments",
        securable="experiment:*",
        filtered=True,
        response_model=ExperimentList,
        summary="Experiments (those the caller may read)",
    )
    def list_experiments(request: Request, response: Response, as_of: AsOf = None) -> ExperimentList:
        readable = api.readable(request)
        with api.reading(request, response, as_of, ["runs"]) as lake:
            names = [name for name in lake.runs.experiments() if readable is None or name in readable]
            return ExperimentList(items=[ExperimentOut(name=name) for name in names])

    @api.get(
        "/api/v1/runs",
        securable=lambda path: "experiment:*",
        filtered=True,
        response_model=Page[RunRow],
        summary="Search runs (the `lake.runs.search` expression language), in the experiments the caller may read",
    )
    def search_runs(
        request: Request,
        response: Response,
        as_of: AsOf = None,
        experiment: str | None = None,
        where: Annotated[str | None, Query(max_length=10_000, examples=["metrics.val_auc > 0.8"])] = None,
        order_by: Annotated[list[str] | None, Query(examples=["metrics.val_auc desc"])] = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"runs:{experiment}:{where}:{order_by}")
        readable = api.readable(request)
        if readable is not None and experiment is not None and experiment not in readable:
            raise NotReadable("experiment", experiment)
        with api.reading(request, response, as_of, SEARCH_TABLES) as lake:
            found = lake.runs.search(
                experiment=experiment,
                where=where,
                order_by=order_by,
                limit=page.offset + page.fetch,
                experiments=None if readable is None else readable.names,
            )
            return page.cut(found)

    @api.get("/api/v1/runs/{run_id}", securable=run_securable, response_model=RunOut, summary="One run")
    async def get_run(run_id: str, request: Request, response: Response, as_of: AsOf = None) -> Response:
        def answer() -> Response:
            with api.reading(request, response, as_of, RUN_TABLES) as lake:
                answered: Response = json_response(run_answer(lake, run_id), response)
                return answered

        return await api.run_read(answer)

    @api.get(
        "/api/v1/runs/{run_id}/metrics/{key}",
        securable=run_securable,
        response_model=MetricHistory,
        summary="A metric's history: every point (paged), or downsampled keeping each bucket's extremes",
    )
    def metric_history(
        run_id: str,
        key: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        max_points: int | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> MetricHistory:
        if max_points is not None and not 1 <= max_points <= MAX_POINTS:
            raise InvalidRequest(f"max_points must be between 1 and {MAX_POINTS:,}.", field="max_points")
        page = PageRequest.parse(
            limit, page_token, f"metric:{run_id}:{key}:{max_points}", default=10_000, maximum=MAX_HISTORY_PAGE
        )
        with api.reading(request, response, as_of, ["runs", "metrics"]) as lake:
            whole_id = lake.runs.resolve_id(run_id)
            [(total,)] = lake.sql(
                'select count(*) from metrics where run_id = ? and "key" = ?', [whole_id, key]
            ).fetchall()
            if max_points is not None:
                shown = lake.runs.metric_history(whole_id, key, max_points=max_points).slice(
                    page.offset, page.fetch
                )
            else:
                shown = lake.sql(
                    'select step, "timestamp", "value" from metrics where run_id = ? and "key" = ? '
                    'order by step, "timestamp" limit ? offset ?',
                    [whole_id, key, page.fetch, page.offset],
                ).pl()
            points = [
                MetricPointOut(
                    step=row["step"],
                    timestamp=row["timestamp"],
                    value=row["value"] if math.isfinite(row["value"]) else None,
                )
                for row in shown.head(page.size).iter_rows(named=True)
            ]
            return MetricHistory(
                run_id=whole_id,
                key=key,
                points=points,
                downsampled=max_points is not None and total > max_points,
                total_points=total,
                next_page_token=page.next_token(shown.height > page.size),
            )

    @api.post(
        "/api/v1/runs",
        securable=run_experiment,
        fields=body_fields,
        response_model=RunCreated,
        status_code=201,
        summary="Start a run",
    )
    def create_run(body: RunCreate, request: Request) -> RunCreated:
        write = api.writing(request)
        is_new = write.restricted and body.experiment not in write.lake.experiments.ids_by_name()
        run_id = write.lake.runs.create(
            body.experiment,
            body.name,
            tags=body.tags,
            parent_run_id=body.parent_run_id,
            start_time=body.start_time,
            user=write.actor,
            idempotency_key=write.idempotency_key,
        )
        if is_new:
            write.made(f"experiment:{body.experiment}")
        return RunCreated(run_id=run_id)

    @api.post(
        "/api/v1/runs/{run_id}/log",
        securable=run_securable,
        response_model=RunLogged,
        summary="Log a batch of params, tags and metric points into a run",
    )
    def log_batch(run_id: str, body: RunLog, request: Request) -> RunLogged:
        write = api.writing(request)
        whole_id = write.lake.runs.resolve_id(run_id)
        points = [MetricPoint(m.key, m.value, m.step, m.timestamp) for m in body.metrics]
        write.lake.runs.log_batch(
            whole_id,
            params=body.params,
            tags=body.tags,
            metrics=points,
            idempotency_key=write.idempotency_key,
        )
        return RunLogged(run_id=whole_id, params=len(body.params), tags=len(body.tags), metrics=len(points))

    @api.post(
        "/api/v1/runs/{run_id}/end", securable=run_securable, response_model=RunEnded, summary="End a run"
    )
    def end_run(run_id: str, body: RunEnd, request: Request) -> RunEnded:
        write = api.writing(request)
        whole_id = write.lake.runs.resolve_id(run_id)
        status = write.lake.runs.end(
            whole_id, body.status, end_time=body.end_time, idempotency_key=write.idempotency_key
        )
        return RunEnded(run_id=whole_id, status=status)
