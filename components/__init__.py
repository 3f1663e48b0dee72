"""Thin Kubeflow Pipelines components (importable as urbangen.components)."""
