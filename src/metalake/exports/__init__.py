"""Exports: the views transpiled to other SQL dialects, and the whole lake as one DuckDB file."""
