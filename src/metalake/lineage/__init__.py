"""Pipelines and lineage: OpenLineage events stored as facts, and the lineage graph walked over them."""

from metalake.lineage.lineage import IngestResult, Lineage

__all__ = ["IngestResult", "Lineage"]
