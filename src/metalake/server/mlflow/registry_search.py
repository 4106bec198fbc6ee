"""The filter and order_by of MLflow's registry searches (registered-models/search, model-versions/search),
applied to entities already built: `name LIKE 'churn%'`, `run_id = '...'`, `tags.team = 'x'`, joined by AND."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metalake.errors import MlflowError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<op>!=|<>|>=|<=|=|>|<|\(|\)|,)
      | (?P<word>`[^`]+`|[A-Za-z_]\w*(?:\.(?:\w+|`[^`]+`))*|-?\d+(?:\.\d+)?)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"LIKE", "ILIKE", "IN", "NOT"}
Getter = Callable[[Mapping[str, Any], str], Any]


@dataclass(frozen=True)
class Clause:
    field: str  # "name", "run_id", ... or "tags.<key>"
    op: str  # =, !=, LIKE, ILIKE, IN, NOT IN, <, <=, >, >=
    value: Any  # a string or number; a tuple for IN


def parse_filter(text: str | None, fields: Sequence[str]) -> list[Clause]:
    """The clauses of an MLflow registry filter over `fields` (and `tags.<key>`); INVALID_PARAMETER_VALUE
    naming what is allowed otherwise."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    position = 0

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise _bad(text, fields, "it ends too early")
        token = tokens[position]
        position += 1
        return token

    while True:
        kind, field = take()
        if kind != "word":
            raise _bad(text, fields, f"{field!r} is not a field")
        field = _field(field, text, fields)
        kind, op = take()
        op = op.upper()
        if op == "NOT":
            kind, following = take()
            if following.upper() not in ("IN", "LIKE", "ILIKE"):
                raise _bad(text, fields, f"NOT {following} is not an operator")
            op = f"NOT {following.upper()}"
        if op in ("IN", "NOT IN"):
            kind, opening = take()
            if opening != "(":
                raise _bad(text, fields, "IN needs a parenthesized list")
            values = []
            while True:
                values.append(_value(take(), text, fields))
                kind, separator = take()
                if separator == ")":
                    break
                if separator != ",":
                    raise _bad(text, fields, "the IN list is not comma separated")
            clauses.append(Clause(field, op, tuple(values)))
        elif op in ("=", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"):
            clauses.append(Clause(field, "!=" if op == "<>" else op, _value(take(), text, fields)))
        else:
            raise _bad(text, fields, f"{op!r} is not an operator")
        if position == len(tokens):
            return clauses
        kind, joiner = take()
        if joiner.upper() != "AND":
            raise _bad(text, fields, "clauses are joined by AND only")


def matches(entity: Mapping[str, Any], clauses: Sequence[Clause], value_of: Getter) -> bool:
    return all(_holds(value_of(entity, clause.field), clause) for clause in clauses)


def order_key(order_by: Sequence[str], fields: Sequence[str]) -> list[tuple[str, bool]]:
    """`["name ASC", "version_number DESC"]` -> [(field, descending)]; INVALID_PARAMETER_VALUE for others."""
    keys = []
    for item in order_by:
        parts = item.split()
        if not parts or len(parts) > 2 or parts[0] not in fields:
            raise MlflowError(
                f"Invalid order_by clause {item!r}: order by {', '.join(fields)}, optionally ASC or DESC."
            )
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise MlflowError(f"Invalid order_by clause {item!r}: the direction is ASC or DESC.")
        keys.append((parts[0], direction == "DESC"))
    return keys


def sort_entities(
    entities: list[dict[str, Any]], keys: Sequence[tuple[str, bool]], value_of: Getter
) -> list[dict[str, Any]]:
    """Sorted by the keys, the last key first (a stable sort per key)."""
    ordered = list(entities)
    for field, descending in reversed(keys):
        ordered.sort(key=lambda entity: _sortable(value_of(entity, field)), reverse=descending)
    return ordered


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return (1, int(value))
    return (1, value)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = _TOKEN.match(text, position)
        if found is None:
            raise MlflowError(f"Invalid filter {text!r}: cannot read it from {text[position:]!r}.")
        kind = found.lastgroup or "word"
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


def _field(word: str, text: str, fields: Sequence[str]) -> str:
    word = word.strip("`")
    for prefix in ("tags.", "tag."):
        if word.startswith(prefix):
            return "tags." + word[len(prefix) :].strip("`")
    if word not in fields:
        raise _bad(text, fields, f"{word!r} is not a field")
    return word


def _value(token: tuple[str, str], text: str, fields: Sequence[str]) -> Any:
    kind, raw = token
    if kind == "string":
        quote = raw[0]
        return raw[1:-1].replace(quote * 2, quote)
    if kind == "word" and re.fullmatch(r"-?\d+(?:\.\d+)?", raw):
        return float(raw) if "." in raw else int(raw)
    raise _bad(text, fields, f"{raw} is not a quoted string or a number")


def _bad(text: str, fields: Sequence[str], why: str) -> MlflowError:
    return MlflowError(
        f"Invalid filter {text!r}: {why}. Compare {', '.join(fields)} or tags.<key> with =, !=, LIKE, "
        "ILIKE or IN (...), values in quotes, clauses joined by AND."
    )


def _like(pattern: str, flags: int = 0) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), flags | re.DOTALL)


def _holds(value: Any, clause: Clause) -> bool:
    op, wanted = clause.op, clause.value
    if op in ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"):
        if value is None:
            return False
        found = _like(str(wanted), re.IGNORECASE if "ILIKE" in op else 0).fullmatch(str(value)) is not None
        return found != op.startswith("NOT")
    if op in ("IN", "NOT IN"):
        inside = value is not None and str(value) in {str(item) for item in wanted}
        return inside != (op == "NOT IN")
    if value is None:
        return op == "!="
    if isinstance(wanted, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
    else:
        value = str(value)
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return comparisons[op](value, wanted)
