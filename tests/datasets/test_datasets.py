"""Datasets and versions: register from files, folders, Delta tables and frames; schema history; diff; bad input."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

import metalake
from metalake.core.tables import Tables
from metalake.errors import DatasetError, DatasetNotFound


def write_parquet(path: Path, **columns: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "train"
    write_parquet(data / "part-0.parquet", id=[1, 2, 3], city=["Oslo", "Rome", None])
    write_parquet(data / "part-1.parquet", id=[4, 5], city=["Lima", "Oslo"])
    return data


def test_register_a_folder_records_fingerprint_size_schema_and_profile(
    lake: metalake.Lake, folder: Path
) -> None:
    version = lake.datasets.register(
        "train", folder, description="training rows", owner="ml", tags={"a": "b"}
    )
    assert (version.name, version.version, version.created) == ("train", 1, True)
    assert version.row_count == 5 and version.file_count == 2
    assert version.bytes == sum(p.stat().st_size for p in folder.glob("*.parquet"))
    assert version.source_format == "parquet" and version.source_uri == str(folder.resolve())
    assert [(c["name"], c["type"]) for c in version.schema] == [("id", "BIGINT"), ("city", "VARCHAR")]
    assert version.profile["id"] == {
        "type": "BIGINT",
        "null_count": 0,
        "distinct_estimate": 5,
        "min": 1,
        "max": 5,
        "mean": 3.0,
    }
    assert version.profile["city"]["null_count"] == 1 and version.profile["city"]["min"] == "Lima"
    assert version.schema_changes is None  # nothing to compare version 1 with
    assert version.recorded_by == "tester" and version.recorded_at is not None
    stored = lake.read("dataset_versions").row(0, named=True)
    assert stored["recorded_by"] == "tester" and stored["fingerprint"] == version.fingerprint
    assert json.loads(stored["profile"])["id"]["max"] == 5
    about = lake.read("datasets").row(0, named=True)
    assert (about["description"], about["owner"], json.loads(about["tags"])) == (
        "training rows",
        "ml",
        {"a": "b"},
    )


def test_identical_content_is_the_same_version_whatever_its_files(
    lake: metalake.Lake, folder: Path, tmp_path: Path
) -> None:
    first = lake.datasets.register("train", folder)
    again = lake.datasets.register("train", folder)
    assert (again.version, again.created, again.fingerprint) == (1, False, first.fingerprint)
    # The same rows in one file, in another order: the same content.
    single = write_parquet(
        tmp_path / "one" / "all.parquet", id=[5, 4, 3, 2, 1], city=["Oslo", "Lima", None, "Rome", "Oslo"]
    )
    assert lake.datasets.register("train", single).version == 1
    assert lake.read("dataset_versions").height == 1
    assert lake.read("datasets").height == 1


def test_content_changes_make_new_versions_and_repeated_rows_count(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    path = write_parquet(tmp_path / "a.parquet", id=[1, 2])
    assert lake.datasets.register("d", path).version == 1
    write_parquet(tmp_path / "a.parquet", id=[1, 2, 2])
    assert lake.datasets.register("d", path).version == 2
    write_parquet(tmp_path / "a.parquet", id=[1, 2, 2, 2])  # xor of hashes alone would miss this one
    third = lake.datasets.register("d", path)
    assert third.version == 3 and third.row_count == 4


def test_csv_json_lines_and_globs(lake: metalake.Lake, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,score\n1,0.5\n2,0.25\n")
    (tmp_path / "rows.jsonl").write_text('{"id": 1, "score": 0.5}\n{"id": 2, "score": 0.25}\n')
    from_csv = lake.datasets.register("csv", tmp_path / "rows.csv")
    from_json = lake.datasets.register("json", tmp_path / "rows.jsonl")
    assert from_csv.source_format == "csv" and from_json.source_format == "json"
    assert from_csv.row_count == from_json.row_count == 2
    assert from_csv.profile["score"]["mean"] == pytest.approx(0.375)
    write_parquet(tmp_path / "g" / "x1.parquet", v=[1])
    write_parquet(tmp_path / "g" / "x2.parquet", v=[2])
    globbed = lake.datasets.register("glob", str(tmp_path / "g" / "x*.parquet"))
    assert globbed.file_count == 2 and globbed.row_count == 2


def test_frames_polars_pandas_and_arrow_share_a_fingerprint(lake: metalake.Lake) -> None:
    frame = pl.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "c"]})
    from_polars = lake.datasets.register("mem", frame)
    assert from_polars.source_uri == "memory:polars" and from_polars.file_count is None
    assert lake.datasets.register("mem", frame.to_pandas()).version == 1
    assert lake.datasets.register("mem", frame.to_arrow()).version == 1
    assert lake.datasets.register("mem", frame.lazy()).version == 1


def test_a_delta_table_source_records_its_version_and_reads_back_pinned(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    table = str(tmp_path / "events")
    write_deltalake(table, pa.table({"x": [1, 2]}))
    write_deltalake(table, pa.table({"x": [3]}), mode="append")
    version = lake.datasets.register("events", table)
    assert (version.source_format, version.delta_version, version.row_count) == ("delta", 1, 3)
    write_deltalake(table, pa.table({"x": [4]}), mode="append")
    _, frame = lake.datasets.to_pandas("events", 1)
    assert sorted(frame["x"]) == [1, 2, 3]  # the Delta version recorded, not the latest


def test_schema_changes_are_recorded_flagged_and_shown_in_the_view(lake: metalake.Lake) -> None:
    lake.datasets.register("s", pl.DataFrame({"id": [1], "age": pl.Series([30], dtype=pl.Int32), "x": ["a"]}))
    second = lake.datasets.register(
        "s", pl.DataFrame({"id": ["1"], "age": pl.Series([31], dtype=pl.Int64), "y": [1.0]})
    )
    changes = {c.column: (c.change, c.breaking) for c in second.schema_changes or []}
    assert changes == {
        "id": ("type_changed", True),
        "age": ("type_changed", False),  # INTEGER -> BIGINT widens: old readers still follow
        "x": ("removed", True),
        "y": ("added", False),
    }
    assert second.breaking
    view = lake.sql(
        "select dataset, version, previous_version, column_name, change, old_type, new_type, breaking "
        "from schema_changes order by column_name"
    ).fetchall()
    assert view == [
        ("s", 2, 1, "age", "type_changed", "INTEGER", "BIGINT", False),
        ("s", 2, 1, "id", "type_changed", "BIGINT", "VARCHAR", True),
        ("s", 2, 1, "x", "removed", "VARCHAR", None, True),
        ("s", 2, 1, "y", "added", None, "DOUBLE", False),
    ]
    third = lake.datasets.register("s", pl.DataFrame({"id": ["2"], "age": [32], "y": [2.0]}))
    assert third.schema_changes == [] and not third.breaking


def test_diff_shows_schema_and_profile_differences(lake: metalake.Lake) -> None:
    lake.datasets.register("d", pl.DataFrame({"id": [1, 2, 3], "gone": [1, 1, 1]}))
    lake.datasets.register("d", pl.DataFrame({"id": [1, 2, 3, None], "new": ["a", "b", "c", "d"]}))
    difference = lake.datasets.diff("d", 1, 2)
    assert difference.row_count == (3, 4) and difference.breaking
    assert {(c.column, c.change) for c in difference.schema_changes} == {
        ("gone", "removed"),
        ("new", "added"),
    }
    nulls = difference.profile.filter((pl.col("column") == "id") & (pl.col("statistic") == "null_count"))
    assert nulls.select("old", "new", "changed").row(0) == ("0", "1", True)
    with pytest.raises(DatasetNotFound, match=r"has no version 9\. Its versions: 1, 2"):
        lake.datasets.diff("d", 1, 9)


def test_views_current_freshness_and_history(lake: metalake.Lake) -> None:
    lake.datasets.register("a", pl.DataFrame({"x": [1]}), owner="team-a")
    lake.datasets.register("a", pl.DataFrame({"x": [1, 2]}), description="now two rows")
    lake.datasets.register("b", pl.DataFrame({"x": [1]}))
    current = lake.datasets.list()
    assert current.select("dataset", "version", "versions", "row_count", "owner", "description").rows() == [
        ("a", 2, 2, 2, "team-a", "now two rows"),
        ("b", 1, 1, 1, None, None),
    ]
    freshness = lake.sql(
        "select dataset, version, age_seconds from dataset_freshness order by dataset"
    ).fetchall()
    assert [(d, v) for d, v, _ in freshness] == [("a", 2), ("b", 1)]
    assert all(0 <= age < 600 for _, _, age in freshness)
    history = lake.datasets.history("a")
    assert history.get_column("version").to_list() == [1, 2]
    assert history.get_column("rows").to_list() == [1, 2]


def test_concurrent_registrations_never_share_a_version_number(lake_path: Path) -> None:
    """Threads race for version numbers: each content gets its own number, identical contents share one."""
    frames = [pl.DataFrame({"x": [i]}) for i in range(4)] + [pl.DataFrame({"x": [0]})]

    def register(frame: pl.DataFrame) -> tuple[int, str]:
        version = metalake.connect(lake_path).datasets.register("raced", frame)
        return version.version, version.fingerprint

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(register, frames))
    stored = metalake.connect(lake_path).read("dataset_versions").select("version", "fingerprint")
    assert sorted(stored.get_column("version").to_list()) == [1, 2, 3, 4]
    assert stored.get_column("fingerprint").n_unique() == 4
    assert outcomes[0] == outcomes[4]  # the same content, one version


def test_resolve_input_registers_a_path_or_finds_a_version(lake: metalake.Lake, folder: Path) -> None:
    registered = lake.datasets.resolve_input("train", path=str(folder))
    assert registered.version == 1
    assert lake.datasets.resolve_input("train").fingerprint == registered.fingerprint
    with pytest.raises(DatasetNotFound, match=r"Unknown dataset 'nope'\. Known datasets: train"):
        lake.datasets.resolve_input("nope")


# -- bad input ------------------------------------------------------------------------------------------------


def test_a_missing_path_is_named(lake: metalake.Lake, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such.parquet"
    with pytest.raises(DatasetError, match=f"Path not found: {missing}"):
        lake.datasets.register("d", missing)
    assert lake.read("dataset_versions").is_empty() and lake.read("datasets").is_empty()


def test_mixed_schema_parquet_files_are_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    write_parquet(tmp_path / "m" / "a.parquet", id=[1], name=["x"])
    write_parquet(tmp_path / "m" / "b.parquet", id=[2.5], other=[1])
    with pytest.raises(
        DatasetError, match=r"must share a schema, but .*b\.parquet has \(id double, other int64\)"
    ):
        lake.datasets.register("d", tmp_path / "m")
    assert lake.read("dataset_versions").is_empty()


def test_mixed_schema_csv_files_are_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.csv").write_text("id,name\n1,x\n")
    (tmp_path / "c" / "b.csv").write_text("id,other,more\n2,3,4\n")
    with pytest.raises(DatasetError, match=r"Cannot read .*/c: .*[Ss]chema mismatch"):
        lake.datasets.register("d", tmp_path / "c")


def test_mixed_formats_are_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    write_parquet(tmp_path / "f" / "a.parquet", id=[1])
    (tmp_path / "f" / "b.csv").write_text("id\n2\n")
    with pytest.raises(DatasetError, match="mixes file formats"):
        lake.datasets.register("d", tmp_path / "f")


def test_an_unreadable_file_is_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(DatasetError, match=r"Cannot read .*broken\.parquet as Parquet"):
        lake.datasets.register("d", broken)
    if os.geteuid() != 0:  # root reads everything
        locked = write_parquet(tmp_path / "locked.parquet", id=[1])
        locked.chmod(0)
        with pytest.raises(DatasetError, match="permission denied"):
            lake.datasets.register("d", locked)


def test_an_empty_dataset_is_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    empty = write_parquet(tmp_path / "empty.parquet", id=pa.array([], pa.int64()))
    with pytest.raises(DatasetError, match="holds no rows: an empty dataset is not registered"):
        lake.datasets.register("d", empty)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetError, match="holds no rows"):
        lake.datasets.register("d", tmp_path / "empty.csv")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="holds no data files"):
        lake.datasets.register("d", tmp_path / "nothing")
    with pytest.raises(DatasetError, match="holds no rows"):
        lake.datasets.register("d", pd.DataFrame({"id": pd.Series([], dtype="int64")}))
    assert lake.read("dataset_versions").is_empty()


def test_a_past_lake_refuses_to_register(lake: metalake.Lake) -> None:
    created = lake.created_at()
    assert created is not None
    lake.datasets.register("d", pl.DataFrame({"x": [1]}))
    past = lake.as_of(created)
    with pytest.raises(metalake.ReadOnlyLakeError, match="register datasets through the live lake"):
        past.datasets.register("d", pl.DataFrame({"x": [2]}))
    with pytest.raises(DatasetNotFound):
        past.datasets.get("d")  # it did not exist then


def test_bad_names_and_sources(lake: metalake.Lake) -> None:
    with pytest.raises(DatasetError, match="not a valid dataset name"):
        lake.datasets.register("", pl.DataFrame({"x": [1]}))
    with pytest.raises(DatasetError, match="Cannot register data of type int"):
        lake.datasets.register("d", 42)
    with pytest.raises(DatasetNotFound, match="Unknown dataset 'ghost'"):
        lake.datasets.get("ghost")


def test_changed_files_are_not_read_as_an_old_version(lake: metalake.Lake, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", id=[1, 2])
    lake.datasets.register("d", path)
    write_parquet(tmp_path / "d.parquet", id=[7, 8, 9])
    with pytest.raises(DatasetError, match="is no longer d v1: its content changed"):
        lake.datasets.to_pandas("d", 1)
    frame_version = lake.datasets.register("m", pl.DataFrame({"id": [1]}))
    with pytest.raises(DatasetError, match="registered from an in-memory frame"):
        lake.datasets.to_pandas("m", frame_version.version)


def test_object_store_files_are_read_through_pyarrow(
    lake: metalake.Lake, s3_server: Any, tmp_path: Path
) -> None:
    from support.workers import s3_client

    bucket = s3_server.create_bucket()
    client = s3_client(s3_server.endpoint)
    local = write_parquet(tmp_path / "x.parquet", id=[1, 2, 3])
    client.upload_file(str(local), bucket, "data/part-0.parquet")
    uri = f"s3://{bucket}/data"
    version = lake.datasets.register("remote", uri, storage_options=s3_server.storage_options)
    assert (version.row_count, version.file_count, version.source_uri) == (3, 1, uri)
    assert version.fingerprint == lake.datasets.register("local", local).fingerprint
    with pytest.raises(DatasetError, match=f"Path not found: s3://{bucket}/nothing"):
        lake.datasets.register("remote", f"s3://{bucket}/nothing", storage_options=s3_server.storage_options)


# -- review fixes ---------------------------------------------------------------------------------------------


def test_the_version_is_claimed_before_the_description_is_written(
    lake: metalake.Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration that fails to record its version leaves no description behind."""
    commit = Tables.commit

    def failing_versions(self: Tables, table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "dataset_versions":
            raise metalake.StorageError("storage went away")
        return commit(self, table, *args, **kwargs)

    monkeypatch.setattr(Tables, "commit", failing_versions)
    with pytest.raises(metalake.StorageError):
        lake.datasets.register("d", pl.DataFrame({"x": [1]}), description="never recorded")
    assert lake.read("datasets").is_empty() and lake.read("dataset_versions").is_empty()


def test_same_content_with_a_new_description_records_only_the_description(lake: metalake.Lake) -> None:
    frame = pl.DataFrame({"x": [1, 2]})
    first = lake.datasets.register("d", frame, owner="a")
    assert first.created and first.metadata_updated
    again = lake.datasets.register("d", frame, description="two rows")
    assert (again.version, again.created, again.metadata_updated) == (1, False, True)
    same = lake.datasets.register("d", frame, description="two rows")
    assert (same.created, same.metadata_updated) == (False, False)
    assert lake.read("dataset_versions").height == 1 and lake.read("datasets").height == 2


def test_a_pandas_frame_arrow_cannot_type_is_a_dataset_error(lake: metalake.Lake) -> None:
    with pytest.raises(DatasetError, match=r"Cannot read the pandas frame as Arrow: .*astype\(str\)"):
        lake.datasets.register("d", pd.DataFrame({"mixed": [1, "a", 2.5]}))
    assert lake.read("datasets").is_empty()


def test_a_relative_glob_is_recorded_absolute_and_brackets_in_a_name_are_not_a_pattern(
    lake: metalake.Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_parquet(tmp_path / "g" / "x1.parquet", v=[1])
    write_parquet(tmp_path / "g" / "x2.parquet", v=[2])
    monkeypatch.chdir(tmp_path)
    globbed = lake.datasets.register("glob", "g/x*.parquet")
    assert globbed.source_uri == str(tmp_path.resolve() / "g" / "x*.parquet")
    monkeypatch.chdir(tmp_path / "g")  # read back from elsewhere: the recorded pattern still finds the files
    _, frame = lake.datasets.to_pandas("glob")
    assert sorted(frame["v"]) == [1, 2]
    bracketed = write_parquet(tmp_path / "a[1].parquet", v=[7])
    version = lake.datasets.register("bracketed", bracketed)
    assert (version.row_count, version.source_uri) == (1, str(bracketed.resolve()))


def test_mixed_schema_json_lines_files_are_refused(lake: metalake.Lake, tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.jsonl").write_text('{"id": 1, "name": "x"}\n')
    (tmp_path / "j" / "b.jsonl").write_text('{"id": "two", "other": 3}\n')
    with pytest.raises(
        DatasetError,
        match=r"must share a schema, but .*b\.jsonl differs from .*a\.jsonl: "
        r"name missing; other only there; id is VARCHAR there, BIGINT here",
    ):
        lake.datasets.register("d", tmp_path / "j")
    assert lake.read("dataset_versions").is_empty()
    # Numbers of either kind and all-null columns are the same schema.
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "a.jsonl").write_text('{"id": 1, "score": null}\n')
    (tmp_path / "k" / "b.jsonl").write_text('{"score": 0.5, "id": 2.5}\n')
    assert lake.datasets.register("k", tmp_path / "k").row_count == 2


def test_nan_statistics_are_stored_as_json_null(lake: metalake.Lake) -> None:
    version = lake.datasets.register("n", pl.DataFrame({"x": [1.0, float("nan")], "y": [1.0, float("inf")]}))
    assert version.profile["x"]["max"] is None and version.profile["x"]["mean"] is None
    assert version.profile["y"]["max"] == "inf"
    stored = lake.read("dataset_versions").row(0, named=True)["profile"]
    assert "NaN" not in stored and "Infinity" not in stored
    json.loads(stored, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_a_projection_keeps_the_data_order_and_an_empty_one_reads_no_columns(
    lake: metalake.Lake, tmp_path: Path
) -> None:
    path = write_parquet(tmp_path / "d.parquet", a=[1, 2, 3], b=["x", "y", "z"], c=[0.1, 0.2, 0.3])
    version = lake.datasets.register("d", path)
    assert list(lake.datasets.frame_of(version, columns=["c", "a"]).columns) == ["a", "c"]
    nothing = lake.datasets.frame_of(version, columns=["nope"])
    assert nothing.shape == (3, 0)


def test_object_store_tsv_files_are_read_with_tabs(
    lake: metalake.Lake, s3_server: Any, tmp_path: Path
) -> None:
    from support.workers import s3_client

    bucket = s3_server.create_bucket()
    client = s3_client(s3_server.endpoint)
    local = tmp_path / "rows.tsv"
    local.write_text("id\tname\n1\ta,b\n2\tc\n")
    client.upload_file(str(local), bucket, "t/rows.tsv")
    remote = lake.datasets.register(
        "tsv", f"s3://{bucket}/t/rows.tsv", storage_options=s3_server.storage_options
    )
    assert remote.columns == ["id", "name"] and remote.row_count == 2
    assert remote.profile["name"]["min"] == "a,b"
