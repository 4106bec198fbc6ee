"""The import path earlier releases documented for `export_duckdb`; it lives in `metalake.exports` now."""

from metalake.exports.duckdb_file import export_duckdb

__all__ = ["export_duckdb"]
