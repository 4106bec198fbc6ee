"""The demo's governance and business side: the policy, promotions, deployments and KPI observations.

Deployments and KPI observations are dated on a simulated calendar (a week per round), since "did the model
help?" needs days of traffic; runs, registry events and validations carry the real time they were recorded.
KPI values are made from each model's real holdout metrics plus seeded noise, so the offline quality of a model,
and so the quality of its training data, shows in its KPIs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.demo.data import DemoFiles, write_text_once
from metalake.errors import MetalakeError, PolicyViolation

if TYPE_CHECKING:
    from metalake.demo.training import TrainedModel
    from metalake.deployments import Deployment
    from metalake.kpis import Direction
    from metalake.lake import Lake
    from metalake.registry import ModelVersion

TUMOR_MODEL = "tumor-classifier"
WINE_MODEL = "wine-cultivar"
MIN_VAL_AUC = 0.97
REVIEWER = "release-manager"
POLICY_YAML = f"""\
# Gates for entering a stage (metalake models policy show). Stored in the lake: every client enforces them.
staging:
  require_passing_data_quality: true       # every dataset version the run read passed its latest validation
  require_metrics: {{val_auc: ">= {MIN_VAL_AUC}"}}
production:
  require_previous_stage: staging
  require_distinct_approver: true          # whoever registered the version cannot also approve it
  require_card_fields: [owner, intended_use]
  require_passing_data_quality: true
  require_metrics: {{val_auc: ">= {MIN_VAL_AUC}"}}
"""
CARDS = {
    TUMOR_MODEL: {
        "owner": "pathology-ml",
        "intended_use": "Order the biopsy review queue: flag likely malignant cases for urgent review.",
        "limitations": "Trained on the Wisconsin diagnostic data; a pathologist reviews every case.",
    },
    WINE_MODEL: {
        "owner": "winery-ml",
        "intended_use": "Suggest the cultivar of a lot from its lab analysis before labelling.",
        "limitations": "Three cultivars of one region only.",
    },
}
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
OBSERVATION_EVERY = timedelta(hours=6)


@dataclass(frozen=True)
class KpiSpec:
    """A KPI the demo defines: its unit and direction, the model it follows, its owner and meaning."""

    unit: str
    direction: Direction
    model: str
    owner: str
    description: str


KPIS = {
    "malignant_recall": KpiSpec(
        "%",
        "higher_is_better",
        TUMOR_MODEL,
        "clinic-ops",
        "Share of malignant biopsies flagged for urgent review (confirmed by pathology).",
    ),
    "false_alarm_rate": KpiSpec(
        "%",
        "lower_is_better",
        TUMOR_MODEL,
        "clinic-ops",
        "Share of benign biopsies flagged for urgent review.",
    ),
    "p95_latency_ms": KpiSpec(
        "ms",
        "lower_is_better",
        TUMOR_MODEL,
        "platform",
        "95th percentile response time of the biopsy scoring service.",
    ),
    "lot_relabel_rate": KpiSpec(
        "%",
        "lower_is_better",
        WINE_MODEL,
        "winery-ops",
        "Share of wine lots whose suggested cultivar the lab had to correct.",
    ),
}
# What serving costs per model kind (simulated: the demo measures no service).
LATENCY_MS = {"sgd-logreg": 14.0, "mlp": 19.0, "gradient-boosting": 31.0, "random-forest": 42.0}
# Before any model served: a manual triage queue, and lab labelling by hand.
MANUAL_TRIAGE = {"malignant_recall": 88.0, "false_alarm_rate": 12.0}
MANUAL_LABELLING = {"lot_relabel_rate": 9.0}
SOURCES = {TUMOR_MODEL: "clinic dashboard (simulated)", WINE_MODEL: "winery lab log (simulated)"}


# -- policy and registry ----------------------------------------------------------------------------------------


def ensure_policy(lake: Lake, files: DemoFiles) -> bool:
    """Store the demo's policy in the lake unless it is already the one in force; True when it was stored."""
    from metalake.governance import load_policy

    path = write_text_once(files.sources / "policy.yaml", POLICY_YAML)
    if lake.registry.policy.to_json() == load_policy(path).to_json():
        return False
    lake.registry.use_policy(path, persist=True)
    return True


def register(lake: Lake, model: str, trained: TrainedModel, round_number: int) -> ModelVersion:
    """Register a trained candidate as the model's next version, with its card."""
    inputs = ", ".join(f"{ref.dataset} v{ref.version}" for ref in trained.inputs if ref.context == "training")
    return lake.registry.register(
        model,
        run_id=trained.run_id,
        artifact_uri=trained.artifact.resolve().as_uri(),
        flavor="sklearn",
        card={**CARDS[model], "trained_on": inputs, "demo_round": round_number},
        description=f"{trained.kind} from run {trained.name} (round {round_number})",
    )


def promote(lake: Lake, version: ModelVersion, round_number: int) -> None:
    """staging, then production (archiving the version it replaces), and the `champion` alias.

    The move to production is a reviewer's (the policy wants a second pair of eyes), so it goes through a lake
    opened as that reviewer: the registry records who approved it.
    """
    import metalake

    lake.registry.transition(
        version.model, version.version, "staging", reason=f"best candidate of round {round_number}"
    )
    reviewer = metalake.connect(lake.uri, actor=reviewer_of(lake.actor))
    reviewer.registry.transition(
        version.model,
        version.version,
        "production",
        reason=f"reviewed the staging checks of round {round_number}",
        archive_others=True,
    )
    reviewer.registry.set_alias(version.model, "champion", version.version, reason="now in production")
    reviewer.close()


def reviewer_of(actor: str) -> str:
    """Who approves production moves: anyone but the actor who registered the version."""
    return REVIEWER if actor != REVIEWER else f"{REVIEWER}-deputy"


def try_staging(lake: Lake, version: ModelVersion) -> PolicyViolation | None:
    """Ask the policy to let a version into staging: None if it did, else the refusal (nothing written)."""
    try:
        lake.registry.transition(version.model, version.version, "staging", reason="nightly retrain")
    except PolicyViolation as refusal:
        return refusal
    return None


# -- the calendar ---------------------------------------------------------------------------------------------


def round_start(lake: Lake, now: datetime) -> tuple[datetime, datetime]:
    """The start of this round's simulated week, and the start of the KPI observations it adds.

    Round 1 starts two weeks before today (after a baseline week of manual triage); each later round a week
    after the one before, or a week before today when the demo last ran long ago.
    """
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    staged = lake.deployments.list("staging", model=TUMOR_MODEL)
    if staged.is_empty():
        start = today - 2 * WEEK
        return start, start - WEEK
    latest = staged.get_column("started_at").max()
    assert isinstance(latest, datetime)
    observed_until = latest + WEEK
    return max(observed_until, today - WEEK), observed_until


# -- deployments ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundDeployments:
    """What the round deployed: ids for the report, and the times the KPI generator needs."""

    ids: list[str]
    canary_at: datetime
    rollout_at: datetime
    shadow_from: datetime
    shadow_until: datetime
    wine_at: datetime


def deploy(
    lake: Lake,
    start: datetime,
    tumor: ModelVersion,
    wine: ModelVersion,
    candidate: ModelVersion,
    round_number: int,
) -> RoundDeployments:
    """Staging, a canary, the full rollout, a shadow test of the refused candidate; the wine model's rollout."""
    sha = hashlib.sha1(f"metalake-demo-{round_number}".encode()).hexdigest()
    deployments = lake.deployments

    def record(
        version: ModelVersion, environment: str, at: datetime, step: str, **options: Any
    ) -> Deployment:
        return deployments.record(
            version.model,
            version.version,
            environment,
            at=at,
            git_sha=sha,
            ci_run_id=f"demo-{round_number}-{step}",
            endpoint=f"https://{environment}.scoring.internal/{version.model}",
            **options,
        )

    shadow_from, shadow_until = start + 4 * DAY, start + 6 * DAY
    started = [
        record(tumor, "staging", start, "staging"),
        record(wine, "staging", start + timedelta(hours=1), "wine-staging"),
        record(
            tumor, "production", start + DAY, "canary", replace_active=False, reason="canary: 10% of traffic"
        ),
        record(tumor, "production", start + 2 * DAY, "rollout", reason="full rollout after the canary"),
        record(wine, "production", start + 3 * DAY, "wine-rollout"),
        record(candidate, "shadow", shadow_from, "shadow", reason="shadow test of the nightly retrain"),
    ]
    deployments.end(
        started[-1].deployment_id,
        at=shadow_until,
        reason="shadow test stopped: trained on data that failed validation",
    )
    return RoundDeployments(
        ids=[d.deployment_id for d in started],
        canary_at=start + DAY,
        rollout_at=start + 2 * DAY,
        shadow_from=shadow_from,
        shadow_until=shadow_until,
        wine_at=start + 3 * DAY,
    )


# -- KPIs -------------------------------------------------------------------------------------------------------


def define_kpis(lake: Lake) -> None:
    """Define the KPIs (defining one exactly as it is writes nothing)."""
    for name, spec in KPIS.items():
        lake.kpis.define(
            name,
            unit=spec.unit,
            direction=spec.direction,
            description=spec.description,
            owner=spec.owner,
            models=[spec.model],
        )


def kpi_levels(model: str, kind: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """The KPI levels a model version reaches in production, from its real holdout metrics.

    The clinic sees the tumor model's recall and false alarms; the lab corrects the wine model's wrong
    suggestions (and a few lots for other reasons).
    """
    if model == TUMOR_MODEL:
        return {
            "malignant_recall": 100 * metrics["val_malignant_recall"],
            "false_alarm_rate": 100 * metrics["val_false_alarm_rate"],
            "p95_latency_ms": LATENCY_MS[kind],
        }
    return {"lot_relabel_rate": 1.5 + 100 * (1 - metrics["val_accuracy"])}


def serving_levels(lake: Lake, model: str) -> dict[str, float] | None:
    """The KPI levels of the version now in production (from its run's metrics), None when none serves."""
    try:
        version = lake.registry.get(model, "production")
    except MetalakeError:
        return None
    if version.run_id is None:
        return None
    details = lake.runs.get(version.run_id)
    last = {key: float(summary["last_value"]) for key, summary in details.metrics.items()}
    return kpi_levels(model, details.params["model_type"], last)


@dataclass(frozen=True)
class Levels:
    """KPI levels over time in one environment: before, during the canary, after; the shadow candidate."""

    before: dict[str, float]
    after: dict[str, float]
    candidate: dict[str, float]


def observations(
    *,
    since: datetime,
    until: datetime,
    deployed: RoundDeployments,
    tumor: Levels,
    wine_before: dict[str, float],
    wine_after: dict[str, float],
    round_number: int,
) -> list[dict[str, Any]]:
    """KPI observations every 6 hours in production and in the shadow environment, seeded by the round."""
    rng = random.Random(round_number)
    noise = {"malignant_recall": 1.2, "false_alarm_rate": 0.8, "p95_latency_ms": 2.0, "lot_relabel_rate": 0.7}
    rows: list[dict[str, Any]] = []
    moment = since
    while moment < until:
        production = _tumor_level(tumor, moment, deployed)
        shadow = tumor.candidate if deployed.shadow_from <= moment < deployed.shadow_until else production
        wine = wine_after if moment >= deployed.wine_at else wine_before
        for environment, levels in (("production", {**production, **wine}), ("shadow", shadow)):
            for kpi, level in levels.items():
                value = level + rng.gauss(0, noise[kpi])
                if KPIS[kpi].unit == "%":
                    value = min(max(value, 0.0), 100.0)
                rows.append(
                    {
                        "kpi": kpi,
                        "value": round(value, 3),
                        "observed_at": moment,
                        "environment": environment,
                        "source": SOURCES[KPIS[kpi].model],
                    }
                )
        moment += OBSERVATION_EVERY
    return rows


def _tumor_level(levels: Levels, moment: datetime, deployed: RoundDeployments) -> dict[str, float]:
    if moment < deployed.canary_at:
        return levels.before
    if moment >= deployed.rollout_at:
        return levels.after
    canary = 0.1
    return {
        kpi: (1 - canary) * levels.before.get(kpi, value) + canary * value
        for kpi, value in levels.after.items()
    }
