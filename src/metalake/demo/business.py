"""The demo's governance and business side: the policy, promotions, deployments and KPI observations.

Deployments and KPI observations are dated on a simulated calendar, since "did the model help?" needs days of
traffic: round 1 starts three weeks before today, after a baseline week, and each later round follows the one
before, taking a week or half the time left until now, whichever is shorter, so nothing is ever dated in the
future. Runs, registry events and validations carry the real time they were recorded.
KPI values are made from each model's real holdout metrics plus seeded noise, so the offline quality of a model,
and so the quality of its training data, shows in its KPIs.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.demo.data import DemoFiles, write_text_once
from metalake.errors import MetalakeError, PolicyViolation
from metalake.registry.governance import load_policy

if TYPE_CHECKING:
    from metalake.core.vocabulary import KpiDirection
    from metalake.demo.training import TrainedModel
    from metalake.deployments import Deployment
    from metalake.lake import Lake
    from metalake.registry.registry import ModelVersion

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
WEEK = timedelta(days=7)
FIRST_ROUND_BACK = 3 * WEEK  # round 1 starts this long before today's midnight, after a baseline week
OBSERVATIONS_PER_ROUND = 28  # every 6 hours in a round of a week
# A round's length is a multiple of this, so that its days (a seventh), hours (a day's 24th) and observation
# times fall on whole seconds; it is also the shortest round.
ROUND_GRAIN = timedelta(minutes=OBSERVATIONS_PER_ROUND)
IMPACT_WINDOW = WEEK  # what model_kpi_impact compares: the week before and after a deployment


@dataclass(frozen=True)
class KpiSpec:
    """A KPI the demo defines: its unit and direction, the model it follows, its owner and meaning."""

    unit: str
    direction: KpiDirection
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


def policy_document() -> str:
    """The demo's policy as the lake stores it (canonical JSON)."""
    import yaml

    return load_policy(yaml.safe_load(POLICY_YAML)).to_json()


def ensure_policy(lake: Lake, files: DemoFiles) -> bool:
    """Store the demo's policy in the lake unless it is already the one in force; True when it was stored.

    A different stored policy is never replaced (`demo.target.check_lake` refuses such a lake up front).
    """
    from metalake.demo.target import stored_policy_document
    from metalake.errors import NotADemoLake

    path = write_text_once(files.sources / "policy.yaml", POLICY_YAML)
    stored = stored_policy_document(lake)
    if stored is not None:
        if json.loads(stored) != json.loads(policy_document()):
            raise NotADemoLake(
                lake.uri, "it keeps a registry policy of its own, which the demo would replace"
            )
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
    with metalake.connect(lake.uri, actor=reviewer_of(lake.actor)) as reviewer:
        reviewer.registry.transition(
            version.model,
            version.version,
            "production",
            reason=f"reviewed the staging checks of round {round_number}",
            archive_others=True,
        )
        reviewer.registry.set_alias(version.model, "champion", version.version, reason="now in production")


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


@dataclass(frozen=True)
class Calendar:
    """A round's stretch of the simulated calendar: deployments from `start`, KPI observations in
    (`observed_from`, `end`], every `observe_every`; `day` is a seventh of the round (a day in a round of a week).
    """

    start: datetime
    length: timedelta
    observed_from: datetime

    @property
    def end(self) -> datetime:
        return self.start + self.length

    @property
    def day(self) -> timedelta:
        return self.length / 7

    @property
    def observe_every(self) -> timedelta:
        return self.length / OBSERVATIONS_PER_ROUND


def round_calendar(previous_end: datetime | None, now: datetime) -> Calendar:
    """Where this round falls: round 1 three weeks before today (after a baseline week without models), a later
    round right after the one before, a week long or half the time left until now (the hour), so it never
    reaches now and the next round still finds room. Only `now` moves it: the same history gives the same
    calendar all hour long."""
    if previous_end is None:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) - FIRST_ROUND_BACK
        return Calendar(start, WEEK, start - WEEK)
    room = now.replace(minute=0, second=0, microsecond=0) - previous_end
    length = min(WEEK, (room / 2) // ROUND_GRAIN * ROUND_GRAIN)
    if length < ROUND_GRAIN:
        raise MetalakeError(
            f"The demo's simulated calendar has no room left before now: the previous round ends "
            f"{previous_end:%Y-%m-%d %H:%M} UTC and a round needs at least {ROUND_GRAIN}. Run the demo again "
            "in an hour or two, or on a fresh lake."
        )
    return Calendar(previous_end, length, previous_end)


def previous_round_end(lake: Lake) -> datetime | None:
    """Where the last round's simulated stretch ends: its last KPI observation (None before round 1)."""
    import polars as pl

    observed = lake.read("kpi_observations", columns=["kpi", "observed_at"])
    latest = observed.filter(pl.col("kpi").is_in(list(KPIS))).get_column("observed_at").max()
    assert latest is None or isinstance(latest, datetime)
    return latest


# -- deployments ----------------------------------------------------------------------------------------------


CANARY_SHARE = 0.1
ROLES = {  # what each of a round's deployments is, as the report names it
    "staging": "staging",
    "wine-staging": "staging",
    "canary": f"canary {CANARY_SHARE:.0%}",
    "rollout": "rollout",
    "wine-rollout": "rollout",
    "shadow": "shadow test",
}


@dataclass(frozen=True)
class RoundDeployments:
    """What the round deployed: ids with their roles for the report, and the times the KPI generator needs."""

    roles: dict[str, str]  # deployment id -> its role: staging, canary 10%, rollout, shadow test
    canary_at: datetime
    rollout_at: datetime
    shadow_from: datetime
    shadow_until: datetime
    wine_at: datetime

    @property
    def ids(self) -> list[str]:
        return list(self.roles)


def deploy(
    lake: Lake,
    calendar: Calendar,
    tumor: ModelVersion,
    wine: ModelVersion,
    candidate: ModelVersion,
    round_number: int,
) -> RoundDeployments:
    """Staging, a canary, the full rollout, a shadow test of the refused candidate; the wine model's rollout."""
    sha = hashlib.sha1(f"metalake-demo-{round_number}".encode()).hexdigest()
    deployments = lake.deployments
    start, day = calendar.start, calendar.day
    roles: dict[str, str] = {}
    # A round cut short and run again (on the same calendar) keeps the deployments it already recorded: recording
    # them again would start new ones, as re-running a CI job after its deployment ended rolls it back.
    recorded = dict(
        lake.sql(
            "select ci_run_id, deployment_id from deployments where event_type = 'start' and ci_run_id like ?",
            [f"demo-{round_number}-%"],
        ).fetchall()
    )

    def record(
        version: ModelVersion, environment: str, at: datetime, step: str, **options: Any
    ) -> Deployment:
        if f"demo-{round_number}-{step}" in recorded:
            deployment = deployments.get(recorded[f"demo-{round_number}-{step}"])
            roles[deployment.deployment_id] = ROLES[step]
            return deployment
        deployment = deployments.record(
            version.model,
            version.version,
            environment,
            at=at,
            git_sha=sha,
            ci_run_id=f"demo-{round_number}-{step}",
            endpoint=f"https://{environment}.scoring.internal/{version.model}",
            **options,
        )
        roles[deployment.deployment_id] = ROLES[step]
        return deployment

    shadow_from, shadow_until = start + 4 * day, start + 6 * day
    record(tumor, "staging", start, "staging")
    record(wine, "staging", start + day / 24, "wine-staging")
    record(
        tumor,
        "production",
        start + day,
        "canary",
        replace_active=False,
        reason=f"canary: {CANARY_SHARE:.0%} of traffic",
    )
    record(tumor, "production", start + 2 * day, "rollout", reason="full rollout after the canary")
    record(wine, "production", start + 3 * day, "wine-rollout")
    shadow = record(candidate, "shadow", shadow_from, "shadow", reason="shadow test of the nightly retrain")
    if shadow.ended_at is None:
        deployments.end(
            shadow.deployment_id,
            at=shadow_until,
            reason="shadow test stopped: trained on data that failed validation",
        )
    return RoundDeployments(
        roles=roles,
        canary_at=start + day,
        rollout_at=start + 2 * day,
        shadow_from=shadow_from,
        shadow_until=shadow_until,
        wine_at=start + 3 * day,
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
    calendar: Calendar,
    deployed: RoundDeployments,
    tumor: Levels,
    wine_before: dict[str, float],
    wine_after: dict[str, float],
    round_number: int,
) -> list[dict[str, Any]]:
    """KPI observations over the round in production, and around the shadow test in the shadow environment.

    The shadow environment scores a mirror of production traffic. Nothing of the round is deployed there before
    the shadow test, yet it is observed (at production's levels) for the week before it: model_kpi_impact judges
    a deployment against what its environment measured the week before, and without those observations the
    shadow test, the story's "what the refused model would have done", would have nothing to compare with. After
    the test ends, the shadow environment is not observed. Seeded by the round.
    """
    rng = random.Random(round_number)
    noise = {"malignant_recall": 1.2, "false_alarm_rate": 0.8, "p95_latency_ms": 2.0, "lot_relabel_rate": 0.7}
    shadow_baseline_from = deployed.shadow_from - IMPACT_WINDOW
    rows: list[dict[str, Any]] = []
    count = round((calendar.end - calendar.observed_from) / calendar.observe_every)
    for index in range(1, count + 1):
        moment = calendar.observed_from + index * calendar.observe_every
        production = _tumor_level(tumor, moment, deployed)
        wine = wine_after if moment >= deployed.wine_at else wine_before
        observed = [("production", {**production, **wine})]
        if shadow_baseline_from <= moment < deployed.shadow_until:
            shadow = tumor.candidate if moment >= deployed.shadow_from else production
            observed.append(("shadow", shadow))
        for environment, levels in observed:
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
    return rows


def _tumor_level(levels: Levels, moment: datetime, deployed: RoundDeployments) -> dict[str, float]:
    if moment < deployed.canary_at:
        return levels.before
    if moment >= deployed.rollout_at:
        return levels.after
    return {
        kpi: (1 - CANARY_SHARE) * levels.before.get(kpi, value) + CANARY_SHARE * value
        for kpi, value in levels.after.items()
    }
