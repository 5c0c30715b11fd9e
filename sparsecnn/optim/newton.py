"""Subsampled Gauss-Newton method with conjugate gradient, as simpleNN runs it.

The objective is ``f(theta) = theta^T theta/(2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2``
(simpleNN's option ``-C 0.01`` means ``C = 0.01 l`` here).  Iteration ``k``:

1. **Subsample.**  The ``l`` instances are split, after a random permutation, into
   ``ceil(l / GNsize)`` chunks of ``GNsize`` (the last one topped up with the first
   instances of the permutation, so every chunk has ``GNsize``); iteration ``k``
   uses chunk ``(k-1) mod ceil(l/GNsize)``, and a new permutation is drawn whenever
   the chunks are used up.  ``G_S = (1/|S|) sum_{i in S} (J^i)^T 2I J^i`` on the chunk ``S``.
2. **CG** on ``(G_S + (lambda + 1/C) I) d = -grad f`` from ``d = 0``, stopping when
   ``||r|| <= xi ||grad f||`` or after ``CGmax`` iterations.  It also returns
   ``gs = d^T grad f`` and ``sGs = (1/2) d^T (G_S + I/C) d``, computed as
   ``(1/2) d^T (-grad f - r - lambda d)`` from the final residual ``r`` (no extra product).
3. **Line search.**  ``alpha = 1, 1/2, 1/4, ...`` until
   ``f(theta + alpha d) - f(theta) <= eta alpha gs``.
4. **Levenberg-Marquardt.**  With ``actred = f(theta + alpha d) - f(theta)`` and
   ``prered = alpha gs + alpha^2 sGs``, ``lambda`` is multiplied by ``boost = 3/2``
   when ``actred/prered < 0.25`` and by ``drop = 2/3`` when it is ``>= 0.75``.
5. **Gradient** at the new ``theta``.  The forward pass of the accepted line-search
   point is kept, so only the backward passes remain (simpleNN runs the forward
   pass again).

Departures from simpleNN, all documented: the line search gives up after
``max_ls_steps`` halvings (simpleNN loops on), keeping ``theta`` unchanged for
that iteration; the returned ``theta`` is the last iterate (simpleNN returns the
one with the best validation accuracy when validation data are given; pass
``keep_best=True`` for that).  ``sGs`` carries the factor 1/2 of the quadratic
model, as simpleNN's Python version and the MATLAB ``CG.m`` with ``0.5 * s' * ...``
do (one MATLAB revision omits it).

Examples
--------
>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(2)])
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((36, 40)); y = (X[0] > 0).astype(int)
>>> theta, hist = newton(net, net.init_params(seed=0), X, y, C=0.01 * 40, iter_max=3, seed=0)
>>> len(hist), hist.f[-1] < hist.f0
(3, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigError
from ..network import Network
from ..second_order import JACOBIAN_MODES, GaussNewton
from ._common import (
    Callback,
    History,
    accuracy,
    check_validation,
    evaluate,
    gradient_from,
    positive_float,
    positive_int,
)

__all__ = ["newton", "conjugate_gradient", "CGResult", "subsample_chunks"]


@dataclass
class CGResult:
    """Result of :func:`conjugate_gradient`.

    Attributes
    ----------
    d : ndarray, shape ``(n,)``
        The direction.
    iters : int
        CG iterations (``G v`` products).
    gs : float
        ``d^T g``.
    sGs : float
        ``(1/2) d^T (G + I/C) d``, i.e. ``(1/2) d^T (-g - r - lambda d)``.
    residual : float
        ``||r||`` at the end.
    """

    d: np.ndarray
    iters: int
    gs: float
    sGs: float
    residual: float


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], g: np.ndarray, lam: float,
                       inv_C: float, xi: float = 0.1, cg_max: int = 250) -> CGResult:
    """Solve ``(G + (lam + inv_C) I) d = -g`` by CG from ``d = 0`` (simpleNN's loop).

    Parameters
    ----------
    matvec : callable
        ``v -> G v`` (without the damping).
    g : ndarray, shape ``(n,)``
        The gradient.
    lam, inv_C : float
        Levenberg-Marquardt ``lambda`` and ``1/C``.
    xi : float
        Stop when ``||r|| <= xi ||g||``.
    cg_max : int
        At most this many iterations.

    Examples
    --------
    >>> A = np.diag([1.0, 2.0, 4.0])
    >>> res = conjugate_gradient(lambda v: A @ v, np.ones(3), lam=0.0, inv_C=0.0, xi=1e-12)
    >>> res.d, res.iters
    (array([-1.  , -0.5 , -0.25]), 3)
    >>> round(res.gs, 6), round(res.sGs, 6)
    (-1.75, 0.875)
    """
    damping = lam + inv_C
    d = np.zeros_like(g)
    r = -g
    v = r.copy()
    gnorm = float(np.linalg.norm(g))
    rTr = gnorm * gnorm
    cgtol = xi * gnorm
    iters = 0
    if gnorm == 0.0:                                   # d = 0 solves the system
        return CGResult(d, 0, 0.0, 0.0, 0.0)
    for iters in range(1, cg_max + 1):
        Gv = matvec(v) + damping * v
        vGv = float(v @ Gv)
        if not vGv > 0.0:                              # no curvature along v (only without damping)
            iters -= 1
            break
        alpha = rTr / vGv
        d += alpha * v
        r -= alpha * Gv
        rnew = float(r @ r)
        if math.sqrt(rnew) <= cgtol or iters == cg_max:
            break
        beta = rnew / rTr
        rTr = rnew
        v = r + beta * v
    gs = float(d @ g)
    sGs = 0.5 * float(d @ (-g - r - lam * d))
    return CGResult(d, iters, gs, sGs, float(np.linalg.norm(r)))


def subsample_chunks(rng: np.random.Generator, l: int, GNsize: int) -> list[np.ndarray]:
    """simpleNN's subsamples: a random permutation of ``0..l-1`` split into
    ``ceil(l/GNsize)`` chunks of ``GNsize``, the last topped up from the start.

    Examples
    --------
    >>> [c.size for c in subsample_chunks(np.random.default_rng(0), 10, 4)]
    [4, 4, 4]
    """
    perm = rng.permutation(l)
    perm = np.concatenate([perm, perm[:GNsize]])
    return [perm[i * GNsize:(i + 1) * GNsize] for i in range(math.ceil(l / GNsize))]


def newton(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, C: float,
           iter_max: int = 100, GNsize: int | None = None, xi: float = 0.1, CGmax: int = 250,
           lam: float = 1.0, drop: float = 2 / 3, boost: float = 3 / 2, eta: float = 1e-4,
           batch_size: int = 1024, jacobian: str = "recompute", seed: int | None = None,
           validation: tuple[np.ndarray, np.ndarray] | None = None, keep_best: bool = False,
           reuse_forward: bool = True, max_ls_steps: int = 60,
           callback: Callback | None = None, scheduler: str | None = None,
           workers: int | None = None) -> tuple[np.ndarray, History]:
    """Train by the subsampled Gauss-Newton method (see the module docstring).

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
        Initial parameters (not modified).
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
    y : integer ndarray, shape ``(l,)``
    C : float
        Regularisation constant of ``f`` (already multiplied by ``l``: simpleNN's
        ``-C 0.01`` is ``C = 0.01 * l``).
    iter_max : int
        Newton iterations.
    GNsize : int, optional
        Instances in each subsample for ``G``; default ``ceil(0.05 l)``.
    xi, CGmax : float, int
        CG relative tolerance and iteration limit.
    lam, drop, boost : float
        Initial Levenberg-Marquardt ``lambda`` and its factors.
    eta : float
        Sufficient-decrease constant of the line search.
    batch_size : int
        Instances per forward pass (simpleNN's ``bsize``, 1024 on CPUs).
    jacobian : {"recompute", "store"}
        How ``G v`` is formed (see :class:`sparsecnn.second_order.GaussNewton`).
    seed : int, optional
        Seed of the subsampling.
    validation : (X_val, y_val), optional
        Accuracy after every iteration goes to the history.
    keep_best : bool
        Return the iterate with the best validation accuracy (simpleNN's choice).
    reuse_forward : bool
        Keep the line search's forward caches so that the gradient needs only the
        backward passes (memory: the whole training set's forward cache).
    max_ls_steps : int
        Halvings after which the line search gives up.
    callback : callable, optional
        Called with each history row.
    scheduler : str, optional
        Address of a Dask scheduler: ``f``, ``grad f`` and ``G v`` are computed on its workers,
        one partition of the instances per worker
        (:func:`sparsecnn.distributed.newton_distributed`; same steps up to rounding).
    workers : int, optional
        As ``scheduler``, on a ``LocalCluster`` of this many worker processes started for the run.

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : History
    """
    if scheduler is not None or workers is not None:
        from ..distributed import newton_distributed

        return newton_distributed(net, theta, X, y, C=C, scheduler=scheduler, workers=workers,
                                  iter_max=iter_max, GNsize=GNsize, xi=xi, CGmax=CGmax, lam=lam, drop=drop,
                                  boost=boost, eta=eta, batch_size=batch_size, jacobian=jacobian, seed=seed,
                                  validation=validation, keep_best=keep_best, reuse_forward=reuse_forward,
                                  max_ls_steps=max_ls_steps, callback=callback)
    theta = net._check_theta(theta).copy()
    X = net.check_X(X)
    l = X.shape[1]
    labels = net.check_y(y, l)
    C = net.check_C(C)
    iter_max = positive_int("iter_max", iter_max)
    GNsize = math.ceil(0.05 * l) if GNsize is None else positive_int("GNsize", GNsize)
    GNsize = min(GNsize, l)
    xi = positive_float("xi", xi)
    CGmax = positive_int("CGmax", CGmax)
    lam = positive_float("lambda", lam, allow_zero=True)
    drop, boost, eta = positive_float("drop", drop), positive_float("boost", boost), positive_float("eta", eta)
    batch_size = positive_int("batch_size", batch_size)
    max_ls_steps = positive_int("max_ls_steps", max_ls_steps)
    if jacobian not in JACOBIAN_MODES:
        raise ConfigError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
    val = check_validation(net, validation)
    rng = np.random.default_rng(seed)
    inv_C = 1.0 / C
    timing = {"f+g": 0.0, "line_search": 0.0, "gn_build": 0.0, "cg": 0.0, "validation": 0.0}
    hist = History(timing=timing)

    t0 = time.perf_counter()
    ev = evaluate(net, theta, X, labels, C, batch_size, keep=True)
    f = ev.f
    grad = gradient_from(net, ev, C)
    del ev
    timing["f+g"] += time.perf_counter() - t0
    hist.f0, hist.gnorm0 = f, float(np.linalg.norm(grad))
    best_theta, best_acc = theta, -1.0
    n_splits = math.ceil(l / GNsize)
    chunks: list[np.ndarray] = []

    for k in range(1, iter_max + 1):
        t_iter = time.perf_counter()
        if (k - 1) % n_splits == 0:
            chunks = subsample_chunks(rng, l, GNsize)
        idx = chunks[(k - 1) % n_splits]

        t = time.perf_counter()
        G = GaussNewton(net, theta, X[:, idx], jacobian=jacobian, batch_size=batch_size)
        timing["gn_build"] += time.perf_counter() - t
        t = time.perf_counter()
        res = conjugate_gradient(G.matvec, grad, lam, inv_C, xi, CGmax)
        timing["cg"] += time.perf_counter() - t
        del G

        # line search: alpha = 1, 1/2, ... until sufficient decrease
        t = time.perf_counter()
        alpha, steps, accepted = 1.0, 0, False
        trial = None
        actred = prered = math.nan
        while steps < max_ls_steps:
            steps += 1
            theta_new = theta + alpha * res.d
            trial = evaluate(net, theta_new, X, labels, C, batch_size, keep=reuse_forward)
            actred = trial.f - f
            prered = alpha * res.gs + alpha * alpha * res.sGs
            if actred <= eta * alpha * res.gs:
                accepted = True
                break
            trial = None
            alpha *= 0.5
        timing["line_search"] += time.perf_counter() - t

        ratio = actred / prered if prered != 0 else math.nan
        if ratio < 0.25 or not accepted:
            lam *= boost
        elif ratio >= 0.75:
            lam *= drop

        t = time.perf_counter()
        if accepted and trial is not None:
            theta, f = trial.theta, trial.f
            if trial.batches is None:
                trial = evaluate(net, theta, X, labels, C, batch_size, keep=True)
            grad = gradient_from(net, trial, C)
        else:
            alpha = 0.0
        trial = None
        timing["f+g"] += time.perf_counter() - t
        gnorm = float(np.linalg.norm(grad))
        elapsed = time.perf_counter() - t_iter

        acc = math.nan
        if val is not None:
            t = time.perf_counter()
            acc = accuracy(net, theta, val[0], val[1], batch_size)
            timing["validation"] += time.perf_counter() - t
            if acc > best_acc:
                best_theta, best_acc = theta, acc
        row = {"iter": k, "f": f, "gnorm": gnorm, "cg_iters": res.iters, "step": alpha, "lam": lam,
               "val_acc": acc, "time": elapsed, "actred": actred, "prered": prered, "ratio": ratio,
               "ls_steps": steps}
        hist.append(row)
        if callback is not None:
            callback(row)
    if keep_best and val is not None:
        return best_theta.copy(), hist
    return theta, hist
