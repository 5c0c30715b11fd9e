"""The objective and its loss, in one place.

NOTATION.md's objective of ``l`` instances,

    f(theta) = theta^T theta / (2C) + (1/l) sum_i xi(z^{L+1,i}; y^i),

with its gradient ``theta / C + (1/l) sum_i (J^i)^T dxi_i/dz^{L+1,i}``.  The loss
``xi`` is an object looked up by name (:func:`get_loss`): its value, its
derivative ``dxi/dz^{L+1}`` (which starts the backward pass) and the product
with ``B^i = d^2 xi / dz^2`` of the Gauss-Newton matrix
``G = (1/l) sum_i (J^i)^T B^i J^i``.  Two losses are defined (:data:`LOSSES`):

- ``"squared"``, the slides' ``xi = ||z^{L+1} - y||^2`` (``y`` one-hot), ``B = 2I``;
- ``"cross-entropy"``, ``xi = -log softmax(z^{L+1})_y = logsumexp(z^{L+1}) - z^{L+1}_y``,
  ``dxi/dz = p - y`` with ``p = softmax(z^{L+1})``, ``B = diag(p) - p p^T``.  With the
  ``1/l`` of ``f`` this is PyTorch's ``F.cross_entropy`` (reduction ``"mean"``).

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

from .exceptions import ConfigError, LabelError, ShapeError

__all__ = ["Loss", "SquaredLoss", "CrossEntropyLoss", "LOSSES", "get_loss", "softmax", "value", "gradient", "finish"]


class Loss:
    """What the engine needs of a loss ``xi(z^{L+1,i}; y^i)``; each loss subclasses it.

    Examples
    --------
    >>> isinstance(get_loss("squared"), Loss)
    True
    """

    name: str = ""

    def __eq__(self, other: object) -> bool:
        """A loss equals its name, so ``net.loss == "cross-entropy"`` reads as it should.

        Examples
        --------
        >>> get_loss("cross-entropy") == "cross-entropy", get_loss("squared") == "cross-entropy"
        (True, False)
        >>> get_loss("squared") == get_loss("squared")
        True
        """
        if isinstance(other, str):
            return self.name == other
        if isinstance(other, Loss):
            return type(self) is type(other) and self.name == other.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        """``Loss('squared')``, say.

        Examples
        --------
        >>> get_loss("cross-entropy")
        Loss('cross-entropy')
        """
        return f"Loss({self.name!r})"

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

    def B(self, u: np.ndarray, scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        """``scale B^i u_i`` for every column: the loss's second derivative in ``z^{L+1}`` times ``u``
        (``scale = 1/l`` in ``G v = (1/l) sum_i (J^i)^T B^i J^i v``).

        ``out`` is ``z^{L+1}`` (same shape as ``u``), needed by a loss whose ``B^i``
        depends on it (cross-entropy); the squared loss ignores it.

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

    def B(self, u: np.ndarray, scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        return (2.0 * scale) * u


def _check_labels(out: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if out.ndim != 2 or labels.shape != (out.shape[1],):
        raise ShapeError(f"z^{{L+1}} must have shape (n_L, l) and y shape (l,), got {out.shape} and {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= out.shape[0]):
        raise LabelError(f"y must hold labels in 0..n_L-1 = 0..{out.shape[0] - 1} for the cross-entropy loss, "
                         f"got {labels.min()!r}..{labels.max()!r}")
    return labels


def softmax(out: np.ndarray) -> np.ndarray:
    """``p = softmax(z)`` of every column, computed as ``exp(z - max z) / sum exp(z - max z)`` (float64).

    Examples
    --------
    >>> softmax(np.array([[0.0, 1000.0], [0.0, 1000.0]]))      # no overflow
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    z = np.asarray(out, dtype=np.float64)
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


class CrossEntropyLoss(Loss):
    """``xi(z; y) = -log softmax(z)_y = logsumexp(z) - z_y``, ``y`` the label.

    ``dxi/dz = p - onehot(y)`` and ``B = d^2 xi / dz^2 = diag(p) - p p^T`` with
    ``p = softmax(z)``.  ``logsumexp(z) = max z + log sum exp(z - max z)``, so
    large logits neither overflow nor lose the small terms.

    Examples
    --------
    >>> import numpy as np
    >>> ce = CrossEntropyLoss()
    >>> bool(ce.xi(np.zeros((4, 1)), np.array([2]))[0] == np.log(4))       # p = 1/4 everywhere
    True
    >>> ce.xi(np.array([[1000.0], [0.0]]), np.array([0]))                    # stable: log(1 + e^-1000)
    array([0.])
    >>> xi_sum, dZ = ce.batch(np.zeros((2, 1)), np.array([0]), l_total=2)
    >>> dZ.ravel()                                                            # (1/l)(p - y)
    array([-0.25,  0.25])
    >>> ce.B(np.array([[1.0], [0.0]]), out=np.zeros((2, 1))).ravel()          # (diag(p) - p p^T) e_1
    array([ 0.25, -0.25])
    """

    name = "cross-entropy"

    def xi(self, out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        labels = _check_labels(out, labels)
        z = np.asarray(out, dtype=np.float64)
        zmax = z.max(axis=0)
        lse = zmax + np.log(np.exp(z - zmax).sum(axis=0))                 # logsumexp(z^{L+1,i})
        return lse - z[labels, np.arange(labels.size)]

    def batch(self, out: np.ndarray, labels: np.ndarray, l_total: int) -> tuple[float, np.ndarray]:
        labels = _check_labels(out, labels)
        z = np.asarray(out, dtype=np.float64)
        zmax = z.max(axis=0)
        e = np.exp(z - zmax)
        s = e.sum(axis=0)
        cols = np.arange(labels.size)
        xi_sum = float(np.sum(zmax + np.log(s) - z[labels, cols]))
        dZ = e / s                                                         # p = softmax(z)
        dZ[labels, cols] -= 1.0                                            # p - y
        dZ *= 1.0 / l_total                                                # (1/l)(p - y)
        return xi_sum, dZ.astype(out.dtype, copy=False)

    def B(self, u: np.ndarray, scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            raise ConfigError("the cross-entropy loss's B = diag(p) - p p^T needs z^{L+1} (out=)")
        u = np.asarray(u, dtype=np.float64)
        if np.shape(out) != u.shape:
            raise ShapeError(f"u and z^{{L+1}} must have the same shape (n_L, l), got {u.shape} and {np.shape(out)}")
        p = softmax(out)
        pu = p * u
        return scale * (pu - p * pu.sum(axis=0, keepdims=True))           # scale (p ⊙ u - p (p^T u))


LOSSES: dict[str, Loss] = {"squared": SquaredLoss(), "cross-entropy": CrossEntropyLoss()}
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
    sparsecnn.exceptions.ConfigError: loss must be one of ['cross-entropy', 'squared'], got 'hinge'
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
