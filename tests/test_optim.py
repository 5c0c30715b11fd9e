"""Newton (CG, subsampling, line search, Levenberg-Marquardt), SGD and Adam on small problems."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import ConfigError, InputTypeError
from sparsecnn.optim import History, adam, conjugate_gradient, newton, sgd
from sparsecnn.optim.newton import subsample_chunks


def problem(l: int = 60, seed: int = 0) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """Three classes told apart by which third of a 6x6 image is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, l)
    img = 0.3 * rng.standard_normal((6, 6, l))
    for i in range(l):
        img[:, 2 * y[i]:2 * y[i] + 2, i] += 1.0
    X = img.reshape(36, l, order="F")                              # column-major vec (d = 1)
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    return net, net.init_params(seed=seed), X, y


# ------------------------------------------------------------------ CG
def test_cg_solves_damped_system_and_reports_model_quantities():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((8, 8))
    A = B @ B.T
    g = rng.standard_normal(8)
    lam, inv_C = 0.5, 0.1
    res = conjugate_gradient(lambda v: A @ v, g, lam, inv_C, xi=1e-12, cg_max=100)
    d = np.linalg.solve(A + (lam + inv_C) * np.eye(8), -g)
    assert np.allclose(res.d, d, rtol=1e-8, atol=1e-10)
    assert res.gs == pytest.approx(d @ g)
    assert res.sGs == pytest.approx(0.5 * d @ (A + inv_C * np.eye(8)) @ d)   # lambda left out
    assert res.iters <= 8 + 1


def test_cg_stopping_rule_and_limit():
    A = np.diag(np.linspace(1, 100, 50))
    g = np.ones(50)
    res = conjugate_gradient(lambda v: A @ v, g, 0.0, 0.0, xi=0.1, cg_max=250)
    assert res.residual <= 0.1 * np.linalg.norm(g)
    capped = conjugate_gradient(lambda v: A @ v, g, 0.0, 0.0, xi=1e-14, cg_max=3)
    assert capped.iters == 3


def test_subsample_chunks_cover_every_instance_and_have_equal_size():
    chunks = subsample_chunks(np.random.default_rng(0), 10, 4)
    assert [c.size for c in chunks] == [4, 4, 4]
    assert set(np.concatenate(chunks)) == set(range(10))
    assert len(set(np.concatenate(chunks[:2]))) == 8                # a split, not a draw with replacement
    assert [c.size for c in subsample_chunks(np.random.default_rng(0), 10, 10)] == [10]


# -------------------------------------------------------------- helpers
# -------------------------------------------------------------- Newton
def test_newton_decreases_f_and_follows_simplenn_rules():
    net, theta, X, y = problem()
    l = X.shape[1]
    rows: list[dict] = []
    theta1, hist = newton(net, theta, X, y, C=0.01 * l, iter_max=6, GNsize=15, seed=3, callback=rows.append)
    assert isinstance(hist, History) and len(hist) == 6 and len(rows) == 6
    fs = [hist.f0, *hist.f]
    assert all(b < a for a, b in zip(fs[:-1], fs[1:], strict=True))     # sufficient decrease each time
    lam = 1.0
    for k in range(6):
        ratio = hist.extra["ratio"][k]
        lam = lam * 1.5 if ratio < 0.25 else lam * (2 / 3) if ratio >= 0.75 else lam
        assert hist.lam[k] == pytest.approx(lam)
        alpha = hist.step[k]
        assert math.log2(alpha) == round(math.log2(alpha))         # 1, 1/2, 1/4, ...
        assert hist.extra["ls_steps"][k] == 1 - round(math.log2(alpha))
        assert 1 <= hist.cg_iters[k] <= 250
    f_check, g_check = net.objective(theta1, X, y, C=0.01 * l)
    assert hist.f[-1] == pytest.approx(f_check, rel=1e-12)
    assert hist.gnorm[-1] == pytest.approx(np.linalg.norm(g_check), rel=1e-10)
    assert set(hist.timing) >= {"f+g", "line_search", "gn_build", "cg"}
    assert all(math.isnan(a) for a in hist.val_acc)


def test_newton_trial_gradient_and_stored_jacobian_give_the_same_run():
    net, theta, X, y = problem(l=40)
    kw = dict(C=0.4, iter_max=4, GNsize=10, seed=7)
    base, h0 = newton(net, theta, X, y, **kw)
    again, h1 = newton(net, theta, X, y, trial_gradient=False, **kw)
    stored, h2 = newton(net, theta, X, y, jacobian="store", batch_size=16, **kw)
    assert np.array_equal(base, again) and h0.cg_iters == h1.cg_iters
    assert np.allclose(base, stored, rtol=1e-9, atol=1e-12) and h0.cg_iters == h2.cg_iters


def test_newton_default_plan_runs_windowed_and_matches_store_all():
    """The default ``plan="slides"`` (``Z^m`` and winners kept, conv layers window by window)
    takes the steps of the store-all run, up to rounding."""
    net, theta, X, y = problem(l=40)
    kw = dict(C=0.4, iter_max=4, GNsize=10, seed=7)
    windowed, h0 = newton(net, theta, X, y, **kw)
    store_all, h1 = newton(net, theta, X, y, plan=None, **kw)
    assert h0.cg_iters == h1.cg_iters
    assert np.allclose(windowed, store_all, rtol=1e-9, atol=1e-12)
    assert np.allclose(h0.f, h1.f, rtol=1e-12)
    with pytest.raises(ConfigError, match="plan= is not supported with a Dask scheduler"):
        newton(net, theta, X, y, C=0.4, plan=None, workers=1)


@pytest.mark.parametrize("pool, expected", [("max", ("pool1", "Z2", "Z3")), ("avg", None)])
def test_newton_auto_plan_is_slides_only_where_a_layer_runs_windowed(monkeypatch, pool, expected):
    net, theta, X, y = problem(l=20)
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2, pool=pool), FullLayer(3)])
    plans = []
    original = Network.objective

    def spy(self, *args, **kw):
        plans.append(kw.get("plan"))
        return original(self, *args, **kw)

    monkeypatch.setattr(Network, "objective", spy)
    newton(net, net.init_params(seed=0), X, y, C=0.2, iter_max=1, GNsize=10, seed=0)
    assert plans and all((p.retained if p is not None else None) == expected for p in plans)


def test_newton_learns_and_reports_validation_accuracy():
    net, theta, X, y = problem(l=90)
    Xv, yv = X[:, 60:], y[60:]
    theta1, hist = newton(net, theta, X[:, :60], y[:60], C=0.6, iter_max=8, seed=0, validation=(Xv, yv))
    assert hist.val_acc[-1] >= 0.9
    best, hist_b = newton(net, theta, X[:, :60], y[:60], C=0.6, iter_max=8, seed=0, validation=(Xv, yv),
                          keep_best=True)
    acc = np.mean(net.predict(best, Xv) == yv)
    assert acc == max(hist_b.val_acc)


def test_newton_default_GNsize_is_five_percent():
    net, theta, X, y = problem(l=60)
    _, hist = newton(net, theta, X, y, C=0.6, iter_max=1, seed=0)
    assert len(hist) == 1                                            # ceil(0.05 * 60) = 3 instances


@pytest.mark.parametrize("kw, err", [({"GNsize": 0}, InputTypeError), ({"jacobian": "x"}, ConfigError),
                                     ({"xi": -1.0}, ConfigError), ({"iter_max": 1.5}, InputTypeError)])
def test_newton_bad_options(kw, err):
    net, theta, X, y = problem(l=10)
    with pytest.raises(err):
        newton(net, theta, X, y, C=1.0, **kw)


# ----------------------------------------------------------- SGD, Adam
def test_sgd_momentum_and_decay():
    net, theta, X, y = problem()
    _, hist = sgd(net, theta, X, y, C=0.6, lr=0.05, momentum=0.9, decay=0.1, bsize=20, epoch_max=4, seed=0,
                  full_objective=True)
    assert len(hist) == 4 and hist.f[-1] < hist.f0
    assert hist.step[-1] == pytest.approx(0.05 / (1 + 0.1 * (4 * 3 - 1)))   # 3 steps per epoch
    assert hist.cg_iters == [0] * 4


def test_sgd_is_reproducible_and_seeded():
    net, theta, X, y = problem()
    a, _ = sgd(net, theta, X, y, C=0.6, bsize=16, epoch_max=2, seed=1)
    b, _ = sgd(net, theta, X, y, C=0.6, bsize=16, epoch_max=2, seed=1)
    c, _ = sgd(net, theta, X, y, C=0.6, bsize=16, epoch_max=2, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_adam_learns():
    net, theta, X, y = problem(l=90)
    theta1, hist = adam(net, theta, X[:, :60], y[:60], C=0.6, lr=0.01, bsize=16, epoch_max=15, seed=0,
                        validation=(X[:, 60:], y[60:]), full_objective=True)
    assert hist.f[-1] < 0.5 * hist.f0
    assert hist.val_acc[-1] >= 0.8


def test_adam_first_step_is_lr_times_sign():
    """With bias correction, Adam's first step is lr * g/(|g| + eps) entrywise."""
    net, theta, X, y = problem(l=8)
    _, g = net.objective(theta, X, y, 1.0)
    theta1, _ = adam(net, theta, X, y, C=1.0, lr=1e-3, bsize=8, epoch_max=1, seed=0)
    assert np.allclose(theta - theta1, 1e-3 * g / (np.abs(g) + 1e-8), rtol=1e-9, atol=1e-15)


def test_cg_zero_gradient_and_no_curvature():
    res = conjugate_gradient(lambda v: 0 * v, np.zeros(4), 1.0, 0.0)
    assert res.iters == 0 and not res.d.any()
    res = conjugate_gradient(lambda v: 0 * v, np.ones(4), 0.0, 0.0)
    assert res.iters == 0 and not res.d.any() and np.isfinite(res.gs)
