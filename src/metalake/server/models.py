"""The REST API's answers and request bodies as pydantic models, so that `/openapi.json` describes them exactly."""

# No `from __future__ import annotations`: pydantic reads the annotations at runtime.
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    """A request body: unknown fields are refused rather than ignored (a typo should not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable error code (the MetalakeError's `code`)")
    message: str = Field(description="What failed, where, and how to fix it")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: str
    queued: int
    committed: int
    commits: int
    dead_letters: int
    run_flushes_pending: int = 0
    lake: str | None = None


# -- catalog ------------------------------------------------------------------------------------------------------


class ColumnOut(BaseModel):
    name: str
    type: str
    nullable: bool
    description: str | None = None


class TableSummary(BaseModel):
    name: str
    description: str | None = None
    primary_key: list[str]
    version: int | None = Field(
        description="The table's Delta version at the answer's moment (null: no commit)"
    )


class TableOut(TableSummary):
    columns: list[ColumnOut]


class TableList(BaseModel):
    items: list[TableSummary]


# -- tracking -----------------------------------------------------------------------------------------------------


class ExperimentOut(BaseModel):
    name: str


class ExperimentList(BaseModel):
    items: list[ExperimentOut]


class MetricSummaryOut(BaseModel):
    model_config = ConfigDict(extra="allow")


class RunOut(BaseModel):
    run_id: str
    experiment: str
    name: str | None = None
    status: str = Field(description="scheduled, running, finished, failed, killed, or lost (no heartbeat)")
    start_time: datetime | None = None
    end_time: datetime | None = None
    info: dict[str, Any] = Field(description="The run's state and context as `runs_current` has it")
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, dict[str, Any]] = Field(description="Per metric: last, min, max, mean, count, ...")
    inputs: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    model_versions: list[dict[str, Any]]


class MetricPointOut(BaseModel):
    step: int
    timestamp: datetime
    value: float | None


class MetricHistory(BaseModel):
    run_id: str
    key: str
    points: list[MetricPointOut]
    downsampled: bool = Field(description="True when `max_points` cut the history (bucket extremes kept)")
    total_points: int
    next_page_token: str | None = None


class RunCreate(Body):
    experiment: str = Field(min_length=1, max_length=250)
    name: str | None = Field(default=None, max_length=250)
    tags: dict[str, str] = Field(default_factory=dict)
    parent_run_id: str | None = None
    start_time: datetime | None = None


class RunCreated(BaseModel):
    run_id: str


class MetricIn(Body):
    key: str
    value: float = Field(description="A real number; NaN and infinities as the strings 'NaN', 'Infinity'")
    step: int = 0
    timestamp: datetime | None = None


class RunLog(Body):
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=100_000)


class RunLogged(BaseModel):
    run_id: str
    params: int
    tags: int
    metrics: int


class RunEnd(Body):
    status: Literal["finished", "failed", "killed"] = "finished"
    end_time: datetime | None = None


class RunEnded(BaseModel):
    run_id: str
    status: str


# -- generic write answers ----------------------------------------------------------------------------------------


class Written(BaseModel):
    """What a write committed."""

    model_config = ConfigDict(extra="allow")
