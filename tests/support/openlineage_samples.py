"""OpenLineage events shaped like those of the Airflow and Spark integrations, built with the real client classes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

AIRFLOW = "https://github.com/apache/airflow/tree/providers-openlineage/2.1.0"
SPARK = "https://github.com/OpenLineage/OpenLineage/tree/1.30.0/integration/spark"
T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def schema(*columns: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=name, type=kind) for name, kind in columns]
    )


def airflow_task_events(
    *,
    dag_run_id: str,
    task: str,
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
    start: float,
    minutes: float,
    state: RunState = RunState.COMPLETE,
) -> list[RunEvent]:
    """START and a terminal event of one Airflow task run, with the DAG run as its parent."""
    run_id = str(uuid.uuid4())
    job = Job(
        namespace="airflow-prod",
        name=f"daily_features.{task}",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="AIRFLOW", jobType="TASK"
            )
        },
    )
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=dag_run_id),
        job=parent_run.Job(namespace="airflow-prod", name="daily_features"),
    )
    end_facets: dict[str, Any] = {"parent": parent}
    if state == RunState.FAIL:
        end_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message="column amount does not exist", programmingLanguage="python"
        )
    return [
        RunEvent(
            eventType=RunState.START,
            eventTime=at(start),
            run=Run(runId=run_id, facets={"parent": parent}),
            job=job,
            producer=AIRFLOW,
            inputs=inputs,
            outputs=outputs,
        ),
        RunEvent(
            eventType=state,
            eventTime=at(start + minutes),
            run=Run(runId=run_id, facets=end_facets),
            job=job,
            producer=AIRFLOW,
            inputs=inputs,
            outputs=outputs,
        ),
    ]


def airflow_dag(dag_run_id: str | None = None, *, fail_join: bool = False) -> list[RunEvent]:
    """A DAG of two tasks: extract (two raw tables -> staging) and join (staging + dim -> metalake/train)."""
    dag_run = dag_run_id or str(uuid.uuid4())
    raw_orders = InputDataset(
        "postgres://warehouse:5432",
        "public.orders",
        facets={"schema": schema(("id", "INTEGER"), ("amount", "NUMERIC"), ("customer_id", "INTEGER"))},
        inputFacets={
            "dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                assertions=[
                    data_quality_assertions_dataset.Assertion(
                        assertion="not_null", success=True, column="id"
                    ),
                    data_quality_assertions_dataset.Assertion(
                        assertion="is_positive", success=False, column="amount", severity="warn"
                    ),
                ]
            )
        },
    )
    raw_customers = InputDataset(
        "postgres://warehouse:5432",
        "public.customers",
        facets={"schema": schema(("id", "INTEGER"), ("country", "TEXT"))},
    )
    staging = OutputDataset(
        "s3://lake-bucket",
        "staging/orders_enriched",
        facets={
            "schema": schema(("order_id", "INTEGER"), ("amount", "DOUBLE"), ("country", "STRING")),
            "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(
                fields={
                    "order_id": column_lineage_dataset.Fields(
                        inputFields=[
                            column_lineage_dataset.InputField(
                                namespace="postgres://warehouse:5432",
                                name="public.orders",
                                field="id",
                                transformations=[
                                    column_lineage_dataset.Transformation(type="DIRECT", subtype="IDENTITY")
                                ],
                            )
                        ]
                    ),
                    "country": column_lineage_dataset.Fields(
                        inputFields=[
                            column_lineage_dataset.InputField(
                                namespace="postgres://warehouse:5432",
                                name="public.customers",
                                field="country",
                            )
                        ]
                    ),
                }
            ),
        },
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=1200
            )
        },
    )
    staging_in = InputDataset("s3://lake-bucket", "staging/orders_enriched")
    dim = InputDataset("s3://lake-bucket", "dim/calendar")
    train = OutputDataset(
        "metalake", "train", facets={"schema": schema(("order_id", "BIGINT"), ("label", "BOOLEAN"))}
    )
    extract = airflow_task_events(
        dag_run_id=dag_run,
        task="extract",
        inputs=[raw_orders, raw_customers],
        outputs=[staging],
        start=0,
        minutes=4,
    )
    join = airflow_task_events(
        dag_run_id=dag_run,
        task="join",
        inputs=[staging_in, dim],
        outputs=[train],
        start=5,
        minutes=3,
        state=RunState.FAIL if fail_join else RunState.COMPLETE,
    )
    return extract + join


def spark_events() -> list[RunEvent]:
    """A Spark application run and one of its SQL jobs (parent facet), several inputs and outputs, column lineage."""
    app_run = str(uuid.uuid4())
    query_run = str(uuid.uuid4())
    app_job = Job(
        namespace="spark-cluster",
        name="feature_job",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SPARK", jobType="APPLICATION"
            )
        },
    )
    query_job = Job(
        namespace="spark-cluster",
        name="feature_job.execute_insert_into_hadoop_fs_relation_command.features",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SPARK", jobType="SQL_JOB"
            )
        },
    )
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=app_run), job=parent_run.Job(namespace="spark-cluster", name="feature_job")
    )
    inputs = [
        InputDataset("s3://lake-bucket", "staging/orders_enriched"),
        InputDataset("hive://metastore", "default.customers"),
    ]
    outputs = [
        OutputDataset(
            "s3://lake-bucket",
            "features/orders",
            facets={
                "schema": schema(("order_id", "int"), ("amount_7d", "double")),
                "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(
                    fields={
                        "amount_7d": column_lineage_dataset.Fields(
                            inputFields=[
                                column_lineage_dataset.InputField(
                                    namespace="s3://lake-bucket",
                                    name="staging/orders_enriched",
                                    field="amount",
                                    transformations=[
                                        column_lineage_dataset.Transformation(
                                            type="INDIRECT", subtype="AGGREGATION"
                                        )
                                    ],
                                )
                            ]
                        )
                    }
                ),
            },
        ),
        OutputDataset("s3://lake-bucket", "features/_audit"),
    ]
    return [
        RunEvent(
            eventType=RunState.START, eventTime=at(10), run=Run(runId=app_run), job=app_job, producer=SPARK
        ),
        RunEvent(
            eventType=RunState.START,
            eventTime=at(10.5),
            run=Run(runId=query_run, facets={"parent": parent}),
            job=query_job,
            producer=SPARK,
            inputs=inputs,
        ),
        RunEvent(
            eventType=RunState.RUNNING,
            eventTime=at(11),
            run=Run(runId=query_run, facets={"parent": parent}),
            job=query_job,
            producer=SPARK,
            inputs=inputs,
            outputs=outputs,
        ),
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=at(12),
            run=Run(runId=query_run, facets={"parent": parent}),
            job=query_job,
            producer=SPARK,
            inputs=inputs,
            outputs=outputs,
        ),
        RunEvent(
            eventType=RunState.COMPLETE, eventTime=at(13), run=Run(runId=app_run), job=app_job, producer=SPARK
        ),
    ]
