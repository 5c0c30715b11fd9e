"""Layers: a convolutional layer and a full layer, forward and backward side by side.

A batch of ``l`` instances is held with one column per instance: ``Z`` of
shape ``(d a b, l)`` has column ``i`` equal to ``vec(Z^{m,i})``.  Every step
below is one sparse product, one GEMM or one elementwise operation for the
whole batch; the backward step of an operator is the product with its
transpose, written next to the forward one.

Convolutional layer ``m`` (slides' notation)::

    vec(pad(Z))      = P_pad vec(Z)
    vec(phi(pad(Z))) = P_phi vec(pad(Z))
    S                = W phi(pad(Z)) + b 1^T
    vec(Z^{m+1})     = P_pool vec(sigma(S))

Full layer ``m``::

    s = W z + b,   z^{m+1} = sigma(s)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .activations import Activation, get_activation
from .exceptions import ArchitectureError, ConfigError, InputTypeError
from .operators import P_pad, P_phi, P_pool_avg, conv_size, max_pool_winners
from .operators.pool import _P_pool_from_winners

__all__ = ["ConvLayer", "FullLayer", "ConvShape", "FullShape", "POOL_BACKWARDS"]

POOL_BACKWARDS = ("auto", "eq5", "eq6")
POOLS = ("max", "avg")


def _positive_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{owner}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


@dataclass(frozen=True)
class ConvLayer:
    """A convolutional layer: ``d_out`` filters of width ``h``, stride ``s``,
    zero padding ``p``, activation, then pooling with window and stride ``r``.

    Parameters
    ----------
    d_out : int
        Output channels ``d^{m+1}`` (rows of ``W^m``).
    h : int
        Filter width (square filters).
    s : int, default 1
        Stride.
    p : int, default 0
        Zeros added on each side.
    r : int, default 1
        Pooling window and stride; ``r = 1`` means no pooling.
    activation : str, default "relu"
        One of ``relu``, ``identity``, ``tanh``, ``sigmoid``, ``leaky_relu``.
    pool : {"max", "avg"}, default "max"
        Max pooling (``P_pool`` chosen by the data) or average pooling
        (a constant ``P_pool`` with entries ``1/r^2``).

    Examples
    --------
    >>> ConvLayer(32, h=5, p=2, r=2)
    ConvLayer(d_out=32, h=5, s=1, p=2, r=2, activation='relu', pool='max')
    """

    d_out: int
    h: int
    s: int = 1
    p: int = 0
    r: int = 1
    activation: str = "relu"
    pool: str = "max"

    def __post_init__(self) -> None:
        _positive_int("ConvLayer", "d_out", self.d_out)
        _positive_int("ConvLayer", "h", self.h)
        _positive_int("ConvLayer", "s", self.s)
        _positive_int("ConvLayer", "p", self.p, 0)
        _positive_int("ConvLayer", "r", self.r)
        get_activation(self.activation)
        if self.pool not in POOLS:
            raise ConfigError(f"ConvLayer: pool must be one of {POOLS}, got {self.pool!r}")


@dataclass(frozen=True)
class FullLayer:
    """A fully-connected layer with ``n_out`` neurons.

    Parameters
    ----------
    n_out : int
        ``n_{m+1}``, rows of ``W^m``.
    activation : str or None
        ``None`` (default) means ReLU, except identity for the last layer.

    Examples
    --------
    >>> FullLayer(10)
    FullLayer(n_out=10, activation=None)
    """

    n_out: int
    activation: str | None = None

    def __post_init__(self) -> None:
        _positive_int("FullLayer", "n_out", self.n_out)
        if self.activation is not None:
            get_activation(self.activation)


@dataclass
class ConvShape:
    """Convolutional layer ``m`` with its input shape known: sizes and operators.

    Attributes follow the slides: ``a, b, d`` (input), ``p, h, s, r``,
    ``a_pad, b_pad``, ``a_conv, b_conv``, ``a_out, b_out`` (``= a^{m+1}, b^{m+1}``)
    and ``d_out`` (``= d^{m+1}``).
    """

    m: int
    a: int
    b: int
    d: int
    spec: ConvLayer
    a_pad: int = field(init=False)
    b_pad: int = field(init=False)
    a_conv: int = field(init=False)
    b_conv: int = field(init=False)
    a_out: int = field(init=False)
    b_out: int = field(init=False)

    def __post_init__(self) -> None:
        sp_ = self.spec
        self.a_pad, self.b_pad = self.a + 2 * sp_.p, self.b + 2 * sp_.p
        where = f"conv layer {self.m}"
        if sp_.h > self.a_pad or sp_.h > self.b_pad:
            raise ArchitectureError(
                f"{where}: filter width h = {sp_.h} is larger than the padded image "
                f"a_pad x b_pad = {self.a_pad} x {self.b_pad}; the layer would produce an empty image"
            )
        self.a_conv = conv_size(self.a_pad, sp_.h, sp_.s)
        self.b_conv = conv_size(self.b_pad, sp_.h, sp_.s)
        if sp_.r > self.a_conv or sp_.r > self.b_conv:
            raise ArchitectureError(
                f"{where}: pool window r = {sp_.r} is larger than its image "
                f"a_conv x b_conv = {self.a_conv} x {self.b_conv}; the layer would produce an empty image"
            )
        self.a_out, self.b_out = self.a_conv // sp_.r, self.b_conv // sp_.r
        self.sigma: Activation = get_activation(sp_.activation)
        self.P_pad = P_pad(self.a, self.b, self.d, sp_.p) if sp_.p > 0 else None
        self.P_pad_T = self.P_pad.T.tocsr() if self.P_pad is not None else None
        self.P_phi = P_phi(self.a_pad, self.b_pad, self.d, sp_.h, sp_.s)
        self.P_phi_T = self.P_phi.T.tocsr()
        if sp_.r > 1 and sp_.pool == "avg":
            self.P_avg = P_pool_avg(self.a_conv, self.b_conv, self.d_out, sp_.r)
            self.P_avg_T = self.P_avg.T.tocsr()

    @property
    def pools(self) -> bool:
        """Whether a pooling step follows the activation (``r > 1``)."""
        return self.spec.r > 1

    @property
    def max_pools(self) -> bool:
        """Whether max pooling (a data-dependent ``P_pool``) follows the activation."""
        return self.spec.r > 1 and self.spec.pool == "max"

    @property
    def eq6_valid(self) -> bool:
        """Whether ``sigma'(S^m)`` can be read from ``Z^{m+1}`` (equation (6) and its kin).

        True when no pooling follows and ``sigma'`` is a function of ``sigma``
        (ReLU, leaky ReLU, tanh, sigmoid, identity); with max pooling too, since
        only the winners receive a gradient and ``Z^{m+1}`` holds ``sigma(S)`` at
        the winners; with average pooling only for the identity, because the
        average does not determine ``sigma'`` at each entry of the window.
        """
        if self.sigma.dsigma_from_output is None:
            return False
        if self.pools and self.spec.pool == "avg":
            return self.sigma.name == "identity"
        return True

    # sizes -----------------------------------------------------------------
    @property
    def d_out(self) -> int:
        return self.spec.d_out

    @property
    def hhd(self) -> int:
        """Rows of ``phi(pad(Z))``: ``h h d``."""
        return self.spec.h * self.spec.h * self.d

    @property
    def n_pos(self) -> int:
        """Columns of ``phi(pad(Z))``: ``a_conv b_conv``."""
        return self.a_conv * self.b_conv

    @property
    def n_in(self) -> int:
        return self.d * self.a * self.b

    @property
    def n_S(self) -> int:
        return self.d_out * self.n_pos

    @property
    def n_out(self) -> int:
        return self.d_out * self.a_out * self.b_out

    @property
    def W_shape(self) -> tuple[int, int]:
        return (self.d_out, self.hhd)

    @property
    def fan_in(self) -> int:
        return self.hhd

    # forward and backward -------------------------------------------------
    def phi(self, Z: np.ndarray) -> np.ndarray:
        """``vec(phi(pad(Z)))`` for a batch: ``P_phi P_pad vec(Z)``, shape ``(hhd a_conv b_conv, l)``."""
        Zpad = self.P_pad @ Z if self.P_pad is not None else Z
        return self.P_phi @ Zpad

    def phi_T(self, dPhi: np.ndarray) -> np.ndarray:
        """Backward of :meth:`phi`: ``P_pad^T P_phi^T vec(dxi/dphi)``, shape ``(d a b, l)``."""
        dZpad = self.P_phi_T @ dPhi
        return self.P_pad_T @ dZpad if self.P_pad_T is not None else dZpad

    def S(self, W: np.ndarray, bias: np.ndarray, Phi: np.ndarray) -> np.ndarray:
        """``vec(S) = vec(W phi(pad(Z)) + b 1^T)`` for a batch, shape ``(d_out a_conv b_conv, l)``."""
        l = Phi.shape[1]
        S3 = W @ Phi.reshape(self.n_pos, self.hhd, l)  # (a_conv b_conv, d_out, l)
        S3 += bias[:, None]
        return S3.reshape(self.n_S, l)

    def S_T(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Backward of :meth:`S`: ``dxi/dW = dxi/dS phi^T`` and ``dxi/db = dxi/dS 1``
        summed over the batch, and ``vec(dxi/dphi) = vec(W^T dxi/dS)`` per instance."""
        l = dS.shape[1]
        dS3 = dS.reshape(self.n_pos, self.d_out, l)
        Phi3 = Phi.reshape(self.n_pos, self.hhd, l)
        dW = np.tensordot(dS3, Phi3, axes=([0, 2], [0, 2]))
        db = dS3.sum(axis=(0, 2))
        dPhi = (W.T @ dS3).reshape(self.n_pos * self.hhd, l)
        return dW, db, dPhi

    def winners(self, A: np.ndarray) -> np.ndarray | None:
        """Winners of max pooling on ``vec(sigma(S))``; ``None`` unless max pooling follows."""
        if not self.max_pools:
            return None
        return max_pool_winners(A, self.a_conv, self.b_conv, self.d_out, self.spec.r)

    def P_pool(self, winners: np.ndarray | None) -> sp.csr_array:
        """``P_pool`` of the batch: for max pooling built from ``winners`` (instances-last
        layout, acting on ``V.ravel()``); for average pooling the constant matrix."""
        if winners is None:
            return self.P_avg
        return _P_pool_from_winners(winners, self.n_S, "instances-last")

    def pool(self, A: np.ndarray, winners: np.ndarray | None) -> np.ndarray:
        """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` for a batch (``A`` itself when ``r = 1``)."""
        if not self.pools:
            return A
        if winners is None:
            return self.P_avg @ A
        l = A.shape[1]
        return (self.P_pool(winners) @ A.ravel()).reshape(self.n_out, l)

    def pool_T(self, dZnext: np.ndarray, winners: np.ndarray | None) -> np.ndarray:
        """Equation (7): ``P_pool^T vec(dxi/dZ^{m+1})``, the reverse mapping of pooling."""
        if not self.pools:
            return dZnext
        if winners is None:
            return self.P_avg_T @ dZnext
        l = dZnext.shape[1]
        return (self.P_pool(winners).T @ dZnext.ravel()).reshape(self.n_S, l)


@dataclass
class FullShape:
    """Full layer ``m`` with its input size ``n_in = n_m`` known."""

    m: int
    n_in: int
    spec: FullLayer
    last: bool

    def __post_init__(self) -> None:
        name = self.spec.activation or ("identity" if self.last else "relu")
        self.sigma: Activation = get_activation(name)

    @property
    def n_out(self) -> int:
        return self.spec.n_out

    @property
    def W_shape(self) -> tuple[int, int]:
        return (self.n_out, self.n_in)

    @property
    def fan_in(self) -> int:
        return self.n_in

    def s(self, W: np.ndarray, bias: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``s = W z + b`` for a batch, shape ``(n_{m+1}, l)``."""
        return W @ z + bias[:, None]

    def s_T(self, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Equations (1)-(3): ``dxi/dW = dxi/ds z^T``, ``dxi/db = dxi/ds``,
        ``dxi/dz = W^T dxi/ds`` (``W`` and ``b`` summed over the batch)."""
        return ds @ z.T, ds.sum(axis=1), W.T @ ds
