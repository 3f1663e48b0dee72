"""The MLflow pyfunc that wraps an urbangen model folder (MLflow "models from code").

MLflow copies this file into every model logged by :meth:`urbangen.tracking.Run.log_model` and runs it
when the model is loaded; urbangen never imports it. The logged model's ``model_config`` names the class
that reads the folder (``loader``, "module:Class" with a ``from_pretrained(path)``), the method that
predicts (``method``) and, for a method returning a tuple, names for its parts (``outputs``). The class
is imported only in ``load_context``, so logging a model needs nothing but MLflow.

``predict(x)`` calls ``method(x)``; ``predict({"labels": ..., "seeds": [...]})`` calls ``method(**dict)``,
which is how arguments beyond the main input (seeds, steps, mode) reach the model.
"""

from __future__ import annotations

import importlib
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class FolderModel(PythonModel):
    """Loads ``loader.from_pretrained(<artifact folder>)`` and forwards ``predict`` to ``method``."""

    def load_context(self, context: Any) -> None:
        config = context.model_config
        module_name, _, attr = config["loader"].partition(":")
        self.model = getattr(importlib.import_module(module_name), attr).from_pretrained(context.artifacts["model"])
        self.method = getattr(self.model, config["method"])
        self.outputs = config.get("outputs")

    # no type hints here: MLflow would read them as an input schema and validate (or reject) the input
    def predict(self, context, model_input, params=None):
        kwargs = {**model_input, **(params or {})} if isinstance(model_input, dict) else dict(params or {})
        result = self.method(**kwargs) if isinstance(model_input, dict) else self.method(model_input, **kwargs)
        if self.outputs and isinstance(result, tuple):
            return dict(zip(self.outputs, result, strict=True))
        return result


mlflow.models.set_model(FolderModel())
