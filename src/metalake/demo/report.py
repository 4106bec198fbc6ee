"""What the demo prints after a round: the leaderboard, the data-quality scorecard, the KPI impact of this
round's deployments (all read back through the SQL views), then commands to try next."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from metalake.cli.output import fetch_frame, frame_table
from metalake.demo.target import SNAPSHOT_PREFIX

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from metalake.demo.rounds import DemoRound
    from metalake.errors import PolicyViolation
    from metalake.lake import Lake

LEADERBOARD_SQL = """
SELECT experiment, metric || ' (' || direction || ')' AS metric, name AS best_run,
       printf('%.4f', value) AS value, runs
FROM leaderboard
WHERE (metric IN ('val_auc', 'val_accuracy') AND direction = 'max') OR (metric = 'val_loss' AND direction = 'min')
ORDER BY experiment, metric
"""
SCORECARD_SQL = """
SELECT dataset, 'v' || latest_version || CASE WHEN latest_success THEN ' passed' ELSE ' FAILED' END AS latest,
       CASE WHEN len(recent_pass_rates) > 4 THEN '… ' ELSE '' END
       || array_to_string(list_transform(list_slice(recent_pass_rates, -4, -1), lambda r: printf('%.2f', r)), ' → ')
       AS "pass rates, oldest → latest",
       trend, validations
FROM dq_scorecard ORDER BY dataset
"""
IMPACT_SQL = """
SELECT deployment_id, deployed_at, model, version, environment, kpi, before_mean, after_mean, change, improved,
       offline_metrics['val_auc'] AS val_auc, training_data_ok
FROM model_kpi_impact
WHERE list_contains(?, deployment_id) AND environment <> 'staging' AND segment IS NULL
ORDER BY deployed_at, model, kpi
"""
REGISTRY_SQL = "select model, version, stage, aliases from registry_current order by model, version"
ROUNDED = re.compile(r"\d+\.\d{5,}")  # a number the policy's message prints with more digits than it needs


def refusal(console: Console, violation: PolicyViolation) -> None:
    """The policy's answer, as the registry gave it: every broken rule and why (numbers to 4 decimals)."""
    from rich.panel import Panel
    from rich.text import Text

    message = ROUNDED.sub(lambda number: f"{float(number[0]):.4f}", str(violation))
    console.print(
        Panel(
            Text(message),
            title=f"Promotion refused: {violation.model} v{violation.version} -> {violation.stage}",
            title_align="left",
            border_style="red",
        )
    )


def show(lake: Lake, console: Console, lake_uri: str, written: DemoRound) -> None:
    """Print the three views the round feeds (each fits 100 columns), then the next commands."""
    leaderboard = frame_table(
        _query(lake, LEADERBOARD_SQL), title="Leaderboard (view leaderboard): the best run per metric"
    )
    console.print(_right_aligned(leaderboard, "value"))
    scorecard = frame_table(
        _query(lake, SCORECARD_SQL),
        title="Data quality (view dq_scorecard): each dataset's latest validation and recent pass rates",
    )
    console.print(scorecard)
    impact = _query(lake, IMPACT_SQL, [list(written.deployment_ids)])
    console.print(impact_table(impact, written.deployments, written.round), end="")
    next_commands(console, lake_uri, written)


def impact_table(frame: pl.DataFrame, roles: Mapping[str, str], round_number: int) -> Text:
    """model_kpi_impact's rows for the round's deployments, within 100 columns: a line per deployment (when,
    which version in which role, its offline score and whether its training data passed), then a line per KPI
    with its means before and after, the change and whether it goes the KPI's way."""
    from rich.text import Text

    kpi_width = max([len("kpi"), *(len(kpi) for kpi in frame.get_column("kpi"))]) + 2
    columns = ("before", "after", "change")
    text = Text(
        f"Model KPI impact of round {round_number} (view model_kpi_impact): "
        "KPI means, 7 days before vs after\n",
        style="italic",
    )
    text.append(f"  {'kpi':<{kpi_width}}" + "".join(f"{name:>9}" for name in columns) + "\n", style="bold")
    shown = None
    for row in frame.iter_rows(named=True):
        if row["deployment_id"] != shown:
            shown = row["deployment_id"]
            data = {True: "training data passed", False: "training data FAILED validation"}
            text.append(
                f"{row['deployed_at']:%Y-%m-%d}  {row['model']} v{row['version']}, "
                f"{roles.get(shown, row['environment'])} (val_auc {_number(row['val_auc'], digits=4)}, "
                + data.get(row["training_data_ok"], "training data not all validated")
                + ")\n",
                style="bold red" if row["training_data_ok"] is False else "bold",
            )
        numbers = (row["before_mean"], row["after_mean"])
        text.append(
            f"  {row['kpi']:<{kpi_width}}"
            + "".join(f"{_number(value):>9}" for value in numbers)
            + f"{_number(row['change'], signed=True):>9}  "
        )
        verdict = {True: ("better", "green"), False: ("worse", "red")}.get(row["improved"], ("", ""))
        text.append(verdict[0] + "\n", style=verdict[1])
    return text


def _number(value: float | None, *, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _right_aligned(table: Table, *names: str) -> Table:
    """Numbers the query formatted as text (to fixed decimals) still line up on the right."""
    for column in table.columns:
        if column.header in names:
            column.justify = "right"
    return table


def _query(lake: Lake, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    return fetch_frame(lake.sql(sql, params))


def next_commands(console: Console, lake_uri: str, written: DemoRound) -> None:
    """Commands to try on the lake; the time-travel one compares the previous round's snapshot with now."""
    from rich.markup import escape

    base = f"metalake --lake {shlex.quote(lake_uri)}"
    production = written.production["tumor-classifier"]
    versions = written.dataset_versions
    commands = [
        f'{base} runs list --experiment tumor-classification --order-by "metrics.val_auc desc"',
        f"{base} datasets history breast_cancer",
        f"{base} datasets diff breast_cancer {versions['breast_cancer']} {versions['breast_cancer:broken']}",
        f"{base} quality report breast_cancer",
        f"{base} models show tumor-classifier production",
        f"{base} models list",
        f"{base} lineage show model:tumor-classifier/{production} --upstream",
        f"{base} deploy list --env production",
        f"{base} kpis impact --model tumor-classifier --env production",
        f'{base} sql "select model, version, stage, valid_from, valid_to from model_stage_history order by valid_from"',
    ]
    past = f"{SNAPSHOT_PREFIX}{written.round - 1}" if written.round > 1 else written.snapshot
    time_travel = f'{base} sql "{REGISTRY_SQL}" --as-of {past}'
    if written.round > 1:
        commands += [
            f"{time_travel}    # the registry after round {written.round - 1}",
            f'{base} sql "{REGISTRY_SQL}"    # and now: new versions, v{production} in production',
            f"{base} demo    # another round: new data, new models, a new production version",
        ]
    else:
        commands += [
            f"{base} demo    # round 2: new data, new models, a new production version",
            f"{time_travel}    # then: the registry as round 1 left it (v1 in production)",
            f'{base} sql "{REGISTRY_SQL}"    # against now',
        ]
    console.print("\n[bold]Next commands to try:[/]")
    for command in commands:
        console.print(f"  {escape(command)}", soft_wrap=True)
