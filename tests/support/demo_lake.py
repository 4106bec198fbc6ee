"""The lake `metalake demo` writes in two rounds, built once per test session (the `demo_lake` fixture).

Round 1 runs in-process through `run_demo`, so its return value and printed report can be checked; round 2 runs
through the command line on the same lake. The demo and notebook tests share it and only read it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner, Result

from metalake.cli.app import app
from metalake.demo import DemoRound, run_demo


@dataclass(frozen=True)
class DemoLake:
    path: Path
    first: DemoRound  # what round 1 wrote
    first_output: str  # what round 1 printed
    second: Result  # round 2, through `metalake --lake PATH demo`


def build_demo_lake(path: Path) -> DemoLake:
    buffer = io.StringIO()
    first = run_demo(str(path), Console(file=buffer, width=200, highlight=False), actor="tester")
    second = CliRunner().invoke(
        app, ["--lake", str(path), "demo"], env={"COLUMNS": "200", "METALAKE_ACTOR": "tester"}
    )
    return DemoLake(path, first, buffer.getvalue(), second)
