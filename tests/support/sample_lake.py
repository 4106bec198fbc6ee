"""A small lake with a row for every view: runs, a dataset in two versions, a validation, models, deployments,
KPIs and OpenLineage events, all written through the Lake API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandera.pandas as pa
import polars as pl

import metalake
from support.openlineage_samples import airflow_dag

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def fill_sample_lake(lake: metalake.Lake, tmp_path: Path) -> None:
    """Two finished runs and a failed one, with params, tags, metrics and inputs; everything downstream of them."""
    lake.datasets.register("churn", pl.DataFrame({"id": [1, 2, 3], "age": [30, 40, 50]}), owner="data-team")
    scored = pl.DataFrame({"id": ["1", "2"], "score": [0.5, 0.7]})
    lake.datasets.register("churn", scored)
    schema = pa.DataFrameSchema({"id": pa.Column(str), "score": pa.Column(float, pa.Check.ge(0.6))})
    lake.quality.validate("churn", suite=schema, data=scored)
    run_ids = []
    for depth, auc in ((4, 0.81), (6, 0.86), (8, float("nan"))):
        with lake.runs.start(experiment="churn", name=f"xgb-{depth}", tags={"team": "ml"}) as run:
            run.log_params({"depth": depth, "lr": 0.1})
            run.log_input("churn", version=2, context="training")
            for step in range(3):
                run.log_metric("val_auc", auc - 0.01 * (2 - step), step=step)
                run.log_metric("loss", 1.0 / (step + depth), step=step)
            run_ids.append(run.run_id)
    with lake.runs.start(experiment="churn", name="broken") as run:
        run.end("failed", error=RuntimeError("out of memory"))
    lake.runs.wait()
    lake.registry.register("churn", run_id=run_ids[0], artifact_uri="s3://models/churn/1", flavor="xgboost")
    lake.registry.register("churn", run_id=run_ids[1], artifact_uri="s3://models/churn/2", flavor="xgboost")
    lake.registry.transition("churn", 1, "staging")
    lake.registry.set_alias("churn", "champion", 2)
    lake.kpis.define("conversion", unit="%", direction="higher_is_better", models=["churn"])
    for day in range(-5, 6):
        lake.kpis.observe("conversion", 10.0 + day + (2 if day >= 0 else 0), at=START + timedelta(days=day))
    lake.deployments.record("churn", 1, "production", at=START - timedelta(days=20))
    lake.deployments.record("churn", 2, "production", at=START)
    lake.lineage.ingest(airflow_dag(fail_join=True))
    lake.access.create_principal("alice")
    lake.access.grant("alice", "read", "experiment:churn")
    lake.access.create_token("alice", name="laptop")
