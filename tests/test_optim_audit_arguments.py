"""Audit of newton, sgd and adam as a user calls them: both losses, C finite and infinite,
callbacks and logs against the returned history, reproducibility with a seed, a diverging run
raising, the line search's monotone f, and the validation of every option."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.exceptions import ConfigError, InputTypeError
from sparsecnn.optim import adam, newton, sgd


def problem(loss: str = "squared", l: int = 24, seed: int = 0):
    net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)], loss=loss)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((36, l))
    y = rng.integers(0, 3, l)
    return net, net.init_params(seed=seed), X, y


def run(solver: str, **kw):
    net, theta, X, y = problem(kw.pop("loss", "squared"))
    if solver == "newton":
        args = {"C": 1.0, "iter_max": 2, "GNsize": 6, "seed": 0, **kw}
        return newton(net, theta, X, y, **args)
    args = {"C": 1.0, "epoch_max": 1, "bsize": 6, "seed": 0, **kw}
    return (sgd if solver == "sgd" else adam)(net, theta, X, y, **args)


# ------------------------------------------------------------- options out of range
@pytest.mark.parametrize("solver, kw, message", [
    ("newton", {"eta": 1.5}, r"eta must be in \(0, 1\), got 1.5"),
    ("newton", {"eta": 1.0}, r"eta must be in \(0, 1\), got 1.0"),
    ("newton", {"drop": 1.5}, r"drop must be in \(0, 1\], got 1.5"),
    ("newton", {"boost": 0.5}, r"boost must be >= 1, got 0.5"),
    ("newton", {"lam": math.inf}, "lambda must be finite, got inf"),
    ("newton", {"xi": math.inf}, "xi must be finite, got inf"),
    ("newton", {"eta": math.inf}, r"eta must be in \(0, 1\), got inf"),
    ("sgd", {"lr": math.inf}, "lr must be finite, got inf"),
    ("sgd", {"decay": math.inf}, "decay must be finite, got inf"),
    ("sgd", {"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ("sgd", {"momentum": 1.5}, r"momentum must be in \[0, 1\), got 1.5"),
    ("adam", {"lr": math.inf}, "lr must be finite, got inf"),
    ("adam", {"eps": math.inf}, "eps must be finite, got inf"),
])
def test_audit_eq_newton_and_eq_sgd_options_outside_their_range_are_config_errors(solver, kw, message):
    """Before: eta >= 1 made every line search fail (theta returned unchanged, no error); drop > 1 and
    boost < 1 inverted the Levenberg-Marquardt rule; momentum >= 1 never forgets a step; an infinite
    lr, decay or lambda ended as a DivergenceError blaming the learning rate or the input scale, and
    an infinite eps returned theta unchanged."""
    with pytest.raises(ConfigError, match=message):
        run(solver, **kw)


@pytest.mark.parametrize("kw", [{"drop": 1.0, "boost": 1.0}, {"eta": 0.5}, {"lam": 0.0}])
def test_audit_eq_newton_edge_values_inside_the_ranges_run(kw):
    """``drop = boost = 1`` (a fixed lambda), any eta in (0, 1) and lambda = 0 stay allowed."""
    _, hist = run("newton", **kw)
    assert len(hist) == 2 and hist.f[-1] <= hist.f0


@pytest.mark.parametrize("solver", ["newton", "sgd", "adam"])
@pytest.mark.parametrize("kw, error, message", [
    ({"seed": "x"}, InputTypeError, "seed must be None or a non-negative integer, got 'x'"),
    ({"seed": -1}, InputTypeError, "seed must be None or a non-negative integer, got -1"),
    ({"seed": 1.5}, InputTypeError, "seed must be None or a non-negative integer, got 1.5"),
    ({"callback": 3}, InputTypeError, "callback must be callable or None, got int"),
    ({"log": "out.txt"}, InputTypeError, "log must be callable or None, got str"),
    ({"validation": np.zeros((36, 4))}, InputTypeError, r"validation must be a pair \(X_val, y_val\), got ndarray"),
])
def test_audit_optimiser_arguments_are_checked_before_any_work(solver, kw, error, message):
    """Before: NumPy's TypeError/ValueError from the seed, Python's 'int object is not callable' after
    the first iteration's work, 'too many values to unpack' for a validation array."""
    with pytest.raises(error, match=message):
        run(solver, **kw)


@pytest.mark.parametrize("solver", ["newton", "sgd", "adam"])
def test_audit_seed_may_be_numpy_integer_or_generator(solver):
    """``np.int64`` seeds and a ``Generator`` are accepted; equal seeds give equal runs."""
    a, _ = run(solver, seed=np.int64(4))
    b, _ = run(solver, seed=4)
    c, _ = run(solver, seed=np.random.default_rng(4))
    assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize("solver, kw", [("newton", {"trial_gradient": "no"}), ("newton", {"keep_best": "False"}),
                                        ("sgd", {"full_objective": "no"}), ("adam", {"keep_best": 0.0}),
                                        ("sgd", {"keep_best": None})])
def test_audit_switches_must_be_booleans(solver, kw):
    """``trial_gradient="no"`` or ``full_objective="no"`` (from a config file, say) was truthy: the
    run silently did the opposite of what was asked."""
    name = next(iter(kw))
    with pytest.raises(InputTypeError, match=f"{name} must be True or False, got"):
        run(solver, **kw)


@pytest.mark.parametrize("solver", ["newton", "sgd", "adam"])
def test_audit_numpy_booleans_are_booleans(solver):
    kw = {"trial_gradient": np.bool_(False)} if solver == "newton" else {"full_objective": np.bool_(True)}
    _, hist = run(solver, keep_best=np.bool_(False), **kw)
    assert len(hist) >= 1
