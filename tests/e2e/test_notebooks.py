"""The notebooks run top to bottom (nbclient) on fresh lakes, draw their plots, and are committed without outputs.

Each notebook runs on two lakes: the demo lake (two rounds of `metalake demo`, the session's `demo_lake`), whose
story the notebooks must tell, and an empty lake, on which every notebook must still run and say what is
missing. Where there is no lake at all, a notebook stops in its first cell and creates none. The checks read the
structure of the notebooks' sentences, not the demo's numbers or dates, which may change.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.demo_lake import DemoLake

import metalake

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 120
LAKE_KINDS = ("demo", "empty")
PLOTS_ON_DEMO = {"01_experiments": 3, "02_trust": 3, "03_audit": 4}


class NotebookRunner:
    """Runs each notebook once on each kind of lake, keeping the executed notebook."""

    def __init__(self, lakes: dict[str, Path]):
        self.lakes = lakes
        self.executed: dict[tuple[str, str], Any] = {}

    def run(self, kind: str, stem: str) -> Any:
        if (kind, stem) not in self.executed:
            self.executed[kind, stem] = execute(NOTEBOOKS / f"{stem}.ipynb", self.lakes[kind])
        return self.executed[kind, stem]


def execute(notebook_path: Path, lake_uri: Path) -> Any:
    """The notebook, run on `lake_uri` (see `run`)."""
    notebook = nbformat.read(notebook_path, as_version=4)
    run(notebook, lake_uri)
    return notebook


def run(notebook: Any, lake_uri: Path) -> None:
    """Run a notebook in place in a fresh kernel of this interpreter, from the notebooks folder, on `lake_uri`.

    Like Jupyter's "Run All", it stops at the first cell that raises (nbclient's CellExecutionError).
    """
    package_root = str(Path(metalake.__file__).resolve().parents[1])  # the kernel imports this metalake
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("METALAKE_URI", str(lake_uri))
        environment.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [package_root, os.getenv("PYTHONPATH")]))
        )
        client = nbclient.NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",  # jupyter_client starts a "python" kernel with sys.executable
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        client.execute()


def load_shared() -> ModuleType:
    """notebooks/_shared.py, the module the notebooks import from their folder."""
    spec = importlib.util.spec_from_file_location("notebooks_shared", NOTEBOOKS / "_shared.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> NotebookRunner:
    assert demo_lake.second.exit_code == 0, demo_lake.second.output
    empty = tmp_path_factory.mktemp("notebooks") / "empty-lake"
    metalake.connect(empty).close()
    return NotebookRunner({"demo": demo_lake.path, "empty": empty})


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


def line_with(fragment: str, text: str) -> str:
    """The line of the notebook's text that holds `fragment`."""
    found = [line for line in text.splitlines() if fragment in line]
    assert found, f"no line holds {fragment!r}"
    return found[0]


def test_there_are_the_three_notebooks() -> None:
    assert [path.stem for path in NOTEBOOK_FILES] == ["01_experiments", "02_trust", "03_audit"]


@pytest.mark.parametrize("stem", [path.stem for path in NOTEBOOK_FILES])
@pytest.mark.parametrize("kind", LAKE_KINDS)
def test_notebook_runs_and_draws(runner: NotebookRunner, kind: str, stem: str) -> None:
    executed = runner.run(kind, stem)
    assert not outputs(executed, "error")
    assert f"Reading the lake at {runner.lakes[kind]}" in text_of(executed)
    images = outputs(executed, "image/png")
    if kind == "demo":  # every section draws
        assert len(images) == PLOTS_ON_DEMO[stem], f"{stem} drew {len(images)} plot(s) on the demo lake"
    else:
        assert not images, f"{stem} drew a plot of nothing"


def test_the_experiments_notebook_ranks_and_sets_broken_data_apart(runner: NotebookRunner) -> None:
    text = text_of(runner.run("demo", "01_experiments"))
    assert (
        "Following **tumor-classification** (8 finished runs), ranked by **val_auc** (higher is better)"
        in text
    )
    leader = re.search(r"\*\*(\S+)\*\* leads tumor-classification with val_auc = ", text)
    assert leader and "nightly-retrain" not in leader[1]
    assert "(r1-nightly-retrain) is" in text and "it read breast_cancer v2, which failed validation" in text
    assert "2 run(s) read data that failed validation (r2-nightly-retrain, r1-nightly-retrain)" in text
    assert "Left out: 2 run(s) that read data which failed validation." in text


def test_the_experiments_notebook_takes_parameter_effects_within_a_model_type(runner: NotebookRunner) -> None:
    text = text_of(runner.run("demo", "01_experiments"))
    between = line_with("Between model types: **model_type** moves val_auc by ", text)
    # learning_rate means something else in each model: it splits the runs as model_type does, and is no finding
    alias = (
        "learning_rate splits the runs exactly as model_type does: it is the model type under another name"
    )
    assert alias in between
    assert "moves val_auc the most" not in between and "**learning_rate**" not in text
    within = line_with("Within one model type: **", text)
    headline = re.match(
        r"Within one model type: \*\*(\w+)\*\* moves val_auc the most, by \d\.\d{4} on average over the "
        r"(\d+) model type\(s\) where it varies \(the most for [\w-]+: \d\.\d{4}\)"
        r"(; its larger value scores better in (\d+) of them)?\.",
        within,
    )
    assert headline, within
    assert headline[1] not in ("model_type", "learning_rate", "seed")
    assert headline[4] is None or int(headline[4]) <= int(headline[2])
    if "seed" in within:  # a random seed is never the headline: at most an alias of it, or listed last
        assert f"seed splits the runs exactly as {headline[1]} does within each model type" in within or (
            "seed (" in within
        )


def test_the_trust_notebook_traces_the_failing_dataset_to_the_kpi(runner: NotebookRunner) -> None:
    text = text_of(runner.run("demo", "02_trust"))
    assert "**breast_cancer v4** failed its latest validation (`breast_cancer`, great_expectations)" in text
    offline = line_with("the version(s) trained on data that failed validation (v2, v4) score", text)
    assert (
        offline.startswith("**tumor-classifier**") and "worse than the versions trained on passing" in offline
    )
    assert "The lake's policy requires passing data quality to enter production and staging" in text
    assert "**tumor-classifier v2** never reached production" in text
    assert "**tumor-classifier v4** never reached production" in text
    recall = line_with("- **malignant_recall** (higher is better)", text)
    assert "the shadow deployment of **v2** moved it from" in recall
    assert "the shadow deployment of **v4** moved it from" in recall
    assert recall.count(": worse") == 2


def test_the_audit_notebook_answers_from_the_snapshot_and_the_past(runner: NotebookRunner) -> None:
    text = text_of(runner.run("demo", "03_audit"))
    assert "The most active actor is **tester**" in text and "then **release-manager**" in text
    assert "**tumor-classifier** had 5 stage change(s) by 2 person(s)" in text
    assert "Snapshot **demo-round-1** was pinned by tester" in text
    assert "In production: tumor-classifier: v1 → v3; wine-cultivar: v1 → v2." in text
    assert (
        "At snapshot demo-round-1, the snapshot's own `registry_current` agrees with `registry.at`." in text
    )
    assert "Upstream of `model:tumor-classifier/3`" in text
    assert "`dataset:postgres://clinic-db:5432/pathology.biopsies`" in text


def test_the_audit_notebook_asks_the_registry_and_the_deployments_at_the_same_moments(
    runner: NotebookRunner,
) -> None:
    text = text_of(runner.run("demo", "03_audit"))
    moment = r"\d\. At (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC, "
    serving = r"(\*\*tumor-classifier v\d+\*\* was serving|no version of tumor-classifier was serving) in production"
    verdict = r"(They agree\.|\*\*They disagree\.\*\*)$"
    # the demo dates deployments on a simulated calendar before the real time of its registry decisions
    deployed = line_with("the middle of the longest production deployment that has ended (v", text)
    assert re.match(moment, deployed), deployed
    assert (
        ": the registry had **no version of tumor-classifier in production** (its first production decision was "
        "recorded later, on " in deployed
    )
    assert re.search(
        r"UTC\), and \*\*tumor-classifier v\d+\*\* was serving in production \(deployment ", deployed
    )
    assert deployed.endswith("**They disagree.**")
    decided = line_with("the middle of the registry's first production period that has ended (v1)", text)
    pinned = line_with("the pin of snapshot demo-round-1", text)
    for line in (decided, pinned):
        assert re.match(moment, line) and re.search(verdict, line), line
        assert (
            "the registry had **tumor-classifier v1** in production (moved there by release-manager: " in line
        )
        assert re.search(serving, line), line
    first_deployment = re.search(
        r"The two clocks do not line up here: the first production deployment of tumor-classifier started on "
        r"(\S+ \S+) UTC, before the registry recorded any production decision for it \((\S+ \S+) UTC\)\.",
        text,
    )
    assert first_deployment and first_deployment[1] < first_deployment[2]
    asked_at = [found[1] for found in (re.match(moment, deployed), re.match(moment, decided)) if found]
    assert len(asked_at) == 2 and asked_at[0] < asked_at[1]


def test_on_an_empty_lake_the_notebooks_say_what_is_missing(runner: NotebookRunner) -> None:
    assert "This lake has no finished runs yet" in text_of(runner.run("empty", "01_experiments"))
    assert "No dataset has been validated in this lake" in text_of(runner.run("empty", "02_trust"))
    assert "This lake has no named snapshot." in text_of(runner.run("empty", "03_audit"))


def test_a_notebook_stops_in_its_first_cell_where_there_is_no_lake(tmp_path: Path) -> None:
    missing = tmp_path / "no-lake"
    notebook = nbformat.read(NOTEBOOKS / "01_experiments.ipynb", as_version=4)
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        run(notebook, missing)
    [error] = outputs(notebook, "error")
    assert error["ename"] == "FileNotFoundError"
    assert f"There is no metalake lake at {missing}, where $METALAKE_URI points" in error["evalue"]
    ran = [cell for cell in notebook.cells if cell.get("execution_count")]
    assert ran == [notebook.cells[1]]
    assert not missing.exists()


def test_without_metalake_uri_the_notebooks_want_the_demo_lake_and_do_not_create_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = load_shared()
    monkeypatch.setattr(shared, "DEMO_LAKE", tmp_path / "demo-lake")
    with pytest.raises(FileNotFoundError, match=r"There is no demo lake at .*: build it with `make demo`"):
        shared.open_lake()
    assert not (tmp_path / "demo-lake").exists()
    metalake.connect(tmp_path / "demo-lake").close()  # an empty lake opens: the notebooks say what it lacks
    lake = shared.open_lake()
    assert lake.uri == str(tmp_path / "demo-lake")
    lake.close()


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("val_auc", "max"),
        ("val_accuracy", "max"),
        ("val_malignant_recall", "max"),
        ("f1_score", "max"),
        ("val_loss", "min"),
        ("train_loss", "min"),
        ("valLoss", "min"),
        ("val_false_alarm_rate", "min"),
        ("false_negative_rate", "min"),
        ("miss_rate", "min"),
        ("error_rate", "min"),
        ("test_rmse", "min"),
        ("p95_latency_ms", "min"),
        ("neg_mean_squared_error", "max"),  # scikit-learn negates errors so that higher is better
    ],
)
def test_a_metric_name_says_which_way_is_better(metric: str, direction: str) -> None:
    assert load_shared().direction_of(metric) == direction


def test_the_main_metric_is_a_held_out_score() -> None:
    main_metric = load_shared().main_metric
    logged = [
        "train_loss",
        "val_false_alarm_rate",
        "val_malignant_recall",
        "val_accuracy",
        "val_auc",
        "val_loss",
    ]
    assert main_metric(logged) == "val_auc"
    assert main_metric(["train_accuracy", "test_loss"]) == "test_loss"


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
