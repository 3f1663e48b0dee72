"""Kubeflow Pipelines DAGs (importable as urbangen.pipelines)."""
