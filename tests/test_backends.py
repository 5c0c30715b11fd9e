"""One engine, two backends: the reference backend (the literal products of sparsecnn.equations)
and the fast backend (blocked, threaded, window-by-window kernels) give the same f, gradient,
output, J v, J^T u and G v; winners given from outside; the objective's loss by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparsecnn import ConvLayer, FullLayer, Network, engine, kernels
from sparsecnn.data import load_simplenn_mat
from sparsecnn.engine import BACKENDS, Keep, ReferenceBackend
from sparsecnn.exceptions import ArchitectureError, ConfigError, ShapeError
from sparsecnn.objective import LOSSES
from sparsecnn.operators import max_pool_winners

ACTS = ["relu", "identity", "tanh", "sigmoid", "leaky_relu"]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def products(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, v: np.ndarray, u: np.ndarray,
             **kw: object) -> dict[str, object]:
    f, g = net.objective(theta, X, y, 3.0, **kw)
    G = net.gauss_newton(theta, X)
    return {"f": f, "grad": g, "output": net.output(theta, X), "Jv": G.Jv(v), "JTv": G.JTv(u), "Gv": G @ v}


def assert_agree(a: dict[str, object], b: dict[str, object], tol: float) -> None:
    assert abs(a["f"] - b["f"]) <= tol * abs(b["f"])                     # type: ignore[operator]
    for k in ("grad", "output", "Jv", "JTv", "Gv"):
        assert rel(a[k], b[k]) <= tol, k                                   # type: ignore[arg-type]


# ------------------------------------------------------------------ the mnist-demo network
def test_backends_agree_on_the_mnist_demo_network(shared_data):
    net = Network.from_simplenn_config(shared_data / "mnist-demo-layer4.config")
    ref = Network.from_simplenn_config(shared_data / "mnist-demo-layer4.config", backend="reference")
    assert ref.backend.name == "reference" and net.backend.name == "fast"
    X, y = load_simplenn_mat(shared_data / "mnist-demo.mat")
    X, y = X[:, :48] / 255.0, y[:48]
    rng = np.random.default_rng(0)
    theta = net.init_params(seed=0) + 0.01 * rng.standard_normal(net.n_params)
    v, u = rng.standard_normal(net.n_params), rng.standard_normal((net.n_L, 48))
    fast = products(net, theta, X, y, v, u)
    assert_agree(products(ref, theta, X, y, v, u), fast, 1e-12)
    for plan in ("store-all", "slides", "min-memory"):                    # every plan, both backends
        assert_agree(products(ref, theta, X, y, v, u, plan=plan), fast, 1e-12)
        assert_agree(products(net, theta, X, y, v, u, plan=plan), fast, 1e-12)


# ------------------------------------------------------------------ random architectures
@st.composite
def networks(draw):
    a, b, d = draw(st.integers(4, 9)), draw(st.integers(4, 9)), draw(st.integers(1, 3))
    layers: list[ConvLayer | FullLayer] = []
    for _ in range(draw(st.integers(0, 2))):
        layers.append(ConvLayer(draw(st.integers(1, 4)), h=draw(st.integers(1, 3)), s=draw(st.integers(1, 2)),
                                p=draw(st.integers(0, 1)), r=draw(st.integers(1, 2)),
                                activation=draw(st.sampled_from(ACTS)), pool=draw(st.sampled_from(["max", "avg"]))))
    for _ in range(draw(st.integers(0, 1))):
        layers.append(FullLayer(draw(st.integers(1, 6)), activation=draw(st.sampled_from([None, *ACTS]))))
    layers.append(FullLayer(draw(st.integers(1, 4))))
    try:
        net = Network((a, b, d), layers, activate_order=draw(st.sampled_from(["slides", "pool-first"])))
    except ArchitectureError:
        assume(False)
        raise
    return net, draw(st.integers(1, 5)), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_backends_agree_on_random_architectures(case):
    net, l, seed = case
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(net.n_params)
    X = rng.standard_normal((net.n_input, l))
    y = rng.integers(0, net.n_L, l)
    v, u = rng.standard_normal(net.n_params), rng.standard_normal((net.n_L, l))
    fast = products(net, theta, X, y, v, u)
    assert_agree(products(net.replace(backend="reference"), theta, X, y, v, u), fast, 1e-12)


# ------------------------------------------------------------------ the reference backend itself
def test_reference_backend_uses_no_threads_and_no_work_arrays(monkeypatch):
    net = Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(2, h=3, r=1, pool="avg"), FullLayer(4)],
                  backend="reference")
    rng = np.random.default_rng(1)
    theta, X, y = net.init_params(seed=1), rng.standard_normal((128, 6)), rng.integers(0, 4, 6)

    def forbidden(*args, **kwargs):
        raise AssertionError("the reference backend called a kernel")

    for name in ("parallel_ranges", "parallel_blas", "select", "select_T", "spmm", "spmm_T", "scratch"):
        monkeypatch.setattr(kernels, name, forbidden)
    for ly in net.conv:                                                    # the fused kernels of ConvShape
        for name in ("conv_forward", "conv_backward", "conv_pool_forward", "conv_pool_backward", "S", "phi"):
            monkeypatch.setattr(ly, name, forbidden)
    f, g = net.objective(theta, X, y, 2.0)
    net.gauss_newton(theta, X) @ np.ones(net.n_params)
    assert np.isfinite(f) and g.shape == (net.n_params,)
    assert net.buffer_bytes == 0


def test_reference_backend_is_the_literal_product():
    """One conv layer by hand: P_phi (P_pad Z), W phi + b 1^T, P_pool vec(sigma(S))."""
    net = Network((5, 5, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)], backend="reference")
    ly, be = net.conv[0], ReferenceBackend()
    rng = np.random.default_rng(2)
    Z, W, b = rng.standard_normal((25, 1)), rng.standard_normal((2, 9)), rng.standard_normal(2)
    Phi, S = be.conv_forward(ly, Z, W, b)
    phi = (ly.P_phi @ (ly.P_pad @ Z)).reshape(9, 25, order="F")
    np.testing.assert_allclose(S.reshape(2, 25, order="F"), W @ phi + np.outer(b, np.ones(25)), rtol=1e-14)
    Zn, w = be.activate_pool(ly, S, "slides")
    A = np.maximum(S[:, 0], 0)
    P = be.P_pool(ly, w)
    np.testing.assert_array_equal(Zn[:, 0], P @ A)
    np.testing.assert_array_equal(w, max_pool_winners(A[:, None], 5, 5, 2, 2))


# ------------------------------------------------------------------ winners given from outside
@pytest.mark.parametrize("backend", BACKENDS)
def test_winners_given_from_outside_build_P_pool(backend):
    """With ties, another choice of winners gives the same Z^{m+1} and f but another P_pool and
    gradient: dxi/dW^1 reads phi(Z^1) at the winners."""
    net = Network((4, 4, 2), [ConvLayer(1, h=1, r=2), FullLayer(2)], backend=backend)
    W2 = np.array([[1.0, -1.0, 0.5, 2.0], [0.3, 0.2, -0.4, 1.0]])
    theta = net.pack([np.array([[1.0, 0.0]]), W2], [np.zeros(1), np.zeros(2)])   # S^1 = channel 0
    ch0 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4.]])    # each window a 4-way tie
    ch1 = np.random.default_rng(5).standard_normal((4, 4))
    X = np.stack([ch0.reshape(-1, order="F"), ch1.reshape(-1, order="F")], axis=0).reshape(-1, 1, order="F")
    y = np.array([1])
    own = net.forward(theta, X)
    first = engine.winner_positions(net.conv[0], own.kept["pool1"])
    np.testing.assert_array_equal(first, max_pool_winners(X[::2], 4, 4, 1, 2))   # ties: first in vec order
    f0, g0 = net.objective(theta, X, y, np.inf)
    f1, g1 = net.objective(theta, X, y, np.inf, winners={1: first})
    assert f1 == f0 and np.array_equal(g1, g0)
    last = first + 5                                                       # the last entry of each window
    cache = net.forward(theta, X, winners={1: last})
    np.testing.assert_array_equal(engine.winner_positions(net.conv[0], cache.kept["pool1"]), last)
    np.testing.assert_array_equal(cache.output, own.output)
    f2, g2 = net.objective(theta, X, y, np.inf, winners={1: last})
    assert f2 == f0 and g2[0] == pytest.approx(g0[0], rel=1e-14)
    np.testing.assert_allclose(net.backward(cache, y)[1], g2, rtol=1e-14)
    # dxi/dW^1[0, 1] = sum_o dxi/dZ^2_o ch1 at winner o (ReLU is 1: Z^2 > 0), by hand
    dZ2 = W2.T @ (2.0 * (own.output[:, 0] - np.eye(2)[1]))
    c1 = ch1.reshape(-1, order="F")
    for winners, g in ((first, g0), (last, g2)):
        assert g[1] == pytest.approx(dZ2 @ c1[winners[:, 0]], rel=1e-13)
    assert abs(g2[1] - g0[1]) > 1e-3


def test_winners_are_checked():
    net = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), ConvLayer(1, h=1, pool="avg", r=2), FullLayer(2)])
    theta, X = net.init_params(seed=0), np.ones((16, 3))
    with pytest.raises(ShapeError, match=r"\(4, 3\)"):
        net.forward(theta, X, winners={1: np.zeros((4, 2), dtype=int)})
    with pytest.raises(ShapeError, match="not inside window"):
        net.forward(theta, X, winners={1: np.full((4, 3), 15)})
    with pytest.raises(ConfigError, match="max-pooling layers: \\[1\\]"):
        net.objective(theta, X, [0, 1, 0], winners={2: np.zeros((1, 3), dtype=int)})


# ------------------------------------------------------------------ the loop and the store
@pytest.mark.parametrize("backend", BACKENDS)
def test_store_all_is_a_plan_like_any_other(backend):
    """No plan keeps everything; the plan "store-all" keeps less but gives the same numbers; both
    go through the same loops."""
    net = Network((6, 6, 2), [ConvLayer(3, h=3, p=1, r=2, activation="tanh"), FullLayer(4), FullLayer(3)],
                  backend=backend)
    rng = np.random.default_rng(3)
    theta, X, y = net.init_params(seed=3), rng.standard_normal((72, 5)), rng.integers(0, 3, 5)
    everything = net.forward(theta, X)
    assert isinstance(everything.keep, Keep) and everything.plan is None
    assert set(everything.kept) == {"Z1", "Z2", "Z3", "Z4", "phi1", "S1", "S2", "S3", "pool1"}
    f0, g0 = net.backward(everything, y, 2.0)
    store_all = net.forward(theta, X, plan="store-all")
    assert set(store_all.kept) == set(store_all.plan.retained)
    f1, g1 = net.backward(store_all, y, 2.0)
    assert abs(f1 - f0) <= 1e-15 * abs(f0) and rel(g1, g0) <= 1e-13


def test_recipes_carry_their_compute_function():
    net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2, pool="avg", activation="tanh"), FullLayer(3)])
    plan = net.plan("min-memory")
    for name in plan.recipes:
        assert plan.recipe(name).compute is not None or name.startswith(("dW", "db", "dZ", "dphi", "dA")), name


# ------------------------------------------------------------------ backend and loss by name
def test_unknown_backend_and_loss_are_config_errors():
    with pytest.raises(ConfigError, match=r"backend must be one of \('fast', 'reference'\), got 'gpu'"):
        Network((2, 2, 1), [FullLayer(2)], backend="gpu")
    with pytest.raises(ConfigError, match=r"loss must be one of \['cross-entropy', 'squared'\], got 'hinge'"):
        Network((2, 2, 1), [FullLayer(2)], loss="hinge")
    assert sorted(LOSSES) == ["cross-entropy", "squared"]
    net = Network((2, 2, 1), [FullLayer(2)], loss="cross-entropy")
    assert net.loss.name == "cross-entropy" and net.replace(backend="reference").loss.name == "cross-entropy"


def test_squared_loss_value_derivative_and_B_by_differences():
    loss = LOSSES["squared"]
    rng = np.random.default_rng(4)
    out, labels = rng.standard_normal((3, 4)), np.array([0, 2, 1, 2])
    xi_sum, dZ = loss.batch(out, labels, l_total=4)
    assert xi_sum == pytest.approx(loss.xi(out, labels).sum(), rel=1e-15)
    eps = 1e-6
    for k in np.ndindex(out.shape):
        e = np.zeros_like(out)
        e[k] = eps
        fd = (loss.xi(out + e, labels).sum() - loss.xi(out - e, labels).sum()) / (2 * eps)
        assert dZ[k] * 4 == pytest.approx(fd, rel=1e-7, abs=1e-9)        # (1/l) dxi/dz
        fd2 = (loss.batch(out + e, labels, 4)[1] - loss.batch(out - e, labels, 4)[1]) / (2 * eps) * 4
        np.testing.assert_allclose(fd2, loss.B(e / eps), rtol=1e-6, atol=1e-8)   # B = 2 I


# ------------------------------------------------------------------ the default is the fastest exact path
def test_default_objective_runs_window_by_window(monkeypatch):
    """net.objective without a plan runs every conv layer with max pooling window by window, as
    newton(plan="auto") does; the same numbers as store-all to rounding."""
    net = Network((8, 8, 1), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    rng = np.random.default_rng(6)
    theta, X, y = net.init_params(seed=6), rng.standard_normal((64, 5)), rng.integers(0, 3, 5)
    calls: list[str] = []
    fast = type(net.backend)
    for name in ("conv_pool_forward", "conv_pool_backward", "conv_forward", "conv_backward"):
        original = getattr(fast, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(fast, name, spy)
    f, g = net.objective(theta, X, y, 2.0)
    assert sorted(set(calls)) == ["conv_pool_backward", "conv_pool_forward"]
    calls.clear()
    f0, g0 = net.objective(theta, X, y, 2.0, plan="store-all")
    assert sorted(set(calls)) == ["conv_backward", "conv_forward"]
    assert abs(f - f0) <= 1e-15 * abs(f0) and rel(g, g0) <= 1e-14
    assert net.auto_plan() is not None and net.replace(backend="reference").auto_plan() is None
