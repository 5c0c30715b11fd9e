"""Subsampled Gauss-Newton method with conjugate gradient, as simpleNN runs it.

The objective is ``f(theta) = theta^T theta/(2C) + (1/l) sum_i xi(z^{L+1,i}; y^i)`` with the
network's loss: ``xi = ||z^{L+1,i} - y^i||^2`` (``B^i = 2I``) or, with
``Network(loss="cross-entropy")``, ``-log softmax(z^{L+1,i})_{y_i}`` (``B^i = diag(p^i) - p^i (p^i)^T``)
(simpleNN's option ``-C 0.01`` means ``C = 0.01 l`` here).  Iteration ``k``:

1. **Subsample.**  The ``l`` instances are split, after a random permutation, into
   ``ceil(l / GNsize)`` chunks of ``GNsize`` (the last one topped up with the first
   instances of the permutation, so every chunk has ``GNsize``); iteration ``k``
   uses chunk ``(k-1) mod ceil(l/GNsize)``, and a new permutation is drawn whenever
   the chunks are used up.  ``G_S = (1/|S|) sum_{i in S} (J^i)^T B^i J^i`` on the chunk ``S``.
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

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import distributed, objective
from ..exceptions import ConfigError
from ..network import Network
from ..planner import Plan
from ..second_order import JACOBIAN_MODES, GaussNewton
from ._common import (
    Callback,
    History,
    Log,
    check_callable,
    log_line,
    positive_int,
)
from .newton_cg import CGResult, NewtonProblem, conjugate_gradient, newton_loop, subsample_chunks

__all__ = ["newton", "conjugate_gradient", "CGResult", "subsample_chunks", "NewtonProblem",
           "newton_loop"]


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
        Initial Levenberg-Marquardt ``lambda >= 0`` and its factors, ``0 < drop <= 1 <= boost``
        (``drop = boost = 1`` keeps ``lambda`` fixed).
    eta : float
        Sufficient-decrease constant of the line search, ``0 < eta < 1``.
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
    check_callable("callback", callback)
    check_callable("log", log)
    if scheduler is not None or workers is not None:
        if dtype is not None or gn_dtype is not None:
            raise ConfigError("dtype= and gn_dtype= are not supported with a Dask scheduler; "
                              "set Network(dtype=...)")
        if not (isinstance(plan, str) and plan == "auto"):
            raise ConfigError(f"plan= is not supported with a Dask scheduler, got {plan!r}")
        out = distributed.newton_distributed(net, theta, X, y, C=C, scheduler=scheduler, workers=workers,
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
