"""The access tables folded into what is in force: principals, group memberships, tokens and grants.

Each table is a list of events (created/disabled, added/removed, issued/revoked, granted/revoked); the state at a
moment is the fold of the events recorded by then, so a past lake (`lake.as_of`) folds to who could do what then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metalake.core.vocabulary import PrincipalKind, Privilege

if TYPE_CHECKING:
    from metalake.core.tables import Tables

PRINCIPALS_TABLE = "principals"
MEMBERS_TABLE = "group_members"
TOKENS_TABLE = "tokens"
GRANTS_TABLE = "grants"
ACCESS_LOG_TABLE = "access_log"
STATE_TABLES = (PRINCIPALS_TABLE, MEMBERS_TABLE, TOKENS_TABLE, GRANTS_TABLE)


@dataclass(frozen=True)
class PrincipalRecord:
    """A user, service account or group, as its latest event leaves it."""

    name: str
    kind: PrincipalKind
    enabled: bool
    created_at: datetime
    created_by: str
    description: str | None = None


@dataclass(frozen=True)
class Grant:
    """A privilege on a securable held by a principal, from `granted_at` (until revoked)."""

    grant_id: str
    principal: str
    privilege: Privilege
    securable: str
    granted_at: datetime
    granted_by: str
    reason: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """An issued token (its hash only), and whether it was revoked."""

    token_id: str
    principal: str
    token_hash: str
    issued_at: datetime
    name: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass
class AccessState:
    """Who exists, who is in which group, which tokens and which grants are in force."""

    principals: dict[str, PrincipalRecord] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> members
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # in force, by id

    def groups_of(self, principal: str, *, disabled_too: bool = False) -> list[str]:
        """The enabled groups `principal` is in, directly or through other groups (each once, nearest first);
        `disabled_too`: through disabled groups as well (what a cycle check must see)."""
        found: list[str] = []
        frontier = [principal]
        seen = {principal}
        while frontier:
            current = frontier.pop(0)
            for group, members in sorted(self.members.items()):
                record = self.principals.get(group)
                usable = record is not None and (disabled_too or record.enabled)
                if current in members and group not in seen and usable:
                    seen.add(group)
                    found.append(group)
                    frontier.append(group)
        return found

    def grants_held(self, names: Iterable[str]) -> Iterator[Grant]:
        """The grants in force of any of `names`, oldest first."""
        wanted = set(names)
        for grant in sorted(self.grants.values(), key=lambda grant: (grant.granted_at, grant.grant_id)):
            if grant.principal in wanted:
                yield grant


def fold(tables: Tables) -> AccessState:
    """The state the access tables' events add up to at the tables' moment."""
    state = AccessState()
    for row in _events(tables, PRINCIPALS_TABLE):
        name = row["principal"]
        if row["event"] == "created":
            state.principals[name] = PrincipalRecord(
                name, row["kind"], True, row["recorded_at"], row["recorded_by"], row["description"]
            )
        elif name in state.principals:
            previous = state.principals[name]
            state.principals[name] = PrincipalRecord(
                name,
                previous.kind,
                row["event"] == "enabled",
                previous.created_at,
                previous.created_by,
                previous.description,
            )
    for row in _events(tables, MEMBERS_TABLE):
        members = state.members.setdefault(row["group_name"], set())
        if row["event"] == "added":
            members.add(row["member"])
        else:
            members.discard(row["member"])
    for row in _events(tables, TOKENS_TABLE):
        token_id = row["token_id"]
        if row["event"] == "issued":
            state.tokens[token_id] = TokenRecord(
                token_id,
                row["principal"],
                row["token_hash"],
                row["recorded_at"],
                row["name"],
                row["expires_at"],
            )
        elif token_id in state.tokens:
            issued = state.tokens[token_id]
            state.tokens[token_id] = TokenRecord(
                issued.token_id,
                issued.principal,
                issued.token_hash,
                issued.issued_at,
                issued.name,
                issued.expires_at,
                row["recorded_at"],
            )
    for row in _events(tables, GRANTS_TABLE):
        if row["event"] == "granted":
            state.grants[row["grant_id"]] = Grant(
                row["grant_id"],
                row["principal"],
                row["privilege"],
                row["securable"],
                row["recorded_at"],
                row["recorded_by"],
                row["reason"],
            )
        else:
            state.grants.pop(row["grant_id"], None)
    return state


def _events(tables: Tables, table: str) -> list[dict[str, Any]]:
    """A table's rows in the order they were recorded."""
    return tables.read(table).sort("recorded_at", maintain_order=True).to_dicts()
