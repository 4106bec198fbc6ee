"""Downsampled metric histories keep each bucket's first, last, lowest and highest point: spikes survive."""

from __future__ import annotations

import math
from pathlib import Path

import metalake


def test_a_spike_and_a_dip_survive_downsampling_to_a_hundred_points(tmp_path: Path) -> None:
    lake = metalake.connect(tmp_path / "lake", actor="tester")
    with lake.runs.start(experiment="long") as run:
        for step in range(10_000):
            value = math.sin(step / 500) + (40.0 if step == 4321 else 0) - (30.0 if step == 8765 else 0)
            run.log_metric("loss", value, step=step)
    lake.runs.wait()

    points = lake.runs.metric_history(run.run_id, "loss", max_points=100)

    steps = points.get_column("step").to_list()
    assert len(steps) <= 100 and steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == 9_999
    assert {4321, 8765} <= set(steps), "the spike and the dip are kept"
    assert points.get_column("value").max() > 40 and points.get_column("value").min() < -29
    whole = lake.runs.metric_history(run.run_id, "loss", max_points=20_000)
    assert whole.height == 10_000, "a history within max_points is returned whole"
