"""The objective and its loss, in one place.

NOTATION.md's objective of ``l`` instances,

    f(theta) = theta^T theta / (2C) + (1/l) sum_i xi(z^{L+1,i}; y^i),

with its gradient ``theta / C + (1/l) sum_i (J^i)^T dxi_i/dz^{L+1,i}``.  The loss
``xi`` is an object looked up by name (:func:`get_loss`): its value, its
derivative ``dxi/dz^{L+1}`` (which starts the backward pass) and the product
with ``B^i = d^2 xi / dz^2`` of the Gauss-Newton matrix
``G = (1/l) sum_i (J^i)^T B^i J^i``.  Only the squared loss of the slides is
defined; another loss (cross-entropy, say) is one more entry of :data:`LOSSES`.

Examples
--------
>>> import numpy as np
>>> loss = get_loss("squared")
>>> out = np.array([[0.5, 0.0], [0.0, 1.0]])          # z^{L+1}, one column per instance
>>> xi_sum, dZ = loss.batch(out, np.array([0, 1]), l_total=2)
>>> xi_sum, dZ                                          # (1/l) dxi/dz = (2/l)(z - y)
(0.25, array([[-0.5,  0. ],
       [ 0. ,  0. ]]))
>>> f, g = finish(np.array([1.0, 2.0]), 10.0, xi_sum, 2, np.zeros(2))
>>> f, g                                                # 5/20 + 0.25/2
(0.375, array([0.1, 0.2]))
"""

from __future__ import annotations

import numpy as np

from .exceptions import ConfigError

__all__ = ["Loss", "SquaredLoss", "LOSSES", "get_loss", "value", "gradient", "finish"]


class Loss:
    """What the engine needs of a loss ``xi(z^{L+1,i}; y^i)``; each loss subclasses it.

    Examples
    --------
    >>> isinstance(get_loss("squared"), Loss)
    True
    """

    name: str = ""

    def xi(self, out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``xi_i`` of every instance, shape ``(l,)`` (float64), from ``z^{L+1}`` ``(n_L, l)`` and the labels.

        Examples
        --------
        >>> get_loss("squared").xi(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]))   # 1, then 1
        array([1., 1.])
        """
        raise NotImplementedError

    def batch(self, out: np.ndarray, labels: np.ndarray, l_total: int) -> tuple[float, np.ndarray]:
        """``sum_i xi_i`` over the batch (float64) and ``(1/l_total) dxi/dz^{L+1}`` (``out``'s dtype),
        which starts the backward pass.

        Examples
        --------
        >>> xi_sum, dZ = get_loss("squared").batch(np.array([[3.0], [0.0]]), np.array([0]), l_total=4)
        >>> xi_sum, dZ.ravel()                                   # (3-1)^2; (2/4)(z - y)
        (4.0, array([1., 0.]))
        """
        raise NotImplementedError

    def B(self, u: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """``scale B^i u_i`` for every column: the loss's second derivative in ``z^{L+1}`` times ``u``
        (``scale = 1/l`` in ``G v = (1/l) sum_i (J^i)^T B^i J^i v``).

        Examples
        --------
        >>> get_loss("squared").B(np.array([[1.0], [-0.5]])).ravel()     # B = 2 I
        array([ 2., -1.])
        >>> get_loss("squared").B(np.array([1.0]), scale=0.25)
        array([0.5])
        """
        raise NotImplementedError


class SquaredLoss(Loss):
    """``xi(z; y) = ||z - y||^2`` with ``y`` the one-hot vector of the label.

    ``dxi/dz = 2 (z - y)`` and ``B = d^2 xi / dz^2 = 2 I``.

    Examples
    --------
    >>> import numpy as np
    >>> SquaredLoss().xi(np.array([[1.0], [1.0]]), np.array([0]))      # (1-1)^2 + (1-0)^2
    array([1.])
    >>> SquaredLoss().B(np.array([1.0, -2.0]))
    array([ 2., -4.])
    """

    name = "squared"

    @staticmethod
    def _diff(out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        diff = np.array(out, dtype=np.float64)
        diff[labels, np.arange(labels.size)] -= 1.0                  # z^{L+1,i} - y^i
        return diff

    def xi(self, out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        diff = self._diff(out, labels)
        return np.einsum("ij,ij->j", diff, diff)

    def batch(self, out: np.ndarray, labels: np.ndarray, l_total: int) -> tuple[float, np.ndarray]:
        diff = self._diff(out, labels)
        dZ = (2.0 / l_total) * diff                                   # (1/l) dxi/dz = (2/l)(z - y)
        return float(np.einsum("ij,ij->", diff, diff)), dZ.astype(out.dtype, copy=False)

    def B(self, u: np.ndarray, scale: float = 1.0) -> np.ndarray:
        return (2.0 * scale) * u


LOSSES: dict[str, Loss] = {"squared": SquaredLoss()}
"""The losses ``Network(loss=...)`` accepts, by name."""


def get_loss(name: object) -> Loss:
    """The loss called ``name``, or a :class:`~sparsecnn.ConfigError` listing the names.

    Examples
    --------
    >>> get_loss("squared").name
    'squared'
    >>> get_loss("hinge")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: loss must be one of ['squared'], got 'hinge'
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]


def value(theta: np.ndarray, C: float, xi_sum: float, l: int) -> float:
    """``f = theta^T theta / (2C) + (1/l) sum_i xi_i`` (``C = inf``: no regularisation).

    Examples
    --------
    >>> value(np.array([3.0, 4.0]), 5.0, 2.0, 4)           # 25/10 + 2/4
    3.0
    """
    return float(theta @ theta) / (2.0 * C) + xi_sum / l


def gradient(theta: np.ndarray, C: float, grad_loss: np.ndarray) -> np.ndarray:
    """``theta / C + (1/l) sum_i (J^i)^T dxi_i/dz^{L+1,i}`` (the second term as computed by the backward pass).

    Examples
    --------
    >>> gradient(np.array([2.0]), 4.0, np.array([1.0]))
    array([1.5])
    """
    return theta / C + grad_loss


def finish(theta: np.ndarray, C: float, xi_sum: float, l: int, grad_loss: np.ndarray
           ) -> tuple[float, np.ndarray]:
    """``(f, grad)`` from the loss summed over the batches and the backward passes' gradient.

    Examples
    --------
    >>> finish(np.zeros(2), np.inf, 3.0, 3, np.ones(2))
    (1.0, array([1., 1.]))
    """
    return value(theta, C, xi_sum, l), gradient(theta, C, grad_loss)
