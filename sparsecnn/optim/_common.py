"""What the optimisers share: the objective batch by batch with its forward caches kept,
the gradient from those caches, accuracy, and the training history."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigError, InputTypeError
from ..network import Network

__all__ = ["History", "Evaluation", "evaluate", "gradient_from", "accuracy", "Callback"]

Callback = Callable[[dict[str, Any]], None]
"""Called after every iteration (Newton) or epoch (SGD, Adam) with that row of the history."""


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
    timing : dict of str to float
        Seconds by phase, summed over the run (Newton: ``f+g`` for the gradient
        backward passes and the first evaluation, ``line_search`` for the function
        values, ``gn_build`` for the forward pass on the subsample (and the stored
        Jacobian), ``cg`` for the ``G v`` products and the CG vector updates,
        ``validation``).
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

    def append(self, row: dict[str, Any]) -> None:
        """Add one row; keys other than the named lists go to :attr:`extra`."""
        for key, value in row.items():
            if key in ("f", "gnorm", "cg_iters", "step", "lam", "val_acc", "time"):
                getattr(self, key).append(value)
            elif key != "iter":
                self.extra.setdefault(key, []).append(value)

    def __len__(self) -> int:
        return len(self.f)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and floats (JSON-ready)."""
        return {"f": self.f, "gnorm": self.gnorm, "cg_iters": self.cg_iters, "step": self.step,
                "lam": self.lam, "val_acc": self.val_acc, "time": self.time, "extra": self.extra,
                "f0": self.f0, "gnorm0": self.gnorm0, "timing": self.timing}


@dataclass
class Evaluation:
    """``f(theta)`` over the training set, with what the gradient still needs.

    ``batches`` holds, per batch, its slice, the forward pass's kept quantities
    and ``dZ = (2/l)(z^{L+1} - y)``; it is ``None`` when the caches were not kept.
    """

    theta: np.ndarray
    f: float
    batches: list[tuple[slice, dict[str, np.ndarray], np.ndarray]] | None


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputTypeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not (x >= 0 if allow_zero else x > 0) or math.isnan(x):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return x


def evaluate(net: Network, theta: np.ndarray, X: np.ndarray, labels: np.ndarray, C: float,
             batch_size: int, keep: bool) -> Evaluation:
    """``f(theta) = theta^T theta/(2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2``, batch by batch.

    With ``keep`` the forward caches stay, so that :func:`gradient_from` needs only
    the backward passes.
    """
    Ws, bs = net.unpack(theta)
    l = X.shape[1]
    loss = 0.0
    batches: list[tuple[slice, dict[str, np.ndarray], np.ndarray]] = []
    for start in range(0, l, batch_size):
        sl = slice(start, min(start + batch_size, l))
        out, kept = net._forward(Ws, bs, np.ascontiguousarray(X[:, sl]), keep=keep)
        diff = out.copy()
        diff[labels[sl], np.arange(diff.shape[1])] -= 1.0              # z^{L+1,i} - y^i
        loss += float(np.einsum("ij,ij->", diff, diff))
        if keep:
            batches.append((sl, kept, (2.0 / l) * diff))
    f = float(theta @ theta) / (2.0 * C) + loss / l
    return Evaluation(theta, f, batches if keep else None)


def gradient_from(net: Network, ev: Evaluation, C: float) -> np.ndarray:
    """``grad f = theta/C + (1/l) sum_i (J^i)^T 2(z^{L+1,i} - y^i)`` from the kept caches."""
    if ev.batches is None:
        raise ValueError("the evaluation did not keep its forward caches")
    Ws, _ = net.unpack(ev.theta)
    grad = ev.theta / C
    for _, kept, dZ in ev.batches:
        dWs, dbs = net._backward(Ws, kept, dZ)
        grad = grad + net.pack(dWs, dbs)
    return grad


def accuracy(net: Network, theta: np.ndarray, X: np.ndarray, labels: np.ndarray,
             batch_size: int = 1024) -> float:
    """Fraction of instances whose ``argmax_k z^{L+1,i}_k`` is the label."""
    return float(np.mean(net.predict(theta, X, batch_size=batch_size) == labels))


def check_validation(net: Network, validation: tuple[np.ndarray, np.ndarray] | None
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    if validation is None:
        return None
    Xv, yv = validation
    Xv = net.check_X(Xv)
    return Xv, net.check_y(yv, Xv.shape[1])
