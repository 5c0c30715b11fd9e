"""Stochastic gradient with momentum and learning-rate decay, as simpleNN's ``sgd.m``.

Each epoch has ``ceil(l / bsize)`` steps; each step draws ``bsize`` distinct
instances at random (independently of the other steps), takes the gradient of
the mini-batch objective ``f_B(theta) = theta^T theta/(2C) + (1/|B|) sum_{i in B} xi_i``
and updates

    v <- momentum v - lr_t grad f_B(theta),   theta <- theta + v,
    lr_t = lr / (1 + decay t)        (t = number of steps taken).

simpleNN's defaults: ``lr = 0.01``, ``momentum = 0``, ``decay = 0``, ``bsize = 128``.

Examples
--------
>>> import numpy as np
>>> from sparsecnn import FullLayer, Network
>>> net = Network((2, 2, 1), [FullLayer(2)])
>>> X = np.random.default_rng(0).standard_normal((4, 64)); y = (X[0] > 0).astype(int)
>>> theta, hist = sgd(net, net.init_params(seed=0), X, y, C=100.0, lr=0.1, bsize=16,
...                   epoch_max=5, seed=0, full_objective=True)
>>> len(hist), hist.f[-1] < hist.f0
(5, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..kernels import blas_serial
from ..network import Network
from ._common import (
    Callback,
    History,
    Log,
    accuracy,
    check_bool,
    check_callable,
    check_progress,
    check_seed,
    check_validation,
    divergence_hint,
    float_in,
    log_line,
    positive_float,
    positive_int,
)

__all__ = ["sgd", "minibatch_train"]

Update = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, float]]
"""``(theta, grad, t) -> (new theta, learning rate used)``; ``t`` counts steps from 1."""


@blas_serial()
def minibatch_train(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, C: float,
                    update: Update, bsize: int, epoch_max: int, seed: int | None,
                    validation: tuple[np.ndarray, np.ndarray] | None, full_objective: bool,
                    callback: Callback | None, dtype: object = None, keep_best: bool = False,
                    log: Log | None = None, lr: float | None = None,
                    solver: str = "mini-batch training") -> tuple[np.ndarray, History]:
    """The loop SGD and Adam share: epochs of ``ceil(l/bsize)`` random mini-batches.

    Each step draws ``bsize`` distinct instances ``B``, computes
    ``grad f_B(theta)`` (shape ``(n,)``) through the network's forward and backward
    passes and hands it to ``update``.

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
        Initial parameters (copied, not modified).
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
        Column ``i`` is ``vec(Z^{1,i})``.
    y : ndarray of int, shape ``(l,)``
        Labels in ``0..n_L-1``.
    C : float
        Regularisation of ``f``; ``inf`` for none.
    update : callable
        ``(theta, grad, t) -> (new theta, learning rate used)``, ``t = 1, 2, ...``
        counting steps.
    bsize, epoch_max, seed, validation, full_objective, callback, dtype, keep_best, log
        As for :func:`sgd`.
    lr : float, optional
        The learning rate, named in the message when the run diverges.
    solver : str
        The optimiser's name in that message.

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : History
        One row per epoch; ``step`` holds the learning rate ``update`` returned last.

    Raises
    ------
    DivergenceError
        At the first step whose ``f``, gradient or new ``theta`` is not finite, naming the
        epoch and step and the likely cause; ``.theta`` is the last finite iterate.

    Examples
    --------
    Plain gradient descent, ``theta <- theta - 0.1 grad``, on 4 mini-batches per epoch:

    >>> from sparsecnn import FullLayer
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> X = np.random.default_rng(0).standard_normal((4, 64)); y = (X[0] > 0).astype(int)
    >>> def plain(theta, grad, t):
    ...     return theta - 0.1 * grad, 0.1
    >>> theta, hist = minibatch_train(net, net.init_params(seed=0), X, y, C=100.0, update=plain,
    ...                               bsize=16, epoch_max=3, seed=0, validation=None,
    ...                               full_objective=False, callback=None)
    >>> theta.shape, len(hist), hist.step
    ((10,), 3, [0.1, 0.1, 0.1])
    """
    if dtype is not None:                  # the same layers, products in dtype
        net = net.replace(dtype=dtype)
    theta = net.check_theta(theta).copy()
    X = net.check_X(X)
    l = X.shape[1]
    labels = net.check_y(y, l)
    C = net.check_C(C)
    bsize = min(positive_int("bsize", bsize), l)
    epoch_max = positive_int("epoch_max", epoch_max)
    val = check_validation(net, validation)
    check_callable("callback", callback)
    check_callable("log", log)
    keep_best, full_objective = check_bool("keep_best", keep_best), check_bool("full_objective", full_objective)
    rng = np.random.default_rng(check_seed(seed))
    timing = {"steps": 0.0, "full_objective": 0.0, "validation": 0.0}
    hist = History(timing=timing)
    hint = divergence_hint(X=X, C=C, lr=lr)
    if full_objective:
        f0, g0 = net.objective(theta, X, labels, C)
        check_progress(solver, "the initial theta", 0, theta, hint, f=f0, grad=g0, history=hist)
        hist.f0, hist.gnorm0 = f0, float(np.linalg.norm(g0))
        if log is not None:
            log(f"initial f: {f0:g}")
    best_theta = theta
    t_step = 0
    for epoch in range(1, epoch_max + 1):
        t_epoch = time.perf_counter()
        fs, gs = [], []
        lr_used = math.nan
        for _ in range(math.ceil(l / bsize)):
            idx = np.sort(rng.choice(l, size=bsize, replace=False))
            fb, grad = net.objective(theta, X[:, idx], labels[idx], C, batch_size=bsize)
            t_step += 1
            where = f"epoch {epoch} (step {t_step})"
            check_progress(solver, where, epoch, theta, hint, f=fb, grad=grad, history=hist)
            fs.append(fb)
            gs.append(float(np.linalg.norm(grad)))
            theta_new, lr_used = update(theta, grad, t_step)
            check_progress(solver, where, epoch, theta, hint, step=theta_new, history=hist)
            theta = theta_new
        timing["steps"] += time.perf_counter() - t_epoch
        f, gnorm = float(np.mean(fs)), float(np.mean(gs))
        if full_objective:
            t = time.perf_counter()
            f, g_full = net.objective(theta, X, labels, C)
            check_progress(solver, f"epoch {epoch}", epoch, theta, hint, f=f, grad=g_full, history=hist)
            gnorm = float(np.linalg.norm(g_full))
            timing["full_objective"] += time.perf_counter() - t
        elapsed = time.perf_counter() - t_epoch
        acc = math.nan
        if val is not None:
            t = time.perf_counter()
            acc = accuracy(net, theta, val[0], val[1])
            timing["validation"] += time.perf_counter() - t
            if hist.record_validation(epoch, acc):
                best_theta = theta
        row = {"iter": epoch, "f": f, "gnorm": gnorm, "cg_iters": 0, "step": lr_used, "lam": math.nan,
               "val_acc": acc, "time": elapsed}
        hist.append(row)
        if log is not None:
            log(log_line(row))
        if callback is not None:
            callback(row)
    if keep_best and val is not None:
        return best_theta.copy(), hist
    return theta, hist


def sgd(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, C: float,
        lr: float = 0.01, momentum: float = 0.0, decay: float = 0.0, bsize: int = 128,
        epoch_max: int = 500, seed: int | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None, full_objective: bool = False,
        callback: Callback | None = None, dtype: object = None, keep_best: bool = False,
        log: Log | None = None) -> tuple[np.ndarray, History]:
    """Train by SGD with momentum (see the module docstring).

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
        Initial parameters ``[vec(W^1); b^1; ...; vec(W^L); b^L]``.
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
        Column ``i`` is ``vec(Z^{1,i})``.
    y : ndarray of int, shape ``(l,)``
        Labels in ``0..n_L-1``.
    C : float
        Regularisation of ``f(theta) = theta^T theta/(2C) + (1/l) sum_i xi_i``; ``inf``
        for none (as for :func:`sparsecnn.optim.newton`).
    lr, momentum, decay : float
        ``lr_t = lr / (1 + decay t)``; ``v <- momentum v - lr_t grad``, ``0 <= momentum < 1``.
    bsize : int
        Instances per step.
    epoch_max : int
        Epochs (each ``ceil(l / bsize)`` steps).
    seed : int, optional
        Seed of the mini-batch draws.
    validation : (X_val, y_val), optional
        Accuracy after every epoch goes to the history, and the epoch with the
        best one to ``history.best_iter`` (``best_val_acc``).
    keep_best : bool
        Return the ``theta`` of the epoch with the best validation accuracy
        (simpleNN's ``sgd.m`` with validation data) instead of the last one.
    full_objective : bool
        Record ``f`` and ``|grad f|`` on the whole training set after each epoch (one more
        pass); otherwise the history holds their means over the epoch's mini-batches.
    dtype : {"float64", "float32"}, optional
        The float type of the network's products (default: the network's); ``theta``,
        ``f`` and the gradient stay float64.
    callback : callable, optional
        Called with each history row (one per epoch).
    log : callable, optional
        Receives one :func:`~sparsecnn.optim._common.log_line` per epoch (``f``, ``|g|``,
        ``lr``, ``val_acc``), after ``initial f: ...`` with ``full_objective``.

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : History
        One row per epoch.

    Examples
    --------
    Three epochs with momentum and decay, tracking the accuracy on held-out data:

    >>> from sparsecnn import ConvLayer, FullLayer
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((36, 48)); y = rng.integers(0, 3, 48)
    >>> theta, hist = sgd(net, net.init_params(seed=0), X[:, :40], y[:40], C=10.0, lr=0.05,
    ...                   momentum=0.9, decay=0.1, bsize=8, epoch_max=3, seed=0,
    ...                   validation=(X[:, 40:], y[40:]))
    >>> theta.shape, len(hist), hist.step[-1] == 0.05 / (1 + 0.1 * 14)    # 15 steps taken
    ((77,), 3, True)
    >>> all(0.0 <= acc <= 1.0 for acc in hist.val_acc)
    True
    """
    lr = positive_float("lr", lr)
    momentum = float_in("momentum", momentum, 0.0, 1.0, low_closed=True)     # v must forget old steps
    decay = positive_float("decay", decay, allow_zero=True)
    velocity = np.zeros(net.n_params)

    def update(th: np.ndarray, grad: np.ndarray, t: int) -> tuple[np.ndarray, float]:
        nonlocal velocity
        lr_t = lr / (1.0 + decay * (t - 1))
        velocity = momentum * velocity - lr_t * grad
        return th + velocity, lr_t

    return minibatch_train(net, theta, X, y, C=C, update=update, bsize=bsize, epoch_max=epoch_max,
                           seed=seed, validation=validation, full_objective=full_objective,
                           callback=callback, dtype=dtype, keep_best=keep_best, log=log, lr=lr,
                           solver="sgd")
