"""Access control over REST: `/api/v1/access/...` grants on a securable (for whoever manages it), decisions,
principals and tokens (for admins), as `lake.access` and `metalake access` give them."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from metalake.errors import NotAuthorized
from metalake.server.api import AsOf
from metalake.server.http import frame_rows
from metalake.server.models import Body
from metalake.server.rows import Page

if TYPE_CHECKING:
    from metalake.server.api import Api

ACCESS_TABLES = ("principals", "group_members", "tokens", "grants")


class GrantRow(BaseModel):
    holder: str = Field(description="Who holds the grant (a user, a service account or a group)")
    privilege: str
    securable: str
    grant_id: str
    granted_at: datetime
    granted_by: str
    reason: str | None = None


class GrantRequest(Body):
    principal: str = Field(min_length=1, max_length=128)
    privilege: Literal["read", "write", "manage", "unmask", "admin"]
    reason: str | None = Field(default=None, max_length=2000)


class RevokeAnswer(BaseModel):
    revoked: list[str] = Field(description="Ids of the grants that ended")


class DecisionOut(BaseModel):
    principal: str
    action: str
    securable: str
    allowed: bool
    grant_id: str | None = None
    reason: str


class PrincipalRow(BaseModel):
    principal: str
    kind: str
    enabled: bool
    groups: str | None = None
    created_at: datetime
    created_by: str
    description: str | None = None


class PrincipalCreate(Body):
    name: str = Field(min_length=1, max_length=128)
    kind: Literal["user", "service", "group"] = "user"
    description: str | None = Field(default=None, max_length=2000)


class TokenCreate(Body):
    expires: str | None = Field(default=None, max_length=100, description="A duration (30d) or an ISO time")
    name: str | None = Field(default=None, max_length=250)


class TokenIssuedOut(BaseModel):
    token_id: str
    token: str = Field(description="The token, shown this once: the lake keeps only its hash")
    principal: str
    expires_at: datetime | None = None


def add_access_routes(api: "Api") -> None:
    from fastapi import Request, Response

    def path_securable(path: Any) -> str:
        return str(path["securable"])

    @api.get(
        "/api/v1/access/securables/{securable}/grants",
        securable=path_securable,
        action="manage",
        response_model=Page[GrantRow],
        summary="The grants that decide on a securable (its own and the lake's)",
    )
    def list_grants(
        securable: str, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, ACCESS_TABLES) as lake:
            return {"items": frame_rows(lake.access.list(securable=securable)), "next_page_token": None}

    @api.post(
        "/api/v1/access/securables/{securable}/grants",
        securable=path_securable,
        action="manage",
        response_model=GrantRow,
        status_code=201,
        summary="Grant a privilege on a securable",
    )
    def grant(securable: str, body: GrantRequest, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        may_grant_admin = (
            not write.restricted or write.lake.access.check(write.actor, "admin", "lake").allowed
        )
        if body.privilege == "admin" and not may_grant_admin:
            raise NotAuthorized("Only an admin grants admin.")
        given = write.lake.access.grant(body.principal, body.privilege, securable, reason=body.reason)
        return {
            "holder": given.principal,
            "privilege": given.privilege,
            "securable": given.securable,
            "grant_id": given.grant_id,
            "granted_at": given.granted_at,
            "granted_by": given.granted_by,
            "reason": given.reason,
        }

    @api.delete(
        "/api/v1/access/securables/{securable}/grants",
        securable=path_securable,
        action="manage",
        response_model=RevokeAnswer,
        summary="Revoke a principal's privilege on a securable",
    )
    def revoke(
        securable: str, principal: str, privilege: str, request: Request, reason: str | None = None
    ) -> dict[str, Any]:
        write = api.writing(request)
        ended = write.lake.access.revoke(principal, privilege, securable, reason=reason)
        return {"revoked": [grant.grant_id for grant in ended]}

    @api.get(
        "/api/v1/access/check",
        securable="lake",
        action="admin",
        response_model=DecisionOut,
        summary="May a principal do an action on a securable, and which grant decides?",
    )
    def check(
        principal: str, action: str, securable: str, request: Request, response: Response, as_of: AsOf = None
    ) -> dict[str, Any]:
        with api.reading(request, response, as_of, ACCESS_TABLES) as lake:
            decision = lake.access.check(principal, action, securable)
        return {
            "principal": decision.principal,
            "action": decision.action,
            "securable": decision.securable,
            "allowed": decision.allowed,
            "grant_id": decision.grant.grant_id if decision.grant else None,
            "reason": decision.reason,
        }

    @api.get(
        "/api/v1/access/principals",
        securable="lake",
        action="admin",
        response_model=Page[PrincipalRow],
        summary="Users, service accounts and groups",
    )
    def list_principals(request: Request, response: Response, as_of: AsOf = None) -> dict[str, Any]:
        with api.reading(request, response, as_of, ACCESS_TABLES) as lake:
            return {"items": frame_rows(lake.access.principals()), "next_page_token": None}

    @api.post(
        "/api/v1/access/principals",
        securable="lake",
        action="admin",
        response_model=PrincipalRow,
        status_code=201,
        summary="Create a user, service account or group",
    )
    def create_principal(body: PrincipalCreate, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        made = write.lake.access.create_principal(body.name, kind=body.kind, description=body.description)
        return {
            "principal": made.name,
            "kind": made.kind,
            "enabled": made.enabled,
            "created_at": made.created_at,
            "created_by": made.created_by,
            "description": made.description,
        }

    @api.post(
        "/api/v1/access/principals/{name}/tokens",
        securable="lake",
        action="admin",
        response_model=TokenIssuedOut,
        status_code=201,
        summary="Make an API token (shown once)",
    )
    def create_token(name: str, body: TokenCreate, request: Request) -> dict[str, Any]:
        write = api.writing(request)
        issued = write.lake.access.create_token(name, expires=body.expires, name=body.name)
        return {
            "token_id": issued.token_id,
            "token": issued.token,
            "principal": issued.principal,
            "expires_at": issued.expires_at,
        }
