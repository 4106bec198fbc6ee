"""`lake.experiments`: creation one by one or many in one commit, ids that survive, and clear refusals."""

from __future__ import annotations

import pytest

import metalake
from metalake.errors import ExperimentExists, RunError


def test_many_experiments_are_created_in_one_commit_or_not_at_all(lake: metalake.Lake) -> None:
    lake.experiments.create("churn")
    before = lake.version("experiments")
    made = lake.experiments.create_many([f"exp-{number}" for number in range(50)])
    assert lake.version("experiments") == before + 1
    assert sorted(experiment.name for experiment in made) == sorted(f"exp-{number}" for number in range(50))
    ids = {experiment.experiment_id for experiment in lake.experiments.list()}
    assert len(ids) == 52, "Default, churn and the 50, each its own id"
    assert lake.experiments.by_name("exp-7") in made

    for names, refused in (
        (["new", "churn"], ExperimentExists),
        (["a", "a"], RunError),
        (["ok", " "], RunError),
    ):
        with pytest.raises(refused):
            lake.experiments.create_many(names)
    assert lake.version("experiments") == before + 1, "a refused batch writes nothing"
    assert lake.experiments.create_many([]) == []
