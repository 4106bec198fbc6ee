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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

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


# A route any authenticated principal may call (what a client reads at start, such as MLflow's server-info).
AUTHENTICATED = "authenticated"


def authorize(lake: "Lake", principal: Principal, action: Action, securable: str) -> str | None:
    """Allow, or refuse `principal` doing `action` on `securable`; returns the id of the grant that allowed it.

    A refused read of a named object answers 404 (NotReadable), as if it did not exist, so that names do not
    leak; a refused write of an object the principal may read answers 403 (NotAuthorized), as does any refusal
    on a kind as a whole (`experiment:*`: lists, searches and creations, decided by a grant on the lake).
    """
    if principal.unrestricted or securable == AUTHENTICATED:
        return None
    on_lake = lake.access.check(principal.name, action, "lake")
    if on_lake.allowed:  # the common case needs no look-up of what holds the object
        return on_lake.grant.grant_id if on_lake.grant is not None else None
    target = securable_for_grants(lake, securable)
    decision = on_lake if target == "lake" else lake.access.check(principal.name, action, target)
    if decision.allowed:
        return decision.grant.grant_id if decision.grant is not None else None
    if action == "read" and securable.startswith("artifact:"):  # a model's readers load its files
        for model in models_made_from(lake, securable.partition(":")[2]):
            through_model = lake.access.check(principal.name, "read", f"model:{model}")
            if through_model.allowed:
                return through_model.grant.grant_id if through_model.grant is not None else None
    names_one = securable != "lake" and not securable.endswith(":*")
    if names_one and (action == "read" or not lake.access.check(principal.name, "read", target).allowed):
        kind, _, name = securable.partition(":")
        raise NotReadable(SHOWN_KINDS.get(kind, kind), name)
    raise NotAuthorized(
        f"{principal.name} may not {action} {target}: {decision.reason}. An admin, or a principal with manage "
        f"on it, can allow it: `metalake access grant {principal.name} {action} {target}`."
    )


# Names a route may give that are not securables themselves: each resolves to what holds the object.
SHOWN_KINDS = {"experiment_id": "experiment", "logged_model": "logged model"}


def securable_for_grants(lake: "Lake", securable: str) -> str:
    """What grants are given on, for what a route names: a run is its experiment's, an experiment named by id
    (`experiment_id:3`) its name's, a logged model its experiment's, an artifact path its experiment's (the
    first part of the path is the experiment's id), a deployment its model's, a validation its dataset's; what is unknown, and a kind as a
    whole (`run:*`), the lake's."""
    from metalake.core.pending import reads_without_waiting_for_queued_writes

    kind, _, name = securable.partition(":")
    if securable == "lake" or name == "*":
        return "lake"
    try:
        with reads_without_waiting_for_queued_writes():
            if kind == "run":
                return f"experiment:{lake.runs.request_state(name)['experiment']}"
            if kind == "artifact":
                kind, name = "experiment_id", name.strip("/").split("/", 1)[0]
            if kind == "logged_model":
                kind, name = "experiment_id", lake.logged_models.get(name, allow_deleted=True).experiment_id
            if kind == "experiment_id":
                return f"experiment:{lake.experiments.get(name).name}" if name else "lake"
            if kind == "deployment":
                return f"model:{lake.deployments.get(name).model}"
            if kind == "validation":
                return f"dataset:{lake.quality.dataset_of(name)}"
    except LookupError:
        return "lake"
    return securable


def models_made_from(lake: "Lake", path: str) -> list[str]:
    """The registered models with a version made from the files at an artifact path: a run's files
    (`EXP/RUN_ID/artifacts/...`) or a logged model's (`EXP/models/MODEL_ID/...`). Read on such a model lets a
    principal load the version (`mlflow.pyfunc.load_model("models:/churn@champion")`) without read on the
    experiment that logged it."""
    from metalake.core.pending import reads_without_waiting_for_queued_writes

    parts = path.strip("/").split("/")
    if len(parts) < 3 or not all(parts[:3]):
        return []
    if parts[1] == "models":
        query, args = (
            "select model, artifact_uri from model_versions where starts_with(artifact_uri, ?)",
            [f"models:/{parts[2]}"],
        )
    else:
        query, args = "select model, artifact_uri from model_versions where run_id = ?", [parts[1]]
    try:
        with reads_without_waiting_for_queued_writes():
            rows = lake.sql(query, args).fetchall()
    except LookupError:  # a lake with no model versions yet
        return []
    inside = "/".join(parts[2:]) + "/"
    held = {str(model) for model, uri in rows if parts[1] == "models"}
    for model, uri in rows:
        folder = _run_folder(str(uri))
        if folder is not None and inside.startswith(folder):
            held.add(str(model))
    return sorted(held)


def _run_folder(uri: str) -> str | None:
    """The folder of a run's files that a version made from the run holds (`artifacts/model/`): its URI is
    `runs:/RUN/model` or `mlflow-artifacts:/EXP/RUN/artifacts/model`; another URI holds none of the run's files."""
    if uri.startswith("runs:/"):
        sub = uri[len("runs:/") :].strip("/").partition("/")[2]
    elif uri.startswith("mlflow-artifacts:/"):
        parts = uri[len("mlflow-artifacts:/") :].strip("/").split("/", 3)
        sub = parts[3] if len(parts) == 4 and parts[2] == "artifacts" else ""
    else:
        return None
    return f"artifacts/{sub.strip('/')}/" if sub.strip("/") else None


def grant_creator(lake: "Lake", principal: "Principal | None", securable: str) -> None:
    """Whoever creates an experiment, model or dataset through the server manages it (a grant of manage, unless
    it manages it already): without this, a principal allowed to create would lose what it made when its
    lake-wide grant goes."""
    if principal is None or principal.unrestricted:
        return
    if lake.access.check(principal.name, "manage", securable).allowed:
        return
    lake.access.grant(principal.name, "manage", securable, reason="created it through the server")


# What a route touches, from the request's fields (its path parameters; for MLflow's routes, also the body or
# the query string): one securable, or several (a request about many runs).
SecurableOf = Callable[[Mapping[str, Any]], "str | tuple[str, ...]"]
FieldsOf = Callable[[Request], Awaitable[Mapping[str, Any]]]


async def path_fields(request: Request) -> Mapping[str, Any]:
    return request.path_params


async def body_fields(request: Request) -> Mapping[str, Any]:
    """The path parameters and the JSON body's top-level fields, for a write that names its object in the body
    (`POST /api/v1/runs` names its experiment). A body that is not a JSON object adds nothing: the endpoint's
    own validation answers 422 for it, after the decision."""
    import json

    fields: dict[str, Any] = {}
    try:
        body = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        fields.update(body)
    return {**fields, **request.path_params}


class Authorize:
    """The dependency each API route declares: authenticate, then `authorize(lake, principal, action, securable)`,
    then log what the access log keeps (denials and writes).

    `securable` is a fixed name (`lake`, `table:*`) or a function of the request's fields (by default its path
    parameters: `lambda path: f"run:{path['run_id']}"`; `fields` reads others). A `filtered` route lists a kind
    (`experiment:*`): a principal without a grant on the lake is let in, and `request.state.readable` holds what
    it may read of the kind, for the route to filter by inside its query, before paging (None: everything).
    """

    def __init__(
        self,
        authenticator: Authenticator,
        action: Action,
        securable: "str | SecurableOf",
        access_log: "AccessLog | None" = None,
        *,
        filtered: bool = False,
        fields: FieldsOf = path_fields,
    ):
        self.authenticator = authenticator
        self.action = action
        self.securable = securable
        self.access_log = access_log
        self.filtered = filtered
        self.fields = fields

    async def __call__(self, request: Request) -> Principal:
        """Async, so that FastAPI runs it on the event loop: a thread hop for a dictionary look-up costs more."""
        principal = self.authenticator.principal(request)
        request.state.readable = None
        request.state.principal = principal
        if isinstance(self.securable, str):
            securables: tuple[str, ...] = (self.securable,)
        else:
            named = self.securable(await self.fields(request))
            securables = (named,) if isinstance(named, str) else named
        lake: Lake = request.app.state.api.lake
        for securable in securables:
            self._decide(lake, principal, securable, request)
        return principal

    def _decide(self, lake: "Lake", principal: Principal, securable: str, request: Request) -> None:
        try:
            grant_id = authorize(lake, principal, self.action, securable)
        except NotAuthorized:
            if self.filtered:  # a listing of a kind: what the principal may read of it, filtered in the query
                request.state.readable = lake.access.readable(principal.name, securable.partition(":")[0])  # type: ignore[arg-type]
                return
            if self.access_log is not None:
                self.access_log.add(principal.name, self.action, securable, False, None, request)
            raise
        except NotReadable:
            if self.access_log is not None:
                self.access_log.add(principal.name, self.action, securable, False, None, request)
            raise
        if self.access_log is not None and self.action != "read":
            self.access_log.add(principal.name, self.action, securable, True, grant_id, request)
