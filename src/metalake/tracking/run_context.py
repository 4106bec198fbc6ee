"""Where a run ran: user, host, command, Python, git state and installed packages (computed once per process)."""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import re
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
    """A short hash of the installed distributions and their versions: equal environments give equal hashes.

    It hashes the names of the `*.dist-info` and `*.egg-info` directories on `sys.path` (`numpy-2.1.0.dist-info`
    carries the name and the version), normalised as PEP 503 names, instead of parsing every distribution's
    metadata with `importlib.metadata`: that took about 0.7 s in an environment of 600 packages, paid by every
    training job, while listing the directories takes a few milliseconds. Installing, removing, upgrading or
    downgrading a package renames or adds such a directory, so the hash changes with the environment.
    """
    entries: set[str] = set()
    for location in sys.path:
        try:
            with os.scandir(location or ".") as found:
                names = [entry.name for entry in found if entry.name.endswith(_METADATA_SUFFIXES)]
        except OSError:  # a zip file, a missing folder
            continue
        entries.update(_distribution_entry(name) for name in names)
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def _distribution_entry(directory: str) -> str:
    """`Foo.Bar-1.0.dist-info` -> `foo-bar==1.0` (an egg-info may carry a Python tag, or no version)."""
    stem = directory.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version.lower()}"
