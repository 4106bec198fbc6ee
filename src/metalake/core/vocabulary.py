"""The one home of every closed vocabulary: model stages, run statuses, severities, event kinds, ...

Each is a `Literal` (for type checkers and editors) with its values derived by `get_args`, so a word is written
once. The table specs (tables/*.yaml) repeat them as `isin` checks; `TABLE_VOCABULARIES` ties each such column
to its vocabulary and a test holds the two equal.
"""

from __future__ import annotations

from typing import Literal, get_args

Stage = Literal["none", "staging", "production", "archived"]
STAGES: tuple[Stage, ...] = get_args(Stage)

RunStatus = Literal["scheduled", "running", "finished", "failed", "killed"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
FINAL_RUN_STATUSES: frozenset[RunStatus] = frozenset({"finished", "failed", "killed"})

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)

AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = get_args(AlertStatus)

DeploymentEventType = Literal["start", "end"]
DEPLOYMENT_EVENT_TYPES: tuple[DeploymentEventType, ...] = get_args(DeploymentEventType)

# Deployments to any of these environments count as production (unlabeled KPI observations count for them).
DEFAULT_PRODUCTION_ENVIRONMENTS: tuple[str, ...] = ("production", "prod", "prd", "live")

QualityEngine = Literal["great_expectations", "pandera", "openlineage"]
QUALITY_ENGINES: tuple[QualityEngine, ...] = get_args(QualityEngine)

KpiDirection = Literal["higher_is_better", "lower_is_better"]
KPI_DIRECTIONS: tuple[KpiDirection, ...] = get_args(KpiDirection)

ModelEventType = Literal[
    "registered",
    "stage_transition",
    "alias_set",
    "alias_deleted",
    "tag_set",
    "tag_deleted",
    "description_set",
    "deleted",
    "renamed",
]
MODEL_EVENT_TYPES: tuple[ModelEventType, ...] = get_args(ModelEventType)

LoggedModelStatus = Literal["pending", "ready", "failed"]
LOGGED_MODEL_STATUSES: tuple[LoggedModelStatus, ...] = get_args(LoggedModelStatus)

LineageEventKind = Literal["run", "dataset", "job"]
LINEAGE_EVENT_KINDS: tuple[LineageEventKind, ...] = get_args(LineageEventKind)

# OpenLineage run states, as the spec spells them.
RunState = Literal["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)

LineageEdgeType = Literal["input", "output", "produced_by", "deployed_as", "derived_from", "column"]
LINEAGE_EDGE_TYPES: tuple[LineageEdgeType, ...] = get_args(LineageEdgeType)

# Column marks in table specs: what a column reveals, and how a reader without the right to see it gets it.
Sensitivity = Literal["pii"]
SENSITIVITIES: tuple[Sensitivity, ...] = get_args(Sensitivity)

MaskKind = Literal["hash", "redact", "partial", "null"]
MASK_KINDS: tuple[MaskKind, ...] = get_args(MaskKind)
STRING_ONLY_MASKS: frozenset[MaskKind] = frozenset({"hash", "redact", "partial"})  # they yield text

# Access control: who (principals), what they may do (privileges, ordered by what each implies), on what
# (securable kinds, `lake` holding them all), and the events of the access tables.
Privilege = Literal["read", "write", "manage", "unmask", "admin"]
PRIVILEGES: tuple[Privilege, ...] = get_args(Privilege)
# A grant of the key privilege also allows these actions on the same securable (admin: on everything).
PRIVILEGE_IMPLIES: dict[Privilege, frozenset[Privilege]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "manage": frozenset({"read", "write", "manage"}),
    "unmask": frozenset({"unmask"}),
    "admin": frozenset(PRIVILEGES),
}

SecurableKind = Literal["table", "view", "experiment", "model", "dataset", "kpi", "namespace"]
SECURABLE_KINDS: tuple[SecurableKind, ...] = get_args(SecurableKind)

PrincipalKind = Literal["user", "service", "group"]
PRINCIPAL_KINDS: tuple[PrincipalKind, ...] = get_args(PrincipalKind)

PrincipalEvent = Literal["created", "disabled", "enabled"]
PRINCIPAL_EVENTS: tuple[PrincipalEvent, ...] = get_args(PrincipalEvent)

MembershipEvent = Literal["added", "removed"]
MEMBERSHIP_EVENTS: tuple[MembershipEvent, ...] = get_args(MembershipEvent)

TokenEvent = Literal["issued", "revoked"]
TOKEN_EVENTS: tuple[TokenEvent, ...] = get_args(TokenEvent)

GrantEvent = Literal["granted", "revoked"]
GRANT_EVENTS: tuple[GrantEvent, ...] = get_args(GrantEvent)

AccessDecision = Literal["allowed", "denied"]
ACCESS_DECISIONS: tuple[AccessDecision, ...] = get_args(AccessDecision)

# (table, column) -> the vocabulary its `isin` check must list.
TABLE_VOCABULARIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("access_log", "action"): PRIVILEGES,
    ("access_log", "decision"): ACCESS_DECISIONS,
    ("grants", "event"): GRANT_EVENTS,
    ("grants", "privilege"): PRIVILEGES,
    ("group_members", "event"): MEMBERSHIP_EVENTS,
    ("principals", "event"): PRINCIPAL_EVENTS,
    ("principals", "kind"): PRINCIPAL_KINDS,
    ("tokens", "event"): TOKEN_EVENTS,
    ("alerts", "severity"): SEVERITIES,
    ("alerts", "status"): ALERT_STATUSES,
    ("deployments", "event_type"): DEPLOYMENT_EVENT_TYPES,
    ("dq_results", "severity"): SEVERITIES,
    ("dq_validations", "engine"): QUALITY_ENGINES,
    ("kpis", "direction"): KPI_DIRECTIONS,
    ("lineage_edges", "edge_type"): LINEAGE_EDGE_TYPES,
    ("lineage_events", "event_kind"): LINEAGE_EVENT_KINDS,
    ("lineage_events", "event_type"): RUN_STATES,
    ("logged_models", "status"): LOGGED_MODEL_STATUSES,
    ("model_events", "event_type"): MODEL_EVENT_TYPES,
    ("model_events", "stage"): STAGES,
    ("pipeline_runs", "state"): RUN_STATES,
    ("runs", "status"): RUN_STATUSES,
}
