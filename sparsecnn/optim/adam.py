"""Adam (Kingma and Ba) on the regularised mini-batch objective, with simpleNN's constants.

Each step (mini-batches drawn as in :func:`sparsecnn.optim.sgd`)::

    m <- beta1 m + (1 - beta1) g,      v <- beta2 v + (1 - beta2) g ⊙ g
    theta <- theta - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

with ``g = grad f_B(theta)`` and ``t`` the number of steps taken.  simpleNN's
``adam.m`` uses ``lr = 1e-3``, ``beta1 = 0.9``, ``beta2 = 0.999``, ``eps = 1e-8``,
but corrects the bias with the epoch number in place of ``t``; here ``t`` counts
steps, as in the paper.

Examples
--------
>>> import numpy as np
>>> from sparsecnn import FullLayer, Network
>>> net = Network((2, 2, 1), [FullLayer(2)])
>>> X = np.random.default_rng(0).standard_normal((4, 64)); y = (X[0] > 0).astype(int)
>>> theta, hist = adam(net, net.init_params(seed=0), X, y, C=100.0, lr=0.01, bsize=16,
...                    epoch_max=5, seed=0, full_objective=True)
>>> len(hist), hist.f[-1] < hist.f0
(5, True)
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigError
from ..network import Network
from ._common import Callback, History, Log, positive_float
from .sgd import minibatch_train

__all__ = ["adam"]


def adam(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, C: float,
         lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
         bsize: int = 128, epoch_max: int = 500, seed: int | None = None,
         validation: tuple[np.ndarray, np.ndarray] | None = None, full_objective: bool = False,
         callback: Callback | None = None, dtype: object = None, keep_best: bool = False,
         log: Log | None = None) -> tuple[np.ndarray, History]:
    """Train by Adam (see the module docstring).

    Parameters
    ----------
    net, theta, X, y, C
        As for :func:`sparsecnn.optim.newton`.
    lr, beta1, beta2, eps : float
        Adam's constants.
    bsize, epoch_max, seed, validation, keep_best, full_objective, callback, dtype, log
        As for :func:`sparsecnn.optim.sgd`.

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : History
        One row per epoch; ``step`` holds ``lr``.

    ``X`` has shape ``(d^1 a^1 b^1, l)`` (column ``i`` is ``vec(Z^{1,i})``), ``y``
    shape ``(l,)`` with labels in ``0..n_L-1`` and ``theta`` shape ``(n,)``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((36, 40)); y = rng.integers(0, 3, 40)
    >>> theta0 = net.init_params(seed=0)
    >>> theta, hist = adam(net, theta0, X, y, C=10.0, lr=0.01, bsize=8, epoch_max=4, seed=0,
    ...                    full_objective=True)
    >>> theta.shape, len(hist), hist.step
    ((77,), 4, [0.01, 0.01, 0.01, 0.01])
    >>> hist.f[-1] < hist.f0
    True
    """
    lr = positive_float("lr", lr)
    beta1 = positive_float("beta1", beta1, allow_zero=True)
    beta2 = positive_float("beta2", beta2, allow_zero=True)
    eps = positive_float("eps", eps)
    if beta1 >= 1 or beta2 >= 1:
        raise ConfigError(f"beta1 and beta2 must be < 1, got {beta1} and {beta2}")
    m1 = np.zeros(net.n_params)
    m2 = np.zeros(net.n_params)

    def update(th: np.ndarray, grad: np.ndarray, t: int) -> tuple[np.ndarray, float]:
        m1[:] = beta1 * m1 + (1.0 - beta1) * grad
        m2[:] = beta2 * m2 + (1.0 - beta2) * grad * grad
        step = lr * (m1 / (1.0 - beta1**t)) / (np.sqrt(m2 / (1.0 - beta2**t)) + eps)
        return th - step, lr

    return minibatch_train(net, theta, X, y, C=C, update=update, bsize=bsize, epoch_max=epoch_max,
                           seed=seed, validation=validation, full_objective=full_objective,
                           callback=callback, dtype=dtype, keep_best=keep_best, log=log, lr=lr,
                           solver="adam")
