"""OpenLineage events: parsing, checks, and the rows an event adds to the lake."""
