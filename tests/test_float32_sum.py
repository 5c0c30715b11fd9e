"""float32 products, float64 sums (NOTATION.md; ``Network.objective(dtype="float32")``).

With ``dtype="float32"`` the network's products run in single precision, but the
loss ``(1/l) sum_i ||z^{L+1,i} - y^i||^2`` is summed in float64.  So the objective
must equal, to float64 rounding, the float64 sum of squares of the float32 output
itself; summing in float32 would be off by about 1e-7 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network


@pytest.mark.parametrize("l", [7, 300])
def test_float32_objective_sums_squares_in_float64(l: int) -> None:
    net = Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), FullLayer(6), FullLayer(4)])
    rng = np.random.default_rng(l)
    theta = net.init_params(seed=1)
    X = rng.standard_normal((net.n_input, l))
    y = rng.integers(0, net.n_L, l)
    out32 = net.output(theta, X, dtype="float32")
    assert np.array_equal(out32.astype(np.float32), out32)       # float32 values (returned as float64)
    diff = out32.astype(np.float64)
    diff[y, np.arange(l)] -= 1.0
    expected = math.fsum((diff * diff).ravel().tolist()) / l          # exact float64 sum of the float32 output
    f, _ = net.objective(theta, X, y, C=np.inf, dtype="float32")
    assert abs(f - expected) <= 1e-13 * expected
    # the same squares summed in float32 differ by far more than that tolerance
    sum32 = np.float32(0)
    for v in (diff.astype(np.float32) ** 2).ravel():
        sum32 = np.float32(sum32 + v)
    assert abs(float(sum32) / l - expected) > 1e-13 * expected


def test_float32_objective_regularisation_term_in_float64() -> None:
    net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    theta = net.init_params(seed=2) * 3.0
    X = np.random.default_rng(0).standard_normal((16, 5))
    y = np.array([0, 1, 2, 0, 1])
    out32 = net.output(theta, X, dtype="float32").astype(np.float64)
    out32[y, np.arange(5)] -= 1.0
    C = 0.7
    expected = math.fsum((theta * theta).tolist()) / (2 * C) + math.fsum((out32 * out32).ravel().tolist()) / 5
    f, _ = net.objective(theta, X, y, C=C, dtype="float32")
    assert abs(f - expected) <= 1e-13 * expected
