"""What the demo prints after a round: the leaderboard, the data-quality scorecard, the KPI impact of this
round's deployments (all read back through the SQL views), then commands to try next."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metalake.cli_output import fetch_frame, frame_table

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from metalake.demo.rounds import DemoRound
    from metalake.errors import PolicyViolation
    from metalake.lake import Lake

LEADERBOARD_SQL = """
SELECT experiment, metric, direction, name AS best_run, round(value, 4) AS value, runs
FROM leaderboard
WHERE (metric IN ('val_auc', 'val_accuracy') AND direction = 'max') OR (metric = 'val_loss' AND direction = 'min')
ORDER BY experiment, metric
"""
SCORECARD_SQL = """
SELECT dataset, latest_version, latest_success, round(latest_pass_rate, 2) AS latest_pass_rate,
       list_transform(recent_pass_rates, lambda rate: round(rate, 2)) AS recent_pass_rates, trend, validations
FROM dq_scorecard ORDER BY dataset
"""
IMPACT_SQL = """
SELECT model, version, environment, strftime(deployed_at, '%Y-%m-%d %H:%M') AS deployed_at, kpi,
       round(before_mean, 2) AS before, round(after_mean, 2) AS after, round(change, 2) AS change, improved,
       round(offline_metrics['val_auc'], 4) AS val_auc, training_data_ok
FROM model_kpi_impact
WHERE list_contains(?, deployment_id) AND environment <> 'staging'
ORDER BY deployed_at, model, kpi
"""


def refusal(console: Console, violation: PolicyViolation) -> None:
    """The policy's answer, as the registry gave it: every broken rule and why."""
    from rich.panel import Panel
    from rich.text import Text

    console.print(
        Panel(
            Text(str(violation)),
            title=f"Promotion refused: {violation.model} v{violation.version} -> {violation.stage}",
            title_align="left",
            border_style="red",
        )
    )


def show(lake: Lake, console: Console, lake_uri: str, written: DemoRound) -> None:
    """Print the three views the round feeds, then the next commands."""
    console.print(
        frame_table(
            _query(lake, LEADERBOARD_SQL), title="Leaderboard (view leaderboard): the best run per metric"
        )
    )
    console.print(
        frame_table(
            _query(lake, SCORECARD_SQL),
            title="Data quality (view dq_scorecard): latest validation and recent pass rates, oldest first",
        )
    )
    console.print(
        frame_table(
            _query(lake, IMPACT_SQL, [list(written.deployment_ids)]),
            title=f"Model KPI impact of round {written.round} (view model_kpi_impact): 7 days before vs after",
        )
    )
    next_commands(console, lake_uri, written)


def _query(lake: Lake, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    return fetch_frame(lake.sql(sql, params))


def next_commands(console: Console, lake_uri: str, written: DemoRound) -> None:
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
        f'{base} sql "select dataset, latest_success, trend from dq_scorecard" --as-of {written.snapshot}',
        f"{base} demo    # another round: new data, new models, a new production version",
    ]
    console.print("\n[bold]Next commands to try:[/]")
    for command in commands:
        console.print(f"  {escape(command)}", soft_wrap=True)
