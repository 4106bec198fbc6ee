"""Experiment tracking: runs, their params, tags and metrics, buffered and group-committed."""

from metalake.tracking.runs import Run, Runs
from metalake.tracking.search import RunDetails

__all__ = ["Run", "RunDetails", "Runs"]
