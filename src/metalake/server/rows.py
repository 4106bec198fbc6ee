"""The rows that listings answer, one model per kind, so that `/openapi.json` says what each column holds.

Every column is nullable, as in the lake; `extra="allow"` keeps columns a model does not name (a search's
`params.K`, `tags.K` and `metrics.K`, or columns a later version adds) instead of dropping them.
"""

# No `from __future__ import annotations`: pydantic reads the annotations at runtime.
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Row(BaseModel):
    model_config = ConfigDict(extra="allow")


Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    """One page of a listing; pass `next_page_token` as `page_token` for the next (null: no more)."""

    items: list[Item]
    next_page_token: str | None = Field(default=None, description="Token of the next page; null when none")


class TableCommit(Row):
    """One commit of a table, newest first."""

    version: int | None = None
    timestamp: datetime | None = None
    operation: str | None = None
    actor: str | None = None
    reason: str | None = None
    rows_added: int | None = None
    idempotency_key: str | None = None


class SnapshotRow(Row):
    """A named snapshot: when it was pinned, by whom, how many tables."""

    snapshot: str | None = None
    description: str | None = None
    pinned_at: datetime | None = None
    pinned_by: str | None = None
    tables: int | None = None


class AuditRow(Row):
    """One commit of any table (the audit_log view)."""

    table_name: str | None = None
    version: int | None = None
    committed_at: datetime | None = None
    operation: str | None = None
    actor: str | None = None
    reason: str | None = None
    idempotency_key: str | None = None
    rows_added: int | None = None


class ModelVersionRow(Row):
    """A model version with its current stage and aliases."""

    model: str | None = None
    version: int | None = None
    stage: str | None = None
    stage_since: datetime | None = None
    aliases: list[str] | None = None
    run_id: str | None = None
    artifact_uri: str | None = None
    flavor: str | None = None
    description: str | None = None
    registered_at: datetime | None = None
    registered_by: str | None = None


class StagePeriod(Row):
    """A period a version spent in a stage (the model_stage_history view)."""

    model: str | None = None
    version: int | None = None
    stage: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    changed_by: str | None = None
    reason: str | None = None
    override: bool | None = None


class DatasetRow(Row):
    """A dataset and its latest version."""

    dataset: str | None = None
    version: int | None = None
    versions: int | None = None
    row_count: int | None = None
    bytes: int | None = None
    file_count: int | None = None
    fingerprint: str | None = None
    source_uri: str | None = None
    source_format: str | None = None
    delta_version: int | None = None
    breaking_change: bool | None = None
    description: str | None = None
    owner: str | None = None
    tags: str | None = None
    registered_at: datetime | None = None
    registered_by: str | None = None


class DatasetVersionRow(Row):
    """One version of a dataset."""

    version: int | None = None
    rows: int | None = None
    bytes: int | None = None
    files: Any = None
    fingerprint: str | None = None
    schema_changes: str | None = None
    breaking: bool | None = None
    source: str | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None


class ValidationRow(Row):
    """One validation of a dataset version."""

    validation_id: str | None = None
    dataset: str | None = None
    version: int | None = None
    suite_name: str | None = None
    suite_hash: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    success: bool | None = None
    evaluated: int | None = None
    successful: int | None = None
    unsuccessful: int | None = None
    duration_ms: float | None = None
    validated_at: datetime | None = None
    run_id: str | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None


class ExpectationResult(Row):
    """One expectation's outcome within a validation."""

    validation_id: str | None = None
    expectation_type: str | None = None
    column: str | None = None
    success: bool | None = None
    observed_value: str | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    severity: str | None = None
    kwargs: str | None = None
    unexpected_sample: str | None = None
    details: str | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None


class ScorecardRow(Row):
    """A dataset's latest and recent validation outcomes."""

    dataset: str | None = None
    latest_validation_id: str | None = None
    latest_version: int | None = None
    latest_suite: str | None = None
    latest_engine: str | None = None
    latest_success: bool | None = None
    latest_pass_rate: float | None = None
    latest_validated_at: datetime | None = None
    recent_validations: int | None = None
    recent_success_rate: float | None = None
    recent_pass_rates: list[float | None] | None = None
    trend: str | None = None
    validations: int | None = None


class DeploymentRow(Row):
    """One deployment of a model version to an environment."""

    deployment_id: str | None = None
    model: str | None = None
    version: int | None = None
    environment: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    is_active: bool | None = None
    endpoint: str | None = None
    git_sha: str | None = None
    ci_run_id: str | None = None
    pipeline_run: str | None = None
    start_reason: str | None = None
    end_reason: str | None = None
    replace_active: bool | None = None
    replaced: list[str] | None = None
    previous_deployment_id: str | None = None
    previous_version: int | None = None
    deployed_by: str | None = None
    recorded_at: datetime | None = None


class KpiRow(Row):
    """A KPI definition and a summary of its observations."""

    kpi: str | None = None
    unit: str | None = None
    direction: str | None = None
    description: str | None = None
    owner: str | None = None
    tags: str | None = None
    models: str | None = None
    defined_at: datetime | None = None
    updated_at: datetime | None = None
    observations: int | None = None
    first_observed_at: datetime | None = None
    last_observed_at: datetime | None = None
    last_value: float | None = None


class KpiImpactRow(Row):
    """A deployment's effect on a KPI: means before and after (the model_kpi_impact view)."""

    deployment_id: str | None = None
    model: str | None = None
    version: int | None = None
    environment: str | None = None
    deployed_at: datetime | None = None
    ended_at: datetime | None = None
    previous_version: int | None = None
    kpi: str | None = None
    segment: str | None = None
    unit: str | None = None
    direction: str | None = None
    window_s: float | None = None
    before_from: datetime | None = None
    after_until: datetime | None = None
    before_mean: float | None = None
    before_count: int | None = None
    after_mean: float | None = None
    after_count: int | None = None
    change: float | None = None
    relative_change: float | None = None
    improved: bool | None = None
    registered: bool | None = None
    run_id: str | None = None
    offline_metrics: Any = None
    training_inputs: int | None = None
    validated_inputs: int | None = None
    training_data_ok: bool | None = None
    training_data_pass_rate: float | None = None
    note: str | None = None


class LineageEdge(Row):
    """An edge of the lineage graph reached by a walk."""

    depth: int | None = None
    source_node: str | None = None
    target_node: str | None = None
    edge_type: str | None = None
    origin: str | None = None
    runs: int | None = None
    last_run_id: str | None = None
    source_version: str | None = None
    target_version: str | None = None
    last_seen: datetime | None = None


class RunRow(Row):
    """A run found by a search; also params.K, tags.K and metrics.K columns."""

    run_id: str | None = None
    experiment: str | None = None
    name: str | None = None
    status: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: float | None = None
    parent_run_id: str | None = None
    user: str | None = None
    source: str | None = None


class ObservationRow(Row):
    """One observed value of a KPI."""

    kpi: str | None = None
    value: float | None = None
    observed_at: datetime | None = None
    segment: str | None = None
    environment: str | None = None
    source: str | None = None
