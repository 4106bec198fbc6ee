"""Which commands may create a lake: reads and updates answer LakeNotFound for a mistyped --lake and leave
nothing behind; only writing commands (and init) create one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app
from metalake.cli.common import LAKE_USE

# Arguments that get each command past its usage checks, to the point where it opens the lake.
SAMPLE_ARGS: dict[str, list[str]] = {
    "describe": ["runs"],
    "sql": ["select 1"],
    "history": ["runs"],
    "snapshot": ["paper-v1"],
    "runs show": ["0193a7c2"],
    "runs compare": ["0193a7c2", "0193a7c3"],
    "datasets show": ["churn"],
    "datasets history": ["churn"],
    "datasets diff": ["churn", "1", "2"],
    "quality validate": ["churn", "--suite", "{file}"],
    "quality report": ["churn"],
    "models show": ["churn"],
    "models alias": ["churn", "champion", "1"],
    "models transition": ["churn", "1", "production"],
    "models at": ["churn", "2026-01-01"],
    "deploy end": ["0193a7c2"],
    "kpis observe": ["conversion_rate", "3.2"],
    "kpis ingest": ["{file}"],
    "lineage show": ["model:churn/1"],
    "views export": ["--output", "{folder}", "--dialect", "spark"],
    "export duckdb": ["{folder}/lake.duckdb"],
    "access principal create": ["alice"],
    "access principal disable": ["alice"],
    "access principal enable": ["alice"],
    "access group add": ["team", "alice"],
    "access group remove": ["team", "alice"],
    "access token create": ["alice"],
    "access token revoke": ["0193a7c2"],
    "access grant": ["alice", "read", "lake"],
    "access revoke": ["alice", "read", "lake"],
    "access check": ["alice", "read", "lake"],
}


def command_names(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from command_names(sub, (*prefix, name))
    else:
        yield " ".join(prefix)


def test_every_command_says_whether_it_may_create_a_lake() -> None:
    """A new command must be classified in LAKE_USE (and a removed one taken out)."""
    assert sorted(command_names(typer.main.get_command(app))) == sorted(LAKE_USE)


NOT_CREATING = sorted(
    name for name, use in LAKE_USE.items() if use in ("reads", "updates", "reads or writes")
)


@pytest.mark.parametrize("command", NOT_CREATING)
def test_a_mistyped_lake_is_not_found_and_not_created(command: str, tmp_path: Path) -> None:
    typo = tmp_path / "typo-lake"
    observations = tmp_path / "observations.csv"
    observations.write_text("kpi,value,observed_at\nconversion_rate,3.2,2026-01-01T00:00:00Z\n")
    args = [arg.format(file=observations, folder=tmp_path / "out") for arg in SAMPLE_ARGS.get(command, [])]
    result = CliRunner().invoke(app, ["--lake", str(typo), *command.split(), *args], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert "No lake at" in result.output and "typo-lake" in result.output, result.output
    assert "metalake init" in result.output
    assert "Traceback" not in result.output
    assert not typo.exists()


def test_a_bare_read_does_not_create_the_default_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["runs", "list"])
    assert result.exit_code == 1, result.output
    assert "No lake at" in result.output
    assert not (tmp_path / "lake").exists()


def test_a_read_on_an_existing_lake_works(lake_path: Path) -> None:
    metalake.connect(lake_path)
    result = CliRunner().invoke(app, ["--lake", str(lake_path), "runs", "list"])
    assert result.exit_code == 0, result.output


def test_setting_creates_the_lake_where_showing_does_not(tmp_path: Path) -> None:
    new_lake = tmp_path / "new-lake"
    result = CliRunner().invoke(app, ["--lake", str(new_lake), "kpis", "production-envs", "--set", "prod"])
    assert result.exit_code == 0, result.output
    assert metalake.connect(new_lake, create=False).kpis.production_environments() == ("prod",)


def test_a_write_creates_the_lake(tmp_path: Path) -> None:
    new_lake = tmp_path / "new-lake"
    result = CliRunner().invoke(
        app,
        [
            "--lake",
            str(new_lake),
            "kpis",
            "define",
            "conversion_rate",
            "--unit",
            "%",
            "--direction",
            "higher_is_better",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Created a new lake at {new_lake}" in result.stderr
    assert metalake.connect(new_lake, create=False).kpis.list().height == 1
    again = CliRunner().invoke(
        app,
        [
            "--lake",
            str(new_lake),
            "kpis",
            "define",
            "conversion_rate",
            "--unit",
            "%",
            "--direction",
            "higher_is_better",
        ],
    )
    assert again.exit_code == 0 and "Created" not in again.stderr


def test_a_failed_mlflow_import_leaves_no_lake(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    typo = tmp_path / "typo-lake"
    result = CliRunner().invoke(
        app, ["--lake", str(typo), "import", "mlflow", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]
    )
    assert result.exit_code == 1, result.output
    assert "No MLflow store" in result.output
    assert not typo.exists()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["datasets", "register", "churn-train", "missing.csv"], "Path not found"),
        (["datasets", "register", "churn-train", "ragged.csv"], "line 2 has 3 field(s)"),
        (["lineage", "ingest", "missing.jsonl"], "is not a file"),
        (["models", "policy", "set", "missing.yaml"], "does not exist"),
    ],
)
def test_a_write_refused_for_its_input_leaves_no_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3\n")
    typo = tmp_path / "typo-lake"
    result = CliRunner().invoke(app, ["--lake", str(typo), *command])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert not typo.exists()
