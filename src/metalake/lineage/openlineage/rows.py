"""The rows an OpenLineage event adds to metalake's tables: pipelines, pipeline runs, lineage edges, dataset
observations (which become dataset versions) and data-quality results. `EventRows` collects them for a batch of
events that `parse_event` (openlineage_events.py) checked, so building them never fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metalake.lineage.openlineage.checks import FACET_KEYS, is_named
from metalake.lineage.openlineage.events import Event, canonical_json, dataset_name, dataset_node

_SEVERITIES = {
    "error": "critical",
    "critical": "critical",
    "fatal": "critical",
    "warn": "warning",
    "warning": "warning",
    "info": "info",
}


@dataclass
class DatasetObservation:
    """A dataset's schema as one event saw it: becomes (or finds) a dataset version."""

    dataset: str
    fingerprint: str
    schema: list[dict[str, Any]]
    event_time: datetime
    source_uri: str
    run_id: str | None
    row_count: int | None = None
    bytes: int | None = None
    file_count: int | None = None
    dataset_version: str | None = None
    event_id: str = ""  # of the event that reported it: ties in event time go to the smaller id


@dataclass
class QualityFacets:
    """dataQualityAssertions / dataQualityMetrics of one dataset in one event: one validation."""

    validation_id: str
    dataset: str
    event_time: datetime
    run_id: str | None
    results: list[dict[str, Any]]
    evaluated: int
    successful: int
    observation: int | None = None  # index of the same event's observation of the dataset, for its version


# Columns of the row tuples EventRows builds (tuples: much cheaper than dicts for hundreds of thousands of rows).
EVENT_COLUMNS = (
    "event_id",
    "event_kind",
    "event_type",
    "event_time",
    "run_id",
    "job_namespace",
    "job_name",
    "dataset",
    "producer",
    "schema_url",
    "payload",
)
RUN_COLUMNS = (
    "event_id",
    "run_id",
    "namespace",
    "job_name",
    "state",
    "event_time",
    "parent_run_id",
    "parent_job",
    "facets",
    "producer",
)
EDGE_COLUMNS = (
    "edge_id",
    "source_node",
    "target_node",
    "edge_type",
    "run_id",
    "source_version",
    "target_version",
    "source_field",
    "target_field",
    "transformation",
    "event_time",
)


@dataclass
class EventRows:
    """The rows a batch of checked events adds, by table; dataset versions are filled in by the caller.

    events, pipeline_runs and edges are tuples in the order of EVENT_COLUMNS, RUN_COLUMNS and EDGE_COLUMNS.
    """

    events: list[tuple[Any, ...]] = field(default_factory=list)
    pipeline_runs: list[tuple[Any, ...]] = field(default_factory=list)
    pipelines: dict[tuple[str, str], tuple[datetime, Mapping[str, Any]]] = field(default_factory=dict)
    edges: list[tuple[Any, ...]] = field(default_factory=list)
    observations: list[DatasetObservation] = field(default_factory=list)
    quality: list[QualityFacets] = field(default_factory=list)
    # (edge index, "source" | "target", observation index): versions to fill once observations are resolved
    versioned_ends: list[tuple[int, str, int]] = field(default_factory=list)
    # dataset node -> (schema fields, datasetVersion, observation index) of each distinct schema seen
    _schemas_seen: dict[str, list[tuple[Any, Any, int]]] = field(default_factory=dict)
    _event_ids: set[str] = field(default_factory=set)

    def add(self, event: Event) -> None:
        """The rows of one event; an event already added is skipped. Add a batch in event-time order: the first
        event that reports a schema gives its observation's statistics (its time and run follow the earliest
        event whatever the order). Runs for every event of a batch: kept lean.
        """
        if event.event_id in self._event_ids:
            return
        self._event_ids.add(event.event_id)
        payload = event.content
        kind = event.kind
        job = (payload.get("job") or {}) if kind != "dataset" else {}
        run = payload.get("run") or {}
        run_id = run.get("runId")
        state = (payload.get("eventType") or "OTHER") if kind == "run" else None
        dataset = payload.get("dataset") or {}
        producer = payload.get("producer")
        event_us = event.event_us
        self.events.append(
            (
                event.event_id,
                kind,
                state,
                event_us,
                run_id,
                job.get("namespace"),
                job.get("name"),
                f"{dataset['namespace']}/{dataset['name']}" if dataset else None,
                producer,
                payload.get("schemaURL"),
                event.canonical,
            )
        )
        if job:
            self._add_pipeline(job, event.event_time)
        if kind == "run":
            self._add_run(event, run, job, str(state), producer)
        if kind == "dataset":
            facets = dataset.get("facets")
            if facets and "schema" in facets:
                self._observe(
                    event, dataset, facets, f"dataset:{dataset['namespace']}/{dataset['name']}", None
                )
            return
        job_node = f"job:{job['namespace']}/{job['name']}"
        edge_id = event.event_id[:40]
        edges = self.edges
        for side, first_index in (("input", 0), ("output", 1000)):
            for index, dataset in enumerate(payload.get(f"{side}s") or (), first_index):
                facets = dataset.get("facets")
                version = (facets.get("version") or {}).get("datasetVersion") if facets else None
                version = None if version is None else str(version)
                node = f"dataset:{dataset['namespace']}/{dataset['name']}"
                source, target = (node, job_node) if side == "input" else (job_node, node)
                source_version, target_version = (version, None) if side == "input" else (None, version)
                edges.append(
                    (
                        f"{edge_id}:{index}",
                        source,
                        target,
                        side,
                        run_id,
                        source_version,
                        target_version,
                        None,
                        None,
                        None,
                        event_us,
                    )
                )
                observed = None
                if facets and "schema" in facets:
                    observed = self._observe(event, dataset, facets, node, run_id)
                    if observed is not None:
                        end = "source" if side == "input" else "target"
                        self.versioned_ends.append((len(edges) - 1, end, observed))
                if _may_have_quality_facets(dataset, facets):
                    self._add_quality(event, dataset, run_id, index, observed)
                if side == "output" and facets and "columnLineage" in facets:
                    self._add_column_lineage(event, dataset, node, run_id, index - first_index)

    def _add_pipeline(self, job: Mapping[str, Any], event_time: datetime) -> None:
        """Remember the job as the newest event reporting its facets describes it (rows are built once, later)."""
        key = (job["namespace"], job["name"])
        known = self.pipelines.get(key)
        if known is None or (job.get("facets") and (event_time >= known[0] or not known[1].get("facets"))):
            self.pipelines[key] = (event_time, job)

    def pipeline_rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The newest facts reported about each job of the batch, facets and tags as JSON text."""
        rows = {}
        for key, (event_time, job) in self.pipelines.items():
            facets = job.get("facets") or {}
            job_type = facets.get("jobType") or {}
            owners = (facets.get("ownership") or {}).get("owners") or []
            tags = (facets.get("tags") or {}).get("tags") or []
            tag_map = {str(t.get("key")): str(t.get("value")) for t in tags if isinstance(t, dict)}
            rows[key] = {
                "namespace": key[0],
                "name": key[1],
                "description": (facets.get("documentation") or {}).get("description"),
                "job_type": job_type.get("jobType") or job_type.get("processingType"),
                "owner": owners[0].get("name") if owners and isinstance(owners[0], dict) else None,
                "tags": canonical_json(tag_map) if tag_map else None,
                "facets": canonical_json(facets) if facets else None,
                "event_time": event_time,
            }
        return rows

    def _add_run(
        self, event: Event, run: Mapping[str, Any], job: Mapping[str, Any], state: str, producer: str | None
    ) -> None:
        """One pipeline_runs row: the run's state at this event, its parent run and job, its other facets."""
        facets = run.get("facets") or {}
        parent = facets.get("parent") or {}
        parent_run = (parent.get("run") or {}).get("runId")
        parent_job = parent.get("job") or {}
        # parent has its own columns; the raw event in lineage_events keeps every facet
        other = {k: v for k, v in facets.items() if k != "parent"}
        self.pipeline_runs.append(
            (
                event.event_id,
                run["runId"],
                job["namespace"],
                job["name"],
                state,
                event.event_us,
                parent_run if isinstance(parent_run, str) else None,
                f"{parent_job['namespace']}/{parent_job['name']}" if is_named(parent_job) else None,
                canonical_json(other) if other else None,
                producer,
            )
        )

    def _observe(
        self,
        event: Event,
        dataset: Mapping[str, Any],
        facets: Mapping[str, Any],
        node: str,
        run_id: str | None,
    ) -> int | None:
        """A dataset observation from the schema facet in `facets` (the dataset's); returns its index."""
        schema_facet = facets["schema"]
        fields = schema_facet.get("fields")
        if type(fields) is not list:
            return None
        version = (facets.get("version") or {}).get("datasetVersion")
        # Producers repeat a dataset's schema in every event: one observation per distinct schema, the earliest
        # in event time, hashed once. Comparing with the few schemas seen is cheap.
        seen = self._schemas_seen.get(node)
        if seen is None:
            seen = self._schemas_seen[node] = []
        for seen_fields, seen_version, index in seen:
            if seen_fields == fields and seen_version == version and type(seen_version) is type(version):
                first = self.observations[index]
                moment = event.event_time
                if moment <= first.event_time and (moment, event.event_id) < (
                    first.event_time,
                    first.event_id,
                ):
                    first.event_time, first.event_id, first.run_id = moment, event.event_id, run_id
                return index
        namespace, name = str(dataset["namespace"]), str(dataset["name"])
        schema = _flatten_fields(schema_facet["fields"])
        identity = canonical_json({"schema": schema, "datasetVersion": version})
        stats = (dataset.get("outputFacets") or {}).get("outputStatistics") or {}
        metrics = _quality_facet(dataset, "dataQualityMetrics")
        self.observations.append(
            DatasetObservation(
                dataset=dataset_name(namespace, name),
                fingerprint="openlineage:" + hashlib.sha256(identity.encode()).hexdigest(),
                schema=schema,
                event_time=event.event_time,
                source_uri=f"{namespace}/{name}",
                run_id=run_id,
                row_count=_int(stats.get("rowCount", metrics.get("rowCount"))),
                bytes=_int(stats.get("size", metrics.get("bytes"))),
                file_count=_int(stats.get("fileCount", metrics.get("fileCount"))),
                dataset_version=None if version is None else str(version),
                event_id=event.event_id,
            )
        )
        seen.append((fields, version, len(self.observations) - 1))
        return len(self.observations) - 1

    def _add_quality(
        self,
        event: Event,
        dataset: Mapping[str, Any],
        run_id: str | None,
        index: int,
        observed: int | None,
    ) -> None:
        """One validation from the dataset's data-quality facets (assertions and metrics), if they hold any."""
        assertions = _quality_facet(dataset, "dataQualityAssertions").get("assertions") or []
        metrics = _quality_facet(dataset, "dataQualityMetrics")
        results = []
        for assertion in assertions:
            if not isinstance(assertion, dict) or not isinstance(assertion.get("success"), bool):
                continue
            results.append(
                {
                    "expectation_type": str(
                        assertion.get("assertion") or assertion.get("name") or "assertion"
                    ),
                    "column": assertion.get("column"),
                    "success": assertion["success"],
                    "observed_value": _text(assertion.get("actual")),
                    "severity": _SEVERITIES.get(str(assertion.get("severity") or "").lower()),
                    "kwargs": assertion.get("params") or None,
                    "details": {
                        k: assertion[k] for k in ("name", "description", "expected") if assertion.get(k)
                    }
                    or None,
                }
            )
        evaluated = len(results)
        successful = sum(1 for r in results if r["success"])
        for key in ("rowCount", "bytes", "fileCount"):
            if metrics.get(key) is not None:
                results.append(_metric_result(key, None, metrics[key]))
        for column, column_metrics in (metrics.get("columnMetrics") or {}).items():
            for key, value in (column_metrics or {}).items():
                if value is not None and not isinstance(value, dict | list):
                    results.append(_metric_result(key, column, value))
        if not results:
            return
        namespace, name = str(dataset["namespace"]), str(dataset["name"])
        self.quality.append(
            QualityFacets(
                validation_id=f"openlineage:{event.event_id[:40]}:{index}",
                dataset=dataset_name(namespace, name),
                event_time=event.event_time,
                run_id=run_id,
                results=results,
                evaluated=evaluated,
                successful=successful,
                observation=observed,
            )
        )

    def _add_column_lineage(
        self, event: Event, dataset: Mapping[str, Any], target: str, run_id: str | None, index: int
    ) -> None:
        facet = (dataset.get("facets") or {}).get("columnLineage") or {}
        fields = facet.get("fields") or {}
        if not isinstance(fields, dict):
            return
        count = 0
        for target_field, spec in fields.items():
            for source_field in (spec or {}).get("inputFields") or []:
                if not isinstance(source_field, dict) or not is_named(source_field):
                    continue
                transformations = source_field.get("transformations") or []
                kind = (
                    transformations[0].get("type")
                    if transformations and isinstance(transformations[0], dict)
                    else spec.get("transformationType")
                )
                count += 1
                self.edges.append(
                    (
                        f"{event.event_id[:40]}:{100_000 * (index + 1) + count}",
                        dataset_node(source_field["namespace"], source_field["name"]),
                        target,
                        "column",
                        run_id,
                        None,
                        None,
                        str(source_field.get("field")),
                        str(target_field),
                        kind,
                        event.event_us,
                    )
                )


def _may_have_quality_facets(dataset: Mapping[str, Any], facets: Mapping[str, Any] | None) -> bool:
    """A cheap test, for every dataset of every event, before looking for data-quality facets: producers put them
    under facets (given, already read), inputFacets (the spec) or outputFacets."""
    return (
        "inputFacets" in dataset
        or "outputFacets" in dataset
        or bool(facets and ("dataQualityAssertions" in facets or "dataQualityMetrics" in facets))
    )


def _quality_facet(dataset: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A data-quality facet, found where producers put it: inputFacets (the spec), outputFacets or facets."""
    for key in FACET_KEYS:
        facets = dataset.get(key)
        if facets and isinstance(facets.get(name), dict):
            return facets[name]  # type: ignore[no-any-return]
    return {}


def _metric_result(key: str, column: str | None, value: Any) -> dict[str, Any]:
    return {
        "expectation_type": f"metric:{key}",
        "column": column,
        "success": True,
        "observed_value": _text(value),
        "severity": "info",
        "kwargs": None,
        "details": {"kind": "metric"},
    }


def _flatten_fields(fields: list[Any], prefix: str = "") -> list[dict[str, Any]]:
    """Schema facet fields as metalake's schema entries; nested fields become parent.child."""
    schema = []
    for entry in fields:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = prefix + entry["name"]
        schema.append({"name": name, "type": str(entry.get("type") or "UNKNOWN"), "nullable": True})
        if isinstance(entry.get("fields"), list) and entry["fields"]:
            schema += _flatten_fields(entry["fields"], name + ".")
    return schema


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
