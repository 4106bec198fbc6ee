"""Shape checks for OpenLineage events: every field metalake builds a row from has the type it needs.

An event that passes `parse_event` (openlineage_events.py) must never fail later while its rows are built, or a
server would accept it (201) and then be unable to store it. `fail(reason)` builds the InvalidEvent to raise.
Each dataset is walked once, and only the facets it carries are looked into: ingest checks every event of a
file before writing any, so this runs hundreds of thousands of times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

FACET_KEYS = ("inputFacets", "outputFacets", "facets")
# Builds the error to raise for a reason: an InvalidEvent naming the event (kept abstract: no import cycle)
Fail = Callable[[str], Exception]


def check_job(job: Any, fail: Fail) -> None:
    """A named job whose facets are well-formed (those rows are built from included)."""
    if not isinstance(job, dict) or not is_named(job):
        raise fail("job needs a non-empty, one-line namespace and name")
    facets = job.get("facets")
    check_facets(facets, "job.facets", fail)
    if facets:
        _check_job_facets(facets, fail)


def check_datasets(payload: Mapping[str, Any], fail: Fail) -> None:
    """Every input and output dataset of a run or job event; most take the fast path (_plainly_valid)."""
    for side in ("inputs", "outputs"):
        datasets = payload.get(side)
        if datasets is None:
            continue
        if not isinstance(datasets, list):
            raise fail(f"{side} must be a list of datasets")
        for index, dataset in enumerate(datasets):
            if not _plainly_valid(dataset):
                check_dataset(dataset, f"{side}[{index}]", fail)


# Facets whose content rows are built from, checked in detail by _check_dataset_facets (schema inline)
_DETAILED_FACETS = frozenset({"dataQualityAssertions", "dataQualityMetrics", "columnLineage"})


def _plainly_valid(dataset: Any) -> bool:
    """True for a dataset that surely passes `check_dataset` (most do), found without building any message."""
    if type(dataset) is not dict:
        return False
    namespace, name = dataset.get("namespace"), dataset.get("name")
    if type(namespace) is not str or type(name) is not str or not namespace or not name:
        return False
    if not (namespace.isprintable() and name.isprintable()):
        return False
    for key in FACET_KEYS:
        facets = dataset.get(key)
        if facets is None:
            continue
        if type(facets) is not dict:
            return False
        for facet_name, facet in facets.items():
            if type(facet) is not dict or facet_name in _DETAILED_FACETS:
                return False
            if facet_name == "schema":
                fields = facet.get("fields")
                if fields is not None and type(fields) is not list:
                    return False
    return True


def check_dataset(dataset: Any, where: str, fail: Fail) -> None:
    """A named dataset whose facets, under any of the keys producers use, are well-formed."""
    if not isinstance(dataset, dict) or not is_named(dataset):
        raise fail(f"{where} needs a non-empty, one-line namespace and name")
    for key in FACET_KEYS:
        facets = dataset.get(key)
        if facets is not None:
            check_facets(facets, f"{where}.{key}", fail)
            if facets:
                _check_dataset_facets(facets, f"{where}.{key}", fail)


def check_facets(facets: Any, where: str, fail: Fail) -> None:
    """Facets, when given, are an object of facet objects."""
    if facets is None:
        return
    if type(facets) is dict:
        for value in facets.values():
            if type(value) is not dict:
                break
        else:
            return
    raise fail(f"{where} must be an object of facet objects")


def check_event_fields(payload: Mapping[str, Any], kind: str, fail: Fail) -> None:
    """The fields outside jobs and datasets that feed a row: schemaURL, the parent run facet."""
    _optional_text(payload.get("schemaURL"), "schemaURL", fail)
    run = payload.get("run")
    if kind == "dataset" or not isinstance(run, dict):
        return
    parent = (run.get("facets") or {}).get("parent")
    if not parent:
        return
    for part in ("run", "job"):
        if parent.get(part) is not None and not isinstance(parent[part], dict):
            raise fail(f"run.facets.parent.{part} must be an object")
    _optional_text((parent.get("run") or {}).get("runId"), "run.facets.parent.run.runId", fail)


def _check_job_facets(facets: Mapping[str, Any], fail: Fail) -> None:
    if "jobType" in facets:
        job_type = facets["jobType"]
        for key in ("jobType", "processingType"):
            _optional_text(job_type.get(key), f"job.facets.jobType.{key}", fail)
    if "documentation" in facets:
        _optional_text(facets["documentation"].get("description"), "job.facets.documentation", fail)
    if "ownership" in facets:
        owners = facets["ownership"].get("owners")
        _optional_list(owners, "job.facets.ownership.owners", fail)
        if owners and isinstance(owners[0], dict):
            _optional_text(owners[0].get("name"), "job.facets.ownership.owners[0].name", fail)
    if "tags" in facets:
        _optional_list(facets["tags"].get("tags"), "job.facets.tags.tags", fail)


def _check_dataset_facets(facets: Mapping[str, Any], at: str, fail: Fail) -> None:
    """The facets rows are built from (each already known to be an object), where present."""
    if "schema" in facets:
        _optional_list(facets["schema"].get("fields"), f"{at}.schema.fields", fail)
    if "dataQualityAssertions" in facets:
        assertions = facets["dataQualityAssertions"].get("assertions")
        _optional_list(assertions, f"{at}.dataQualityAssertions.assertions", fail)
        for number, assertion in enumerate(assertions or []):
            if isinstance(assertion, dict):
                name = f"{at}.dataQualityAssertions.assertions[{number}]"
                for field_name in ("column", "assertion", "severity"):
                    _optional_text(assertion.get(field_name), f"{name}.{field_name}", fail)
    if "dataQualityMetrics" in facets:
        column_metrics = facets["dataQualityMetrics"].get("columnMetrics")
        if column_metrics is not None and not (
            isinstance(column_metrics, dict)
            and all(isinstance(m, dict | None) for m in column_metrics.values())
        ):
            raise fail(f"{at}.dataQualityMetrics.columnMetrics must be an object of column -> metrics object")
    if "columnLineage" in facets:
        _check_column_lineage(facets["columnLineage"].get("fields"), f"{at}.columnLineage.fields", fail)


def _check_column_lineage(fields: Any, at: str, fail: Fail) -> None:
    if fields is None:
        return
    if not isinstance(fields, dict):
        raise fail(f"{at} must be an object of column -> {{inputFields: [...]}}")
    for target, spec in fields.items():
        name = f"{at}.{target}"
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise fail(f"{name} must be an object with inputFields: [...]")
        _optional_text(spec.get("transformationType"), f"{name}.transformationType", fail)
        _optional_list(spec.get("inputFields"), f"{name}.inputFields", fail)
        for number, source in enumerate(spec.get("inputFields") or []):
            if isinstance(source, dict):
                transformations = source.get("transformations")
                _optional_list(transformations, f"{name}.inputFields[{number}].transformations", fail)
                if transformations and isinstance(transformations[0], dict):
                    _optional_text(
                        transformations[0].get("type"),
                        f"{name}.inputFields[{number}].transformations[0].type",
                        fail,
                    )


def _optional_text(value: Any, where: str, fail: Fail) -> None:
    if value is not None and not isinstance(value, str):
        raise fail(f"{where} must be a string, got {type(value).__name__} {value!r}")


def _optional_list(value: Any, where: str, fail: Fail) -> None:
    if value is not None and not isinstance(value, list):
        raise fail(f"{where} must be a list, got {type(value).__name__}")


def is_named(thing: Mapping[str, Any]) -> bool:
    """A non-empty, one-line (printable) namespace and name: they become node ids such as dataset:NS/NAME."""
    namespace, name = thing.get("namespace"), thing.get("name")
    return (
        type(namespace) is str
        and type(name) is str
        and namespace != ""
        and name != ""
        and namespace.isprintable()
        and name.isprintable()
    )
