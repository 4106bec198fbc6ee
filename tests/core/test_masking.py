"""The masking layer: each mask on values, rows, Arrow tables and DuckDB SQL, the same keyed hash in Python and
DuckDB, secret-looking params and tags redacted, the key kept outside the lake, profiles without revealing stats."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from metalake.core.catalog import TableSpec, bundled_dir, load_spec_file, parse_spec, spec_files
from metalake.core.mask_key import MASK_KEY_ENV, MASK_KEY_FILE_ENV, load_mask_key
from metalake.core.masking import (
    DEFAULT_SECRET_KEY_PATTERNS,
    PYTHON_HASH_LIMIT,
    REDACTED,
    Masker,
    MaskKind,
    mask_profile,
)
from metalake.errors import MaskKeyError, TableNotFound

KEY = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
VALUES = ["alice@example.com", "bob", "Zoë Müller", "日本語のユーザー", "👩‍👩‍👧 family", "it's", ""]


@pytest.fixture(scope="module")
def specs() -> dict[str, TableSpec]:
    shipped = {path.stem: load_spec_file(path) for path in spec_files(bundled_dir("tables"))}
    people = parse_spec(
        {
            "name": "people",
            "description": "People.",
            "columns": [
                {"name": "id", "type": "string", "nullable": False, "description": "Id."},
                {
                    "name": "email",
                    "type": "string",
                    "description": "Email.",
                    "sensitivity": "pii",
                    "mask": "redact",
                },
                {
                    "name": "card",
                    "type": "string",
                    "description": "Card.",
                    "sensitivity": "pii",
                    "mask": "partial",
                },
                {"name": "age", "type": "int64", "description": "Age.", "sensitivity": "pii"},
                {"name": "score", "type": "float64", "description": "Score."},
            ],
        },
        "people.yaml",
    )
    return {**shipped, "people": people}


@pytest.fixture(scope="module")
def masker(specs: dict[str, TableSpec]) -> Masker:
    return Masker(specs, KEY)


def test_sensitive_columns_come_from_the_specs(masker: Masker) -> None:
    assert masker.sensitive_columns("runs") == {"user": "hash", "recorded_by": "hash"}
    assert masker.sensitive_columns("people") == {
        "email": "redact",
        "card": "partial",
        "age": "null",
        "recorded_by": "hash",
    }
    with pytest.raises(TableNotFound, match="nope"):
        masker.sensitive_columns("nope")  # an unknown table is an error, never "nothing to mask"


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("redact", "alice@example.com", REDACTED),
        ("partial", "4111111111111234", "****1234"),
        ("partial", "1234", "****"),  # a short value shows nothing: its last 4 characters are all of it
        ("partial", "Zoë Müller", "****ller"),
        ("null", "alice", None),
        ("null", 42, None),
    ],
)
def test_each_mask_on_text(masker: Masker, kind: MaskKind, value: object, masked: object) -> None:
    assert masker.mask_value(kind, value) == masked


@pytest.mark.parametrize("kind", ["hash", "redact", "partial", "null"])
def test_null_stays_null_whatever_the_mask(masker: Masker, kind: MaskKind) -> None:
    assert masker.mask_value(kind, None) is None


def test_hash_is_deterministic_and_depends_on_the_key(specs: dict[str, TableSpec], masker: Masker) -> None:
    hashed = masker.mask_value("hash", "alice")
    assert isinstance(hashed, str) and hashed.startswith("h:") and len(hashed) == 18
    assert masker.mask_value("hash", "alice") == hashed
    assert Masker(specs, KEY).mask_value("hash", "alice") == hashed
    assert masker.mask_value("hash", "bob") != hashed
    assert Masker(specs, b"\x01" * 32).mask_value("hash", "alice") != hashed


def test_python_and_duckdb_compute_the_same_hash(masker: Masker) -> None:
    connection = duckdb.connect()
    expression = masker.sql_expression("runs", "user", "v")
    for value in VALUES:
        (from_sql,) = connection.execute(
            f"SELECT {expression} FROM (SELECT ?::VARCHAR AS v)", [value]
        ).fetchone()
        assert from_sql == masker.mask_value("hash", value), value


def test_python_and_duckdb_agree_on_partial_and_redact(masker: Masker) -> None:
    connection = duckdb.connect()
    for column, kind in (("card", "partial"), ("email", "redact")):
        expression = masker.sql_expression("people", column, "v")
        for value in [*VALUES, None]:
            (from_sql,) = connection.execute(
                f"SELECT {expression} FROM (SELECT ?::VARCHAR AS v)", [value]
            ).fetchone()
            assert from_sql == masker.mask_value(kind, value), (kind, value)


def _param(key: str, value: str) -> dict[str, object]:
    return {"run_id": "r1", "key": key, "value": value, "recorded_by": "alice"}


def test_params_whose_key_looks_secret_have_their_value_redacted(masker: Masker) -> None:
    rows = [
        _param("api_key", "sk-123"),
        _param("DB_PASSWORD", "hunter2"),
        _param("user_email", "a@b.c"),
        _param("lr", "0.01"),
    ]
    masked = masker.mask_rows("params", rows)
    assert [row["value"] for row in masked] == [REDACTED, REDACTED, REDACTED, "0.01"]
    assert [row["key"] for row in masked] == ["api_key", "DB_PASSWORD", "user_email", "lr"]
    assert {row["recorded_by"] for row in masked} == {masker.mask_value("hash", "alice")}
    assert rows[0]["value"] == "sk-123"  # the caller's rows are left as they were


def test_a_value_without_its_key_is_redacted(masker: Masker) -> None:
    assert masker.mask_rows("run_tags", [{"value": "0.01"}]) == [{"value": REDACTED}]


def test_key_values_as_the_api_returns_them(masker: Masker) -> None:
    assert masker.mask_key_values({"Slack_Token": "xoxb", "epochs": "3"}) == {
        "Slack_Token": REDACTED,
        "epochs": "3",
    }
    assert set(DEFAULT_SECRET_KEY_PATTERNS) == {"*password*", "*secret*", "*token*", "*api_key*", "*email*"}


def test_secret_key_patterns_are_a_parameter(specs: dict[str, TableSpec]) -> None:
    masker = Masker(specs, KEY, secret_key_patterns=["internal_*"])
    assert masker.mask_key_values({"INTERNAL_url": "x", "password": "p"}) == {
        "INTERNAL_url": REDACTED,
        "password": "p",
    }
    with pytest.raises(ValueError, match=r"use only `\*` and `\?`"):
        Masker(specs, KEY, secret_key_patterns=["[pP]assword"])


def _runs_rows(count: int) -> list[dict[str, object]]:
    users = [*VALUES, None]
    return [
        {"run_id": f"r{i}", "user": users[i % len(users)], "host": f"h{i % 3}", "recorded_by": f"ci-{i % 5}"}
        for i in range(count)
    ]


def test_mask_arrow_equals_mask_rows_row_by_row(masker: Masker) -> None:
    rows = _runs_rows(1000)
    masked = masker.mask_arrow("runs", pa.Table.from_pylist(rows))
    assert masked.to_pylist() == masker.mask_rows("runs", rows)
    people = [
        {
            "id": str(i),
            "email": VALUES[i % 7] if i % 4 else None,
            "card": f"4111{i:08d}",
            "age": i,
            "score": 0.5,
        }
        for i in range(1000)
    ]
    table = pa.Table.from_pylist(people)
    masked_people = masker.mask_arrow("people", table)
    assert masked_people.to_pylist() == masker.mask_rows("people", people)
    assert masked_people.schema.field("age").type == pa.int64() and masked_people.schema.field("age").nullable


def test_mask_arrow_of_key_values_equals_mask_rows(masker: Masker) -> None:
    keys = ["api_key", "DB_PASSWORD", "user_email", "lr", "my_token_2", "a%b", "apikey"]
    rows = [_param(keys[i % len(keys)], f"v{i}") for i in range(1000)]
    masked = masker.mask_arrow("params", pa.Table.from_pylist(rows))
    assert masked.to_pylist() == masker.mask_rows("params", rows)
    assert masker.mask_arrow("params", pa.table({"value": ["x"]})).to_pylist() == [{"value": REDACTED}]


def test_many_distinct_values_hash_in_duckdb_the_same(masker: Masker) -> None:
    rows = [{"run_id": str(i), "user": f"user{i}@example.com"} for i in range(PYTHON_HASH_LIMIT + 10)]
    masked = masker.mask_arrow("runs", pa.Table.from_pylist(rows))
    assert masked.to_pylist() == masker.mask_rows("runs", rows)


def test_mask_arrow_keeps_large_strings_large(masker: Masker) -> None:
    table = pa.table({"user": pa.array(["alice", None], pa.large_string())})
    masked = masker.mask_arrow("runs", table)
    assert masked.schema.field("user").type == pa.large_string()
    assert masked.column("user").to_pylist() == [masker.mask_value("hash", "alice"), None]


@pytest.fixture
def masked_runs(masker: Masker) -> duckdb.DuckDBPyConnection:
    raw_runs = pa.Table.from_pylist(
        [
            {"run_id": "r1", "user": "alice@example.com", "host": "a", "recorded_by": "alice@example.com"},
            {"run_id": "r2", "user": "alice@example.com", "host": "b", "recorded_by": "ci"},
            {"run_id": "r3", "user": "bob@example.com", "host": "a", "recorded_by": "ci"},
            {"run_id": "r4", "user": None, "host": "c", "recorded_by": "ci"},
        ]
    )
    raw_params = pa.Table.from_pylist([_param("db_password", "hunter2"), _param("lr", "0.01")])
    connection = duckdb.connect()
    connection.register("raw_runs", raw_runs)
    connection.register("raw_params", raw_params)
    connection.execute(
        f"CREATE VIEW runs AS {masker.masked_select('runs', 'raw_runs', raw_runs.column_names)}"
    )
    connection.execute(
        f"CREATE VIEW params AS {masker.masked_select('params', 'raw_params', raw_params.column_names)}"
    )
    return connection


def test_a_masked_view_selects_masked_values(masker: Masker, masked_runs: duckdb.DuckDBPyConnection) -> None:
    rows = masked_runs.sql("SELECT * FROM runs ORDER BY run_id").fetchall()
    alice = masker.mask_value("hash", "alice@example.com")
    assert rows[0] == ("r1", alice, "a", alice)
    assert rows[3] == ("r4", None, "c", masker.mask_value("hash", "ci"))
    assert masked_runs.sql("SELECT key, value FROM params ORDER BY key").fetchall() == [
        ("db_password", REDACTED),
        ("lr", "0.01"),
    ]


def test_masks_apply_before_predicates_joins_and_group_bys(
    masker: Masker, masked_runs: duckdb.DuckDBPyConnection
) -> None:
    assert masked_runs.sql("SELECT * FROM runs WHERE user = 'alice@example.com'").fetchall() == []
    assert masked_runs.sql("SELECT * FROM params WHERE value = 'hunter2'").fetchall() == []
    assert masked_runs.sql("SELECT count(DISTINCT user) FROM runs").fetchall() == [(2,)]
    grouped = masked_runs.sql(
        "SELECT user, count(*) FROM runs WHERE user IS NOT NULL GROUP BY user ORDER BY 2"
    )
    assert grouped.fetchall() == [
        (masker.mask_value("hash", "bob@example.com"), 1),
        (masker.mask_value("hash", "alice@example.com"), 2),
    ]
    joined = masked_runs.sql("SELECT count(*) FROM runs a JOIN runs b ON a.user = b.recorded_by").fetchall()
    assert joined == [(2,)]  # alice's two runs meet the row she recorded, by hash
    [(low, high)] = masked_runs.sql("SELECT min(user), max(user) FROM runs").fetchall()
    hashes = {masker.mask_value("hash", "alice@example.com"), masker.mask_value("hash", "bob@example.com")}
    assert {low, high} == hashes


def test_masked_select_quotes_and_keeps_unmarked_columns(masker: Masker) -> None:
    select = masker.masked_select("people", "raw", ["id", "score", "age"])
    assert select.startswith(
        'SELECT "id" AS "id", "score" AS "score", CAST(NULL AS BIGINT) AS "age" FROM raw'
    )
    assert masker.sql_expression("runs", "host", '"host"') == '"host"'


def test_the_key_file_is_created_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASK_KEY_ENV, raising=False)
    path = tmp_path / "config" / "metalake" / "mask-key"
    key = load_mask_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_mask_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["mask-key"]  # no draft left behind


def test_the_key_comes_from_the_environment_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASK_KEY_ENV, "ab" * 32)
    assert load_mask_key() == b"\xab" * 32
    monkeypatch.delenv(MASK_KEY_ENV)
    monkeypatch.setenv(MASK_KEY_FILE_ENV, str(tmp_path / "key"))
    assert load_mask_key() == load_mask_key(tmp_path / "key")
    monkeypatch.setenv(MASK_KEY_ENV, "not hex")
    with pytest.raises(MaskKeyError, match="must be hex"):
        load_mask_key()
    monkeypatch.setenv(MASK_KEY_ENV, "abcd")
    with pytest.raises(MaskKeyError, match="at least 16"):
        load_mask_key()


def test_a_profile_hides_the_values_of_sensitive_columns() -> None:
    profile = {
        "email": {
            "type": "VARCHAR",
            "null_count": 1,
            "distinct_estimate": 40,
            "min": "aaron@example.com",
            "max": "zoe@example.com",
            "top_values": ["alice@example.com"],
        },
        "age": {
            "type": "BIGINT",
            "null_count": 0,
            "distinct_estimate": 50,
            "min": 18,
            "max": 90,
            "mean": 41.5,
        },
    }
    masked = mask_profile(profile, {"email"})
    assert masked["email"] == {"type": "VARCHAR", "null_count": 1, "distinct_estimate": 40, "masked": True}
    assert masked["age"] == profile["age"]
    assert profile["email"]["min"] == "aaron@example.com"  # the given profile is left as it was
