"""Lineage walks from a node the lake never saw say so, with the closest known node ids."""

from __future__ import annotations

import pytest

import metalake
from metalake.errors import LineageError, LineageNodeNotFound


@pytest.fixture
def modelled(lake: metalake.Lake) -> metalake.Lake:
    with lake.runs.start(experiment="churn", run_id="0193cccc") as run:
        run.log_metric("auc", 0.9)
    lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://m/1")
    lake.registry.register("orphan", run_id=None, artifact_uri="s3://o/1")
    return lake


def test_nodes_lists_every_known_node_id(modelled: metalake.Lake) -> None:
    nodes = modelled.lineage.nodes()
    assert {"run:0193cccc", "model:churn/1", "model:orphan/1"} <= set(nodes)


def test_a_mistyped_node_names_the_closest(modelled: metalake.Lake) -> None:
    with pytest.raises(LineageNodeNotFound) as raised:
        modelled.lineage.upstream("model:chrun/1")
    assert isinstance(raised.value, LineageError) and raised.value.suggestions[0] == "model:churn/1"
    assert "Did you mean 'model:churn/1'" in str(raised.value)


def test_a_known_node_without_edges_stays_an_empty_walk(modelled: metalake.Lake) -> None:
    assert modelled.lineage.upstream("model:orphan/1").is_empty()
    assert modelled.lineage.downstream("model:churn/1").is_empty()
