"""Shared fixtures: simpleNN's mnist-demo files, packaged in :mod:`sparsecnn.datasets`."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecnn import datasets


@pytest.fixture
def shared_data() -> Path:
    """Folder with mnist-demo.mat, mnist-demo.t.mat and mnist-demo-layer4.config (inside the package)."""
    return datasets.DIRECTORY
