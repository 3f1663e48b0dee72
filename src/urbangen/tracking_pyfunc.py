"""The MLflow pyfunc that wraps an urbangen model folder (MLflow "models from code").

MLflow copies this file into every model logged by :meth:`urbangen.tracking.Run.log_model` and runs it
when the model is loaded; urbangen never imports it. The logged model's ``model_config`` names the class
that reads the folder (``loader``, "module:Class" with a ``from_pretrained(path)``) and the method that
predicts (``method``); the class is imported only in ``load_context``, so logging needs nothing but MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class FolderModel(PythonModel):
    """Loads ``loader.from_pretrained(<artifact folder>)`` and forwards ``predict`` to ``method``."""

    def load_context(self, context: Any) -> None:
        module_name, _, attr = context.model_config["loader"].partition(":")
        loader = getattr(importlib.import_module(module_name), attr)
        self.model = loader.from_pretrained(context.artifacts["model"])
        self.method = context.model_config["method"]

    # no type hints here: MLflow would read them as an input schema and validate (or reject) the input
    def predict(self, context, model_input, params=None):
        return getattr(self.model, self.method)(model_input, **(params or {}))


mlflow.models.set_model(FolderModel())
