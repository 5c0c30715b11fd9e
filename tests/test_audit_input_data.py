"""Audit of "bad input gets a clear error": the preprocessing helpers and the loaders' path arguments.

Before the fix a NaN went through :func:`scale_minmax` (its whole image became NaN) and
:func:`center` (the mean of its pixel, so that pixel of *every* image became NaN); the error came
later from ``check_X`` at an entry that held a number in the user's data.  ``scale(X, nan)``
returned NaN; a string gave numpy's ``ValueError``; ``None`` as a path os's ``TypeError``.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparsecnn.config import parse_simplenn_config, read_simplenn_config
from sparsecnn.data import center, load_simplenn_mat, scale, scale_255, scale_minmax
from sparsecnn.exceptions import InputTypeError, NonFiniteError
from sparsecnn.model_io import load_model


def images_with_a_nan() -> np.ndarray:
    X = np.arange(12.0).reshape(4, 3)          # d a b = 4 pixels, l = 3 images
    X[2, 1] = np.nan
    return X


@pytest.mark.parametrize("step", [scale_minmax, scale_255, lambda X: center(X)[0], lambda X: scale(X, 0.5)],
                         ids=["scale_minmax", "scale_255", "center", "scale"])
def test_a_nan_pixel_is_named_where_it_is(step) -> None:
    with pytest.raises(NonFiniteError, match=r"X must be finite, got nan at entry \(2, 1\)"):
        step(images_with_a_nan())


def test_center_refuses_a_non_finite_training_mean() -> None:
    with pytest.raises(NonFiniteError, match=r"mean must be finite, got inf at entry 1"):
        center(np.ones((3, 2)), np.array([0.0, np.inf, 0.0]))


@pytest.mark.parametrize("factor", [float("nan"), float("inf")])
def test_scale_refuses_a_non_finite_factor(factor: float) -> None:
    with pytest.raises(NonFiniteError, match=f"factor must be finite, got {factor}"):
        scale(np.ones((2, 2)), factor)


@pytest.mark.parametrize("step", [scale_minmax, center, lambda X: scale(X, 2.0)], ids=["scale_minmax", "center", "scale"])
@pytest.mark.parametrize("X, given", [("pixels", "got str"), (np.array([[1, None]], dtype=object), "got dtype object"),
                                      (np.ones((2, 2)) * 1j, "must be a real numeric array, got dtype complex128")])
def test_non_numeric_pixels_are_named(step, X: object, given: str) -> None:
    with pytest.raises(InputTypeError, match=given):
        step(X)


def test_preprocessing_of_finite_pixels_is_unchanged() -> None:
    X = np.random.default_rng(0).integers(0, 256, (6, 5)).astype(np.float64)
    np.testing.assert_array_equal(scale(X, 0.5), X * 0.5)
    Xc, mean = center(X)
    np.testing.assert_array_equal(mean, X.mean(axis=1))
    np.testing.assert_array_equal(Xc, X - X.mean(axis=1)[:, None])


@pytest.mark.parametrize("load, what", [
    (load_simplenn_mat, "simpleNN .mat file"),
    (read_simplenn_config, "simpleNN configuration file"),
    (load_model, "model file"),
])
@pytest.mark.parametrize("path", [None, 3, ["a.mat"]])
def test_a_path_that_is_not_a_path_is_named(load, what: str, path: object) -> None:
    with pytest.raises(InputTypeError, match=f"the {what} must be given as a path .*got {type(path).__name__}"):
        load(path)


def test_parse_simplenn_config_needs_text() -> None:
    with pytest.raises(InputTypeError, match="the configuration must be text \\(str\\), got bytes"):
        parse_simplenn_config(b"L = 1;")
