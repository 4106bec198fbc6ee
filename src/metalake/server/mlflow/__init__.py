"""The MLflow-compatible endpoints (`/api/2.0/mlflow/...`, also under `/ajax-api/`): unmodified MLflow clients log
into the lake. Each module adds one part of MLflow's REST API; all of them call the lake's namespaces."""
