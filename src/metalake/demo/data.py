"""The demo's data: scikit-learn datasets delivered as Parquet files, a broken delivery, GX suites, ETL lineage.

Every file lands in the demo's `sources/` folder (inside a local demo lake) and is written once: a delivery is a
pure function of the round, so the same round always yields the same rows, and unchanged data registers as the
version it already is. scikit-learn and pandas are imported inside the functions (see `demo.rounds`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from metalake.datasets.datasets import DatasetVersion
    from metalake.lake import Lake
    from metalake.quality.validation import Validation

BREAST_CANCER = "breast_cancer"
HOLDOUT = "breast_cancer_holdout"
WINE = "wine"
TARGET = "target"
HOLDOUT_SHARE = 0.3
# Round 1 delivers this share of the training pool, each later round 10 points more, up to all of it.
FIRST_SHARE, SHARE_STEP = 0.8, 0.1
# What the broken delivery gets wrong (an upstream export that changed without notice).
RENAMED_COLUMN = ("worst concave points", "worst concave pts")
NULL_COLUMNS = ("mean radius", "mean texture")
NULL_SHARE = 0.12
AREA_COLUMN = "mean area"
AREA_UNIT_ERROR_SHARE, AREA_UNIT_FACTOR = 0.08, 100.0
DUPLICATE_SHARE = 0.08
FLIPPED_LABEL_SHARE = 0.25
OWNERS = {BREAST_CANCER: "pathology-data", HOLDOUT: "pathology-data", WINE: "winery-lab"}
DESCRIPTIONS = {
    BREAST_CANCER: "Biopsy measurements (Wisconsin breast cancer, scikit-learn), one delivery per ETL run; "
    "target 0 = malignant, 1 = benign.",
    HOLDOUT: "Fixed, clean holdout of the biopsies: every tumor model is scored on it.",
    WINE: "Chemical analysis of wines from three cultivars (scikit-learn wine data); target = cultivar.",
}
# Raw tables the ETL jobs read (OpenLineage namespaces and names), per metalake dataset.
ETL_JOBS = {
    BREAST_CANCER: ("clinic-etl", "export_biopsies", "postgres://clinic-db:5432", "pathology.biopsies"),
    WINE: ("winery-etl", "export_lab_results", "mysql://winery-lab:3306", "lab.wine_analyses"),
}
PRODUCER = "https://github.com/metalake/metalake/demo"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"


@dataclass(frozen=True)
class DemoFiles:
    """Where the demo keeps the files it produces: deliveries, suites and the policy, model artifacts."""

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def suite(self, dataset: str) -> Path:
        return self.sources / "suites" / f"{dataset}.yaml"


def demo_files(lake: Lake) -> DemoFiles:
    """Inside a local lake; next to the working directory for a lake on an object store."""
    root = Path(lake.uri) if lake.location.is_local else Path.cwd() / "metalake-demo-files"
    return DemoFiles(root)


@dataclass(frozen=True)
class Delivery:
    """One file of rows handed to metalake: which dataset it is a version of, and what is wrong with it."""

    dataset: str
    path: Path
    frame: pd.DataFrame
    defects: tuple[str, ...] = ()  # what is wrong with it; empty for a clean delivery


@dataclass(frozen=True)
class Deliveries:
    """The round's data: the clean biopsies, their broken re-delivery, the holdout and the wine analyses."""

    clean: Delivery
    broken: Delivery
    holdout: Delivery
    wine: Delivery


def prepare_deliveries(files: DemoFiles, round_number: int) -> Deliveries:
    """Load the scikit-learn datasets and write this round's deliveries (files that exist are kept)."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split

    biopsies = load_breast_cancer(as_frame=True).frame
    pool, holdout = train_test_split(
        biopsies, test_size=HOLDOUT_SHARE, random_state=0, stratify=biopsies[TARGET]
    )
    pool = pool.sample(frac=1.0, random_state=1).reset_index(drop=True)
    share = min(1.0, FIRST_SHARE + SHARE_STEP * (round_number - 1))
    clean = pool.head(math.ceil(share * len(pool))).reset_index(drop=True)
    broken, defects = degrade(clean, seed=round_number)
    folder = files.sources / BREAST_CANCER
    return Deliveries(
        clean=_delivery(BREAST_CANCER, folder / f"delivery-{len(clean)}-rows.parquet", clean),
        broken=_delivery(
            BREAST_CANCER, folder / f"delivery-round-{round_number}-broken.parquet", broken, defects
        ),
        holdout=_delivery(HOLDOUT, files.sources / f"{HOLDOUT}.parquet", holdout.reset_index(drop=True)),
        wine=_delivery(WINE, files.sources / f"{WINE}.parquet", load_wine(as_frame=True).frame),
    )


def _delivery(dataset: str, path: Path, frame: pd.DataFrame, defects: Sequence[str] = ()) -> Delivery:
    if not path.exists():  # rewriting would change the file's time, and metalake would check it again
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
    return Delivery(dataset, path, frame, tuple(defects))


def degrade(frame: pd.DataFrame, *, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """A copy with the faults of a careless export: a renamed column, nulls, a unit error, duplicates, label noise.

    The label noise is invisible to data-quality checks; the other faults are what the suite catches.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    broken = frame.copy()
    rows = len(broken)
    flipped = rng.choice(rows, size=int(FLIPPED_LABEL_SHARE * rows), replace=False)
    broken.loc[flipped, TARGET] = 1 - broken.loc[flipped, TARGET]
    for column in NULL_COLUMNS:
        broken.loc[rng.choice(rows, size=int(NULL_SHARE * rows), replace=False), column] = np.nan
    wrong_unit = rng.choice(rows, size=int(AREA_UNIT_ERROR_SHARE * rows), replace=False)
    broken.loc[wrong_unit, AREA_COLUMN] = broken.loc[wrong_unit, AREA_COLUMN] * AREA_UNIT_FACTOR
    duplicates = broken.iloc[rng.choice(rows, size=int(DUPLICATE_SHARE * rows), replace=False)]
    broken = pd.concat([broken, duplicates], ignore_index=True).rename(columns=dict([RENAMED_COLUMN]))
    defects = [
        f"column {RENAMED_COLUMN[0]!r} renamed to {RENAMED_COLUMN[1]!r}",
        f"{NULL_SHARE:.0%} nulls in {' and '.join(repr(c) for c in NULL_COLUMNS)}",
        f"{AREA_UNIT_ERROR_SHARE:.0%} of {AREA_COLUMN!r} in the wrong unit (x{AREA_UNIT_FACTOR:g})",
        f"{len(duplicates)} duplicated rows",
        f"{FLIPPED_LABEL_SHARE:.0%} of the labels flipped",
    ]
    return broken, defects


# -- suites ---------------------------------------------------------------------------------------------------


def write_suites(files: DemoFiles, deliveries: Deliveries) -> dict[str, Path]:
    """The Great Expectations suites (YAML lists of expectations), by dataset; the holdout shares the biopsies'."""
    biopsy_columns = list(deliveries.clean.frame.columns)
    biopsies: list[dict[str, Any]] = [
        {"expect_table_row_count_to_be_between": {"min_value": 150, "max_value": 5000}},
        {"expect_table_columns_to_match_set": {"column_set": biopsy_columns, "exact_match": True}},
        *({"expect_column_values_to_not_be_null": {"column": c}} for c in [*NULL_COLUMNS, TARGET]),
        {"expect_column_values_to_be_between": {"column": "mean radius", "min_value": 5, "max_value": 30}},
        {"expect_column_values_to_be_between": {"column": AREA_COLUMN, "min_value": 100, "max_value": 3000}},
        {"expect_column_values_to_be_in_set": {"column": TARGET, "value_set": [0, 1]}},
        {
            "expect_compound_columns_to_be_unique": {
                "column_list": biopsy_columns[:4],
                "severity": "warning",
            }
        },
        {
            "expect_column_mean_to_be_between": {
                "column": TARGET,
                "min_value": 0.5,
                "max_value": 0.75,
                "severity": "warning",
            }
        },
    ]
    wines: list[dict[str, Any]] = [
        {"expect_table_row_count_to_be_between": {"min_value": 100}},
        {"expect_column_values_to_not_be_null": {"column": "alcohol"}},
        {"expect_column_values_to_be_between": {"column": "alcohol", "min_value": 10, "max_value": 15.5}},
        {
            "expect_column_values_to_be_between": {
                "column": "color_intensity",
                "min_value": 1,
                "max_value": 14,
            }
        },
        {"expect_column_values_to_be_in_set": {"column": TARGET, "value_set": [0, 1, 2]}},
    ]
    paths = {}
    for dataset, suite in ((BREAST_CANCER, biopsies), (WINE, wines)):
        paths[dataset] = write_text_once(files.suite(dataset), _yaml(suite))
    paths[HOLDOUT] = paths[BREAST_CANCER]
    return paths


def _yaml(document: Any) -> str:
    import yaml

    return str(yaml.safe_dump(document, sort_keys=False, width=110))


def write_text_once(path: Path, text: str) -> Path:
    """Write `text` unless the file already holds it (so its time stays, and a re-run changes nothing)."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


# -- registering and validating -------------------------------------------------------------------------------


def register(lake: Lake, delivery: Delivery) -> DatasetVersion:
    """Register the delivery's file as a version of its dataset (the same rows again: the same version)."""
    return lake.datasets.register(
        delivery.dataset,
        str(delivery.path),
        description=DESCRIPTIONS[delivery.dataset],
        owner=OWNERS[delivery.dataset],
        tags={"source": "scikit-learn", "demo": "true"},
    )


def validate(lake: Lake, version: DatasetVersion, suite: Path) -> Validation:
    """Run the dataset's GX suite on that version; the outcome lands in dq_validations and dq_results."""
    return lake.quality.validate(version.name, version=version.version, suite=str(suite))


def describe_validation(validation: Validation) -> str:
    """One line: passed, or which expectations failed."""
    if validation.success:
        return f"passed: all {validation.evaluated} expectations met"
    failed = ", ".join(
        f"{row['expectation_type']}({row.get('column') or 'table'})" for row in validation.failed
    )
    return f"FAILED: {validation.unsuccessful} of {validation.evaluated} expectations failed: {failed}"


# -- lineage ------------------------------------------------------------------------------------------------


def etl_events(
    delivery: Delivery, version: int, *, finished: datetime, round_number: int
) -> list[dict[str, Any]]:
    """The OpenLineage events of the ETL run that produced a delivery: raw table -> job -> metalake dataset.

    The raw table's schema facet is the delivery's columns, so a renamed column upstream shows as a new raw
    dataset version with a breaking schema change; the output carries the metalake version it became. The run id
    and times depend only on the round, the version and when it was registered (`finished`), so a round cut short
    and run again sends the same events, which are stored once.
    """
    job_namespace, job_name, raw_namespace, raw_name = ETL_JOBS[delivery.dataset]
    end = finished
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"metalake-demo:{round_number}:{delivery.dataset}:{version}"))
    fields = [{"name": str(c), "type": _sql_type(delivery.frame[c].dtype)} for c in delivery.frame.columns]
    raw = {
        "namespace": raw_namespace,
        "name": raw_name,
        "facets": {"schema": _facet({"fields": fields}, "SchemaDatasetFacet")},
    }
    output = {
        "namespace": "metalake",
        "name": delivery.dataset,
        "facets": {"version": _facet({"datasetVersion": str(version)}, "DatasetVersionDatasetFacet")},
        "outputFacets": {
            "outputStatistics": _facet(
                {"rowCount": len(delivery.frame)}, "OutputStatisticsOutputDatasetFacet"
            )
        },
    }
    job = {"namespace": job_namespace, "name": job_name}
    return [
        _run_event("START", end - timedelta(seconds=40), run_id, job, [raw], [output]),
        _run_event("COMPLETE", end, run_id, job, [raw], [output]),
    ]


def _run_event(
    state: str,
    at: datetime,
    run_id: str,
    job: Mapping[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventType": state,
        "eventTime": at.isoformat(),
        "run": {"runId": run_id},
        "job": dict(job),
        "inputs": inputs,
        "outputs": outputs,
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def _facet(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{name}.json",
        **body,
    }


def _sql_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"f": "DOUBLE", "i": "BIGINT", "u": "BIGINT", "b": "BOOLEAN"}.get(kind, "VARCHAR")
