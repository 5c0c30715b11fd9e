"""The model loader's ``theta`` check: a vector of shape ``(n,)``, nothing else of the same size.

A ``theta`` stored as ``(n, 1)`` or ``(1, n)`` has the right number of entries and
even the same bytes, so its SHA-256 matches; only the shape check refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparsecnn import ConvLayer, DataFormatError, FullLayer, Network
from sparsecnn.model_io import load_model, save_model


@pytest.mark.parametrize("shape", ["column", "row"])
def test_model_theta_must_be_a_vector(tmp_path: Path, shape: str) -> None:
    net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    theta = net.init_params(seed=0)
    path = tmp_path / "m.npz"
    save_model(path, net, theta)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    bad = theta[:, None] if shape == "column" else theta[None, :]
    assert bad.size == net.n_params
    np.savez(path, **{**arrays, "theta": bad})            # same bytes: the stored SHA-256 still matches
    assert json.loads(str(arrays["sha256"]))["theta"]
    with pytest.raises(DataFormatError, match=r"theta must be .*shape \(" + str(bad.shape[0])):
        load_model(path)
    np.savez(path, **arrays)                                # the original loads
    assert load_model(path).theta.shape == (net.n_params,)
