"""Experiment tracking: runs, their params, tags and metrics, buffered and group-committed."""

from metalake.tracking.run import Run
from metalake.tracking.runs import Runs
from metalake.tracking.search import RunDetails

__all__ = ["Run", "RunDetails", "Runs"]
