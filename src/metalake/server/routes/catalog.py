"""Catalog, history, snapshots, audit and SQL: `/api/v1/tables`, `/snapshots`, `/audit`, `/sql`."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from metalake.errors import InvalidRequest
from metalake.server.api import AsOf
from metalake.server.http import PageRequest, frame_rows
from metalake.server.models import Body, ColumnOut, TableList, TableOut, TableSummary, Written
from metalake.server.rows import AuditRow, Page, SnapshotRow, TableCommit

if TYPE_CHECKING:
    from metalake.core.catalog import TableSpec
    from metalake.lake import Lake
    from metalake.server.api import Api


class SnapshotCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class SqlQuery(Body):
    query: str = Field(min_length=1, max_length=100_000, description="One SELECT (or WITH ... SELECT)")
    params: list[Any] | dict[str, Any] | None = Field(default=None, description="Bound to `?` or `$name`")
    as_of: str | None = Field(default=None, max_length=200, description="A time or snapshot name")
    limit: int | None = Field(default=None, ge=1, description="Rows at most (default 10,000; max 100,000)")


class SqlAnswer(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="True when the query had more rows than `limit`")


def table_summary(lake: "Lake", spec: "TableSpec") -> TableSummary:
    return TableSummary(
        name=spec.name,
        description=spec.description,
        primary_key=list(spec.primary_key),
        version=lake.version(spec.name),
    )


def add_catalog_routes(api: "Api") -> None:
    from fastapi import Request, Response
    from fastapi.responses import Response as RawResponse

    @api.get(
        "/api/v1/tables",
        securable="table:*",
        filtered=True,
        response_model=TableList,
        summary="The lake's tables (those the caller may read)",
    )
    def list_tables(request: Request, response: Response, as_of: AsOf = None) -> TableList:
        readable = api.readable(request)
        with api.reading(request, response, as_of, None) as lake:
            specs = [spec for spec in lake.tables() if readable is None or spec.name in readable]
            return TableList(items=[table_summary(lake, spec) for spec in specs])

    @api.get(
        "/api/v1/tables/{name}",
        securable=lambda path: f"table:{path['name']}",
        response_model=TableOut,
        summary="A table's spec and documentation",
    )
    def get_table(name: str, request: Request, response: Response, as_of: AsOf = None) -> TableOut:
        with api.reading(request, response, as_of, None) as lake:
            spec = lake.spec(name)
            columns = [
                ColumnOut(name=c.name, type=c.type, nullable=c.nullable, description=c.description or None)
                for c in spec.columns
            ]
            return TableOut(**table_summary(lake, spec).model_dump(), columns=columns)

    @api.get(
        "/api/v1/tables/{name}/history",
        securable=lambda path: f"table:{path['name']}",
        response_model=Page[TableCommit],
        summary="A table's commits, newest first",
    )
    def table_history(
        name: str,
        request: Request,
        response: Response,
        as_of: AsOf = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"history:{name}")
        with api.reading(request, response, as_of, None) as lake:
            lake.spec(name)
            return page.cut(lake.history(name, limit=page.offset + page.fetch))

    @api.get(
        "/api/v1/snapshots", securable="lake", response_model=Page[SnapshotRow], summary="Named snapshots"
    )
    def list_snapshots(request: Request, response: Response, as_of: AsOf = None) -> dict[str, Any]:
        with api.reading(request, response, as_of, ["snapshots"]) as lake:
            return {"items": frame_rows(lake.snapshots()), "next_page_token": None}

    @api.post(
        "/api/v1/snapshots",
        securable="lake",
        action="manage",
        response_model=Written,
        status_code=201,
        summary="Pin every table's current version under a name",
    )
    def create_snapshot(body: SnapshotCreate, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        commit = write.lake.snapshot(body.name, description=body.description)
        return {"name": body.name, "version": commit.version}

    @api.get(
        "/api/v1/audit",
        securable="lake",
        response_model=Page[AuditRow],
        summary="Commits of every table: who, when, what, why",
    )
    def audit(
        request: Request,
        response: Response,
        as_of: AsOf = None,
        table: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        page = PageRequest.parse(limit, page_token, f"audit:{table}:{actor}:{since}:{until}")
        filters, params = ["true"], []
        for column, value, operator in (
            ("table_name", table, "="),
            ("actor", actor, "="),
            ("committed_at", since, ">="),
            ("committed_at", until, "<="),
        ):
            if value is not None:
                filters.append(f"{column} {operator} ?")
                params.append(value)
        with api.reading(request, response, as_of, None) as lake:
            if table is not None:
                lake.spec(table)
            query = f"select * from audit_log where {' and '.join(filters)} limit ? offset ?"
            return page.starting(lake.sql(query, [*params, page.fetch, page.offset]).pl())

    @api.post(
        "/api/v1/sql",
        securable="table:*",
        action="read",
        filtered=True,
        response_model=SqlAnswer,
        summary="Run one read-only SELECT over the lake's tables and views",
    )
    def run_sql(body: SqlQuery, request: Request) -> Any:
        from metalake.server.user_sql import DEFAULT_ROW_LIMIT, MAX_ROW_LIMIT, rows_as_json, run_user_sql

        limit = body.limit if body.limit is not None else DEFAULT_ROW_LIMIT
        if limit > MAX_ROW_LIMIT:
            raise InvalidRequest(f"limit may be at most {MAX_ROW_LIMIT:,}, not {limit:,}.", field="limit")
        lake = api.lake_for(request, body.as_of)
        result = run_user_sql(
            lake, body.query, params=body.params, limit=limit, may_read=api.relations_readable(request)
        )
        accept = request.headers.get("accept", "")
        if "text/csv" in accept:
            return RawResponse(
                _csv(result.arrow), media_type="text/csv", headers=_truncated(result.truncated)
            )
        if "application/vnd.apache.arrow.stream" in accept:
            return RawResponse(
                _arrow_stream(result.arrow),
                media_type="application/vnd.apache.arrow.stream",
                headers=_truncated(result.truncated),
            )
        return SqlAnswer(
            columns=result.columns, types=result.types, rows=rows_as_json(result), truncated=result.truncated
        )


def _truncated(truncated: bool) -> dict[str, str]:
    return {"X-Metalake-Truncated": "true" if truncated else "false"}


def _csv(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as csv

    sink = pa.BufferOutputStream()
    csv.write_csv(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _arrow_stream(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
