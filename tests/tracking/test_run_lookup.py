"""Looking runs up by name and id: unknown experiments say so, and any unique prefix of a run id is enough."""

from __future__ import annotations

import pytest

import metalake
from metalake.errors import AmbiguousRunId, ExperimentNotFound, RunNotFound


@pytest.fixture
def run_ids(lake: metalake.Lake) -> list[str]:
    ids = []
    for experiment, run_id in (
        ("churn", "0193aaaa1111"),
        ("churn", "0193aaab2222"),
        ("fraud", "0193bbbb3333"),
    ):
        with lake.runs.start(experiment=experiment, run_id=run_id) as run:
            run.log_metric("auc", 0.9)
        ids.append(run.run_id)
    return ids


def test_known_experiments_are_listed(lake: metalake.Lake, run_ids: list[str]) -> None:
    assert lake.runs.experiments() == ["churn", "fraud"]


def test_a_mistyped_experiment_is_an_error_naming_the_closest(
    lake: metalake.Lake, run_ids: list[str]
) -> None:
    with pytest.raises(ExperimentNotFound) as raised:
        lake.runs.search(experiment="chrun")
    assert raised.value.suggestions == ["churn"] and raised.value.known == ["churn", "fraud"]
    assert "Did you mean 'churn'?" in str(raised.value)
    assert isinstance(raised.value, KeyError) and raised.value.code == "experiment_not_found"


def test_a_known_experiment_with_no_match_stays_an_empty_answer(
    lake: metalake.Lake, run_ids: list[str]
) -> None:
    assert lake.runs.search(experiment="churn", where="metrics.auc > 0.95").is_empty()


def test_any_unique_prefix_names_a_run(lake: metalake.Lake, run_ids: list[str]) -> None:
    assert lake.runs.resolve_id("0193b") == "0193bbbb3333"
    assert lake.runs.resolve_id("0193aaab2222") == "0193aaab2222"
    assert lake.runs.get("0193aaab").run_id == "0193aaab2222"
    assert lake.runs.resume("0193bb").run_id == "0193bbbb3333"
    assert lake.runs.metric_history("0193aaaa", "auc").get_column("run_id").to_list() == ["0193aaaa1111"]


def test_an_ambiguous_prefix_lists_the_candidates(lake: metalake.Lake, run_ids: list[str]) -> None:
    with pytest.raises(AmbiguousRunId) as raised:
        lake.runs.get("0193aa")
    assert raised.value.candidates == ["0193aaaa1111", "0193aaab2222"]
    assert "0193aaaa1111" in str(raised.value) and "more characters" in str(raised.value)


def test_an_unknown_id_says_so(lake: metalake.Lake, run_ids: list[str]) -> None:
    with pytest.raises(RunNotFound, match="No run 'ffff'"):
        lake.runs.get("ffff")
    with pytest.raises(RunNotFound):
        lake.runs.resolve_id("")


def test_a_model_registered_from_a_prefix_links_the_whole_run_id(
    lake: metalake.Lake, run_ids: list[str]
) -> None:
    registered = lake.registry.register("churn", run_id="0193b", artifact_uri="s3://m/1")
    assert registered.run_id == "0193bbbb3333"
