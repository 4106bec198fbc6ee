"""A small lake with every kind of fact the notebooks tell a story about, written through the public Lake API.

`build_notebook_lake(path)` writes, in the order a team would:
- a `customers` dataset in three versions (the second adds a column), validated by a pandera schema; the third is
  a degraded copy (missing charges, impossible ages, duplicated ids) whose validation fails; a `holdout` dataset
  that passes;
- two experiments: `churn-model` (runs over a grid of learning rates and depths, per-step train_loss, val_loss
  and val_auc, each run linked to the customers version it read; the run on the degraded data scores lower) and
  `demand-forecast` (val_mape, one run failed);
- a model `churn-model` whose versions go through staging and production under a policy that requires passing
  data quality: version 3, trained on the failing data, is refused, then forced in with an override, deployed,
  and rolled back after the KPI dropped;
- deployments dated over the last weeks and daily KPI observations (conversion, p95 latency) around them;
- a snapshot `release-1` pinned after the first release;
- actors per role (data-eng, trainer, reviewer, release-bot, analyst), so the audit trail has several people.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

import metalake
from metalake.errors import PolicyViolation

MODEL = "churn-model"
EXPERIMENT = "churn-model"
STEPS = 20
DAY = timedelta(days=1)

POLICY = {
    "production": {
        "require_passing_data_quality": True,
        "require_previous_stage": "staging",
        "allow_override": True,
    }
}

SUITE = pa.DataFrameSchema(
    {
        "customer_id": pa.Column(int, pa.Check.ge(1), unique=True),
        "age": pa.Column(int, pa.Check.in_range(18, 100)),
        "tenure_months": pa.Column(int, pa.Check.ge(0)),
        "monthly_charges": pa.Column(float, pa.Check.ge(0), nullable=False),
        "churned": pa.Column(int, pa.Check.isin([0, 1])),
    },
    name="customers_contract",
)


def customers(rows: int, seed: int, *, with_contract: bool = False) -> pd.DataFrame:
    """Synthetic subscribers: who churns depends on tenure, charges and support calls."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    charges = rng.normal(65, 20, rows).clip(10, 150).round(2)
    calls = rng.poisson(1.5, rows)
    logit = -1.0 - 0.04 * tenure + 0.02 * (charges - 65) + 0.5 * calls
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1),
            "age": rng.integers(18, 90, rows),
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "churned": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    if with_contract:
        frame["contract"] = rng.choice(["monthly", "yearly", "two-year"], rows)
    return frame


def degraded(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A broken export of the same data: charges lost, ages mistyped, some ids duplicated."""
    rng = np.random.default_rng(seed)
    broken = frame.copy()
    broken.loc[rng.random(len(broken)) < 0.15, "monthly_charges"] = np.nan
    wrong_age = rng.random(len(broken)) < 0.05
    broken.loc[wrong_age, "age"] = broken.loc[wrong_age, "age"] + 200
    duplicated = rng.random(len(broken)) < 0.03
    broken.loc[duplicated, "customer_id"] = 1
    return broken


def build_notebook_lake(path: Path) -> Path:
    """Write the lake at `path` and return it."""
    data_eng = metalake.connect(path, actor="data-eng@example.com")
    trainer = metalake.connect(path, actor="trainer@ci")
    reviewer = metalake.connect(path, actor="reviewer@example.com")
    release = metalake.connect(path, actor="release-bot@ci")
    analyst = metalake.connect(path, actor="analyst@example.com")

    versions = _datasets(data_eng)
    runs = _experiments(trainer, versions)
    _releases(trainer, reviewer, release, runs)
    _kpis(analyst, release)
    for lake in (data_eng, trainer, reviewer, release, analyst):
        lake.close()
    return path


def _datasets(lake: metalake.Lake) -> dict[int, pd.DataFrame]:
    clean = customers(800, seed=1)
    wider = customers(1200, seed=2, with_contract=True)
    broken = degraded(wider, seed=3)
    frames = {1: clean, 2: wider, 3: broken}
    descriptions = {1: "first export", 2: "export with contract type", 3: "nightly export"}
    for number, frame in frames.items():
        lake.datasets.register(
            "customers", frame, description=f"subscribers ({descriptions[number]})", owner="data-eng"
        )
        lake.quality.validate("customers", suite=SUITE, version=number, data=frame)
    holdout = customers(300, seed=4)
    lake.datasets.register("holdout", holdout, description="frozen evaluation rows", owner="data-eng")
    lake.quality.validate("holdout", suite=SUITE, data=holdout)
    return frames


def _curve(rng: random.Random, ceiling: float, learning_rate: float) -> list[dict[str, float]]:
    tau = STEPS * 0.25 * (0.1 / min(learning_rate, 0.1)) ** 0.5
    points = []
    for step in range(STEPS):
        decay = math.exp(-step / tau)
        train_loss = 0.3 + 0.39 * decay + rng.gauss(0, 0.005)
        points.append(
            {
                "train_loss": train_loss,
                "val_loss": train_loss + 0.05 * step / STEPS + rng.gauss(0, 0.008),
                "val_auc": 0.5 + (ceiling - 0.5) * (1 - decay) + rng.gauss(0, 0.004),
            }
        )
    return points


def _experiments(lake: metalake.Lake, frames: dict[int, pd.DataFrame]) -> dict[str, str]:
    """Training runs; returns the run ids of the runs the model versions come from."""
    rng = random.Random(7)
    started = datetime.now(UTC) - timedelta(hours=6)
    plan: list[tuple[str, int, float, int]] = [("baseline-v1", 1, 0.1, 4)]
    plan += [(f"lr{lr}-d{depth}", 2, lr, depth) for lr in (0.3, 0.1, 0.03) for depth in (3, 6)]
    plan += [("nightly-retrain", 3, 0.1, 6)]
    chosen: dict[str, str] = {}
    best_on_v2 = (-1.0, "")
    for index, (name, data_version, learning_rate, depth) in enumerate(plan):
        ceiling = 0.78 + 0.012 * depth - 0.25 * abs(math.log10(learning_rate / 0.1)) * 0.1
        ceiling += {1: -0.02, 2: 0.0, 3: -0.07}[data_version]
        with lake.runs.start(experiment=EXPERIMENT, name=name, tags={"team": "growth"}) as run:
            run.log_params({"learning_rate": learning_rate, "max_depth": depth, "n_estimators": 200})
            run.log_input("customers", version=data_version, context="training")
            run.log_input("holdout", version=1, context="validation")
            for step, values in enumerate(_curve(rng, ceiling, learning_rate)):
                at = started + timedelta(minutes=10 * index, seconds=20 * step)
                run.log_metrics(values, step=step, timestamp=at)
        final_auc = values["val_auc"]
        if data_version == 2 and final_auc > best_on_v2[0]:
            best_on_v2 = (final_auc, run.run_id)
        if data_version != 2:
            chosen[f"v{data_version}"] = run.run_id
    chosen["v2"] = best_on_v2[1]

    for hidden, learning_rate in [(64, 0.01), (128, 0.003), (256, 0.5)]:
        run = lake.runs.start(experiment="demand-forecast", name=f"mlp-h{hidden}")
        run.log_params({"hidden_size": hidden, "learning_rate": learning_rate})
        for step in range(STEPS):
            mape = 8 + 20 * math.exp(-step / 5) + rng.gauss(0, 0.3) - hidden / 100
            if learning_rate > 0.1 and step > 8:
                run.log_metric("val_mape", mape * 10 ** (step - 8), step=step)
                break
            run.log_metric("val_mape", mape, step=step)
        run.end("failed" if learning_rate > 0.1 else "finished")
    lake.runs.wait()
    return chosen


def _releases(
    trainer: metalake.Lake, reviewer: metalake.Lake, release: metalake.Lake, runs: dict[str, str]
) -> None:
    """Registry moves (at the time they are made) and deployments (dated over the last weeks)."""
    reviewer.registry.use_policy(POLICY)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - 56 * DAY
    card = {"owner": "growth", "intended_use": "retention offers"}

    def register(key: str) -> int:
        version = trainer.registry.register(
            MODEL, run_id=runs[key], artifact_uri=f"s3://models/{MODEL}/{key}", flavor="sklearn", card=card
        )
        return version.version

    first = register("v1")
    reviewer.registry.transition(MODEL, first, "staging", reason="offline metrics look good")
    reviewer.registry.transition(MODEL, first, "production", reason="first release")
    release.deployments.record(MODEL, first, "production", at=start + 7 * DAY, git_sha="a1b2c3d")
    reviewer.snapshot("release-1", description="first production release of churn-model")

    second = register("v2")
    reviewer.registry.transition(MODEL, second, "staging", reason="best of the sweep")
    reviewer.registry.transition(MODEL, second, "production", reason="beats v1", archive_others=True)
    release.deployments.record(MODEL, second, "production", at=start + 21 * DAY, git_sha="b2c3d4e")

    third = register("v3")
    reviewer.registry.transition(MODEL, third, "staging", reason="nightly retrain")
    try:
        reviewer.registry.transition(MODEL, third, "production", reason="nightly retrain")
    except PolicyViolation:
        reviewer.registry.transition(
            MODEL,
            third,
            "production",
            reason="urgent: marketing campaign",
            override=True,
            archive_others=True,
        )
    release.deployments.record(MODEL, third, "production", at=start + 35 * DAY, git_sha="c3d4e5f")
    reviewer.registry.transition(MODEL, second, "staging", reason="rollback candidate")
    reviewer.registry.transition(
        MODEL, second, "production", reason="rollback: conversion dropped", archive_others=True
    )
    release.deployments.record(
        MODEL, second, "production", at=start + 42 * DAY, git_sha="b2c3d4e", reason="rollback"
    )
    release.deployments.record(MODEL, second, "staging", at=start + 20 * DAY, git_sha="b2c3d4e")


def _kpis(analyst: metalake.Lake, release: metalake.Lake) -> None:
    """Daily KPI values whose level follows the version serving in production."""
    analyst.kpis.define(
        "conversion",
        unit="%",
        direction="higher_is_better",
        description="offers accepted / offers shown",
        models=[MODEL],
        owner="growth",
    )
    analyst.kpis.define("p95_latency_ms", unit="ms", direction="lower_is_better", models=[MODEL])
    level = {None: 3.0, 1: 3.4, 2: 3.8, 3: 3.1}
    latency = {None: 40.0, 1: 55.0, 2: 60.0, 3: 62.0}
    rng = random.Random(11)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows: list[dict[str, Any]] = []
    for day in range(56):
        noon = today - (56 - day) * DAY + timedelta(hours=12)
        serving = release.deployments.at("production", noon, model=MODEL)
        version = serving.version if serving else None
        rows.append({"kpi": "conversion", "value": level[version] + rng.gauss(0, 0.08), "observed_at": noon})
        rows.append(
            {
                "kpi": "p95_latency_ms",
                "value": latency[version] + rng.gauss(0, 2),
                "observed_at": noon,
                "environment": "production",
            }
        )
    analyst.kpis.observe_many(rows, source="warehouse")
