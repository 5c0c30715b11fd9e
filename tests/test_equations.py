"""sparsecnn.equations: each of the slides' formulas against the slides' own example, an
independent loop implementation (tests/reference.py) or central differences."""

from __future__ import annotations

import numpy as np
import pytest
from reference import (
    conv_forward_ref,
    maxpool_ref,
    pad_ref,
    pad_T_ref,
    phi_ref,
    phi_T_ref,
    pool_T_ref,
    vec_ref,
)

from sparsecnn import equations as eq
from sparsecnn.activations import get_activation
from sparsecnn.operators import P_pad, P_phi, P_pool, P_pool_avg, max_pool_winners

# the slides' max-pooling example ("Notes on RELU Activation + Max Pooling VI-X")
IMAGE = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
SLIDES_RESULT = np.array([0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 4, 0.])   # typed from the slides


def _slides_P() -> tuple[np.ndarray, object]:
    vec_S = IMAGE.reshape(-1, order="F")
    return vec_S, P_pool(4, 4, 1, 2, data=vec_S)


def _cd(fun, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function along every entry of ``x``."""
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[k] = eps
        g[k] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return g


# ---------------------------------------------------------------- (5), (6), (7) on the slides' example
def test_eq7_slides_4x4_example():
    _, P = _slides_P()
    np.testing.assert_array_equal(eq.eq7(np.array([1., 2., 3., 4.]), P), SLIDES_RESULT)


def test_eq5_slides_4x4_example():
    vec_S, P = _slides_P()
    np.testing.assert_array_equal(eq.eq5(np.array([1., 2., 3., 4.]), P, vec_S), SLIDES_RESULT)


def test_eq6_slides_4x4_example():
    vec_S, P = _slides_P()
    Z_next = eq.pool_Z(P, vec_S)
    np.testing.assert_array_equal(Z_next, [5., 4., 9., 6.])                  # vec([[5, 9], [4, 6]])
    np.testing.assert_array_equal(eq.eq6(np.array([1., 2., 3., 4.]), P, Z_next), SLIDES_RESULT)


# ---------------------------------------------------------------- full layers (1)-(4): central differences
@pytest.fixture
def full_case():
    rng = np.random.default_rng(0)
    W, b, z, U = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal((4, 5)), \
        rng.standard_normal((3, 5))

    def xi(W, b, z):                      # sum_i U_i^T tanh(W z_i + b)
        return float(np.sum(U * np.tanh(W @ z + b[:, None])))

    ds = U * (1 - np.tanh(W @ z + b[:, None]) ** 2)
    return W, b, z, ds, xi


def test_eq1_is_dxi_dW_by_central_differences(full_case):
    W, b, z, ds, xi = full_case
    np.testing.assert_allclose(eq.eq1(ds, z), _cd(lambda W_: xi(W_, b, z), W), rtol=1e-7, atol=1e-8)


def test_eq2_is_dxi_db_by_central_differences(full_case):
    W, b, z, ds, xi = full_case
    np.testing.assert_allclose(eq.eq2(ds), _cd(lambda b_: xi(W, b_, z), b), rtol=1e-7, atol=1e-8)


def test_eq3_is_dxi_dz_by_central_differences(full_case):
    W, b, z, ds, xi = full_case
    np.testing.assert_allclose(eq.eq3(W, ds), _cd(lambda z_: xi(W, b, z_), z), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
def test_eq4_is_dxi_ds_by_central_differences(activation):
    rng = np.random.default_rng(1)
    s = rng.standard_normal((4, 3))
    s[np.abs(s) < 1e-3] = 0.5                                               # away from ReLU's kink
    dz = rng.standard_normal((4, 3))
    sigma = get_activation(activation).sigma
    fd = _cd(lambda s_: float(np.sum(dz * sigma(s_))), s)
    np.testing.assert_allclose(eq.eq4(dz, s, activation), fd, rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------- conv layer: loops and central differences
CONV = dict(a=5, b=4, d=2, h=3, s=1, p=1, d_out=3)


def _ops(a, b, d, h, s, p, **_):
    Pp = P_pad(a, b, d, p) if p else None
    Pf = P_phi(a + 2 * p, b + 2 * p, d, h, s)
    return Pf, Pp


@pytest.mark.parametrize("case", [CONV, dict(a=6, b=6, d=1, h=2, s=2, p=0, d_out=2)])
def test_conv_phi_and_conv_S_match_loops(case):
    a, b, d, h, s, p, d_out = (case[k] for k in ("a", "b", "d", "h", "s", "p", "d_out"))
    Pf, Pp = _ops(**case)
    rng = np.random.default_rng(2)
    Z, W, bias = rng.standard_normal((d * a * b, 3)), rng.standard_normal((d_out, h * h * d)), rng.standard_normal(d_out)
    phi = eq.conv_phi(Z, Pf, Pp)
    S = eq.conv_S(W, phi, bias)
    for i in range(3):
        Zi = Z[:, i].reshape(d, a * b, order="F")
        np.testing.assert_array_equal(phi[:, i], vec_ref(phi_ref(pad_ref(Zi, a, b, p), a + 2 * p, b + 2 * p, h, s)))
        np.testing.assert_allclose(S[:, i], vec_ref(conv_forward_ref(Zi, a, b, W, bias, h, s, p)), rtol=1e-13)


@pytest.fixture
def conv_case():
    a, b, d, h, s, p, d_out = (CONV[k] for k in ("a", "b", "d", "h", "s", "p", "d_out"))
    Pf, Pp = _ops(**CONV)
    rng = np.random.default_rng(3)
    Z, W, bias = rng.standard_normal((d * a * b, 2)), rng.standard_normal((d_out, h * h * d)), rng.standard_normal(d_out)
    U = rng.standard_normal((d_out * a * b, 2))             # a_conv = a, b_conv = b here (p = 1, h = 3)

    def xi(W, bias, Z):                                      # sum_i <U_i, tanh(S^i)>
        return float(np.sum(U * np.tanh(eq.conv_S(W, eq.conv_phi(Z, Pf, Pp), bias))))

    dS = U * (1 - np.tanh(eq.conv_S(W, eq.conv_phi(Z, Pf, Pp), bias)) ** 2)
    return W, bias, Z, dS, xi, Pf, Pp, d_out


def test_conv_dW_by_central_differences(conv_case):
    W, bias, Z, dS, xi, Pf, Pp, d_out = conv_case
    dW = eq.conv_dW(dS, eq.conv_phi(Z, Pf, Pp), d_out)
    np.testing.assert_allclose(dW, _cd(lambda W_: xi(W_, bias, Z), W), rtol=1e-6, atol=1e-8)


def test_conv_db_by_central_differences(conv_case):
    W, bias, Z, dS, xi, Pf, Pp, d_out = conv_case
    np.testing.assert_allclose(eq.conv_db(dS, d_out), _cd(lambda b_: xi(W, b_, Z), bias), rtol=1e-6, atol=1e-8)


def test_conv_dZ_by_central_differences(conv_case):
    W, bias, Z, dS, xi, Pf, Pp, d_out = conv_case
    np.testing.assert_allclose(eq.conv_dZ(W, dS, Pf, Pp), _cd(lambda Z_: xi(W, bias, Z_), Z), rtol=1e-6, atol=1e-8)


def test_conv_dZ_matches_loops():
    a, b, d, h, s, p, d_out = (CONV[k] for k in ("a", "b", "d", "h", "s", "p", "d_out"))
    Pf, Pp = _ops(**CONV)
    rng = np.random.default_rng(4)
    W, dS = rng.standard_normal((d_out, h * h * d)), rng.standard_normal((d_out * a * b, 1))
    dphi = W.T @ dS[:, 0].reshape(d_out, -1, order="F")                     # W^T dS, mat
    ref = pad_T_ref(phi_T_ref(dphi, a + 2 * p, b + 2 * p, d, h, s), a, b, p)
    np.testing.assert_allclose(eq.conv_dZ(W, dS, Pf, Pp)[:, 0], vec_ref(ref), rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------- pooling: loops, batches, dot test
def test_pool_Z_and_eq7_match_loops_for_a_batch():
    a, b, d, r, l = 6, 4, 2, 2, 3
    rng = np.random.default_rng(5)
    S = rng.standard_normal((d * a * b, l))
    A = np.maximum(S, 0)
    P = P_pool(a, b, d, r, winners=max_pool_winners(A, a, b, d, r), layout="instances-last")
    Zn = eq.pool_Z(P, S)
    v = rng.standard_normal(Zn.shape)
    back = eq.eq7(v, P)
    for i in range(l):
        pooled, winners = maxpool_ref(A[:, i].reshape(d, a * b, order="F"), a, b, r)
        np.testing.assert_array_equal(Zn[:, i], vec_ref(pooled))
        np.testing.assert_array_equal(back[:, i], pool_T_ref(v[:, i], winners, d * a * b))


def test_eq7_is_the_adjoint_of_pooling_dot_test():
    a, b, d, r, l = 4, 6, 3, 2, 4
    rng = np.random.default_rng(6)
    A, w = rng.standard_normal((d * a * b, l)), rng.standard_normal((d * (a // r) * (b // r), l))
    for P in (P_pool(a, b, d, r, data=A, layout="instances-last"), P_pool_avg(a, b, d, r)):
        Zn = eq.pool_Z(P, A, "identity")
        assert np.isclose(np.sum(w * Zn), np.sum(eq.eq7(w, P) * A), rtol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "sigmoid"])
def test_eq5_equals_eq6_with_max_pooling(activation):
    a, b, d, r, l = 4, 4, 2, 2, 5
    rng = np.random.default_rng(7)
    S = rng.standard_normal((d * a * b, l))
    P = P_pool(a, b, d, r, data=get_activation(activation).sigma(S), layout="instances-last")
    v = rng.standard_normal((d * (a // r) * (b // r), l))
    np.testing.assert_allclose(eq.eq5(v, P, S, activation), eq.eq6(v, P, eq.pool_Z(P, S, activation), activation),
                               rtol=1e-14, atol=1e-15)


def test_eq5_is_dxi_dS_by_central_differences():
    a, b, d, r = 4, 4, 1, 2
    rng = np.random.default_rng(8)
    S = rng.standard_normal(d * a * b)
    P = P_pool(a, b, d, r, data=np.maximum(S, 0))                           # P_pool fixed at S
    v = rng.standard_normal(d * (a // r) * (b // r))
    fd = _cd(lambda S_: float(v @ eq.pool_Z(P, S_)), S)
    np.testing.assert_allclose(eq.eq5(v, P, S), fd, rtol=1e-7, atol=1e-8)
