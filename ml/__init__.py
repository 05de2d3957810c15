"""ML: features, four models, evaluation against references, MLflow registry, jobs and tips (docs/ml.md)."""
