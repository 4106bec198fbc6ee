"""Datasets as metadata: versions with fingerprint, schema and profile, and their diffs."""

from metalake.datasets.datasets import DatasetDiff, Datasets, DatasetVersion, SchemaChange

__all__ = ["DatasetDiff", "DatasetVersion", "Datasets", "SchemaChange"]
