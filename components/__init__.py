"""Thin Kubeflow Pipelines components (installed as ``urbangen.components``).

Each component is a few lines: it takes the pipeline config (a dict of
:class:`urbangen.pipeline_config.PipelineConfig`), typed input artifacts and parameters, calls one function
of :mod:`urbangen.steps`, and declares typed outputs. All logic lives in ``urbangen`` where it is tested
and shared with the CLI. Lightweight components embed only the function's source, so every import is
inside the body; the container image is the one built from ``components/Dockerfile`` at the package version.
"""

import functools

from kfp import dsl

from urbangen import __version__

IMAGE_REPOSITORY = "ghcr.io/urbangen/urbangen"
IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"

# urbangen (and kfp) are baked into the image, so nothing is pip-installed when a task starts
component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
