"""The exported Spark SQL run on a local Spark session over the sample lake, answer for answer against DuckDB.

Opt-in: `pip install pyspark delta-spark` (and a Java runtime), then `pytest tests/exports/test_views_spark.py`; skipped
otherwise, as in CI. The views' answers need pyspark only: the tables reach Spark as Parquet copies of their
current Delta versions. Running 00_tables.sql on the Delta tables themselves needs delta-spark, whose session
fetches Delta's jars from Maven at start.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metalake
from metalake.core.sql import bundled_views
from metalake.exports.views import TABLES_FILE, ViewsExport, export_views

pytest.importorskip("pyspark", reason="pip install pyspark delta-spark to run the views on Spark")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)

from pyspark.sql import Row, SparkSession

SPARK_DIALECTS = ("spark", "databricks")  # Databricks SQL as far as open-source Spark runs it
DELTA_SPARK_MISSING = "pip install delta-spark to register the Delta tables on Spark"


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local Spark session in UTC (with Delta when delta-spark is installed), as the views assume."""
    saved_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"  # Spark hands timestamps to Python as naive local times
    time.tzset()
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("metalake-views")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
    )
    if _has_delta_spark():
        from delta import configure_spark_with_delta_pip

        builder = builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension").config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        builder = configure_spark_with_delta_pip(builder)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        if saved_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved_tz
        time.tzset()


@pytest.fixture(scope="module", params=SPARK_DIALECTS)
def spark_views(
    request: pytest.FixtureRequest,
    spark: SparkSession,
    sample_lake: metalake.Lake,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ViewsExport, dict[str, str]]]:
    """The sample lake's tables as Parquet copies and every exported view, as temporary views on Spark.

    Yields the export and the views Spark refused, with its message (each one's test fails with it).
    """
    folder = tmp_path_factory.mktemp(f"{request.param}-views")
    exported = export_views(folder / "views", request.param, lake_uri=sample_lake.uri)
    for table in exported.tables:
        copy = folder / "tables" / f"{table}.parquet"
        copy.parent.mkdir(exist_ok=True)
        pq.write_table(sample_lake.arrow_dataset(table).to_table(), copy)
        spark.read.parquet(str(copy)).createOrReplaceTempView(table)
    refused = {}
    for name in exported.views:
        # temporary: a permanent view may not read the temporary views that hold the tables
        sql = (exported.folder / f"{name}.sql").read_text()
        sql = sql.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1)
        try:
            spark.sql(sql.rstrip().removesuffix(";"))
        except Exception as error:
            refused[name] = str(error).strip().splitlines()[0]
    yield exported, refused
    for name in [*exported.tables, *exported.views]:
        spark.catalog.dropTempView(name)


# Known differences, each checked to still hold (strict xfail): remove an entry once its cause is gone.
DIFFERENT_ANSWERS: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(bundled_views()))
def test_each_exported_view_answers_on_spark_as_on_duckdb(
    request: pytest.FixtureRequest,
    name: str,
    spark_views: tuple[ViewsExport, dict[str, str]],
    spark: SparkSession,
    sample_lake: metalake.Lake,
) -> None:
    exported, refused = spark_views
    if name in exported.skipped:
        pytest.skip(f"not exported: {exported.skipped[name]}")
    assert name not in refused, f"Spark refused {name}.sql: {refused[name]}"
    if name in DIFFERENT_ANSWERS:
        request.applymarker(pytest.mark.xfail(reason=DIFFERENT_ANSWERS[name], strict=True))
    frame = spark.sql(f"SELECT * FROM {name}")
    expected = pa.table(sample_lake.sql(f'SELECT * FROM "{name}"'))  # any DuckDB: through the Arrow stream
    assert frame.columns == expected.column_names
    ages = {i for i, column in enumerate(frame.columns) if column.startswith("age_")}
    got = sorted((_comparable(tuple(row), ages, spark=True) for row in frame.collect()), key=repr)
    want = sorted((_comparable(tuple(row.values()), ages) for row in expected.to_pylist()), key=repr)
    assert got == want


def test_the_tables_file_registers_the_delta_tables_and_the_views_run_on_them(
    spark: SparkSession, sample_lake: metalake.Lake, tmp_path: Path
) -> None:
    if not _has_delta_spark():
        pytest.skip(DELTA_SPARK_MISSING)
    exported = export_views(tmp_path / "views", "spark", lake_uri=sample_lake.uri)
    spark.sql("CREATE DATABASE IF NOT EXISTS metalake_views")
    spark.sql("USE metalake_views")
    try:
        for statement in _statements((tmp_path / "views" / TABLES_FILE).read_text()):
            spark.sql(statement)
        for table in exported.tables:
            rows = spark.sql(f"SELECT count(*) FROM {table}").collect()[0][0]
            assert rows == sample_lake.arrow_dataset(table).count_rows(), table
        for name in exported.views:
            spark.sql((exported.folder / f"{name}.sql").read_text().rstrip().removesuffix(";"))
            rows = spark.sql(f"SELECT count(*) FROM {name}").collect()[0][0]
            assert rows == sample_lake.sql(f'SELECT count(*) FROM "{name}"').fetchall()[0][0], name
    finally:
        spark.sql("USE default")
        spark.sql("DROP DATABASE metalake_views CASCADE")


def _comparable(row: tuple[Any, ...], ages: set[int], *, spark: bool = False) -> tuple[Any, ...]:
    """A row's values in one form for both engines; ages (measured against each engine's now()) only as present."""
    return tuple(
        (value is not None) if i in ages else _normalized(value, spark=spark) for i, value in enumerate(row)
    )


def _normalized(value: Any, *, spark: bool) -> Any:
    """Spark's or DuckDB's Python value with structs as tuples, maps as sorted pairs, times as naive UTC.

    Spark gives a struct as a Row and a map as a dict; DuckDB (through Arrow) a struct as a dict and a map as a
    list of (key, value) pairs.
    """
    if isinstance(value, Row):
        return tuple(_normalized(item, spark=spark) for item in value)
    if isinstance(value, dict) and spark:
        return tuple(
            sorted((_normalized(k, spark=spark), _normalized(v, spark=spark)) for k, v in value.items())
        )
    if isinstance(value, dict):
        return tuple(_normalized(item, spark=spark) for item in value.values())
    if not spark and isinstance(value, list) and value and all(isinstance(i, tuple) for i in value):
        return tuple(sorted((_normalized(k, spark=spark), _normalized(v, spark=spark)) for k, v in value))
    if isinstance(value, list | tuple):
        return tuple(_normalized(item, spark=spark) for item in value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str) and value.lower() == "nan":  # text made from a number: each engine's spelling
        return "nan"
    if isinstance(value, float | Decimal):
        number = float(value)
        return "nan" if math.isnan(number) else round(number, 6)
    return value


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in body.split(";\n") if statement.strip()]


def _has_delta_spark() -> bool:
    try:
        import delta  # noqa: F401
    except ImportError:
        return False
    return True
