"""Experiment tracking: runs, their params, tags and metrics, buffered and group-committed."""
