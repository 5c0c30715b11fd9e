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
from sparsecnn.exceptions import DataFormatError, InputTypeError, NonFiniteError, ShapeError
from sparsecnn.model_io import Model, load_model, save_model


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


# ------------------------------------------------------- save_model and Model: their arguments
# Before the fix: numpy scalars and sets in meta gave json's TypeError, a circular meta json's
# ValueError, a non-text key came back as another key ({1: 2} loaded as {"1": 2}), mean="abc"
# numpy's ValueError, net="net" an AttributeError, and Model(...) took any theta and meta.
@pytest.mark.parametrize("meta, message", [
    ({"seed": np.int64(3)}, r"meta must be JSON data .*int64 is not JSON serializable"),
    ({"classes": {1, 2}}, r"meta must be JSON data .*set is not JSON serializable"),
    ({1: 2}, r"meta has the key 1; JSON keys are text"),
    ({"runs": [{"y": {2: 3}}]}, r"meta\['runs'\]\[0\]\['y'\] has the key 2"),
    ("solver=sgd", "meta must be a dict of JSON data, got str"),
])
def test_save_model_refuses_meta_that_would_not_read_back(tmp_path: Path, meta: object, message: str) -> None:
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match="save_model: " + message):
        save_model(tmp_path / "m.npz", net, net.init_params(seed=0), meta=meta)
    assert not (tmp_path / "m.npz").exists()


def test_save_model_refuses_a_circular_meta(tmp_path: Path) -> None:
    net = Network((2, 2, 1), [FullLayer(3)])
    meta: dict = {}
    meta["self"] = meta
    with pytest.raises(InputTypeError, match="Circular reference"):
        save_model(tmp_path / "m.npz", net, net.init_params(seed=0), meta=meta)


def test_save_model_round_trips_json_meta_as_given(tmp_path: Path) -> None:
    net = Network((2, 2, 1), [FullLayer(3)])
    meta = {"solver": "sgd", "C": 0.5, "iterations": 3, "flags": [True, None, "x"], "nested": {"a": [1.5]},
            "scale": np.float64(0.25)}
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0), meta=meta)
    assert load_model(tmp_path / "m.npz").meta == meta


def test_save_model_names_bad_net_and_mean(tmp_path: Path) -> None:
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match="save_model: net must be a Network, got str"):
        save_model(tmp_path / "m.npz", "net", np.zeros(15))
    with pytest.raises(InputTypeError, match=r"mean \(the training mean of each pixel\) must be numbers, got 'abc'"):
        save_model(tmp_path / "m.npz", net, net.init_params(seed=0), mean="abc")


def test_model_checks_what_it_is_given() -> None:
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(ShapeError, match=r"theta must be a vector of n = 15 entries, got shape \(3,\)"):
        Model(net, np.zeros(3), None)
    with pytest.raises(NonFiniteError, match="theta must be finite"):
        Model(net, np.full(15, np.nan), None)
    with pytest.raises(DataFormatError, match="mean must have d\\*a\\*b = 4 entries, got 3"):
        Model(net, np.zeros(15), np.ones(3))
    with pytest.raises(InputTypeError, match=r"Model: meta\['scale'\] .* must be a finite number, got 'x'"):
        Model(net, np.zeros(15), None, {"scale": "x"})
    with pytest.raises(InputTypeError, match="Model: net must be a Network, got NoneType"):
        Model(None, np.zeros(15), None)  # type: ignore[arg-type]
