"""What the optimisers share: option checks, accuracy and the training history."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigError, DivergenceError, InputTypeError
from ..network import Network

__all__ = ["History", "accuracy", "Callback", "Log", "log_line", "check_progress", "divergence_hint"]

Callback = Callable[[dict[str, Any]], None]
"""Called after every iteration (Newton) or epoch (SGD, Adam) with that row of the history."""

Log = Callable[[str], None]
"""Receives the log's lines (:func:`log_line`), e.g. ``print`` or a file's ``write`` plus newline."""


def log_line(row: dict[str, Any]) -> str:
    """One history row as simpleNN prints it: ``k-iter f: ... |g|: ... alpha: ...``.

    Newton rows (those with ``ratio``) give ``f``, ``|g|``, ``alpha``, ``ratio``,
    ``lambda``, ``#CG``, ``actred`` and ``prered``, as simpleNN's ``newton.m``;
    SGD and Adam rows ``k-epoch`` with ``f``, ``|g|`` and ``lr``.  ``val_acc``
    ends the line when it was measured.

    Parameters
    ----------
    row : dict
        A row as the optimisers pass it to ``callback``.

    Returns
    -------
    str

    Examples
    --------
    >>> log_line({"iter": 2, "f": 0.5, "gnorm": 0.25, "step": 1.0, "ratio": 0.8, "lam": 2 / 3,
    ...           "cg_iters": 7, "actred": -0.1, "prered": -0.125, "val_acc": 0.9})
    '2-iter f: 0.5 |g|: 0.25 alpha: 1 ratio: 0.8 lambda: 0.666667 #CG: 7 actred: -0.1 prered: -0.125 val_acc: 0.9'
    >>> log_line({"iter": 3, "f": 1.5, "gnorm": 2.0, "step": 0.01, "val_acc": float("nan")})
    '3-epoch f: 1.5 |g|: 2 lr: 0.01'
    """
    if "ratio" in row:
        text = (f"{row['iter']}-iter f: {row['f']:g} |g|: {row['gnorm']:g} alpha: {row['step']:g} "
                f"ratio: {row['ratio']:g} lambda: {row['lam']:g} #CG: {row['cg_iters']} "
                f"actred: {row['actred']:g} prered: {row['prered']:g}")
    else:
        text = f"{row['iter']}-epoch f: {row['f']:g} |g|: {row['gnorm']:g} lr: {row['step']:g}"
    acc = row.get("val_acc", math.nan)
    return text if math.isnan(acc) else f"{text} val_acc: {acc:g}"


@dataclass
class History:
    """One row per iteration (Newton) or epoch (SGD, Adam).

    Attributes
    ----------
    f, gnorm : list of float
        ``f(theta)`` and ``||grad f(theta)||`` after the iteration (for SGD and
        Adam without ``full_objective``: means over the epoch's mini-batches).
    cg_iters : list of int
        CG iterations (0 for SGD and Adam).
    step : list of float
        Newton: the line search's ``alpha``; SGD and Adam: the learning rate.
    lam : list of float
        Newton: the Levenberg-Marquardt ``lambda`` after its update (NaN otherwise).
    val_acc : list of float
        Accuracy on the validation data (NaN without validation data).
    time : list of float
        Seconds spent in the iteration (validation excluded).
    extra : dict of str to list
        Newton: ``actred``, ``prered``, ``ratio`` and ``ls_steps`` (function
        evaluations in the line search).
    f0, gnorm0 : float
        At the initial ``theta`` (NaN where not computed).
    best_iter : int
        With validation data: the iteration (epoch) of the best validation
        accuracy, the first one on ties (0 without validation data); the
        optimisers return that ``theta`` with ``keep_best=True``.
    best_val_acc : float
        That accuracy (NaN without validation data).
    timing : dict of str to float
        Seconds by phase, summed over the run (Newton: ``f+g`` for the first
        evaluation and any gradient not computed in the line search,
        ``line_search`` for the trials (``f``, and its gradient with
        ``trial_gradient``), ``gn_build`` for the forward pass on the subsample
        (and the stored Jacobian), ``cg`` for the ``G v`` products and the CG
        vector updates, ``validation``).

    Examples
    --------
    The optimisers fill it; ``len`` counts the rows:

    >>> h = History(f0=2.0)
    >>> h.append({"iter": 1, "f": 1.5, "gnorm": 0.3, "cg_iters": 4, "step": 1.0, "ls_steps": 1})
    >>> len(h), h.f, h.cg_iters, h.extra
    (1, [1.5], [4], {'ls_steps': [1]})
    """

    f: list[float] = field(default_factory=list)
    gnorm: list[float] = field(default_factory=list)
    cg_iters: list[int] = field(default_factory=list)
    step: list[float] = field(default_factory=list)
    lam: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    f0: float = math.nan
    gnorm0: float = math.nan
    timing: dict[str, float] = field(default_factory=dict)
    best_iter: int = 0
    best_val_acc: float = math.nan

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; keys other than the named lists go to :attr:`extra`.

        ``"iter"`` is dropped (the row's position is its iteration).

        Examples
        --------
        >>> h = History()
        >>> h.append({"iter": 1, "f": 0.9, "lam": 1.5, "ratio": 0.2})
        >>> h.append({"iter": 2, "f": 0.7, "lam": 1.0, "ratio": 0.8})
        >>> h.f, h.lam, h.extra["ratio"], len(h)
        ([0.9, 0.7], [1.5, 1.0], [0.2, 0.8], 2)
        """
        for key, value in row.items():
            if key in ("f", "gnorm", "cg_iters", "step", "lam", "val_acc", "time"):
                getattr(self, key).append(value)
            elif key != "iter":
                self.extra.setdefault(key, []).append(value)

    def __len__(self) -> int:
        return len(self.f)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats (JSON-ready).

        Examples
        --------
        >>> import json
        >>> h = History(f0=1.0, gnorm0=2.0)
        >>> h.append({"iter": 1, "f": 0.5, "gnorm": 1.0, "time": 0.01, "val_acc": 0.75})
        >>> h.record_validation(1, 0.75)
        True
        >>> d = h.as_dict(); d["f"], d["f0"], sorted(d)[:5]
        ([0.5], 1.0, ['best_iter', 'best_val_acc', 'cg_iters', 'extra', 'f'])
        >>> json.loads(json.dumps(d)) == d
        True
        """
        return {"f": self.f, "gnorm": self.gnorm, "cg_iters": self.cg_iters, "step": self.step,
                "lam": self.lam, "val_acc": self.val_acc, "time": self.time, "extra": self.extra,
                "f0": self.f0, "gnorm0": self.gnorm0, "timing": self.timing,
                "best_iter": self.best_iter, "best_val_acc": self.best_val_acc}

    def record_validation(self, k: int, acc: float) -> bool:
        """Note the validation accuracy of iteration ``k``; True if it is the best so far.

        Examples
        --------
        >>> h = History()
        >>> [h.record_validation(k, acc) for k, acc in enumerate([0.5, 0.7, 0.7, 0.6], start=1)]
        [True, True, False, False]
        >>> h.best_iter, h.best_val_acc
        (2, 0.7)
        """
        if math.isnan(acc) or (self.best_iter and not acc > self.best_val_acc):
            return False
        self.best_iter, self.best_val_acc = k, acc
        return True


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputTypeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float ``> 0`` (``>= 0`` with ``allow_zero``), or a clear error.

    Examples
    --------
    >>> positive_float("lr", 0.5)
    0.5
    >>> positive_float("lr", float("inf"))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: lr must be finite, got inf
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not (x >= 0 if allow_zero else x > 0) or math.isnan(x):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be finite, got {value}")
    return x


def float_in(name: str, value: object, low: float, high: float, *, low_closed: bool = False,
             high_closed: bool = False) -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (open ends unless ``*_closed``).

    Examples
    --------
    >>> float_in("eta", 1e-4, 0.0, 1.0)
    0.0001
    >>> float_in("momentum", 1.0, 0.0, 1.0, low_closed=True)
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: momentum must be in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    x = float(value)
    above = x >= low if low_closed else x > low
    below = x <= high if high_closed else x < high
    if not (above and below):
        interval = f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
        if math.isinf(high):
            interval = f"{'>=' if low_closed else '>'} {low:g}"
        raise ConfigError(f"{name} must be {'in ' if not math.isinf(high) else ''}{interval}, got {value}")
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be finite, got {value}")
    return x


def accuracy(net: Network, theta: np.ndarray, X: np.ndarray, labels: np.ndarray,
             batch_size: int = 1024) -> float:
    """Fraction of instances whose ``argmax_k z^{L+1,i}_k`` is the label."""
    return float(np.mean(net.predict(theta, X, batch_size=batch_size) == labels))


def check_seed(seed: object) -> Any:
    """``seed`` for ``np.random.default_rng``: ``None``, a non-negative integer, or NumPy's own
    ``Generator``, ``BitGenerator`` or ``SeedSequence``; anything else is an InputTypeError.

    Examples
    --------
    >>> check_seed(np.int64(3)), check_seed(None)
    (3, None)
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: seed must be None or a non-negative integer, got -1
    """
    if seed is None or isinstance(seed, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputTypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool if it is one (Python's or NumPy's), else an InputTypeError: a string such
    as ``"no"`` would be truthy.

    Examples
    --------
    >>> check_bool("keep_best", np.bool_(True))
    True
    >>> check_bool("keep_best", "no")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: keep_best must be True or False, got 'no'
    """
    if not isinstance(value, (bool, np.bool_)):
        raise InputTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_callable(name: str, fn: object) -> None:
    """An InputTypeError unless ``fn`` is ``None`` or callable (``callback=``, ``log=``).

    Examples
    --------
    >>> check_callable("log", print)
    >>> check_callable("log", "out.txt")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: log must be callable or None, got str
    """
    if fn is not None and not callable(fn):
        raise InputTypeError(f"{name} must be callable or None, got {type(fn).__name__}")


def check_validation(net: Network, validation: tuple[np.ndarray, np.ndarray] | None
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(X_val, y_val)`` checked against ``net``, or ``None``.

    Examples
    --------
    >>> from sparsecnn import FullLayer
    >>> net = Network((1, 2, 1), [FullLayer(2)])
    >>> check_validation(net, (np.zeros((2, 1)), [1]))[1]
    array([1])
    >>> check_validation(net, np.zeros((2, 1)))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: validation must be a pair (X_val, y_val), got ndarray
    """
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise InputTypeError(f"validation must be a pair (X_val, y_val), got {type(validation).__name__}")
    Xv, yv = validation
    Xv = net.check_X(Xv)
    return Xv, net.check_y(yv, Xv.shape[1])


def divergence_hint(*, X: np.ndarray | None = None, C: float | None = None, lr: float | None = None,
                    lam: float | None = None) -> str:
    """The likely causes of a non-finite ``f``, gradient or step, most suspicious first.

    A setting is suspicious when it is far outside the usual range: ``max |X| > 1e6``
    (pixels are usually scaled to about 1), ``C < 1e-8`` (``theta^T theta/(2C)``
    overflows), ``lr >= 1``, ``lambda > 1e100``; when none is, all are listed.

    Examples
    --------
    >>> divergence_hint(X=np.ones((2, 3)), C=1e-300, lr=None, lam=1.0)
    'C = 1e-300 (theta^T theta/(2C) overflows: use a larger C)'
    >>> divergence_hint(X=np.ones((2, 3)), C=10.0, lr=0.01)
    'the learning rate (lr = 0.01), C (= 10) or the input scale (max |X| = 1)'
    """
    scale = float(np.max(np.abs(X))) if X is not None and X.size else None
    flagged, named = [], []
    if lr is not None:
        named.append(f"the learning rate (lr = {lr:g})")
        if lr >= 1:
            flagged.append(f"the learning rate lr = {lr:g} (too large: try a smaller --lr)")
    if lam is not None:
        named.append(f"lambda (= {lam:g})")
        if lam > 1e100:
            flagged.append(f"lambda = {lam:g} (the damping overflows: use a smaller lambda)")
    if C is not None:
        named.append(f"C (= {C:g})")
        if C < 1e-8:
            flagged.append(f"C = {C:g} (theta^T theta/(2C) overflows: use a larger C)")
    if scale is not None:
        named.append(f"the input scale (max |X| = {scale:g})")
        if scale > 1e6:
            flagged.append(f"the input scale, max |X| = {scale:g} (scale the inputs to about 1)")
    if flagged:
        return "; or ".join(flagged)
    return (", ".join(named[:-1]) + " or " + named[-1]) if len(named) > 1 else (named[0] if named else
                                                                                  "the settings or the data")


def check_progress(solver: str, where: str, iteration: int, theta_last: np.ndarray, hint: str, *,
                   f: float | None = None, grad: np.ndarray | None = None, step: np.ndarray | None = None,
                   history: History | None = None) -> None:
    """Stop a run whose ``f``, gradient or step is no longer finite.

    Called by every optimiser loop at each iteration (and at the initial ``theta``).

    Parameters
    ----------
    solver : str
        ``"newton"``, ``"sgd"``, ``"adam"``.
    where : str
        The place, e.g. ``"iteration 3"``, ``"epoch 2 (step 7)"``, ``"the initial theta"``.
    iteration : int
        Iteration or epoch number (0 at the initial ``theta``).
    theta_last : ndarray, shape ``(n,)``
        The last finite iterate, kept on the exception.
    hint : str
        The likely causes (:func:`divergence_hint`).
    f, grad, step : optional
        What to check.
    history : History, optional
        The rows so far, kept on the exception.

    Raises
    ------
    DivergenceError

    Examples
    --------
    >>> check_progress("sgd", "epoch 1 (step 2)", 1, np.zeros(2), "lr", f=0.5, grad=np.ones(2))
    >>> check_progress("sgd", "epoch 1 (step 2)", 1, np.zeros(2), "the learning rate", f=float("nan"))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DivergenceError: sgd diverged at epoch 1 (step 2): f = nan; likely cause: the learning rate. The last finite theta is kept (DivergenceError.theta; sparsecnn train --save writes it)
    """
    what = None
    if f is not None and not math.isfinite(f):
        what = f"f = {f}"
    elif grad is not None and not np.isfinite(grad).all():
        what = f"the gradient has {int(np.count_nonzero(~np.isfinite(grad)))} NaN or Inf entries"
    elif step is not None and not np.isfinite(step).all():
        what = f"the step has {int(np.count_nonzero(~np.isfinite(step)))} NaN or Inf entries"
    if what is None:
        return
    raise DivergenceError(f"{solver} diverged at {where}: {what}; likely cause: {hint}. The last finite theta "
                          "is kept (DivergenceError.theta; sparsecnn train --save writes it)",
                          iteration=iteration, theta=np.array(theta_last, dtype=np.float64), history=history)
