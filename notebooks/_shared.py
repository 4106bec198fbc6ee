"""What the notebooks in this folder share: opening the lake they read, and reading a metric's name.

The notebooks import it as `_shared`: Jupyter, `jupyter execute` and nbclient run a notebook from its own folder,
which is on the kernel's import path. It is not part of the metalake package: guessing from a metric's name
which way is better, or which metric a reader would rank by, suits a notebook that names nothing, not an API.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from deltalake import DeltaTable

import metalake
from metalake.core.storage import resolve

# At the repository root, where `make demo` builds it.
DEMO_LAKE = Path(__file__).resolve().parents[1] / "demo-lake"

# Words of a metric's name that make it lower-is-better: losses, errors, rates of false alarms or misses, time.
LOWER_IS_BETTER = frozenset(
    {
        "loss", "losses", "logloss", "nll", "perplexity", "brier",
        "error", "errors", "err", "mae", "mse", "rmse", "mape", "smape", "wer", "cer",
        "false", "fpr", "fnr", "fdr", "miss", "misses",
        "latency", "duration",
    }
)  # fmt: skip
NEGATED = frozenset({"neg"})  # scikit-learn's scorers negate errors: neg_log_loss is higher-is-better
HELD_OUT = frozenset({"val", "valid", "validation", "test", "eval", "holdout"})
PREFERENCE = ("auc", "f1", "accuracy", "acc", "precision", "recall", "r2", "mape", "rmse", "mae", "loss")


def open_lake() -> metalake.Lake:
    """The lake at `$METALAKE_URI`, else the demo lake at the repository root; it must exist already.

    `metalake.connect` creates a lake where there is none; a notebook that reads a lake must not, or a missing
    demo lake would turn into an empty one. Raises FileNotFoundError saying how to build the demo lake.
    """
    chosen = os.environ.get("METALAKE_URI")
    location = resolve(chosen or str(DEMO_LAKE))
    if not DeltaTable.is_deltatable(location.table_uri("_catalog"), location.storage_options):
        raise FileNotFoundError(
            f"There is no metalake lake at {location.uri}, where $METALAKE_URI points: set it to an existing "
            "lake, or unset it to read the demo lake."
            if chosen
            else f"There is no demo lake at {location.uri} yet: build it with `make demo` at the repository "
            "root (twice, for two rounds), or set METALAKE_URI to the lake to read."
        )
    lake = metalake.connect(chosen or DEMO_LAKE)
    print(f"Reading the lake at {lake.uri}")
    return lake


def words_of(name: str) -> list[str]:
    """The lowercase words of a metric or parameter name: `val_false_alarm_rate` -> val, false, alarm, rate."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)  # camelCase too: valLoss -> val Loss
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def direction_of(metric: str) -> str:
    """'min' when lower is better (losses, errors, false alarm and miss rates, latency), else 'max'.

    A negated error (`neg_mean_squared_error`, scikit-learn's convention) is higher-is-better.
    """
    words = set(words_of(metric))
    lower_is_better = bool(words & LOWER_IS_BETTER) and not words & NEGATED
    return "min" if lower_is_better else "max"


def main_metric(metrics: list[str]) -> str:
    """The metric a reader would rank by: a held-out one (val_, test_, eval_) first, then a usual order."""

    def rank(metric: str) -> tuple[bool, int, str]:
        words = words_of(metric)
        held_out = bool(set(words) & HELD_OUT)
        preference = next((i for i, word in enumerate(PREFERENCE) if word in words), len(PREFERENCE))
        return (not held_out, preference, metric.lower())

    return min(metrics, key=rank)
