"""`experiments/search`: MLflow's experiment filter (`name LIKE 'churn%' AND tags.team = 'ml'`), order and pages.

Experiments are few (a lake holds hundreds, not millions), so the filter is evaluated on the listed
experiments in Python; the grammar is MLflow's: conditions joined by AND, on `name`, `tags.KEY`,
`creation_time` and `last_update_time`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalake.errors import MlflowError
from metalake.server.mlflow.entities import experiment_out, millis, page_offset, page_token
from metalake.server.mlflow.protocol import Call

if TYPE_CHECKING:
    from metalake.tracking.experiments import Experiment

MAX_EXPERIMENTS_PER_PAGE = 50_000
VIEW_TYPES = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}
EXAMPLE = "name LIKE 'churn%' AND tags.team = 'ml'"

_CONDITION = re.compile(
    r"""\s*(?P<field>(?:attributes?\.|attr\.)?(?:name|creation_time|last_update_time)
          |tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/]+))
        \s*(?P<op>!=|<>|<=|>=|=|<|>|\bNOT\s+LIKE\b|\bNOT\s+ILIKE\b|\bLIKE\b|\bILIKE\b)
        \s*(?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"|-?\d+)\s*""",
    re.VERBOSE | re.IGNORECASE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
Test = Callable[["Experiment"], bool]


def search_experiments(call: Call) -> dict[str, Any]:
    view = call.optional_text("view_type") or "ACTIVE_ONLY"
    if view not in VIEW_TYPES:
        raise MlflowError(f"Invalid view_type {view!r}: use one of {', '.join(VIEW_TYPES)}.")
    size = call.integer("max_results", 1000, minimum=1, maximum=MAX_EXPERIMENTS_PER_PAGE) or 1000
    offset = page_offset(call.optional_text("page_token"))
    tests = parse_filter(call.optional_text("filter"))
    found = [
        experiment
        for experiment in call.lake.experiments.list(lifecycle=VIEW_TYPES[view])  # type: ignore[arg-type]
        if call.may_read(experiment.name) and all(test(experiment) for test in tests)
    ]
    for field, descending in reversed(parse_order(call.texts("order_by"))):
        found.sort(key=_sort_key(field), reverse=descending)
    page = found[offset : offset + size]
    answer: dict[str, Any] = {"experiments": [experiment_out(experiment) for experiment in page]}
    if len(found) > offset + size:
        answer["next_page_token"] = page_token(offset + size)
    return answer


def parse_filter(text: str | None) -> list[Test]:
    if not text or not text.strip():
        return []
    tests: list[Test] = []
    for part in _AND.split(text.strip()):
        match = _CONDITION.fullmatch(part)
        if match is None:
            raise MlflowError(f"Invalid experiment filter {part.strip()!r}. Write conditions like: {EXAMPLE}")
        tests.append(_test(match["field"], match["op"], match["value"]))
    return tests


def _test(field: str, operator: str, literal: str) -> Test:
    operator = " ".join(operator.upper().split())
    name = field.split(".", 1)[1] if field.lower().startswith(("attr", "tag")) else field
    is_tag = field.lower().startswith("tag")
    if literal[0] in "'\"":
        value: str | int = literal[1:-1].replace(literal[0] * 2, literal[0])
    else:
        value = int(literal)
    name = name.strip('`"') if is_tag else name.lower()
    numeric = name in ("creation_time", "last_update_time") and not is_tag
    if numeric != isinstance(value, int) or (numeric and "LIKE" in operator):
        kind = "a number" if numeric else "a quoted string"
        raise MlflowError(
            f"Invalid experiment filter on {field!r}: compare it with {kind}. Example: {EXAMPLE}"
        )

    def read(experiment: Experiment) -> Any:
        if is_tag:
            return experiment.tags.get(name)
        if name == "name":
            return experiment.name
        return millis(experiment.created_at if name == "creation_time" else experiment.updated_at)

    def test(experiment: Experiment) -> bool:
        actual = read(experiment)
        if actual is None:
            return False
        return _compare(actual, operator, value)

    return test


def _compare(actual: Any, operator: str, value: Any) -> bool:
    if operator in ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"):
        pattern = _like_pattern(str(value), case_sensitive="ILIKE" not in operator)
        matched = pattern.fullmatch(str(actual)) is not None
        return matched != operator.startswith("NOT")
    result: bool = {
        "=": actual == value,
        "!=": actual != value,
        "<>": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }[operator]
    return result


def _like_pattern(pattern: str, *, case_sensitive: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


def parse_order(items: list[str]) -> list[tuple[str, bool]]:
    """MLflow's default: newest first (creation_time DESC), then experiment_id."""
    orders: list[tuple[str, bool]] = []
    for item in items:
        words = item.split()
        field = words[0].lower().removeprefix("attributes.").removeprefix("attribute.") if words else ""
        direction = words[1].upper() if len(words) > 1 else "ASC"
        if (
            len(words) > 2
            or field not in ("name", "experiment_id", "creation_time", "last_update_time")
            or (direction not in ("ASC", "DESC"))
        ):
            raise MlflowError(
                f"Invalid order_by clause {item!r}: use name, experiment_id, creation_time or last_update_time, "
                "then ASC or DESC."
            )
        orders.append((field, direction == "DESC"))
    if not orders:
        orders.append(("creation_time", True))
    if all(field != "experiment_id" for field, _ in orders):
        orders.append(("experiment_id", False))
    return orders


def _sort_key(field: str) -> Callable[[Experiment], Any]:
    def key(experiment: Experiment) -> Any:
        if field == "name":
            return experiment.name
        if field == "experiment_id":
            return (len(experiment.experiment_id), experiment.experiment_id)
        moment = experiment.created_at if field == "creation_time" else experiment.updated_at
        return millis(moment) or 0

    return key
