"""Who is asking, and may they: the one authorization seam every route goes through.

Each route is declared with the action it performs and the securable it touches (server/api.py), and FastAPI
calls `Authorize` before the endpoint. Today a request is either anonymous (no token configured) or carries the
server's bearer token, and `authorize` allows what authentication let in; access control plugs in here, without
touching the routes. A test lists every route and fails if one is not behind this seam.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations (Request) at runtime.
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from metalake.errors import NotAuthenticated

Action = Literal["read", "write", "manage", "admin"]


@dataclass(frozen=True)
class Principal:
    """Who sent a request: `anonymous` on a server without a token."""

    name: str


ANONYMOUS = Principal("anonymous")
TOKEN_HOLDER = Principal("token")


def authorize(principal: Principal, action: Action, securable: str) -> None:
    """Allow or refuse (NotAuthorized) `principal` doing `action` on `securable` (e.g. `experiment:churn`).

    Every request was authenticated before this is called; until grants exist, an authenticated principal may do
    everything.
    """
    del principal, action, securable


class Authenticator:
    """The server's bearer token check (none configured: every request is anonymous and let in)."""

    def __init__(self, token: str | None):
        self._token = token

    def principal(self, request: Request) -> Principal:
        if self._token is None:
            return ANONYMOUS
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token.encode()):
            return TOKEN_HOLDER
        raise NotAuthenticated("Send the server's token as `Authorization: Bearer TOKEN`.")


SecurableOf = Callable[[Mapping[str, str]], str]


class Authorize:
    """The dependency each API route declares: authenticate, then `authorize(principal, action, securable)`.

    `securable` is a fixed name (`lake`, `table:*`) or a function of the path parameters
    (`lambda path: f"run:{path['run_id']}"`).
    """

    def __init__(self, authenticator: Authenticator, action: Action, securable: str | SecurableOf):
        self.authenticator = authenticator
        self.action = action
        self.securable = securable

    async def __call__(self, request: Request) -> Principal:
        """Async, so that FastAPI runs it on the event loop: a thread hop for a dictionary look-up costs more."""
        principal = self.authenticator.principal(request)
        securable = self.securable if isinstance(self.securable, str) else self.securable(request.path_params)
        authorize(principal, self.action, securable)
        request.state.principal = principal
        return principal
