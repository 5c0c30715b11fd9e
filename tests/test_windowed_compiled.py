"""Max pooling window by window: the one-pass loops equal numpy's passes, bit for bit.

:mod:`sparsecnn.kernels.compiled` does a block's ``+ b 1^T`` and ``P_pool``
(maxima and offsets), its ``P_pool^T`` (equation (7) inside equation (6)) and
the R-operator's ``P_pool`` in one loop each.  Here the loops run uncompiled
(plain Python, on small blocks with ties, zeros of both signs and NaN) and
compiled by numba (on the kernels' own shapes, and inside the kernels), each
against the numpy passes the kernels use without numba.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.kernels import compiled
from sparsecnn.kernels.pooling import window_max
from sparsecnn.layers import ConvShape

DTYPES = [np.float64, np.float32]


def numpy_max_offsets(S, b):
    """The kernels' numpy passes: ``S + b 1^T``, then :func:`window_max`."""
    n, r2, d, l = S.shape
    Sb = S + b.reshape(-1, 1)
    best, which = np.empty((n, d, l), S.dtype), np.empty((n, d, l), np.uint8)
    tmp = (np.empty((n, d, l), bool), np.empty((n, d, l), bool), np.empty((n, d, l), S.dtype),
           np.empty((n, d, l), np.uint8))
    window_max([Sb[:, k] for k in range(r2)], list(range(r2)), best, which, tmp)
    return best, which


def numpy_unpool(g, which, r2):
    dS = np.empty((g.shape[0], r2) + g.shape[1:], g.dtype)
    for k in range(r2):
        np.multiply(g, which == k, out=dS[:, k])
    return dS


def numpy_select(RS, vb, which):
    RS = RS + vb.reshape(-1, 1)
    out = RS[:, 0] * (which == 0)
    for k in range(1, RS.shape[1]):
        out = out + RS[:, k] * (which == k)
    return out


def bitwise_equal(x, y):
    """Equal bit patterns: ``-0.0`` is not ``0.0``, NaN equals NaN."""
    return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8))


@st.composite
def blocks(draw, finite=True):
    """A block ``(n, r^2, d, l)`` of few distinct values (ties are common), ``b``, ``g`` and offsets."""
    n, r, d, l = draw(st.integers(1, 3)), draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(DTYPES))
    values = [-2.0, -0.0, 0.0, 0.5, 1.0, 3.0] + ([] if finite else [np.nan])
    pick = st.lists(st.sampled_from(values), min_size=n * r * r * d * l, max_size=n * r * r * d * l)
    S = np.array(draw(pick), dtype=dtype).reshape(n, r * r, d, l)
    b = np.array(draw(st.lists(st.sampled_from([-1.0, -0.0, 0.0, 0.25]), min_size=d, max_size=d)), dtype=dtype)
    g = np.array(draw(st.lists(st.sampled_from(values), min_size=n * d * l, max_size=n * d * l)),
                 dtype=dtype).reshape(n, d, l)
    which = np.array(draw(st.lists(st.integers(0, r * r - 1), min_size=n * d * l, max_size=n * d * l)),
                     dtype=np.uint8).reshape(n, d, l)
    return S, b, g, which


def run_max_offsets(fn, S, b):
    n, _, d, l = S.shape
    best, which = np.empty((n, d, l), S.dtype), np.empty((n, d, l), np.uint8)
    fn(S, b, best, which)
    return best, which


@settings(max_examples=200, deadline=None)
@given(blocks())
def test_pooling_loop_equals_bias_then_window_max_bitwise(case):
    S, b, _, _ = case
    best, which = run_max_offsets(compiled.max_offsets, S, b)
    ref_best, ref_which = numpy_max_offsets(S, b)
    assert np.array_equal(which, ref_which)                 # ties to the first entry in the order of vec
    assert bitwise_equal(best, at_winner(S, b, which))      # P_pool: the winner's own entry of S + b 1^T
    assert np.array_equal(best, ref_best)                   # numpy's maximum may give +0.0 for a -0.0 winner


def at_winner(S, b, which):
    Sb = S + b.reshape(-1, 1)
    return np.take_along_axis(Sb, which[:, None].astype(np.intp), axis=1)[:, 0]


@settings(max_examples=200, deadline=None)
@given(blocks(finite=False))
def test_pooling_loop_maximum_is_nan_where_the_window_holds_one(case):
    S, b, _, _ = case
    best, _ = run_max_offsets(compiled.max_offsets, S, b)
    assert np.array_equal(np.isnan(best), np.isnan(S).any(axis=1))
    finite = ~np.isnan(S).any(axis=1)
    assert np.array_equal(best[finite], numpy_max_offsets(S, b)[0][finite])


@settings(max_examples=200, deadline=None)
@given(blocks(finite=False))
def test_eq7_unpool_loop_equals_mask_products_bitwise(case):
    S, _, g, which = case
    dS = np.empty_like(S)
    compiled.unpool(g, which, dS)
    assert bitwise_equal(dS, numpy_unpool(g, which, S.shape[1]))


@settings(max_examples=200, deadline=None)
@given(blocks(finite=False))
def test_R_operator_select_loop_equals_mask_sums_bitwise(case):
    RS, vb, _, which = case
    out = np.empty(which.shape, RS.dtype)
    compiled.select_winners(RS, vb, which, out)
    assert bitwise_equal(out, numpy_select(RS, vb, which))


def test_unpool_loop_is_the_adjoint_of_select_dot_test():
    """``<P_pool^T g, x> = <g, P_pool x>`` with the same winners: the two loops are adjoint."""
    rng = np.random.default_rng(7)
    which = rng.integers(0, 9, size=(4, 3, 5)).astype(np.uint8)
    g, x = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 9, 3, 5))
    dS, Px = np.empty_like(x), np.empty_like(g)
    compiled.unpool(g, which, dS)
    compiled.select_winners(x, np.zeros(3), which, Px)
    assert np.isclose(np.vdot(dS, x), np.vdot(g, Px), rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_loops_equal_numpy_passes_at_the_kernels_shapes(dtype):
    """numba's compiled loops, on a block as mnist-demo's layer 2 has it (64 channels, 1,024 images)."""
    pytest.importorskip("numba", reason="the compiled loops need numba (pip install 'sparsecnn[fast]')")
    loops = compiled.loops()
    assert loops is not None, "numba is installed but sparsecnn.kernels.compiled.loops() gave None"
    rng = np.random.default_rng(0)
    S = rng.standard_normal((2, 4, 64, 1024)).astype(dtype)
    S[:, 1] = np.where(rng.random(S[:, 1].shape) < 0.1, S[:, 0], S[:, 1])     # some ties
    b, g = rng.standard_normal(64).astype(dtype), rng.standard_normal((2, 64, 1024)).astype(dtype)
    best, which = run_max_offsets(loops.max_offsets, S, b)
    ref_best, ref_which = numpy_max_offsets(S, b)
    assert np.array_equal(which, ref_which) and bitwise_equal(best, at_winner(S, b, which))
    assert bitwise_equal(best, ref_best)                    # no zeros of both signs in a window here
    dS = np.empty_like(S)
    loops.unpool(g, which, dS)
    assert bitwise_equal(dS, numpy_unpool(g, which, 4))
    out = np.empty_like(g)
    loops.select_winners(S, b, which, out)
    assert bitwise_equal(out, numpy_select(S, b, which))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r, activation", [(2, "relu"), (3, "tanh"), (2, "leaky_relu")])
def test_windowed_kernels_with_and_without_compiled_loops_bitwise(dtype, r, activation):
    """The three window-by-window kernels give the same bits with the loops as with numpy's passes."""
    pytest.importorskip("numba", reason="the compiled loops need numba (pip install 'sparsecnn[fast]')")
    ly = ConvShape(2, 12, 9, 3, ConvLayer(5, h=3, p=1, r=r, activation=activation))
    rng = np.random.default_rng(r)
    Z, RZ = rng.standard_normal((ly.n_in, 6)).astype(dtype), rng.standard_normal((ly.n_in, 6)).astype(dtype)
    W, V = rng.standard_normal(ly.W_shape).astype(dtype), rng.standard_normal(ly.W_shape).astype(dtype)
    b, v_b = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    results = []
    for flag in (True, False):
        with compiled.use(flag):
            assert (compiled.loops() is not None) == flag
            Zn, k = ly.conv_pool_forward(Z, W, b, order="pool-first")
            dZn = rng.standard_normal(Zn.shape).astype(dtype) if flag else results[0][2]
            back = ly.conv_pool_backward(W, Z, dZn, Zn, k)
            R = ly.conv_pool_R(Z, RZ, W, V, v_b, Zn, k)
            results.append((Zn, k, dZn, *back, R))
    for x, y in zip(*results, strict=True):
        assert bitwise_equal(x, y)


def test_loops_compile_without_a_cache_where_numba_has_nowhere_to_write_it(monkeypatch):
    """numba refuses ``cache=True`` (RuntimeError) where no cache folder is writable: compile anyway."""
    numba = pytest.importorskip("numba", reason="the compiled loops need numba (pip install 'sparsecnn[fast]')")
    real = numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setattr(compiled, "_compiled", None)
    loops = compiled.loops()
    assert loops is not None
    best, which = run_max_offsets(loops.max_offsets, np.array([[[[1.0]], [[2.0]]]]), np.zeros(1))
    assert best.ravel().tolist() == [2.0] and which.ravel().tolist() == [1]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_objective_and_G_v_with_and_without_compiled_loops_bitwise(dtype, loss):
    """Through the engine: f, the gradient and G v are the same bits with the loops as with numpy's passes."""
    pytest.importorskip("numba", reason="the compiled loops need numba (pip install 'sparsecnn[fast]')")
    net = Network((12, 12, 1), [ConvLayer(4, h=3, p=1, r=2), ConvLayer(3, h=3, p=1, r=2, activation="tanh"),
                                FullLayer(5)], loss=loss)
    rng = np.random.default_rng(5)
    theta, X, y = net.init_params(seed=2), rng.standard_normal((144, 9)), rng.integers(0, 5, 9)
    v = rng.standard_normal(net.n_params)
    out = []
    for flag in (True, False):
        with compiled.use(flag):
            f, g = net.objective(theta, X, y, C=3.0, batch_size=4, dtype=dtype)
            Gv = net.gauss_newton(theta, X, dtype=dtype) @ v
            out.append((np.array([f]), g, Gv))
    for x, y_ in zip(*out, strict=True):
        assert bitwise_equal(np.asarray(x), np.asarray(y_))
