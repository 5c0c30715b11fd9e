"""J v, J^T u and the Gauss-Newton operator: finite differences, adjointness, symmetry,
positive semi-definiteness, both Jacobian modes, and torch.func (jvp, vjp)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn._checks import FLOAT_WARNINGS
from sparsecnn.exceptions import ArchitectureError, ConfigError, ShapeError
from sparsecnn.second_order import (
    GaussNewton,
    forward_bytes_per_instance,
    jacobian_bytes_per_instance,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")

ACTS = ["relu", "identity", "tanh", "sigmoid", "leaky_relu"]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def small_net() -> Network:
    return Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(4, h=3, p=1, r=2, activation="tanh"),
                               FullLayer(5), FullLayer(3)])


@pytest.fixture
def problem() -> tuple[Network, np.ndarray, np.ndarray, np.random.Generator]:
    net = small_net()
    rng = np.random.default_rng(0)
    theta = net.init_params(seed=1) + 0.1 * rng.standard_normal(net.n_params)
    X = rng.standard_normal((net.n_input, 7))
    return net, theta, X, rng


def test_Jv_matches_directional_finite_differences(problem):
    net, theta, X, rng = problem
    v = rng.standard_normal(net.n_params)
    eps = 1e-6
    fd = (net.output(theta + eps * v, X) - net.output(theta - eps * v, X)) / (2 * eps)
    Jv = net.Jv(theta, X, v)
    assert Jv.shape == (net.n_L, X.shape[1])
    assert rel(Jv, fd) < 1e-7


def test_Jv_single_instance_columns(problem):
    net, theta, X, rng = problem
    v = rng.standard_normal(net.n_params)
    Jv = net.Jv(theta, X, v)
    for i in (0, 4):
        assert rel(net.Jv(theta, X[:, i:i + 1], v)[:, 0], Jv[:, i]) < 1e-13


def test_adjoint_identity(problem):
    net, theta, X, rng = problem
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, X.shape[1]))
    lhs = float(np.sum(u * net.Jv(theta, X, v)))
    JTu = net.JTv(theta, X, u)
    assert JTu.shape == (net.n_params,)
    assert abs(lhs - JTu @ v) <= 1e-12 * max(1.0, abs(lhs))


def test_JTv_is_the_gradient_direction(problem):
    """J^T (2/l)(z - y) + theta/C is the gradient of the objective."""
    net, theta, X, _ = problem
    y = np.arange(X.shape[1]) % net.n_L
    _, g = net.objective(theta, X, y, C=10.0)
    Z = net.output(theta, X)
    Z[y, np.arange(y.size)] -= 1.0
    assert rel(net.JTv(theta, X, (2.0 / y.size) * Z) + theta / 10.0, g) < 1e-12


@pytest.mark.parametrize("jacobian", ["recompute", "store"])
def test_gauss_newton_symmetric_psd(problem, jacobian):
    net, theta, X, rng = problem
    G = net.gauss_newton(theta, X, jacobian=jacobian)
    assert isinstance(G, LinearOperator)
    assert G.shape == (net.n_params, net.n_params)
    for _ in range(3):
        v, w = rng.standard_normal((2, net.n_params))
        Gv, Gw = G @ v, G @ w
        assert abs(w @ Gv - v @ Gw) <= 1e-12 * np.linalg.norm(Gv) * np.linalg.norm(w)
        assert v @ Gv >= -1e-12 * np.linalg.norm(Gv) * np.linalg.norm(v)
        assert np.array_equal(G.rmatvec(v), Gv)
    assert G.H is G
    assert G.n_matvec == 9


def test_gauss_newton_definition(problem):
    net, theta, X, rng = problem
    v = rng.standard_normal(net.n_params)
    expected = net.JTv(theta, X, 2.0 * net.Jv(theta, X, v)) / X.shape[1]
    assert rel(net.gauss_newton(theta, X) @ v, expected) < 1e-13


def test_gauss_newton_dense_matches_explicit_jacobians(problem):
    """Build every J^i column by column; G = (1/l) sum_i J^i^T 2 J^i."""
    net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    rng = np.random.default_rng(5)
    theta = rng.standard_normal(net.n_params)
    X = rng.standard_normal((16, 3))
    n = net.n_params
    J = np.stack([net.Jv(theta, X, e) for e in np.eye(n)], axis=2)   # (n_L, l, n)
    G_dense = sum(2.0 * J[:, i, :].T @ J[:, i, :] for i in range(3)) / 3
    G = net.gauss_newton(theta, X)
    assert rel(G @ np.eye(n), G_dense) < 1e-12
    assert np.linalg.eigvalsh(G_dense).min() > -1e-10


def test_store_and_recompute_agree(problem):
    net, theta, X, rng = problem
    Gr = GaussNewton(net, theta, X, jacobian="recompute")
    Gs = GaussNewton(net, theta, X, jacobian="store", batch_size=3)     # several batches
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, X.shape[1]))
    assert rel(Gs.Jv(v), Gr.Jv(v)) < 1e-13
    assert rel(Gs.JTv(u), Gr.JTv(u)) < 1e-13
    assert rel(Gs @ v, Gr @ v) < 1e-13
    assert Gr.jacobian_bytes_per_instance == 0
    assert Gs.jacobian_bytes_per_instance == jacobian_bytes_per_instance(net)
    # recompute runs window by window, keeping Z^m and the winners; store keeps the whole forward pass
    assert Gr.bytes_per_instance == forward_bytes_per_instance(net) == 8 * net.n_input + net.plan(
        "slides").bytes_per_instance
    assert Gs.bytes_per_instance - jacobian_bytes_per_instance(net) > 4 * Gr.bytes_per_instance


def test_batches_do_not_change_products(problem):
    net, theta, X, rng = problem
    v = rng.standard_normal(net.n_params)
    assert rel(GaussNewton(net, theta, X, batch_size=2) @ v, GaussNewton(net, theta, X) @ v) < 1e-13


def test_bad_inputs(problem):
    net, theta, X, _ = problem
    with pytest.raises(ConfigError, match="jacobian"):
        net.gauss_newton(theta, X, jacobian="cache")
    G = net.gauss_newton(theta, X)
    with pytest.raises(ShapeError, match="v must have"):
        G.Jv(np.zeros(3))
    with pytest.raises(ShapeError, match="u must have shape"):
        G.JTv(np.zeros((net.n_L, 2)))
    with pytest.raises(ShapeError):
        net.Jv(theta[:-1], X, theta)


# ------------------------------------------------------------------ torch.func
torch = pytest.importorskip("torch")
interop = pytest.importorskip("sparsecnn.interop")


def torch_products(net: Network, theta: np.ndarray, X: np.ndarray, v: np.ndarray, u: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J v, J^T u and G v from torch.func on the equivalent PyTorch model.

    ``to_torch(net, arange(n))`` puts the index into ``theta`` of every parameter
    entry in its place: gathering ``theta`` with those indices maps ``theta`` to the
    PyTorch parameters differentiably.
    """
    from torch.func import functional_call, jvp, vjp

    model = interop.to_torch(net, theta)
    index_model = interop.to_torch(net, np.arange(net.n_params, dtype=np.float64))
    index = {name: p.detach().round().long() for name, p in index_model.named_parameters()}
    x = interop.X_to_torch(net, X)

    def z(th: torch.Tensor) -> torch.Tensor:
        params = {name: th[idx] for name, idx in index.items()}
        return functional_call(model, params, (x,)).T                  # (n_L, l)

    th = torch.from_numpy(theta)
    _, Jv = jvp(z, (th,), (torch.from_numpy(v),))
    _, pull = vjp(z, th)
    (JTu,) = pull(torch.from_numpy(u))
    (Gv,) = pull(2.0 * Jv / X.shape[1])
    return Jv.numpy(), JTu.numpy(), Gv.numpy()


@st.composite
def networks(draw):
    a = draw(st.integers(4, 9))
    b = draw(st.integers(4, 9))
    d = draw(st.integers(1, 3))
    layers: list[ConvLayer | FullLayer] = []
    for _ in range(draw(st.integers(0, 2))):
        layers.append(ConvLayer(draw(st.integers(1, 4)), h=draw(st.integers(1, 3)), s=draw(st.integers(1, 2)),
                                p=draw(st.integers(0, 1)), r=draw(st.integers(1, 2)),
                                activation=draw(st.sampled_from(ACTS)), pool=draw(st.sampled_from(["max", "avg"]))))
    for _ in range(draw(st.integers(0, 1))):
        layers.append(FullLayer(draw(st.integers(1, 6)), activation=draw(st.sampled_from([None, *ACTS]))))
    layers.append(FullLayer(draw(st.integers(1, 4))))
    try:
        net = Network((a, b, d), layers)
    except ArchitectureError:
        assume(False)
        raise
    return net, draw(st.integers(1, 4)), draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("backend", ["fast", "reference"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_products_match_torch_func(backend, case):
    net, l, seed = case
    net = net.replace(backend=backend)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(net.n_params)
    X = rng.standard_normal((net.n_input, l))
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, l))
    Jv_t, JTu_t, Gv_t = torch_products(net, theta, X, v, u)
    for jacobian in ("recompute", "store"):
        G = GaussNewton(net, theta, X, jacobian=jacobian)
        assert rel(G.Jv(v), Jv_t) < 1e-10
        assert rel(G.JTv(u), JTu_t) < 1e-10
        if np.any(Gv_t):
            assert rel(G @ v, Gv_t) < 1e-10


def test_mnist_shaped_network_matches_torch_func():
    """The issue's network on a few random 28x28 images."""
    net = Network((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2),
                                ConvLayer(64, h=3, p=1, r=2), FullLayer(10)])
    rng = np.random.default_rng(3)
    theta = net.init_params(seed=4)
    X = rng.standard_normal((784, 3))
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((10, 3))
    Jv_t, JTu_t, Gv_t = torch_products(net, theta, X, v, u)
    G = net.gauss_newton(theta, X)
    assert rel(G.Jv(v), Jv_t) < 1e-10
    assert rel(G.JTv(u), JTu_t) < 1e-10
    assert rel(G @ v, Gv_t) < 1e-10


def test_G_v_whose_J_v_overflows_warns_and_is_NaN_not_a_silent_wrong_number():
    """``G v`` with ``J v`` beyond float64: NaN (Newton's CG reports the divergence), and a RuntimeWarning
    for a caller of ``G @ v``, worded as numpy's overflow warnings so that the command line drops it."""
    net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    theta = net.init_params(seed=0)
    G = net.gauss_newton(theta, np.random.default_rng(0).standard_normal((36, 2)))
    with pytest.warns(RuntimeWarning, match=r"^overflow encountered in J v \(max \|v\| 1e\+307"):
        Gv = G @ np.full(net.n_params, 1e307)
    assert Gv.shape == (net.n_params,) and np.isnan(Gv).all()
    assert re.match(FLOAT_WARNINGS, "overflow encountered in J v")
