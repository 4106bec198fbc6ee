"""Datasets as metadata: versions with fingerprint, schema and profile, and their diffs."""
