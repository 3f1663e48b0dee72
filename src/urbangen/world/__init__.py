"""Procedural low-effort urban scenes and the built-in benchmark's two renderers (``sim`` and ``real``).

Public API: :func:`make_scene` (layout, labels, instances, depth), :func:`render` (an image of a scene in
the ``sim`` or a ``real`` style) and :func:`make_dataset` (a Cityscapes-layout dataset on disk). Names are
imported lazily so ``import urbangen.world`` does no work.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Scene", "make_dataset", "make_scene", "render"]


def __getattr__(name: str) -> Any:
    if name in ("Scene", "make_scene"):
        from urbangen.world import layout

        return getattr(layout, name)
    if name == "render":
        from urbangen.world.renderer import render

        return render
    if name == "make_dataset":
        from urbangen.world.dataset import make_dataset

        return make_dataset
    raise AttributeError(f"module 'urbangen.world' has no attribute {name!r}")
