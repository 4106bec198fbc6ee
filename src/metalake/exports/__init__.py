"""Exports: the views transpiled to other SQL dialects, and the whole lake as one DuckDB file."""

from metalake.exports.duckdb_file import DuckDbExport, export_duckdb
from metalake.exports.views import ViewsExport, export_views

__all__ = ["DuckDbExport", "ViewsExport", "export_duckdb", "export_views"]
