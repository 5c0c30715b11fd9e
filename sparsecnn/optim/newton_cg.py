"""The Newton-CG iteration on any :class:`NewtonProblem`: subsampling, CG, line search, Levenberg-Marquardt.

:func:`sparsecnn.optim.newton` runs it in this process, :func:`sparsecnn.distributed.newton_distributed`
on a Dask cluster; the method itself is described in :mod:`sparsecnn.optim.newton`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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

__all__ = ["conjugate_gradient", "CGResult", "subsample_chunks", "NewtonProblem", "newton_loop"]


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

    Examples
    --------
    With ``G = 2I`` one CG step solves ``2 d = -g``:

    >>> res = conjugate_gradient(lambda v: 2 * v, np.array([2.0, -4.0]), lam=0.0, inv_C=0.0)
    >>> res.d, res.iters
    (array([-1.,  2.]), 1)
    >>> round(res.gs, 9), round(res.sGs, 9), res.residual < 1e-12    # d^T g, (1/2) d^T G d
    (-10.0, 5.0, True)
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

    Returns
    -------
    CGResult
        ``d`` full of NaN when a product ``(G + (lam + inv_C) I) v`` overflows (the
        caller reports the divergence).

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
        if not math.isfinite(vGv):                     # overflow (huge lambda, 1/C or G): no direction
            nan = np.full_like(g, np.nan)
            return CGResult(nan, iters, math.nan, math.nan, math.nan)
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


class NewtonProblem(Protocol):
    """What the Newton iteration asks of the objective (in-process or distributed).

    ``l`` instances; ``objective(theta) -> (f, grad f)``; ``f(theta) -> f``;
    ``gauss_newton(theta, idx)`` returns an operator with ``matvec(v) = G_S v`` for
    the instances ``idx`` (and optionally ``release()``).

    :func:`newton` runs :func:`newton_loop` on ``_InProcess`` (a
    :class:`~sparsecnn.Network` and its data in this process);
    :func:`sparsecnn.distributed.newton_distributed` on a problem whose sums
    over instances are computed on Dask workers.

    Examples
    --------
    >>> from sparsecnn import FullLayer, Network
    >>> net = Network((2, 2, 1), [FullLayer(3)])
    >>> X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0, 1, 2])
    >>> from sparsecnn.optim.newton import _InProcess
    >>> problem: NewtonProblem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
    >>> problem.l
    6
    >>> theta, hist = newton_loop(problem, net, net.init_params(seed=0), C=6.0, iter_max=2, seed=0)
    >>> hist.f[-1] < hist.f0
    True
    """

    @property
    def l(self) -> int:
        """Number of instances."""
        ...

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``f(theta)`` and ``grad f(theta)``, shape ``(n,)``.

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0, 1, 2])
        >>> from sparsecnn.optim.newton import _InProcess
        >>> problem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
        >>> theta = net.init_params(seed=0)
        >>> f, grad = problem.objective(theta)
        >>> grad.shape == theta.shape, bool(np.isclose(f, net.objective(theta, X, y, C=6.0)[0]))
        (True, True)
        """
        ...

    def f(self, theta: np.ndarray) -> float:
        """``f(theta)`` alone.

        The line search's trials with ``trial_gradient=False`` call it: forward
        passes only, no backward pass.

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0, 1, 2])
        >>> from sparsecnn.optim.newton import _InProcess
        >>> problem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
        >>> theta = net.init_params(seed=0)
        >>> bool(np.isclose(problem.f(theta), problem.objective(theta)[0]))
        True
        """
        ...

    def gauss_newton(self, theta: np.ndarray, idx: np.ndarray) -> Any:
        """An operator with ``matvec(v) = G_S v`` for the instances ``S = idx``.

        ``G_S = (1/|S|) sum_{i in S} (J^i)^T B^i J^i`` (``B^i`` of ``net.loss``), without the ``I/C`` of the
        regularisation (:func:`conjugate_gradient` adds it).

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> from sparsecnn.second_order import GaussNewton
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0, 1, 2])
        >>> from sparsecnn.optim.newton import _InProcess
        >>> problem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
        >>> theta, v, idx = net.init_params(seed=0), np.ones(net.n_params), np.array([4, 1])
        >>> G_S = problem.gauss_newton(theta, idx)
        >>> np.allclose(G_S.matvec(v), GaussNewton(net, theta, X[:, [4, 1]]) @ v)
        True
        """
        ...


@blas_serial()
def newton_loop(problem: NewtonProblem, net: Network, theta: np.ndarray, *, C: float, iter_max: int = 100,
                GNsize: int | None = None, xi: float = 0.1, CGmax: int = 250, lam: float = 1.0,
                drop: float = 2 / 3, boost: float = 3 / 2, eta: float = 1e-4, seed: int | None = None,
                validation: tuple[np.ndarray, np.ndarray] | None = None, keep_best: bool = False,
                trial_gradient: bool = True, max_ls_steps: int = 60, callback: Callback | None = None,
                batch_size: int = 1024, log: Log | None = None, X_hint: np.ndarray | None = None
                ) -> tuple[np.ndarray, History]:
    """The Newton iteration of the module docstring on any :class:`NewtonProblem`.

    :func:`newton` runs it in this process and
    :func:`sparsecnn.distributed.newton_distributed` on a Dask cluster; the
    arguments are :func:`newton`'s (``net`` and ``batch_size`` serve the
    validation accuracy, computed in this process).  ``X_hint``, the inputs when
    available, lets the divergence message judge their scale.

    A non-finite ``f`` or gradient (at the initial ``theta`` or an accepted step) or
    CG direction raises :class:`~sparsecnn.exceptions.DivergenceError` naming the
    iteration and the likely cause, with the last finite iterate as ``.theta``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(2)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((16, 20)); y = (X[5] > 0).astype(int)
    >>> from sparsecnn.optim.newton import _InProcess
    >>> problem = _InProcess(net, X, y, 2.0, 1024, "recompute", np.dtype("float64"))
    >>> theta, hist = newton_loop(problem, net, net.init_params(seed=0), C=2.0, iter_max=2, seed=0)
    >>> len(hist), hist.f[-1] < hist.f0
    (2, True)
    """
    theta = np.array(theta, dtype=np.float64)
    l = int(problem.l)
    iter_max = positive_int("iter_max", iter_max)
    GNsize = math.ceil(0.05 * l) if GNsize is None else positive_int("GNsize", GNsize)
    GNsize = min(GNsize, l)
    xi = positive_float("xi", xi)
    CGmax = positive_int("CGmax", CGmax)
    lam = positive_float("lambda", lam, allow_zero=True)
    drop = float_in("drop", drop, 0.0, 1.0, high_closed=True)          # drop = boost = 1: a fixed lambda
    boost = float_in("boost", boost, 1.0, math.inf, low_closed=True)
    eta = float_in("eta", eta, 0.0, 1.0)                                # eta >= 1: no step is ever accepted
    max_ls_steps = positive_int("max_ls_steps", max_ls_steps)
    val = check_validation(net, validation)
    check_callable("callback", callback)
    check_callable("log", log)
    keep_best, trial_gradient = check_bool("keep_best", keep_best), check_bool("trial_gradient", trial_gradient)
    rng = np.random.default_rng(check_seed(seed))
    inv_C = 1.0 / C
    timing = {"f+g": 0.0, "line_search": 0.0, "gn_build": 0.0, "cg": 0.0, "validation": 0.0}
    hist = History(timing=timing)

    t0 = time.perf_counter()
    f, grad = problem.objective(theta)
    timing["f+g"] += time.perf_counter() - t0
    hint = divergence_hint(X=X_hint, C=C, lam=lam)
    check_progress("newton", "the initial theta", 0, theta, hint, f=f, grad=grad, history=hist)
    hist.f0, hist.gnorm0 = f, float(np.linalg.norm(grad))
    if log is not None:
        log(f"initial f: {f:g}")
    best_theta = theta
    n_splits = math.ceil(l / GNsize)
    chunks: list[np.ndarray] = []

    for k in range(1, iter_max + 1):
        t_iter = time.perf_counter()
        if (k - 1) % n_splits == 0:
            chunks = subsample_chunks(rng, l, GNsize)
        idx = chunks[(k - 1) % n_splits]

        t = time.perf_counter()
        G = problem.gauss_newton(theta, idx)
        timing["gn_build"] += time.perf_counter() - t
        t = time.perf_counter()
        res = conjugate_gradient(G.matvec, grad, lam, inv_C, xi, CGmax)
        timing["cg"] += time.perf_counter() - t
        if hasattr(G, "release"):
            G.release()
        del G
        check_progress("newton", f"iteration {k} (CG direction)", k, theta, hint, step=res.d, history=hist)

        # line search: alpha = 1, 1/2, ... until sufficient decrease
        t = time.perf_counter()
        alpha, steps, accepted = 1.0, 0, False
        theta_new, f_new, g_new = theta, f, None
        actred = prered = math.nan
        while steps < max_ls_steps:
            steps += 1
            theta_new = theta + alpha * res.d
            if trial_gradient:
                f_new, g_new = problem.objective(theta_new)
            else:
                f_new = problem.f(theta_new)
            actred = f_new - f
            prered = alpha * res.gs + alpha * alpha * res.sGs
            if actred <= eta * alpha * res.gs:
                accepted = True
                break
            alpha *= 0.5
        timing["line_search"] += time.perf_counter() - t

        ratio = actred / prered if prered != 0 else math.nan
        if ratio < 0.25 or not accepted:
            lam *= boost
        elif ratio >= 0.75:
            lam *= drop

        t = time.perf_counter()
        if accepted:
            grad_new = g_new if g_new is not None else problem.objective(theta_new)[1]
            check_progress("newton", f"iteration {k}", k, theta, hint, f=f_new, grad=grad_new, history=hist)
            theta, f, grad = theta_new, f_new, grad_new
        else:
            alpha = 0.0
        timing["f+g"] += time.perf_counter() - t
        gnorm = float(np.linalg.norm(grad))
        elapsed = time.perf_counter() - t_iter

        acc = math.nan
        if val is not None:
            t = time.perf_counter()
            acc = accuracy(net, theta, val[0], val[1], batch_size)
            timing["validation"] += time.perf_counter() - t
            if hist.record_validation(k, acc):
                best_theta = theta
        row = {"iter": k, "f": f, "gnorm": gnorm, "cg_iters": res.iters, "step": alpha, "lam": lam,
               "val_acc": acc, "time": elapsed, "actred": actred, "prered": prered, "ratio": ratio,
               "ls_steps": steps}
        hist.append(row)
        if log is not None:
            log(log_line(row))
        if callback is not None:
            callback(row)
    if log is not None:
        log(f"total_#CG: {sum(hist.cg_iters)}")
    if keep_best and val is not None:
        return best_theta.copy(), hist
    return theta, hist
