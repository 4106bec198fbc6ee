"""The MLflow-compatible endpoints (`/api/2.0/mlflow/...`, also under `/ajax-api/`): unmodified MLflow clients log
into the lake. Each module adds one part of MLflow's REST API; all of them call the lake's namespaces."""

from typing import TYPE_CHECKING

__all__ = ["add_mlflow_routes"]

if TYPE_CHECKING:
    from metalake.server.api import Api


def add_mlflow_routes(api: "Api") -> None:
    """Every MLflow endpoint metalake serves, on the server's app."""
    from metalake.server.mlflow.protocol import MlflowRoutes
    from metalake.server.mlflow.tracking import add_tracking_routes

    routes = MlflowRoutes(api)
    add_tracking_routes(routes)
