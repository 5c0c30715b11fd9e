"""Audit of newton, sgd and adam runs as a user sees them: both losses, C finite and infinite,
the callback rows and log lines against the returned history, f of the returned theta,
reproducibility with a seed, Newton's monotone f, and a diverging run raising."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import DivergenceError
from sparsecnn.optim import adam, newton, sgd

LOSSES = ["squared", "cross-entropy"]
CS = [math.inf, 0.5]


def problem(loss: str, l: int = 30, seed: int = 0, dtype: str = "float64"):
    net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)], loss=loss, dtype=dtype)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((36, l))
    y = rng.integers(0, 3, l)
    return net, net.init_params(seed=seed), X, y


@pytest.mark.parametrize("C", CS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("options", [{}, {"trial_gradient": False}, {"gn_dtype": "float32"}, {"jacobian": "store"},
                                     {"dtype": "float32"}])
def test_audit_eq_newton_f_never_increases_and_history_matches_the_returned_theta(loss, C, options):
    """The line search accepts only ``f(theta + alpha d) - f(theta) <= eta alpha g^T d < 0``: the
    recorded ``f`` never increases; each row's ``f`` is ``f`` of that iterate (checked on the
    returned ``theta``); the callback receives exactly the history's rows and ``log`` one line
    per iteration between ``initial f`` and ``total_#CG``."""
    net, theta0, X, y = problem(loss)
    rows, lines = [], []
    theta, hist = newton(net, theta0, X, y, C=C, iter_max=6, GNsize=8, seed=1, callback=rows.append,
                         log=lines.append, **options)
    fs = [hist.f0, *hist.f]
    assert all(b <= a for a, b in zip(fs, fs[1:], strict=False))
    assert hist.f[-1] < hist.f0
    for k, (row, step) in enumerate(zip(rows, hist.step, strict=True)):
        assert row["iter"] == k + 1 and row["f"] == hist.f[k] and row["step"] == step
        if step > 0:
            assert row["actred"] < 0.0                                    # an accepted step decreased f
    f_check = net.objective(theta, X, y, C, dtype=options.get("dtype"))[0]
    assert f_check == pytest.approx(hist.f[-1], rel=1e-12)
    assert len(rows) == len(hist) == 6
    assert lines[0].startswith("initial f: ") and lines[-1] == f"total_#CG: {sum(hist.cg_iters)}"
    assert len(lines) == 8 and all(line.startswith(f"{k + 1}-iter f: ") for k, line in enumerate(lines[1:-1]))
    assert np.array_equal(theta0, net.init_params(seed=0))                # not modified


@pytest.mark.parametrize("C", CS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("solver", ["newton", "sgd", "adam"])
def test_audit_same_seed_same_run_other_seed_other_run(solver, loss, C):
    net, theta0, X, y = problem(loss)
    if solver == "newton":
        go = lambda s: newton(net, theta0, X, y, C=C, iter_max=3, GNsize=5, seed=s)  # noqa: E731
    else:
        fn = sgd if solver == "sgd" else adam
        go = lambda s: fn(net, theta0, X, y, C=C, epoch_max=2, bsize=7, seed=s)  # noqa: E731
    (a, ha), (b, hb), (c, _) = go(3), go(3), go(4)
    assert np.array_equal(a, b) and ha.f == hb.f
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("C", CS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_audit_eq_sgd_history_callback_log_and_full_objective(solver, loss, C):
    """With ``full_objective`` each row's ``f`` and ``|g|`` are those of the whole set at that
    epoch's ``theta``; the callback gets the rows, ``log`` the ``initial f`` line and one line per epoch."""
    net, theta0, X, y = problem(loss)
    fn = sgd if solver == "sgd" else adam
    rows, lines = [], []
    theta, hist = fn(net, theta0, X, y, C=C, epoch_max=3, bsize=6, seed=0, full_objective=True,
                     callback=rows.append, log=lines.append, lr=0.01)
    f, g = net.objective(theta, X, y, C)
    assert hist.f[-1] == pytest.approx(f, rel=1e-12) and hist.gnorm[-1] == pytest.approx(np.linalg.norm(g))
    assert hist.f0 == pytest.approx(net.objective(theta0, X, y, C)[0], rel=1e-12)
    assert [r["f"] for r in rows] == hist.f and [r["iter"] for r in rows] == [1, 2, 3]
    assert len(lines) == 4 and lines[0].startswith("initial f: ")
    assert all(line.startswith(f"{k + 1}-epoch f: ") for k, line in enumerate(lines[1:]))
    assert hist.f[-1] < hist.f0


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("solver, kw", [("sgd", {"lr": 1e200}), ("adam", {"lr": 1e200}),
                                        ("newton", {"C": 1e-300})])
def test_audit_a_diverging_run_raises_with_the_last_finite_theta(solver, loss, kw):
    """Never NaN returned silently: a DivergenceError whose ``theta`` is finite and whose history
    holds only finite rows."""
    net, theta0, X, y = problem(loss)
    with pytest.raises(DivergenceError) as info:
        if solver == "newton":
            newton(net, theta0, X, y, iter_max=3, GNsize=5, seed=0, **kw)
        else:
            (sgd if solver == "sgd" else adam)(net, theta0, X, y, C=10.0, epoch_max=3, bsize=6, seed=0, **kw)
    assert info.value.theta is not None and np.isfinite(info.value.theta).all()
    assert all(math.isfinite(f) for f in info.value.history.f)
