"""MLflow's wire protocol: its paths (also under `/ajax-api/`), request fields, JSON answers and error bodies.

A handler is a function of one `Call` (the request's fields, typed on demand, and the lake) that returns MLflow's
JSON answer as a dict. `MlflowRoutes.route` declares it under every prefix MLflow clients use, behind the server's
one authorization seam (`server/auth.py`), so these routes obey the same policy as the REST API. Errors leave as
MLflow's `{"error_code", "message"}` with the HTTP status MLflow gives that code, and the MLflow client raises
them as it would against its own server.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from metalake.errors import (
    AlreadyExists,
    DeploymentNotFound,
    InvalidRequest,
    MetalakeError,
    MlflowError,
    NameNotFound,
    NotAuthenticated,
    NotAuthorized,
    NotReadable,
    PayloadTooLarge,
    PolicyViolation,
    TransientError,
)
from metalake.server.auth import Action, Authorize, Principal, SecurableOf, grant_creator

if TYPE_CHECKING:
    from fastapi import Request, Response

    from metalake.access import Readable
    from metalake.lake import Lake
    from metalake.server.api import Api

Handler = TypeVar("Handler", bound=Callable[..., Any])

# Where MLflow clients send requests: the REST API, and the same under /ajax-api/ (MLflow's web UI).
API_PREFIXES = {
    "2.0": ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"),
    "3.0": ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow"),
    "artifacts": ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts"),
}
_ALL_PREFIXES = tuple(prefix for prefixes in API_PREFIXES.values() for prefix in prefixes)

# MLflow's error codes (mlflow/protos/databricks.proto) and the statuses its server answers them with.
ERROR_STATUSES = {
    "BAD_REQUEST": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "INVALID_STATE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
}

# Most specific first: the first class an error is an instance of gives its MLflow code.
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (NotAuthenticated, "UNAUTHENTICATED"),
    (NotAuthorized, "PERMISSION_DENIED"),
    (NotReadable, "RESOURCE_DOES_NOT_EXIST"),
    (PayloadTooLarge, "INVALID_PARAMETER_VALUE"),
    (NameNotFound, "RESOURCE_DOES_NOT_EXIST"),
    (DeploymentNotFound, "RESOURCE_DOES_NOT_EXIST"),
    (AlreadyExists, "RESOURCE_ALREADY_EXISTS"),
    (PolicyViolation, "INVALID_STATE"),
    (TransientError, "TEMPORARILY_UNAVAILABLE"),
)


def is_mlflow_path(path: str) -> bool:
    return path.startswith(_ALL_PREFIXES)


def mlflow_code(error: BaseException) -> str:
    """The MLflow error code of a refusal: INVALID_PARAMETER_VALUE for any other MetalakeError."""
    if isinstance(error, MlflowError):
        return error.error_code
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return "INVALID_PARAMETER_VALUE" if isinstance(error, MetalakeError) else "INTERNAL_ERROR"


def error_response(error_code: str, message: str, headers: Mapping[str, str] | None = None) -> "Response":
    from fastapi.responses import JSONResponse

    status = ERROR_STATUSES.get(error_code, 400)
    return JSONResponse({"error_code": error_code, "message": message}, status, headers=dict(headers or {}))


def answer(body: Mapping[str, Any], status: int = 200) -> "Response":
    """MLflow's JSON answer (orjson: the answers of searches and histories are large)."""
    import orjson
    from fastapi import Response

    return Response(orjson.dumps(body), status, media_type="application/json")


def number_out(value: float) -> float | str:
    """A double as protobuf's JSON has it: NaN and the infinities as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def missing(name: str) -> MlflowError:
    return MlflowError(
        f"Missing value for required parameter '{name}'. See the API docs for more information about "
        "request parameters."
    )


@dataclass
class Call:
    """One request's fields (the JSON body, or the query string of a GET) and the lake it reads or writes."""

    fields: dict[str, Any]
    lake: "Lake"
    actor: str
    principal: Principal | None = None
    readable: "Readable | None" = None  # a filtered search: what the caller may read of the kind (None: all)

    def may_read(self, name: str) -> bool:
        """Whether a filtered search may answer the object `name` (an experiment's, a model's)."""
        return self.readable is None or name in self.readable

    def made(self, securable: str) -> None:
        """Record that the caller created `securable` (an experiment, a model): it manages it."""
        grant_creator(self.lake, self.principal, securable)

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        if value is None or value == "":
            raise missing(name)
        return self._text(name, value)

    def run_id(self) -> str:
        """The run a request names: `run_id`, or `run_uuid` that older clients send."""
        given = self.optional_text("run_id") or self.optional_text("run_uuid")
        if given is None:
            raise missing("run_id")
        return given

    def optional_text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None or value == "" else self._text(name, value)

    def _text(self, name: str, value: Any) -> str:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise MlflowError(f"Invalid value {_shown(value)} for parameter '{name}': a string is expected.")
        return str(value)

    def integer(
        self, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        return integer_in(name, self.fields.get(name), default, minimum=minimum, maximum=maximum)

    def required_integer(self, name: str) -> int:
        number = self.integer(name)
        if number is None:
            raise missing(name)
        return number

    def number(self, name: str) -> float:
        value = self.fields.get(name)
        if value is None:
            raise missing(name)
        return number_in(name, value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.fields.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise MlflowError(f"Invalid value {_shown(value)} for parameter '{name}': true or false is expected.")

    def texts(self, name: str) -> list[str]:
        """A repeated string field: a JSON list, or a query parameter given once or more."""
        value = self.fields.get(name)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        return [self._text(name, item) for item in values]

    def objects(self, name: str) -> list[dict[str, Any]]:
        """A repeated message field: a list of JSON objects."""
        value = self.fields.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise MlflowError(
                f"Invalid value {_shown(value)} for parameter '{name}': a list of objects is expected."
            )
        return value

    def key_values(self, name: str) -> dict[str, str]:
        """A repeated `{key, value}` field (tags, params) as a dict; a later key wins."""
        pairs: dict[str, str] = {}
        for item in self.objects(name):
            key = item.get("key")
            if not isinstance(key, str) or not key:
                raise MlflowError(f"Every item of '{name}' needs a non-empty 'key'.")
            value = item.get("value")
            pairs[key] = "" if value is None else str(value)
        return pairs


def integer_in(
    name: str,
    value: Any,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    """An integer field: a JSON number or a numeric string (protobuf writes int64 values as strings)."""
    if value is None or value == "":
        return default
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise MlflowError(
            f"Invalid value {_shown(value)} for parameter '{name}': an integer is expected."
        ) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise MlflowError(f"Invalid value {number} for parameter '{name}': it must be {bounds}.")
    return number


def number_in(name: str, value: Any) -> float:
    """A double from MLflow's JSON: a number, or the strings protobuf writes for NaN and the infinities."""
    if isinstance(value, bool):
        raise MlflowError(f"Invalid value {_shown(value)} for parameter '{name}': a number is expected.")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "NaN", "Infinity", "-Infinity", "1.5"
        except ValueError:
            pass
    raise MlflowError(f"Invalid value {_shown(value)} for parameter '{name}': a number is expected.")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class MlflowRoutes:
    """Declares MLflow handlers on the server's app, each under MLflow's prefixes and the authorization seam."""

    def __init__(self, api: "Api"):
        self.api = api

    def route(
        self,
        method: str,
        path: str,
        *,
        action: Action,
        securable: str | SecurableOf,
        version: str = "2.0",
        filtered: bool = False,
    ) -> Callable[[Handler], Handler]:
        """`handler(call) -> dict`: MLflow's answer for `method` on `path` (e.g. "runs/create", or
        "logged-models/{model_id}", whose path parameters join the request's fields).

        `securable` names what the request touches, from its fields (`lambda fields: f"run:{fields['run_id']}"`:
        see `named`); a `filtered` search lets in whoever may read some of the kind, and `call.readable` says
        what, for the handler to search within."""
        from fastapi import Depends, Request
        from starlette.concurrency import run_in_threadpool

        api = self.api
        authorization = Authorize(
            api.authenticator, action, securable, api.access_log, filtered=filtered, fields=cached_fields
        )
        dependency = Depends(authorization)

        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> "Response":
                fields = dict(await cached_fields(request))
                principal = getattr(request.state, "principal", None)
                actor = principal.name if principal is not None else api.lake.actor
                # reads see the lake through the masking layer, unless the caller may unmask; writes go to the lake
                lake = api.lake_for(request, None) if action == "read" else api.lake
                call = Call(fields, lake, actor, principal, getattr(request.state, "readable", None))
                result = await run_in_threadpool(handler, call)
                return result if not isinstance(result, dict) else answer(result)

            endpoint.__name__ = f"mlflow_{method.lower()}_{path.replace('/', '_').replace('-', '_')}"
            for prefix in API_PREFIXES[version]:
                api.app.add_api_route(
                    f"{prefix}/{path}",
                    endpoint,
                    methods=[method],
                    dependencies=[dependency],
                    include_in_schema=False,  # MLflow's protos describe these, not /openapi.json
                )
            return handler

        return register


async def cached_fields(request: "Request") -> Mapping[str, Any]:
    """The request's fields and path parameters (`{model_id}`), read once for the authorization and the handler."""
    known: Mapping[str, Any] | None = getattr(request.state, "mlflow_fields", None)
    if known is None:
        known = {**await request_fields(request), **request.path_params}
        request.state.mlflow_fields = known
    return known


def named(kind: str, *names: str, default: str = "") -> SecurableOf:
    """The securable a request names by its fields: `named("run", "run_id", "run_uuid")` is `run:ID` from the
    first field given; a repeated field names several (`run:A`, `run:B`). A request naming none is about
    `KIND:DEFAULT` (`experiment_id` 0, the default experiment), or about no object: its handler answers MLflow's
    missing-parameter error, and the lake's grants decide before it."""

    def securables(fields: Mapping[str, Any]) -> str | tuple[str, ...]:
        for name in names:
            value = fields.get(name)
            if isinstance(value, list) and value:
                return tuple(f"{kind}:{item}" for item in value)
            if value not in (None, "") and not isinstance(value, list | dict):
                return f"{kind}:{value}"
        return f"{kind}:{default}" if default else "lake"

    return securables


# What most MLflow requests name: a run (`run_id`, or the older `run_uuid`), an experiment by id, a registered
# model by name, a logged model by id.
RUN = named("run", "run_id", "run_uuid")
EXPERIMENT = named("experiment_id", "experiment_id")
MODEL = named("model", "name")
LOGGED_MODEL = named("logged_model", "model_id")


async def request_fields(request: "Request") -> dict[str, Any]:
    """A GET's query string (a repeated name becomes a list), or a JSON body; an unreadable body is a 400."""
    if request.method == "GET":
        fields: dict[str, Any] = {}
        for name, value in request.query_params.multi_items():
            if name in fields:
                previous = fields[name]
                fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                fields[name] = value
        return fields
    raw = await request.body()
    if not raw.strip():
        return dict(request.query_params)  # some clients send DELETE fields in the query string
    try:
        body = json.loads(raw)  # the standard parser: MLflow clients may send NaN as a bare literal
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"The request body is not JSON: {error}.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body
