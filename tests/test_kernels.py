"""sparsecnn.kernels and the layer methods that use them: the same products as the literal matrices.

Every kernel is compared with scipy's own product of the literal matrix, and every
layer method with the slides' formula written out with that matrix, in float64 and
float32, on one and on two kernel threads.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparsecnn import ConvLayer, kernels
from sparsecnn.activations import ACTIVATIONS
from sparsecnn.exceptions import ConfigError, InputTypeError, ShapeError
from sparsecnn.kernels import sparse as sparse_module
from sparsecnn.kernels import sparsetools
from sparsecnn.kernels import threads as threads_module
from sparsecnn.layers import ConvShape
from sparsecnn.operators import P_pad, P_phi, P_pool, max_pool_winners

DTYPES = [np.float64, np.float32]


@pytest.fixture(autouse=True, params=["private", "public"], ids=["sparsetools", "public-fallback"])
def sparse_products(request):
    """Every test of this file twice: through scipy's private routines (where the import check passed)
    and through the shim's public fallback (``P @ X`` of a matrix built around the same arrays)."""
    old = sparsetools.use_public_products(request.param == "public")
    assert sparsetools.USING_PRIVATE == (request.param == "private" and sparsetools._PRIVATE_OK)
    yield request.param
    sparsetools.use_public_products(old)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = kernels.get_num_threads()
    kernels.set_num_threads(request.param)
    old_min = threads_module._MIN_SPLIT
    threads_module._MIN_SPLIT = 1        # split even small jobs, so that the two-thread paths run
    yield request.param
    threads_module._MIN_SPLIT = old_min
    kernels.set_num_threads(old)


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)


def random_selection(rng, n_rows, n_cols, empty=0.2):
    rows = np.flatnonzero(rng.random(n_rows) >= empty)
    cols = rng.integers(0, n_cols, rows.size)
    return sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n_rows, n_cols))


# ------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l", [None, 1, 7])
def test_select_and_transpose_equal_scipy(threads, dtype, l):
    rng = np.random.default_rng(0)
    P = random_selection(rng, 300, 50)
    shape_x = (50,) if l is None else (50, l)
    shape_y = (300,) if l is None else (300, l)
    X = rng.standard_normal(shape_x).astype(dtype)
    Y = rng.standard_normal(shape_y).astype(dtype)
    out = kernels.select(P, X)
    assert out.dtype == dtype and out.shape == shape_y
    np.testing.assert_array_equal(out, (P @ X.astype(np.float64)).astype(dtype))
    back = kernels.select_T(P, Y)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, P.T @ Y.astype(np.float64), **tol(dtype))
    np.testing.assert_allclose(kernels.spmm(P, X), P @ X.astype(np.float64), **tol(dtype))
    np.testing.assert_allclose(kernels.spmm_T(P, Y), P.T @ Y.astype(np.float64), **tol(dtype))


def test_out_buffers_are_used_and_checked(threads):
    rng = np.random.default_rng(1)
    P = random_selection(rng, 40, 10)
    X = rng.standard_normal((10, 3))
    out = np.full((40, 3), np.nan)
    assert kernels.select(P, X, out) is out
    np.testing.assert_array_equal(out, P @ X)
    back = np.full((10, 3), np.nan)
    assert kernels.select_T(P, out, back) is back
    np.testing.assert_allclose(back, P.T @ out)
    with pytest.raises(ShapeError):
        kernels.select(P, X, np.empty((40, 4)))
    with pytest.raises(ShapeError):
        kernels.select(P, X, np.empty((40, 3), dtype=np.float32))
    with pytest.raises(ShapeError):
        kernels.select(P, np.ones((11, 3)))


def test_selection_plan_rejects_what_is_not_a_selection():
    with pytest.raises(InputTypeError):
        kernels.select(sp.csr_array(np.array([[1.0, 1.0]])), np.ones(2))
    with pytest.raises(InputTypeError):
        kernels.select(sp.csr_array(np.array([[2.0, 0.0]])), np.ones(2))
    with pytest.raises(InputTypeError):
        kernels.select(np.eye(2), np.ones(2))
    P = sp.csr_array(np.array([[0.0, 1.0], [0.0, 0.0]]))
    plan = kernels.selection_plan(P)
    assert plan.take.tolist() == [1, 2] and plan.has_empty
    assert kernels.selection_plan(P) is plan                   # remembered on the matrix


def test_spmm_general_matrix_and_float32_data_cached(threads):
    rng = np.random.default_rng(2)
    P = sp.random_array((60, 30), density=0.2, rng=rng, format="csr")
    X = rng.standard_normal((30, 4)).astype(np.float32)
    np.testing.assert_allclose(kernels.spmm(P, X), P @ X.astype(np.float64), rtol=1e-5, atol=1e-5)
    first = sparse_module._data(P, np.dtype(np.float32))
    assert sparse_module._data(P, np.dtype(np.float32)) is first and not first.flags.writeable
    Y = rng.standard_normal((60, 4))
    np.testing.assert_allclose(kernels.spmm_T(P, Y), P.T @ Y, rtol=1e-12, atol=1e-12)


def test_csc_add_checks_shapes():
    P = sp.csr_array(np.eye(3))
    target = np.zeros((3, 2))
    kernels.csc_add(P, (1, 3), np.ones((2, 2)), target)
    np.testing.assert_array_equal(target, [[0, 0], [1, 1], [1, 1]])
    with pytest.raises(ShapeError):
        kernels.csc_add(P, (1, 3), np.ones((2, 3)), target)


def test_threads_setting_and_parallel_ranges():
    old = kernels.get_num_threads()
    try:
        kernels.set_num_threads(2)
        got = kernels.parallel_ranges(lambda a, b: (a, b), 10, work=1 << 20)
        assert got == [(0, 5), (5, 10)]
        assert kernels.parallel_ranges(lambda a, b: (a, b), 10, work=10) == [(0, 10)]
        with pytest.raises(InputTypeError):
            kernels.set_num_threads(0)
    finally:
        kernels.set_num_threads(old)


def test_scratch_reuses_arrays_per_shape():
    s = kernels.Scratch(keep=2)
    a = s.get("x", (3,), np.float64)
    assert s.get("x", (3,), np.float64) is a
    b = s.get("x", (4,), np.float64)
    assert b is not a and s.get("x", (3,), np.float64) is a
    s.get("y", (1,), np.float64)                                # evicts the least recently used, (4,)
    assert s.get("x", (4,), np.float64) is not b


# ----------------------------------------------------------------- pooling
def naive_winners(V, a, b, d, r):
    a_out, b_out = a // r, b // r
    out = np.empty((d * a_out * b_out, V.shape[1]), dtype=np.int64)
    for i in range(V.shape[1]):
        for q_o in range(b_out):
            for r_o in range(a_out):
                for c in range(d):
                    pos = [c + d * ((r_o * r + dr) + a * (q_o * r + dq)) for dq in range(r) for dr in range(r)]
                    vals = V[pos, i]
                    out[c + d * (r_o + a_out * q_o), i] = pos[int(np.argmax(vals))]   # first maximum
    return out


@pytest.mark.parametrize("a,b,d,r", [(4, 4, 1, 2), (5, 7, 3, 2), (6, 6, 2, 3), (9, 8, 2, 4), (30, 28, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_max_pool_winners_pairwise_equal_first_argmax(a, b, d, r, dtype):
    rng = np.random.default_rng(3)
    for V in (rng.standard_normal((d * a * b, 5)), rng.integers(0, 3, (d * a * b, 5)).astype(float),
              np.maximum(rng.standard_normal((d * a * b, 5)), 0)):
        V = V.astype(dtype)
        w = max_pool_winners(V, a, b, d, r)
        assert w.dtype == np.int32
        np.testing.assert_array_equal(w, naive_winners(V, a, b, d, r))


def test_P_pool_from_winners_is_a_literal_selection_matrix():
    rng = np.random.default_rng(4)
    V = rng.standard_normal((3 * 4 * 4, 2))
    P = P_pool(4, 4, 3, 2, data=V, layout="instances-last")
    assert P.nnz == P.shape[0] and np.all(P.data == 1) and np.all(np.diff(P.indptr) == 1)
    np.testing.assert_array_equal(kernels.select(P, V.ravel()), P @ V.ravel())
    dz = rng.standard_normal(P.shape[0])
    np.testing.assert_array_equal(kernels.select_T(P, dz), P.T @ dz)


# ------------------------------------------------------------ layer methods
LAYERS = [
    (28, 28, 1, ConvLayer(8, h=5, p=2, r=2)),
    (14, 14, 6, ConvLayer(7, h=3, p=1, r=2)),
    (9, 7, 3, ConvLayer(5, h=3, s=2, p=0, r=1)),
    (8, 8, 2, ConvLayer(4, h=3, p=1, r=2, pool="avg")),
    (7, 7, 4, ConvLayer(6, h=3, p=1, r=3, activation="tanh")),
]


def literal(ly: ConvShape, Z, W, bias):
    """The slides' formulas, per instance, with the literal matrices in float64."""
    Z = Z.astype(np.float64)
    Pp = ly.P_pad if ly.P_pad is not None else sp.identity(ly.n_in, format="csr")
    Phi = ly.P_phi @ (Pp @ Z)
    S = np.empty((ly.n_S, Z.shape[1]))
    for i in range(Z.shape[1]):
        phi = Phi[:, i].reshape(ly.n_pos, ly.hhd).T                     # mat(): hhd x a_conv b_conv
        S[:, i] = (W @ phi + bias[:, None]).reshape(-1, order="F")      # vec()
    return Phi, S


@pytest.mark.parametrize("a,b,d,spec", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_methods_equal_literal_products(threads, a, b, d, spec, dtype):
    rng = np.random.default_rng(5)
    ly = ConvShape(1, a, b, d, spec)
    l = 3
    Z = rng.standard_normal((ly.n_in, l)).astype(dtype)
    W = rng.standard_normal(ly.W_shape)
    bias = rng.standard_normal(ly.d_out)
    Phi_ref, S_ref = literal(ly, Z, W, bias)
    Phi = ly.phi(Z)
    assert Phi.dtype == dtype
    np.testing.assert_array_equal(Phi, Phi_ref.astype(dtype))
    np.testing.assert_array_equal(ly.phi(Z, fold_pad=False), Phi)
    S = ly.S(W, bias, Phi)
    assert S.dtype == dtype
    np.testing.assert_allclose(S, S_ref, **tol(dtype))
    Phi2, S2 = ly.conv_forward(Z, W, bias)
    np.testing.assert_array_equal(Phi2, Phi)
    np.testing.assert_allclose(S2, S, **tol(dtype))

    dS = rng.standard_normal(S.shape).astype(dtype)
    dW, db, dPhi = ly.S_T(W, Phi, dS)
    dS64, Phi64 = dS.astype(np.float64), Phi.astype(np.float64)
    dW_ref = sum(dS64[:, i].reshape(ly.n_pos, ly.d_out).T @ Phi64[:, i].reshape(ly.n_pos, ly.hhd)
                 for i in range(l))
    assert dW.dtype == dtype and db.dtype == dtype and dPhi.dtype == dtype
    np.testing.assert_allclose(dW, dW_ref, **tol(dtype))
    np.testing.assert_allclose(db, dS64.reshape(ly.n_pos, ly.d_out, l).sum(axis=(0, 2)), **tol(dtype))
    dPhi_ref = np.stack([(W.T @ dS64[:, i].reshape(ly.n_pos, ly.d_out).T).reshape(-1, order="F")
                         for i in range(l)], axis=1)
    np.testing.assert_allclose(dPhi, dPhi_ref, **tol(dtype))
    assert ly.S_T(W, Phi, dS, need_dPhi=False)[2] is None
    Pp = ly.P_pad if ly.P_pad is not None else sp.identity(ly.n_in, format="csr")
    dZ_ref = Pp.T @ (ly.P_phi.T @ dPhi.astype(np.float64))
    dZ = ly.phi_T(dPhi)
    assert dZ.dtype == dtype
    np.testing.assert_allclose(dZ, dZ_ref, **tol(dtype))
    np.testing.assert_allclose(ly.phi_T(dPhi, fold_pad=False), dZ_ref, **tol(dtype))
    dW2, db2, dZ2 = ly.conv_backward(W, Phi, dS)
    np.testing.assert_allclose(dW2, dW, **tol(dtype))
    np.testing.assert_allclose(db2, db, **tol(dtype))
    np.testing.assert_allclose(dZ2, dZ_ref, **tol(dtype))
    assert ly.conv_backward(W, Phi, dS, need_dZ=False)[2] is None


@pytest.mark.parametrize("a,b,d,spec", LAYERS)
def test_out_buffers_of_layer_methods(a, b, d, spec):
    rng = np.random.default_rng(6)
    ly = ConvShape(1, a, b, d, spec)
    Z = rng.standard_normal((ly.n_in, 2))
    W, bias = rng.standard_normal(ly.W_shape), rng.standard_normal(ly.d_out)
    bufs = {k: np.full(shape, np.nan) for k, shape in
            dict(phi=(ly.hhd * ly.n_pos, 2), S=(ly.n_S, 2), dZ=(ly.n_in, 2)).items()}
    Phi = ly.phi(Z, out=bufs["phi"])
    S = ly.S(W, bias, Phi, out=bufs["S"])
    assert Phi is bufs["phi"] and S is bufs["S"]
    Phi2, S2 = ly.conv_forward(Z, W, bias, out_phi=np.empty_like(Phi), out_S=np.empty_like(S))
    np.testing.assert_array_equal(Phi2, Phi)
    dW, db, dZ = ly.conv_backward(W, Phi, S, out=bufs["dZ"])
    assert dZ is bufs["dZ"]
    with pytest.raises(ShapeError):
        ly.S(W, bias, Phi, out=np.empty((ly.n_S, 3)))


@pytest.mark.parametrize("a,b,d,spec", LAYERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_methods_equal_literal_P_pool(a, b, d, spec, dtype):
    rng = np.random.default_rng(7)
    ly = ConvShape(1, a, b, d, spec)
    l = 4
    A = np.maximum(rng.standard_normal((ly.n_S, l)), 0).astype(dtype)
    winners = ly.winners(A)
    Zn = ly.pool(A, winners)
    assert Zn.dtype == dtype
    if not ly.pools:
        assert Zn is A
        return
    P = ly.P_pool(winners)
    flat = winners is not None
    ref = (P @ A.astype(np.float64).ravel()).reshape(ly.n_out, l) if flat else P @ A.astype(np.float64)
    np.testing.assert_allclose(Zn, ref, **tol(dtype))
    dZ = rng.standard_normal(Zn.shape).astype(dtype)
    back = ly.pool_T(dZ, winners)
    ref_T = (P.T @ dZ.astype(np.float64).ravel()).reshape(ly.n_S, l) if flat else P.T @ dZ.astype(np.float64)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, ref_T, **tol(dtype))


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "identity"])
def test_activate_pool_orders_give_the_same_Z_and_gradient(activation):
    rng = np.random.default_rng(8)
    ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2, activation=activation))
    S = rng.standard_normal((ly.n_S, 5))
    S[: ly.d_out * 4] = -np.abs(S[: ly.d_out * 4])                       # some all-negative windows
    Z1, w1 = ly.activate_pool(S)
    Z2, w2 = ly.activate_pool(S, order="pool-first")
    np.testing.assert_allclose(Z1, Z2, rtol=1e-15, atol=0)
    dZ = rng.standard_normal(Z1.shape)
    g1 = ly.pool_T(ly.sigma.backprop_from_output(dZ, Z1), w1)           # equation (6)
    g2 = ly.pool_T(ly.sigma.backprop_from_output(dZ, Z2), w2)
    np.testing.assert_allclose(g1, g2, rtol=1e-15, atol=0)
    g5 = ly.sigma.backprop(ly.pool_T(dZ, w2), S)                         # equation (5), pool-first winners
    np.testing.assert_allclose(g5, g1, rtol=1e-12, atol=1e-15)
    with pytest.raises(ConfigError):
        ly.activate_pool(S, order="sideways")


def test_activation_backprop_helpers_match_the_products():
    rng = np.random.default_rng(9)
    S = rng.standard_normal(50)
    dA = rng.standard_normal(50)
    for name, act in ACTIVATIONS.items():
        np.testing.assert_allclose(act.backprop(dA, S), dA * act.dsigma(S), err_msg=name)
        if act.dsigma_from_output is not None:
            Z = act.sigma(S)
            np.testing.assert_allclose(act.backprop_from_output(dA, Z), dA * act.dsigma_from_output(Z),
                                       err_msg=name)
    relu = ACTIVATIONS["relu"]
    assert relu.backprop(dA.astype(np.float32), S).dtype == np.float32


def test_blas_split_switch_gives_the_same_results():
    rng = np.random.default_rng(10)
    ly = ConvShape(1, 14, 14, 6, ConvLayer(7, h=3, p=1, r=2))
    Z = rng.standard_normal((ly.n_in, 40))
    W, bias = rng.standard_normal(ly.W_shape), rng.standard_normal(ly.d_out)
    old_threads, old_split = kernels.get_num_threads(), kernels.get_blas_split()
    try:
        kernels.set_num_threads(2)
        kernels.set_blas_split(False)
        ref = ly.conv_forward(Z, W, bias)[1]
        kernels.set_blas_split(True)
        np.testing.assert_allclose(ly.conv_forward(Z, W, bias)[1], ref, rtol=1e-12, atol=1e-12)
    finally:
        kernels.set_num_threads(old_threads)
        kernels.set_blas_split(old_split)


def test_P_phipad_is_the_product_of_the_literal_matrices():
    ly = ConvShape(1, 5, 4, 2, ConvLayer(3, h=3, p=1))
    ref = (P_phi(7, 6, 2, 3) @ P_pad(5, 4, 2, 1)).toarray()
    np.testing.assert_array_equal(ly.P_phipad.toarray(), ref)
    assert not ly.P_phipad.data.flags.writeable
    ly0 = ConvShape(1, 5, 4, 2, ConvLayer(3, h=3))
    assert ly0.P_phipad is ly0.P_phi


# ------------------------------------------------------------------- the _sparsetools shim
def test_sparsetools_shim_checks_itself_and_falls_back(monkeypatch):
    """The import check rejects a routine that computes something else; the public fallback is exact."""
    assert sparsetools.self_check(sparsetools._public_csr, sparsetools._public_csc)

    def wrong(n_row, n_col, n_vecs, Ap, Aj, Ax, Xx, Yx):          # forgets the first row
        sparsetools._public_csr(n_row, n_col, n_vecs, Ap, Aj, Ax, Xx, Yx)
        Yx[:n_vecs] = 0.0

    assert not sparsetools.self_check(wrong, sparsetools._public_csc)
    assert not sparsetools.self_check(sparsetools._public_csr, None)          # missing: rejected too


def test_sparsetools_fallback_chosen_by_the_environment_variable():
    import subprocess
    import sys

    code = "from sparsecnn.kernels import sparsetools as s; print(s.USING_PRIVATE, s._PRIVATE_OK)"
    env = {**__import__("os").environ, "SPARSECNN_PUBLIC_SPARSE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    using, ok = out.stdout.split()
    assert using == "False" and ok in ("True", "False")
