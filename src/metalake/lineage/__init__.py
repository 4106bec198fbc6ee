"""Pipelines and lineage: OpenLineage events stored as facts, and the lineage graph walked over them."""
