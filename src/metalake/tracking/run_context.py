"""Where a run ran: user, host, command, Python, git state and installed packages (computed once per process)."""

from __future__ import annotations

import getpass
import hashlib
import platform
import socket
import subprocess
import sys
from functools import cache
from typing import Any


@cache
def run_context() -> dict[str, Any]:
    """Context columns of a `runs` event; cached, since a process does not change host or checkout."""
    return {
        "user": _user(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv)[:2000] or None,
        "python_version": platform.python_version(),
        **git_state(),
        "packages_hash": packages_hash(),
    }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def git_state() -> dict[str, Any]:
    """Commit, branch and dirty flag of the git work tree around the current directory, if any."""
    try:
        output = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_branch": None, "git_dirty": None}
    commit = branch = None
    dirty = False
    for line in output.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split(" ", 2)[2]
        elif line.startswith("# branch.head "):
            branch = line.split(" ", 2)[2]
        elif not line.startswith("#"):
            dirty = True
    if commit == "(initial)":
        commit = None
    if branch == "(detached)":
        branch = None
    return {"git_commit": commit, "git_branch": branch, "git_dirty": dirty}


def packages_hash() -> str:
    """A short hash of every installed distribution and version: equal hashes mean equal environments."""
    from importlib.metadata import distributions

    names = sorted(
        f"{d.metadata['Name']}=={d.version}".lower() for d in distributions() if d.metadata["Name"]
    )
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
