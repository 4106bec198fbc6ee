"""Governance policies: YAML gates on model stage transitions, checked against the lake's own facts.

A policy maps a target stage to the rules a version must satisfy to enter it:

    production:
      require_card_fields: [owner, intended_use]
      require_metrics: {val_auc: ">= 0.8"}        # the source run's last value
      require_passing_data_quality: true          # every input passed (run_input_quality view)
      require_distinct_approver: true             # the actor moving it did not register it
      require_previous_stage: staging             # it must come from this stage
      allow_override: false                       # may `override=True` (with a reason) force a refused move

Rules are plain functions of a `GateContext`; every failing rule is reported at once.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalake.core.vocabulary import STAGES
from metalake.errors import PolicyError, RuleFailure

_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class InputQuality:
    """One dataset version a run read and its verdict from the run_input_quality view: True when the latest
    validation of every suite passed, False when one failed, None when unknown (never validated, no version)."""

    dataset: str
    version: int | None
    success: bool | None
    failed_suites: int = 0
    failed_suite: str | None = None


@dataclass(frozen=True)
class GateContext:
    """What the rules look at: the version, its source run's metrics and inputs, and who is moving it."""

    model: str
    version: int
    current_stage: str
    card: Mapping[str, Any]
    run_id: str | None
    run_metrics: Mapping[str, float]
    inputs: list[InputQuality]
    registered_by: str
    actor: str


def _card_fields(fields: Any, context: GateContext) -> str | None:
    missing = [name for name in fields if context.card.get(name) in (None, "", [], {})]
    return f"the model card lacks {', '.join(missing)}" if missing else None


def _metrics(thresholds: Any, context: GateContext) -> str | None:
    problems = []
    for key, condition in thresholds.items():
        symbol, bound = _parse_comparison(key, condition)
        value = context.run_metrics.get(key)
        if value is None:
            run = f"run {context.run_id}" if context.run_id else "no source run"
            problems.append(f"{key} was never logged ({run})")
        elif not _OPERATORS[symbol](value, bound):
            problems.append(f"{key} is {value:g}, needs {symbol} {bound:g}")
    return "; ".join(problems) or None


def _data_quality(required: Any, context: GateContext) -> str | None:
    if not required:
        return None
    if not context.inputs:
        return "the source run logged no input datasets (run.log_input), so their quality is unknown"
    problems = []
    for item in context.inputs:
        label = f"{item.dataset} v{item.version}" if item.version is not None else item.dataset
        if item.success is None and item.version is None:
            problems.append(f"{label} was never validated (read without a version, so which data is unknown)")
        elif item.success is None:
            problems.append(f"{label} was never validated")
        elif not item.success:
            suite = repr(item.failed_suite) if item.failed_suite else "without a name"
            others = f" and {item.failed_suites - 1} more" if item.failed_suites > 1 else ""
            problems.append(f"{label} failed its latest validation (suite {suite}{others})")
    return "; ".join(problems) or None


def _distinct_approver(required: Any, context: GateContext) -> str | None:
    if required and context.actor == context.registered_by:
        return f"{context.actor!r} registered this version and cannot also approve it"
    return None


def _previous_stage(stage: Any, context: GateContext) -> str | None:
    if context.current_stage != stage:
        return f"the version is in {context.current_stage!r}, it must come from {stage!r}"
    return None


RULES: dict[str, Callable[[Any, GateContext], str | None]] = {
    "require_card_fields": _card_fields,
    "require_metrics": _metrics,
    "require_passing_data_quality": _data_quality,
    "require_distinct_approver": _distinct_approver,
    "require_previous_stage": _previous_stage,
}
SETTINGS = ("allow_override",)


@dataclass(frozen=True)
class Gate:
    """The rules for entering one stage."""

    stage: str
    rules: dict[str, Any] = field(default_factory=dict)
    allow_override: bool = False

    def check(self, context: GateContext) -> list[RuleFailure]:
        failures = []
        for name, argument in self.rules.items():
            reason = RULES[name](argument, context)
            if reason:
                failures.append(RuleFailure(name, reason))
        return failures


@dataclass(frozen=True)
class Policy:
    """Gates by target stage; a stage without a gate can be entered freely."""

    gates: dict[str, Gate] = field(default_factory=dict)
    source: str = "(in memory)"

    def gate(self, stage: str) -> Gate | None:
        return self.gates.get(stage)

    def to_json(self) -> str:
        document = {
            stage: {**gate.rules, **({"allow_override": True} if gate.allow_override else {})}
            for stage, gate in self.gates.items()
        }
        return json.dumps(document, sort_keys=True)


def load_policy(source: str | Path | Mapping[str, Any]) -> Policy:
    """A policy from a YAML file, YAML text or a mapping; anything unknown or malformed is refused by name."""
    if isinstance(source, Mapping):
        return parse_policy(source, "(mapping)")
    path = Path(source)
    if not path.is_file():
        raise PolicyError(f"Policy file {str(source)!r} does not exist.")
    import yaml

    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PolicyError(f"Policy file {path} is not valid YAML: {error}") from error
    return parse_policy(document, str(path))


def parse_policy(document: Any, source: str) -> Policy:
    if not isinstance(document, Mapping):
        raise PolicyError(f"{source}: a policy maps stages ({', '.join(STAGES)}) to their rules.")
    gates = {}
    for stage, rules in document.items():
        if stage not in STAGES:
            raise PolicyError(f"{source}: unknown stage {stage!r}; stages are {', '.join(STAGES)}.")
        if not isinstance(rules, Mapping):
            raise PolicyError(f"{source}: the rules for {stage!r} must be a mapping of rule: value.")
        unknown = sorted(set(rules) - set(RULES) - set(SETTINGS))
        if unknown:
            raise PolicyError(
                f"{source}: unknown rule(s) {unknown} for {stage!r}; known rules: {', '.join(sorted(RULES))}, "
                f"and the setting allow_override."
            )
        checked = {
            name: _check_argument(name, value, f"{source}: {stage}.{name}") for name, value in rules.items()
        }
        allow_override = bool(checked.pop("allow_override", False))
        gates[stage] = Gate(stage, checked, allow_override)
    return Policy(gates, source)


def _check_argument(name: str, value: Any, where: str) -> Any:
    if name == "require_card_fields":
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise PolicyError(f"{where} must be a list of card field names, e.g. [owner, intended_use].")
    elif name == "require_metrics":
        if not isinstance(value, Mapping) or not value:
            raise PolicyError(f'{where} must map metric names to conditions, e.g. {{val_auc: ">= 0.8"}}.')
        for key, condition in value.items():
            _parse_comparison(str(key), condition, where)
    elif name in ("require_passing_data_quality", "require_distinct_approver", "allow_override"):
        if not isinstance(value, bool):
            raise PolicyError(f"{where} must be true or false, not {value!r}.")
    elif name == "require_previous_stage" and value not in STAGES:
        raise PolicyError(f"{where} must be one of {', '.join(STAGES)}, not {value!r}.")
    return value


def _parse_comparison(key: str, condition: Any, where: str = "policy") -> tuple[str, float]:
    if isinstance(condition, int | float) and not isinstance(condition, bool):
        return ">=", float(condition)
    match = _COMPARISON.match(str(condition))
    if not match:
        raise PolicyError(
            f"{where}: condition {condition!r} on {key!r} is not a comparison like '>= 0.8' "
            "(operators: >=, >, <=, <, ==, !=)."
        )
    return match.group(1), float(match.group(2))
