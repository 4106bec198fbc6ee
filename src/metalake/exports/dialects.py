"""The views' DuckDB-only constructs rewritten for Spark/Databricks and Trino, on sqlglot syntax trees.

sqlglot maps most DuckDB SQL by itself, but some constructs come out as SQL that parses on the target engine and
answers differently (DuckDB's `arg_max` skips null values, Spark's `max_by` does not), or that the target does not
have at all (`arg_max_null`, `epoch_us`, `list(x ORDER BY y)` on Spark, `percentile_cont` on Trino). `portable_tree`
rewrites those. Every function a view calls must be one of VERIFIED_FUNCTIONS, checked against the targets'
semantics: an unchecked one makes the export fail rather than guess.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from sqlglot import exp

ExportDialect = Literal["spark", "databricks", "trino"]
EXPORT_DIALECTS: tuple[str, ...] = get_args(ExportDialect)

# sqlglot node types (and DuckDB functions it leaves anonymous) whose translation to every export dialect was
# checked: by sqlglot itself (same name and meaning) or by a rewrite below.
VERIFIED_FUNCTIONS = frozenset(
    {
        "Abs", "And", "AnyValue", "ArgMax", "ArgMin", "Array", "ArrayAgg", "ArrayContains", "ArrayFilter",
        "ArraySize", "ArrayToString", "Avg", "Case", "Cast", "Coalesce", "ConcatWs", "Count", "DateDiff",
        "FromJson", "Greatest", "If", "IsNan", "JSONExtractScalar", "Lead", "Least", "LogicalAnd", "LogicalOr",
        "MapFromEntries", "Max", "Min", "Nullif", "Or", "PercentileCont", "RowNumber", "Struct", "Sum", "ToMap",
        "TryCast", "Unnest",
        "arg_max_null", "arg_min_null", "epoch_us", "json_array_length", "list_extract", "now",
        "to_microseconds",
    }
)  # fmt: skip


class UnportableConstruct(Exception):
    """A construct with no faithful translation; the export names the view and fails."""

    def __init__(self, construct: str, reason: str):
        self.construct, self.reason = construct, reason
        super().__init__(f"{construct}: {reason}")


def portable_tree(tree: exp.Expr, dialect: ExportDialect) -> exp.Expr:
    """The DuckDB tree rewritten in place so that sqlglot writes `dialect` SQL with the same answers."""
    _refuse_unverified(tree)
    rewrite = _spark_rewrite if dialect in ("spark", "databricks") else _trino_rewrite
    for node in reversed(list(tree.walk(bfs=False))):  # children first: a rewrite sees rewritten arguments
        replacement = _common_rewrite(node) or rewrite(node)
        if replacement is not None and replacement is not node:
            node.replace(replacement)
    return tree


def _refuse_unverified(tree: exp.Expr) -> None:
    """Fail on the first construct that is DuckDB-only or whose translation nobody checked."""
    from sqlglot import exp

    for node in tree.walk():
        if isinstance(node, exp.Star) and any(
            node.args.get(k) for k in ("except", "except_", "replace", "rename")
        ):
            raise UnportableConstruct("* EXCLUDE / REPLACE", "list the columns instead")
        if isinstance(node, exp.Union) and node.args.get("by_name"):
            raise UnportableConstruct("UNION BY NAME", "give every part the same columns in the same order")
        if isinstance(node, exp.Explode):  # how sqlglot reads DuckDB's unnest() in a select list
            raise UnportableConstruct(
                "unnest() in the select list", "use CROSS JOIN unnest(...) AS t(column)"
            )
        if isinstance(node, exp.Window) and isinstance(node.this, exp.Count) and node.this.find(exp.Distinct):
            raise UnportableConstruct(
                "count(DISTINCT ...) OVER", "Spark and Trino have no DISTINCT in windows"
            )
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
        elif isinstance(node, exp.Func):
            name = type(node).__name__
        else:
            continue
        if name not in VERIFIED_FUNCTIONS:
            raise UnportableConstruct(
                f"function {name} in {node.sql('duckdb')[:60]}",
                "its translation has not been checked for other engines",
            )


def _common_rewrite(node: exp.Expr) -> exp.Expr | None:
    """Rewrites every export dialect needs."""
    from sqlglot import exp

    if isinstance(node, exp.ArgMax | exp.ArgMin) and not node.args.get("count"):
        # DuckDB's arg_max skips rows whose value is null; max_by keeps them, unless their key is null.
        value, key = node.this, node.expression
        not_null = exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null()))
        guarded = exp.Case(ifs=[exp.If(this=not_null, true=key)])
        return type(node)(this=value, expression=guarded)
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("arg_max_null", "arg_min_null"):
        value, key = _arguments(node, 2)
        kind = exp.ArgMax if node.name.lower() == "arg_max_null" else exp.ArgMin
        return kind(this=value, expression=key)
    if isinstance(node, exp.Anonymous) and node.name.lower() == "list_extract":
        # list_extract([x], 1) is x: the views use it to hide x's Parquet statistics from DuckDB (see
        # metric_summary.sql); other engines need no such wrapper
        array, index = _arguments(node, 2)
        if not (isinstance(array, exp.Array) and len(array.expressions) == 1 and index.sql() == "1"):
            raise UnportableConstruct("list_extract", "only list_extract([x], 1) is exported")
        element: exp.Expr = array.expressions[0]
        return element
    if isinstance(node, exp.Anonymous) and node.name.lower() == "now":
        _arguments(node, 0)
        return exp.CurrentTimestamp()
    if isinstance(node, exp.Anonymous) and node.name.lower() == "to_microseconds":
        (count,) = _arguments(node, 1)
        if not (isinstance(count, exp.Literal) and count.is_int):
            raise UnportableConstruct(
                "to_microseconds(expression)", "only a whole-number literal is exported"
            )
        micros = int(count.this)
        seconds = str(micros // 10**6) if micros % 10**6 == 0 else f"{micros / 10**6:.6f}"
        return exp.Interval(this=exp.Literal.string(seconds), unit=exp.var("SECOND"))
    if isinstance(node, exp.ToMap):
        if node.this is not None and node.this.expressions:
            raise UnportableConstruct("MAP {...} literal", "only the empty map is exported")
        return exp.Anonymous(this="MAP", expressions=[])
    if isinstance(node, exp.ArrayToString):
        if node.args.get("null") is not None:
            raise UnportableConstruct(
                "array_to_string(list, separator, null)", "only two arguments are exported"
            )
        return _array_to_string(node)
    if isinstance(node, exp.DateDiff) and node.text("unit").lower() not in ("microsecond", "microseconds"):
        raise UnportableConstruct("date_diff", "only date_diff('microsecond', start, end) is exported")
    return None


def _array_to_string(node: exp.ArrayToString) -> exp.Expr:
    """DuckDB's array_to_string(list, separator) skips null elements, as array_join does, but gives null where
    every element of a non-empty list is null; array_join gives '' there."""
    from sqlglot import exp

    array = node.this
    element = exp.to_identifier("element")
    not_null = exp.Lambda(
        this=exp.Not(this=exp.Is(this=exp.column(element), expression=exp.Null())), expressions=[element]
    )
    values = exp.ArraySize(this=exp.ArrayFilter(this=array.copy(), expression=not_null))
    only_nulls = exp.and_(
        exp.EQ(this=values, expression=exp.Literal.number(0)),
        exp.GT(this=exp.ArraySize(this=array.copy()), expression=exp.Literal.number(0)),
    )
    return exp.Case(ifs=[exp.If(this=only_nulls, true=exp.Null())], default=node.copy())


def _spark_rewrite(node: exp.Expr) -> exp.Expr | None:
    from sqlglot import exp

    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
        return exp.Anonymous(this="FIRST", expressions=[node.this.this, exp.true()])  # first non-null value
    if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
        return exp.Anonymous(this="UNIX_MICROS", expressions=list(_arguments(node, 1)))
    if isinstance(node, exp.PercentileCont) and node.expression is not None:
        # DuckDB's quantile_cont(x, p): Spark's exact, interpolating percentile(x, p)
        return exp.Anonymous(this="PERCENTILE", expressions=[node.this, node.expression])
    if isinstance(node, exp.ArrayAgg):
        return _spark_list(node)
    if isinstance(node, exp.FromJson):
        value, structure = _json_target(node)
        return exp.Anonymous(
            this="FROM_JSON", expressions=[value, exp.Literal.string(structure.sql("spark"))]
        )
    return None


def _spark_list(node: exp.ArrayAgg) -> exp.Expr:
    """DuckDB's list(x ORDER BY k): Spark's collect_list has no order and skips nulls, so collect structs of the
    sort keys and the value, sort them, and keep the value."""
    from sqlglot import exp

    inner = node.this
    value, orders = (inner.this, inner.expressions) if isinstance(inner, exp.Order) else (inner, [])
    descending = {bool(order.args.get("desc")) for order in orders}
    if len(descending) > 1:
        raise UnportableConstruct("list(... ORDER BY a, b DESC)", "mixed sort directions are not exported")
    desc = descending == {True}
    fields: list[exp.Expr] = []
    for index, order in enumerate(orders):
        key = order.this
        nulls_first = bool(order.args.get("nulls_first"))
        # sort_array puts nulls first ascending and last descending; a leading flag gives DuckDB's placement
        flag: exp.Expr = exp.Is(this=key.copy(), expression=exp.Null())
        if nulls_first != desc:
            flag = exp.Not(this=flag)
        fields.append(exp.PropertyEQ(this=exp.to_identifier(f"n{index}"), expression=flag))
        fields.append(exp.PropertyEQ(this=exp.to_identifier(f"k{index}"), expression=key))
    fields.append(exp.PropertyEQ(this=exp.to_identifier("v"), expression=value))
    collected: exp.Expr = exp.ArrayAgg(this=exp.Struct(expressions=fields))
    if orders:
        collected = exp.Anonymous(this="SORT_ARRAY", expressions=[collected, exp.Boolean(this=not desc)])
    element = exp.Lambda(this=exp.column("v", table="e"), expressions=[exp.to_identifier("e")])
    return exp.Anonymous(this="TRANSFORM", expressions=[collected, element])


def _trino_rewrite(node: exp.Expr) -> exp.Expr | None:
    from sqlglot import exp

    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
        return exp.Anonymous(this="ARBITRARY", expressions=[node.this.this])  # skips nulls by itself
    if isinstance(node, exp.Struct):
        # Trino's ROW(...) takes no field names; order is what arg_max keys and map entries use
        return exp.Struct(
            expressions=[e.expression if isinstance(e, exp.PropertyEQ) else e for e in node.expressions]
        )
    if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
        (value,) = _arguments(node, 1)
        return _trino("CAST(ROUND(TO_UNIXTIME({0}) * 1e6) AS BIGINT)", value)
    if isinstance(node, exp.DateDiff):
        # Trino's date_diff stops at milliseconds, the precision of its Delta timestamps
        return _trino("DATE_DIFF('millisecond', {0}, {1}) * 1000", node.expression, node.this)
    if isinstance(node, exp.PercentileCont) and node.expression is not None:
        return _trino(TRINO_QUANTILE_CONT, node.this, node.expression)
    if isinstance(node, exp.Greatest | exp.Least) and node.args.get("ignore_nulls"):
        # DuckDB and Spark skip null arguments; Trino's greatest/least return null when one is null
        values = [node.this, *node.expressions]
        function = "ARRAY_MAX" if isinstance(node, exp.Greatest) else "ARRAY_MIN"
        listing = ", ".join(f"{{{i}}}" for i in range(len(values)))
        return _trino(f"{function}(FILTER(ARRAY[{listing}], value -> value IS NOT NULL))", *values)
    if isinstance(node, exp.FromJson):
        value, structure = _json_target(node)
        return exp.Cast(this=exp.Anonymous(this="JSON_PARSE", expressions=[value]), to=structure)
    if isinstance(node, exp.Unnest) and _is_array_of_rows(node.expressions[0]):
        # Trino spreads the fields of unnested rows over several columns; a one-field wrapper keeps one column
        wrap = exp.Lambda(
            this=exp.Struct(expressions=[exp.column("r")]), expressions=[exp.to_identifier("r")]
        )
        wrapped = exp.Anonymous(this="TRANSFORM", expressions=[node.expressions[0], wrap])
        return exp.Unnest(expressions=[wrapped], alias=node.args.get("alias"))
    return None


# DuckDB's quantile_cont(x, p) (linear interpolation between the two nearest values), which Trino lacks
TRINO_QUANTILE_CONT = """CASE WHEN COUNT({0}) = 0 THEN NULL ELSE
ELEMENT_AT(ARRAY_SORT(ARRAY_AGG({0}) FILTER (WHERE {0} IS NOT NULL)), CAST(FLOOR((COUNT({0}) - 1) * {1}) AS BIGINT) + 1)
+ ((COUNT({0}) - 1) * {1} - FLOOR((COUNT({0}) - 1) * {1}))
* (ELEMENT_AT(ARRAY_SORT(ARRAY_AGG({0}) FILTER (WHERE {0} IS NOT NULL)), CAST(CEILING((COUNT({0}) - 1) * {1}) AS BIGINT) + 1)
- ELEMENT_AT(ARRAY_SORT(ARRAY_AGG({0}) FILTER (WHERE {0} IS NOT NULL)), CAST(FLOOR((COUNT({0}) - 1) * {1}) AS BIGINT) + 1))
END"""


def _trino(template: str, *arguments: exp.Expr) -> exp.Expr:
    """A Trino expression from a template whose {0}, {1}, ... are the (already rewritten) arguments."""
    import sqlglot
    from sqlglot import exp

    def operand(argument: exp.Expr) -> str:
        text = argument.sql("trino")
        return text if isinstance(argument, exp.Column | exp.Literal) else f"({text})"

    return sqlglot.parse_one(template.format(*(operand(a) for a in arguments)), read="trino")


def _arguments(node: exp.Anonymous, count: int) -> list[exp.Expr]:
    if len(node.expressions) != count:
        raise UnportableConstruct(
            f"{node.name}() with {len(node.expressions)} arguments", f"expected {count}"
        )
    return list(node.expressions)


def _json_target(node: exp.FromJson) -> tuple[exp.Expr, exp.DataType]:
    """The JSON text and the type DuckDB's from_json structure (e.g. '[{"a": "VARCHAR"}]') describes."""
    from sqlglot import exp

    structure = node.expression
    if not (isinstance(structure, exp.Literal) and structure.is_string):
        raise UnportableConstruct("from_json(x, expression)", "the structure must be a string literal")
    try:
        duckdb_type = _duckdb_type(json.loads(structure.this))
        return node.this, exp.DataType.build(duckdb_type, dialect="duckdb")
    except (ValueError, TypeError) as error:
        raise UnportableConstruct(f"from_json structure {structure.this}", str(error)) from None


def _duckdb_type(structure: object) -> str:
    if isinstance(structure, list) and len(structure) == 1:
        return f"{_duckdb_type(structure[0])}[]"
    if isinstance(structure, dict) and structure:
        fields = ", ".join(f'"{name}" {_duckdb_type(kind)}' for name, kind in structure.items())
        return f"STRUCT({fields})"
    if isinstance(structure, str) and structure.replace(" ", "").isalnum():
        return structure
    raise ValueError(f"unsupported JSON structure {structure!r}")


def _is_array_of_rows(expression: exp.Expr) -> bool:
    from sqlglot import exp

    target = expression.to if isinstance(expression, exp.Cast) else None
    return (
        target is not None
        and target.is_type(exp.DataType.Type.ARRAY)
        and bool(target.expressions)
        and target.expressions[0].is_type(exp.DataType.Type.STRUCT)
    )
