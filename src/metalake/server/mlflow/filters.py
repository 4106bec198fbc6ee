"""MLflow `runs/search` filters and orderings, read as MLflow reads them, planned as a `lake.runs.search` call.

MLflow's language (mlflow.utils.search_utils.SearchUtils) is a list of conditions joined by AND only:
`metrics.acc > 0.9 and params.model = 'xgb' and attributes.status = 'FINISHED'`. Each condition becomes a
condition of metalake's own search language (metalake.tracking.expressions) with MLflow's meaning; keys and texts
are quoted here, so no text of a request can change the expression's structure.

What MLflow's SQL store (`_search_runs`) answers, and how it is mirrored:

- a condition on a param, tag or metric joins the runs that have the key: a run without it never matches, `!=`
  included (the lake's missing value, NULL, compares the same way); a key that no searched run has matches no
  run at all, so the plan says `matches_nothing` (only IS NULL on it holds for every run);
- a NaN metric fails every comparison but `!=`;
- `start_time`, `end_time` (and `created`) are epoch milliseconds; the lake keeps microseconds and the MLflow
  endpoints show them truncated (`epoch_millis`), so a number is turned into the timestamp bounds that give the
  same answer;
- a run logged without a user shows the user_id "" (MLflow's runs always have one), and is searched so;
- `status` is MLflow's upper-case word; a `lost` run (no heartbeat) is RUNNING to MLflow;
- the order is the requested items, nulls last either way, then `start_time desc` unless asked, then `run_id`.

Known differences, which the lake's language cannot express:

- a NaN metric sorts first in a descending order (MLflow puts it after the numbers, before the missing values);
- ordering by status puts `lost` runs before `running` ones, where MLflow sees two RUNNING runs tie;
- runs whose start times fall in the same millisecond are ordered by the lake's microseconds, where MLflow sees a
  tie and orders them by run_id.

LIKE is case-sensitive, as in MLflow's in-memory evaluation and on PostgreSQL (SQLite's LIKE ignores case).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from metalake.errors import QueryError
from metalake.tracking.expressions import expression_error

__all__ = ["RunSearchPlan", "epoch_millis", "plan_run_search"]

Kind = Literal["metric", "parameter", "tag", "attribute"]
MlflowStatus = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
MLFLOW_STATUSES: tuple[MlflowStatus, ...] = get_args(MlflowStatus)
LAKE_STATUSES: dict[MlflowStatus, tuple[str, ...]] = {
    "RUNNING": ("running", "lost"),
    "SCHEDULED": ("scheduled",),
    "FINISHED": ("finished",),
    "FAILED": ("failed",),
    "KILLED": ("killed",),
}

KIND_PREFIXES: dict[str, Kind] = {
    "metric": "metric", "metrics": "metric",
    "parameter": "parameter", "parameters": "parameter", "param": "parameter", "params": "parameter",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
}  # fmt: skip
LAKE_PREFIXES: dict[Kind, str] = {"metric": "metrics", "parameter": "params", "tag": "tags"}
# MLflow's searchable run attributes (RunInfo's, with its aliases) -> the lake's run column
ATTRIBUTE_COLUMNS: dict[str, str | None] = {
    "run_id": "run_id",
    "run_name": "name", "run name": "name", "Run name": "name", "Run Name": "name",
    "status": "status",
    "user_id": "user",
    "start_time": "start_time", "created": "start_time", "Created": "start_time",
    "end_time": "end_time",
    "artifact_uri": None,  # runs in the lake have no artifact URI
}  # fmt: skip
SHOWN_ATTRIBUTES = "run_id, run_name, status, user_id, start_time (or created), end_time"
ORDER_ATTRIBUTES = frozenset(ATTRIBUTE_COLUMNS) - {"run name", "Run name", "Run Name"}  # as MLflow allows
MISSING_USER = ""  # MLflow's RunInfo needs a user_id: a run logged without one shows this
TIME_COLUMNS = frozenset({"start_time", "end_time"})

METRIC_COMPARATORS = ("=", "!=", ">", ">=", "<", "<=")
TEXT_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL")  # params and tags
ATTRIBUTE_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")  # IN lists: run_id only
EXAMPLE = "metrics.acc > 0.9 and params.model = 'xgb' and attributes.status = 'FINISHED'"
ORDER_EXAMPLE = "metrics.acc DESC"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
_LAST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)

# sqlparse's patterns for what MLflow reads: quoted keys and values are only trimmed of their quotes, never
# unescaped (`'it''s'` is the text it''s to MLflow too)
_TOKEN = re.compile(
    r"""(?:
        (?P<number>-?\d+(?:\.\d+)?[eE]-?\d+(?![\w])|-?(?:\d+\.\d*|\.\d+)(?![\w])|-?\d+(?![\w]))
      | (?P<string>'(?:''|\\'|[^'])*')
      | (?P<name>(?:\w+|`(?:``|[^`])*`|"(?:""|\\"|[^"])*")(?:\.(?:\w+|`(?:``|[^`])*`|"(?:""|\\"|[^"])*"))*)
      | (?P<operator><=|>=|!=|<>|==|=|<|>|\(|\)|,)
    )""",
    re.VERBOSE,
)
_DOUBLE_QUOTED = re.compile(r'"(?:""|\\"|[^"])*"')  # a text value MLflow also accepts (sqlparse's symbol)
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "like", "ilike", "asc", "desc"})


@dataclass(frozen=True)
class RunSearchPlan:
    """What `lake.runs.search` takes to answer an MLflow `runs/search` as MLflow would."""

    where: str | None  # a metalake expression for lake.runs.search(where=...), or None
    order_by: list[str]  # metalake order items, the tie-breakers included
    matches_nothing: bool  # MLflow answers no runs: no need to search


def plan_run_search(
    filter_string: str | None, order_by: Sequence[str] | None, *, known_columns: Collection[str]
) -> RunSearchPlan:
    """The `lake.runs.search` arguments for an MLflow filter and order_by over runs whose wide table has
    `known_columns` (`params.K`, `tags.K`, `metrics.K` and the run attributes); QueryError says what MLflow
    refuses (or the lake cannot answer) and shows a valid example."""
    columns = frozenset(known_columns)
    conditions = _Reader(filter_string or "").conditions()
    orders = plan_order(order_by or (), columns)
    parts: list[str] = []
    for condition in conditions:
        translated = condition.translate(filter_string or "", columns)
        if translated is None:
            return RunSearchPlan(where=None, order_by=orders, matches_nothing=True)
        parts.extend(translated)
    return RunSearchPlan(where=" and ".join(parts) or None, order_by=orders, matches_nothing=False)


def epoch_millis(moment: datetime) -> int:
    """A lake timestamp as MLflow shows it: whole milliseconds since the epoch, truncated."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# -- reading a filter -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, operator, end
    text: str
    position: int

    @property
    def keyword(self) -> str | None:
        lowered = self.text.lower()
        return lowered if self.kind == "name" and lowered in _KEYWORDS else None


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            tokens.append(_Token("end", "", len(text)))
            return tokens
        match = _TOKEN.match(text, position)
        if match is None:
            problem = (
                "this quote is never closed."
                if text[position] in "'\"`"
                else f"{text[position]!r} has no place in an MLflow filter."
            )
            raise expression_error(text, position, problem, f"For example: {EXAMPLE}")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), position))
        position = match.end()


def _trim(text: str, quote: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == quote and text[-1] == quote else text


def _identifier(token: _Token, text: str, attributes: Collection[str]) -> tuple[Kind, str]:
    """An identifier as MLflow's `_get_identifier` reads it: split at the first dot into a kind and a key."""
    entity, dot, rest = token.text.partition(".")
    if not dot:
        key = _trim(_trim(_trim(entity, '"'), "'"), "`")
        if key not in attributes:
            raise expression_error(
                text,
                token.position,
                f"{key!r} is not a run attribute MLflow searches ({SHOWN_ATTRIBUTES}).",
                "Name params, tags and metrics with their prefix: params.model, tags.team, metrics.acc.",
            )
        return "attribute", key
    kind = KIND_PREFIXES.get(_trim(entity, "`"))
    if kind is None:
        if _trim(entity, "`") in ("dataset", "datasets"):
            raise expression_error(
                text, token.position, "dataset filters are not supported by metalake's MLflow endpoints."
            )
        raise expression_error(
            text,
            token.position,
            f"invalid entity type {entity!r}; use metrics., params., tags. or attributes.",
            f"For example: {EXAMPLE}",
        )
    key = _trim(_trim(_trim(rest, "'"), '"'), "`")
    if kind == "attribute" and key not in attributes:
        raise expression_error(
            text, token.position, f"invalid attribute key {key!r}; MLflow's are {SHOWN_ATTRIBUTES}."
        )
    return kind, key


class _Reader:
    """MLflow's filter grammar: conditions separated by AND (stray ANDs are ignored, as MLflow does)."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def error(self, token: _Token, problem: str, hint: str = f"For example: {EXAMPLE}") -> QueryError:
        return expression_error(self.text, token.position, problem, hint)

    def conditions(self) -> list[_Condition]:
        found = []
        while self.current.kind != "end":
            if self.current.keyword == "and":
                self.advance()
                continue
            if self.current.keyword == "or":
                raise self.error(self.current, "MLflow filters join conditions with AND only, not OR.")
            found.append(self.condition())
        return found

    def condition(self) -> _Condition:
        token = self.current
        if token.kind != "name" or token.keyword is not None:
            raise self.error(
                token, f"a condition must start with a key such as metrics.acc, not {token.text!r}."
            )
        self.advance()
        kind, key = _identifier(token, self.text, ATTRIBUTE_COLUMNS)
        comparator = self.comparator()
        if comparator in ("IS NULL", "IS NOT NULL"):
            return _Condition(kind, key, comparator, None, token.position).checked(self.text)
        value = self.current
        if comparator in ("IN", "NOT IN"):
            return _Condition(kind, key, comparator, self.in_list(), token.position).checked(self.text)
        self.advance()
        if value.kind == "number":
            number: int | float = int(value.text) if re.fullmatch(r"-?\d+", value.text) else float(value.text)
            return _Condition(kind, key, comparator, number, token.position, value).checked(self.text)
        if value.kind == "string" or _DOUBLE_QUOTED.fullmatch(value.text):
            quoted = _trim(_trim(value.text, "'"), '"')
            return _Condition(kind, key, comparator, quoted, token.position, value).checked(self.text)
        raise self.error(value, f"a value must follow {comparator}: a number, or a text in quotes ('xgb').")

    def comparator(self) -> str:
        token = self.advance()
        if token.kind == "operator" and token.text not in "(),":
            return token.text
        if token.keyword in ("like", "ilike", "in"):
            return token.text.upper()
        if token.keyword == "not" and self.current.keyword == "in":
            self.advance()
            return "NOT IN"
        if token.keyword == "is":
            negated = self.current.keyword == "not"
            if negated:
                self.advance()
            if self.current.keyword == "null":
                self.advance()
                return "IS NOT NULL" if negated else "IS NULL"
        raise self.error(token, f"expected a comparison (=, !=, >, LIKE, IS NULL, ...), not {token.text!r}.")

    def in_list(self) -> tuple[str, ...]:
        opening = self.advance()
        if opening.text != "(":
            raise self.error(
                opening, "IN needs a list of quoted texts in parentheses: run_id IN ('a1', 'b2')."
            )
        values: list[str] = []
        while True:
            token = self.advance()
            if token.text == ")" and token.kind == "operator":
                break
            if token.kind != "string" and not _DOUBLE_QUOTED.fullmatch(token.text):
                raise self.error(token, "IN lists hold quoted texts only: run_id IN ('a1', 'b2').")
            values.append(_trim(_trim(token.text, "'"), '"'))
            separator = self.advance()
            if separator.text == ")" and separator.kind == "operator":
                break
            if separator.text != ",":
                raise self.error(separator, "expected ',' or ')' in the IN list.")
        if not values:
            raise self.error(opening, "the IN list is empty; give at least one quoted text.")
        return tuple(values)


# -- one condition --------------------------------------------------------------------------------------------

Value = int | float | str | tuple[str, ...] | None


@dataclass(frozen=True)
class _Condition:
    kind: Kind
    key: str
    comparator: str  # upper case
    value: Value
    position: int
    value_token: _Token | None = None

    def checked(self, text: str) -> _Condition:
        """The condition if MLflow accepts its comparator and value for its kind; else MLflow's error."""
        allowed, example = {
            "metric": (METRIC_COMPARATORS, "metrics.acc >= 0.9"),
            "parameter": (TEXT_COMPARATORS, "params.model = 'xgb'"),
            "tag": (TEXT_COMPARATORS, "tags.team LIKE 'growth%'"),
            "attribute": (ATTRIBUTE_COMPARATORS, "attributes.status = 'FINISHED'"),
        }[self.kind]
        column = ATTRIBUTE_COLUMNS.get(self.key) if self.kind == "attribute" else None
        if column in TIME_COLUMNS:
            allowed, example = METRIC_COMPARATORS, "attributes.start_time >= 1700000000000"
        if self.comparator not in allowed:
            kinds = {"metric": "metrics", "parameter": "params", "tag": "tags", "attribute": "run attributes"}
            what = self.name if self.kind == "attribute" else kinds[self.kind]
            raise self.error(
                text, f"{self.comparator} is not allowed on {what}; use one of {', '.join(allowed)}.", example
            )
        numeric = self.kind == "metric" or column in TIME_COLUMNS
        if numeric and not isinstance(self.value, int | float):
            raise self.error(text, f"{self.name} is a number: compare it with a number.", example)
        if not numeric and isinstance(self.value, int | float):
            raise self.error(text, f"{self.name} is a text: quote the value.", example)
        if isinstance(self.value, tuple) and self.key != "run_id":
            raise self.error(
                text, "only run_id can be compared with a list (IN, NOT IN).", "run_id IN ('a1', 'b2')"
            )
        if self.kind == "attribute" and column is None:
            raise self.error(
                text,
                f"metalake runs have no {self.key}, so it cannot be searched.",
                "run_id, run_name, status, user_id, start_time, end_time, params, tags and metrics can.",
            )
        return self

    @property
    def name(self) -> str:
        prefix = {"metric": "metrics.", "parameter": "params.", "tag": "tags.", "attribute": ""}[self.kind]
        return prefix + self.key

    def error(self, text: str, problem: str, example: str) -> QueryError:
        at = self.value_token.position if self.value_token is not None else self.position
        hint = example if example.endswith(".") else f"For example: {example}"
        return expression_error(text, at, problem, hint)

    def translate(self, text: str, columns: frozenset[str]) -> list[str] | None:
        """The metalake conditions that hold where MLflow's does (none: always), or None when no run can match."""
        if self.kind == "attribute":
            column = ATTRIBUTE_COLUMNS[self.key] or ""
            if column == "status":
                return _status_condition(self.comparator, self.value)
            if column in TIME_COLUMNS:
                assert isinstance(self.value, int | float)
                return _time_conditions(column, self.comparator, self.value)
            condition = f"{column} {_operator(self.comparator, self.value)}"
            if column == "user" and _holds_for_missing_user(self.comparator, self.value):
                return [f"({condition} or user is null)"]
            return [condition]
        column = f"{LAKE_PREFIXES[self.kind]}.{self.key}"
        if column not in columns:  # no searched run has the key: MLflow's inner join keeps no run
            return [] if self.comparator == "IS NULL" else None
        field = _field(LAKE_PREFIXES[self.kind], self.key, text, self.position)
        if self.kind != "metric":
            return [f"{field} {_operator(self.comparator, self.value)}"]
        assert isinstance(self.value, int | float)
        condition = f"{field} {self.comparator} {_number(float(self.value))}"
        # the lake's NaN is greater than any number; MLflow's NaN matches no comparison but !=
        return [condition, f"{field} <= 1e999"] if self.comparator in (">", ">=") else [condition]


def _operator(comparator: str, value: Value) -> str:
    """The right-hand side of a text condition: the comparator and its quoted value(s)."""
    if isinstance(value, tuple):
        return f"{comparator} ({', '.join(_text(item) for item in value)})"
    if value is None:
        return comparator
    return f"{comparator} {_text(str(value))}"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _number(value: float) -> str:
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


def _field(prefix: str, key: str, text: str, position: int) -> str:
    """A quoted metalake field; its key is written verbatim between quotes it cannot contain."""
    for quote in ("`", '"'):
        if quote not in key:
            return f"{prefix}.{quote}{key}{quote}"
    raise expression_error(
        text, position, f'the key {key!r} holds both ` and " and cannot be searched in metalake.'
    )


def _like(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """A LIKE pattern as MLflow's in-memory evaluation reads it."""
    regex = re.escape(pattern).replace("%", ".*").replace("_", ".")
    regex = ("" if pattern.startswith("%") else "^") + regex + ("" if pattern.endswith("%") else "$")
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def _holds_for_missing_user(comparator: str, value: Value) -> bool:
    """Whether the condition holds for MISSING_USER, the user_id MLflow shows for a run logged without a user."""
    assert isinstance(value, str | tuple)
    if comparator in ("LIKE", "ILIKE"):
        assert isinstance(value, str)
        return _like(value, ignore_case=comparator == "ILIKE").match(MISSING_USER) is not None
    return (value == MISSING_USER) == (comparator == "=")


def _status_condition(comparator: str, value: Value) -> list[str] | None:
    """The lake's statuses whose MLflow word satisfies the condition, as one IN list."""
    assert isinstance(value, str)
    if comparator in ("LIKE", "ILIKE"):
        pattern = _like(value, ignore_case=comparator == "ILIKE")
        words = [status for status in MLFLOW_STATUSES if pattern.match(status)]
    else:
        words = [status for status in MLFLOW_STATUSES if (status == value) == (comparator == "=")]
    statuses = [lake for status in words for lake in LAKE_STATUSES[status]]
    return [f"status in ({', '.join(_text(status) for status in statuses)})"] if statuses else None


def _time_conditions(column: str, comparator: str, value: int | float) -> list[str] | None:
    """MLflow compares whole milliseconds (`epoch_millis`): the bounds of the lake's timestamps that do so."""
    if math.isinf(value):  # every timestamp is above -inf and below +inf
        above = value < 0
        holds = {">": above, ">=": above, "<": not above, "<=": not above, "=": False, "!=": True}[comparator]
        return [f"{column} is not null"] if holds else None
    floor, ceiling = math.floor(value), math.ceil(value)
    if comparator == "=":
        if floor != value:
            return None
        at_least, before = _at_least(column, floor), _before(column, floor + 1)
        return None if at_least is None or before is None else [at_least, before]
    if comparator == "!=":
        if floor != value or not _FIRST_MS <= floor <= _LAST_MS:
            return [f"{column} is not null"]
        if floor + 1 > _LAST_MS:
            return [f"{column} < {_timestamp(floor)}"]
        return [f"({column} < {_timestamp(floor)} or {column} >= {_timestamp(floor + 1)})"]
    bound = {">": floor + 1, ">=": ceiling, "<": ceiling, "<=": floor + 1}[comparator]
    condition = _at_least(column, bound) if comparator in (">", ">=") else _before(column, bound)
    return None if condition is None else [condition]


def _at_least(column: str, millis: int) -> str | None:
    if millis <= _FIRST_MS:
        return f"{column} is not null"
    return None if millis > _LAST_MS else f"{column} >= {_timestamp(millis)}"


def _before(column: str, millis: int) -> str | None:
    if millis <= _FIRST_MS:
        return None
    return f"{column} is not null" if millis > _LAST_MS else f"{column} < {_timestamp(millis)}"


def _timestamp(millis: int) -> str:
    return _text((_EPOCH + timedelta(milliseconds=millis)).isoformat(sep=" ", timespec="microseconds"))


# -- ordering -------------------------------------------------------------------------------------------------


def plan_order(order_by: Sequence[str], columns: frozenset[str]) -> list[str]:
    """MLflow's order_by as metalake order items, then MLflow's tie-breakers: `start_time desc` (unless ordered
    by start time already) and `run_id asc`. A key no searched run has orders nothing (every run ties): left out."""
    items: list[str] = []
    seen: set[tuple[Kind, str]] = set()
    for clause in order_by:
        kind, key, direction = _order_clause(clause)
        column = ATTRIBUTE_COLUMNS[key] if kind == "attribute" else f"{LAKE_PREFIXES[kind]}.{key}"
        identity: tuple[Kind, str] = (kind, column or key)
        if identity in seen:
            raise QueryError(
                f"order_by names {clause.strip()!r} twice (MLflow refuses duplicate fields): {list(order_by)}."
            )
        seen.add(identity)
        if kind == "attribute":
            if column is None:
                raise QueryError(
                    f"Cannot order by {key}: metalake runs have no {key}. For example: {ORDER_EXAMPLE}"
                )
            items.append(f"{column} {direction}")
        elif column in columns:
            items.append(f"{_field(LAKE_PREFIXES[kind], key, clause, 0)} {direction}")
    if ("attribute", "start_time") not in seen:
        items.append("start_time desc")
    items.append("run_id asc")
    return items


def _order_clause(clause: str) -> tuple[Kind, str, str]:
    tokens = [token for token in _tokenize(clause) if token.kind != "end"]
    direction = "asc"
    if len(tokens) == 2 and tokens[1].keyword in ("asc", "desc"):
        direction = tokens.pop().text.lower()
    if len(tokens) != 1 or tokens[0].kind != "name":
        raise QueryError(
            f"Invalid order_by clause {clause!r}: give one key and an optional ASC or DESC, e.g. {ORDER_EXAMPLE!r}."
        )
    kind, key = _identifier(tokens[0], clause, ORDER_ATTRIBUTES)
    return kind, key, direction
