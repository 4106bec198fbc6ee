"""lake.lineage: OpenLineage ingestion into real Delta tables, derived views, and graph walks in DuckDB."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from openlineage.client.serde import Serde
from support.openlineage_samples import airflow_dag, spark_events

import metalake
from metalake.core.tables import Tables
from metalake.errors import InvalidEvent, LineageError

RAW_ORDERS = "dataset:postgres://warehouse:5432/public.orders"
STAGING = "dataset:s3://lake-bucket/staging/orders_enriched"
TRAIN = "dataset:metalake/train"


def as_dicts(events: list[Any]) -> list[dict[str, Any]]:
    return [Serde.to_dict(event) for event in events]


def current_runs(lake: metalake.Lake) -> pl.DataFrame:
    return lake.sql("select * exclude (producer) from pipeline_runs_current order by run_id").pl()


def graph(lake: metalake.Lake) -> pl.DataFrame:
    return lake.sql("select * from lineage_graph order by all").pl()


def test_airflow_events_become_pipelines_runs_edges_versions_and_quality(lake: metalake.Lake) -> None:
    events = airflow_dag(fail_join=True)
    result = lake.lineage.ingest(events)  # openlineage-python event objects as they are
    assert (result.received, result.new, result.duplicates) == (4, 4, 0)

    runs = current_runs(lake)
    assert runs.height == 2
    by_job = {row["job_name"]: row for row in runs.iter_rows(named=True)}
    extract, join = by_job["daily_features.extract"], by_job["daily_features.join"]
    assert extract["state"] == "COMPLETE" and extract["duration_s"] == 240
    assert join["state"] == "FAIL" and join["error_message"] == "column amount does not exist"
    assert (
        extract["parent_run_id"] == join["parent_run_id"]
        and extract["parent_job"] == "airflow-prod/daily_features"
    )

    stats = lake.sql(
        "select job_name, runs, failed, failure_rate from pipeline_step_stats order by job_name"
    ).pl()
    assert stats.rows() == [("daily_features.extract", 1, 0, 0.0), ("daily_features.join", 1, 1, 1.0)]
    assert sorted(lake.read("pipelines").get_column("name").to_list()) == [
        "daily_features.extract",
        "daily_features.join",
    ]

    edges = graph(lake)
    pairs = set(zip(edges["source_node"], edges["target_node"], strict=True))
    assert (RAW_ORDERS, "job:airflow-prod/daily_features.extract") in pairs
    assert ("job:airflow-prod/daily_features.extract", STAGING) in pairs
    assert ("job:airflow-prod/daily_features.join", TRAIN) in pairs

    # The schema facet feeds dataset versions; OpenLineage's metalake namespace is metalake's own datasets.
    train = lake.datasets.get("train")
    assert train.version == 1 and train.columns == ["order_id", "label"]
    staging = lake.datasets.get("s3://lake-bucket/staging/orders_enriched")
    assert staging.row_count == 1200

    # Column lineage, and data-quality assertions as dq_validations + dq_results of the input's version.
    columns = lake.lineage.column_lineage(STAGING)
    assert columns.select("target_field", "source_field", "transformation").rows() == [
        ("country", "country", None),
        ("order_id", "id", "DIRECT"),
    ]
    validations = lake.read(
        "dq_validations", where=pl.col("dataset") == "postgres://warehouse:5432/public.orders"
    )
    assert validations.height == 2  # one per event that carried the facet
    assert validations.get_column("success").to_list() == [False, False]
    assert validations.get_column("version").to_list() == [1, 1]
    results = lake.read("dq_results", where=pl.col("validation_id") == validations["validation_id"][0])
    assert sorted(zip(results["expectation_type"], results["success"], results["severity"], strict=True)) == [
        ("is_positive", False, "warning"),
        ("not_null", True, None),
    ]


def test_a_changed_schema_is_a_new_dataset_version_with_its_changes(lake: metalake.Lake) -> None:
    lake.lineage.ingest(airflow_dag())
    later = as_dicts(airflow_dag())
    for event in later:
        for output in event.get("outputs") or []:
            if output["name"] == "train":
                output["facets"]["schema"]["fields"].append({"name": "amount", "type": "DOUBLE"})
    lake.lineage.ingest(later)
    history = lake.datasets.history("train")
    assert history.get_column("version").to_list() == [1, 2]
    assert history.get_column("schema_changes").to_list()[1] == "+ amount DOUBLE"
    # the edges of the second DAG run carry the new version
    versions = lake.sql(
        "select distinct target_version from lineage_edges where target_node = 'dataset:metalake/train'"
    ).fetchall()
    assert sorted(v for (v,) in versions) == ["1", "2"]


def test_duplicates_and_any_arrival_order_give_the_same_result(lake_path: Any, tmp_path: Any) -> None:
    events = as_dicts(airflow_dag() + spark_events())
    in_order = metalake.connect(tmp_path / "in-order")
    in_order.lineage.ingest(events)

    shuffled = metalake.connect(lake_path)
    scrambled = events * 2
    random.Random(7).shuffle(scrambled)
    for start in range(0, len(scrambled), 3):  # several batches, duplicates across and within them
        shuffled.lineage.ingest(scrambled[start : start + 3])

    assert shuffled.read("lineage_events").height == len(events)
    assert shuffled.read("pipeline_runs").height == len(events)
    assert current_runs(shuffled).equals(current_runs(in_order))
    drop = ["last_seen"]
    assert graph(shuffled).drop(drop).equals(graph(in_order).drop(drop))
    assert shuffled.lineage.ingest(events).new == 0


@pytest.mark.parametrize("chunk_events", [4, 1000])
def test_a_file_in_any_order_with_repeated_lines_gives_the_same_result(
    tmp_path: Any, chunk_events: int
) -> None:
    events = as_dicts(airflow_dag() + airflow_dag() + spark_events())
    in_order = metalake.connect(tmp_path / "in-order")
    in_order.lineage.ingest(events)
    scrambled = events * 2
    random.Random(11).shuffle(scrambled)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in scrambled))
    from_file = metalake.connect(tmp_path / "from-file")
    result = from_file.lineage.ingest_file(path, chunk_events=chunk_events)

    assert (result.received, result.new) == (len(scrambled), len(events))
    assert from_file.read("lineage_events").height == len(events)
    assert current_runs(from_file).equals(current_runs(in_order))
    drop = ["last_seen"]
    assert graph(from_file).drop(drop).equals(graph(in_order).drop(drop))
    # one chunk: each version is first seen where it is in time order; several: where it is in arrival order
    first = ", observed_at, run_id" if chunk_events > len(scrambled) else ""
    seen = f"select dataset, fingerprint{first} from dataset_versions order by all"
    assert from_file.sql(seen).fetchall() == in_order.sql(seen).fetchall()
    current = "select dataset, fingerprint from dataset_versions_current order by all"
    assert from_file.sql(current).fetchall() == in_order.sql(current).fetchall()
    jobs = "select namespace, name, arg_max(facets, event_time) from pipelines group by all order by all"
    assert from_file.sql(jobs).fetchall() == in_order.sql(jobs).fetchall()
    checks = "select dataset, success, evaluated, validated_at from dq_validations order by all"
    assert from_file.sql(checks).fetchall() == in_order.sql(checks).fetchall()
    assert from_file.lineage.ingest_file(path).new == 0


def test_a_late_start_does_not_reopen_a_finished_run(lake: metalake.Lake) -> None:
    start, complete = as_dicts(airflow_dag())[:2]
    lake.lineage.ingest([complete])
    assert current_runs(lake)["state"].to_list() == ["COMPLETE"]
    lake.lineage.ingest([start])
    row = current_runs(lake).row(0, named=True)
    assert row["state"] == "COMPLETE" and row["duration_s"] == 240 and row["event_count"] == 2


def test_an_invalid_event_refuses_the_whole_batch(lake: metalake.Lake) -> None:
    events = as_dicts(airflow_dag())
    events[2] = {**events[2], "eventType": "FINISHED"}
    with pytest.raises(InvalidEvent) as refused:
        lake.lineage.ingest(events)
    message = str(refused.value)
    assert "event #3" in message and "'FINISHED'" in message and "Nothing was written" in message
    assert lake.read("lineage_events").height == 0 and lake.read("pipeline_runs").height == 0
    for broken, reason in [
        ({**events[0], "eventTime": "yesterday"}, "eventTime"),
        ({**events[0], "run": {"runId": "not-a-uuid"}}, "UUID"),
        ({**events[0], "job": {"namespace": "x"}}, "job needs"),
        ({"eventTime": "2026-01-01T00:00:00Z", "producer": "p"}, "neither a RunEvent"),
        ("{not json", "not valid JSON"),
    ]:
        with pytest.raises(InvalidEvent, match=reason):
            lake.lineage.ingest([broken])


def test_dataset_and_job_events(lake: metalake.Lake) -> None:
    dataset_event = {
        "eventTime": "2026-03-01T05:00:00Z",
        "producer": "https://example.com/catalog-sync",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {
            "namespace": "postgres://warehouse:5432",
            "name": "public.refunds",
            "facets": {"schema": {"fields": [{"name": "id", "type": "INTEGER"}]}},
        },
    }
    job_event = {
        "eventTime": "2026-03-01T05:00:00Z",
        "producer": "https://example.com/dbt",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
        "job": {"namespace": "dbt", "name": "marts.refunds"},
        "inputs": [{"namespace": "postgres://warehouse:5432", "name": "public.refunds"}],
        "outputs": [{"namespace": "postgres://warehouse:5432", "name": "marts.refunds"}],
    }
    lake.lineage.ingest([dataset_event, job_event])
    kinds = lake.read("lineage_events").sort("event_kind").get_column("event_kind").to_list()
    assert kinds == ["dataset", "job"]
    assert lake.datasets.get("postgres://warehouse:5432/public.refunds").columns == ["id"]
    downstream = lake.lineage.downstream("dataset:postgres://warehouse:5432/public.refunds")
    assert downstream["target_node"].to_list() == [
        "job:dbt/marts.refunds",
        "dataset:postgres://warehouse:5432/marts.refunds",
    ]


def test_one_graph_from_raw_table_to_deployment(lake: metalake.Lake) -> None:
    lake.lineage.ingest(airflow_dag())  # ... -> job join -> dataset:metalake/train
    with lake.runs.start(experiment="churn") as run:
        run.log_input("train", context="training")  # links the version the pipeline reported
    model = lake.registry.register("churn", run_id=run.run_id, artifact_uri="s3://models/churn/1")
    deployed = lake.deployments.record("churn", model.version, "production")
    deployment = f"deployment:production/{deployed.deployment_id}"
    upstream = lake.lineage.upstream(deployment)
    chain = [
        (deployment, "model:churn/1"),
        ("model:churn/1", f"run:{run.run_id}"),
        (f"run:{run.run_id}", TRAIN),
        (TRAIN, "job:airflow-prod/daily_features.join"),
        ("job:airflow-prod/daily_features.join", STAGING),
        (STAGING, "job:airflow-prod/daily_features.extract"),
        ("job:airflow-prod/daily_features.extract", RAW_ORDERS),
    ]
    walked = set(zip(upstream["target_node"], upstream["source_node"], strict=True))
    assert set(chain) <= walked
    depth_of = {row["source_node"]: row["depth"] for row in upstream.iter_rows(named=True)}
    assert depth_of[RAW_ORDERS] == 7
    assert upstream.filter(pl.col("source_node") == TRAIN)["source_version"].to_list() == ["1"]

    downstream = lake.lineage.downstream(RAW_ORDERS)
    assert deployment in downstream["target_node"].to_list()
    assert set(lake.lineage.downstream(RAW_ORDERS, depth=2)["target_node"]) == {
        "job:airflow-prod/daily_features.extract",
        STAGING,
    }


def test_walks_end_on_cycles_and_respect_depth(lake: metalake.Lake) -> None:
    now = datetime.now(UTC)
    nodes = ["dataset:x/a", "job:x/j1", "dataset:x/b", "job:x/j2"]
    edges = [
        {"edge_id": f"e{i}", "source_node": s, "target_node": t, "edge_type": "input", "event_time": now}
        for i, (s, t) in enumerate(zip(nodes, nodes[1:] + nodes[:1], strict=True))
    ]
    lake.append("lineage_edges", edges)
    full = lake.lineage.downstream("dataset:x/a")
    assert full.height == 4 and full["depth"].to_list() == [1, 2, 3, 4]
    assert lake.lineage.upstream("dataset:x/a", depth=1)["source_node"].to_list() == ["job:x/j2"]
    with pytest.raises(LineageError, match="not a lineage node id"):
        lake.lineage.upstream("orders")
    with pytest.raises(LineageError, match="at least 1"):
        lake.lineage.upstream("dataset:x/a", depth=0)


def test_as_of_gives_the_graph_as_it_was(lake: metalake.Lake) -> None:
    lake.lineage.ingest(airflow_dag()[:2])  # extract only
    time.sleep(0.05)
    before = datetime.now(UTC)
    time.sleep(0.05)
    lake.lineage.ingest(airflow_dag()[2:])  # then join
    assert TRAIN in lake.lineage.downstream(RAW_ORDERS)["target_node"].to_list()
    past = lake.as_of(before).lineage.downstream(RAW_ORDERS)
    assert TRAIN not in past["target_node"].to_list() and STAGING in past["target_node"].to_list()


def test_spark_events_with_parent_several_outputs_and_column_lineage(lake: metalake.Lake) -> None:
    lake.lineage.ingest(spark_events())
    runs = current_runs(lake)
    query = runs.filter(pl.col("parent_job") == "spark-cluster/feature_job").row(0, named=True)
    assert query["state"] == "COMPLETE" and query["duration_s"] == 90 and query["event_count"] == 3
    job = "job:spark-cluster/feature_job.execute_insert_into_hadoop_fs_relation_command.features"
    downstream = set(lake.lineage.downstream(job, depth=1)["target_node"])
    assert downstream == {
        "dataset:s3://lake-bucket/features/orders",
        "dataset:s3://lake-bucket/features/_audit",
    }
    columns = lake.lineage.column_lineage("s3://lake-bucket/features/orders")
    assert columns.row(0) == ("amount_7d", STAGING, "amount", "INDIRECT")


def test_events_as_json_text_and_uuid_free_ids_are_stable(lake: metalake.Lake) -> None:
    event = as_dicts(airflow_dag())[0]
    import json

    compact = json.dumps(event)
    pretty = json.dumps(event, indent=2, sort_keys=False)
    assert lake.lineage.ingest([compact]).new == 1
    assert lake.lineage.ingest([pretty.encode()]).new == 0  # same content, same event id
    assert lake.read("lineage_events")["event_id"].str.len_chars().to_list() == [64]
    assert str(uuid.UUID(lake.read("pipeline_runs")["run_id"][0]))


def test_event_ids_hash_the_usual_canonical_json() -> None:
    """Ids are SHA-256 of sorted-keys compact JSON, the text any JSON library writes for the event."""
    import hashlib
    import json

    from metalake.lineage.openlineage.events import parse_event

    event = as_dicts(spark_events())[0]
    event["job"]["facets"]["documentation"] = {"description": "Café ☕ \u2028 tab\t", "n": 12, "x": 0.25}
    expected = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert parse_event(event).event_id == hashlib.sha256(expected.encode()).hexdigest()


def test_quality_metrics_and_job_facet_changes(lake: metalake.Lake) -> None:
    events = as_dicts(airflow_dag())
    extract_complete = events[1]
    extract_complete["inputs"][1]["inputFacets"] = {
        "dataQualityMetrics": {
            "rowCount": 5000,
            "columnMetrics": {"country": {"nullCount": 3, "distinctCount": 40}},
        }
    }
    lake.lineage.ingest(events)
    validation = lake.read(
        "dq_validations", where=pl.col("dataset") == "postgres://warehouse:5432/public.customers"
    ).row(0, named=True)
    assert validation["success"] and validation["evaluated"] == 0 and validation["version"] == 1
    metrics = lake.read("dq_results", where=pl.col("validation_id") == validation["validation_id"])
    assert sorted(
        zip(metrics["expectation_type"], metrics["column"], metrics["observed_value"], strict=True)
    ) == [
        ("metric:distinctCount", "country", "40"),
        ("metric:nullCount", "country", "3"),
        ("metric:rowCount", None, "5000"),
    ]

    assert lake.read("pipelines").height == 2
    lake.lineage.ingest(as_dicts(airflow_dag()))  # a new DAG run, same job facets: no new pipeline rows
    assert lake.read("pipelines").height == 2
    changed = as_dicts(airflow_dag())
    for event in changed:
        event["job"]["facets"]["documentation"] = {"description": "Builds the daily features."}
    lake.lineage.ingest(changed)
    current = lake.sql(
        "select name, arg_max(description, recorded_at) as description from pipelines group by name order by name"
    ).fetchall()
    assert current == [
        ("daily_features.extract", "Builds the daily features."),
        ("daily_features.join", "Builds the daily features."),
    ]


def _job_event(facets: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventTime": "2026-01-01T00:00:00Z",
        "producer": "p",
        "eventType": "COMPLETE",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "ns", "name": "job", "facets": facets},
    }


def _output_event(facets: dict[str, Any], key: str = "facets") -> dict[str, Any]:
    return {
        **_job_event({}),
        "outputs": [{"namespace": "ns", "name": "out", key: facets}],
    }


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({**_job_event({}), "schemaURL": 3}, "schemaURL must be a string"),
        ({**_job_event({}), "eventType": ["COMPLETE"]}, "eventType"),
        (_job_event({"ownership": {"owners": [{"name": 7}]}}), r"owners\[0\].name must be a string"),
        (_job_event({"ownership": {"owners": "alice"}}), "owners must be a list"),
        (_job_event({"jobType": {"jobType": ["DAG"]}}), "jobType.jobType must be a string"),
        (_job_event({"documentation": {"description": 1}}), "documentation must be a string"),
        (_job_event({"tags": {"tags": 5}}), "tags.tags must be a list"),
        (
            _output_event(
                {"dataQualityAssertions": {"assertions": [{"success": True, "column": 5}]}}, "inputFacets"
            ),
            r"assertions\[0\].column must be a string",
        ),
        (_output_event({"dataQualityAssertions": {"assertions": 5}}), "assertions must be a list"),
        (_output_event({"dataQualityMetrics": {"columnMetrics": {"a": [1]}}}), "columnMetrics must be"),
        (
            _output_event({"columnLineage": {"fields": {"a": [{"namespace": "n"}]}}}),
            "fields.a must be an object",
        ),
        (_output_event({"columnLineage": {"fields": ["a"]}}), "columnLineage.fields must be an object"),
        (
            _output_event({"columnLineage": {"fields": {"a": {"inputFields": [{"transformations": 3}]}}}}),
            "transformations must be a list",
        ),
        (_output_event({"schema": {"fields": "a,b"}}), "schema.fields must be a list"),
        (_output_event({"outputStatistics": 3}, "outputFacets"), "outputFacets must be an object"),
        (
            {**_job_event({}), "run": {"runId": str(uuid.uuid4()), "facets": {"parent": {"job": [1]}}}},
            "parent.job",
        ),
    ],
)
def test_a_field_of_the_wrong_shape_is_refused_before_anything_is_written(
    lake: metalake.Lake, broken: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        lake.lineage.ingest([broken])
    assert lake.read("lineage_events").height == 0


def test_a_crash_before_the_events_commit_then_regrouped_events_derive_rows_once(
    lake: metalake.Lake, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = as_dicts(airflow_dag()) + as_dicts(spark_events())
    commit = Tables.commit
    crashes = [RuntimeError("killed")]

    def crash_before_events(self: Tables, table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "lineage_events" and crashes:
            raise crashes.pop()
        return commit(self, table, *args, **kwargs)

    monkeypatch.setattr(Tables, "commit", crash_before_events)
    with pytest.raises(LineageError):
        lake.lineage.ingest(events)
    assert lake.read("lineage_events").height == 0 and lake.read("pipeline_runs").height > 0
    for event in events:  # sent again one by one: other batch keys
        lake.lineage.ingest([event])

    clean = metalake.connect(tmp_path / "clean")
    clean.lineage.ingest(events)
    for table in ("lineage_events", "pipeline_runs", "lineage_edges", "dq_validations", "dq_results"):
        assert lake.read(table).height == clean.read(table).height > 0, table


def test_an_event_nested_too_deeply_is_invalid_not_a_crash(lake: metalake.Lake) -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"x": deep}
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        lake.lineage.ingest([_job_event({"custom": deep})])


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_the_current_pipeline_is_the_one_of_the_latest_event(lake: metalake.Lake, order: str) -> None:
    older = {**_job_event({"documentation": {"description": "old"}}), "eventTime": "2026-01-01T00:00:00Z"}
    newer = {**_job_event({"documentation": {"description": "new"}}), "eventTime": "2026-01-02T00:00:00Z"}
    for event in [older, newer] if order == "in order" else [newer, older]:
        lake.lineage.ingest([event])
    current = lake.sql(
        "select arg_max(description, recorded_at), arg_max(description, event_time) from pipelines"
    ).fetchall()
    assert current == [("new", "new")]
    assert lake.read("pipelines").height == (2 if order == "in order" else 1)


def _schema_event(when: str, columns: list[str]) -> dict[str, Any]:
    fields = [{"name": column, "type": "string"} for column in columns]
    return {
        **_job_event({}),
        "eventTime": when,
        "outputs": [{"namespace": "ns", "name": "out", "facets": {"schema": {"fields": fields}}}],
    }


def test_a_schema_reported_late_is_not_a_bogus_breaking_change(lake: metalake.Lake) -> None:
    lake.lineage.ingest([_schema_event("2026-01-02T00:00:00Z", ["a", "b"])])
    lake.lineage.ingest([_schema_event("2026-01-01T00:00:00Z", ["a"])])  # older, arrives last
    lake.lineage.ingest([_schema_event("2026-01-03T00:00:00Z", ["a", "b", "c"])])
    history = lake.read("dataset_versions", where=pl.col("dataset") == "ns/out").sort("version")
    assert history["schema_changes"].to_list()[:2] == [None, None]  # v2 [a] has no version before it in time
    assert "older than the dataset's latest observed schema" in history["description"][1]
    # v3 follows v1 in time, not v2: column c added, nothing removed
    changes = json.loads(history["schema_changes"][2])
    assert [(c["column"], c["change"], c["breaking"]) for c in changes] == [("c", "added", False)]


def test_both_arrival_orders_give_the_same_current_schema(lake_path: Any, tmp_path: Any) -> None:
    older, newer = (
        _schema_event("2026-01-01T00:00:00Z", ["a"]),
        _schema_event("2026-01-02T00:00:00Z", ["a", "b"]),
    )
    in_order = metalake.connect(tmp_path / "in_order")
    in_order.lineage.ingest([older])
    in_order.lineage.ingest([newer])
    reversed_ = metalake.connect(tmp_path / "reversed")
    reversed_.lineage.ingest([newer])
    reversed_.lineage.ingest([older])
    schemas = [[c["name"] for c in lake.datasets.get("ns/out").schema] for lake in (in_order, reversed_)]
    assert schemas[0] == schemas[1] == ["a", "b"]
    for lake in (in_order, reversed_):
        current = lake.sql("select version, versions from dataset_versions_current where dataset = 'ns/out'")
        version, versions = current.fetchall()[0]
        assert versions == 2
        assert lake.datasets.get("ns/out", version).schema == lake.datasets.get("ns/out").schema
    # arriving late, the older schema is numbered after the newer one and says so
    late = reversed_.datasets.get("ns/out", 2)
    assert [c["name"] for c in late.schema] == ["a"]
    assert late.observed_at is not None and late.observed_at.day == 1
    (description,) = reversed_.sql(
        "select description from dataset_versions where dataset = 'ns/out' and version = 2"
    ).fetchall()[0]
    assert "older than" in description


def test_two_processes_ingesting_the_same_events_store_each_once(tmp_path: Any) -> None:
    from support.workers import ingest_lineage, run_in_processes

    events = [Serde.to_json(event) for _ in range(6) for event in airflow_dag()]
    uri = str(tmp_path / "lake")
    metalake.connect(uri)
    # grouped differently, so the two jobs' batches (and their idempotency keys) never match
    new = run_in_processes(ingest_lineage, [(uri, events, 7), (uri, events[::-1], 5)])
    assert sum(new) == len(events)
    lake = metalake.connect(uri)
    for table, column in (
        ("lineage_events", "event_id"),
        ("pipeline_runs", "event_id"),
        ("lineage_edges", "edge_id"),
        ("dq_validations", "validation_id"),
    ):
        ids = lake.read(table, columns=[column]).get_column(column)
        assert ids.len() == ids.n_unique() > 0, table
    assert lake.read("lineage_events").height == len(events)


def test_an_event_sent_again_with_a_later_one_is_stored_once_at_sub_millisecond_times(
    lake: metalake.Lake,
) -> None:
    # Delta statistics cut timestamps to the millisecond: the stored file's latest time reads as .000000
    first = _schema_event("2026-01-01T00:00:00.000900Z", ["a"])
    later = _schema_event("2026-01-01T00:00:00.000950Z", ["a", "b"])
    lake.lineage.ingest([first])
    result = lake.lineage.ingest([first, later])  # a client retry grouped with the next event
    assert (result.new, result.duplicates) == (1, 1)
    for table, column in (("lineage_events", "event_id"), ("pipeline_runs", "event_id")):
        ids = lake.read(table, columns=[column]).get_column(column)
        assert ids.len() == ids.n_unique() == 2, table


def test_versions_stored_before_observed_at_existed_count_as_seen_first(lake: metalake.Lake) -> None:
    # A version an OpenLineage event reported before dataset_versions had observed_at: recorded now, seen when?
    lake.append(
        "dataset_versions",
        [
            {
                "dataset": "ns/out",
                "version": 1,
                "fingerprint": "openlineage:earlier",
                "schema": json.dumps([{"name": "a", "type": "string", "nullable": True}]),
                "source_format": "openlineage",
            }
        ],
    )
    lake.lineage.ingest([_schema_event("2026-01-03T00:00:00Z", ["a", "b"])])
    assert lake.datasets.get("ns/out").version == 2
    assert lake.sql("select version from dataset_versions_current").fetchall() == [(2,)]
    (changes, description) = lake.sql(
        "select schema_changes, description from dataset_versions where version = 2"
    ).fetchall()[0]
    assert '"column":"b"' in changes and "older than" not in description


def test_a_file_that_fails_midway_says_how_far_it_got_and_resumes(
    lake: metalake.Lake, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [_schema_event(f"2026-01-0{day}T00:00:00Z", [f"c{day}"]) for day in range(1, 7)]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    commit = Tables.commit
    calls = []

    def failing_third_chunk(self: Tables, table: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(table)
        if calls.count("lineage_events") == 3:  # each chunk commits its raw events last
            raise OSError("disk full")
        return commit(self, table, *args, **kwargs)

    monkeypatch.setattr(Tables, "commit", failing_third_chunk)
    with pytest.raises(LineageError, match="Stopped after storing 4 of the file's 6 new event"):
        lake.lineage.ingest_file(path, chunk_events=2)
    monkeypatch.setattr(Tables, "commit", commit)
    assert lake.lineage.ingest_file(path, chunk_events=2).new == 2
    with pytest.raises(LineageError, match="chunk_events must be at least 1"):
        lake.lineage.ingest_file(path, chunk_events=0)


def test_a_name_on_several_lines_is_refused_before_anything_is_written(lake: metalake.Lake) -> None:
    event = _schema_event("2026-01-01T00:00:00Z", ["a"])
    event["outputs"][0]["namespace"] = "\nns"
    with pytest.raises(InvalidEvent, match="one-line namespace and name"):
        lake.lineage.ingest([event])


@pytest.mark.parametrize(
    ("event_time", "problem"),
    [
        ("0001-01-01T00:00:00Z", "before 1900"),
        ("9999-12-31T23:59:59Z", "in the future"),
        ("2099-01-01T00:00:00Z", "in the future"),
        ("9999-12-31T23:00:00-05:00", "is not an ISO-8601 date-time"),
    ],
)
def test_an_event_time_that_cannot_be_stored_is_refused_on_a_lake_with_events(
    lake: metalake.Lake, event_time: str, problem: str
) -> None:
    lake.lineage.ingest(airflow_dag())
    stored = lake.read("lineage_events").height
    event = {**as_dicts(airflow_dag(dag_run_id=str(uuid.uuid4())))[0], "eventTime": event_time}
    with pytest.raises(InvalidEvent, match=problem):
        lake.lineage.ingest([event])
    assert lake.read("lineage_events").height == stored
    fine = {**event, "eventTime": datetime.now(UTC).isoformat()}
    assert lake.lineage.ingest([fine]).new == 1


def test_a_lake_that_already_holds_extreme_event_times_still_ingests_and_reads(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lakes written before event times were checked may hold year 1 or year 9999: no read path overflows."""
    from metalake.lineage.openlineage import events as openlineage_events

    lake.lineage.ingest(airflow_dag())
    monkeypatch.setattr(openlineage_events, "EARLIEST_MOMENT", datetime.min.replace(tzinfo=UTC))
    monkeypatch.setattr(openlineage_events, "latest_allowed", lambda: datetime.max.replace(tzinfo=UTC))
    for moment in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        event = {**as_dicts(airflow_dag(dag_run_id=str(uuid.uuid4())))[0], "eventTime": moment}
        assert lake.lineage.ingest([event]).new == 1
    monkeypatch.undo()
    assert lake.lineage.ingest(airflow_dag()).new == 4
    assert lake.read("lineage_events").height == 10
    assert not lake.lineage.upstream(TRAIN).is_empty()
    assert lake.sql("select count(*) from pipeline_runs_current").fetchall()[0][0] > 0
