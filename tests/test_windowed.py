"""Convolution and max pooling window by window: the same numbers as the layer-at-a-time steps.

``ConvShape.conv_pool_forward`` is ``conv_forward`` then ``activate_pool`` (``Z^{m+1} =
mat(P_pool vec(sigma(S)))``), ``conv_pool_backward`` is equation (6) then the backward step of
the convolution, ``conv_pool_R`` is their R-operator; the planner's executor and
``GaussNewton`` use them where the plan keeps only ``Z^m`` and the winners.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import ConfigError, InputTypeError, ShapeError
from sparsecnn.layers import ConvShape
from sparsecnn.planner.execute import fused, winner_offsets, winner_positions
from sparsecnn.second_order import GaussNewton, windowed_plan

ACTS = ["relu", "tanh", "sigmoid", "leaky_relu", "identity"]


@st.composite
def layers(draw):
    h = draw(st.integers(1, 3))
    p = draw(st.integers(0, 2))
    s = draw(st.integers(1, 2))
    r = draw(st.integers(2, 3))
    a = draw(st.integers(max(1, h - 2 * p + r - 1), 9))
    b = draw(st.integers(max(1, h - 2 * p + r - 1), 9))
    d = draw(st.integers(1, 3))
    spec = ConvLayer(draw(st.integers(1, 4)), h=h, p=p, s=s, r=r, activation=draw(st.sampled_from(ACTS)))
    try:
        ly = ConvShape(1, a, b, d, spec)
    except ValueError:
        assume(False)
    return ly, draw(st.sampled_from(["slides", "pool-first"])), draw(st.integers(0, 2**31 - 1))


def _data(ly: ConvShape, seed: int, l: int = 3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((ly.n_in, l)).astype(dtype)
    W = rng.standard_normal(ly.W_shape).astype(dtype)
    bias = rng.standard_normal(ly.d_out).astype(dtype)
    return rng, Z, W, bias


def _forward(case):
    """The case's layer, order, generator, data and window-by-window forward pass."""
    ly, order, seed = case
    rng, Z, W, bias = _data(ly, seed)
    Z_next, k = ly.conv_pool_forward(Z, W, bias, order=order)
    return ly, order, rng, Z, W, bias, Z_next, k


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_pool_windowed_forward_equals_conv_then_P_pool_sigma(case):
    ly, order, _, Z, W, bias, Z_next, k = _forward(case)
    _, S = ly.conv_forward(Z, W, bias)
    Z_ref, winners = ly.activate_pool(S, order=order)
    assert rel(Z_next, Z_ref) < 1e-14
    assert np.array_equal(winner_positions(ly, k), winners)        # the same P_pool, ties included
    assert np.array_equal(k, winner_offsets(ly, winners))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_eq6_windowed_backward_equals_P_pool_T_then_conv_backward(case):
    ly, _, rng, Z, W, bias, Z_next, k = _forward(case)
    dZ_next = rng.standard_normal(Z_next.shape)
    dW, db, dZ = ly.conv_pool_backward(W, Z, dZ_next, Z_next, k)
    Phi, _ = ly.conv_forward(Z, W, bias)
    dS = ly.pool_T(ly.sigma.backprop_from_output(dZ_next, Z_next), winner_positions(ly, k))   # (6)
    dW_ref, db_ref, dZ_ref = ly.conv_backward(W, Phi, dS)
    assert rel(dW, dW_ref) < 1e-12 and rel(db, db_ref) < 1e-12 and rel(dZ, dZ_ref) < 1e-12
    assert ly.conv_pool_backward(W, Z, dZ_next, Z_next, k, need_dZ=False)[2] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_windowed_R_operator_equals_directional_finite_differences(case):
    ly, _, rng, Z, W, bias, Z_next, k = _forward(case)
    RZ, V, v_b = rng.standard_normal(Z.shape), rng.standard_normal(W.shape), rng.standard_normal(ly.d_out)
    R = ly.conv_pool_R(Z, RZ, W, V, v_b, Z_next, k)
    eps = 1e-6

    def at(t):   # the forward pass along the direction, with the winners held at the point's
        _, S = ly.conv_forward(Z + t * RZ, W + t * V, bias + t * v_b)
        return ly.pool(ly.sigma.sigma(S), winner_positions(ly, k))

    fd = (at(eps) - at(-eps)) / (2 * eps)
    assert np.allclose(R, fd, rtol=1e-5, atol=1e-6)
    R1 = ly.conv_pool_R(Z, None, W, V, v_b, Z_next, k)             # R(Z) = 0: the first layer
    _, S = ly.conv_forward(Z, V, v_b)
    ref = ly.sigma.backprop_from_output(ly.pool(S, winner_positions(ly, k)), Z_next)
    assert rel(R1, ref) < 1e-12


def test_P_phipad_windows_dot_test_and_rows_of_P_phipad():
    ly = ConvShape(1, 7, 7, 2, ConvLayer(3, h=3, p=1, r=2))       # a_conv = 7: last row and column unread
    P = ly.P_phipad_windows
    assert P.shape == (ly.a_out * ly.b_out * 4 * ly.hhd, ly.n_in)
    assert set(ly.window_positions.tolist()) == {i + 7 * j for i in range(6) for j in range(6)}
    rows = (ly.window_positions[:, None] * ly.hhd + np.arange(ly.hhd)).ravel()
    assert (P != ly.P_phipad[rows]).nnz == 0
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(P.shape[1]), rng.standard_normal(P.shape[0])
    assert np.isclose(y @ (P @ x), (P.T @ y) @ x)                   # <P x, y> = <x, P^T y>


def test_windowed_float32_stays_float32():
    ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
    rng, Z, W, bias = _data(ly, 0, dtype=np.float32)
    Z_next, k = ly.conv_pool_forward(Z, W, bias)
    dW, db, dZ = ly.conv_pool_backward(W, Z, Z_next, Z_next, k)
    R = ly.conv_pool_R(Z, Z, W, W, bias, Z_next, k)
    assert {x.dtype for x in (Z_next, dW, db, dZ, R)} == {np.dtype(np.float32)}
    Z64 = ly.conv_pool_forward(Z.astype(np.float64), W, bias)[0]
    assert rel(Z_next, Z64) < 1e-6


def test_windowed_kernels_refuse_what_they_cannot_do():
    avg = ConvShape(1, 6, 6, 1, ConvLayer(2, h=3, r=2, pool="avg"))
    Z, W, bias = np.zeros((36, 2)), np.zeros((2, 9)), np.zeros(2)
    with pytest.raises(ConfigError, match="needs max pooling"):
        avg.conv_pool_forward(Z, W, bias)
    ly = ConvShape(1, 6, 6, 1, ConvLayer(2, h=3, r=2))
    with pytest.raises(ConfigError, match="order"):
        ly.conv_pool_forward(Z, W, bias, order="backwards")
    with pytest.raises(ShapeError, match=r"Z must have d\*a\*b = 36 rows, got shape \(35, 2\)"):
        ly.conv_pool_forward(Z[:35], W, bias)
    Z_next, k = ly.conv_pool_forward(Z, W, bias)
    with pytest.raises(ShapeError, match=r"Z\^\{m\+1\} must have shape \(d\*a_out\*b_out, l\) = \(8, 2\), got \(7, 2\)"):
        ly.conv_pool_backward(W, Z, Z_next, Z_next[:-1], k)
    winners = winner_positions(ly, k)                               # positions, not offsets
    with pytest.raises(ShapeError, match=r"offsets must lie in 0..r\^2-1 = 0..3"):
        ly.conv_pool_backward(W, Z, Z_next, Z_next, winners)
    with pytest.raises(InputTypeError, match="offsets must be integers"):
        ly.conv_pool_R(Z, None, W, W, bias, Z_next, k.astype(float))
    with pytest.raises(ShapeError, match=r"R\(Z\) must have shape"):
        ly.conv_pool_R(Z, Z[:, :1], W, W, bias, Z_next, k)


# ----------------------------------------------------------------- planner and G
def test_slides_plan_runs_relu_maxpool_layers_windowed_and_gives_store_all_gradient():
    net = Network((12, 12, 1), [ConvLayer(4, h=3, p=1, r=2), ConvLayer(3, h=3, p=1, r=2, activation="tanh"),
                                FullLayer(5)])
    slides, store_all = net.plan("slides"), net.plan("store-all")
    assert all(fused(net, slides, ly) for ly in net.conv)
    assert not any(fused(net, store_all, ly) for ly in net.conv)
    rng = np.random.default_rng(3)
    theta, X, y = net.init_params(seed=1), rng.standard_normal((144, 9)), rng.integers(0, 5, 9)
    f0, g0 = net.objective(theta, X, y, C=3.0, batch_size=4)
    f1, g1 = net.objective(theta, X, y, C=3.0, batch_size=4, plan=slides)
    assert abs(f1 - f0) < 1e-13 * abs(f0) and rel(g1, g0) < 1e-13


def test_gauss_newton_keeps_Z_and_winners_only_where_windowed():
    net = Network((10, 10, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(4)])
    assert windowed_plan(net) is not None
    G = GaussNewton(net, net.init_params(seed=0), np.random.default_rng(0).standard_normal((100, 5)))
    assert G.plan is not None and not any(k.startswith(("phi", "S")) for k in G._batches[0].kept)
    avg = Network((10, 10, 1), [ConvLayer(3, h=3, p=1, r=2, pool="avg"), FullLayer(4)])
    assert windowed_plan(avg) is None
    assert GaussNewton(avg, avg.init_params(seed=0), np.zeros((100, 2))).plan is None
