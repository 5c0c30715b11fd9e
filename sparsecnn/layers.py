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
from .activations import Activation, get_activation
from .exceptions import ArchitectureError, ConfigError, InputTypeError, ShapeError
from .operators import P_pad, P_phi, P_pool_avg, conv_size, max_pool_winners
from .operators._common import freeze
from .operators.pool import _P_pool_from_winners

__all__ = ["ConvLayer", "FullLayer", "ConvShape", "FullShape", "POOL_BACKWARDS", "ACTIVATE_ORDERS"]

POOL_BACKWARDS = ("auto", "eq5", "eq6")
POOLS = ("max", "avg")
ACTIVATE_ORDERS = ("slides", "pool-first")

_BLOCK_BYTES = 1 << 18
"""Target size of the output block of :meth:`ConvShape.S` (kept in cache while the bias is added)."""


def _floating(X: object) -> np.ndarray:
    """``X`` as an array of its own float dtype (float32 stays float32), float64 otherwise."""
    arr = np.asarray(X)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        arr = arr.astype(np.float64)
    return arr


def _result(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ShapeError(f"{what}: out must be a C-contiguous {dtype} array of shape {shape}, "
                         f"got {out.dtype} {out.shape}")
    return out


def _block(bytes_per_item: int, n: int) -> int:
    return max(1, min(n, _BLOCK_BYTES // max(bytes_per_item, 1)))


def _sum_dW(parts: list[np.ndarray]) -> np.ndarray:
    """``dW`` from the parts of the kernel threads."""
    total = parts[0]
    for c in parts[1:]:
        total += c
    return total


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

        One product with :attr:`P_phipad` (``fold_pad=False``: ``P_pad`` then
        ``P_phi``).  Each row of the operator holds one 1, so the product is the
        row gather that its ``indices`` array describes
        (:func:`sparsecnn.kernels.select`).  The result has ``Z``'s float
        dtype; ``out`` (C-contiguous, that shape and dtype) receives it if given.
        """
        if fold_pad or self.P_pad is None:
            return kernels.select(self.P_phipad, Z, out)
        return kernels.select(self.P_phi, kernels.select(self.P_pad, Z), out)

    def phi_T(self, dPhi: np.ndarray, *, out: np.ndarray | None = None, fold_pad: bool = True
              ) -> np.ndarray:
        """Backward of :meth:`phi`: ``P_pad^T P_phi^T vec(dxi/dphi)``, shape ``(d a b, l)``.

        One transposed product with :attr:`P_phipad`, computed as the CSC
        product with its own arrays (no ``P^T`` is formed).
        """
        if fold_pad or self.P_pad is None:
            return kernels.select_T(self.P_phipad, dPhi, out)
        return kernels.select_T(self.P_pad, kernels.select_T(self.P_phi, dPhi), out)

    def S(self, W: np.ndarray, bias: np.ndarray, Phi: np.ndarray, *, out: np.ndarray | None = None
          ) -> np.ndarray:
        """``vec(S) = vec(W phi(pad(Z)) + b 1^T)`` for a batch, shape ``(d_out a_conv b_conv, l)``.

        ``vec(S)`` holds, for every filter position ``j``, the ``d_out x l``
        block ``W phi_j`` where ``phi_j`` (``hhd x l``) is column ``j`` of
        ``phi`` for every instance: one GEMM per position, a block of positions
        at a time with the bias added while the block is in cache, the
        positions split over the kernel threads (:func:`sparsecnn.kernels.parallel_blas`).
        ``W`` and ``b`` are used in ``Phi``'s float dtype.
        """
        Phi = _floating(Phi)
        dtype = Phi.dtype
        l = Phi.shape[1]
        W = np.asarray(W, dtype=dtype)
        b = np.asarray(bias, dtype=dtype).reshape(-1, 1)
        Phi3 = Phi.reshape(self.n_pos, self.hhd, l)
        res = _result(out, (self.n_S, l), dtype, "S")
        S3 = res.reshape(self.n_pos, self.d_out, l)
        step = _block(max(self.d_out, self.hhd) * l * dtype.itemsize, self.n_pos)

        def run(j0: int, j1: int) -> None:
            for a in range(j0, j1, step):
                e = min(a + step, j1)
                np.matmul(W, Phi3[a:e], out=S3[a:e])
                S3[a:e] += b

        kernels.parallel_blas(run, self.n_pos, self.d_out * self.hhd * self.n_pos * l)
        return res

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

        ``dxi/dW = sum_j dS_j phi_j^T`` is one batched GEMM per cache-sized block of filter positions, summed into
        one ``d_out x hhd`` result (one per kernel thread, summed);
        ``vec(W^T dS)`` is one GEMM per position.  All GEMMs go through numpy's
        BLAS: two BLAS libraries with thread pools of their own (numpy's and
        scipy's) called in turn keep each other's threads spinning.  ``need_dPhi=False`` skips ``dxi/dphi`` (returned as
        ``None``), which the first layer does not need; ``out`` receives
        ``dxi/dphi`` if given.  Results in ``dS``'s float dtype.
        """
        dS = _floating(dS)
        dtype = dS.dtype
        l = dS.shape[1]
        Phi = np.asarray(Phi, dtype=dtype)
        WT = np.asarray(W, dtype=dtype).T
        dS3 = dS.reshape(self.n_pos, self.d_out, l)
        Phi3 = Phi.reshape(self.n_pos, self.hhd, l)
        res = _result(out, (self.n_pos * self.hhd, l), dtype, "S_T") if need_dPhi else None
        res3 = res.reshape(self.n_pos, self.hhd, l) if res is not None else None
        step = _block(self.hhd * l * dtype.itemsize, self.n_pos)

        def run(j0: int, j1: int) -> np.ndarray:
            dW = np.zeros(self.W_shape, dtype=dtype)
            tmp = np.empty((min(step, j1 - j0), *self.W_shape), dtype=dtype)
            for a in range(j0, j1, step):                                 # cache-sized blocks
                e = min(a + step, j1)
                t = np.matmul(dS3[a:e], Phi3[a:e].transpose(0, 2, 1), out=tmp[:e - a])
                dW += t.sum(axis=0)                                       # dW += sum_j dS_j phi_j^T
                if res3 is not None:
                    np.matmul(WT, dS3[a:e], out=res3[a:e])
            return dW

        parts = kernels.parallel_blas(run, self.n_pos, 2 * self.d_out * self.hhd * self.n_pos * l)
        return _sum_dW(parts), self._db(dS3), res

    def _db(self, dS3: np.ndarray) -> np.ndarray:
        """``dxi/dS 1`` summed over the batch: one pass over ``dS``."""
        n_pos, d_out, l = dS3.shape
        return dS3.reshape(n_pos, d_out * l).sum(axis=0).reshape(d_out, l).sum(axis=1)

    def conv_forward(self, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                     out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`phi` then :meth:`S` in one sweep: ``(vec(phi(pad(Z))), vec(S))``.

        The same products (``P_phi P_pad vec(Z)``, then ``W phi_j + b`` for every
        position ``j``), a block of positions at a time: the rows of
        :attr:`P_phipad` of a block are gathered and at once multiplied by
        ``W`` while they are in cache.  ``phi`` is still written whole, since
        the backward pass reads it.  Blocks are split over the kernel threads.
        """
        Z = _floating(Z)
        dtype = Z.dtype
        l = Z.shape[1]
        W = np.asarray(W, dtype=dtype)
        b = np.asarray(bias, dtype=dtype).reshape(-1, 1)
        plan = kernels.selection_plan(self.P_phipad)
        if Z.shape[0] != self.n_in:
            raise ShapeError(f"conv layer {self.m}: Z must have d*a*b = {self.n_in} rows, got {Z.shape[0]}")
        src = kernels.gather_source(plan, np.ascontiguousarray(Z))
        Phi = _result(out_phi, (self.n_pos * self.hhd, l), dtype, "conv_forward")
        S = _result(out_S, (self.n_S, l), dtype, "conv_forward")
        Phi3 = Phi.reshape(self.n_pos, self.hhd, l)
        S3 = S.reshape(self.n_pos, self.d_out, l)
        take, hhd = plan.take, self.hhd
        step = _block(max(self.d_out, self.hhd) * l * dtype.itemsize, self.n_pos)

        def run(j0: int, j1: int) -> None:
            for a in range(j0, j1, step):
                e = min(a + step, j1)
                np.take(src, take[a * hhd:e * hhd], axis=0, out=Phi[a * hhd:e * hhd], mode="clip")
                np.matmul(W, Phi3[a:e], out=S3[a:e])
                S3[a:e] += b

        kernels.parallel_blas(run, self.n_pos, self.d_out * self.hhd * self.n_pos * l)
        return Phi, S

    @overload
    def conv_backward(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *,
                      need_dZ: Literal[True] = ..., out: np.ndarray | None = ...
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    @overload
    def conv_backward(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *,
                      need_dZ: bool, out: np.ndarray | None = ...
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...

    def conv_backward(self, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dZ: bool = True,
                      out: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`S_T` then :meth:`phi_T` in one sweep: ``(dxi/dW, dxi/db, dxi/dvec(Z))``.

        The same products: ``dW = sum_j dS_j phi_j^T``, ``dxi/dphi_j = W^T dS_j``
        and ``P_pad^T P_phi^T vec(dxi/dphi)``, a block of positions at a
        time: the block of ``dxi/dphi`` is multiplied by the transposes of
        its rows of :attr:`P_phipad` while it is in cache, so ``dxi/dphi`` is
        never held whole.  ``need_dZ=False`` (the first layer) skips
        ``dxi/dphi`` and ``dxi/dZ`` (``None``).  Blocks are split over the
        kernel threads, each adding into its own ``dxi/dZ``; the parts are summed.
        """
        dS = _floating(dS)
        dtype = dS.dtype
        l = dS.shape[1]
        Phi = np.asarray(Phi, dtype=dtype)
        WT = np.asarray(W, dtype=dtype).T
        dS3 = dS.reshape(self.n_pos, self.d_out, l)
        Phi3 = Phi.reshape(self.n_pos, self.hhd, l)
        P = self.P_phipad
        res = _result(out, (self.n_in, l), dtype, "conv_backward") if need_dZ else None
        hhd = self.hhd
        step = _block(hhd * l * dtype.itemsize, self.n_pos)

        def run(j0: int, j1: int) -> tuple[np.ndarray, np.ndarray | None]:
            dW = np.zeros(self.W_shape, dtype=dtype)
            tmp = np.empty((min(step, j1 - j0), *self.W_shape), dtype=dtype)
            target = None
            if res is not None:
                target = res if j0 == 0 else kernels.scratch("conv_backward.dZ", res.shape, dtype)
                target.fill(0)
                buf = kernels.scratch("conv_backward.dphi", (step, hhd, l), dtype)
            for a in range(j0, j1, step):                                 # cache-sized blocks
                e = min(a + step, j1)
                t = np.matmul(dS3[a:e], Phi3[a:e].transpose(0, 2, 1), out=tmp[:e - a])
                dW += t.sum(axis=0)                                       # dW += sum_j dS_j phi_j^T
                if target is not None:
                    dphi = buf[:e - a]
                    np.matmul(WT, dS3[a:e], out=dphi)                     # dxi/dphi_j = W^T dS_j
                    kernels.csc_add(P, (a * hhd, e * hhd), dphi, target)  # += P_phipad^T rows
            return dW, target

        parts = kernels.parallel_blas(run, self.n_pos, 2 * self.d_out * hhd * self.n_pos * l)
        dW = _sum_dW([c for c, _ in parts])
        if res is not None:
            for _, t in parts[1:]:
                np.add(res, t, out=res)
        return dW, self._db(dS3), res

    def winners(self, A: np.ndarray) -> np.ndarray | None:
        """Winners of max pooling on ``vec(sigma(S))``; ``None`` unless max pooling follows.

        Found by pairwise comparisons on strided views of ``A`` (no copy);
        ties go to the first entry of the window in the order of ``vec``.
        """
        if not self.max_pools:
            return None
        return max_pool_winners(A, self.a_conv, self.b_conv, self.d_out, self.spec.r)

    def P_pool(self, winners: np.ndarray | None) -> sp.csr_array:
        """``P_pool`` of the batch: for max pooling built from ``winners`` (instances-last
        layout, acting on ``V.ravel()``); for average pooling the constant matrix.

        Max pooling: built directly from ``(data, indices, indptr)``, the
        winners giving ``indices`` (row ``o*l + i`` has its 1 in column
        ``winners[o, i]*l + i``).
        """
        if winners is None:
            return self.P_avg
        return _P_pool_from_winners(winners, self.n_S, "instances-last")

    def pool(self, A: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
             ) -> np.ndarray:
        """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` for a batch (``A`` itself when ``r = 1``).

        Max pooling: the product of :meth:`P_pool` with ``A.ravel()``, a gather
        along the matrix's ``indices``.  ``A`` may be any batch of the shape of
        ``vec(S)`` (the R-operator pools ``R(S)`` with the same matrix).
        """
        if not self.pools:
            return A
        if winners is None:
            return kernels.spmm(self.P_avg, A, out)
        A = _floating(A)
        l = A.shape[1]
        res = _result(out, (self.n_out, l), A.dtype, "pool")
        kernels.select(self.P_pool(winners), A.reshape(-1), res.reshape(-1))
        return res

    def pool_T(self, dZnext: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
               ) -> np.ndarray:
        """Equation (7): ``P_pool^T vec(dxi/dZ^{m+1})``, the reverse mapping of pooling.

        Max pooling: ``P_pool^T`` holds at most one 1 per row (the windows are
        disjoint), so its product puts each entry of ``dxi/dZ^{m+1}`` at its
        winner in a zero result (:func:`sparsecnn.kernels.select_T`).
        """
        if not self.pools:
            return dZnext
        if winners is None:
            return kernels.spmm_T(self.P_avg, dZnext, out)
        dZnext = _floating(dZnext)
        l = dZnext.shape[1]
        res = _result(out, (self.n_S, l), dZnext.dtype, "pool_T")
        kernels.select_T(self.P_pool(winners), dZnext.reshape(-1), res.reshape(-1))
        return res

    def activate_pool(self, S: np.ndarray, *, order: str = "slides"
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` and the winners, for a batch.

        ``order="slides"``: ``sigma(S)``, its winners, then ``P_pool``, as the
        slides write it.  ``order="pool-first"`` (max pooling with a
        non-decreasing ``sigma`` only): winners of ``S`` itself, ``P_pool vec(S)``,
        then ``sigma`` of the ``r^2`` times smaller result.  It is the same
        ``Z^{m+1}``, because a non-decreasing ``sigma`` commutes with the
        maximum: ``sigma(max_k s_k) = max_k sigma(s_k)``.  ``P_pool`` may differ
        only in windows where ``sigma`` makes entries equal (for ReLU, a
        window with no positive entry: the slides' order picks its first entry,
        pool-first its largest ``S``); there ``Z^{m+1}`` is the same and
        ``sigma'`` of the winner is 0 for ReLU, so the gradients (equations (5)
        and (6)) agree too.

        Returns
        -------
        (Z_next, winners)
            ``winners`` is ``None`` unless max pooling follows.
        """
        if order not in ACTIVATE_ORDERS:
            raise ConfigError(f"order must be one of {ACTIVATE_ORDERS}, got {order!r}")
        if order == "pool-first" and self.max_pools and self.sigma.monotone:
            winners = self.winners(S)
            return self.sigma.sigma(self.pool(S, winners)), winners
        A = self.sigma.sigma(S)
        winners = self.winners(A)
        return self.pool(A, winners), winners


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
        """``s = W z + b`` for a batch, shape ``(n_{m+1}, l)``, in ``z``'s float dtype."""
        z = _floating(z)
        s = np.asarray(W, dtype=z.dtype) @ z
        s += np.asarray(bias, dtype=z.dtype)[:, None]
        return s

    def s_T(self, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Equations (1)-(3): ``dxi/dW = dxi/ds z^T``, ``dxi/db = dxi/ds``,
        ``dxi/dz = W^T dxi/ds`` (``W`` and ``b`` summed over the batch), in ``ds``'s float dtype."""
        ds = _floating(ds)
        z = np.asarray(z, dtype=ds.dtype)
        return ds @ z.T, ds.sum(axis=1), np.asarray(W, dtype=ds.dtype).T @ ds
