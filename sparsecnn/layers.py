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
from typing import Literal, overload

import numpy as np
import scipy.sparse as sp

from . import kernels
from .activations import ACTIVATE_ORDERS, Activation, get_activation
from .exceptions import ArchitectureError, ConfigError, InputTypeError, ShapeError
from .kernels import conv as kconv
from .kernels import pooling as kpool
from .kernels import windowed as kwin
from .kernels.conv import _floating
from .operators import P_pad, P_phi, P_pool_avg, conv_size
from .operators._common import freeze
from .operators.pool import _P_pool_from_winners

__all__ = ["ConvLayer", "FullLayer", "ConvShape", "FullShape", "POOL_BACKWARDS", "ACTIVATE_ORDERS"]

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
    and ``d_out`` (``= d^{m+1}``).  The literal operators are attributes too:
    ``P_pad`` (``None`` when ``p = 0``), ``P_phi``, their transposes, and, for
    average pooling, ``P_avg``.  :class:`sparsecnn.Network` builds one per
    convolutional layer (``net.conv[m-1]``).

    Parameters
    ----------
    m : int
        The layer's index ``m`` (used in error messages).
    a, b, d : int
        Height, width and channels of ``Z^m``.
    spec : ConvLayer
        ``d^{m+1}``, ``h``, ``s``, ``p``, ``r``, activation and pooling.

    Examples
    --------
    A 4 x 4 one-channel image, 3 x 3 filters with padding 1, then 2 x 2 pooling:

    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> (ly.a_pad, ly.a_conv, ly.a_out), ly.W_shape
    ((6, 4, 2), (2, 9))
    >>> ly.n_in, ly.n_S, ly.n_out              # d a b, d^{m+1} a_conv b_conv, d^{m+1} a^{m+1} b^{m+1}
    (16, 32, 8)
    >>> ly.P_pad.shape, ly.P_phi.shape         # (d a_pad b_pad, d a b), (h h d a_conv b_conv, d a_pad b_pad)
    ((36, 16), (144, 36))
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
        """Output channels ``d^{m+1}``: rows of ``W^m`` and of ``S^m``."""
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
        """Entries of ``vec(Z^m)`` per instance: ``d a b``."""
        return self.d * self.a * self.b

    @property
    def n_S(self) -> int:
        """Entries of ``vec(S^m)`` per instance: ``d^{m+1} a_conv b_conv``."""
        return self.d_out * self.n_pos

    @property
    def n_out(self) -> int:
        """Entries of ``vec(Z^{m+1})`` per instance: ``d^{m+1} a^{m+1} b^{m+1}``."""
        return self.d_out * self.a_out * self.b_out

    @property
    def W_shape(self) -> tuple[int, int]:
        """Shape of ``W^m``: ``(d^{m+1}, h h d^m)``."""
        return (self.d_out, self.hhd)

    @property
    def fan_in(self) -> int:
        """Inputs of each entry of ``S^m``: ``h h d^m`` (sets the scale in ``Network.init_params``)."""
        return self.hhd

    # operators as the kernels read them ---------------------------------
    @property
    def P_phipad(self) -> sp.csr_array:
        """``P_phi P_pad``: padding folded into im2col, the product multiplied out once.

        The same operator as ``P_phi @ P_pad`` (``P_phi`` itself when ``p = 0``):
        ``vec(phi(pad(Z))) = P_phipad vec(Z)`` in one sparse product, and
        ``P_phipad^T = P_pad^T P_phi^T`` carries ``dxi/dphi`` back to ``dxi/dZ``
        in one.  Rows of ``phi`` that read the padding are empty rows.  Cached
        on the layer, read-only.  :meth:`phi` and :meth:`phi_T` use it unless
        ``fold_pad=False`` (then ``pad(Z)`` is formed on its own first).
        """
        P = self.__dict__.get("_P_phipad")
        if P is None:
            if self.P_pad is None:
                P = self.P_phi
            else:
                P = sp.csr_array(self.P_phi @ self.P_pad)
                P.sort_indices()
                P = freeze(P)
            self.__dict__["_P_phipad"] = P
        return P

    # forward and backward -------------------------------------------------
    def phi(self, Z: np.ndarray, *, out: np.ndarray | None = None, fold_pad: bool = True) -> np.ndarray:
        """``vec(phi(pad(Z)))`` for a batch: ``P_phi P_pad vec(Z)``, shape ``(hhd a_conv b_conv, l)``.

        Computed by :func:`sparsecnn.kernels.conv.phi`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> Z = np.arange(16.0).reshape(16, 1)        # pixel (r, q) holds r + 4 q
        >>> Phi = ly.phi(Z); Phi.shape
        (144, 1)
        >>> Phi[:9, 0].reshape(3, 3, order="F")       # first filter position: top-left, in the padding
        array([[0., 0., 0.],
               [0., 0., 4.],
               [0., 1., 5.]])
        >>> np.array_equal(Phi, ly.P_phi @ (ly.P_pad @ Z))   # the literal product P_phi P_pad vec(Z)
        True
        """
        return kconv.phi(self, Z, out=out, fold_pad=fold_pad)

    def phi_T(self, dPhi: np.ndarray, *, out: np.ndarray | None = None, fold_pad: bool = True
              ) -> np.ndarray:
        """Backward of :meth:`phi`: ``P_pad^T P_phi^T vec(dxi/dphi)``, shape ``(d a b, l)``.

        Computed by :func:`sparsecnn.kernels.conv.phi_T`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        ``phi_T`` is the adjoint of :meth:`phi`: ``<phi(Z), D> = <Z, phi_T(D)>``.

        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, dPhi = rng.standard_normal((16, 2)), rng.standard_normal((144, 2))
        >>> bool(np.isclose(np.sum(ly.phi(Z) * dPhi), np.sum(Z * ly.phi_T(dPhi))))
        True
        >>> np.allclose(ly.phi_T(dPhi), ly.P_pad.T @ (ly.P_phi.T @ dPhi))
        True
        """
        return kconv.phi_T(self, dPhi, out=out, fold_pad=fold_pad)

    def S(self, W: np.ndarray, bias: np.ndarray, Phi: np.ndarray, *, out: np.ndarray | None = None
          ) -> np.ndarray:
        """``vec(S) = vec(W phi(pad(Z)) + b 1^T)`` for a batch, shape ``(d_out a_conv b_conv, l)``.

        Computed by :func:`sparsecnn.kernels.conv.S`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, W, bias = rng.standard_normal((16, 2)), rng.standard_normal((2, 9)), np.array([1.0, -1.0])
        >>> Phi = ly.phi(Z)
        >>> S = ly.S(W, bias, Phi); S.shape
        (32, 2)
        >>> phi_1 = Phi[:, 1].reshape(9, 16, order="F")      # mat: h h d x a_conv b_conv, instance 1
        >>> np.allclose(S[:, 1].reshape(2, 16, order="F"), W @ phi_1 + bias[:, None])
        True
        """
        return kconv.S(self, W, bias, Phi, out=out)

    @overload
    def S_T(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: Literal[True] = ...,
            out: np.ndarray | None = ...) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    @overload
    def S_T(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: bool,
            out: np.ndarray | None = ...) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...

    def S_T(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: bool = True,
            out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Backward of :meth:`S`: ``dxi/dW = dxi/dS phi^T`` and ``dxi/db = dxi/dS 1``
        summed over the batch, and ``vec(dxi/dphi) = vec(W^T dxi/dS)`` per instance.

        Computed by :func:`sparsecnn.kernels.conv.S_T`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        ``S`` is affine in ``W``, ``b`` and ``phi``, so a change ``E`` of ``W``
        changes ``<dS, S>`` by exactly ``<dW, E>``:

        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Phi, W, bias = ly.phi(rng.standard_normal((16, 2))), rng.standard_normal((2, 9)), np.zeros(2)
        >>> dS, E = rng.standard_normal((32, 2)), rng.standard_normal((2, 9))
        >>> dW, db, dPhi = ly.S_T(W, Phi, dS)
        >>> change = np.sum(dS * (ly.S(W + E, bias, Phi) - ly.S(W, bias, Phi)))
        >>> bool(np.isclose(change, np.sum(dW * E)))
        True
        >>> np.allclose(db, dS.reshape(16, 2, 2).sum(axis=(0, 2)))        # dxi/dS 1, summed over i
        True
        >>> bool(np.isclose(np.sum(dS * ly.S(W, bias, Phi)), np.sum(dPhi * Phi)))   # W^T dS
        True
        """
        return kconv.S_T(self, W, Phi, dS, need_dPhi=need_dPhi, out=out)

    @overload
    def conv_forward(self, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                     out_phi: np.ndarray | None = ..., out_S: np.ndarray | None = ...,
                     keep_phi: Literal[True] = ...) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def conv_forward(self, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                     out_phi: np.ndarray | None = ..., out_S: np.ndarray | None = ...,
                     keep_phi: bool) -> tuple[np.ndarray | None, np.ndarray]: ...

    def conv_forward(self, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                     out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None,
                     keep_phi: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """:meth:`phi` then :meth:`S` in one sweep: ``(vec(phi(pad(Z))), vec(S))``.

        Computed by :func:`sparsecnn.kernels.conv.conv_forward`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, W, bias = rng.standard_normal((16, 3)), rng.standard_normal((2, 9)), np.array([0.5, -0.5])
        >>> Phi, S = ly.conv_forward(Z, W, bias)
        >>> np.array_equal(Phi, ly.phi(Z)), np.allclose(S, ly.S(W, bias, ly.phi(Z)))
        (True, True)
        >>> none, S2 = ly.conv_forward(Z, W, bias, keep_phi=False)
        >>> none is None and np.array_equal(S2, S)
        True
        """
        return kconv.conv_forward(self, Z, W, bias, out_phi=out_phi, out_S=out_S, keep_phi=keep_phi)

    def _backward_arrays(self, work: kernels.Workspace | None, l: int, dtype: np.dtype, need_dS: bool = True
                         ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Where the backward pass of this layer forms ``dxi/dS^m`` and ``dxi/dZ^m`` (``None``:
        fresh arrays, or not needed: no ``dxi/dZ^1``, no ``dxi/dS^m`` with ``need_dS=False``): one
        ``"dS"`` array for all layers, and two ``dxi/dZ`` arrays taken in turn, since layer
        ``m - 1`` reads ``dxi/dZ^m`` while it writes its own."""
        if work is None:
            return None, None
        out_dZ = work.get(f"dZ{self.m % 2}", (self.n_in, l), dtype) if self.m > 1 else None
        return (work.get("dS", (self.n_S, l), dtype) if need_dS else None), out_dZ

    @overload
    def conv_backward(self, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                      need_dZ: Literal[True] = ..., out: np.ndarray | None = ..., Z: np.ndarray | None = ...
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    @overload
    def conv_backward(self, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                      need_dZ: bool, out: np.ndarray | None = ..., Z: np.ndarray | None = ...
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...

    def conv_backward(self, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *, need_dZ: bool = True,
                      out: np.ndarray | None = None, Z: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`S_T` then :meth:`phi_T` in one sweep: ``(dxi/dW, dxi/db, dxi/dvec(Z))``.

        Computed by :func:`sparsecnn.kernels.conv.conv_backward`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Phi, W, dS = ly.phi(rng.standard_normal((16, 3))), rng.standard_normal((2, 9)), rng.standard_normal((32, 3))
        >>> dW, db, dZ = ly.conv_backward(W, Phi, dS)
        >>> dW2, db2, dPhi = ly.S_T(W, Phi, dS)
        >>> np.allclose(dW, dW2), np.allclose(db, db2), np.allclose(dZ, ly.phi_T(dPhi))
        (True, True, True)
        >>> ly.conv_backward(W, Phi, dS, need_dZ=False)[2] is None
        True
        >>> Z = rng.standard_normal((16, 3))                       # phi rebuilt block by block
        >>> np.allclose(ly.conv_backward(W, None, dS, Z=Z)[0], ly.conv_backward(W, ly.phi(Z), dS)[0])
        True
        """
        return kconv.conv_backward(self, W, Phi, dS, need_dZ=need_dZ, out=out, Z=Z)

    # convolution and max pooling fused, window by window ------------------
    @property
    def window_positions(self) -> np.ndarray:
        """Filter positions ``j`` that max pooling reads, window by window, shape ``(a^{m+1} b^{m+1} r^2,)``.

        Window ``o = r' + a^{m+1} q'`` (the order of ``vec(Z^{m+1})``'s pixels)
        reads positions ``j = (r r' + dr) + a_conv (r q' + dq)`` at offsets
        ``k = dr + r dq`` (the order of ``vec``); entry ``r^2 o + k`` holds that
        ``j``.  Positions in no window (a last odd row or column) are left out.

        Examples
        --------
        >>> ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2)).window_positions.tolist()
        [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
        >>> ConvShape(1, 3, 3, 1, ConvLayer(1, h=1, r=2)).window_positions.tolist()   # row and column 2 unread
        [0, 1, 3, 4]
        """
        r = self.spec.r
        q_o, r_o, dq, dr = np.meshgrid(np.arange(self.b_out), np.arange(self.a_out), np.arange(r), np.arange(r),
                                       indexing="ij")
        return ((r * r_o + dr) + self.a_conv * (r * q_o + dq)).ravel()

    @property
    def P_phipad_windows(self) -> sp.csr_array:
        """The rows of :attr:`P_phipad` for :attr:`window_positions`, in that order.

        Shape ``(h h d a^{m+1} b^{m+1} r^2, d a b)``: block ``t`` of ``h h d``
        rows is ``phi_j`` for ``j = window_positions[t]``, so the ``r^2``
        columns of ``phi(pad(Z))`` of each pooling window are adjacent and a
        range of windows is a range of rows.  Cached on the layer, read-only.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
        >>> Z = np.random.default_rng(0).standard_normal((16, 2))
        >>> Phi_w = ly.P_phipad_windows @ Z                       # h h d = 9 rows per position
        >>> Phi = ly.phi(Z).reshape(16, 9, 2)
        >>> np.array_equal(Phi_w.reshape(16, 9, 2), Phi[ly.window_positions])
        True
        """
        P = self.__dict__.get("_P_phipad_windows")
        if P is None:
            rows = (self.window_positions[:, None] * self.hhd + np.arange(self.hhd)).ravel()
            P = sp.csr_array(self.P_phipad[rows])
            P.sort_indices()
            P = freeze(P)
            self.__dict__["_P_phipad_windows"] = P
        return P

    @property
    def windowed(self) -> bool:
        """Whether :meth:`conv_pool_forward`, :meth:`conv_pool_backward` and :meth:`conv_pool_R`
        apply: max pooling follows, and ``sigma'`` is readable from ``Z^{m+1}`` (equation (6)).

        Examples
        --------
        >>> ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2)).windowed
        True
        >>> ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2, pool="avg")).windowed
        False
        """
        return self.max_pools and self.sigma.dsigma_from_output is not None

    def conv_pool_forward(self, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *, order: str = "slides",
                          out: np.ndarray | None = None, out_offsets: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
        """``vec(Z^{m+1}) = P_pool vec(sigma(W phi(pad(Z)) + b 1^T))`` one pooling window at a time.

        Computed by :func:`sparsecnn.kernels.windowed.conv_pool_forward`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> from sparsecnn.planner.execute import winner_positions
        >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, W, bias = rng.standard_normal((72, 4)), rng.standard_normal((3, 18)), rng.standard_normal(3)
        >>> Z_next, k = ly.conv_pool_forward(Z, W, bias)
        >>> Z_ref, winners = ly.activate_pool(ly.conv_forward(Z, W, bias)[1])
        >>> np.allclose(Z_next, Z_ref), np.array_equal(winner_positions(ly, k), winners), k.dtype
        (True, True, dtype('uint8'))
        """
        return kwin.conv_pool_forward(self, Z, W, bias, order=order, out=out, out_offsets=out_offsets)

    def conv_pool_backward(self, W: np.ndarray, Z: np.ndarray, dZnext: np.ndarray, Znext: np.ndarray,
                           offsets: np.ndarray, *, need_dZ: bool = True, out: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Equation (6) then the backward step of the convolution, one pooling window at a time.

        Computed by :func:`sparsecnn.kernels.windowed.conv_pool_backward`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, W, bias = rng.standard_normal((72, 4)), rng.standard_normal((3, 18)), rng.standard_normal(3)
        >>> Z_next, k = ly.conv_pool_forward(Z, W, bias)
        >>> dZ_next = rng.standard_normal(Z_next.shape)
        >>> dW, db, dZ = ly.conv_pool_backward(W, Z, dZ_next, Z_next, k)
        >>> Phi, S = ly.conv_forward(Z, W, bias)
        >>> dS = ly.pool_T(ly.sigma.backprop_from_output(dZ_next, Z_next), ly.winners(ly.sigma.sigma(S)))
        >>> ref = ly.conv_backward(W, Phi, dS)
        >>> all(np.allclose(x, y) for x, y in zip((dW, db, dZ), ref))
        True
        """
        return kwin.conv_pool_backward(self, W, Z, dZnext, Znext, offsets, need_dZ=need_dZ, out=out)

    def conv_pool_R(self, Z: np.ndarray, RZ: np.ndarray | None, W: np.ndarray, V: np.ndarray,
                    v_b: np.ndarray, Znext: np.ndarray, offsets: np.ndarray, *, out: np.ndarray | None = None
                    ) -> np.ndarray:
        """The R-operator of :meth:`conv_pool_forward`: ``R(Z^{m+1})`` one pooling window at a time.

        Computed by :func:`sparsecnn.kernels.windowed.conv_pool_R`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        A directional derivative, against central differences:

        >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
        >>> rng = np.random.default_rng(0)
        >>> Z, RZ = rng.standard_normal((72, 4)), rng.standard_normal((72, 4))
        >>> W, V, b, v_b = rng.standard_normal((3, 18)), rng.standard_normal((3, 18)), np.zeros(3), np.ones(3)
        >>> Z_next, k = ly.conv_pool_forward(Z, W, b)
        >>> eps = 1e-6
        >>> plus = ly.conv_pool_forward(Z + eps * RZ, W + eps * V, b + eps * v_b)[0]
        >>> minus = ly.conv_pool_forward(Z - eps * RZ, W - eps * V, b - eps * v_b)[0]
        >>> np.allclose(ly.conv_pool_R(Z, RZ, W, V, v_b, Z_next, k), (plus - minus) / (2 * eps), atol=1e-6)
        True
        """
        return kwin.conv_pool_R(self, Z, RZ, W, V, v_b, Znext, offsets, out=out)

    def winners(self, A: np.ndarray) -> np.ndarray | None:
        """Winners of max pooling on ``vec(sigma(S))``; ``None`` unless max pooling follows.

        Found by pairwise comparisons on strided views of ``A`` (no copy);
        ties go to the first entry of the window in the order of ``vec``.

        Parameters
        ----------
        A : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
            ``vec(sigma(S^{m,i}))`` in column ``i``.

        Returns
        -------
        integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``, or None
            Entry ``[o, i]``: the position in ``vec(sigma(S^{m,i}))`` of the
            maximum of the window that gives entry ``o`` of ``vec(Z^{m+1,i})``.

        Examples
        --------
        The slides' 4 x 4 image ("Notes on RELU Activation + Max Pooling VI"):

        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
        >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
        >>> ly.winners(image.reshape(16, 1, order="F")).ravel().tolist()   # 5, 4, 9, 6 in vec(image)
        [5, 7, 13, 14]
        >>> ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2, pool="avg")).winners(image.reshape(16, 1)) is None
        True
        """
        if not self.max_pools:
            return None
        A = np.asarray(A)
        if A.ndim != 2 or A.shape[0] != self.n_S:
            raise ShapeError(f"conv layer {self.m}: the pooled image must have d*a*b = {self.n_S} rows, "
                             f"got shape {A.shape}")
        return kpool.max_pool_winners(A, self.a_conv, self.b_conv, self.d_out, self.spec.r)

    def P_pool(self, winners: np.ndarray | None) -> sp.csr_array:
        """``P_pool`` of the batch: for max pooling built from ``winners`` (instances-last
        layout, acting on ``V.ravel()``); for average pooling the constant matrix.

        Max pooling: built directly from ``(data, indices, indptr)``, the
        winners giving ``indices`` (row ``o*l + i`` has its 1 in column
        ``winners[o, i]*l + i``).

        Parameters
        ----------
        winners : integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``, or None
            From :meth:`winners`; ``None`` for average pooling.

        Returns
        -------
        scipy.sparse.csr_array
            Max pooling: shape ``(d^{m+1} a^{m+1} b^{m+1} l, d^{m+1} a_conv b_conv l)``,
            one 1 per row; average pooling: ``P_pool`` of one instance,
            shape ``(d^{m+1} a^{m+1} b^{m+1}, d^{m+1} a_conv b_conv)``, entries ``1/r^2``.

        Examples
        --------
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
        >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
        >>> P = ly.P_pool(ly.winners(image.reshape(16, 1, order="F")))
        >>> P.shape, P.indices.tolist()              # one instance: the slides' P_pool
        ((4, 16), [5, 7, 13, 14])
        >>> P @ image.ravel(order="F")               # vec([[5, 9], [4, 6]])
        array([5., 4., 9., 6.])

        For a batch the matrix acts on ``A.ravel()`` (instances last):

        >>> A = np.random.default_rng(0).standard_normal((16, 3))
        >>> P = ly.P_pool(ly.winners(A)); P.shape
        (12, 48)
        >>> np.array_equal(P @ A.ravel(), ly.pool(A, ly.winners(A)).ravel())
        True
        >>> P_avg = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2, pool="avg")).P_pool(None)
        >>> np.flatnonzero(P_avg.toarray()[0]).tolist(), float(P_avg.data[0])   # window (0, 0): 1/r^2 each
        ([0, 1, 4, 5], 0.25)
        """
        if winners is None:
            return self.P_avg
        return _P_pool_from_winners(winners, self.n_S, "instances-last")

    def pool(self, A: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
             ) -> np.ndarray:
        """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` for a batch (``A`` itself when ``r = 1``).

        Computed by :func:`sparsecnn.kernels.conv.pool`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        The slides' 4 x 4 image, max pooled and average pooled:

        >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
        >>> A = image.reshape(16, 1, order="F")                        # vec(image)
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
        >>> ly.pool(A, ly.winners(A)).ravel()                          # vec([[5, 9], [4, 6]])
        array([5., 4., 9., 6.])
        >>> ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2, pool="avg")).pool(A, None).ravel()
        array([3.5 , 2.5 , 5.5 , 3.25])
        """
        return kconv.pool(self, A, winners, out=out)

    def pool_T(self, dZnext: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
               ) -> np.ndarray:
        """Equation (7): ``P_pool^T vec(dxi/dZ^{m+1})``, the reverse mapping of pooling.

        Computed by :func:`sparsecnn.kernels.conv.pool_T`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        The slides' example ("... Max Pooling X"): ``v`` goes to the winners 5, 7, 13, 14.

        >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
        >>> w = ly.winners(image.reshape(16, 1, order="F"))
        >>> v = np.array([[1.], [2.], [3.], [4.]])
        >>> ly.pool_T(v, w).ravel()
        array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
        >>> np.array_equal(ly.pool_T(v, w), ly.P_pool(w).T @ v)
        True
        """
        return kconv.pool_T(self, dZnext, winners, out=out)

    def activate_pool(self, S: np.ndarray, *, order: str = "slides"
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` and the winners, for a batch.

        Computed by :func:`sparsecnn.kernels.conv.activate_pool`, which documents the parameters,
        shapes and blocking.

        Examples
        --------
        ReLU then 2 x 2 max pooling of a 4 x 4 ``S`` for three instances, in
        both orders and by hand:

        >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
        >>> S = np.random.default_rng(0).standard_normal((16, 3))
        >>> Z_slides, _ = ly.activate_pool(S)
        >>> Z_first, _ = ly.activate_pool(S, order="pool-first")
        >>> np.array_equal(Z_slides, Z_first)
        True
        >>> blocks = np.maximum(S, 0).reshape(2, 2, 2, 2, 3, order="F")   # (dr, window row, dq, window column, i)
        >>> np.array_equal(Z_slides, blocks.max(axis=(0, 2)).reshape(4, 3, order="F"))
        True
        """
        return kconv.activate_pool(self, S, order=order)


@dataclass
class FullShape:
    """Full layer ``m`` with its input size ``n_in = n_m`` known.

    Parameters
    ----------
    m : int
        The layer's index ``m``.
    n_in : int
        ``n_m``, entries of ``z^m`` (for the first full layer ``vec(Z^{L^C+1})``).
    spec : FullLayer
    last : bool
        Whether this is layer ``L``; its default activation is then the identity.

    Attributes
    ----------
    sigma : Activation
        The activation ``sigma`` of ``z^{m+1} = sigma(s^m)``.

    Examples
    --------
    >>> fl = FullShape(2, 8, FullLayer(3), last=True)
    >>> fl.W_shape, fl.sigma.name
    ((3, 8), 'identity')
    >>> FullShape(2, 8, FullLayer(3), last=False).sigma.name
    'relu'
    """

    m: int
    n_in: int
    spec: FullLayer
    last: bool

    def __post_init__(self) -> None:
        name = self.spec.activation or ("identity" if self.last else "relu")
        self.sigma: Activation = get_activation(name)

    @property
    def n_out(self) -> int:
        """``n_{m+1}``: entries of ``s^m`` and ``z^{m+1}`` per instance."""
        return self.spec.n_out

    @property
    def W_shape(self) -> tuple[int, int]:
        """Shape of ``W^m``: ``(n_{m+1}, n_m)``."""
        return (self.n_out, self.n_in)

    @property
    def fan_in(self) -> int:
        """Inputs of each entry of ``s^m``: ``n_m`` (sets the scale in ``Network.init_params``)."""
        return self.n_in

    def s(self, W: np.ndarray, bias: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``s = W z + b`` for a batch, shape ``(n_{m+1}, l)``, in ``z``'s float dtype.

        ``z`` has shape ``(n_m, l)``, one instance per column.

        Examples
        --------
        >>> fl = FullShape(2, 2, FullLayer(3), last=True)
        >>> W, bias = np.array([[1., 0.], [0., 1.], [1., 1.]]), np.array([0., 10., 100.])
        >>> fl.s(W, bias, np.array([[1., 2.], [3., 4.]]))
        array([[  1.,   2.],
               [ 13.,  14.],
               [104., 106.]])
        """
        z = _floating(z)
        s = np.asarray(W, dtype=z.dtype) @ z
        s += np.asarray(bias, dtype=z.dtype)[:, None]
        return s

    def s_T(self, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Equations (1)-(3): ``dxi/dW = dxi/ds z^T``, ``dxi/db = dxi/ds``,
        ``dxi/dz = W^T dxi/ds`` (``W`` and ``b`` summed over the batch), in ``ds``'s float dtype.

        ``z`` has shape ``(n_m, l)`` and ``ds`` shape ``(n_{m+1}, l)``; the results
        have shapes ``(n_{m+1}, n_m)``, ``(n_{m+1},)`` and ``(n_m, l)``.

        Examples
        --------
        ``s`` is affine in ``W`` and ``z``, so ``<ds, s>`` changes by exactly
        ``<dW, E>`` along a change ``E`` of ``W``, and ``dz`` is ``W^T ds``:

        >>> fl = FullShape(2, 4, FullLayer(3), last=True)
        >>> rng = np.random.default_rng(0)
        >>> W, z, ds, E = (rng.standard_normal(sh) for sh in [(3, 4), (4, 2), (3, 2), (3, 4)])
        >>> dW, db, dz = fl.s_T(W, z, ds)
        >>> bias = np.zeros(3)
        >>> bool(np.isclose(np.sum(ds * (fl.s(W + E, bias, z) - fl.s(W, bias, z))), np.sum(dW * E)))
        True
        >>> np.allclose(db, ds.sum(axis=1)), np.allclose(dz, W.T @ ds)
        (True, True)
        """
        ds = _floating(ds)
        z = np.asarray(z, dtype=ds.dtype)
        return ds @ z.T, ds.sum(axis=1), np.asarray(W, dtype=ds.dtype).T @ ds
