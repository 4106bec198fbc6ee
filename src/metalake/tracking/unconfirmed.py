"""What this process's journaled run writes changed, kept until their flushes are committed.

A write request answered once journaled (`durable="journaled"`) is durable but not yet in the tables. A read that
must show it (MLflow's `runs/get` right after `runs/update`) would wait for the group commit and then reload the
run tables: about 100 ms. Instead the read takes what is committed, without waiting, and lays over it the
changes of the run's flushes that are not committed yet. Only latest values are laid over (status, name, params,
tags, each metric's last point and its min and max, inputs): a metric's count and mean cover committed points.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metalake.core.masking import Masker
    from metalake.core.tables import Tables
    from metalake.tracking.group_commit import QueuedFlush
    from metalake.tracking.search import RunDetails

STATE_FIELDS = ("status", "end_time", "name", "deleted")  # what run events change, from the kept run state
PRUNE_ABOVE = 10_000  # runs with recorded changes before the committed ones are dropped from memory


@dataclass
class UnconfirmedChange:
    """What one journaled flush of a run changes."""

    flush: QueuedFlush
    creates: bool = False  # the run's first flush: while it is not committed, nothing of the run is
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    untagged: tuple[str, ...] = ()
    metrics: dict[str, tuple[int, datetime, float]] = field(
        default_factory=dict
    )  # key -> last (step, time, v)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        """Committed, or refused for good: either way, what the tables say is the truth."""
        return self.flush.state in ("committed", "refused")


_changes: dict[tuple[str, str], list[UnconfirmedChange]] = {}
_lock = threading.Lock()


def record(tables: Tables, run_id: str, change: UnconfirmedChange) -> None:
    """Keep a journaled flush's change until it is committed."""
    with _lock:
        _changes.setdefault((tables.location.uri, run_id), []).append(change)
        if len(_changes) > PRUNE_ABOVE:
            for key in [key for key, kept in _changes.items() if all(c.confirmed for c in kept)]:
                del _changes[key]


def unconfirmed(tables: Tables, run_id: str) -> list[UnconfirmedChange]:
    """The run's changes not committed yet, oldest first (committed ones are forgotten here)."""
    key = (tables.location.uri, run_id)
    with _lock:
        kept = [change for change in _changes.get(key, ()) if not change.confirmed]
        if kept:
            _changes[key] = kept
        else:
            _changes.pop(key, None)
        return kept


def last_points(points: Sequence[tuple[str, int, datetime, float]]) -> dict[str, tuple[int, datetime, float]]:
    """Each key's last point by (step, time), later ones winning ties, as the metric summaries order them."""
    last: dict[str, tuple[int, datetime, float]] = {}
    for key, step, moment, value in points:
        known = last.get(key)
        if known is None or (step, moment) >= known[:2]:
            last[key] = (step, moment, value)
    return last


def laid_over(
    details: RunDetails, changes: Sequence[UnconfirmedChange], state: Mapping[str, Any]
) -> RunDetails:
    """The committed run with the changes applied in order, and its state fields as the writes left them."""
    info = {**details.info, **{name: state.get(name) for name in STATE_FIELDS}}
    params, tags = dict(details.params), dict(details.tags)
    metrics = {key: dict(summary) for key, summary in details.metrics.items()}
    inputs = list(details.inputs)
    for change in changes:
        params.update(change.params)
        tags.update(change.tags)
        for key in change.untagged:
            tags.pop(key, None)
        for key, (step, moment, value) in change.metrics.items():
            summary = metrics.setdefault(key, {"min_value": value, "max_value": value, "count": 0})
            summary["min_value"] = min(summary["min_value"], value)
            summary["max_value"] = max(summary["max_value"], value)
            known = (summary.get("last_step"), summary.get("last_timestamp"))
            if known[0] is None or (step, moment) >= known:
                summary.update(last_value=value, last_step=step, last_timestamp=moment)
        inputs.extend(row for row in change.inputs if row not in inputs)
    return replace(details, info=info, params=params, tags=tags, metrics=metrics, inputs=inputs)


def masked_change(masker: Masker, change: UnconfirmedChange) -> UnconfirmedChange:
    """A change as a reader without `unmask` sees it: secret-looking params and tags redacted, inputs masked."""
    return replace(
        change,
        params=masker.mask_key_values(change.params),
        tags=masker.mask_key_values(change.tags),
        inputs=masker.mask_rows("run_inputs", change.inputs),
    )
