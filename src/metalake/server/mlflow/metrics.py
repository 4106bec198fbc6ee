"""MLflow's metric histories: `metrics/get-history` (every point, paged) and `metrics/get-history-bulk-interval`
(several runs' points at evenly spread steps, as MLflow's charts ask for them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metalake.errors import MlflowError, RunNotFound
from metalake.server.mlflow.entities import millis, page_offset, page_token
from metalake.server.mlflow.protocol import RUN, Call, MlflowRoutes, named, number_out

if TYPE_CHECKING:
    import polars as pl

HISTORY_PAGE = 25_000  # points per page when the client names no max_results (MLflow's client asks for this)
MAX_HISTORY_PAGE = 100_000
MAX_BULK_RUNS = 100  # MLflow's limits of get-history-bulk-interval
MAX_BULK_RESULTS = 2_500  # also the default, as MLflow has it


def add_metric_routes(routes: MlflowRoutes) -> None:
    route = routes.route

    @route("GET", "metrics/get-history", action="read", securable=RUN)
    def get_history(call: Call) -> dict[str, Any]:
        lake = call.lake
        given = call.run_id()
        key = call.text("metric_key")
        size = call.integer("max_results", HISTORY_PAGE, minimum=1, maximum=MAX_HISTORY_PAGE) or HISTORY_PAGE
        offset = page_offset(call.optional_text("page_token"))
        run_id = _run(call, given)
        points = lake.sql(
            'select step, "timestamp", "value" from metrics where run_id = ? and "key" = ? '
            'order by step, "timestamp", "value" limit ? offset ?',
            [run_id, key, size + 1, offset],
        ).fetchall()
        answer: dict[str, Any] = {"metrics": [_point(key, *row) for row in points[:size]]}
        if len(points) > size:
            answer["next_page_token"] = page_token(offset + size)
        return answer

    @route("GET", "metrics/get-history-bulk-interval", action="read", securable=named("run", "run_ids"))
    def get_history_bulk_interval(call: Call) -> dict[str, Any]:
        lake = call.lake
        given = call.texts("run_ids")
        if not given:
            raise MlflowError("Missing value for required parameter 'run_ids'.")
        if len(given) > MAX_BULK_RUNS:
            raise MlflowError(
                f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUNS} run_ids. "
                f"Received {len(given)} run_ids."
            )
        key = call.text("metric_key")
        size = call.integer("max_results", MAX_BULK_RESULTS, minimum=1, maximum=MAX_BULK_RESULTS)
        start, end = call.integer("start_step"), call.integer("end_step")
        if (start is None) != (end is None):
            raise MlflowError("If either start step or end step are specified, both must be specified.")
        if start is not None and end is not None and start > end:
            raise MlflowError("end_step must be greater than start_step.")
        run_ids = [_run(call, run_id) for run_id in given]
        placeholders = ", ".join("?" for _ in run_ids)
        bounds = "and step between ? and ?" if start is not None else ""
        frame: pl.DataFrame = lake.sql(
            f'select run_id, step, "timestamp", "value" from metrics where "key" = ? '
            f'and run_id in ({placeholders}) {bounds} order by run_id, step, "timestamp"',
            [key, *run_ids, *([start, end] if start is not None else [])],
        ).pl()
        chosen = set(sampled_steps(sorted(set(frame.get_column("step").to_list())), size or 1))
        return {
            "metrics": [
                {**_point(key, row["step"], row["timestamp"], row["value"]), "run_id": row["run_id"]}
                for row in frame.iter_rows(named=True)
                if row["step"] in chosen
            ]
        }


def sampled_steps(steps: list[int], wanted: int) -> list[int]:
    """At most `wanted` of the sorted `steps`, spread evenly, the first and the last always among them."""
    if len(steps) <= wanted:
        return steps
    if wanted == 1:
        return [steps[0]]
    picked = {steps[round(index * (len(steps) - 1) / (wanted - 1))] for index in range(wanted)}
    return sorted(picked)


def _run(call: Call, given: str) -> str:
    try:
        return call.lake.runs.resolve_id(given)
    except RunNotFound:
        raise MlflowError(f"Run with id={given} not found", "RESOURCE_DOES_NOT_EXIST") from None


def _point(key: str, step: int, timestamp: Any, value: float) -> dict[str, Any]:
    return {"key": key, "value": number_out(value), "timestamp": millis(timestamp), "step": step}
