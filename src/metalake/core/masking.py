"""The one masking layer every read path calls (REST, MLflow, SQL, exports, UI, profiles): sensitive values hidden
as the table specs mark them, in Python values, rows, Arrow tables and DuckDB SQL, the same way in each.

Core, so it knows specs and not readers: whether a reader gets masked or clear values (the `unmask` privilege) is
decided by the access domain, which calls this layer or not. Two things are masked:
- columns a spec marks (`sensitivity: pii`, `mask: hash | redact | partial | null`), such as `recorded_by`;
- in tables a spec marks as key/value pairs (`key_value: [key, value]`: params, tags), the values whose key looks
  like a secret (`*password*`, `*token*`, ...), so a secret logged by mistake stays hidden.

`hash` is keyed and deterministic, `"h:" + sha256(key_hex + ":" + value)[:16]`, computed identically by Python and
by DuckDB: the same actor masks the same in an API answer, an export and a SQL query, so joins, group-bys and
distinct counts still work on masked data.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metalake.core.catalog import TableSpec
from metalake.core.vocabulary import MASK_KINDS, MaskKind
from metalake.errors import MaskKeyError, TableNotFound

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DEFAULT_SECRET_KEY_PATTERNS",
    "IDENTITY_KEYS",
    "MASK_KINDS",
    "REDACTED",
    "MaskKind",
    "Masker",
    "mask_profile",
]

# Keys of params and tags whose values are secrets logged by mistake; fnmatch-style, case-insensitive.
DEFAULT_SECRET_KEY_PATTERNS: tuple[str, ...] = ("*password*", "*secret*", "*token*", "*api_key*", "*email*")
# Keys of tags whose value names a person (MLflow's run user): redacted like a secret, as the `user` column is hashed.
IDENTITY_KEYS: tuple[str, ...] = ("mlflow.user",)
REDACTED = "[redacted]"
PARTIAL_PREFIX = "****"
PARTIAL_SHOWN = 4  # `partial` shows this many last characters, and only of a longer value
HASH_PREFIX = "h:"
# A SQL session looks up the hashes of at most this many distinct values of a column (more: one hash per row);
# up to CASE_VALUES of them in a CASE, more through an ENUM type.
DICTIONARY_VALUES = 4096
CASE_VALUES = 8
HASH_HEX_CHARS = 16
# Above this many distinct values, mask_arrow hashes them in DuckDB (vectorized) rather than in Python.
PYTHON_HASH_LIMIT = 4096
# Profile statistics that say nothing about the values themselves; a sensitive column keeps only these.
PROFILE_KEPT_STATISTICS = frozenset(
    {"type", "count", "row_count", "null_count", "distinct_count", "distinct_estimate"}
)
# Tables whose rows hold a dataset profile (JSON: column -> statistics) and the schema that marks its columns.
PROFILE_COLUMNS = {"dataset_versions": ("profile", "schema")}
# Characters fnmatch, Arrow's LIKE and DuckDB's GLOB read differently: patterns may use only `*` and `?`.
_UNPORTABLE_PATTERN_CHARACTERS = frozenset("[]\\")
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "json": "VARCHAR",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp[us, UTC]": "TIMESTAMPTZ",
    "binary": "BLOB",
}


@dataclass(frozen=True)
class HashDictionary:
    """The distinct values a table version holds in a hash-masked column, for a SQL session to look their hashes
    up: `enum_type` names the session's ENUM type of the values (None: few values, looked up by a CASE)."""

    values: tuple[str, ...]
    enum_type: str | None = None


class Masker:
    """Masks the sensitive values of lake tables, given their specs and the lake's masking key.

    Build one per lake (specs and key do not change while it serves); it holds no other state and is safe to
    share between threads.
    """

    def __init__(
        self,
        specs: Mapping[str, TableSpec],
        key: bytes,
        *,
        secret_key_patterns: Sequence[str] = DEFAULT_SECRET_KEY_PATTERNS,
    ) -> None:
        if len(key) == 0:
            raise MaskKeyError("The masking key is empty; load one with load_mask_key().")
        for pattern in secret_key_patterns:
            if _UNPORTABLE_PATTERN_CHARACTERS & set(pattern):
                raise ValueError(
                    f"Secret key pattern {pattern!r}: use only `*` and `?` as wildcards ([, ] and \\ are refused, "
                    "as Python, Arrow and DuckDB would read them differently)."
                )
        self._specs = dict(specs)
        self._key_hex = key.hex()
        self._patterns = tuple(pattern.lower() for pattern in secret_key_patterns)

    # -- what is sensitive ----------------------------------------------------------------------------------

    def sensitive_columns(self, table: str) -> dict[str, MaskKind]:
        """The marked columns of a table and the mask of each."""
        return {column.name: column.mask for column in self._spec(table).columns if column.mask is not None}

    def is_secret_key(self, key: object) -> bool:
        """Whether a param or tag key looks like it names a secret, so its value is masked."""
        if not isinstance(key, str):
            return False
        lowered = key.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in self._patterns)

    def _spec(self, table: str) -> TableSpec:
        """The table's spec; an unknown table is an error, never "nothing to mask"."""
        try:
            return self._specs[table]
        except KeyError:
            raise TableNotFound(table, self._specs) from None

    def _secret_value_column(self, table: str) -> tuple[str, str] | None:
        """(key, value) columns whose values are masked by key, unless a column mark masks the value anyway."""
        spec = self._spec(table)
        if spec.key_value is None or spec.column(spec.key_value[1]).mask is not None:
            return None
        return spec.key_value

    # -- Python values and rows -----------------------------------------------------------------------------

    def mask_value(self, kind: MaskKind, value: object) -> object:
        """One value as a reader without the right to see it gets it; null stays null (it reveals nothing)."""
        if value is None or kind == "null":
            return None
        text = value if isinstance(value, str) else str(value)
        if kind == "hash":
            return self._hash(text)
        if kind == "redact":
            return REDACTED
        if kind == "partial":
            return _partial(text)
        raise ValueError(f"Unknown mask {kind!r}; valid: {list(MASK_KINDS)}.")

    def mask_rows(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of a table (as dicts) with their sensitive values masked; the given rows are left unchanged.

        Rows may hold any subset of the columns; a key/value value without its key is redacted (fail closed).
        """
        masks = self.sensitive_columns(table)
        key_value = self._secret_value_column(table)
        masked_rows = []
        for row in rows:
            masked = dict(row)
            if key_value is not None:
                key, value = key_value
                secret = key not in row or self.is_secret_key(
                    row[key]
                )  # without its key, any value may be one
                if masked.get(value) is not None and secret:
                    masked[value] = REDACTED
            for name, kind in masks.items():
                if name in masked:
                    masked[name] = self.mask_value(kind, masked[name])
            masked_rows.append(masked)
        return masked_rows

    def mask_key_values(self, mapping: Mapping[str, str]) -> dict[str, str]:
        """A run's params or tags as the API returns them, with the values of secret-looking keys redacted."""
        return {key: REDACTED if self.is_secret_key(key) else value for key, value in mapping.items()}

    def _hash(self, text: str) -> str:
        digest = _sha256_hex(f"{self._key_hex}:{text}")
        return f"{HASH_PREFIX}{digest[:HASH_HEX_CHARS]}"

    # -- Arrow ----------------------------------------------------------------------------------------------

    def mask_arrow(self, table: str, data: pa.Table) -> pa.Table:
        """An Arrow table of `table`'s rows (any subset of its columns) with its sensitive values masked.

        Vectorized: Arrow compute for the text masks, and a hash per distinct value rather than per row. As in
        mask_rows, key/value values without their key column are all redacted.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        key_value = self._secret_value_column(table)
        if key_value is not None and key_value[1] in data.column_names:
            key, value = key_value
            values = data.column(value)
            if key in data.column_names:
                secret = pc.fill_null(self._secret_keys_arrow(data.column(key)), False)
            else:  # values without their keys: any of them may be a secret
                secret = pa.chunked_array([pa.repeat(True, len(values))])
            redacted = pc.if_else(pc.and_(secret, pc.is_valid(values)), pa.scalar(REDACTED), values)
            data = _replace_column(data, value, redacted.cast(values.type), nullable=None)
        for name, kind in self.sensitive_columns(table).items():
            if name in data.column_names:
                masked = self._mask_arrow_column(kind, data.column(name))
                data = _replace_column(data, name, masked, nullable=True if kind == "null" else None)
        profiled = PROFILE_COLUMNS.get(table)
        if profiled is not None and profiled[0] in data.column_names:
            data = self._mask_profiles(data, *profiled)
        return data

    def masks_in_arrow(self, table: str) -> bool:
        """Whether `table` holds what only Arrow masking reads (dataset profiles, JSON per row): SQL reads it
        through `mask_arrow`'s output instead of a masking view."""
        return table in PROFILE_COLUMNS

    def sensitive_dataset_columns(
        self, schema: Sequence[Mapping[str, Any]] | None, columns: Collection[str]
    ) -> set[str]:
        """The sensitive columns of a dataset version: those its schema marks (`register(sensitive=...)`) and
        those whose names match the secret patterns (`*email*`, ...). Without a schema, every column (fail
        closed)."""
        if schema is None:
            return set(columns)
        marked = {str(entry.get("name")) for entry in schema if entry.get("sensitive")}
        return marked | {name for name in columns if self.is_secret_key(name)}

    def _mask_profiles(self, data: pa.Table, profile_column: str, schema_column: str) -> pa.Table:
        """Each row's profile JSON with the statistics of its sensitive columns dropped (see mask_profile)."""
        import json

        import pyarrow as pa

        profiles = data.column(profile_column).to_pylist()
        schemas = (
            data.column(schema_column).to_pylist()
            if schema_column in data.column_names
            else [None] * len(profiles)
        )
        masked: list[str | None] = []
        for profile_text, schema_text in zip(profiles, schemas, strict=True):
            if profile_text is None:
                masked.append(None)
                continue
            profile = json.loads(profile_text) if isinstance(profile_text, str) else profile_text
            schema = json.loads(schema_text) if isinstance(schema_text, str) else schema_text
            hidden = self.sensitive_dataset_columns(schema, profile)
            masked.append(json.dumps(mask_profile(profile, hidden), default=str))
        column = data.column(profile_column)
        return _replace_column(data, profile_column, pa.array(masked, column.type), nullable=None)

    def _mask_arrow_column(self, kind: MaskKind, column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
        import pyarrow as pa
        import pyarrow.compute as pc

        if kind == "null":
            return pa.nulls(len(column), type=column.type)
        text = column if _is_text(column.type) else column.cast(pa.string())
        if kind == "redact":
            masked = pc.if_else(pc.is_valid(text), pa.scalar(REDACTED), pa.scalar(None, pa.string()))
        elif kind == "partial":
            tail = pc.utf8_slice_codeunits(text, start=-PARTIAL_SHOWN)
            shown = pc.binary_join_element_wise(PARTIAL_PREFIX, tail, "")
            masked = pc.if_else(pc.greater(pc.utf8_length(text), PARTIAL_SHOWN), shown, PARTIAL_PREFIX)
        else:
            encoded = pc.dictionary_encode(text.combine_chunks())  # distinct values and indices in one pass
            masked = pc.take(self._hash_arrow(encoded.dictionary), encoded.indices)
        return masked.cast(column.type if _is_text(column.type) else pa.string())

    def _hash_arrow(self, values: pa.Array) -> pa.Array:
        """The hashes of distinct values, in their order: in Python for a few, in DuckDB for many."""
        import pyarrow as pa

        if len(values) <= PYTHON_HASH_LIMIT:
            return pa.array([self._hash(value) for value in values.to_pylist()], pa.string())
        import duckdb

        masker_values = pa.table({"v": values})
        with duckdb.connect() as connection:
            connection.execute("SET preserve_insertion_order = true")
            connection.register("masker_values", masker_values)
            hashed = connection.sql(f"SELECT {self._hash_sql('v')} AS h FROM masker_values").to_arrow_table()
        return hashed.column("h").combine_chunks().cast(pa.string())

    def _secret_keys_arrow(self, keys: pa.ChunkedArray) -> pa.ChunkedArray:
        import pyarrow as pa
        import pyarrow.compute as pc

        text = keys if _is_text(keys.type) else keys.cast(pa.string())
        matched: pa.ChunkedArray = pa.chunked_array([pa.repeat(False, len(text))])
        for pattern in self._patterns:
            matched = pc.or_(matched, pc.match_like(text, _like_pattern(pattern), ignore_case=True))
        return matched

    # -- DuckDB SQL -----------------------------------------------------------------------------------------

    def sql_expression(self, table: str, column: str, quoted_ref: str, *, key_ref: str | None = None) -> str:
        """The DuckDB expression reading `column` of `table` masked, from `quoted_ref` (a quoted column reference).

        For the value column of a key/value table, `key_ref` refers to its key column (default: the unqualified
        quoted key column). A column without a mark comes back as `quoted_ref`.

        The expression embeds the masking key for `hash`: never show it to users (see `masked_select`).
        """
        spec = self._spec(table)
        marked = {c.name: c for c in spec.columns}.get(column)
        if marked is not None and marked.mask is not None:
            return self._kind_sql(marked.mask, quoted_ref, marked.type)
        key_value = self._secret_value_column(table)
        if key_value is not None and column == key_value[1]:
            key = key_ref or quote_identifier(key_value[0])
            return (
                f"CASE WHEN {quoted_ref} IS NOT NULL AND ({self._secret_key_sql(key)}) "
                f"THEN {sql_literal(REDACTED)} ELSE {quoted_ref} END"
            )
        return quoted_ref

    def masked_select(self, table: str, relation_sql: str, columns: Sequence[str]) -> str:
        """`SELECT <each column, masked where marked> FROM <relation_sql>`: the body of a masked view.

        Register masked views in place of the raw tables so that masks apply before predicates, joins and
        group-bys: `WHERE user = 'alice'` then matches nothing, and `min(user)` is a hash.

        The SQL text contains the masking key: it must never reach users (a SQL endpoint must not echo view
        definitions, nor let `duckdb_views()` or similar catalog functions read them).
        """
        if not columns:
            raise ValueError(f"masked_select of {table!r} needs at least one column.")
        selected = ", ".join(
            f"{self.sql_expression(table, name, quote_identifier(name))} AS {quote_identifier(name)}"
            for name in columns
        )
        return f"SELECT {selected} FROM {relation_sql}"

    def dictionary_columns(self, table: str) -> list[str]:
        """The hash-masked string columns of `table`: those a SQL session may give a dictionary of their values
        (see `HashDictionary`), so that a query hashes each distinct value once, not every row."""
        if self.masks_in_arrow(table):
            return []
        return [
            column.name
            for column in self._spec(table).columns
            if column.mask == "hash" and column.type in ("string", "json")
        ]

    def replacing_select(
        self, table: str, relation_sql: str, dictionaries: Mapping[str, HashDictionary] | None = None
    ) -> str:
        """`SELECT * REPLACE (<masked columns>) FROM <relation_sql>`: every column of the relation, the marked
        ones masked. Unlike `masked_select` it needs no column list, so it fits a relation of any version of the
        table. Every table has a marked column (`recorded_by`), so there is always something to replace.

        The SQL text contains the masking key: it must never reach users.
        """
        if self.masks_in_arrow(table):  # the relation is mask_arrow's output already
            return f"SELECT * FROM {relation_sql}"
        spec = self._spec(table)
        masked = [column.name for column in spec.columns if column.mask is not None]
        key_value = self._secret_value_column(table)
        if key_value is not None:
            masked.append(key_value[1])
        if not masked:
            return f"SELECT * FROM {relation_sql}"
        expressions = []
        for name in masked:
            known = (dictionaries or {}).get(name)
            ref = quote_identifier(name)
            expression = (
                self._dictionary_hash_sql(ref, known) if known else self.sql_expression(table, name, ref)
            )
            expressions.append(f"{expression} AS {ref}")
        return f"SELECT * REPLACE ({', '.join(expressions)}) FROM {relation_sql}"

    def _dictionary_hash_sql(self, ref: str, known: HashDictionary) -> str:
        """The keyed hash of `ref`, looked up for the dictionary's values (hashed here, once each) and computed
        for any other: a CASE for a few values, else an index into the hashes by the value's code in an ENUM
        type. The same hash as `_hash_sql` either way; only the cost differs (sha256 per row is most of a
        masked aggregate)."""
        if known.enum_type is None:
            whens = " ".join(
                f"WHEN {sql_literal(value)} THEN {sql_literal(self._hash(value))}" for value in known.values
            )
            return f"(CASE {ref} {whens} ELSE {self._hash_sql(ref)} END)"
        hashes = ", ".join(sql_literal(self._hash(value)) for value in known.values)
        code = f"enum_code(TRY_CAST({ref} AS {quote_identifier(known.enum_type)}))"
        return f"coalesce([{hashes}][{code} + 1], {self._hash_sql(ref)})"

    def mask_actor(self, actor: object) -> object:
        """A commit's actor (audit log, table history) as a reader without `unmask` sees it: hashed, as the
        `recorded_by` of the rows it wrote, so the two still join."""
        return self.mask_value("hash", actor)

    def _kind_sql(self, kind: MaskKind, ref: str, column_type: str) -> str:
        if kind == "null":
            return f"CAST(NULL AS {DUCKDB_TYPES.get(column_type, 'VARCHAR')})"
        if kind == "hash":
            return self._hash_sql(ref)
        if kind == "redact":
            return f"CASE WHEN {ref} IS NULL THEN NULL ELSE {sql_literal(REDACTED)} END"
        if kind == "partial":
            return (
                f"CASE WHEN {ref} IS NULL THEN NULL WHEN length({ref}) > {PARTIAL_SHOWN} "
                f"THEN {sql_literal(PARTIAL_PREFIX)} || right({ref}, {PARTIAL_SHOWN}) "
                f"ELSE {sql_literal(PARTIAL_PREFIX)} END"
            )
        raise ValueError(f"Unknown mask {kind!r}; valid: {list(MASK_KINDS)}.")

    def _hash_sql(self, ref: str) -> str:
        salted = f"{sql_literal(self._key_hex + ':')} || CAST({ref} AS VARCHAR)"
        return f"({sql_literal(HASH_PREFIX)} || left(sha256({salted}), {HASH_HEX_CHARS}))"

    def _secret_key_sql(self, key_ref: str) -> str:
        tests = [f"lower({key_ref}) GLOB {sql_literal(pattern)}" for pattern in self._patterns]
        return " OR ".join(tests) or "FALSE"


def mask_profile(
    profile: Mapping[str, Mapping[str, Any]], sensitive_columns: Collection[str]
) -> dict[str, dict[str, Any]]:
    """A dataset profile (column -> statistics) whose sensitive columns keep only counts and their type.

    min, max, mean, top values and any statistic added later reveal values, so they are dropped (an allow-list,
    not a deny-list); `masked: true` tells a reader why they are missing. Datasets have no spec, so the caller
    says which columns are sensitive.
    """
    masked: dict[str, dict[str, Any]] = {}
    for column, statistics in profile.items():
        if column in sensitive_columns:
            kept = {name: value for name, value in statistics.items() if name in PROFILE_KEPT_STATISTICS}
            masked[column] = {**kept, "masked": True}
        else:
            masked[column] = dict(statistics)
    return masked


def sql_literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """A DuckDB quoted identifier (column names come from specs, but quote them anyway)."""
    return '"' + name.replace('"', '""') + '"'


def _sha256_hex(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _partial(text: str) -> str:
    """`****` and the last characters of a longer value; a short value shows nothing (it would show it all)."""
    return PARTIAL_PREFIX + text[-PARTIAL_SHOWN:] if len(text) > PARTIAL_SHOWN else PARTIAL_PREFIX


def _like_pattern(glob: str) -> str:
    """An fnmatch-style pattern of `*` and `?` as an Arrow LIKE pattern."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _is_text(data_type: pa.DataType) -> bool:
    import pyarrow as pa

    return (
        bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))
        or str(data_type) == "string_view"
    )


def _replace_column(
    data: pa.Table, name: str, values: pa.ChunkedArray | pa.Array, *, nullable: bool | None
) -> pa.Table:
    index = data.schema.get_field_index(name)
    field = data.schema.field(index)
    replaced = field.with_type(values.type)
    if nullable is not None:
        replaced = replaced.with_nullable(nullable or field.nullable)
    return data.set_column(index, replaced, values)
