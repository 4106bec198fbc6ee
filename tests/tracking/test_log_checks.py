"""Log calls check their values against the table contracts at the call: a bad value raises there, and the run
keeps every good fact it logged (a bad key used to fail the run's whole flush at the end, losing the run)."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

import metalake
from metalake import ContractError, DatasetNotFound


def current(lake: metalake.Lake, run_id: str) -> dict[str, object]:
    frame = lake.sql("select * from runs_current where run_id = ?", [run_id]).pl()
    assert frame.height == 1, f"run {run_id} is not in the lake"
    return frame.row(0, named=True)


def metric_points(lake: metalake.Lake, run_id: str) -> list[tuple[str, float, int]]:
    return lake.sql(
        'select "key", "value", step from metrics where run_id = ? order by step, "key"', [run_id]
    ).fetchall()


def test_a_bad_metric_key_raises_at_the_call_and_the_run_keeps_its_good_facts(lake: metalake.Lake) -> None:
    with pytest.raises(ContractError) as caught, lake.runs.start(experiment="churn") as run:
        run.log_params({"lr": 0.1})
        run.log_metric("loss", 0.4, step=0)
        run.log_metrics({"loss": 0.3, "k" * 260: 1.0}, step=1)
    message = str(caught.value)
    assert caught.value.table == "metrics" and caught.value.failures[0].column == "key"
    assert "text length 260 out of range" in message and "log_metrics call" in message
    assert "what the run logged before is kept" in message
    lake.runs.wait()
    state = current(lake, run.run_id)
    assert (state["status"], state["error_type"]) == ("failed", "ContractError")
    assert lake.runs.get(run.run_id).params == {"lr": "0.1"}
    assert metric_points(lake, run.run_id) == [("loss", 0.4, 0)], "the refused call keeps none of its points"


def test_a_run_that_catches_the_refusal_finishes_with_everything_else(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn") as run:
        run.log_metric("loss", 0.4, step=0)
        with pytest.raises(ContractError):
            run.log_metric("k" * 251, 1.0)
        run.log_metric("loss", 0.3, step=1)
    assert current(lake, run.run_id)["status"] == "finished"
    assert metric_points(lake, run.run_id) == [("loss", 0.4, 0), ("loss", 0.3, 1)]


def test_a_script_that_ignores_the_error_no_longer_loses_the_run_silently(tmp_path: Path) -> None:
    """The reported case, as a user runs it: the process used to exit 0 with the run gone."""
    lake_path = tmp_path / "lake"
    script = (
        "import metalake\n"
        f"lake = metalake.connect({str(lake_path)!r})\n"
        "with lake.runs.start(experiment='churn') as run:\n"
        "    run.log_params({'lr': 0.1})\n"
        "    run.log_metrics({'loss': 0.3, 'k' * 260: 1.0}, step=0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "ContractError" in done.stderr and "text length 260" in done.stderr
    lake = metalake.connect(lake_path)
    runs = lake.sql("select run_id, status from runs_current").fetchall()
    assert [status for _, status in runs] == ["failed"]
    assert lake.runs.get(runs[0][0]).params == {"lr": "0.1"}


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (1.5, "fractional part"),
        (2**63, "out of the int64 range"),
        (-1, "value out of range [ge(0)]"),
        ("3", "expected an integer, got str"),
        (True, "expected an integer, got a bool"),
        (math.inf, "expected an integer"),
        (None, "null in a required column"),
    ],
)
def test_a_step_that_is_not_a_whole_number_in_range_is_refused(
    lake: metalake.Lake, step: object, reason: str
) -> None:
    with lake.runs.start(experiment="churn") as run, pytest.raises(ContractError) as caught:
        run.log_metric("loss", 0.3, step=step)  # type: ignore[arg-type]
    assert caught.value.failures[0].column == "step" and reason in str(caught.value)
    assert metric_points(lake, run.run_id) == []


def test_a_whole_float_step_is_stored_as_that_integer(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn") as run:
        run.log_metric("loss", 0.3, step=2.0)  # type: ignore[arg-type]
    assert metric_points(lake, run.run_id) == [("loss", 0.3, 2)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.3", "expected a real number, got str"),
        (None, "null in a required column"),
        (10**400, "out of the float64 range"),
        (1 + 2j, "expected a real number, got complex"),
    ],
)
def test_a_metric_value_that_is_not_a_real_number_is_refused(
    lake: metalake.Lake, value: object, reason: str
) -> None:
    with lake.runs.start(experiment="churn") as run, pytest.raises(ContractError) as caught:
        run.log_metric("loss", value)  # type: ignore[arg-type]
    assert caught.value.failures[0].column == "value" and reason in str(caught.value)


def test_nan_and_infinities_stay_legal_metric_values(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn") as run:
        run.log_metrics({"loss": math.nan, "grad": math.inf}, step=0)
    assert len(metric_points(lake, run.run_id)) == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "text length 0 out of range"),
        ("loss\ud800", "lone surrogate"),
        ("loss\n", "text does not match the pattern"),
        (7, "expected text, got int"),
    ],
)
def test_bad_metric_keys_are_refused_by_name(lake: metalake.Lake, key: object, reason: str) -> None:
    with lake.runs.start(experiment="churn") as run, pytest.raises(ContractError) as caught:
        run.log_metrics({"loss": 0.1, key: 0.2})  # type: ignore[dict-item]
    assert caught.value.failures[0].column == "key" and reason in str(caught.value)
    assert metric_points(lake, run.run_id) == []


def test_params_and_tags_are_checked_at_the_call(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn") as run:
        run.log_param("depth", 6)
        with pytest.raises(ContractError, match="log_params call"):
            run.log_params({"lr": 0.1, "p" * 251: 1})
        with pytest.raises(ContractError, match="lone surrogate"):
            run.log_param("name", "caf\udce9")
        with pytest.raises(ContractError, match="set_tags call"):
            run.set_tags({"bad\tkey": "x"})
        run.set_tag("team", "growth")
    details = lake.runs.get(run.run_id)
    assert (details.params, details.tags, details.status) == ({"depth": "6"}, {"team": "growth"}, "finished")


def test_a_timestamp_is_checked_and_read_as_utc(lake: metalake.Lake) -> None:
    far_east = timezone(timedelta(hours=14))
    with lake.runs.start(experiment="churn") as run:
        with pytest.raises(ContractError, match="range of UTC times"):
            run.log_metric("loss", 0.1, timestamp=datetime(1, 1, 1, tzinfo=far_east))
        run.log_metric("loss", 0.1, timestamp=datetime(2026, 3, 1, 12, 0))  # naive: UTC
    stored = lake.sql("select timestamp from metrics").fetchall()[0][0]
    assert stored == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- item: log_input of a dataset version the lake does not hold ------------------------------------------------


def test_log_input_of_an_unregistered_dataset_is_refused_with_the_known_ones(lake: metalake.Lake) -> None:
    lake.datasets.register("churn_train", pl.DataFrame({"id": [1, 2]}))
    with lake.runs.start(experiment="churn") as run, pytest.raises(DatasetNotFound) as caught:
        run.log_input("nope_ds", version=3)
    assert "Unknown dataset 'nope_ds'" in str(caught.value) and "churn_train" in str(caught.value)
    assert lake.read("run_inputs").height == 0


def test_log_input_of_an_unknown_version_lists_the_dataset_versions(lake: metalake.Lake) -> None:
    lake.datasets.register("churn_train", pl.DataFrame({"id": [1, 2]}))
    lake.datasets.register("churn_train", pl.DataFrame({"id": [1, 2, 3]}))
    with lake.runs.start(experiment="churn") as run:
        with pytest.raises(DatasetNotFound) as caught:
            run.log_input("churn_train", version=3)
        run.log_input("churn_train", version=2, context="training")
    assert "has no version 3. Its versions: 1, 2" in str(caught.value)
    assert lake.read("run_inputs").select("dataset", "version").rows() == [("churn_train", 2)]
    assert current(lake, run.run_id)["status"] == "finished"


def test_log_input_takes_a_path_object(lake: metalake.Lake, tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    pl.DataFrame({"id": [1, 2, 3]}).write_parquet(data)
    with lake.runs.start(experiment="churn") as run:
        run.log_input("churn_train", path=data)
    assert lake.read("run_inputs").select("version", "path").rows() == [(1, str(data))]


def test_quick_calls_for_one_key_and_step_never_share_a_primary_key(lake: metalake.Lake) -> None:
    with lake.runs.start(experiment="churn", wait=True) as run:
        for value in range(2000):  # faster than the clock ticks: timestamps are made strictly increasing
            run.log_metric("loss", float(value))
    assert lake.sql("select count(*), count(distinct timestamp) from metrics").fetchall() == [(2000, 2000)]


def test_start_checks_the_run_description(lake: metalake.Lake) -> None:
    with pytest.raises(ContractError, match="No run was started") as caught:
        lake.runs.start(experiment="churn", name="caf\udce9")
    assert caught.value.failures[0].column == "name"
    with pytest.raises(ContractError, match="No run was started") as caught:
        lake.runs.start(experiment="churn", tags={"": "x"})
    assert caught.value.table == "run_tags"


def test_an_error_message_that_utf8_cannot_store_still_ends_the_run(lake: metalake.Lake) -> None:
    with pytest.raises(OSError), lake.runs.start(experiment="churn") as run:
        run.log_param("lr", 0.1)
        raise OSError("cannot open caf\udce9.csv")  # a file name decoded with surrogateescape
    state = current(lake, run.run_id)
    assert (state["status"], state["error_message"]) == ("failed", "cannot open caf\\udce9.csv")


def test_log_artifact_checks_its_name(lake: metalake.Lake, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")
    with lake.runs.start(experiment="churn") as run:
        with pytest.raises(ContractError, match="log_artifact call"):
            run.log_artifact(model, name="model\udce9")
        run.log_artifact(model)
    assert lake.read("artifacts").get_column("name").to_list() == ["model.pkl"]


def test_a_point_repeating_a_given_timestamp_is_refused_at_the_call(lake: metalake.Lake) -> None:
    moment = datetime(2026, 3, 1, tzinfo=UTC)
    with lake.runs.start(experiment="churn") as run:
        run.log_metric("loss", 1.0, step=0, timestamp=moment)
        with pytest.raises(
            ContractError, match="already logged a point of this key at this step and timestamp"
        ):
            run.log_metric("loss", 2.0, step=0, timestamp=moment)
        run.log_metric("loss", 2.0, step=1, timestamp=moment)
    assert current(lake, run.run_id)["status"] == "finished"
    assert metric_points(lake, run.run_id) == [("loss", 1.0, 0), ("loss", 2.0, 1)]
