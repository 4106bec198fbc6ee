"""Access control as lake data: `lake.access` creates principals and tokens, grants and revokes privileges, and
decides (`check`) who may do what; the server asks it on every request.

Principals, group memberships, tokens (their hashes) and grants are append-only event tables written through the
one write path, so the Delta log audits every change and a past lake (`lake.as_of(...).access`) answers who could
do what then, and through which grant. A token is shown once, when it is made; the lake keeps its SHA-256 only
(tokens are 256-bit random, so a fast hash is enough: there is no password to guess).

Decisions read a folded copy of the tables kept in memory and checked against the tables' versions at most every
`refresh_s` seconds (and at once after this process's own changes), so a request costs a dictionary look-up and a
revocation made by another process takes effect within `refresh_s`.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.access.securables import LAKE, covering, parse_privilege, parse_securable
from metalake.access.state import (
    ACCESS_LOG_TABLE,
    GRANTS_TABLE,
    MEMBERS_TABLE,
    PRINCIPALS_TABLE,
    STATE_TABLES,
    TOKENS_TABLE,
    AccessState,
    Grant,
    PrincipalRecord,
    fold,
)
from metalake.access.tokens import TOKEN_PREFIX, check_name, expiry, token_hash, token_id_of, token_state
from metalake.core.ids import new_id
from metalake.core.vocabulary import (
    PRINCIPAL_KINDS,
    PRIVILEGE_IMPLIES,
    PrincipalKind,
    Privilege,
    SecurableKind,
)
from metalake.errors import (
    AccessAlreadyInitialized,
    AccessError,
    GrantNotFound,
    InvalidSecurable,
    NotAuthenticated,
    PrincipalExists,
    PrincipalNotFound,
    TokenNotFound,
)

if TYPE_CHECKING:
    import polars as pl

    from metalake.core.tables import Commit, Tables

DEFAULT_REFRESH_S = 1.0


@dataclass(frozen=True)
class IssuedToken:
    """A token as made: `token` is the secret text, shown this once (the lake keeps its hash only)."""

    token_id: str
    token: str
    principal: str
    name: str | None
    expires_at: datetime | None

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedToken(token_id={self.token_id!r}, principal={self.principal!r}, token='mlk_…')"


@dataclass(frozen=True)
class Decision:
    """Whether `principal` may do `action` on `securable`, the grant that decided (None when denied), and why."""

    allowed: bool
    principal: str
    action: Privilege
    securable: str
    reason: str
    grant: Grant | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Readable:
    """What a principal may read of one kind: everything, or the named objects (for filtering lists)."""

    everything: bool
    names: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return self.everything or name in self.names

    @functools.cached_property
    def digest(self) -> str:
        """A short digest of what is readable, for cache keys (an ETag of a filtered answer)."""
        import hashlib

        text = "*" if self.everything else "\n".join(sorted(self.names))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AccessLogEntry:
    """One decision of the server, for the `access_log` table."""

    principal: str
    action: str
    securable: str
    decision: str
    at: datetime
    grant_id: str | None = None
    method: str | None = None
    path: str | None = None


class Access:
    """`lake.access`: principals, groups, tokens and grants, and the decisions made from them."""

    def __init__(self, tables: Tables, *, refresh_s: float = DEFAULT_REFRESH_S):
        self._tables = tables
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: AccessState | None = None
        self._versions: tuple[int | None, ...] | None = None
        self._checked = 0.0
        # (principal, kind) -> the state it was computed from and what is readable: lists ask per request
        self._readable: dict[tuple[str, str], tuple[AccessState, Readable]] = {}

    # -- principals and groups ------------------------------------------------------------------------------

    def init(self, admin: str = "admin", *, expires: timedelta | str | datetime | None = None) -> IssuedToken:
        """Make the lake's first admin (a user with admin on the lake) and its first token, once per lake.

        Raises AccessAlreadyInitialized when the lake has principals already: admins then make the others.
        """
        state = self._state(fresh=True)
        admins = [grant for grant in state.grants.values() if grant.privilege == "admin"]
        others = [name for name in state.principals if name != admin]
        if admins or others:
            raise AccessAlreadyInitialized(
                "Access control is set up on this lake already (it has principals). An admin makes principals "
                "and tokens: `metalake access principal create NAME`, `metalake access token create NAME`."
            )
        if admin not in state.principals:  # absent unless an earlier init stopped half-way
            self.create_principal(admin, kind="user", description="the first admin (access init)")
        self.grant(admin, "admin", LAKE, reason="access init")
        return self.create_token(admin, name="init", expires=expires)

    def create_principal(
        self, name: str, *, kind: PrincipalKind = "user", description: str | None = None
    ) -> PrincipalRecord:
        """A new user, service account or group; it holds nothing until granted."""
        check_name(name)
        if kind not in PRINCIPAL_KINDS:
            raise AccessError(f"{kind!r} is not a kind of principal; kinds: {', '.join(PRINCIPAL_KINDS)}.")
        if name in self._state(fresh=True).principals:
            raise PrincipalExists(name)
        row = {"principal": name, "kind": kind, "event": "created", "description": description}
        self._write(PRINCIPALS_TABLE, [row], "access.principal.create")
        return self._state().principals[name]

    def disable_principal(self, name: str, *, reason: str | None = None) -> None:
        """Stop a principal: its tokens and grants no longer work (they are kept, for `enable_principal`)."""
        record = self._principal(name)
        row = {"principal": name, "kind": record.kind, "event": "disabled", "description": None}
        self._write(PRINCIPALS_TABLE, [row], "access.principal.disable", reason=reason)

    def enable_principal(self, name: str, *, reason: str | None = None) -> None:
        """Undo `disable_principal`."""
        record = self._principal(name)
        row = {"principal": name, "kind": record.kind, "event": "enabled", "description": None}
        self._write(PRINCIPALS_TABLE, [row], "access.principal.enable", reason=reason)

    def add_member(self, group: str, member: str) -> None:
        """Put `member` (a user, a service account or another group) in `group`: it holds the group's grants.
        A member already in it stays (nothing is written); a membership that would make a cycle is refused."""
        state = self._state(fresh=True)
        self._group(state, group)
        self._principal(member, state)
        if member in state.members.get(group, set()):
            return  # a member already: nothing to write
        if member == group or member in state.groups_of(group, disabled_too=True):
            raise AccessError(
                f"{member!r} cannot join {group!r}: {group!r} is inside {member!r} already, and groups may not "
                "contain themselves."
            )
        row = {"group_name": group, "member": member, "event": "added"}
        self._write(MEMBERS_TABLE, [row], "access.group.add")

    def remove_member(self, group: str, member: str) -> None:
        """Take `member` out of `group`."""
        state = self._state(fresh=True)
        self._group(state, group)
        if member not in state.members.get(group, set()):
            raise AccessError(f"{member!r} is not a member of group {group!r}.")
        row = {"group_name": group, "member": member, "event": "removed"}
        self._write(MEMBERS_TABLE, [row], "access.group.remove")

    # -- tokens ---------------------------------------------------------------------------------------------

    def create_token(
        self,
        principal: str,
        *,
        expires: timedelta | str | datetime | None = None,
        name: str | None = None,
    ) -> IssuedToken:
        """A new API token for `principal`; `expires` is a duration (`"30d"`) or a moment. The text is in the
        answer only: keep it, the lake cannot show it again."""
        record = self._principal(principal)
        if record.kind == "group":
            raise AccessError(f"{principal!r} is a group: tokens belong to users and service accounts.")
        expires_at = expiry(expires)
        token_id = new_id()
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        row = {
            "token_id": token_id,
            "principal": principal,
            "event": "issued",
            "token_hash": token_hash(token),
            "name": name,
            "expires_at": expires_at,
        }
        self._write(TOKENS_TABLE, [row], "access.token.create")
        return IssuedToken(token_id, token, principal, name, expires_at)

    def revoke_token(self, token_id: str, *, reason: str | None = None) -> None:
        """Stop a token at once (give its id, or the token itself)."""
        wanted = token_id_of(token_id)
        record = self._state(fresh=True).tokens.get(wanted)
        if record is None or record.revoked_at is not None:
            state = "was revoked already" if record is not None else "is not a token of this lake"
            raise TokenNotFound(
                f"Token {wanted!r} {state}. `metalake access token list` shows the tokens.",
                name=wanted,
                known=self._state().tokens,
            )
        row = {
            "token_id": wanted,
            "principal": record.principal,
            "event": "revoked",
            "token_hash": None,
            "name": None,
            "expires_at": None,
        }
        self._write(TOKENS_TABLE, [row], "access.token.revoke", reason=reason)

    def authenticate(self, token: str) -> PrincipalRecord:
        """The principal a token belongs to; raises NotAuthenticated for an unknown, revoked or expired token, or
        one whose principal is disabled."""
        token_id = token_id_of(token, strict=False)
        state = self._state()
        record = state.tokens.get(token_id) if token_id else None
        if record is None and token_id:
            state = self._state(fresh=True)  # made moments ago elsewhere? a look at the table versions
            record = state.tokens.get(token_id)
        if record is None or not hmac.compare_digest(record.token_hash, token_hash(token)):
            raise NotAuthenticated(
                "This token is not valid for this lake. Check it, or ask an admin for one."
            )
        if record.revoked_at is not None:
            raise NotAuthenticated(f"This token was revoked at {record.revoked_at:%Y-%m-%d %H:%M} UTC.")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise NotAuthenticated(f"This token expired at {record.expires_at:%Y-%m-%d %H:%M} UTC.")
        principal = state.principals.get(record.principal)
        if principal is None or not principal.enabled:
            raise NotAuthenticated(f"The principal {record.principal!r} of this token is disabled.")
        return principal

    # -- grants ---------------------------------------------------------------------------------------------

    def grant(self, principal: str, privilege: str, securable: str, *, reason: str | None = None) -> Grant:
        """Give `principal` `privilege` on `securable`; granting what is in force already returns that grant."""
        wanted = parse_privilege(privilege)
        target = parse_securable(securable)
        if wanted == "admin" and target != LAKE:
            raise InvalidSecurable(f"admin is given on the lake only (`lake`), not on {target!r}.")
        if wanted == "unmask" and target != LAKE:
            raise InvalidSecurable(
                f"unmask is given on the lake only (`lake`), not on {target!r}: masking applies to every read "
                "path at once, so a reader sees sensitive values everywhere or nowhere."
            )
        state = self._state(fresh=True)
        self._principal(principal, state)
        for held in state.grants.values():
            if (held.principal, held.privilege, held.securable) == (principal, wanted, target):
                return held
        grant_id = new_id()
        row = {
            "grant_id": grant_id,
            "principal": principal,
            "privilege": wanted,
            "securable": target,
            "event": "granted",
            "reason": reason,
        }
        self._write(GRANTS_TABLE, [row], "access.grant", reason=reason)
        return self._state().grants[grant_id]

    def revoke(
        self, principal: str, privilege: str, securable: str, *, reason: str | None = None
    ) -> list[Grant]:
        """End the grants of `privilege` on `securable` held by `principal` (itself, not through its groups);
        raises GrantNotFound, listing what it holds, when there is none."""
        wanted = parse_privilege(privilege)
        target = parse_securable(securable)
        state = self._state(fresh=True)
        self._principal(principal, state)
        ended = [
            held
            for held in state.grants.values()
            if (held.principal, held.privilege, held.securable) == (principal, wanted, target)
        ]
        if not ended:
            holding = sorted(
                f"{g.privilege} {g.securable}" for g in state.grants.values() if g.principal == principal
            )
            groups = state.groups_of(principal)
            through = sorted(
                held.principal
                for held in state.grants_held(groups)
                if (held.privilege, held.securable) == (wanted, target)
            )
            hint = f" Its group {through[0]} holds it: revoke it from the group." if through else ""
            raise GrantNotFound(
                f"{principal} holds no grant of {wanted} on {target}. It holds: "
                f"{', '.join(holding) or 'nothing'}.{hint}",
                name=f"{wanted} {target}",
                known=holding,
            )
        rows = [
            {
                "grant_id": held.grant_id,
                "principal": principal,
                "privilege": wanted,
                "securable": target,
                "event": "revoked",
                "reason": reason,
            }
            for held in ended
        ]
        self._write(GRANTS_TABLE, rows, "access.revoke", reason=reason)
        return ended

    def move_grants(self, old: str, new: str, *, reason: str | None = None) -> list[Grant]:
        """Move every grant on `old` to `new` in one commit (each holder's grant on `old` revoked, the same
        privilege granted on `new` unless held there already): an object renamed keeps who may use it, and an
        object given the old name later starts with nothing. Returns the grants given on `new`."""
        source, target = parse_securable(old), parse_securable(new)
        if LAKE in (source, target) or source == target:
            return []
        state = self._state(fresh=True)
        moving = [held for held in state.grants.values() if held.securable == source]
        if not moving:
            return []
        held_on_target = {(g.principal, g.privilege) for g in state.grants.values() if g.securable == target}
        why = reason or f"{source} renamed to {target}"
        rows = [
            {**self._grant_row(held.principal, held.privilege, source, why), "grant_id": held.grant_id}
            | {"event": "revoked"}
            for held in moving
        ]
        given = [
            self._grant_row(held.principal, held.privilege, target, why)
            for held in moving
            if (held.principal, held.privilege) not in held_on_target
        ]
        self._write(GRANTS_TABLE, rows + given, "access.move", reason=why)
        grants = self._state().grants
        return [grants[row["grant_id"]] for row in given if row["grant_id"] in grants]

    @staticmethod
    def _grant_row(principal: str, privilege: str, securable: str, reason: str | None) -> dict[str, Any]:
        return {
            "grant_id": new_id(),
            "principal": principal,
            "privilege": privilege,
            "securable": securable,
            "event": "granted",
            "reason": reason,
        }

    def check(self, principal: str, action: str, securable: str) -> Decision:
        """May `principal` do `action` on `securable`, and through which grant? Grants on the lake cover
        everything; a principal holds its groups' grants; the most specific grant decides (its own before a
        group's). `KIND:*` (a kind as a whole) is decided by grants on the lake."""
        wanted = parse_privilege(action)
        target = parse_securable(securable, whole_kind=True)
        state = self._state()
        record = state.principals.get(principal)
        if record is None:
            return Decision(False, principal, wanted, target, f"{principal} is not a principal of this lake")
        if not record.enabled:
            return Decision(False, principal, wanted, target, f"{principal} is disabled")
        holders = [principal, *state.groups_of(principal)]
        over = covering(target)
        best: tuple[tuple[int, int], Grant] | None = None
        for held in state.grants_held(holders):
            if held.securable not in over or wanted not in PRIVILEGE_IMPLIES[held.privilege]:
                continue
            rank = (over.index(held.securable), holders.index(held.principal))
            if best is None or rank < best[0]:
                best = (rank, held)
        if best is None:
            on = target if target == LAKE or target.endswith(":*") else f"{target} or on the lake"
            return Decision(False, principal, wanted, target, f"no grant of {wanted} on {on}")
        held = best[1]
        via = "" if held.principal == principal else f" to group {held.principal}"
        reason = f"{held.privilege} on {held.securable}{via} (grant {held.grant_id})"
        return Decision(True, principal, wanted, target, reason, held)

    def sees_clear(self, principal: str, *, must_exist: bool = False) -> bool:
        """Whether `principal` reads sensitive values in clear (`unmask` on the lake; admins hold it), rather
        than through the masking layer. `must_exist`: an unknown principal raises PrincipalNotFound."""
        if must_exist:
            self._principal(principal)
        return self.check(principal, "unmask", LAKE).allowed

    def readable(self, principal: str, kind: SecurableKind) -> Readable:
        """The objects of `kind` that `principal` may read: all (a grant on the lake), or those it is granted."""
        state = self._state()
        known = self._readable.get((principal, kind))
        if known is not None and known[0] is state:
            return known[1]
        readable = self._readable_in(state, principal, kind)
        if len(self._readable) > 10_000:
            self._readable.clear()
        self._readable[(principal, kind)] = (state, readable)
        return readable

    def _readable_in(self, state: AccessState, principal: str, kind: SecurableKind) -> Readable:
        record = state.principals.get(principal)
        if record is None or not record.enabled:
            return Readable(False, frozenset())
        holders = [principal, *state.groups_of(principal)]
        names: set[str] = set()
        for held in state.grants_held(holders):
            if "read" not in PRIVILEGE_IMPLIES[held.privilege]:
                continue
            if held.securable == LAKE:
                return Readable(True, frozenset())
            held_kind, _, name = held.securable.partition(":")
            if held_kind == kind:
                names.add(name)
        return Readable(False, frozenset(names))

    # -- listings -------------------------------------------------------------------------------------------

    def list(self, principal: str | None = None, securable: str | None = None) -> pl.DataFrame:
        """The grants in force at this lake's moment: all, those `principal` holds (itself and through its
        groups: `holder` says which), or those that decide on `securable` (its own and the lake's)."""
        state = self._state()
        grants = sorted(state.grants.values(), key=lambda grant: (grant.granted_at, grant.grant_id))
        if principal is not None:
            self._principal(principal, state)
            holders = [principal, *state.groups_of(principal)]
            grants = [grant for grant in grants if grant.principal in holders]
        if securable is not None:
            over = covering(parse_securable(securable, whole_kind=True))
            grants = [grant for grant in grants if grant.securable in over]
        rows = [
            {
                "holder": grant.principal,
                "privilege": grant.privilege,
                "securable": grant.securable,
                "grant_id": grant.grant_id,
                "granted_at": grant.granted_at,
                "granted_by": grant.granted_by,
                "reason": grant.reason,
            }
            for grant in grants
        ]
        return _frame(rows, GRANT_COLUMNS)

    def principals(self) -> pl.DataFrame:
        """Every principal at this lake's moment: kind, enabled, its groups, who made it and when."""
        state = self._state()
        rows = [
            {
                "principal": record.name,
                "kind": record.kind,
                "enabled": record.enabled,
                "groups": ", ".join(state.groups_of(record.name)) or None,
                "created_at": record.created_at,
                "created_by": record.created_by,
                "description": record.description,
            }
            for record in sorted(state.principals.values(), key=lambda record: record.name)
        ]
        return _frame(rows, PRINCIPAL_COLUMNS)

    def tokens(self, principal: str | None = None) -> pl.DataFrame:
        """The tokens (never their text or hash): id, principal, name, when issued, expiry, state."""
        now = datetime.now(UTC)
        records = sorted(self._state().tokens.values(), key=lambda record: record.issued_at)
        rows = [
            {
                "token_id": record.token_id,
                "principal": record.principal,
                "name": record.name,
                "state": token_state(record, now),
                "issued_at": record.issued_at,
                "expires_at": record.expires_at,
                "revoked_at": record.revoked_at,
            }
            for record in records
            if principal is None or record.principal == principal
        ]
        return _frame(rows, TOKEN_COLUMNS)

    def record(self, entries: Iterable[AccessLogEntry | Mapping[str, Any]]) -> Commit | None:
        """Append the server's decisions to `access_log`, in one commit (None when there is nothing)."""
        rows = [asdict(entry) if isinstance(entry, AccessLogEntry) else dict(entry) for entry in entries]
        for row in rows:
            row.setdefault("entry_id", new_id())
        if not rows:
            return None
        return self._tables.append(ACCESS_LOG_TABLE, rows, operation="access.log")

    # -- internals ------------------------------------------------------------------------------------------

    def _principal(self, name: str, state: AccessState | None = None) -> PrincipalRecord:
        known = (state or self._state(fresh=True)).principals
        if name not in known:
            raise PrincipalNotFound(name, known)
        return known[name]

    def _group(self, state: AccessState, name: str) -> PrincipalRecord:
        record = self._principal(name, state)
        if record.kind != "group":
            raise AccessError(
                f"{name!r} is a {record.kind}, not a group. Make a group with "
                f"`metalake access principal create NAME --kind group`."
            )
        return record

    def _write(
        self, table: str, rows: Sequence[Mapping[str, Any]], operation: str, *, reason: str | None = None
    ) -> None:
        self._tables.append(table, rows, operation=operation, reason=reason)
        with self._lock:
            self._cached = None

    def _state(self, *, fresh: bool = False) -> AccessState:
        """The folded access tables: the cached copy unless `refresh_s` passed (or `fresh`) and a table moved."""
        now = time.monotonic()
        with self._lock:
            cached = self._cached
            if cached is not None and (
                self._tables.moment is not None or (not fresh and now - self._checked < self._refresh_s)
            ):
                return cached
        versions = tuple(self._tables.version(table) for table in STATE_TABLES)
        with self._lock:
            if self._cached is not None and versions == self._versions:
                self._checked = now
                return self._cached
        state = fold(self._tables)
        with self._lock:
            self._cached, self._versions, self._checked = state, versions, now
        return state


# Listing columns and their types ("time" is a UTC timestamp), so that an empty listing has its columns too.
GRANT_COLUMNS = {
    "holder": "str",
    "privilege": "str",
    "securable": "str",
    "grant_id": "str",
    "granted_at": "time",
    "granted_by": "str",
    "reason": "str",
}
PRINCIPAL_COLUMNS = {
    "principal": "str",
    "kind": "str",
    "enabled": "bool",
    "groups": "str",
    "created_at": "time",
    "created_by": "str",
    "description": "str",
}
TOKEN_COLUMNS = {
    "token_id": "str",
    "principal": "str",
    "name": "str",
    "state": "str",
    "issued_at": "time",
    "expires_at": "time",
    "revoked_at": "time",
}


def _frame(rows: list[dict[str, Any]], columns: Mapping[str, str]) -> pl.DataFrame:
    import polars as pl

    types = {"str": pl.String(), "bool": pl.Boolean(), "time": pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema={name: types[kind] for name, kind in columns.items()}, orient="row")
