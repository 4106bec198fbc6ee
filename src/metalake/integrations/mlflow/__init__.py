"""MLflow: import an MLflow tracking server or store (runs, metrics, registry) into the lake."""

from metalake.integrations.mlflow.common import ImportSummary
from metalake.integrations.mlflow.importer import import_mlflow

__all__ = ["ImportSummary", "import_mlflow"]
