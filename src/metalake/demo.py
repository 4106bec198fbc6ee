"""`metalake demo`: sample experiments, runs, metrics and a model written through the Lake API, then read back.

Each call adds one round (runs named r1-..., r2-...) and pins a snapshot `demo-round-N`, so it can run again and
again on the same lake. Curves come from the stdlib `random` and `math`, seeded by the round, so a round looks
the same on every machine.
"""

from __future__ import annotations

import json
import math
import platform
import random
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from metalake.cli_output import fetch_frame, frame_table
from metalake.tracking import new_run_id

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from metalake.lake import Lake

DEFAULT_DEMO_LAKE = "./demo-lake"
SNAPSHOT_PREFIX = "demo-round-"
MODEL = "churn-classifier"
STEPS = 40
STEP_SECONDS = 3.0
EXPERIMENTS = {
    "churn": ("Predict which subscribers cancel next month.", "growth-ml"),
    "demand": ("Forecast daily orders per warehouse, 14 days ahead.", "supply-ml"),
}


@dataclass
class Trial:
    """One simulated training run: its identity, its hyperparameters and the metric curves it logs."""

    experiment: str
    name: str
    params: dict[str, str]
    start: datetime
    run_id: str = ""
    diverges_at: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        steps = self.diverges_at + 1 if self.diverges_at is not None else STEPS
        return self.start + timedelta(seconds=steps * STEP_SECONDS)

    @property
    def status(self) -> str:
        return "failed" if self.diverges_at is not None else "finished"

    def last(self, key: str) -> float:
        values = [row["value"] for row in self.metrics if row["key"] == key]
        return float(values[-1]) if values else math.nan


@dataclass(frozen=True)
class DemoRound:
    """What one demo round wrote: enough for a caller (or a test) to check it."""

    lake_uri: str
    round: int
    snapshot: str
    run_ids: list[str]
    model_version: int


def run_demo(lake_uri: str, console: Console, *, actor: str | None = None) -> DemoRound:
    """Write one demo round to the lake at `lake_uri` and print what the lake now answers."""
    from rich.markup import escape

    import metalake

    lake = metalake.connect(lake_uri, actor=actor)
    taken = set(lake.snapshots().get_column("snapshot").to_list())
    number = 1 + sum(name.startswith(SNAPSHOT_PREFIX) for name in taken)
    while f"{SNAPSHOT_PREFIX}{number}" in taken:
        number += 1
    snapshot = f"{SNAPSHOT_PREFIX}{number}"
    rng = random.Random(number)
    reason = f"demo round {number}"
    console.print(f"[bold]metalake demo[/], round {number}, on {escape(lake.uri)}", soft_wrap=True)

    now = datetime.now(UTC).replace(microsecond=0)
    trials = _plan_trials(number, rng, start=now - timedelta(minutes=20))
    lake.append("experiments", _experiment_rows(), reason=reason)
    _track(lake, trials, rng, reason)
    console.print(f"  tracked {len(trials)} runs in {len(EXPERIMENTS)} experiments, {STEPS} steps each")
    version = _register_best_model(lake, trials, now, reason)
    console.print(f"  registered {MODEL} version {version} from the best run, moved to staging")
    lake.snapshot(snapshot, description=f"demo round {number}, before the late run")
    console.print(f"  pinned snapshot {snapshot}")
    late_start = now - timedelta(seconds=STEPS * STEP_SECONDS)
    late = Trial("churn", f"r{number}-late-retrain", {"learning_rate": "0.05", "max_depth": "6"}, late_start)
    _track(lake, [late], rng, f"{reason}, late run")
    console.print("  tracked one more run after the snapshot, to show time travel\n")

    _show(lake, console, number, snapshot)
    return DemoRound(lake.uri, number, snapshot, [t.run_id for t in [*trials, late]], version)


# -- writing ------------------------------------------------------------------------------------------------


def _plan_trials(number: int, rng: random.Random, start: datetime) -> list[Trial]:
    trials = []
    for learning_rate, depth in [(0.3, 4), (0.1, 6), (0.03, 8)]:
        params = {"learning_rate": str(learning_rate), "max_depth": str(depth), "n_estimators": "400"}
        trials.append(Trial("churn", f"r{number}-lr{learning_rate}-d{depth}", params, start))
    for learning_rate, hidden in [(0.01, 128), (0.5, 256)]:
        params = {"learning_rate": str(learning_rate), "hidden_size": str(hidden), "dropout": "0.1"}
        diverges = 12 + rng.randrange(10) if learning_rate > 0.2 else None
        trials.append(Trial("demand", f"r{number}-lr{learning_rate}-h{hidden}", params, start, "", diverges))
    for index, trial in enumerate(trials):  # one after another, as on a single GPU
        trial.start = start + timedelta(seconds=index * (STEPS * STEP_SECONDS + 15))
    return trials


def _experiment_rows() -> list[dict[str, Any]]:
    return [
        {"experiment": name, "description": text, "owner": team, "tags": {"team": team, "demo": "true"}}
        for name, (text, team) in EXPERIMENTS.items()
    ]


def _track(lake: Lake, trials: Sequence[Trial], rng: random.Random, reason: str) -> None:
    """Log runs the way a training job should: start events, then the facts, then the end events last.

    A reader never sees a finished run without its metrics; one commit per table, never one per value.
    """
    for trial in trials:
        trial.run_id = new_run_id(trial.start)
        trial.metrics = _curves(trial, rng)
    lake.append(
        "runs", [_run_event(lake, trial, "running", trial.start, rng) for trial in trials], reason=reason
    )
    params = [
        {"run_id": t.run_id, "key": key, "value": value} for t in trials for key, value in t.params.items()
    ]
    lake.append("params", params, reason=reason)
    lake.append("metrics", [row for trial in trials for row in trial.metrics], reason=reason)
    lake.append("runs", [_run_event(lake, t, t.status, t.end, rng) for t in trials], reason=reason)


def _run_event(lake: Lake, trial: Trial, status: str, at: datetime, rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": new_run_id(at),
        "run_id": trial.run_id,
        "experiment": trial.experiment,
        "name": trial.name,
        "status": status,
        "start_time": trial.start,
        "event_time": at,
    }
    if status == "running":
        flags = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in trial.params.items())
        event |= {
            "user": lake.actor,
            "host": platform.node() or "localhost",
            "command": f"python train.py {flags}",
            "python_version": platform.python_version(),
            "git_commit": f"{rng.getrandbits(160):040x}",
            "git_branch": "main",
            "git_dirty": False,
        }
    else:
        event["end_time"] = at
    if status == "failed":
        event |= {
            "error_type": "FloatingPointError",
            "error_message": f"loss diverged at step {trial.diverges_at}",
        }
    return event


def _curves(trial: Trial, rng: random.Random) -> list[dict[str, Any]]:
    """Realistic-looking curves: exponential decay to a floor, noise, a widening train/val gap, or divergence."""
    learning_rate = float(trial.params["learning_rate"])
    tau = STEPS * rng.uniform(0.12, 0.25) * (0.1 / min(learning_rate, 0.1)) ** 0.3
    floor = rng.uniform(0.25, 0.35)
    ceiling = rng.uniform(0.84, 0.91)
    rows = []
    last_step = trial.diverges_at if trial.diverges_at is not None else STEPS - 1
    for step in range(last_step + 1):
        decay = math.exp(-step / tau)
        train_loss = floor + (0.69 - floor) * decay + rng.gauss(0, 0.006)
        values = {"train_loss": train_loss}
        if trial.diverges_at is not None and step > trial.diverges_at - 4:
            blown = train_loss * 10 ** (step - trial.diverges_at + 4)
            # inf, not NaN: contracts.py refuses NaN in a required float column (reported as a bug).
            values["train_loss"] = math.inf if step == trial.diverges_at else blown
        if trial.experiment == "churn":
            values["val_loss"] = train_loss + 0.04 * step / STEPS + rng.gauss(0, 0.01)
            values["val_auc"] = min(0.5 + (ceiling - 0.5) * (1 - decay) + rng.gauss(0, 0.004), 0.999)
        else:
            values["val_mape"] = 6 + 24 * decay + rng.gauss(0, 0.3)
        at = trial.start + timedelta(seconds=(step + 1) * STEP_SECONDS)
        rows += [
            {"run_id": trial.run_id, "key": key, "value": value, "step": step, "timestamp": at}
            for key, value in values.items()
        ]
    return rows


def _register_best_model(lake: Lake, trials: Sequence[Trial], now: datetime, reason: str) -> int:
    candidates = [t for t in trials if t.experiment == "churn" and t.status == "finished"]
    best = max(candidates, key=lambda trial: trial.last("val_auc"))
    versions = lake.read("model_versions", columns=["model", "version"])
    version = 1 + max((v for m, v in versions.iter_rows() if m == MODEL), default=0)
    lake.append(
        "models",
        [
            {
                "model": MODEL,
                "description": "Churn risk per subscriber.",
                "owner": "growth-ml",
                "tags": {"demo": "true"},
            }
        ],
        reason=reason,
    )
    card = {
        "intended_use": "Rank subscribers for retention offers.",
        "val_auc": round(best.last("val_auc"), 4),
    }
    lake.append(
        "model_versions",
        [
            {
                "model": MODEL,
                "version": version,
                "run_id": best.run_id,
                "artifact_uri": f"s3://demo-artifacts/{MODEL}/{best.run_id}/model",
                "flavor": "sklearn",
                "card": json.dumps(card),
                "description": f"Best of round {best.name.split('-')[0]} by val_auc.",
            }
        ],
        reason=reason,
    )
    events = [
        {
            "event_id": new_run_id(now),
            "model": MODEL,
            "version": version,
            "event_type": "registered",
            "event_time": now,
        },
        {
            "event_id": new_run_id(now + timedelta(milliseconds=1)),
            "model": MODEL,
            "version": version,
            "event_type": "stage_transition",
            "stage": "staging",
            "reason": "best val_auc of the round",
            "event_time": now + timedelta(milliseconds=1),
        },
    ]
    lake.append("model_events", events, reason=reason)
    return version


# -- reading ------------------------------------------------------------------------------------------------

RUNS_QUERY = """
SELECT experiment, name, status, round(duration_s, 1) AS duration_s, error_type
FROM runs_current WHERE name LIKE ? ORDER BY start_time
"""
METRICS_QUERY = """
SELECT r.name, m.key, m.last_value, m.min_value, m.max_value, m.count
FROM metric_summary AS m JOIN runs_current AS r USING (run_id)
WHERE r.name LIKE ? AND m.key IN ('val_auc', 'val_mape')
ORDER BY r.experiment, m.key, r.name
"""
TIME_TRAVEL_QUERY = (
    "SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'finished') AS finished FROM runs_current"
)
AUDIT_QUERY = """
SELECT strftime(committed_at, '%H:%M:%S') AS "time (UTC)", table_name, version, operation, rows_added AS rows, reason
FROM audit_log LIMIT 10
"""


def _show(lake: Lake, console: Console, number: int, snapshot: str) -> None:
    pattern = [f"r{number}-%"]
    console.print(
        frame_table(_query(lake, RUNS_QUERY, pattern), title="Runs of this round (view runs_current)")
    )
    console.print(
        frame_table(_query(lake, METRICS_QUERY, pattern), title="Validation metrics (view metric_summary)")
    )
    then = _query(lake.as_of(snapshot), TIME_TRAVEL_QUERY)
    now = _query(lake, TIME_TRAVEL_QUERY)
    travel = _labelled([f"as of {snapshot}", "now"], [then, now])
    console.print(frame_table(travel, title="Time travel (runs_current)"))
    console.print(frame_table(_query(lake, AUDIT_QUERY), title="Latest commits (view audit_log)"))
    _print_next_steps(console, lake.uri, snapshot)


def _query(lake: Lake, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    return fetch_frame(lake.sql(sql, params))


def _labelled(labels: Sequence[str], frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    import polars as pl

    return pl.concat(
        [
            frame.select(pl.lit(label).alias("lake"), pl.all())
            for label, frame in zip(labels, frames, strict=True)
        ]
    )


def _print_next_steps(console: Console, uri: str, snapshot: str) -> None:
    from rich.markup import escape

    base = f"metalake --lake {shlex.quote(uri)}"
    commands = [
        f"{base} tables",
        f"{base} describe runs",
        f'{base} sql "select name, status, duration_s from runs_current order by start_time"',
        f"{base} sql \"select * from metric_summary where key = 'val_auc'\" --format csv",
        f'{base} sql "select count(*) from runs_current" --as-of {snapshot}',
        f"{base} history metrics --limit 5",
        f"{base} snapshots",
        f"{base} demo    # another round",
    ]
    console.print("[bold]Next commands to try:[/]")
    for command in commands:
        console.print(f"  {escape(command)}", soft_wrap=True)
