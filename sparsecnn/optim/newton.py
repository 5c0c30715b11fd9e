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
5. **Gradient** at the new ``theta``.  Each line-search trial computes ``f`` and
   its gradient in one sweep (a backward pass right after each batch's forward
   pass, the network's work arrays reused), so the accepted trial has already
   produced the next iteration's gradient: no forward pass is repeated (simpleNN
   runs it again) and no forward cache of the whole training set is held.  A
   rejected trial costs its backward passes; ``trial_gradient=False`` computes
   ``f`` alone in the trials and the gradient once at the accepted point.

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
from typing import Any, Protocol

import numpy as np

from .. import objective
from ..exceptions import ConfigError
from ..kernels import blas_serial
from ..network import Network
from ..planner import Plan
from ..second_order import JACOBIAN_MODES, GaussNewton
from ._common import (
    Callback,
    History,
    Log,
    accuracy,
    check_progress,
    check_validation,
    divergence_hint,
    log_line,
    positive_float,
    positive_int,
)

__all__ = ["newton", "conjugate_gradient", "CGResult", "subsample_chunks", "NewtonProblem",
           "newton_loop"]


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
        >>> problem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
        >>> theta = net.init_params(seed=0)
        >>> bool(np.isclose(problem.f(theta), problem.objective(theta)[0]))
        True
        """
        ...

    def gauss_newton(self, theta: np.ndarray, idx: np.ndarray) -> Any:
        """An operator with ``matvec(v) = G_S v`` for the instances ``S = idx``.

        ``G_S = (1/|S|) sum_{i in S} (J^i)^T 2I J^i``, without the ``I/C`` of the
        regularisation (:func:`conjugate_gradient` adds it).

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> from sparsecnn.second_order import GaussNewton
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> X, y = np.random.default_rng(0).standard_normal((4, 6)), np.array([0, 1, 2, 0, 1, 2])
        >>> problem = _InProcess(net, X, y, 6.0, 1024, "recompute", np.dtype("float64"))
        >>> theta, v, idx = net.init_params(seed=0), np.ones(net.n_params), np.array([4, 1])
        >>> G_S = problem.gauss_newton(theta, idx)
        >>> np.allclose(G_S.matvec(v), GaussNewton(net, theta, X[:, [4, 1]]) @ v)
        True
        """
        ...


@dataclass
class _InProcess:
    """:class:`NewtonProblem` of a :class:`Network` on ``X`` (checked) in this process."""

    net: Network
    X: np.ndarray
    labels: np.ndarray
    C: float
    batch_size: int
    jacobian: str
    dtype: np.dtype
    gn_dtype: np.dtype | None = None
    plan: Plan | None = None

    @property
    def l(self) -> int:
        return int(self.X.shape[1])

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return self.net.objective(theta, self.X, self.labels, self.C, batch_size=self.batch_size,
                                  dtype=self.dtype, plan=self.plan)

    def f(self, theta: np.ndarray) -> float:
        out = self.net.output(theta, self.X, batch_size=self.batch_size, dtype=self.dtype)
        return objective.value(theta, self.C, float(self.net.loss.xi(out, self.labels).sum()), self.l)

    def gauss_newton(self, theta: np.ndarray, idx: np.ndarray) -> GaussNewton:
        return GaussNewton(self.net, theta, self.X[:, idx], jacobian=self.jacobian,
                           batch_size=self.batch_size, dtype=self.gn_dtype or self.dtype)


def _objective_plan(net: Network, plan: object) -> Plan | None:
    """``plan`` resolved for :func:`newton`; ``"auto"``: ``"slides"`` where some conv layer then runs
    window by window, else ``None`` (store-all)."""
    if isinstance(plan, str) and plan == "auto":
        return net.auto_plan()
    return net.resolve_plan(plan)


def newton(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, C: float,
           iter_max: int = 100, GNsize: int | None = None, xi: float = 0.1, CGmax: int = 250,
           lam: float = 1.0, drop: float = 2 / 3, boost: float = 3 / 2, eta: float = 1e-4,
           batch_size: int = 1024, jacobian: str = "recompute", seed: int | None = None,
           validation: tuple[np.ndarray, np.ndarray] | None = None, keep_best: bool = False,
           trial_gradient: bool = True, max_ls_steps: int = 60, dtype: object = None,
           gn_dtype: object = None, plan: Plan | str | float | None = "auto",
           callback: Callback | None = None, scheduler: str | None = None,
           workers: int | None = None, log: Log | None = None) -> tuple[np.ndarray, History]:
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
        Accuracy after every iteration goes to the history, and the iteration
        with the best one to ``history.best_iter`` (``best_val_acc``).
    keep_best : bool
        Return the iterate with the best validation accuracy (simpleNN's choice,
        and its ``cnn_train`` with validation data).
    trial_gradient : bool
        Compute the gradient with ``f`` at every line-search trial (default), so the
        accepted trial's gradient is ready; ``False``: ``f`` alone in the trials, then
        the gradient at the accepted point.
    max_ls_steps : int
        Halvings after which the line search gives up.
    dtype : {"float64", "float32"}, optional
        The float type of the network's products (default: the network's).  ``theta``,
        ``f``, the gradient, CG and the line search stay float64.
    gn_dtype : {"float64", "float32"}, optional
        The float type of the Gauss-Newton products ``G v`` inside CG alone (default:
        ``dtype``): ``gn_dtype="float32"`` keeps ``f`` and the gradient in float64
        and forms only the approximate CG solve in single precision.
    plan : "auto", Plan, policy name or byte budget, optional
        What each batch of ``f`` and its gradient keeps (:meth:`sparsecnn.Network.plan`).
        ``"auto"`` (default): ``"slides"`` (``Z^m`` and the pooling choices, as
        the slides keep them) where that lets a convolutional layer followed by
        max pooling run window by window (:func:`sparsecnn.planner.execute.fused`),
        which is the fastest, else ``None``.  ``None`` keeps everything.  Not
        with a Dask scheduler.
    callback : callable, optional
        Called with each history row.
    scheduler : str, optional
        Address of a Dask scheduler: ``f``, ``grad f`` and ``G v`` are computed on its workers,
        one partition of the instances per worker
        (:func:`sparsecnn.distributed.newton_distributed`; same steps up to rounding).
    workers : int, optional
        As ``scheduler``, on a ``LocalCluster`` of this many worker processes started for the run.
    log : callable, optional
        Receives simpleNN's log lines: ``initial f: ...``, one :func:`~sparsecnn.optim._common.log_line`
        per iteration (``f``, ``|g|``, ``alpha``, ``ratio``, ``lambda``, ``#CG``, ``actred``,
        ``prered``, ``val_acc``) and ``total_#CG: ...`` (with a Dask scheduler, no initial line).

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : History

    Examples
    --------
    Three iterations, each with ``G`` of a subsample of 10 of the 30 instances:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(2)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((16, 30)); y = (X[5] > 0).astype(int)
    >>> theta, hist = newton(net, net.init_params(seed=0), X, y, C=0.01 * 30, iter_max=3, GNsize=10, seed=0)
    >>> len(hist), hist.f[0] < hist.f0, hist.f[-1] <= hist.f[0]
    (3, True, True)
    >>> bool(np.isclose(hist.f[-1], net.objective(theta, X, y, C=0.01 * 30)[0]))   # f of the returned theta
    True
    """
    if scheduler is not None or workers is not None:
        from ..distributed import newton_distributed

        if dtype is not None or gn_dtype is not None:
            raise ConfigError("dtype= and gn_dtype= are not supported with a Dask scheduler; "
                              "set Network(dtype=...)")
        if not (isinstance(plan, str) and plan == "auto"):
            raise ConfigError(f"plan= is not supported with a Dask scheduler, got {plan!r}")
        out = newton_distributed(net, theta, X, y, C=C, scheduler=scheduler, workers=workers,
                                 iter_max=iter_max, GNsize=GNsize, xi=xi, CGmax=CGmax, lam=lam, drop=drop,
                                 boost=boost, eta=eta, batch_size=batch_size, jacobian=jacobian, seed=seed,
                                 validation=validation, keep_best=keep_best, trial_gradient=trial_gradient,
                                 max_ls_steps=max_ls_steps, callback=_logged(callback, log))
        if log is not None:
            log(f"total_#CG: {sum(out[1].cg_iters)}")
        return out
    theta = net.check_theta(theta).copy()
    X = net.check_X(X)
    labels = net.check_y(y, X.shape[1])
    C = net.check_C(C)
    batch_size = positive_int("batch_size", batch_size)
    if jacobian not in JACOBIAN_MODES:
        raise ConfigError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
    problem = _InProcess(net, X, labels, C, batch_size, jacobian, net.resolve_dtype(dtype),
                         None if gn_dtype is None else net.resolve_dtype(gn_dtype), _objective_plan(net, plan))
    return newton_loop(problem, net, theta, C=C, iter_max=iter_max, GNsize=GNsize, xi=xi, CGmax=CGmax,
                       lam=lam, drop=drop, boost=boost, eta=eta, seed=seed, validation=validation,
                       keep_best=keep_best, trial_gradient=trial_gradient, max_ls_steps=max_ls_steps,
                       callback=callback, batch_size=batch_size, log=log, X_hint=X)


def _logged(callback: Callback | None, log: Log | None) -> Callback | None:
    """``log(log_line(row))`` followed by ``callback``."""
    if log is None:
        return callback

    def both(row: dict[str, Any]) -> None:
        log(log_line(row))
        if callback is not None:
            callback(row)

    return both


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
    drop, boost, eta = positive_float("drop", drop), positive_float("boost", boost), positive_float("eta", eta)
    max_ls_steps = positive_int("max_ls_steps", max_ls_steps)
    val = check_validation(net, validation)
    rng = np.random.default_rng(seed)
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
