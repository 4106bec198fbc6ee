"""Shape checks for OpenLineage events: every field metalake builds a row from has the type it needs.

An event that passes `parse_event` (openlineage_events.py) must never fail later while its rows are built, or a
server would accept it (201) and then be unable to store it. `fail(reason)` builds the InvalidEvent to raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FACET_KEYS = ("inputFacets", "outputFacets", "facets")


def check_job(job: Any, fail: Any) -> None:
    if not isinstance(job, dict) or not is_named(job):
        raise fail("job needs a non-empty namespace and name")
    check_facets(job.get("facets"), "job.facets", fail)


def check_datasets(payload: Mapping[str, Any], fail: Any) -> None:
    for side in ("inputs", "outputs"):
        datasets = payload.get(side)
        if datasets is None:
            continue
        if not isinstance(datasets, list):
            raise fail(f"{side} must be a list of datasets")
        for index, dataset in enumerate(datasets):
            check_dataset(dataset, f"{side}[{index}]", fail)
            facet_key = "inputFacets" if side == "inputs" else "outputFacets"
            check_facets(dataset.get(facet_key), f"{side}[{index}].{facet_key}", fail)


def check_dataset(dataset: Any, where: str, fail: Any) -> None:
    if not isinstance(dataset, dict) or not is_named(dataset):
        raise fail(f"{where} needs a non-empty namespace and name")
    check_facets(dataset.get("facets"), f"{where}.facets", fail)


def check_facets(facets: Any, where: str, fail: Any) -> None:
    if facets is None:
        return
    if type(facets) is dict:
        for value in facets.values():
            if type(value) is not dict:
                break
        else:
            return
    raise fail(f"{where} must be an object of facet objects")


def check_row_fields(payload: Mapping[str, Any], kind: str, fail: Any) -> None:
    """Every field that feeds a row has the shape the row needs: an event that passes is always ingestible."""
    _optional_text(payload.get("schemaURL"), "schemaURL", fail)
    job = payload.get("job")
    if isinstance(job, dict):
        _check_job_facets(job.get("facets") or {}, fail)
    run = payload.get("run")
    if isinstance(run, dict):
        parent = (run.get("facets") or {}).get("parent") or {}
        for part in ("run", "job"):
            if parent.get(part) is not None and not isinstance(parent[part], dict):
                raise fail(f"run.facets.parent.{part} must be an object")
        _optional_text((parent.get("run") or {}).get("runId"), "run.facets.parent.run.runId", fail)
    if kind == "dataset":
        _check_dataset_facets(payload["dataset"], "dataset", fail)
        return
    for side in ("inputs", "outputs"):
        for index, dataset in enumerate(payload.get(side) or []):
            _check_dataset_facets(dataset, f"{side}[{index}]", fail)


def _check_job_facets(facets: Mapping[str, Any], fail: Any) -> None:
    job_type = facets.get("jobType") or {}
    for key in ("jobType", "processingType"):
        _optional_text(job_type.get(key), f"job.facets.jobType.{key}", fail)
    _optional_text((facets.get("documentation") or {}).get("description"), "job.facets.documentation", fail)
    owners = (facets.get("ownership") or {}).get("owners")
    _optional_list(owners, "job.facets.ownership.owners", fail)
    if owners and isinstance(owners[0], dict):
        _optional_text(owners[0].get("name"), "job.facets.ownership.owners[0].name", fail)
    _optional_list((facets.get("tags") or {}).get("tags"), "job.facets.tags.tags", fail)


def _check_dataset_facets(dataset: Mapping[str, Any], where: str, fail: Any) -> None:
    for key in FACET_KEYS:
        check_facets(dataset.get(key), f"{where}.{key}", fail)
    for key in FACET_KEYS:
        facets = dataset.get(key) or {}
        at = f"{where}.{key}"
        schema = facets.get("schema") or {}
        _optional_list(schema.get("fields"), f"{at}.schema.fields", fail)
        assertions = (facets.get("dataQualityAssertions") or {}).get("assertions")
        _optional_list(assertions, f"{at}.dataQualityAssertions.assertions", fail)
        for number, assertion in enumerate(assertions or []):
            if isinstance(assertion, dict):
                name = f"{at}.dataQualityAssertions.assertions[{number}]"
                for field_name in ("column", "assertion", "severity"):
                    _optional_text(assertion.get(field_name), f"{name}.{field_name}", fail)
        column_metrics = (facets.get("dataQualityMetrics") or {}).get("columnMetrics")
        if column_metrics is not None and not (
            isinstance(column_metrics, dict)
            and all(isinstance(m, dict | None) for m in column_metrics.values())
        ):
            raise fail(f"{at}.dataQualityMetrics.columnMetrics must be an object of column -> metrics object")
        fields = (facets.get("columnLineage") or {}).get("fields")
        if fields is None:
            continue
        if not isinstance(fields, dict):
            raise fail(f"{at}.columnLineage.fields must be an object of column -> {{inputFields: [...]}}")
        for target, spec in fields.items():
            name = f"{at}.columnLineage.fields.{target}"
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


def _optional_text(value: Any, where: str, fail: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise fail(f"{where} must be a string, got {type(value).__name__} {value!r}")


def _optional_list(value: Any, where: str, fail: Any) -> None:
    if value is not None and not isinstance(value, list):
        raise fail(f"{where} must be a list, got {type(value).__name__}")


def is_named(thing: Mapping[str, Any]) -> bool:
    namespace, name = thing.get("namespace"), thing.get("name")
    return type(namespace) is str and type(name) is str and namespace != "" and name != ""
