"""Datasets and data quality: `/api/v1/datasets`, versions, a version, diffs, validations, results, scorecard.

Registering a version reads its data on the server, so the URI must be object storage or a path under one of the
server's data roots (`metalake serve --data-root DIR`): a client can never make the server read its own files.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from metalake.datasets.datasets import DatasetVersion
from metalake.errors import InvalidRequest, NotAuthorized
from metalake.quality.validation import Validation
from metalake.server.api import AsOf
from metalake.server.http import PageRequest, frame_rows, jsonable
from metalake.server.models import Body
from metalake.server.rows import (
    DatasetRow,
    DatasetVersionRow,
    ExpectationResult,
    Page,
    ScorecardRow,
    ValidationRow,
)

if TYPE_CHECKING:
    from metalake.server.api import Api

DATASET_TABLES = ("datasets", "dataset_versions")
QUALITY_TABLES = ("datasets", "dataset_versions", "dq_validations", "dq_results")
REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "abfss://")


class Record(BaseModel):
    """A lake record (its fields as the Python API documents them)."""

    model_config = ConfigDict(extra="allow")


class DatasetRegister(Body):
    uri: str = Field(
        min_length=1, max_length=4000, description="Object storage URI, or a path under a data root"
    )
    description: str | None = Field(default=None, max_length=10_000)
    owner: str | None = Field(default=None, max_length=250)
    tags: dict[str, str] = Field(default_factory=dict)
    run_id: str | None = None
    sensitive: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Columns whose values are sensitive: readers without unmask see only their counts in the "
        "profile (later versions keep the marks)",
    )


class ValidationRequest(Body):
    suite: list[Any] | dict[str, Any] = Field(
        description="Expectations as a list (`[{expect_column_values_to_not_be_null: {column: id}}]`), a GX suite "
        "`{name, expectations}`, or a pandera schema document"
    )
    version: int | None = Field(default=None, ge=1, description="Default: the latest version")
    run_id: str | None = None


def as_record(value: Any) -> dict[str, Any]:
    record: dict[str, Any] = jsonable(dataclasses.asdict(value))
    return record


def check_data_uri(uri: str, roots: tuple[Path, ...]) -> str:
    """The URI if the server may read it: object storage, or a path inside a configured data root."""
    if uri.lower().startswith(REMOTE_SCHEMES):
        return uri
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidRequest(
            f"Cannot read {uri!r}: give an object storage URI ({', '.join(REMOTE_SCHEMES)}) or a path."
        )
    path = Path(uri.removeprefix("file://")).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        where = ", ".join(str(root) for root in roots) or "none is configured"
        raise NotAuthorized(
            f"The server reads local data only under its data roots ({where}); {uri!r} is outside them. Start the "
            "server with `metalake serve --data-root DIR`, or register the data from object storage."
        )
    return str(path)


def add_dataset_routes(api: "Api", *, data_roots: tuple[Path, ...]) -> None:
    from fastapi import Request, Response

    def dataset_securable(path: Any) -> str:
        return f"dataset:{path['name']}"

    @api.get(
        "/api/v1/datasets",
        securable="dataset:*",
        filtered=True,
        response_model=Page[DatasetRow],
        summary="Datasets (those the caller may read)",
    )
    def list_datasets(
        request: Request,
        response: Response,
        as_of: AsOf = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, "datasets")
        readable = api.readable(request)
        with api.reading(request, response, as_of, DATASET_TABLES) as lake:
            found = lake.datasets.list()
            if readable is not None:
                import polars as pl

                found = found.filter(pl.col("dataset").is_in(sorted(readable.names)))
            return page.cut(found)

    @api.get(
        "/api/v1/datasets/{name}/versions",
        securable=dataset_securable,
        response_model=Page[DatasetVersionRow],
        summary="A dataset's versions",
    )
    def list_dataset_versions(
        name: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"dataset-versions:{name}")
        with api.reading(request, response, as_of, DATASET_TABLES) as lake:
            return page.cut(lake.datasets.history(name))

    @api.get(
        "/api/v1/datasets/{name}/versions/{version}",
        securable=dataset_securable,
        response_model=DatasetVersion,
        summary="One version: schema, profile, fingerprint, source",
    )
    def get_dataset_version(
        name: str, version: int, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, DATASET_TABLES) as lake:
            return as_record(lake.datasets.get(name, version))

    @api.get(
        "/api/v1/datasets/{name}/diff",
        securable=dataset_securable,
        response_model=Record,
        summary="How two versions differ: schema changes and profiles side by side",
    )
    def diff_versions(
        name: str, v1: int, v2: int, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, DATASET_TABLES) as lake:
            diff = lake.datasets.diff(name, v1, v2)
            return {
                "name": diff.name,
                "old_version": diff.old_version,
                "new_version": diff.new_version,
                "breaking": diff.breaking,
                "schema_changes": [jsonable(dataclasses.asdict(change)) for change in diff.schema_changes],
                "row_count": list(diff.row_count),
                "profile": frame_rows(diff.profile),
            }

    @api.get(
        "/api/v1/datasets/{name}/validations",
        securable=dataset_securable,
        response_model=Page[ValidationRow],
        summary="Validations of a dataset, newest first",
    )
    def list_validations(
        name: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        version: int | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"validations:{name}:{version}")
        with api.reading(request, response, as_of, QUALITY_TABLES) as lake:
            lake.datasets.get(name, version)  # unknown names and versions answer 404
            found = lake.quality.validations(name)
            if version is not None:
                found = found.filter(found["version"] == version)
            return page.cut(found)

    @api.get(
        "/api/v1/validations/{validation_id}/results",
        securable=lambda path: f"validation:{path['validation_id']}",  # decided by grants on its dataset
        response_model=Page[ExpectationResult],
        summary="One result per expectation of a validation",
    )
    def validation_results(
        validation_id: str, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, QUALITY_TABLES) as lake:
            return {"items": frame_rows(lake.quality.results(validation_id)), "next_page_token": None}

    @api.get(
        "/api/v1/quality/scorecard",
        securable="dataset:*",
        filtered=True,
        response_model=Page[ScorecardRow],
        summary="Each dataset's latest validation outcome (the datasets the caller may read)",
    )
    def scorecard(request: Request, response: Response, as_of: AsOf = None) -> dict[str, Any]:
        readable = api.readable(request)
        with api.reading(request, response, as_of, QUALITY_TABLES) as lake:
            found = lake.quality.scorecard()
            if readable is not None:
                import polars as pl

                found = found.filter(pl.col("dataset").is_in(sorted(readable.names)))
            return {"items": frame_rows(found), "next_page_token": None}

    @api.post(
        "/api/v1/datasets/{name}/versions",
        securable=dataset_securable,
        response_model=DatasetVersion,
        status_code=201,
        summary="Register a version from data at a URI (read by the server)",
    )
    def register_version(name: str, body: DatasetRegister, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        uri = check_data_uri(body.uri, data_roots)
        version = write.lake.datasets.register(
            name,
            uri,
            description=body.description,
            owner=body.owner,
            tags=body.tags,
            run_id=body.run_id,
            sensitive=body.sensitive,
        )
        if api.masks_for(request):  # the answer as the caller reads it: sensitive columns' statistics hidden
            answered = api.lake_for(request, None).datasets.get(name, version.version)
            version = dataclasses.replace(
                answered, created=version.created, metadata_updated=version.metadata_updated
            )
        return as_record(version)

    @api.post(
        "/api/v1/datasets/{name}/validations",
        securable=dataset_securable,
        response_model=Validation,
        status_code=201,
        summary="Validate a version with a suite and record the outcome",
    )
    def validate(name: str, body: ValidationRequest, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        current = write.lake.datasets.get(name, body.version)
        if current.source_uri is not None:
            check_data_uri(current.source_uri, data_roots)
        validation = write.lake.quality.validate(
            name,
            suite=body.suite,
            version=body.version,
            run_id=body.run_id,
            idempotency_key=write.idempotency_key,
        )
        return as_record(validation)
