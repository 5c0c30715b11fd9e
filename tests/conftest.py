"""Shared fixtures: the simpleNN data in ../shared (tests that need it skip cleanly where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """Folder with mnist-demo.mat, mnist-demo.t.mat and mnist-demo-layer4.config."""
    if not (SHARED_DATA / "mnist-demo.mat").is_file():
        pytest.skip(f"simpleNN data not found in {SHARED_DATA}")
    return SHARED_DATA
