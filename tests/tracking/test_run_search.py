"""Querying runs: search with MLflow-style expressions, get, metric history, and the run views."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metalake
from metalake import MetalakeError, QueryError


@pytest.fixture(scope="module")
def runs_lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    lake = metalake.connect(Path(tmp_path_factory.mktemp("runs")) / "lake", actor="tester")
    grid = [
        ("churn", 4, 0.10, [0.70, 0.80]),
        ("churn", 6, 0.10, [0.75, 0.91]),
        ("churn", 8, 0.30, [0.60, 0.85]),
    ]
    for experiment, depth, lr, aucs in grid:
        with lake.runs.start(experiment=experiment, name=f"xgb-depth{depth}", tags={"team": "growth"}) as run:
            run.log_params({"depth": depth, "lr": lr})
            for step, auc in enumerate(aucs):
                run.log_metrics({"val_auc": auc, "loss": 1 - auc}, step=step)
    with lake.runs.start(experiment="fraud", name="baseline") as run:
        run.log_params({"depth": 6})
        run.log_metric("val_auc", 0.5)
    with pytest.raises(RuntimeError), lake.runs.start(experiment="churn", name="crashed") as run:
        run.log_metric("val_auc", 0.99)
        raise RuntimeError("out of memory")
    return lake


def names(frame: object) -> list[str]:
    return frame.get_column("name").to_list()  # type: ignore[attr-defined]


def test_search_gives_one_wide_row_per_run(runs_lake: metalake.Lake) -> None:
    runs = runs_lake.runs.search(experiment="churn")
    assert runs.height == 4
    assert {"params.depth", "params.lr", "metrics.val_auc", "metrics.loss", "tags.team"} <= set(runs.columns)
    assert not [c for c in runs.columns if c.endswith((".min", ".max", ".mean", ".count"))]
    best = runs.filter(runs["name"] == "xgb-depth6").row(0, named=True)
    assert (best["params.depth"], best["metrics.val_auc"], best["status"]) == ("6", 0.91, "finished")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("params.depth = '6' and metrics.val_auc > 0.8", ["xgb-depth6"]),
        ("params.depth = '4' or params.depth = '8'", ["xgb-depth4", "xgb-depth8"]),
        ("params.depth in ('4', '6') and status = 'finished'", ["xgb-depth4", "xgb-depth6"]),
        ("params.depth is null", ["crashed"]),
        ("metrics.val_auc.max >= 0.85 and metrics.val_auc.min < 0.65", ["xgb-depth8"]),
        ("metrics.loss.mean < 0.2", ["xgb-depth6"]),
        ("not (name like 'xgb%')", ["crashed"]),
        ("tags.team = 'growth' and metrics.val_auc.count = 2 and params.lr > 0.2", ["xgb-depth8"]),
        ("metrics.val_auc between 0.85 and 0.91", ["xgb-depth6", "xgb-depth8"]),
        ("params.lr BETWEEN 0.05 AND 0.2 and params.depth between 5 and 8", ["xgb-depth6"]),
        ("metrics.val_auc not between 0.8 and 0.95", ["crashed"]),
        ("not (metrics.loss.min between 0.1 and 0.18) and params.depth in (4, 8)", ["xgb-depth4"]),
    ],
)
def test_search_filters(runs_lake: metalake.Lake, where: str, expected: list[str]) -> None:
    assert sorted(names(runs_lake.runs.search(experiment="churn", where=where))) == expected


def test_search_orders_and_limits(runs_lake: metalake.Lake) -> None:
    ordered = runs_lake.runs.search(experiment="churn", order_by="metrics.val_auc desc")
    assert names(ordered)[:3] == ["crashed", "xgb-depth6", "xgb-depth8"]
    top = runs_lake.runs.search(where="status = 'finished'", order_by=["metrics.val_auc desc"], limit=2)
    assert names(top) == ["xgb-depth6", "xgb-depth8"]
    assert runs_lake.runs.search(experiment="fraud").height == 1


def test_search_answers_the_columns_asked_for_in_the_same_order(runs_lake: metalake.Lake) -> None:
    whole = runs_lake.runs.search(experiment="churn", order_by="metrics.val_auc desc")
    ids = runs_lake.runs.search(
        experiment="churn", order_by="metrics.val_auc desc", columns=["run_id", "name"]
    )
    assert ids.columns == ["run_id", "name"]
    assert ids.rows() == whole.select("run_id", "name").rows()
    with pytest.raises(QueryError, match="Unknown columns"):
        runs_lake.runs.search(columns=["run_id", "nope"])


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("params.nope = '1'", "No params key 'nope'"),
        ("metrics.val_auc >", "a name or a value must come after '>'"),
        ("drop table runs", "unknown name 'drop'"),
        ("name = 'x'; select 1", "';' has no place in a search expression"),
    ],
)
def test_bad_expressions_are_explained(runs_lake: metalake.Lake, where: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        runs_lake.runs.search(where=where)


@pytest.mark.parametrize(
    ("where", "problem", "at"),
    [
        ("(metrics.val_auc > 0.8 or params.depth = '6'", "this '(' is never closed", 0),
        ("metrics.val_auc > 0.8)", "this ')' closes no '('", 21),
        ("metrics.val_auc > 0.8 or", "a condition must follow 'OR', not the end of the expression", 24),
        ("metrics.val_auc > 0.8 and and params.depth = '6'", "a condition must follow 'AND', not 'and'", 26),
        ("metrics.val_auc >", "a name or a value must come after '>'", 17),
        ("metrics.val_auc between 0.8 or 0.9", "BETWEEN needs AND between its bounds, not 'or'", 28),
        ("metrics.val_auc 0.8", "metrics.val_auc needs a comparison here, not '0.8'", 16),
        ("params.depth in '4'", "IN needs a list in parentheses", 16),
        ("params.depth in ('4', )", "IN (...) takes numbers or quoted texts, not ')'", 22),
        ("name = 'xgb", "this text is never closed", 7),
        ("metrics.val_auc = 'high'", "metrics.val_auc is a number; compare it with a number", 18),
        ("status = 'finished' metrics.loss < 1", "expected AND, OR or the end of the expression", 20),
        (
            "params.nope = '1'",
            "No params key 'nope' among the runs searched. Known params keys: depth, lr",
            0,
        ),
        ("metrics. > 1", "a key must follow 'metrics.'", 8),
    ],
)
def test_a_mistake_is_shown_under_a_caret_without_sql(
    runs_lake: metalake.Lake, where: str, problem: str, at: int
) -> None:
    with pytest.raises(QueryError) as refused:
        runs_lake.runs.search(where=where)
    message = str(refused.value)
    assert problem in message
    assert f"  {where}\n  {' ' * at}^" in message, message
    assert f"at character {at + 1}:" in message
    for leaked in ("Parser Error", "__runs", "TRY_CAST", "select "):
        assert leaked not in message


def test_bad_order_by(runs_lake: metalake.Lake) -> None:
    with pytest.raises(QueryError, match="Cannot order by"):
        runs_lake.runs.search(order_by="metrics.val_auc sideways")


def test_get_and_metric_history(runs_lake: metalake.Lake) -> None:
    run_id = runs_lake.runs.search(where="name = 'xgb-depth6'").get_column("run_id")[0]
    details = runs_lake.runs.get(run_id)
    assert details.status == "finished"
    assert details.params == {"depth": "6", "lr": "0.1"}
    assert details.tags == {"team": "growth"}
    assert details.metrics["val_auc"]["last_value"] == 0.91 and details.metrics["val_auc"]["count"] == 2
    history = runs_lake.runs.metric_history([run_id], "val_auc")
    assert history.get_column("value").to_list() == [0.75, 0.91]
    assert history.columns == ["run_id", "step", "timestamp", "value"]
    with pytest.raises(metalake.MetalakeError, match="No run"):
        runs_lake.runs.get("missing")


def test_run_views(runs_lake: metalake.Lake) -> None:
    best = runs_lake.sql(
        "select name, value from leaderboard where experiment = 'churn' and metric = 'val_auc' and direction = 'max'"
    ).fetchall()
    assert best == [("xgb-depth6", 0.91)]  # the crashed run logged more, but did not finish
    lowest_loss = runs_lake.sql(
        "select name from leaderboard where experiment = 'churn' and metric = 'loss' and direction = 'min'"
    ).fetchall()
    assert lowest_loss == [("xgb-depth6",)]
    wide = runs_lake.sql(
        "select params['depth'], metrics['val_auc'] from runs_wide where name = 'xgb-depth4'"
    )
    assert wide.fetchall() == [("4", 0.8)]
    differing = runs_lake.sql(
        "select distinct key from run_comparison where experiment = 'churn' and kind = 'param' and differs_in_experiment"
    ).fetchall()
    assert sorted(differing) == [("depth",), ("lr",)]


SEARCH_WORDS = [
    "(", ")", "and", "or", "not", "in", "is", "null", "between", "like", ",", "=", "!=", "<", ">=",
    "metrics.val_auc", "metrics.loss.min", "params.depth", "params.lr", "tags.team", "status", "name", "nope",
    "0.8", "-1", "6", "'6'", "'xgb%'", "'", "true", ";", "metrics.",
]  # fmt: skip


def answers_or_explains(lake: metalake.Lake, where: str) -> None:
    """A search gives runs, or a MetalakeError that neither is a DuckDB parser error nor shows generated SQL."""
    try:
        found = lake.runs.search(where=where)
    except MetalakeError as error:
        message = str(error)
        assert "Parser Error" not in message and "__runs" not in message and "TRY_CAST" not in message, (
            message
        )
    else:
        assert "run_id" in found.columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_text_gives_runs_or_a_clear_error(runs_lake: metalake.Lake, text: str) -> None:
    answers_or_explains(runs_lake, text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(SEARCH_WORDS), min_size=1, max_size=9))
def test_any_sequence_of_search_words_gives_runs_or_a_clear_error(
    runs_lake: metalake.Lake, words: list[str]
) -> None:
    answers_or_explains(runs_lake, " ".join(words))


# -- a metric key that ends like a summary (`loss.min`) never collides with the summary of another (`loss`) -------


@pytest.fixture(scope="module")
def suffix_lake(tmp_path_factory: pytest.TempPathFactory) -> metalake.Lake:
    lake = metalake.connect(Path(tmp_path_factory.mktemp("suffix")) / "lake", actor="tester")
    with lake.runs.start(experiment="churn", name="both") as run:
        run.log_metrics({"loss": 0.9, "loss.min": 0.5}, step=0)
        run.log_metrics({"loss": 0.7}, step=1)
    with lake.runs.start(experiment="churn", name="plain") as run:
        run.log_metrics({"loss": 0.4}, step=0)
    return lake


def test_search_keeps_a_metric_whose_key_ends_like_a_summary(suffix_lake: metalake.Lake) -> None:
    runs = suffix_lake.runs.search(order_by="name")
    metric_columns = sorted(c for c in runs.columns if c.startswith("metrics."))
    assert metric_columns == ["metrics.loss", "metrics.loss.min"], "no dropped metric, no stray _right column"
    assert runs.select("name", "metrics.loss", "metrics.loss.min").rows() == [
        ("both", 0.7, 0.5),
        ("plain", 0.4, None),
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("metrics.loss.min < 0.6", ["both"]),  # the logged metric named loss.min wins
        ("metrics.`loss.min` < 0.6", ["both"]),  # quoted: always the whole key
        ("metrics.`loss`.min < 0.6", ["plain"]),  # quoted key, then .min: always the summary
        ("metrics.`loss`.max > 0.8", ["both"]),
        ("metrics.loss.count = 2", ["both"]),  # no metric named loss.count: the summary of loss
        ("metrics.loss < 0.6", ["plain"]),
    ],
)
def test_a_suffix_names_the_metric_or_the_summary_unambiguously(
    suffix_lake: metalake.Lake, where: str, expected: list[str]
) -> None:
    assert names(suffix_lake.runs.search(where=where, order_by="name")) == expected


def test_ordering_by_a_summary_next_to_a_suffixed_key(suffix_lake: metalake.Lake) -> None:
    assert names(suffix_lake.runs.search(order_by="metrics.`loss`.min")) == ["plain", "both"]
    assert names(suffix_lake.runs.search(order_by="metrics.loss.min desc")) == ["both", "plain"]
