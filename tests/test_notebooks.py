"""The notebooks run top to bottom (nbclient) on fresh lakes, draw their plots, and are committed without outputs.

Each notebook runs on three lakes: the story lake, which holds every kind of fact the notebooks tell about; the
lake `metalake demo` writes; and an empty lake, on which every notebook must still run and say what is missing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from notebook_lake import build_notebook_lake
from typer.testing import CliRunner

import metalake
from metalake.cli import app

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 120


def build_story_lake(path: Path) -> Path:
    """The lake the notebooks are written for: datasets with a failing validation, runs with curves and params,
    models moved through stages under a policy, deployments, KPI observations around them, a snapshot.

    `metalake demo` writes runs, metrics, a staged model and a snapshot, but no datasets, validations,
    deployments or KPIs yet, so this lake comes from `notebook_lake`, written through the same public API.
    Once the demo writes those facts too, `build_demo_lake` takes this function's place.
    """
    return build_notebook_lake(path)


def build_demo_lake(path: Path) -> Path:
    """What `metalake demo --lake PATH` writes: the lake the notebooks open by default."""
    result = CliRunner().invoke(app, ["demo", "--lake", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return path


def build_empty_lake(path: Path) -> Path:
    metalake.connect(path).close()
    return path


LAKES: dict[str, Callable[[Path], Path]] = {
    "story": build_story_lake,
    "demo": build_demo_lake,
    "empty": build_empty_lake,
}
# On the demo lake, the notebooks whose facts every demo writes (runs with metrics, commits) must draw.
DRAWS_ON_DEMO = {"01_experiments", "03_audit"}


class NotebookRunner:
    """Builds each kind of lake once under `root` and runs each notebook on it once, keeping the result."""

    def __init__(self, root: Path):
        self.root = root
        self.lakes: dict[str, Path] = {}
        self.executed: dict[tuple[str, str], Any] = {}

    def lake(self, kind: str) -> Path:
        if kind not in self.lakes:
            self.lakes[kind] = LAKES[kind](self.root / kind)
        return self.lakes[kind]

    def run(self, kind: str, stem: str) -> Any:
        if (kind, stem) not in self.executed:
            self.executed[kind, stem] = execute(NOTEBOOKS / f"{stem}.ipynb", self.lake(kind))
        return self.executed[kind, stem]


def execute(notebook_path: Path, lake_uri: Path) -> Any:
    """Run a notebook in a fresh kernel of this interpreter, from the notebooks folder, on `lake_uri`."""
    package_root = str(Path(metalake.__file__).resolve().parents[1])  # the kernel imports this metalake
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("METALAKE_URI", str(lake_uri))
        environment.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [package_root, os.getenv("PYTHONPATH")]))
        )
        notebook = nbformat.read(notebook_path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",  # jupyter_client starts a "python" kernel with sys.executable
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        client.execute()
    return notebook


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> NotebookRunner:
    return NotebookRunner(tmp_path_factory.mktemp("notebook-lakes"))


def outputs(notebook: Any, kind: str) -> list[Any]:
    """Outputs of one output type ("stream", "error") or carrying one MIME type ("image/png")."""
    return [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if kind in output.get("data", {}) or output.get("output_type") == kind
    ]


def text_of(notebook: Any) -> str:
    """Everything the notebook printed or displayed as markdown."""
    parts = [output.get("text", "") for output in outputs(notebook, "stream")]
    parts += [output["data"]["text/markdown"] for output in outputs(notebook, "text/markdown")]
    return "\n".join(parts)


def test_there_are_the_three_notebooks() -> None:
    assert [path.stem for path in NOTEBOOK_FILES] == ["01_experiments", "02_trust", "03_audit"]


@pytest.mark.parametrize("stem", [path.stem for path in NOTEBOOK_FILES])
@pytest.mark.parametrize("kind", list(LAKES))
def test_notebook_runs_and_draws(runner: NotebookRunner, kind: str, stem: str) -> None:
    executed = runner.run(kind, stem)
    assert not outputs(executed, "error")
    assert f"Reading the lake at {runner.lake(kind)}" in text_of(executed)
    images = outputs(executed, "image/png")
    if kind == "story" or (kind == "demo" and stem in DRAWS_ON_DEMO):
        assert images, f"{stem} drew no plot on the {kind} lake"
    if kind == "empty":
        assert not images, f"{stem} drew a plot of nothing"


def test_the_experiments_notebook_ranks_and_explains(runner: NotebookRunner) -> None:
    text = text_of(runner.run("story", "01_experiments"))
    assert "Following **churn-model** (8 finished runs), ranked by **val_auc** (higher is better)" in text
    assert "leads churn-model with val_auc =" in text
    assert "moves val_auc the most" in text


def test_the_trust_notebook_traces_the_failing_dataset_to_the_kpi(runner: NotebookRunner) -> None:
    text = text_of(runner.run("story", "02_trust"))
    assert "**customers v3** failed its latest validation" in text
    assert "the version(s) trained on data that failed validation (v3) score" in text
    assert "**overriding the policy**" in text
    assert "the deployment of **v3**, trained on data that failed validation, moved it" in text


def test_the_audit_notebook_answers_from_the_snapshot_and_the_past(runner: NotebookRunner) -> None:
    text = text_of(runner.run("story", "03_audit"))
    assert "Snapshot **release-1** was pinned by reviewer@example.com" in text
    assert "In production: churn-model: v1 → v2." in text
    assert "the snapshot's own `registry_current` agrees" in text
    assert "**churn-model v1** was serving in production" in text


def test_on_an_empty_lake_the_notebooks_say_what_is_missing(runner: NotebookRunner) -> None:
    assert "This lake has no finished runs yet" in text_of(runner.run("empty", "01_experiments"))
    assert "No dataset has been validated in this lake" in text_of(runner.run("empty", "02_trust"))
    assert "This lake has no named snapshot." in text_of(runner.run("empty", "03_audit"))


def test_committed_notebooks_carry_no_outputs() -> None:
    for path in NOTEBOOK_FILES:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, path.name
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code), (
            f"{path.name} carries outputs: run `make strip-notebooks`"
        )
        assert all("execution" not in cell.metadata for cell in notebook.cells), path.name


def test_strip_removes_what_an_execution_adds() -> None:
    spec = importlib.util.spec_from_file_location("strip_notebooks", NOTEBOOKS / "strip.py")
    assert spec is not None and spec.loader is not None
    strip_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strip_module)
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata = {
        "kernelspec": {"name": "python3"},
        "language_info": {"name": "python", "version": "3"},
    }
    assert strip_module.strip(notebook) is True
    assert cell.outputs == [] and cell.execution_count is None and "execution" not in cell.metadata
    assert notebook.metadata == {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"}}
    assert strip_module.strip(notebook) is False
