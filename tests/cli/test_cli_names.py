"""Typos on the command line are answered with "did you mean", not with an empty listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import metalake
from metalake.cli.app import app

pytestmark = pytest.mark.filterwarnings("ignore::metalake.deployments.UnregisteredModelVersionWarning")


@pytest.fixture
def churn_lake(lake_path: Path) -> Path:
    lake = metalake.connect(lake_path)
    with lake.runs.start(experiment="churn", name="xgb") as run:
        run.log_metric("val_auc", 0.9)
    lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/1")
    lake.deployments.record("churn", 1, "production")
    return lake_path


def invoke(lake_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--lake", str(lake_path), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("runs", "list", "-e", "chrun"), "Unknown experiment 'chrun'. Did you mean 'churn'?"),
        (("models", "list", "chrun"), "Unknown model 'chrun'. Did you mean 'churn'?"),
        (("models", "show", "chrun"), "Unknown model 'chrun'. Did you mean 'churn'?"),
        (
            ("deploy", "list", "--env", "prodution"),
            "Unknown environment 'prodution'. Did you mean 'production'?",
        ),
        (("lineage", "show", "model:chrun/1"), "Did you mean 'model:churn/1'?"),
    ],
)
def test_a_typo_names_the_closest_known_name(churn_lake: Path, args: tuple[str, ...], expected: str) -> None:
    code, output = invoke(churn_lake, *args)
    assert code == 1 and expected in " ".join(output.split()) and "Traceback" not in output


def test_a_known_name_with_nothing_matching_stays_an_empty_listing(churn_lake: Path) -> None:
    code, output = invoke(churn_lake, "models", "list", "churn", "--stage", "production")
    assert code == 0 and "0 model version(s)" in output
    code, output = invoke(churn_lake, "runs", "list", "-e", "churn", "-w", "metrics.val_auc > 0.95")
    assert code == 0 and "0 run(s)" in output


def test_lineage_show_takes_a_prefix_of_a_run_id(churn_lake: Path) -> None:
    run_id = metalake.connect(churn_lake).runs.search().item(0, "run_id")
    code, output = invoke(
        churn_lake, "lineage", "show", f"run:{run_id[:14]}", "--downstream", "--format", "csv"
    )
    assert code == 0 and f"run:{run_id}" in output and "model:churn/1" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--model", "chrun"), "Unknown model 'chrun'. Did you mean 'churn'?"),
        (("--env", "prodution"), "Unknown environment 'prodution'. Did you mean 'production'?"),
        (("--kpi", "conversoin"), "Did you mean 'conversion' for 'conversoin'?"),
    ],
)
def test_kpis_impact_names_the_closest_known_name(
    churn_lake: Path, args: tuple[str, ...], expected: str
) -> None:
    metalake.connect(churn_lake).kpis.define("conversion", unit="%", direction="higher_is_better")
    code, output = invoke(churn_lake, "kpis", "impact", *args)
    assert code == 1 and expected in " ".join(output.split())
    code, output = invoke(churn_lake, "kpis", "impact", "--model", "churn", "--env", "production")
    assert code == 0, output


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "-e", "churn"),
        ("models", "list", "churn"),
        ("deploy", "list", "--env", "production"),
        ("lineage", "show", "model:churn/1"),
        ("kpis", "impact", "--model", "churn"),
    ],
)
def test_on_a_new_lake_with_no_names_of_the_kind_a_filter_answers_empty(
    lake_path: Path, args: tuple[str, ...]
) -> None:
    """Nothing to mistype against: the first training job's "best previous run" lookup gets no rows, not an error."""
    metalake.connect(lake_path).close()
    code, output = invoke(lake_path, *args)
    assert code == 0, output
    assert "Unknown" not in output


def test_an_empty_new_lake_answers_searches_and_walks_empty(lake_path: Path) -> None:
    lake = metalake.connect(lake_path)
    assert lake.runs.search(experiment="churn").is_empty()
    assert lake.registry.versions("churn").is_empty()
    assert lake.deployments.list(environment="production").is_empty()
    assert lake.lineage.upstream("model:churn/1").is_empty()
