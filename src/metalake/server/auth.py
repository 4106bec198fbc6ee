"""Who is asking, and may they: the one authorization seam every route goes through.

Each route is declared with the action it performs and the securable it touches (server/api.py), and FastAPI
calls `Authorize` before the endpoint: it authenticates the request, then `authorize` decides through the lake's
grants (`lake.access.check`) and the access log records every denial and every write. A test lists every route
and fails if one is not behind this seam.

Three ways to serve: tokens of the lake's principals (the default: `metalake access init` makes the first admin),
one shared token (`--token`, every holder may do everything), or no authentication (`--no-auth`, loopback only).
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations (Request) at runtime.
import base64
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fastapi import Request

from metalake.errors import NotAuthenticated, NotAuthorized, NotReadable

if TYPE_CHECKING:
    from metalake.lake import Lake
    from metalake.server.access_log import AccessLog

Action = Literal["read", "write", "manage", "admin"]
AuthMode = Literal["lake", "token", "none"]


@dataclass(frozen=True)
class Principal:
    """Who sent a request. `unrestricted`: every action is allowed (no authentication, or the shared token)."""

    name: str
    unrestricted: bool = False


ANONYMOUS = Principal("anonymous", unrestricted=True)
TOKEN_HOLDER = Principal("token", unrestricted=True)


def credentials(request: Request) -> str | None:
    """The token a request carries: `Authorization: Bearer TOKEN`, or HTTP Basic with the token as password
    (MLflow's MLFLOW_TRACKING_TOKEN sends the first, MLFLOW_TRACKING_USERNAME/PASSWORD the second)."""
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        return given
    if scheme.lower() == "basic" and given:
        try:
            _, _, password = base64.b64decode(given, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or None
    return None


class Authenticator:
    """Turns a request into a Principal, by the server's mode (see the module docstring)."""

    def __init__(self, mode: AuthMode, *, lake: "Lake", token: str | None = None):
        if mode == "token" and not token:
            raise ValueError("The shared-token mode needs the token.")
        self.mode = mode
        self._lake = lake
        self._token = token

    def principal(self, request: Request) -> Principal:
        if self.mode == "none":
            return ANONYMOUS
        given = credentials(request)
        if self.mode == "token":
            if given is not None and hmac.compare_digest(given.encode(), (self._token or "").encode()):
                return TOKEN_HOLDER
            raise NotAuthenticated("Send the server's token as `Authorization: Bearer TOKEN`.")
        if given is None:
            raise NotAuthenticated(
                "Send a token as `Authorization: Bearer TOKEN` (MLflow clients: MLFLOW_TRACKING_TOKEN). An admin "
                "creates one with `metalake access token create NAME`."
            )
        return Principal(self._lake.access.authenticate(given).name)


def authorize(lake: "Lake", principal: Principal, action: Action, securable: str) -> str | None:
    """Allow, or refuse `principal` doing `action` on `securable`; returns the id of the grant that allowed it.

    A refused read of a named object answers 404 (NotReadable), as if it did not exist, so that names do not
    leak; a refused write of an object the principal may read answers 403 (NotAuthorized), as does any refusal
    on a kind as a whole (`experiment:*`: lists, searches and creations, decided by a grant on the lake).
    """
    if principal.unrestricted:
        return None
    target = securable_for_grants(lake, securable)
    decision = lake.access.check(principal.name, action, target)
    if decision.allowed:
        return decision.grant.grant_id if decision.grant is not None else None
    names_one = securable != "lake" and not securable.endswith(":*")
    if names_one and (action == "read" or not lake.access.check(principal.name, "read", target).allowed):
        kind, _, name = securable.partition(":")
        raise NotReadable(kind, name)
    raise NotAuthorized(
        f"{principal.name} may not {action} {target}: {decision.reason}. An admin, or a principal with manage "
        f"on it, can allow it: `metalake access grant {principal.name} {action} {target}`."
    )


def securable_for_grants(lake: "Lake", securable: str) -> str:
    """What grants are given on, for what a route names: a run is its experiment's (an unknown run, the lake's);
    a kind as a whole (`run:*`) and artifacts are decided by grants on the lake."""
    kind, _, name = securable.partition(":")
    if securable == "lake" or name == "*" or kind == "artifact":
        return "lake"
    if kind == "run":
        try:
            return f"experiment:{lake.runs.request_state(name)['experiment']}"
        except LookupError:
            return "lake"
    return securable


def grant_creator(lake: "Lake", principal: "Principal | None", securable: str) -> None:
    """Whoever creates an experiment, model or dataset through the server manages it (a grant of manage, unless
    it manages it already): without this, a principal allowed to create would lose what it made when its
    lake-wide grant goes."""
    if principal is None or principal.unrestricted:
        return
    if lake.access.check(principal.name, "manage", securable).allowed:
        return
    lake.access.grant(principal.name, "manage", securable, reason="created it through the server")


SecurableOf = Callable[[Mapping[str, str]], str]


class Authorize:
    """The dependency each API route declares: authenticate, then `authorize(lake, principal, action, securable)`,
    then log what the access log keeps (denials and writes).

    `securable` is a fixed name (`lake`, `table:*`) or a function of the path parameters
    (`lambda path: f"run:{path['run_id']}"`). A `filtered` route lists a kind (`experiment:*`): a principal
    without a grant on the lake is let in, and `request.state.readable` holds what it may read of the kind, for
    the route to filter by inside its query, before paging (None: everything).
    """

    def __init__(
        self,
        authenticator: Authenticator,
        action: Action,
        securable: "str | SecurableOf",
        access_log: "AccessLog | None" = None,
        *,
        filtered: bool = False,
    ):
        self.authenticator = authenticator
        self.action = action
        self.securable = securable
        self.access_log = access_log
        self.filtered = filtered

    async def __call__(self, request: Request) -> Principal:
        """Async, so that FastAPI runs it on the event loop: a thread hop for a dictionary look-up costs more."""
        principal = self.authenticator.principal(request)
        securable = self.securable if isinstance(self.securable, str) else self.securable(request.path_params)
        lake: Lake = request.app.state.api.lake
        request.state.readable = None
        try:
            grant_id = authorize(lake, principal, self.action, securable)
        except NotAuthorized:
            if self.filtered:  # a listing of a kind: what the principal may read of it, filtered in the query
                request.state.readable = lake.access.readable(principal.name, securable.partition(":")[0])  # type: ignore[arg-type]
                request.state.principal = principal
                return principal
            if self.access_log is not None:
                self.access_log.add(principal.name, self.action, securable, False, None, request)
            raise
        except NotReadable:
            if self.access_log is not None:
                self.access_log.add(principal.name, self.action, securable, False, None, request)
            raise
        if self.access_log is not None and self.action != "read":
            self.access_log.add(principal.name, self.action, securable, True, grant_id, request)
        request.state.principal = principal
        return principal
