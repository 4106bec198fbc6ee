"""`metalake demo`: one round of a realistic lake, written through the public Lake API under a progress display.

A round: deliveries of real scikit-learn data are registered and validated with Great Expectations, real models
are trained with per-iteration metrics, the best are promoted under a stored policy, then a broken delivery
arrives, fails validation, and the model retrained on it is refused by the policy; deployments and KPI
observations follow on a simulated calendar, ETL runs are recorded as OpenLineage events, and a snapshot
`demo-round-N` pins the result. Each call adds a round, so the lake grows a history.

scikit-learn and Great Expectations load inside the steps that need them (they take seconds to import).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metalake.demo import business, data, report, target
from metalake.demo.target import SNAPSHOT_PREFIX
from metalake.demo.training import (
    TUMOR_EXPERIMENT,
    TUMOR_KINDS,
    WINE_EXPERIMENT,
    WINE_KINDS,
    InputRef,
    TrainedModel,
    artifact_path,
    ensure_experiments,
    finished_runs,
    reuse,
    train,
)
from metalake.errors import MissingExtraError, SnapshotNotFound

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from metalake.datasets.datasets import DatasetVersion
    from metalake.lake import Lake
    from metalake.registry.registry import ModelVersion

DEFAULT_DEMO_LAKE = "./demo-lake"
DEMO_PACKAGES = {"sklearn": "scikit-learn", "great_expectations": "great_expectations"}
STEPS = 9


@dataclass(frozen=True)
class DemoRound:
    """What one demo round wrote: enough for a caller (or a test) to check it."""

    lake_uri: str
    round: int
    snapshot: str
    dataset_versions: dict[
        str, int
    ]  # "breast_cancer", "breast_cancer:broken", "breast_cancer_holdout", "wine"
    run_ids: list[str]
    production: dict[str, int]  # model -> the version promoted to production
    refused: tuple[str, int, list[str]] | None  # model, version, the policy rules it broke
    deployments: dict[str, str]  # deployment id -> its role: staging, canary 10%, rollout, shadow test
    kpi_observations: int
    seconds: float

    @property
    def deployment_ids(self) -> list[str]:
        return list(self.deployments)


def check_extras() -> None:
    """The demo trains scikit-learn models and runs Great Expectations: say which extra to install if missing."""
    from importlib.util import find_spec

    missing = [package for module, package in DEMO_PACKAGES.items() if find_spec(module) is None]
    if missing:
        raise MissingExtraError(
            f"metalake demo needs {' and '.join(missing)}, which are not installed. "
            "Install the demo extra: pip install 'metalake[demo]'."
        )


def run_demo(lake_uri: str, console: Console, *, actor: str | None = None) -> DemoRound:
    """Add one demo round to the lake at `lake_uri`, then print what the lake now answers.

    The lake must be new or empty, or one an earlier demo built (`demo.target`); anything else is refused
    before a row is written. A round cut short can be run again: it keeps the runs it finished (see `_Round`).
    """
    from rich.markup import escape

    import metalake

    check_extras()
    target.check_folder(lake_uri)
    began = time.perf_counter()
    lake = metalake.connect(lake_uri, actor=actor)
    try:
        target.check_lake(lake, business.policy_document())
        number, snapshot = next_round(lake)
        console.print(f"[bold]metalake demo[/], round {number}, on {escape(lake.uri)}", soft_wrap=True)
        with _progress(console, number) as steps:
            result = _write_round(lake, steps, number, snapshot)
        seconds = time.perf_counter() - began
        report.show(lake, console, lake_uri, result)
        console.print(f"\nRound {number} written in {seconds:.1f} s.")
    finally:
        lake.close()
    return replace(result, seconds=seconds)


def next_round(lake: Lake) -> tuple[int, str]:
    """The next round's number and snapshot name (one snapshot per finished round)."""
    taken = set(lake.snapshots().get_column("snapshot").to_list())
    number = 1 + sum(name.startswith(SNAPSHOT_PREFIX) for name in taken)
    while f"{SNAPSHOT_PREFIX}{number}" in taken:
        number += 1
    return number, f"{SNAPSHOT_PREFIX}{number}"


class _Steps:
    """The progress bar and the lines printed above it."""

    def __init__(self, progress: Progress, task: TaskID):
        self.progress, self.task = progress, task
        self.started = False

    def start(self, description: str) -> None:
        if self.started:
            self.progress.advance(self.task)
        self.started = True
        self.progress.update(self.task, description=description)
        self.say(f"[bold]{description}[/]")

    def say(self, line: str) -> None:
        self.progress.console.print(line, soft_wrap=True, highlight=False)


@contextmanager
def _progress(console: Console, number: int) -> Iterator[_Steps]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"Starting round {number}", total=STEPS)
        yield _Steps(progress, task)
        progress.update(task, completed=STEPS)


@dataclass
class _Round:
    """One round being written: the lake, the progress display, the demo's files and the round's number.

    `finished` holds the runs of this round that an earlier attempt finished before it was cut short (a round
    without its snapshot is written again): they are kept rather than trained again. The other records of such
    an attempt (lineage events, deployments, KPI observations) are written again.
    """

    lake: Lake
    steps: _Steps
    files: data.DemoFiles
    number: int
    finished: dict[tuple[str, str], str]

    def register(self, delivery: data.Delivery) -> DatasetVersion:
        version = data.register(self.lake, delivery)
        news = "new version" if version.created else "unchanged content: the same version"
        self.steps.say(f"  {version.name} v{version.version}: {version.row_count} rows ({news})")
        return version

    def validate(self, version: DatasetVersion, suite: Path) -> None:
        """Validate a version, unless it was validated before (unchanged data, or a round run again)."""
        if not version.created:
            earlier = self.lake.quality.validations(version.name)
            earlier = earlier.filter(earlier["version"] == version.version)
            if not earlier.is_empty():
                outcome = "passed" if earlier.row(0, named=True)["success"] else "failed"
                self.steps.say(f"  {version.name} v{version.version}: validated before ({outcome})")
                return
        validation = data.validate(self.lake, version, suite)
        style = "green" if validation.success else "red"
        self.steps.say(
            f"  {version.name} v{version.version}: [{style}]{data.describe_validation(validation)}[/]"
        )

    def train(
        self,
        experiment: str,
        kind: str,
        name: str,
        frames: tuple[pd.DataFrame, pd.DataFrame],
        inputs: list[InputRef],
    ) -> TrainedModel:
        """Train on frames[0], score every step on frames[1]; the first input names the training data."""
        run_name = f"r{self.number}-{name}"
        earlier = self.finished.get((experiment, run_name))
        artifact = artifact_path(self.files.artifacts, experiment, run_name)
        trained = None
        if earlier is not None:
            trained = reuse(
                self.lake, earlier, experiment=experiment, kind=kind, artifact=artifact, inputs=inputs
            )
        if trained is not None:
            self.steps.say(f"  {experiment}/{run_name}: finished before this round was cut short, kept")
            return trained
        trained = train(
            self.lake,
            experiment=experiment,
            kind=kind,
            name=run_name,
            train_frame=frames[0],
            val_frame=frames[1],
            features=[c for c in frames[1].columns if c != data.TARGET],
            inputs=inputs,
            tags={"round": str(self.number), "trained_on": f"{inputs[0].dataset} v{inputs[0].version}"},
            artifacts=self.files.artifacts,
            seed=self.number,
        )
        self.steps.say(
            f"  {experiment}/{trained.name}: val_auc {trained.val_auc:.4f}, "
            f"val_accuracy {trained.metrics['val_accuracy']:.3f}"
        )
        return trained


def _write_round(lake: Lake, steps: _Steps, number: int, snapshot: str) -> DemoRound:
    from rich.markup import escape

    files = data.demo_files(lake)
    ensure_experiments(lake)  # first: it marks the lake as the demo's, should this round be cut short
    this = _Round(lake, steps, files, number, finished_runs(lake, f"r{number}-"))

    steps.start("Loading scikit-learn datasets as deliveries")
    deliveries = data.prepare_deliveries(files, number)
    suites = data.write_suites(files, deliveries)
    steps.say(f"  files in {escape(str(files.sources))}")

    steps.start("Registering datasets, with the ETL runs that produced them (OpenLineage)")
    clean, holdout, wine = (this.register(d) for d in (deliveries.clean, deliveries.holdout, deliveries.wine))
    lake.lineage.ingest(
        [
            event
            for delivery, registered in ((deliveries.clean, clean), (deliveries.wine, wine))
            for event in data.etl_events(
                delivery, registered.version, finished=registered_at(registered), round_number=number
            )
        ]
    )

    steps.start("Validating with Great Expectations")
    for dataset_version in (clean, holdout, wine):
        this.validate(dataset_version, suites[dataset_version.name])

    # What serves now (before this round promotes anything): the KPI levels before this round's deployments.
    previous_tumor = business.serving_levels(lake, business.TUMOR_MODEL) or business.MANUAL_TRIAGE
    previous_wine = business.serving_levels(lake, business.WINE_MODEL) or business.MANUAL_LABELLING
    validation_input = InputRef(holdout.name, holdout.version, "validation")
    biopsies = (deliveries.clean.frame, deliveries.holdout.frame)

    steps.start(f"Training {len(TUMOR_KINDS)} tumor classifiers on {clean.name} v{clean.version}")
    tumor_inputs = [InputRef(clean.name, clean.version, "training"), validation_input]
    tumor_runs = [this.train(TUMOR_EXPERIMENT, kind, kind, biopsies, tumor_inputs) for kind in TUMOR_KINDS]

    steps.start(f"Training {len(WINE_KINDS)} wine classifiers on {wine.name} v{wine.version}")
    wine_frames = _split(deliveries.wine.frame)
    wine_inputs = [InputRef(wine.name, wine.version, "training")]
    wine_runs = [this.train(WINE_EXPERIMENT, kind, kind, wine_frames, wine_inputs) for kind in WINE_KINDS]

    steps.start("Registering the best models and promoting them under the policy")
    if business.ensure_policy(lake, files):
        steps.say(f"  stored the policy {escape(str(files.sources / 'policy.yaml'))} in the lake")
    best_tumor = max(tumor_runs, key=lambda trained: trained.val_auc)
    best_wine = max(wine_runs, key=lambda trained: trained.val_auc)
    promoted: dict[str, ModelVersion] = {}
    for model, best in ((business.TUMOR_MODEL, best_tumor), (business.WINE_MODEL, best_wine)):
        version = business.register(lake, model, best, number)
        business.promote(lake, version, number)
        promoted[model] = version
        steps.say(
            f"  {model} v{version.version} ({best.kind}, val_auc {best.val_auc:.4f}): "
            f"none -> staging -> production (approved by {business.reviewer_of(lake.actor)}), alias champion"
        )

    steps.start("A broken delivery arrives")
    broken = this.register(deliveries.broken)
    lake.lineage.ingest(
        data.etl_events(
            deliveries.broken, broken.version, finished=registered_at(broken), round_number=number
        )
    )
    for defect in deliveries.broken.defects:
        steps.say(f"  [dim]- {defect}[/]")
    this.validate(broken, suites[broken.name])
    retrain = this.train(
        TUMOR_EXPERIMENT,
        best_tumor.kind,
        "nightly-retrain",
        (deliveries.broken.frame, deliveries.holdout.frame),
        [InputRef(broken.name, broken.version, "training"), validation_input],
    )
    candidate = business.register(lake, business.TUMOR_MODEL, retrain, number)
    refusal = business.try_staging(lake, candidate)
    if refusal is None:
        steps.say(
            f"  [yellow]{candidate.model} v{candidate.version} entered staging: the policy let it in[/]"
        )
    else:
        report.refusal(steps.progress.console, refusal)

    steps.start("Deploying on the simulated calendar, observing KPIs")
    # The round before ends where its snapshot says, so a round cut short and run again gets the same calendar
    # (its deployments and KPI observations, under the same keys, are then written once).
    previous_end = None
    if number > 1:
        try:
            previous_end = business.previous_round_end(lake.as_of(f"{SNAPSHOT_PREFIX}{number - 1}"))
        except SnapshotNotFound:  # a lake whose snapshots were renamed: the stretch ends at its last KPI
            previous_end = business.previous_round_end(lake)
    calendar = business.round_calendar(previous_end, datetime.now(UTC))
    deployed = business.deploy(
        lake, calendar, promoted[business.TUMOR_MODEL], promoted[business.WINE_MODEL], candidate, number
    )
    business.define_kpis(lake)
    rows = business.observations(
        calendar=calendar,
        deployed=deployed,
        tumor=business.Levels(
            before=previous_tumor,
            after=business.kpi_levels(business.TUMOR_MODEL, best_tumor.kind, best_tumor.metrics),
            candidate=business.kpi_levels(business.TUMOR_MODEL, retrain.kind, retrain.metrics),
        ),
        wine_before=previous_wine,
        wine_after=business.kpi_levels(business.WINE_MODEL, best_wine.kind, best_wine.metrics),
        round_number=number,
    )
    lake.kpis.observe_many(
        rows,
        reason=f"demo round {number}: simulated KPI observations",
        idempotency_key=f"metalake-demo:round-{number}:kpi-observations",
    )
    steps.say(
        f"  {len(deployed.ids)} deployments from {calendar.start:%Y-%m-%d} (staging, canary, rollout, shadow "
        f"test); {len(rows)} KPI observations from {calendar.observed_from:%Y-%m-%d} to {calendar.end:%Y-%m-%d}"
    )

    steps.start(f"Pinning snapshot {snapshot}")
    lake.snapshot(snapshot, description=f"metalake demo, after round {number}")
    return DemoRound(
        lake_uri=lake.uri,
        round=number,
        snapshot=snapshot,
        dataset_versions={
            clean.name: clean.version,
            f"{broken.name}:broken": broken.version,
            holdout.name: holdout.version,
            wine.name: wine.version,
        },
        run_ids=[trained.run_id for trained in [*tumor_runs, *wine_runs, retrain]],
        production={model: version.version for model, version in promoted.items()},
        refused=None if refusal is None else (refusal.model, refusal.version, refusal.rules),
        deployments=deployed.roles,
        kpi_observations=len(rows),
        seconds=0.0,
    )


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wine analyses have no separate holdout: keep 30% aside, the same rows in every round."""
    from sklearn.model_selection import train_test_split

    train_part, val_part = train_test_split(
        frame, test_size=data.HOLDOUT_SHARE, random_state=0, stratify=frame[data.TARGET]
    )
    return train_part, val_part


def registered_at(version: DatasetVersion) -> datetime:
    """When a dataset version was registered (the same on every later call that finds it)."""
    return version.recorded_at or datetime.now(UTC)
