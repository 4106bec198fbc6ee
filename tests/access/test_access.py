"""`lake.access` on real lakes under tmp_path: the first admin, principals and groups, tokens kept as hashes,
what each privilege implies and what a grant on a container covers, the past (`as_of`), the errors a user meets,
the access log, and principals made by several processes at once."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.workers import START_TIMEOUT_S, run_in_processes

import metalake
from metalake.access import Access, AccessLogEntry
from metalake.errors import (
    AccessAlreadyInitialized,
    AccessError,
    GrantNotFound,
    InvalidPrivilege,
    InvalidSecurable,
    NotAuthenticated,
    PrincipalExists,
    PrincipalNotFound,
    ReadOnlyLakeError,
    TokenNotFound,
)

PRIVILEGES = ("read", "write", "manage", "unmask", "admin")
# What a grant of the key allows on the securable it is given on: the specification, written out here.
ALLOWS = {
    "read": {"read"},
    "write": {"read", "write"},
    "manage": {"read", "write", "manage"},
    "unmask": {"unmask"},
    "admin": set(PRIVILEGES),
}


@pytest.fixture
def access(lake: metalake.Lake) -> Access:
    return lake.access


def make(access: Access, *names: str, kind: str = "user") -> None:
    for name in names:
        access.create_principal(name, kind=kind)  # type: ignore[arg-type]


def secret_of(token: str) -> str:
    """The random part of mlk_ID_SECRET."""
    return token.split("_", 2)[2]


def moment_between() -> datetime:
    """A moment strictly after the commits made so far and before the next ones (Delta times are in ms)."""
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    return moment


# -- the first admin -----------------------------------------------------------------------------------------


def test_init_makes_an_admin_on_the_lake_and_returns_its_token(access: Access) -> None:
    issued = access.init("root")
    assert issued.principal == "root" and issued.token.startswith(f"mlk_{issued.token_id}_")
    assert access.authenticate(issued.token).name == "root"
    decision = access.check("root", "admin", "lake")
    assert decision.allowed and decision.grant is not None and decision.grant.reason == "access init"
    assert access.tokens("root")["token_id"].to_list() == [issued.token_id]


@pytest.mark.parametrize("second_admin", ["root", "someone-else"])
def test_a_second_init_is_refused_and_says_how_to_make_principals(access: Access, second_admin: str) -> None:
    access.init("root")
    with pytest.raises(AccessAlreadyInitialized) as refused:
        access.init(second_admin)
    assert "set up on this lake already" in str(refused.value)
    assert "metalake access principal create NAME" in str(refused.value)
    assert access.principals()["principal"].to_list() == ["root"]
    assert access.tokens().height == 1


# -- privileges ------------------------------------------------------------------------------------------------


def test_a_new_principal_holds_nothing_and_cannot_be_made_the_first_admin(access: Access) -> None:
    make(access, "alice")
    with pytest.raises(AccessAlreadyInitialized):  # a lake with principals is set up already
        access.init("root")
    for action in PRIVILEGES:
        for securable in ("lake", "experiment:churn", "model:churn", "table:metrics", "experiment:*"):
            decision = access.check("alice", action, securable)
            assert not decision and decision.grant is None
            assert decision.reason.startswith(f"no grant of {action} on")
    assert access.list("alice").is_empty()
    assert not access.readable("alice", "experiment").everything


@pytest.mark.parametrize("held", PRIVILEGES)
def test_each_privilege_allows_what_it_implies_and_nothing_else(access: Access, held: str) -> None:
    make(access, "alice")
    securable = "lake" if held in ("admin", "unmask") else "experiment:churn"
    access.grant("alice", held, securable)
    allowed = {action for action in PRIVILEGES if access.check("alice", action, securable)}
    assert allowed == ALLOWS[held]
    if held == "admin":  # on everything the lake holds, too
        for inside in ("experiment:churn", "model:churn", "kpi:retention", "view:x", "table:*"):
            assert all(access.check("alice", action, inside) for action in PRIVILEGES), inside


@pytest.mark.parametrize("securable", ["experiment:churn", "table:metrics", "model:churn"])
def test_admin_is_given_on_the_lake_only(access: Access, securable: str) -> None:
    make(access, "alice")
    with pytest.raises(InvalidSecurable, match="admin is given on the lake only"):
        access.grant("alice", "admin", securable)
    assert access.list("alice").is_empty()


def test_a_repeated_grant_returns_the_grant_in_force_and_writes_nothing(
    lake: metalake.Lake, access: Access
) -> None:
    make(access, "alice")
    first = access.grant("alice", "read", "experiment:churn", reason="onboarding")
    version = lake.version("grants")
    again = access.grant("alice", " READ ", "Experiment: churn")  # the same grant, written differently
    assert again == first
    assert lake.version("grants") == version
    assert lake.read("grants").height == 1


# -- what a grant covers -------------------------------------------------------------------------------------


def test_a_grant_on_the_lake_covers_everything_it_holds_and_whole_kinds(access: Access) -> None:
    make(access, "alice")
    given = access.grant("alice", "read", "lake")
    for securable in ("experiment:churn", "model:churn", "dataset:orders", "table:metrics", "experiment:*"):
        decision = access.check("alice", "read", securable)
        assert decision.grant == given, securable
        assert decision.reason == f"read on lake (grant {given.grant_id})"
    assert not access.check("alice", "write", "experiment:churn")


def test_a_grant_on_one_object_covers_that_object_only(access: Access) -> None:
    make(access, "alice")
    access.grant("alice", "write", "experiment:churn")
    assert access.check("alice", "write", "experiment:churn")
    assert not access.check("alice", "read", "experiment:pricing")
    assert not access.check("alice", "read", "model:churn")
    assert not access.check("alice", "read", "lake")
    whole_kind = access.check("alice", "read", "experiment:*")  # lists and creations: lake grants only
    assert not whole_kind and whole_kind.reason == "no grant of read on experiment:*"


def test_the_most_specific_grant_decides_and_its_own_before_a_groups(access: Access) -> None:
    make(access, "alice")
    make(access, "team", kind="group")
    access.add_member("team", "alice")
    access.grant("alice", "read", "lake")
    from_team = access.grant("team", "read", "experiment:churn")
    assert access.check("alice", "read", "experiment:churn").grant == from_team
    own = access.grant("alice", "read", "experiment:churn")
    assert access.check("alice", "read", "experiment:churn").grant == own


# -- groups ------------------------------------------------------------------------------------------------


def test_a_member_holds_its_groups_grants_and_loses_them_when_removed(access: Access) -> None:
    make(access, "alice")
    make(access, "team", kind="group")
    access.add_member("team", "alice")
    given = access.grant("team", "write", "model:churn")
    decision = access.check("alice", "write", "model:churn")
    assert decision.grant == given and "to group team" in decision.reason
    assert access.list("alice")["holder"].to_list() == ["team"]
    access.remove_member("team", "alice")
    assert not access.check("alice", "write", "model:churn")
    assert access.list("alice").is_empty()


def test_nested_enabled_groups_pass_their_grants_down(access: Access) -> None:
    make(access, "alice")
    make(access, "team", "org", kind="group")
    access.add_member("org", "team")
    access.add_member("team", "alice")
    access.grant("org", "read", "dataset:orders")
    assert access.check("alice", "read", "dataset:orders").grant.principal == "org"  # type: ignore[union-attr]
    assert access.principals().filter(principal="alice")["groups"].item() == "team, org"
    access.disable_principal("team")  # a disabled group passes nothing on
    assert not access.check("alice", "read", "dataset:orders")
    access.enable_principal("team")
    assert access.check("alice", "read", "dataset:orders")
    access.remove_member("org", "team")
    assert not access.check("alice", "read", "dataset:orders")


@pytest.mark.parametrize(("group", "member"), [("team", "team"), ("team", "org"), ("team", "company")])
def test_a_membership_that_makes_a_cycle_is_refused(access: Access, group: str, member: str) -> None:
    make(access, "team", "org", "company", kind="group")
    access.add_member("org", "team")
    access.add_member("company", "org")
    with pytest.raises(AccessError, match="groups may not contain themselves"):
        access.add_member(group, member)


def test_a_cycle_through_a_disabled_group_is_refused(access: Access) -> None:
    make(access, "team", "org", kind="group")
    access.add_member("org", "team")
    access.disable_principal("org")
    with pytest.raises(AccessError):
        access.add_member("team", "org")


def test_a_member_of_a_nested_group_may_also_join_the_outer_group_directly(access: Access) -> None:
    make(access, "alice")
    make(access, "team", "org", kind="group")
    access.add_member("org", "team")
    access.add_member("team", "alice")
    access.add_member("org", "alice")
    access.remove_member("team", "alice")
    access.grant("org", "read", "lake")
    assert access.check("alice", "read", "lake")


def test_only_groups_take_members_and_groups_hold_no_tokens(access: Access) -> None:
    make(access, "alice", "bob")
    make(access, "team", kind="group")
    with pytest.raises(AccessError, match=r"'alice' is a user, not a group.*--kind group"):
        access.add_member("alice", "bob")
    with pytest.raises(AccessError, match="'team' is a group: tokens belong to users and service accounts"):
        access.create_token("team")
    with pytest.raises(AccessError, match="'bob' is not a member of group 'team'"):
        access.remove_member("team", "bob")


# -- tokens ------------------------------------------------------------------------------------------------


def test_the_lake_keeps_a_tokens_sha256_and_never_shows_its_secret(
    lake: metalake.Lake, access: Access
) -> None:
    make(access, "ci-bot")
    issued = access.create_token("ci-bot", name="ci", expires="30d")
    [row] = lake.read("tokens").to_dicts()
    assert row["token_hash"] == hashlib.sha256(issued.token.encode()).hexdigest()
    secret = secret_of(issued.token)
    assert all(secret not in str(value) for value in row.values())
    assert all(secret not in str(value) for value in access.tokens().row(0))
    for path in Path(lake.uri).rglob("*"):  # the Delta logs and data files too
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    for shown in (repr(issued), str(issued), f"{issued}", repr([issued])):  # printed by accident
        assert secret not in shown and issued.token_id in shown


def test_a_token_authenticates_its_principal_until_revoked(access: Access) -> None:
    make(access, "alice")
    issued = access.create_token("alice", name="laptop")
    other = access.create_token("alice")
    assert access.authenticate(issued.token).name == "alice"
    access.revoke_token(issued.token_id, reason="lost laptop")
    with pytest.raises(NotAuthenticated, match="revoked"):
        access.authenticate(issued.token)
    access.revoke_token(other.token)  # the token itself names it too
    states = dict(access.tokens("alice").select("token_id", "state").iter_rows())
    assert states == {issued.token_id: "revoked", other.token_id: "revoked"}
    with pytest.raises(TokenNotFound, match=r"was revoked already.*metalake access token list"):
        access.revoke_token(issued.token_id)


def test_an_expired_token_stops_working(access: Access) -> None:
    make(access, "alice")
    issued = access.create_token("alice", expires=datetime.now(UTC) + timedelta(seconds=1))
    assert access.authenticate(issued.token).name == "alice"
    assert issued.expires_at is not None
    time.sleep((issued.expires_at - datetime.now(UTC)).total_seconds() + 0.05)
    with pytest.raises(NotAuthenticated, match="This token expired at"):
        access.authenticate(issued.token)
    assert access.tokens("alice")["state"].to_list() == ["expired"]


@pytest.mark.parametrize("expires", [timedelta(hours=-1), "2001-01-01T00:00:00Z", "-5m", "soon"])
def test_a_token_cannot_be_made_expired_or_with_an_unreadable_expiry(access: Access, expires: Any) -> None:
    make(access, "alice")
    with pytest.raises(AccessError, match=r"expiry|duration"):
        access.create_token("alice", expires=expires)
    assert access.tokens().is_empty()


def test_a_disabled_principal_cannot_authenticate_until_enabled(access: Access) -> None:
    make(access, "alice")
    access.grant("alice", "read", "lake")
    issued = access.create_token("alice")
    access.disable_principal("alice", reason="on leave")
    with pytest.raises(NotAuthenticated, match="'alice' of this token is disabled"):
        access.authenticate(issued.token)
    assert access.check("alice", "read", "lake").reason == "alice is disabled"
    assert access.readable("alice", "experiment") == access.readable("nobody", "experiment")
    access.enable_principal("alice")
    assert access.authenticate(issued.token).enabled
    assert access.check("alice", "read", "lake")


@pytest.mark.parametrize(
    "text", ["", "not-a-token", "mlk_", "mlk_abc", "Bearer mlk_x_y", "{id}_wrong-secret"]
)
def test_a_malformed_or_forged_token_is_not_authenticated(access: Access, text: str) -> None:
    make(access, "alice")
    issued = access.create_token("alice")
    with pytest.raises(NotAuthenticated, match="This token is not valid for this lake"):
        access.authenticate(text.format(id=f"mlk_{issued.token_id}"))


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("mlk_abc", AccessError, "A token reads mlk_ID_SECRET; give the token, or its id"),
        ("mlk_abc_", AccessError, "A token reads mlk_ID_SECRET"),
        ("0193a7c2", TokenNotFound, "'0193a7c2' is not a token of this lake. `metalake access token list`"),
    ],
)
def test_revoking_a_malformed_or_unknown_token_says_what_a_token_is(
    access: Access, text: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as refused:
        access.revoke_token(text)
    assert fragment in str(refused.value)


def test_another_handle_sees_new_tokens_at_once_and_revocations_within_refresh(lake_path: Path) -> None:
    writer = metalake.connect(lake_path, actor="tester").access
    reader = metalake.connect(lake_path, actor="server").access
    make(writer, "alice")
    first = writer.create_token("alice")
    assert reader.authenticate(first.token).name == "alice"
    time.sleep(0.2)
    second = writer.create_token("alice")
    assert reader.authenticate(second.token).name == "alice"  # an unknown token re-reads the tables
    writer.revoke_token(second.token_id)
    time.sleep(1.1)  # DEFAULT_REFRESH_S
    with pytest.raises(NotAuthenticated, match="revoked"):
        reader.authenticate(second.token)


# -- the past ------------------------------------------------------------------------------------------------


def test_a_revoked_grant_still_decides_at_a_moment_before_the_revoke(
    lake: metalake.Lake, access: Access
) -> None:
    make(access, "alice")
    before_grant = moment_between()
    given = access.grant("alice", "read", "experiment:churn")
    lake.snapshot("before-revoke")
    before_revoke = moment_between()
    assert access.revoke("alice", "read", "experiment:churn") == [given]
    for when in (before_revoke, "before-revoke"):
        past = lake.as_of(when).access
        assert past.check("alice", "read", "experiment:churn").grant == given
        assert past.list("alice")["grant_id"].to_list() == [given.grant_id]
        assert past.list(securable="experiment:churn")["grant_id"].to_list() == [given.grant_id]
    assert not lake.as_of(before_grant).access.check("alice", "read", "experiment:churn")
    assert not access.check("alice", "read", "experiment:churn")
    assert access.list().is_empty()
    assert lake.as_of(datetime.now(UTC)).access.list().is_empty()
    with pytest.raises(ReadOnlyLakeError, match="read-only"):  # the past is answered, not changed
        lake.as_of(before_revoke).access.grant("alice", "read", "lake")


# -- errors --------------------------------------------------------------------------------------------------


def test_an_unknown_principal_is_named_with_the_known_ones_and_how_to_create_it(access: Access) -> None:
    make(access, "alice", "bob")
    for call in (
        lambda: access.grant("alcie", "read", "lake"),
        lambda: access.list("alcie"),
        lambda: access.disable_principal("alcie"),
        lambda: access.create_token("alcie"),
    ):
        with pytest.raises(PrincipalNotFound) as unknown:
            call()
        message = str(unknown.value)
        assert "Unknown principal 'alcie'. Did you mean 'alice'?" in message
        assert "Known principals: alice, bob." in message
        assert "`metalake access principal create alcie`" in message
    assert access.check("alcie", "read", "lake").reason == "alcie is not a principal of this lake"


def test_a_principal_name_is_taken_once_and_must_be_typable(access: Access) -> None:
    make(access, "alice")
    with pytest.raises(PrincipalExists, match="'alice' already exists"):
        access.create_principal("alice", kind="service")
    for bad in ("bad name", ".hidden", "a:b", ""):
        with pytest.raises(AccessError, match="is not a principal name"):
            access.create_principal(bad)
    with pytest.raises(AccessError, match="'robot' is not a kind of principal; kinds: user, service, group"):
        access.create_principal("r2", kind="robot")  # type: ignore[arg-type]


def test_revoking_a_grant_not_held_lists_what_is_held_and_which_group_holds_it(access: Access) -> None:
    make(access, "alice")
    make(access, "team", kind="group")
    access.add_member("team", "alice")
    access.grant("alice", "read", "model:churn")
    access.grant("team", "write", "experiment:churn")
    with pytest.raises(GrantNotFound) as missing:
        access.revoke("alice", "write", "experiment:churn")
    assert str(missing.value) == (
        "alice holds no grant of write on experiment:churn. It holds: read model:churn. "
        "Its group team holds it: revoke it from the group."
    )
    assert access.check("alice", "write", "experiment:churn")


@pytest.mark.parametrize(
    ("securable", "fragment"),
    [
        ("experimnt:churn", "KIND one of table, view, experiment, model, dataset, kpi, namespace"),
        ("churn", "Write `lake`, or KIND:NAME"),
        ("experiment:", "names no experiment: write experiment:NAME"),
        ("experiment:*", "not on 'experiment:*'"),
        ("model:" + "m" * 251, "1 to 250 characters"),
    ],
)
def test_an_invalid_securable_says_which_forms_are_accepted(
    access: Access, securable: str, fragment: str
) -> None:
    make(access, "alice")
    with pytest.raises(InvalidSecurable) as invalid:
        access.grant("alice", "read", securable)
    assert fragment in str(invalid.value)
    assert isinstance(invalid.value, ValueError)


def test_an_invalid_privilege_lists_the_privileges(access: Access) -> None:
    make(access, "alice")
    for call in (lambda: access.grant("alice", "reed", "lake"), lambda: access.check("alice", "own", "lake")):
        with pytest.raises(InvalidPrivilege, match=r"is not a privilege. Privileges: read, write, manage"):
            call()


# -- the access log and filtered lists -----------------------------------------------------------------------


def test_record_writes_the_servers_decisions_in_one_commit(lake: metalake.Lake, access: Access) -> None:
    now = datetime.now(UTC)
    entries = [
        AccessLogEntry("alice", "read", "experiment:churn", "allowed", now, "g1", "GET", "/api/runs"),
        AccessLogEntry("bob", "write", "model:churn", "denied", now),
        {
            "principal": "carol",
            "action": "read",
            "securable": "experiment:*",
            "decision": "denied",
            "at": now,
        },
    ]
    assert access.record([]) is None
    assert lake.version("access_log") == 0
    commit = access.record(entries)
    assert commit is not None and commit.rows == 3
    assert lake.version("access_log") == 1
    logged = lake.read("access_log").sort("principal")
    assert logged["principal"].to_list() == ["alice", "bob", "carol"]
    assert logged["decision"].to_list() == ["allowed", "denied", "denied"]
    assert logged["grant_id"].to_list() == ["g1", None, None]
    assert logged["entry_id"].n_unique() == 3


def test_readable_names_what_a_principal_may_read_of_one_kind(access: Access) -> None:
    make(access, "alice", "bob", "carol")
    make(access, "team", kind="group")
    access.add_member("team", "alice")
    access.grant("alice", "read", "experiment:churn")
    access.grant("team", "write", "experiment:pricing")
    access.grant("carol", "unmask", "lake")  # unmask is no read
    access.grant("alice", "read", "model:churn")
    access.grant("bob", "read", "lake")
    readable = access.readable("alice", "experiment")
    assert not readable.everything and readable.names == {"churn", "pricing"}
    assert "churn" in readable and "secret" not in readable
    assert access.readable("alice", "model").names == {"churn"}
    assert access.readable("bob", "experiment").everything and "anything" in access.readable("bob", "model")
    for nothing in (access.readable("carol", "experiment"), access.readable("nobody", "experiment")):
        assert not nothing.everything and not nothing.names


# -- several processes ---------------------------------------------------------------------------------------


def create_and_grant(uri: str, worker: str, count: int, start: Any) -> list[str]:
    """A spawned child: make `count` principals of its own, grant each, and put each in the shared group."""
    lake = metalake.connect(uri, actor=worker)
    lake.access.principals()  # load what the first write needs before the others are released
    start.wait(START_TIMEOUT_S)
    grant_ids = []
    for number in range(count):
        name = f"{worker}-{number}"
        lake.access.create_principal(name, kind="service")
        grant_ids.append(lake.access.grant(name, "write", f"experiment:{name}").grant_id)
        lake.access.add_member("everyone", name)
    return grant_ids


def test_principals_and_grants_made_by_four_processes_at_once_are_all_kept(lake_path: Path) -> None:
    lake = metalake.connect(lake_path, actor="tester")
    lake.access.create_principal("everyone", kind="group")
    lake.access.grant("everyone", "read", "model:shared")
    made = run_in_processes(create_and_grant, [(str(lake_path), f"w{i}", 3) for i in range(4)])
    names = {f"w{i}-{n}" for i in range(4) for n in range(3)}
    access = metalake.connect(lake_path, actor="auditor").access
    assert set(access.principals()["principal"]) == names | {"everyone"}
    assert set(access.list()["grant_id"]) >= {grant_id for ids in made for grant_id in ids}
    for name in names:
        assert access.check(name, "write", f"experiment:{name}")
        assert access.check(name, "read", "model:shared").grant.principal == "everyone"  # type: ignore[union-attr]
    assert access.list().height == 13
