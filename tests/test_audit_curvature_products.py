"""Audit of J v, J^T u and the Gauss-Newton operator G as a second-order researcher calls them.

The reference is written here from docs/notation.md alone (not from ``sparsecnn.interop``):
``theta`` is split layer by layer into ``vec(W^m)`` (column-major) and ``b^m``, a conv
filter row lists entry ``r + h q + h^2 c`` for channel ``c``, row ``r``, column ``q``, and
``vec(Z)`` lists channel ``c`` of pixel ``(r, q)`` at ``c + d(r + a q)``.  torch.func's
``jvp``/``vjp`` in float64 then give ``J v``, ``J^T u`` and
``G v = (1/l) J^T B J v`` with ``B^i = 2I`` (squared loss) or
``diag(p^i) - p^i (p^i)^T`` (cross-entropy), as docs/notation.md ("The objective") defines it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import InputTypeError, ShapeError
from sparsecnn.second_order import GaussNewton, gauss_newton, net_JTv, net_Jv

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")

ACT = {"relu": torch.relu, "identity": lambda t: t, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
       "leaky_relu": lambda t: F.leaky_relu(t, 0.01)}


def reference_output(input_shape, specs):
    """``theta, X -> z^{L+1}`` (``(n_L, l)``) in torch, from the notation page's layouts."""
    a0, b0, d0 = input_shape

    def split(theta):
        blocks, off = [], 0
        a, b, d = a0, b0, d0
        n = a * b * d
        for sp in specs:
            if isinstance(sp, ConvLayer):
                rows, cols = sp.d_out, sp.h * sp.h * d
                a_conv = (a + 2 * sp.p - sp.h) // sp.s + 1
                b_conv = (b + 2 * sp.p - sp.h) // sp.s + 1
                a, b, d = a_conv // sp.r, b_conv // sp.r, sp.d_out
                n = a * b * d
            else:
                rows, cols = sp.n_out, n
                n = sp.n_out
            W = theta[off:off + rows * cols].reshape(cols, rows).T         # vec(W) is column-major
            off += rows * cols
            blocks.append((W, theta[off:off + rows]))
            off += rows
        assert off == theta.shape[0]
        return blocks

    def z_out(theta, X):
        l = X.shape[1]
        d = d0
        x = X.T.reshape(l, b0, a0, d0).permute(0, 3, 2, 1)                # x[i, c, r, q]
        z = None
        for sp, (W, bias) in zip(specs, split(theta), strict=True):
            if isinstance(sp, ConvLayer):
                w = W.reshape(sp.d_out, d, sp.h, sp.h).permute(0, 1, 3, 2)  # W[o, r + h q + h^2 c]
                s = ACT[sp.activation](F.conv2d(x, w, bias, stride=sp.s, padding=sp.p))
                if sp.r > 1:
                    s = F.max_pool2d(s, sp.r) if sp.pool == "max" else F.avg_pool2d(s, sp.r)
                x, d = s, sp.d_out
            else:
                if z is None:
                    z = x.permute(0, 3, 2, 1).reshape(l, -1).T              # vec(Z): c + d(r + a q)
                act = sp.activation or ("identity" if sp is specs[-1] else "relu")
                z = ACT[act](W @ z + bias[:, None])
        return z

    return z_out


class Reference:
    """``J v``, ``J^T u`` and ``G v`` of one ``(theta, X)`` by torch.func in float64."""

    def __init__(self, input_shape, specs, loss, theta, X):
        from torch.func import vjp

        z_out = reference_output(input_shape, specs)
        self.T = torch.tensor(theta, dtype=torch.float64)
        Xt = torch.tensor(X, dtype=torch.float64)
        self.fn = lambda th: z_out(th, Xt)
        self.out, self.pull = vjp(self.fn, self.T)
        self.loss, self.l = loss, X.shape[1]

    def Jv(self, v):
        from torch.func import jvp

        return jvp(self.fn, (self.T,), (torch.tensor(v, dtype=torch.float64),))[1].detach().numpy()

    def JTv(self, u):
        return self.pull(torch.tensor(u, dtype=torch.float64))[0].detach().numpy()

    def Gv(self, v):
        Jv = self.Jv(v)
        if self.loss == "squared":
            BJv = 2.0 * Jv
        else:
            p = torch.softmax(self.out.detach(), dim=0).numpy()
            BJv = p * Jv - p * np.sum(p * Jv, axis=0, keepdims=True)
        return self.JTv(BJv / self.l)


ARCHS = {
    "conv-maxpool": ((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]),
    "two-conv-stride-tanh": ((6, 5, 2), [ConvLayer(3, h=2, r=2), ConvLayer(2, h=2, p=1, activation="tanh"),
                                         FullLayer(4), FullLayer(3)]),
    "avgpool-sigmoid-leaky": ((7, 6, 1), [ConvLayer(2, h=3, s=2, p=1, r=2, pool="avg", activation="sigmoid"),
                                          FullLayer(5, activation="leaky_relu"), FullLayer(3)]),
    "full-only": ((2, 3, 1), [FullLayer(4)]),
}


def case(arch, loss, dtype="float64", l=5, seed=0):
    shape, specs = ARCHS[arch]
    net = Network(shape, specs, loss=loss, dtype=dtype)
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed=seed + 1) + 0.1 * rng.standard_normal(net.n_params)
    X = rng.standard_normal((net.n_input, l))
    return net, theta, X, Reference(shape, specs, loss, theta, X), rng


def close(a, b, dtype="float64"):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    tol = 1e-10 if dtype == "float64" else 2e-4
    assert np.max(np.abs(a - b), initial=0.0) <= tol * max(1.0, float(np.max(np.abs(b), initial=0.0)))


# ------------------------------------------------------------ the products
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_audit_eq_jv_jtv_and_G_equal_independent_torch_func(arch, loss, dtype):
    """``net.Jv``, ``net.JTv``, ``net_Jv``, ``net_JTv`` and every way of applying ``G`` (both
    Jacobian modes) equal torch.func's ``jvp``/``vjp`` and ``(1/l) J^T B J v``."""
    net, theta, X, ref, rng = case(arch, loss, dtype)
    v, w = rng.standard_normal(net.n_params), rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, X.shape[1]))
    Jv, JTu, Gv, Gw = ref.Jv(v), ref.JTv(u), ref.Gv(v), ref.Gv(w)
    close(net.Jv(theta, X, v), Jv, dtype)
    close(net_Jv(net, theta, X, v), Jv, dtype)
    close(net.JTv(theta, X, u), JTu, dtype)
    close(net_JTv(net, theta, X, u), JTu, dtype)
    for jacobian in ("recompute", "store"):
        G = gauss_newton(net, theta, X, jacobian=jacobian)
        assert isinstance(G, spla.LinearOperator)
        assert G.shape == (net.n_params, net.n_params) and G.dtype == np.float64
        close(G.Jv(v), Jv, dtype)
        close(G.JTv(u), JTu, dtype)
        for product in (G @ v, G.matvec(v), G.rmatvec(v), G.dot(v), G.adjoint() @ v, G.H @ v, G.T @ v):
            assert product.dtype == np.float64
            close(product, Gv, dtype)
        close(G @ v[:, None], Gv[:, None], dtype)                       # an (n, 1) column stays one
        close(G.matvec(v[:, None]), Gv[:, None], dtype)
        V = np.column_stack([v, w])
        for product in (G @ V, G.matmat(V), G.rmatmat(V)):
            close(product, np.column_stack([Gv, Gw]), dtype)
        close(G @ v.astype(np.float32), ref.Gv(v.astype(np.float32).astype(np.float64)), dtype)


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_audit_eq_g_dense_is_the_reference_matrix_symmetric_psd(arch, loss):
    """``G`` applied to the identity is torch's ``(1/l) J^T B J`` column by column; it is symmetric
    (``v'Gw = w'Gv``) and positive semi-definite; its diagonal is the reference's diagonal."""
    net, theta, X, ref, rng = case(arch, loss, l=4)
    n = net.n_params
    G = gauss_newton(net, theta, X)
    D = G @ np.eye(n)
    D_ref = np.column_stack([ref.Gv(e) for e in np.eye(n)])
    close(D, D_ref)
    close(np.diag(D), np.diag(D_ref))
    assert np.max(np.abs(D - D.T)) <= 1e-12 * np.max(np.abs(D))
    v, w = rng.standard_normal(n), rng.standard_normal(n)
    assert v @ (G @ w) == pytest.approx(w @ (G @ v), rel=1e-12)
    eig = np.linalg.eigvalsh((D + D.T) / 2)
    assert eig.min() >= -1e-12 * eig.max()
    for _ in range(5):
        x = rng.standard_normal(n)
        assert x @ (G @ x) >= 0.0


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_audit_eq_g_subsample_is_G_of_those_columns(loss):
    """``G_S`` (Newton's subsample: ``GaussNewton`` of ``X[:, idx]``) carries ``1/|S|``, not ``1/l``."""
    net, theta, X, _, rng = case("conv-maxpool", loss, l=8)
    idx = np.array([6, 1, 3])
    shape, specs = ARCHS["conv-maxpool"]
    ref = Reference(shape, specs, loss, theta, X[:, idx])
    v = rng.standard_normal(net.n_params)
    close(GaussNewton(net, theta, X[:, idx]) @ v, ref.Gv(v))
    close(GaussNewton(net, theta, X[:, idx], batch_size=2) @ v, ref.Gv(v))


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_audit_eq_newton_cg_scipy_cg_takes_the_operator_directly(loss):
    """``scipy.sparse.linalg.cg`` on ``G + (1/C) I`` (a LinearOperator sum) and on ``G`` itself."""
    net, theta, X, ref, rng = case("conv-maxpool", loss, l=6)
    n, C = net.n_params, 2.0
    G = gauss_newton(net, theta, X)
    w = rng.standard_normal(n)
    A = G + spla.LinearOperator((n, n), matvec=lambda x: x / C, dtype=np.float64)
    x, info = spla.cg(A, ref.Gv(w) + w / C, rtol=1e-12, maxiter=10 * n)
    assert info == 0
    assert np.allclose(x, w, rtol=1e-6, atol=1e-8)
    x, info = spla.cg(G, G @ w, rtol=1e-12, maxiter=10 * n)            # consistent singular system
    assert info == 0
    assert np.allclose(G @ x, G @ w, rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------ defects found by the audit
@pytest.mark.parametrize("jacobian", ["recompute", "store"])
def test_audit_eq_g_operator_keeps_its_theta_and_X_when_the_caller_updates_them_in_place(jacobian):
    """An optimiser loop updates ``theta`` (or a data buffer ``X``) in place after building ``G``:
    ``G v`` must stay the product at the ``theta`` and ``X`` it was built from (it held views of
    both, so its ``W^m`` changed under its kept forward pass: neither the old nor the new ``G``)."""
    net, theta, X, ref, rng = case("conv-maxpool", "squared")
    v = rng.standard_normal(net.n_params)
    theta, X = theta.copy(), X.copy()
    G = gauss_newton(net, theta, X, jacobian=jacobian)
    theta *= 3.0
    X *= 2.0
    close(G @ v, ref.Gv(v))
    close(G.Jv(v), ref.Jv(v))


def test_audit_eq_g_of_no_instances_is_a_shape_error():
    """``G v = (1/l) sum_i ...`` with ``l = 0``: a ShapeError naming ``l``, not Python's
    ZeroDivisionError; ``J v`` and ``J^T u`` of no instances stay empty and zero."""
    net, theta, X, _, _ = case("conv-maxpool", "squared")
    G = gauss_newton(net, theta, X[:, :0])
    for apply in (G.matvec, G.__matmul__, G.rmatvec):
        with pytest.raises(ShapeError, match="l = 0"):
            apply(np.ones(net.n_params))
    assert G.Jv(np.ones(net.n_params)).shape == (net.n_L, 0)
    assert not G.JTv(np.ones((net.n_L, 0))).any()


def test_audit_eq_jv_v_and_u_must_be_real_numbers():
    """A complex ``v`` or ``u`` lost its imaginary part with only a NumPy warning (a wrong ``J v``,
    ``G v`` or ``J^T u``); text or ``None`` raised NumPy's ValueError or TypeError.  Each is an
    InputTypeError naming the argument."""
    net, theta, X, _, rng = case("conv-maxpool", "squared")
    G = gauss_newton(net, theta, X)
    v = rng.standard_normal(net.n_params) * (1 + 1j)
    u = rng.standard_normal((net.n_L, X.shape[1])) * (1 + 1j)
    for apply in (G.Jv, G.matvec, G.rmatvec, G.__matmul__, lambda x: net.Jv(theta, X, x)):
        with pytest.raises(InputTypeError, match="v must be a real numeric array, got dtype complex128"):
            apply(v)
    for apply_u in (G.JTv, lambda x: net.JTv(theta, X, x)):
        with pytest.raises(InputTypeError, match="u must be a real numeric array, got dtype complex128"):
            apply_u(u)
    for junk in ("v", None, np.array([object()] * net.n_params)):
        with pytest.raises(InputTypeError, match="v must be a real numeric array"):
            G.Jv(junk)
    with pytest.raises(InputTypeError, match="u must be a real numeric array"):
        G.JTv("u")


@pytest.mark.parametrize("C", [np.inf, 2.0])
@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_audit_eq_newton_cg_damped_system_with_C_finite_and_infinite(loss, C):
    """``f`` and its gradient (torch autograd of ``theta'theta/(2C) + mean xi``) and the Newton
    direction of ``(G + (lambda + 1/C) I) d = -grad f`` solved by ``conjugate_gradient`` on the
    operator, against a dense solve with the reference ``G``."""
    from sparsecnn.optim import conjugate_gradient

    net, theta, X, ref, rng = case("conv-maxpool", loss, l=6)
    y = rng.integers(0, net.n_L, X.shape[1])
    T = ref.T.clone().requires_grad_(True)
    z = ref.fn(T)
    yt = torch.as_tensor(y)
    if loss == "squared":
        xi = ((z - F.one_hot(yt, net.n_L).T.to(z.dtype)) ** 2).sum(0)
    else:
        xi = F.cross_entropy(z.T, yt, reduction="none")
    f_ref = (T @ T) / (2 * C) + xi.mean()
    (g_ref,) = torch.autograd.grad(f_ref, T)
    f, g = net.objective(theta, X, y, C)
    assert f == pytest.approx(float(f_ref), rel=1e-12)
    close(g, g_ref.numpy())
    n, lam = net.n_params, 0.3
    D_ref = np.column_stack([ref.Gv(e) for e in np.eye(n)])
    d_ref = np.linalg.solve(D_ref + (lam + 1.0 / C) * np.eye(n), -g)
    res = conjugate_gradient(gauss_newton(net, theta, X).matvec, g, lam, 1.0 / C, xi=1e-13, cg_max=20 * n)
    assert np.allclose(res.d, d_ref, rtol=1e-7, atol=1e-9 * np.abs(d_ref).max())
    assert res.gs == pytest.approx(float(d_ref @ g), rel=1e-8)
    assert res.sGs == pytest.approx(0.5 * float(d_ref @ (D_ref @ d_ref + d_ref / C)), rel=1e-6)
