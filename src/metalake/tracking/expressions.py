"""Run-search expressions (`lake.runs.search(where=...)`): read whole into a tree before any SQL is written.

A small recursive-descent parser over MLflow-style filters. Every mistake (an unclosed parenthesis, a trailing
`or`, a comparison without its value, a word that is not a name) is a QueryError that shows the expression with
a caret under the place it went wrong, so no user ever sees a DuckDB parser error or the SQL built from their
text. The tree is then written as a DuckDB predicate; names are resolved by the caller (the searched columns).

Grammar (keywords in any case):

    expression  := conjunction (OR conjunction)*
    conjunction := negation (AND negation)*
    negation    := NOT negation | condition
    condition   := '(' expression ')' | TRUE | FALSE | operand test
    test        := ('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') operand
                 | [NOT] IN '(' literal (',' literal)* ')'
                 | [NOT] BETWEEN operand AND operand
                 | [NOT] (LIKE | ILIKE) string
                 | IS [NOT] NULL
    operand     := params.KEY | tags.KEY | metrics.KEY[.last|.min|.max|.mean|.count] | attributes.NAME
                 | a run attribute | number | 'text'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from metalake.errors import QueryError

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "like", "ilike", "between", "true", "false"})
COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
FIELD_PREFIXES = ("params", "metrics", "tags", "attributes")
NUMERIC_ATTRIBUTES = frozenset({"duration_s"})
EXAMPLE = "params.depth = '6' and metrics.val_auc > 0.8"

_TOKEN = re.compile(
    r"""(?:
        (?P<number>-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|-?\.\d+(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^']|'')*')
      | (?P<field>(?:params|metrics|tags|attributes)\.(?:`[^`]+`|"[^"]+"|[A-Za-z0-9_\-/:]+)(?:\.(?:last|min|max|mean|count))?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<operator><=|>=|!=|<>|=|<|>|\(|\)|,)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, field, word, operator, end
    text: str
    position: int  # offset in the expression as given

    @property
    def keyword(self) -> str | None:
        lowered = self.text.lower()
        return lowered if self.kind == "word" and lowered in KEYWORDS else None

    def describe(self) -> str:
        return "the end of the expression" if self.kind == "end" else repr(self.text)


# -- the tree -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """A name (a field such as `metrics.auc`, or a run attribute) or a literal (a number, a quoted text)."""

    kind: str  # field, attribute, number, string
    text: str
    position: int

    @property
    def is_literal(self) -> bool:
        return self.kind in ("number", "string")

    @property
    def is_numeric(self) -> bool:
        """Known to be a number: a metric, a numeric run attribute, or a number literal."""
        return (
            self.kind == "number"
            or (self.kind == "field" and self.text.startswith("metrics."))
            or (self.kind == "attribute" and self.text in NUMERIC_ATTRIBUTES)
        )

    @property
    def is_text_field(self) -> bool:
        """A param or tag: stored as text, read as a number when compared with one (as in MLflow)."""
        return self.kind == "field" and self.text.startswith(("params.", "tags."))


@dataclass(frozen=True)
class Logical:
    operator: str  # AND, OR
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Negation:
    part: Node


@dataclass(frozen=True)
class Constant:
    value: bool


@dataclass(frozen=True)
class Comparison:
    left: Operand
    operator: str
    right: Operand


@dataclass(frozen=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand
    negated: bool


@dataclass(frozen=True)
class InList:
    operand: Operand
    values: tuple[Operand, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    operand: Operand
    operator: str  # LIKE, ILIKE
    pattern: Operand
    negated: bool


@dataclass(frozen=True)
class IsNull:
    operand: Operand
    negated: bool


Node = Logical | Negation | Constant | Comparison | Between | InList | Like | IsNull


# -- reading --------------------------------------------------------------------------------------------------


def expression_error(expression: str, position: int, problem: str, hint: str | None = None) -> QueryError:
    """A QueryError that shows the expression and a caret under `position`."""
    shown = expression.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    position = max(0, min(position, len(shown)))
    lines = [
        f"Cannot read the search expression at character {position + 1}: {problem}",
        f"  {shown}",
        "  " + " " * position + "^",
    ]
    if hint:
        lines.append(hint)
    return QueryError("\n".join(lines))


def tokenize(expression: str) -> list[Token]:
    """The expression's tokens with their offsets, ending with an `end` token; unreadable text is refused."""
    tokens = []
    position = 0
    while True:
        while position < len(expression) and expression[position].isspace():
            position += 1
        if position >= len(expression):
            tokens.append(Token("end", "", len(expression)))
            return tokens
        match = _TOKEN.match(expression, position)
        if match is None:
            raise _unreadable(expression, position)
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "word" and text in FIELD_PREFIXES and expression.startswith(".", match.end()):
            raise expression_error(
                expression, match.end() + 1, f"a key must follow '{text}.'", f"For example: {text}.val_auc"
            )
        tokens.append(Token(kind, text, position))
        position = match.end()


def _unreadable(expression: str, position: int) -> QueryError:
    character = expression[position]
    if character == "'":
        return expression_error(expression, position, "this text is never closed; end it with '.")
    if character in '"`':
        return expression_error(
            expression,
            position,
            f"{character} quotes only a key, after its prefix",
            "Quote text values with ' (name = 'xgb'), and keys like params.`my key`.",
        )
    if character == ";":
        return expression_error(expression, position, "';' has no place in a search expression.")
    return expression_error(
        expression,
        position,
        f"{character!r} is not part of the expression language.",
        f"For example: {EXAMPLE}.",
    )


def parse(expression: str, attributes: Collection[str]) -> Node:
    """The expression as a tree; `attributes` are the run attribute names allowed bare (status, name, ...)."""
    return _Parser(expression, tokenize(expression), attributes).parse()


class _Parser:
    def __init__(self, expression: str, tokens: list[Token], attributes: Collection[str]):
        self.expression = expression
        self.tokens = tokens
        self.attributes = attributes
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def accept(self, keyword: str) -> Token | None:
        if self.current.keyword == keyword or (
            self.current.kind == "operator" and self.current.text == keyword
        ):
            return self.advance()
        return None

    def error(self, token: Token, problem: str, hint: str | None = None) -> QueryError:
        return expression_error(self.expression, token.position, problem, hint)

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise self.error(
                self.current, "the expression is empty.", f"Give a condition, e.g. {EXAMPLE}, or none."
            )
        tree = self.disjunction()
        token = self.current
        if token.kind == "end":
            return tree
        if token.text == ")":
            raise self.error(token, "this ')' closes no '('.")
        raise self.error(
            token,
            f"expected AND, OR or the end of the expression, not {token.describe()}.",
            f"For example: {EXAMPLE}.",
        )

    def disjunction(self, after: Token | None = None) -> Node:
        parts = [self.conjunction(after)]
        while operator := self.accept("or"):
            parts.append(self.conjunction(after=operator))
        return parts[0] if len(parts) == 1 else Logical("OR", tuple(parts))

    def conjunction(self, after: Token | None = None) -> Node:
        parts = [self.negation(after)]
        while operator := self.accept("and"):
            parts.append(self.negation(operator))
        return parts[0] if len(parts) == 1 else Logical("AND", tuple(parts))

    def negation(self, after: Token | None = None) -> Node:
        if operator := self.accept("not"):
            return Negation(self.negation(operator))
        return self.condition(after)

    def condition(self, after: Token | None) -> Node:
        token = self.current
        if token.kind == "end" or token.text == ")" or token.keyword in ("and", "or"):
            where = f"must follow '{after.text.upper()}'" if after is not None else "must come first"
            raise self.error(
                token, f"a condition {where}, not {token.describe()}.", f"For example: {EXAMPLE}."
            )
        if opening := self.accept("("):
            inner = self.disjunction(opening)
            if not self.accept(")"):
                if self.current.kind == "end":
                    raise self.error(opening, "this '(' is never closed; add a ')'.")
                raise self.error(self.current, f"expected ')' (or AND, OR), not {self.current.describe()}.")
            return inner
        if self.accept("true"):
            return Constant(True)
        if self.accept("false"):
            return Constant(False)
        operand = self.operand("here")
        return self.test(operand)

    def operand(self, place: str) -> Operand:
        """A name or a value; `place` says where one is wanted ("here", "after '>'")."""
        token = self.current
        if token.kind in ("number", "string", "field"):
            self.advance()
            return Operand(token.kind, token.text, token.position)
        if token.kind == "word" and token.keyword is None:
            if token.text not in self.attributes:
                raise self.error(
                    token,
                    f"unknown name {token.text!r}.",
                    "Use params.KEY, metrics.KEY (or metrics.KEY.min, .max, .mean, .count), tags.KEY, or a run "
                    f"attribute: {', '.join(self.attributes)}.",
                )
            self.advance()
            return Operand("attribute", token.text, token.position)
        raise self.error(
            token, f"a name or a value must come {place}, not {token.describe()}.", f"For example: {EXAMPLE}."
        )

    def literal(self, wanted: str) -> Operand:
        token = self.current
        if token.kind not in ("number", "string"):
            raise self.error(token, f"{wanted} takes numbers or quoted texts, not {token.describe()}.")
        self.advance()
        return Operand(token.kind, token.text, token.position)

    def test(self, operand: Operand) -> Node:
        token = self.current
        if token.kind == "operator" and token.text in COMPARISONS:
            self.advance()
            right = self.operand(f"after '{token.text}'")
            return Comparison(operand, token.text, right)
        if self.accept("is"):
            negated = self.accept("not") is not None
            if not self.accept("null"):
                raise self.error(
                    self.current, f"IS must be followed by NULL or NOT NULL, not {self.current.describe()}."
                )
            return IsNull(operand, negated)
        negation = self.accept("not")
        if self.accept("in"):
            return InList(operand, self.in_list(), negated=negation is not None)
        if self.accept("between"):
            low = self.operand("after BETWEEN")
            if not self.accept("and"):
                raise self.error(
                    self.current,
                    f"BETWEEN needs AND between its bounds, not {self.current.describe()}.",
                    f"For example: {operand.text} BETWEEN 0.5 AND 0.9",
                )
            high = self.operand("after BETWEEN ... AND")
            return Between(operand, low, high, negated=negation is not None)
        if like := self.accept("like") or self.accept("ilike"):
            pattern = self.current
            if pattern.kind != "string":
                raise self.error(
                    pattern, f"{like.text.upper()} needs a quoted pattern, e.g. name LIKE 'xgb%'."
                )
            self.advance()
            return Like(
                operand,
                like.text.upper(),
                Operand("string", pattern.text, pattern.position),
                negation is not None,
            )
        if negation is not None:
            raise self.error(
                self.current,
                f"NOT here must be followed by IN, BETWEEN or LIKE, not {self.current.describe()}.",
            )
        name = operand.text
        examples = (
            f"{name} > 0.8, {name} BETWEEN 0.5 AND 0.9, {name} IS NULL"
            if operand.is_numeric
            else f"{name} = 'x', {name} LIKE 'x%', {name} IS NULL"
        )
        raise self.error(
            token, f"{name} needs a comparison here, not {token.describe()}.", f"For example: {examples}."
        )

    def in_list(self) -> tuple[Operand, ...]:
        opening = self.current
        if not self.accept("("):
            raise self.error(
                opening, f"IN needs a list in parentheses, e.g. IN ('4', '6'), not {opening.describe()}."
            )
        values = [self.literal("IN (...)")]
        while self.accept(","):
            values.append(self.literal("IN (...)"))
        if not self.accept(")"):
            if self.current.kind == "end":
                raise self.error(opening, "this '(' is never closed; add a ')'.")
            raise self.error(
                self.current, f"expected ',' or ')' in the IN list, not {self.current.describe()}."
            )
        return tuple(values)


# -- writing SQL ----------------------------------------------------------------------------------------------


def to_sql(tree: Node, expression: str, resolve: Callable[[Operand], str]) -> str:
    """The tree as a DuckDB predicate; `resolve` turns a name into a quoted column (or raises QueryError)."""
    return _Writer(expression, resolve).write(tree)


class _Writer:
    def __init__(self, expression: str, resolve: Callable[[Operand], str]):
        self.expression = expression
        self.resolve = resolve

    def write(self, node: Node) -> str:
        if isinstance(node, Logical):
            return "(" + f" {node.operator} ".join(self.write(part) for part in node.parts) + ")"
        if isinstance(node, Negation):
            return f"(NOT ({self.write(node.part)}))"
        if isinstance(node, Constant):
            return "TRUE" if node.value else "FALSE"
        if isinstance(node, Comparison):
            numeric = node.left.is_numeric or node.right.is_numeric
            self.check_types(node.left, node.right)
            return f"{self.value(node.left, numeric)} {node.operator} {self.value(node.right, numeric)}"
        if isinstance(node, Between):
            numeric = node.low.is_numeric or node.high.is_numeric
            self.check_types(node.operand, node.low, node.high)
            bounds = f"{self.value(node.low, numeric)} AND {self.value(node.high, numeric)}"
            return f"({self.value(node.operand, numeric)} {'NOT ' if node.negated else ''}BETWEEN {bounds})"
        if isinstance(node, InList):
            numeric = all(value.kind == "number" for value in node.values)
            self.check_types(node.operand, *node.values)
            values = ", ".join(value.text for value in node.values)
            return f"{self.value(node.operand, numeric)} {'NOT ' if node.negated else ''}IN ({values})"
        if isinstance(node, Like):
            if node.operand.is_numeric:
                raise self.error(
                    node.operand, f"{node.operand.text} is a number; {node.operator} matches text."
                )
            return f"{self.value(node.operand, False)} {'NOT ' if node.negated else ''}{node.operator} {node.pattern.text}"
        return f"{self.value(node.operand, False)} IS {'NOT ' if node.negated else ''}NULL"

    def value(self, operand: Operand, compared_with_number: bool) -> str:
        """A literal as written (the tokenizer only lets well-formed numbers and quoted texts through), or a
        column; a param or tag compared with a number (or a metric) is read as a number."""
        if operand.is_literal:
            return operand.text
        column = self.resolve(operand)
        return f"TRY_CAST({column} AS DOUBLE)" if compared_with_number and operand.is_text_field else column

    def check_types(self, *operands: Operand) -> None:
        """A number (a metric, duration_s, a number) compared with a quoted text is refused where the text is."""
        numeric = next((operand for operand in operands if operand.is_numeric), None)
        text = next((operand for operand in operands if operand.kind == "string"), None)
        if numeric is not None and text is not None:
            raise self.error(
                text, f"{numeric.text} is a number; compare it with a number, not a quoted text."
            )

    def error(self, operand: Operand, problem: str) -> QueryError:
        return expression_error(self.expression, operand.position, problem)
