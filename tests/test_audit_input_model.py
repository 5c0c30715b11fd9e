"""Audit of "bad input gets a clear error": a loaded model's preprocessing (``Model.preprocess``).

Before the fix ``Model.preprocess`` broadcast ``scale X - mean[:, None]`` without looking at
``X``: one image given as a vector of ``d a b`` pixels became a ``(d a b) x (d a b)`` matrix,
so ``predict`` returned ``d a b`` labels for one image; a wrong number of rows gave numpy's
broadcasting error and a NaN pixel went through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import InputTypeError, NonFiniteError, ShapeError
from sparsecnn.model_io import load_model, save_model


@pytest.fixture
def model(tmp_path: Path):
    net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    rng = np.random.default_rng(3)
    save_model(tmp_path / "m.npz", net, net.init_params(seed=1), mean=rng.random(16), meta={"scale": 1 / 255})
    return load_model(tmp_path / "m.npz")


def test_preprocess_of_one_image_as_a_vector_is_one_column_vec_Z(model) -> None:
    image = np.random.default_rng(0).integers(0, 256, 16).astype(float)
    out = model.preprocess(image)
    assert out.shape == (16, 1)
    np.testing.assert_array_equal(out, model.preprocess(image[:, None]))
    np.testing.assert_allclose(out[:, 0], image / 255 - model.mean, rtol=0, atol=1e-15)
    assert model.net.predict(model.theta, out).shape == (1,)


def test_preprocess_refuses_X_with_the_wrong_number_of_rows(model) -> None:
    with pytest.raises(ShapeError, match=r"X must have d\*a\*b = 16 rows, got 15"):
        model.preprocess(np.ones((15, 2)))
    with pytest.raises(ShapeError, match=r"X must have d\*a\*b = 16 rows, got 4"):
        model.preprocess(np.ones(4))


def test_preprocess_refuses_nan_and_text(model) -> None:
    X = np.ones((16, 3))
    X[5, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"X must be finite, got nan at entry \(5, 2\)"):
        model.preprocess(X)
    with pytest.raises(InputTypeError, match="X must be a numeric array"):
        model.preprocess("pixels")
