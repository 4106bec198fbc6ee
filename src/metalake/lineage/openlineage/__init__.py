"""OpenLineage events: parsing, checks, and the rows an event adds to the lake."""

from metalake.lineage.openlineage.events import Event, parse_event

__all__ = ["Event", "parse_event"]
