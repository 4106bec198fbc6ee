"""metalake: the single source of truth for ML metadata, as versioned Delta Lake tables.

`connect()` opens a lake; everything else hangs off the `Lake` it returns (`lake.runs`, `lake.registry`, ...).
Exported here: the facade, every error class, and the value types users annotate with.
"""

import importlib
from typing import TYPE_CHECKING, Any

from metalake._version import __version__
from metalake.core.tables import Commit
from metalake.core.vocabulary import RunStatus, Stage
from metalake.errors import (
    AlreadyExists,
    AmbiguousRunId,
    ArtifactError,
    ArtifactNotFound,
    CommitFailed,
    ContractError,
    ContractFailure,
    DatasetError,
    DatasetNotFound,
    DeploymentError,
    DeploymentNotFound,
    EnvironmentNotFound,
    ExperimentExists,
    ExperimentNotFound,
    ExportError,
    FlushError,
    IdempotencyKeyReused,
    IngestError,
    InvalidEvent,
    InvalidRequest,
    InvalidSnapshotName,
    JournalFull,
    KpiError,
    KpiNotFound,
    LakeNotFound,
    LineageError,
    LineageNodeNotFound,
    LoggedModelNotFound,
    MaskKeyError,
    MetalakeError,
    MissingExtraError,
    MlflowError,
    ModelNotFound,
    NameNotFound,
    NotADemoLake,
    NotAuthenticated,
    NotAuthorized,
    OfflineLakeError,
    ParamValueChanged,
    PayloadTooLarge,
    PolicyError,
    PolicyViolation,
    QueryError,
    QueryTimeout,
    ReadOnlyLakeError,
    RegistryError,
    RuleFailure,
    RunError,
    RunNotFound,
    SchemaEvolutionError,
    SnapshotExists,
    SnapshotNotFound,
    SpecError,
    StorageError,
    StorageUnreachableWarning,
    SuiteError,
    TableNotFound,
    TimeTravelError,
    TransientError,
    UnsafeQuery,
    VersionClaimConflict,
    ViewError,
    ViewExportError,
)
from metalake.lake import Lake, connect

if TYPE_CHECKING:
    from metalake.datasets import DatasetVersion
    from metalake.deployments import Deployment
    from metalake.quality import Validation
    from metalake.registry import ModelVersion
    from metalake.tracking import Run, RunDetails

# The value types load with their namespace, on first use: `import metalake` stays light for the CLI.
_LAZY_EXPORTS = {
    "DatasetVersion": "metalake.datasets",
    "Deployment": "metalake.deployments",
    "Validation": "metalake.quality",
    "ModelVersion": "metalake.registry",
    "Run": "metalake.tracking",
    "RunDetails": "metalake.tracking",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metalake' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AlreadyExists",
    "AmbiguousRunId",
    "ArtifactError",
    "ArtifactNotFound",
    "Commit",
    "CommitFailed",
    "ContractError",
    "ContractFailure",
    "DatasetError",
    "DatasetNotFound",
    "DatasetVersion",
    "Deployment",
    "DeploymentError",
    "DeploymentNotFound",
    "EnvironmentNotFound",
    "ExperimentExists",
    "ExperimentNotFound",
    "ExportError",
    "FlushError",
    "IdempotencyKeyReused",
    "IngestError",
    "InvalidEvent",
    "InvalidRequest",
    "InvalidSnapshotName",
    "JournalFull",
    "KpiError",
    "KpiNotFound",
    "Lake",
    "LakeNotFound",
    "LineageError",
    "LineageNodeNotFound",
    "LoggedModelNotFound",
    "MaskKeyError",
    "MetalakeError",
    "MissingExtraError",
    "MlflowError",
    "ModelNotFound",
    "ModelVersion",
    "NameNotFound",
    "NotADemoLake",
    "NotAuthenticated",
    "NotAuthorized",
    "OfflineLakeError",
    "ParamValueChanged",
    "PayloadTooLarge",
    "PolicyError",
    "PolicyViolation",
    "QueryError",
    "QueryTimeout",
    "ReadOnlyLakeError",
    "RegistryError",
    "RuleFailure",
    "Run",
    "RunDetails",
    "RunError",
    "RunNotFound",
    "RunStatus",
    "SchemaEvolutionError",
    "SnapshotExists",
    "SnapshotNotFound",
    "SpecError",
    "Stage",
    "StorageError",
    "StorageUnreachableWarning",
    "SuiteError",
    "TableNotFound",
    "TimeTravelError",
    "TransientError",
    "UnsafeQuery",
    "Validation",
    "VersionClaimConflict",
    "ViewError",
    "ViewExportError",
    "__version__",
    "connect",
]
