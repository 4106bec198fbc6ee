"""metalake: the single source of truth for ML metadata, as versioned Delta Lake tables."""

from metalake._version import __version__
from metalake.errors import (
    ContractError,
    ContractFailure,
    DatasetError,
    DatasetNotFound,
    FlushError,
    IngestError,
    MetalakeError,
    MissingExtraError,
    QueryError,
    ReadOnlyLakeError,
    SchemaEvolutionError,
    SnapshotExists,
    SnapshotNotFound,
    SpecError,
    StorageError,
    SuiteError,
    TableNotFound,
    ViewError,
)
from metalake.lake import Commit, Lake, connect

__all__ = [
    "Commit",
    "ContractError",
    "ContractFailure",
    "DatasetError",
    "DatasetNotFound",
    "FlushError",
    "IngestError",
    "Lake",
    "MetalakeError",
    "MissingExtraError",
    "QueryError",
    "ReadOnlyLakeError",
    "SchemaEvolutionError",
    "SnapshotExists",
    "SnapshotNotFound",
    "SpecError",
    "StorageError",
    "SuiteError",
    "TableNotFound",
    "ViewError",
    "__version__",
    "connect",
]
