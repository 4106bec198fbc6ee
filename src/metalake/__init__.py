"""metalake: the single source of truth for ML metadata, as versioned Delta Lake tables."""

from metalake._version import __version__
from metalake.errors import (
    ContractError,
    ContractFailure,
    DeploymentError,
    DeploymentNotFound,
    FlushError,
    IngestError,
    KpiError,
    KpiNotFound,
    MetalakeError,
    QueryError,
    ReadOnlyLakeError,
    SchemaEvolutionError,
    SnapshotExists,
    SnapshotNotFound,
    SpecError,
    StorageError,
    TableNotFound,
    ViewError,
)
from metalake.lake import Commit, Lake, connect

__all__ = [
    "Commit",
    "ContractError",
    "ContractFailure",
    "DeploymentError",
    "DeploymentNotFound",
    "FlushError",
    "IngestError",
    "KpiError",
    "KpiNotFound",
    "Lake",
    "MetalakeError",
    "QueryError",
    "ReadOnlyLakeError",
    "SchemaEvolutionError",
    "SnapshotExists",
    "SnapshotNotFound",
    "SpecError",
    "StorageError",
    "TableNotFound",
    "ViewError",
    "__version__",
    "connect",
]
