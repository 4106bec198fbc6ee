"""The lake's experiments and runs as MLflow's JSON entities (mlflow/protos/service.proto): ids as strings, times
in epoch milliseconds, statuses in upper case, key/value lists; and MLflow's system tags as the lake's fields."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.errors import MlflowError
from metalake.server.mlflow.protocol import number_out

if TYPE_CHECKING:
    from metalake.tracking.experiments import Experiment
    from metalake.tracking.search import RunDetails

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MILLISECOND = timedelta(milliseconds=1)

# metalake status -> MLflow's; a `lost` run (its process died) is still RUNNING to MLflow, which has no such state
STATUS_OUT = {
    "scheduled": "SCHEDULED",
    "running": "RUNNING",
    "lost": "RUNNING",
    "finished": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
}
STATUS_IN = {"SCHEDULED": "scheduled", "RUNNING": "running", "FINISHED": "finished", "FAILED": "failed"}
STATUS_IN["KILLED"] = "killed"

# MLflow's system tags that name a field of the lake's runs (the tags are kept too)
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
PARENT_RUN_TAG = "mlflow.parentRunId"
SOURCE_NAME_TAG = "mlflow.source.name"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
DATASET_CONTEXT_TAG = "mlflow.data.context"


def millis(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MILLISECOND


def from_millis(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(milliseconds=value)


def key_value_list(values: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"key": key, "value": str(value)} for key, value in values.items()]


def run_status_in(status: str) -> str:
    """MLflow's run status -> the lake's; INVALID_PARAMETER_VALUE naming the valid ones otherwise."""
    found = STATUS_IN.get(str(status).upper())
    if found is None:
        raise MlflowError(f"Invalid run status {status!r}: use one of {', '.join(STATUS_IN)}.")
    return found


def experiment_out(experiment: Experiment) -> dict[str, Any]:
    body: dict[str, Any] = {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location or default_artifact_location(experiment),
        "lifecycle_stage": "deleted" if experiment.deleted else "active",
        "tags": key_value_list(experiment.tags),
    }
    created, updated = millis(experiment.created_at), millis(experiment.updated_at)
    if created is not None:
        body["creation_time"] = created
    if updated is not None:
        body["last_update_time"] = updated
    return body


def default_artifact_location(experiment: Experiment) -> str:
    """Where MLflow clients put an experiment's artifacts: the server's artifact proxy, into the lake."""
    return f"mlflow-artifacts:/{experiment.experiment_id}"


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"


def run_out(details: RunDetails, experiment_id: str) -> dict[str, Any]:
    """One run as MLflow's `Run`: info, data (latest metric values, params, tags) and dataset inputs."""
    info = details.info
    tags = dict(details.tags)
    if info.get("name") and RUN_NAME_TAG not in tags:
        tags[RUN_NAME_TAG] = info["name"]
    if info.get("user") and USER_TAG not in tags:
        tags[USER_TAG] = info["user"]
    if info.get("parent_run_id") and PARENT_RUN_TAG not in tags:
        tags[PARENT_RUN_TAG] = info["parent_run_id"]
    run_info: dict[str, Any] = {
        "run_id": details.run_id,
        "run_uuid": details.run_id,
        "run_name": info.get("name") or "",
        "experiment_id": experiment_id,
        "user_id": info.get("user") or "",
        "status": STATUS_OUT.get(details.status, "RUNNING"),
        "start_time": millis(info.get("start_time")),
        "artifact_uri": run_artifact_uri(experiment_id, details.run_id),
        "lifecycle_stage": "deleted" if info.get("deleted") else "active",
    }
    end = millis(info.get("end_time"))
    if end is not None:
        run_info["end_time"] = end
    metrics = [
        {
            "key": key,
            "value": number_out(summary["last_value"]),
            "timestamp": millis(summary.get("last_timestamp")) or 0,
            "step": summary["last_step"],
        }
        for key, summary in details.metrics.items()
    ]
    return {
        "info": run_info,
        "data": {"metrics": metrics, "params": key_value_list(details.params), "tags": key_value_list(tags)},
        "inputs": {"dataset_inputs": [dataset_input_out(row) for row in details.inputs]},
    }


def dataset_input_out(row: Mapping[str, Any]) -> dict[str, Any]:
    dataset = {
        "name": row.get("dataset") or "",
        "digest": row.get("digest") or "",
        "source_type": row.get("source_type") or ("metalake" if row.get("version") else "unknown"),
        "source": row.get("path") or "",
    }
    for field in ("schema", "profile"):
        if row.get(field):
            dataset[field] = row[field]
    tags = [{"key": DATASET_CONTEXT_TAG, "value": row["context"]}] if row.get("context") else []
    return {"tags": tags, "dataset": dataset}


def dataset_input_in(item: Mapping[str, Any]) -> dict[str, Any]:
    """One `DatasetInput` of a log-inputs request -> a `run_inputs` row."""
    dataset = item.get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("name"):
        raise MlflowError("Every dataset input needs a 'dataset' with a 'name'.")
    tags = {tag.get("key"): tag.get("value") for tag in item.get("tags") or [] if isinstance(tag, dict)}
    return {
        "dataset": str(dataset["name"]),
        "version": None,
        "path": _text_or_none(dataset.get("source")),
        "context": _text_or_none(tags.get(DATASET_CONTEXT_TAG)),
        "digest": _text_or_none(dataset.get("digest")),
        "source_type": _text_or_none(dataset.get("source_type")),
        "schema": _text_or_none(dataset.get("schema")),
        "profile": _text_or_none(dataset.get("profile")),
    }


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str | None) -> int:
    """The offset a page token carries; INVALID_PARAMETER_VALUE for a token this server did not give."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise MlflowError(f"Invalid page token {token!r}: pass the next_page_token of the previous page.")
