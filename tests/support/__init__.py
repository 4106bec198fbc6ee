"""Test helpers: workers for spawned processes, sample lakes, OpenLineage samples."""
