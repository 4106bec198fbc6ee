"""The core: specs, contracts, Delta storage, SQL and time travel. It knows no domain: no runs, models or KPIs."""

from metalake.core.catalog import ColumnSpec, TableSpec
from metalake.core.tables import Commit, Moment, Tables

__all__ = ["ColumnSpec", "Commit", "Moment", "TableSpec", "Tables"]
