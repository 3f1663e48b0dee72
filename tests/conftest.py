"""Shared fixtures: paths to the real sample data (skipped cleanly when absent) and tiny helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("URBANGEN_REALDATA", ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (see its PROVENANCE.md); tests that need it skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real sample data not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def cityscapes_root(realdata: Path) -> Path:
    root = realdata / "cityscapes"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_cluster = pytest.mark.skip(reason="needs a Kubernetes cluster (set URBANGEN_CLUSTER_TESTS=1)")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "cluster" in item.keywords and not os.environ.get("URBANGEN_CLUSTER_TESTS"):
            item.add_marker(skip_cluster)
