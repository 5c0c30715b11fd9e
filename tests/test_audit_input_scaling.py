"""Audit of "bad input gets a clear error": min-max scaling of images with extreme, finite pixels.

``scale_minmax`` divided by ``max - min``, which overflows to inf when an image spans more than
about 1.8e308: the image became NaN, and ``sparsecnn train --scale minmax`` then stopped with
"X must be finite, got nan", a NaN the file never held.  Every scaled image lies in [0, 1].
"""

from __future__ import annotations

import warnings

import numpy as np

from sparsecnn.data import scale_minmax


def test_minmax_of_an_image_spanning_more_than_the_float_range_is_exact() -> None:
    X = np.array([[-1e308, 0.0], [1e308, 255.0], [0.0, 51.0], [5e307, 102.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = scale_minmax(X)
    # column 0: (x + 1e308) / 2e308, computed by hand from the halves 5e307 ... 1e308
    np.testing.assert_array_equal(out[:, 0], [0.0, 1.0, 0.5, 0.75])
    np.testing.assert_array_equal(out[:, 1], X[:, 1] / 255)      # an ordinary image is unchanged
    assert np.all((out >= 0) & (out <= 1))


def test_minmax_of_ordinary_images_is_bitwise_the_plain_formula() -> None:
    X = np.random.default_rng(0).integers(0, 256, (36, 50)).astype(float)
    lo, hi = X.min(axis=0), X.max(axis=0)
    np.testing.assert_array_equal(scale_minmax(X), (X - lo) / (hi - lo))
