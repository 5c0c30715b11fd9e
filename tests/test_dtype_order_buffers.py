"""The speed options of ``Network``: ``dtype`` (float32 products, float64 sums),
``activate_order`` (max pooling before the activation) and the work buffers.

Each option must leave the slides' numbers alone: ``"pool-first"`` gives the
same ``Z^{m+1}`` and the same gradient by equations (5) and (6) as the slides'
``mat(P_pool vec(sigma(S^m)))``; float32 agrees with float64 to single
precision; reused buffers give bit-identical results, also when several
threads share one network.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sparsecnn import ConfigError, ConvLayer, FullLayer, Network
from sparsecnn.optim import newton

MONOTONE = ["relu", "tanh", "sigmoid", "leaky_relu", "identity"]


def rel(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def problem(net: Network, l: int, seed: int):
    rng = np.random.default_rng(seed)
    Ws, _ = net.unpack(net.init_params(seed=seed))
    theta = net.pack(Ws, [0.3 * rng.standard_normal(W.shape[0]) for W in Ws])
    return theta, rng.standard_normal((net.n_input, l)), rng.integers(0, net.n_L, size=l)


def two_layer(activation: str = "relu", **kw) -> Network:
    return Network((9, 8, 2), [ConvLayer(3, h=3, p=1, r=2, activation=activation),
                               ConvLayer(4, h=2, s=1, p=1, r=2, activation=activation), FullLayer(3)], **kw)


# ----------------------------------------------------------- activate_order
@pytest.mark.parametrize("activation", MONOTONE)
@pytest.mark.parametrize("pool_backward", ["eq5", "eq6"])
def test_eq5_eq6_pool_first_gives_the_slides_Z_and_gradient(activation, pool_backward):
    slides = two_layer(activation, activate_order="slides")
    first = slides.replace(activate_order="pool-first")
    theta, X, y = problem(slides, 7, 3)
    if pool_backward == "eq6" and not all(ly.eq6_valid for ly in slides.conv):
        pytest.skip("equation (6) does not hold for this activation")
    c_s, c_f = slides.forward(theta, X), first.forward(theta, X)
    for m in (2, 3):
        np.testing.assert_array_equal(c_s.kept[f"Z{m}"], c_f.kept[f"Z{m}"])
    f_s, g_s = slides.objective(theta, X, y, 3.0, pool_backward=pool_backward)
    f_f, g_f = first.objective(theta, X, y, 3.0, pool_backward=pool_backward)
    assert f_s == f_f and rel(g_f, g_s) <= 1e-14


def test_eq7_pool_first_winners_differ_only_where_relu_flattens_the_window():
    """ReLU makes a window of non-positive S all zeros: the slides' order picks its first
    entry, pool-first its largest S.  Elsewhere the winners are the same."""
    net = two_layer("relu", activate_order="slides")
    theta, X, _ = problem(net, 6, 4)
    S = net.forward(theta, X).kept["S1"]
    ly = net.conv[0]
    Z_s, w_s = ly.activate_pool(S, order="slides")
    Z_f, w_f = ly.activate_pool(S, order="pool-first")
    np.testing.assert_array_equal(Z_s, Z_f)
    differ = w_s != w_f
    assert differ.any()                                   # the case exists in this example
    assert np.all(Z_s[differ] == 0.0)                     # only in flattened windows
    assert np.all(np.take_along_axis(S, w_f, axis=0)[differ] <= 0.0)


def test_Jv_JTv_agree_between_orders():
    slides = two_layer("tanh", activate_order="slides")
    first = slides.replace(activate_order="pool-first")
    theta, X, _ = problem(slides, 5, 5)
    rng = np.random.default_rng(0)
    v, u = rng.standard_normal(slides.n_params), rng.standard_normal((3, 5))
    assert rel(first.Jv(theta, X, v), slides.Jv(theta, X, v)) <= 1e-13
    assert rel(first.JTv(theta, X, u), slides.JTv(theta, X, u)) <= 1e-13


def test_activate_order_bad_value():
    with pytest.raises(ConfigError, match="activate_order must be one of"):
        two_layer(activate_order="sideways")


# -------------------------------------------------------------------- dtype
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_float32_objective_agrees_with_float64_to_single_precision(activation):
    net = two_layer(activation)
    theta, X, y = problem(net, 9, 6)
    f64, g64 = net.objective(theta, X, y, 4.0, batch_size=4)
    f32, g32 = net.objective(theta, X, y, 4.0, batch_size=4, dtype="float32")
    assert isinstance(f32, float) and g32.dtype == np.float64          # sums stay float64
    assert rel(f32, f64) <= 1e-5 and rel(g32, g64) <= 1e-4
    assert rel(g32, g64) > 0                                           # it did run in float32
    cache = net.forward(theta, X, dtype=np.float32)
    assert cache.output.dtype == np.float32 and cache.kept["phi1"].dtype == np.float32
    fb, gb = net.backward(cache, y, 4.0)
    assert rel(gb, g64) <= 1e-4


def test_float32_network_default_and_outputs():
    net64 = two_layer()
    net32 = net64.replace(dtype="float32")
    theta, X, _ = problem(net64, 5, 7)
    out = net32.output(theta, X)
    assert out.dtype == np.float64 and rel(out, net64.output(theta, X)) <= 1e-5
    np.testing.assert_array_equal(net32.output(theta, X, dtype="float64"), net64.output(theta, X))


def test_float32_second_order_products():
    net = two_layer("relu")
    theta, X, _ = problem(net, 6, 8)
    v = np.random.default_rng(1).standard_normal(net.n_params)
    G64, G32 = net.gauss_newton(theta, X), net.gauss_newton(theta, X, dtype="float32")
    assert rel(G32 @ v, G64 @ v) <= 1e-4
    assert rel(net.Jv(theta, X, v, dtype="float32"), net.Jv(theta, X, v)) <= 1e-5
    for jac in ("store",):
        assert rel(net.gauss_newton(theta, X, jacobian=jac, dtype="float32") @ v, G64 @ v) <= 1e-4


@pytest.mark.parametrize("bad", ["float16", "int64", np.complex128, "double precision"])
def test_dtype_bad_value_names_the_choices(bad):
    with pytest.raises(ConfigError, match=r"dtype must be one of \('float64', 'float32'\)"):
        two_layer(dtype=bad)
    net = two_layer()
    theta, X, y = problem(net, 2, 0)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        net.objective(theta, X, y, dtype=bad)


def test_newton_in_float32_decreases_f_like_float64():
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    theta, X, y = problem(net, 40, 9)
    kw = dict(C=0.4, iter_max=4, GNsize=10, seed=7)
    _, h64 = newton(net, theta, X, y, **kw)
    _, h32 = newton(net, theta, X, y, dtype="float32", **kw)
    assert h32.f[-1] < h32.f0
    assert abs(h32.f[-1] - h64.f[-1]) <= 1e-3 * h64.f[-1]


# ------------------------------------------------------------------ buffers
def test_buffers_reused_across_calls_give_identical_results():
    net = two_layer()
    theta, X, y = problem(net, 11, 10)
    f1, g1 = net.objective(theta, X, y, 2.0, batch_size=4)      # batches 4, 4, 3: prefixes of one buffer
    held = net.buffer_bytes
    assert held > 0
    f2, g2 = net.objective(theta, X, y, 2.0, batch_size=4)
    assert net.buffer_bytes == held                              # nothing new allocated
    fresh = net.replace(reuse_buffers=False)
    f3, g3 = fresh.objective(theta, X, y, 2.0, batch_size=4)
    assert fresh.buffer_bytes == 0
    assert f1 == f2 == f3 and np.array_equal(g1, g2) and np.array_equal(g1, g3)
    net.release_buffers()
    assert net.buffer_bytes == 0


def test_one_network_shared_by_threads_gives_the_serial_results():
    """Work buffers are per thread, and a kernel thread's partial sums are named after
    the calling thread: concurrent callers must not mix their numbers."""
    net = Network((12, 12, 2), [ConvLayer(8, h=3, p=1, r=2), ConvLayer(8, h=3, p=1, r=2), FullLayer(4)])
    problems = [problem(net, 64, s) for s in range(4)]
    serial = [net.objective(t, X, y, 2.0, batch_size=32) for t, X, y in problems]
    results: dict[int, tuple[float, np.ndarray]] = {}
    mismatches: list[int] = []

    def work(k: int) -> None:
        for _ in range(3):
            t, X, y = problems[k]
            results[k] = net.objective(t, X, y, 2.0, batch_size=32)
            if not (results[k][0] == serial[k][0] and np.array_equal(results[k][1], serial[k][1])):
                mismatches.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [0, 1, 2, 3] and mismatches == []
    for k in range(4):
        assert results[k][0] == serial[k][0] and np.array_equal(results[k][1], serial[k][1])


def test_network_pickles_without_its_buffers():
    import pickle

    net = two_layer()
    theta, X, y = problem(net, 3, 1)
    net.objective(theta, X, y)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.buffer_bytes == 0 and clone.activate_order == net.activate_order
    assert np.array_equal(clone.objective(theta, X, y)[1], net.objective(theta, X, y)[1])


def test_replace_rejects_unknown_options():
    with pytest.raises(ConfigError, match="unknown options"):
        two_layer().replace(colour="blue")


@pytest.mark.parametrize("policy", ["store-all", "slides", "min-memory"])
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_planned_objective_in_the_workspace_equals_fresh_arrays(policy, activation):
    """Batch after batch in the network's work arrays (kept ones under their own names,
    the rest shared by the layers) gives the numbers of a pass on fresh arrays, also where
    ``Z^{m+1} = sigma(S^m)`` is ``S^m`` itself (identity, no pooling)."""
    net = Network((7, 6, 2), [ConvLayer(3, h=3, p=1, r=1, activation=activation),
                              ConvLayer(4, h=2, p=1, r=2, activation=activation),
                              ConvLayer(2, h=2, r=1, activation=activation), FullLayer(3)])
    theta, X, y = problem(net, 10, 12)
    plan = net.plan(policy)
    fresh = net.backward(net.forward(theta, X, plan=plan), y, 3.0)            # no workspace
    f_ref, g_ref = net.objective(theta, X, y, 3.0, batch_size=10)            # store-all, one batch
    for _ in range(2):                                                       # the second reuses the arrays
        f, g = net.objective(theta, X, y, 3.0, batch_size=3, plan=plan)
        assert f == pytest.approx(fresh[0], rel=1e-14) and rel(g, fresh[1]) <= 1e-13
        assert f == pytest.approx(f_ref, rel=1e-14) and rel(g, g_ref) <= 1e-13


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_sgd_adam_in_float32_take_the_float64_steps_to_single_precision(solver):
    from sparsecnn.optim import adam, sgd

    train = {"sgd": sgd, "adam": adam}[solver]
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    theta, X, y = problem(net, 24, 13)
    kw = dict(C=2.0, bsize=8, epoch_max=2, seed=0, full_objective=True)
    t64, h64 = train(net, theta, X, y, **kw)
    t32, h32 = train(net, theta, X, y, dtype="float32", **kw)
    assert t32.dtype == np.float64 and net.dtype == np.float64         # the network is left alone
    assert rel(t32, t64) <= 1e-4 and rel(h32.f[-1], h64.f[-1]) <= 1e-4
    assert rel(t32, t64) > 0


def test_conv_backward_needs_phi_or_a_Z_of_the_right_shape():
    from sparsecnn import ShapeError

    ly = two_layer().conv[0]
    rng = np.random.default_rng(0)
    W, dS = rng.standard_normal(ly.W_shape), rng.standard_normal((ly.n_S, 3))
    with pytest.raises(ShapeError, match="needs phi"):
        ly.conv_backward(W, None, dS)
    with pytest.raises(ShapeError, match=r"Z must have shape \(d\*a\*b, l\) = \(144, 3\), got \(143, 3\)"):
        ly.conv_backward(W, None, dS, Z=np.zeros((143, 3)))


def test_newton_dtype_with_a_dask_cluster_is_refused():
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    theta, X, y = problem(net, 8, 1)
    for kw in ({"dtype": "float32"}, {"gn_dtype": "float32"}):
        with pytest.raises(ConfigError, match="dtype= and gn_dtype= are not supported with a Dask scheduler"):
            newton(net, theta, X, y, C=1.0, workers=1, **kw)


def test_newton_gn_dtype_float32_forms_only_G_v_in_single_precision(monkeypatch):
    """``gn_dtype="float32"``: the Gauss-Newton operator is built in float32, ``f`` and the
    gradient stay float64 (the history's ``f`` is the float64 objective of the iterate), and
    the steps are the float64 steps up to the single-precision CG solve."""
    from sparsecnn import second_order

    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    theta, X, y = problem(net, 40, 9)
    kw = dict(C=0.4, iter_max=4, GNsize=10, seed=7)
    built: list[np.dtype] = []
    real_init = second_order.GaussNewton.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self.compute_dtype)

    monkeypatch.setattr(second_order.GaussNewton, "__init__", spy)
    theta64, h64 = newton(net, theta, X, y, **kw)
    assert built and set(built) == {np.dtype("float64")}
    built.clear()
    theta_mixed, hm = newton(net, theta, X, y, gn_dtype="float32", **kw)
    assert built and set(built) == {np.dtype("float32")}
    f_mixed, _ = net.objective(theta_mixed, X, y, 0.4)                   # float64 objective
    assert hm.f[-1] == pytest.approx(f_mixed, rel=1e-12)
    assert rel(theta_mixed, theta64) <= 1e-3 and hm.cg_iters == h64.cg_iters


@pytest.mark.parametrize("policy", [None, "slides", "min-memory"])
def test_layer_after_identity_without_pooling_does_not_write_over_its_input(policy):
    """Where ``Z^2 = S^1`` (identity, ``r = 1``), ``Z^2`` lies in the work array the
    layers share for ``S``; layer 2 (no padding, so no copy of ``Z^2`` is gathered from,
    and several blocks of positions) must write ``S^2`` elsewhere.  Found by CI as a
    wrong gradient of ``W^2`` under the "slides" plan; ``output`` had the same fault."""
    net = Network((20, 20, 4), [ConvLayer(8, h=3, p=1, r=1, activation="identity"),
                                ConvLayer(8, h=3, p=0, r=2), FullLayer(3)])
    theta, X, y = problem(net, 6, 5)
    cache = net.forward(theta, X)                                            # fresh arrays
    g_ref = net.backward(cache, y, 3.0)[1]
    for _ in range(2):                                                       # the second reuses the arrays
        np.testing.assert_allclose(net.output(theta, X, batch_size=3), cache.output, rtol=1e-13, atol=1e-13)
        _, g = net.objective(theta, X, y, 3.0, batch_size=3, plan=policy)
        assert rel(g, g_ref) <= 1e-13
