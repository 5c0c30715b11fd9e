"""simpleNN's training options in the optimisers: the best model by validation accuracy, the log lines."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.optim import adam, newton, sgd
from sparsecnn.optim._common import log_line


def problem(l: int = 90, seed: int = 0) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    """Three classes told apart by which third of a 6x6 image is bright, with much noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, l)
    img = 0.8 * rng.standard_normal((6, 6, l))
    for i in range(l):
        img[:, 2 * y[i]:2 * y[i] + 2, i] += 1.0
    X = img.reshape(36, l, order="F")
    net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(3)])
    return net, net.init_params(seed=seed), X, y


RUNS = {
    "newton": (lambda net, th, X, y, **kw: newton(net, th, X, y, C=0.6, GNsize=10, seed=0, **kw), "iter_max"),
    "sgd": (lambda net, th, X, y, **kw: sgd(net, th, X, y, C=0.6, lr=0.05, momentum=0.5, bsize=8, seed=0, **kw),
            "epoch_max"),
    "adam": (lambda net, th, X, y, **kw: adam(net, th, X, y, C=0.6, lr=0.05, bsize=8, seed=0, **kw),
             "epoch_max"),
}


@pytest.mark.parametrize("solver", sorted(RUNS))
def test_keep_best_returns_the_iterate_of_the_best_validation_accuracy(solver: str) -> None:
    """simpleNN's cnn_train with validation data: the model of the best val_acc (first on ties)."""
    run, length = RUNS[solver]
    net, theta, X, y = problem()
    Xv, yv = X[:, 60:], y[60:]
    last, hist = run(net, theta, X[:, :60], y[:60], validation=(Xv, yv), **{length: 8})
    best, hist_b = run(net, theta, X[:, :60], y[:60], validation=(Xv, yv), keep_best=True, **{length: 8})
    assert hist_b.val_acc == hist.val_acc                               # the same run
    k = int(np.argmax(hist.val_acc)) + 1                                # first maximum, 1-based
    assert hist.best_iter == hist_b.best_iter == k
    assert hist.best_val_acc == max(hist.val_acc)
    # independently: the same run stopped at iteration k ends at that theta
    stopped, _ = run(net, theta, X[:, :60], y[:60], **{length: k})
    assert np.array_equal(best, stopped)
    assert np.mean(net.predict(best, Xv) == yv) == hist.best_val_acc
    if k < 8:
        assert not np.array_equal(best, last)
    assert hist.as_dict()["best_iter"] == k


def test_without_validation_nothing_is_best() -> None:
    net, theta, X, y = problem(l=30)
    last, hist = newton(net, theta, X, y, C=0.3, iter_max=2, seed=0, keep_best=True)
    again, _ = newton(net, theta, X, y, C=0.3, iter_max=2, seed=0)
    assert hist.best_iter == 0 and math.isnan(hist.best_val_acc)
    assert np.array_equal(last, again)


NEWTON_LINE = re.compile(
    r"(\d+)-iter f: (\S+) \|g\|: (\S+) alpha: (\S+) ratio: (\S+) lambda: (\S+) #CG: (\d+) "
    r"actred: (\S+) prered: (\S+)(?: val_acc: (\S+))?")


def test_newton_log_lines_say_what_simplenn_prints() -> None:
    net, theta, X, y = problem()
    lines: list[str] = []
    _, hist = newton(net, theta, X[:, :60], y[:60], C=0.6, iter_max=4, GNsize=10, seed=0,
                     validation=(X[:, 60:], y[60:]), log=lines.append)
    assert lines[0] == f"initial f: {hist.f0:g}"
    assert lines[-1] == f"total_#CG: {sum(hist.cg_iters)}"
    assert len(lines) == 4 + 2
    for k, line in enumerate(lines[1:-1]):
        m = NEWTON_LINE.fullmatch(line)
        assert m, line
        got = [float(v) for v in m.groups()]
        want = [k + 1, hist.f[k], hist.gnorm[k], hist.step[k], hist.extra["ratio"][k], hist.lam[k],
                hist.cg_iters[k], hist.extra["actred"][k], hist.extra["prered"][k], hist.val_acc[k]]
        assert got == pytest.approx(want, rel=1e-5)
        assert got[7] / got[8] == pytest.approx(got[4], rel=1e-4)      # ratio = actred/prered


def test_newton_log_without_validation_has_no_val_acc() -> None:
    net, theta, X, y = problem(l=30)
    lines: list[str] = []
    newton(net, theta, X, y, C=0.3, iter_max=2, seed=0, log=lines.append)
    assert all("val_acc" not in line for line in lines) and NEWTON_LINE.fullmatch(lines[1])


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_epoch_log_lines(solver: str) -> None:
    run, _ = RUNS[solver]
    net, theta, X, y = problem()
    lines: list[str] = []
    _, hist = run(net, theta, X[:, :60], y[:60], validation=(X[:, 60:], y[60:]), epoch_max=3,
                  full_objective=True, log=lines.append)
    assert lines[0] == f"initial f: {hist.f0:g}"
    assert lines[1:] == [f"{k + 1}-epoch f: {hist.f[k]:g} |g|: {hist.gnorm[k]:g} lr: {hist.step[k]:g} "
                         f"val_acc: {hist.val_acc[k]:g}" for k in range(3)]


def test_log_line_formats_with_percent_g() -> None:
    """The numbers are printed as simpleNN's fprintf('%g') prints them."""
    row = {"iter": 12, "f": 1234567.0, "gnorm": 1e-7, "step": 0.25, "ratio": -0.5, "lam": 1.5, "cg_iters": 3,
           "actred": 2.0e-5, "prered": -4.0e-5, "val_acc": 0.951}
    assert log_line(row) == ("12-iter f: 1.23457e+06 |g|: 1e-07 alpha: 0.25 ratio: -0.5 lambda: 1.5 #CG: 3 "
                             "actred: 2e-05 prered: -4e-05 val_acc: 0.951")
    assert "%g" % 1234567.0 == "1.23457e+06"                           # noqa: UP031  (C's %g)
