"""`metalake access ...` on real lakes under tmp_path: tokens alone on stdout (for `TOKEN=$(...)`), `check`'s exit
code and the grant that decided, listings as JSON now and in the past, and the errors a user meets (exit code 1,
one message, no traceback; usage errors exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import metalake
from metalake.cli.app import app


def run(lake_path: Path, *args: str) -> Result:
    """`metalake --lake LAKE ARGS...`, in-process, on a wide terminal so that lines do not wrap."""
    return CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output


def assert_fails(result: Result, code: int, *fragments: str) -> None:
    """A deliberate exit (SystemExit), never a crash, with every fragment in the output and no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert "Traceback" not in result.output


def rows(result: Result) -> list[dict[str, Any]]:
    assert_ok(result)
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


@pytest.fixture
def guarded(lake_path: Path) -> metalake.Lake:
    """A lake with an admin (root), alice in group team, and bob; team may write experiment:churn."""
    lake = metalake.connect(lake_path, actor="tester")
    lake.access.init("root")
    lake.access.create_principal("alice")
    lake.access.create_principal("bob")
    lake.access.create_principal("team", kind="group")
    lake.access.add_member("team", "alice")
    lake.access.grant("team", "write", "experiment:churn")
    return lake


# -- tokens on stdout ----------------------------------------------------------------------------------------


def test_init_prints_only_the_token_on_stdout_in_a_real_process(lake_path: Path) -> None:
    """What `TOKEN=$(metalake access init)` captures: the token and its newline, the rest on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "metalake.cli", "--lake", str(lake_path), "access", "init", "root"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.removesuffix("\n")
    assert token.startswith("mlk_") and token.strip() == token and "\n" not in token, result.stdout
    assert "root is the lake's admin" in result.stderr and "shown this once" in result.stderr
    assert token not in result.stderr
    lake = metalake.connect(lake_path, actor="tester", create=False)
    assert lake.access.authenticate(token).name == "root"
    assert lake.access.check("root", "admin", "lake")


def test_init_a_second_time_fails_and_says_how_to_make_principals(
    guarded: metalake.Lake, lake_path: Path
) -> None:
    result = run(lake_path, "access", "init", "alice")
    assert_fails(result, 1, "set up on this lake already", "metalake access principal create NAME")
    assert result.stdout == ""


def test_token_create_prints_the_token_once_and_token_list_never(
    guarded: metalake.Lake, lake_path: Path
) -> None:
    created = run(lake_path, "access", "token", "create", "alice", "--expires", "30d", "--name", "laptop")
    assert_ok(created)
    token = created.stdout.removesuffix("\n")
    assert token.startswith("mlk_") and "\n" not in token
    assert "A token for alice" in created.stderr and "expires" in created.stderr
    assert guarded.access.authenticate(token).name == "alice"
    listed = run(lake_path, "access", "token", "list", "alice", "--format", "json")
    [row] = rows(listed)
    assert row["name"] == "laptop" and row["state"] == "active" and row["expires_at"] is not None
    assert token.split("_", 2)[2] not in listed.output
    assert_ok(run(lake_path, "access", "token", "revoke", row["token_id"], "--reason", "lost"))
    assert (
        rows(run(lake_path, "access", "token", "list", "alice", "--format", "json"))[0]["state"] == "revoked"
    )


def test_a_group_gets_no_token_from_the_command_line(guarded: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "access", "token", "create", "team")
    assert_fails(result, 1, "'team' is a group: tokens belong to users and service accounts")
    assert result.stdout == ""


# -- check ---------------------------------------------------------------------------------------------------


def test_check_exits_0_when_allowed_and_names_the_grant_that_decided(
    guarded: metalake.Lake, lake_path: Path
) -> None:
    grant_id = guarded.access.check("alice", "read", "experiment:churn").grant.grant_id  # type: ignore[union-attr]
    result = run(lake_path, "access", "check", "alice", "read", "experiment:churn")
    assert_ok(result)
    assert result.stdout.startswith("allowed: alice read experiment:churn")
    assert f"write on experiment:churn to group team (grant {grant_id})" in result.stdout


def test_check_exits_1_when_denied_and_says_no_grant_decides(guarded: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "access", "check", "bob", "write", "experiment:churn")
    assert_fails(result, 1, "denied: bob write experiment:churn", "no grant of write on experiment:churn")
    assert "Traceback" not in result.output


def test_check_as_json_is_one_decision(guarded: metalake.Lake, lake_path: Path) -> None:
    allowed = run(lake_path, "access", "check", "root", "manage", "model:churn", "--format", "json")
    [decision] = rows(allowed)
    assert decision["decision"] == "allowed" and decision["grant_id"] is not None
    assert decision["reason"].startswith("admin on lake (grant ")
    denied = run(lake_path, "access", "check", "bob", "read", "lake", "--format", "json")
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)[0] == {
        "principal": "bob",
        "action": "read",
        "securable": "lake",
        "decision": "denied",
        "grant_id": None,
        "reason": "no grant of read on lake",
    }


# -- listings ------------------------------------------------------------------------------------------------


def test_list_as_json_shows_the_grants_of_everyone_a_principal_or_a_securable(
    guarded: metalake.Lake, lake_path: Path
) -> None:
    assert_ok(run(lake_path, "access", "grant", "bob", "read", "model:churn", "--reason", "review"))
    everything = rows(run(lake_path, "access", "list", "--format", "json"))
    assert [(row["holder"], row["privilege"], row["securable"]) for row in everything] == [
        ("root", "admin", "lake"),
        ("team", "write", "experiment:churn"),
        ("bob", "read", "model:churn"),
    ]
    assert everything[2]["reason"] == "review" and everything[2]["granted_by"] == "tester"
    datetime.fromisoformat(everything[2]["granted_at"])
    of_alice = rows(run(lake_path, "access", "list", "alice", "--format", "json"))
    assert [row["holder"] for row in of_alice] == ["team"]
    on_churn = rows(run(lake_path, "access", "list", "experiment:churn", "--format", "json"))
    assert {row["securable"] for row in on_churn} == {"lake", "experiment:churn"}


def test_list_and_check_as_of_answer_the_past(guarded: metalake.Lake, lake_path: Path) -> None:
    assert_ok(run(lake_path, "access", "grant", "bob", "read", "dataset:orders"))
    time.sleep(0.05)
    before_revoke = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    assert_ok(run(lake_path, "access", "revoke", "bob", "read", "dataset:orders", "--reason", "moved team"))
    then = rows(run(lake_path, "access", "list", "bob", "--as-of", before_revoke, "--format", "json"))
    assert [(row["privilege"], row["securable"]) for row in then] == [("read", "dataset:orders")]
    assert rows(run(lake_path, "access", "list", "bob", "--format", "json")) == []
    assert_ok(run(lake_path, "access", "check", "bob", "read", "dataset:orders", "--as-of", before_revoke))
    assert run(lake_path, "access", "check", "bob", "read", "dataset:orders").exit_code == 1


def test_principals_and_groups_from_the_command_line(guarded: metalake.Lake, lake_path: Path) -> None:
    created = run(lake_path, "access", "principal", "create", "ci-bot", "--kind", "service")
    assert_ok(created)
    assert (
        "Created service ci-bot; give it a token with `metalake access token create ci-bot`" in created.stdout
    )
    assert_ok(run(lake_path, "access", "group", "add", "team", "ci-bot"))
    assert_ok(run(lake_path, "access", "check", "ci-bot", "write", "experiment:churn"))
    assert_ok(run(lake_path, "access", "principal", "disable", "ci-bot", "--reason", "rotated"))
    listed = {
        row["principal"]: row for row in rows(run(lake_path, "access", "principal", "list", "-f", "json"))
    }
    assert listed["ci-bot"]["enabled"] is False and listed["ci-bot"]["groups"] == "team"
    assert_fails(
        run(lake_path, "access", "check", "ci-bot", "read", "experiment:churn"), 1, "ci-bot is disabled"
    )
    assert_ok(run(lake_path, "access", "principal", "enable", "ci-bot"))
    assert_ok(run(lake_path, "access", "group", "remove", "team", "ci-bot"))
    assert run(lake_path, "access", "check", "ci-bot", "write", "experiment:churn").exit_code == 1


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["grant", "alcie", "read", "lake"],
            ["Unknown principal 'alcie'. Did you mean 'alice'?", "metalake access principal create alcie"],
        ),
        (["list", "nobody"], ["Unknown principal 'nobody'", "Known principals: alice, bob, root, team."]),
        (["check", "nobody", "read", "lake"], ["denied", "nobody is not a principal of this lake"]),
        (["grant", "alice", "reed", "lake"], ["'reed' is not a privilege. Privileges: read, write, manage"]),
        (["check", "alice", "own", "lake"], ["'own' is not a privilege"]),
        (
            ["grant", "alice", "read", "experimnt:churn"],
            ["'experimnt:churn' is not a securable", "KIND one of"],
        ),
        (["grant", "alice", "admin", "model:churn"], ["admin is given on the lake only"]),
        (["revoke", "alice", "write", "experiment:churn"], ["holds no grant", "revoke it from the group"]),
        (["token", "revoke", "0193a7c2"], ["'0193a7c2' is not a token of this lake"]),
        (["token", "revoke", "mlk_abc"], ["A token reads mlk_ID_SECRET"]),
        (["group", "add", "alice", "bob"], ["'alice' is a user, not a group"]),
        (["principal", "create", "alice"], ["A principal named 'alice' already exists"]),
        (["token", "create", "bob", "--expires", "yesterday"], ["The expiry"]),
    ],
)
def test_a_refused_command_prints_one_message_and_exits_1(
    guarded: metalake.Lake, lake_path: Path, args: list[str], fragments: list[str]
) -> None:
    versions = {
        table: guarded.version(table) for table in ("principals", "group_members", "tokens", "grants")
    }
    result = run(lake_path, "access", *args)
    assert_fails(result, 1, *fragments)
    assert {table: guarded.version(table) for table in versions} == versions


def test_an_unknown_kind_of_principal_is_a_usage_error(guarded: metalake.Lake, lake_path: Path) -> None:
    result = run(lake_path, "access", "principal", "create", "r2", "--kind", "robot")
    assert_fails(result, 2, "'robot' is not one of 'user', 'service', 'group'")


def test_export_masked_for_a_principal_says_so_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    lake_path = tmp_path / "lake"
    lake = metalake.connect(lake_path)
    lake.access.init("root")
    lake.access.create_principal("analyst")
    with lake.runs.start("churn") as logged:
        logged.log_params({"db_password": "hunter2"})
    lake.close()
    masked = run(lake_path, "export", "duckdb", str(tmp_path / "a.duckdb"), "--masked-for", "analyst")
    assert_ok(masked)
    assert "for analyst (sensitive values masked)" in masked.output
    clear = run(lake_path, "export", "duckdb", str(tmp_path / "r.duckdb"), "--masked-for", "root")
    assert "for root (in clear: it may unmask)" in clear.output
    assert_fails(
        run(lake_path, "export", "duckdb", str(tmp_path / "n.duckdb"), "--masked-for", "nobody"), 1, "nobody"
    )
    assert not (tmp_path / "n.duckdb").exists()
