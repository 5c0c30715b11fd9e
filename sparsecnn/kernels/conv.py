"""The blocked, threaded convolution kernels of a conv layer: the fast backend's ``phi``, ``S`` and pooling.

Each function takes the layer (:class:`sparsecnn.layers.ConvShape`, its sizes
and operators) and computes exactly the slides' product for a batch (one
column per instance), fed to the machine: the selection products as row
gathers (:mod:`sparsecnn.kernels.sparse`), ``W phi_j + b`` as one GEMM per
filter position, a cache-sized block of positions at a time, split over the
kernel threads (:mod:`sparsecnn.kernels.threads`), with work arrays kept
between calls (:mod:`sparsecnn.kernels.buffers`).  ``ConvShape`` has a method
of the same name for each (``ly.phi(Z)`` is ``phi(ly, Z)``); the reference
backend computes the same with :mod:`sparsecnn.equations`.

Examples
--------
>>> from sparsecnn.layers import ConvLayer, ConvShape
>>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
>>> Z = np.random.default_rng(0).standard_normal((16, 3))
>>> np.array_equal(phi(ly, Z), ly.P_phi @ (ly.P_pad @ Z))
True
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .. import machine
from ..activations import ACTIVATE_ORDERS
from ..exceptions import ConfigError, ShapeError
from . import buffers, sparse, threads

__all__ = ["phi", "phi_T", "S", "S_T", "conv_forward", "conv_backward", "pool", "pool_T", "activate_pool"]

_BLOCK_BYTES = machine.chosen().block_bytes
"""Target size of the output block of :func:`S` (kept in cache while the bias is added): an eighth of
the L2 cache (:func:`sparsecnn.machine.choose`; 256 KiB for a 2 MiB L2)."""


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


def _db(dS3: np.ndarray) -> np.ndarray:
    """``dxi/dS 1`` summed over the batch: one pass over ``dS``."""
    n_pos, d_out, l = dS3.shape
    return dS3.reshape(n_pos, d_out * l).sum(axis=0).reshape(d_out, l).sum(axis=1)


def phi(ly: Any, Z: np.ndarray, *, out: np.ndarray | None = None, fold_pad: bool = True) -> np.ndarray:
    """``vec(phi(pad(Z)))`` for a batch: ``P_phi P_pad vec(Z)``, shape ``(hhd a_conv b_conv, l)``.

    One product with :attr:`P_phipad` (``fold_pad=False``: ``P_pad`` then
    ``P_phi``).  Each row of the operator holds one 1, so the product is the
    row gather that its ``indices`` array describes
    (:func:`sparsecnn.kernels.select`).  The result has ``Z``'s float
    dtype; ``out`` (C-contiguous, that shape and dtype) receives it if given.

    Parameters
    ----------
    Z : ndarray, shape ``(d a b, l)``
        ``vec(Z^{m,i})`` in column ``i``.

    Returns
    -------
    ndarray, shape ``(h h d a_conv b_conv, l)``
        ``vec(phi(pad(Z^{m,i})))`` in column ``i``.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> Z = np.arange(16.0).reshape(16, 1)        # pixel (r, q) holds r + 4 q
    >>> Phi = phi(ly, Z); Phi.shape
    (144, 1)
    >>> Phi[:9, 0].reshape(3, 3, order="F")       # first filter position: top-left, in the padding
    array([[0., 0., 0.],
           [0., 0., 4.],
           [0., 1., 5.]])
    >>> np.array_equal(Phi, ly.P_phi @ (ly.P_pad @ Z))   # the literal product P_phi P_pad vec(Z)
    True
    """
    if fold_pad or ly.P_pad is None:
        return sparse.select(ly.P_phipad, Z, out)
    return sparse.select(ly.P_phi, sparse.select(ly.P_pad, Z), out)


def phi_T(ly: Any, dPhi: np.ndarray, *, out: np.ndarray | None = None, fold_pad: bool = True
          ) -> np.ndarray:
    """Backward of :meth:`phi`: ``P_pad^T P_phi^T vec(dxi/dphi)``, shape ``(d a b, l)``.

    One transposed product with :attr:`P_phipad`, computed as the CSC
    product with its own arrays (no ``P^T`` is formed).

    Parameters
    ----------
    dPhi : ndarray, shape ``(h h d a_conv b_conv, l)``
        ``vec(dxi/dphi(pad(Z^{m,i})))`` in column ``i``.

    Returns
    -------
    ndarray, shape ``(d a b, l)``
        ``vec(dxi/dZ^{m,i})`` in column ``i``; an entry of ``Z`` read by
        several filter positions receives the sum of their gradients.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    ``phi_T`` is the adjoint of :meth:`phi`: ``<phi(Z), D> = <Z, phi_T(D)>``.

    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, dPhi = rng.standard_normal((16, 2)), rng.standard_normal((144, 2))
    >>> bool(np.isclose(np.sum(phi(ly, Z) * dPhi), np.sum(Z * phi_T(ly, dPhi))))
    True
    >>> np.allclose(phi_T(ly, dPhi), ly.P_pad.T @ (ly.P_phi.T @ dPhi))
    True
    """
    if fold_pad or ly.P_pad is None:
        return sparse.select_T(ly.P_phipad, dPhi, out)
    return sparse.select_T(ly.P_pad, sparse.select_T(ly.P_phi, dPhi), out)


def S(ly: Any, W: np.ndarray, bias: np.ndarray, Phi: np.ndarray, *, out: np.ndarray | None = None
      ) -> np.ndarray:
    """``vec(S) = vec(W phi(pad(Z)) + b 1^T)`` for a batch, shape ``(d_out a_conv b_conv, l)``.

    ``vec(S)`` holds, for every filter position ``j``, the ``d_out x l``
    block ``W phi_j`` where ``phi_j`` (``hhd x l``) is column ``j`` of
    ``phi`` for every instance: one GEMM per position, a block of positions
    at a time with the bias added while the block is in cache, the
    positions split over the kernel threads (:func:`sparsecnn.kernels.parallel_blas`).
    ``W`` and ``b`` are used in ``Phi``'s float dtype.

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    bias : ndarray, shape ``(d^{m+1},)``
    Phi : ndarray, shape ``(h h d^m a_conv b_conv, l)``
        ``vec(phi(pad(Z^{m,i})))`` in column ``i`` (from :meth:`phi`).

    Returns
    -------
    ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
        ``vec(S^{m,i})`` in column ``i``.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, W, bias = rng.standard_normal((16, 2)), rng.standard_normal((2, 9)), np.array([1.0, -1.0])
    >>> Phi = phi(ly, Z)
    >>> S_ = S(ly, W, bias, Phi); S_.shape
    (32, 2)
    >>> phi_1 = Phi[:, 1].reshape(9, 16, order="F")      # mat: h h d x a_conv b_conv, instance 1
    >>> np.allclose(S_[:, 1].reshape(2, 16, order="F"), W @ phi_1 + bias[:, None])
    True
    """
    Phi = _floating(Phi)
    dtype = Phi.dtype
    l = Phi.shape[1]
    W = np.asarray(W, dtype=dtype)
    b = np.asarray(bias, dtype=dtype).reshape(-1, 1)
    Phi3 = Phi.reshape(ly.n_pos, ly.hhd, l)
    res = _result(out, (ly.n_S, l), dtype, "S")
    S3 = res.reshape(ly.n_pos, ly.d_out, l)
    step = _block(max(ly.d_out, ly.hhd) * l * dtype.itemsize, ly.n_pos)

    def run(j0: int, j1: int) -> None:
        for a in range(j0, j1, step):
            e = min(a + step, j1)
            np.matmul(W, Phi3[a:e], out=S3[a:e])
            S3[a:e] += b

    threads.parallel_blas(run, ly.n_pos, ly.d_out * ly.hhd * ly.n_pos * l)
    return res


@overload
def S_T(ly: Any, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: Literal[True] = ...,
        out: np.ndarray | None = ...) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
@overload
def S_T(ly: Any, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: bool,
        out: np.ndarray | None = ...) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...
def S_T(ly: Any, W: np.ndarray, Phi: np.ndarray, dS: np.ndarray, *, need_dPhi: bool = True,
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

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    Phi : ndarray, shape ``(h h d^m a_conv b_conv, l)``
        ``vec(phi(pad(Z^{m,i})))`` in column ``i``, as the forward pass kept it.
    dS : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
        ``vec(dxi/dS^{m,i})`` in column ``i``.

    Returns
    -------
    (dW, db, dPhi)
        Shapes ``(d^{m+1}, h h d^m)``, ``(d^{m+1},)`` and
        ``(h h d^m a_conv b_conv, l)`` (or ``None``).

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    ``S`` is affine in ``W``, ``b`` and ``phi``, so a change ``E`` of ``W``
    changes ``<dS, S>`` by exactly ``<dW, E>``:

    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Phi, W, bias = phi(ly, rng.standard_normal((16, 2))), rng.standard_normal((2, 9)), np.zeros(2)
    >>> dS, E = rng.standard_normal((32, 2)), rng.standard_normal((2, 9))
    >>> dW, db, dPhi = S_T(ly, W, Phi, dS)
    >>> change = np.sum(dS * (S(ly, W + E, bias, Phi) - S(ly, W, bias, Phi)))
    >>> bool(np.isclose(change, np.sum(dW * E)))
    True
    >>> np.allclose(db, dS.reshape(16, 2, 2).sum(axis=(0, 2)))        # dxi/dS 1, summed over i
    True
    >>> bool(np.isclose(np.sum(dS * S(ly, W, bias, Phi)), np.sum(dPhi * Phi)))   # W^T dS
    True
    """
    dS = _floating(dS)
    dtype = dS.dtype
    l = dS.shape[1]
    Phi = np.asarray(Phi, dtype=dtype)
    WT = np.asarray(W, dtype=dtype).T
    dS3 = dS.reshape(ly.n_pos, ly.d_out, l)
    Phi3 = Phi.reshape(ly.n_pos, ly.hhd, l)
    res = _result(out, (ly.n_pos * ly.hhd, l), dtype, "S_T") if need_dPhi else None
    res3 = res.reshape(ly.n_pos, ly.hhd, l) if res is not None else None
    step = _block(ly.hhd * l * dtype.itemsize, ly.n_pos)

    def run(j0: int, j1: int) -> np.ndarray:
        dW = np.zeros(ly.W_shape, dtype=dtype)
        tmp = np.empty((min(step, j1 - j0), *ly.W_shape), dtype=dtype)
        for a in range(j0, j1, step):                                 # cache-sized blocks
            e = min(a + step, j1)
            t = np.matmul(dS3[a:e], Phi3[a:e].transpose(0, 2, 1), out=tmp[:e - a])
            dW += t.sum(axis=0)                                       # dW += sum_j dS_j phi_j^T
            if res3 is not None:
                np.matmul(WT, dS3[a:e], out=res3[a:e])
        return dW

    parts = threads.parallel_blas(run, ly.n_pos, 2 * ly.d_out * ly.hhd * ly.n_pos * l)
    return _sum_dW(parts), _db(dS3), res


@overload
def conv_forward(ly: Any, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                 out_phi: np.ndarray | None = ..., out_S: np.ndarray | None = ...,
                 keep_phi: Literal[True] = ...) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def conv_forward(ly: Any, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                 out_phi: np.ndarray | None = ..., out_S: np.ndarray | None = ...,
                 keep_phi: bool) -> tuple[np.ndarray | None, np.ndarray]: ...
def conv_forward(ly: Any, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *,
                 out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None,
                 keep_phi: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """:meth:`phi` then :meth:`S` in one sweep: ``(vec(phi(pad(Z))), vec(S))``.

    The same products (``P_phi P_pad vec(Z)``, then ``W phi_j + b`` for every
    position ``j``), a block of positions at a time: the rows of
    :attr:`P_phipad` of a block are gathered and at once multiplied by
    ``W`` while they are in cache.  ``phi`` is written whole, for the
    backward pass, unless ``keep_phi=False``: then each block is gathered
    into a small per-thread array and ``None`` is returned for ``phi``.
    Blocks are split over the kernel threads.

    Parameters
    ----------
    Z : ndarray, shape ``(d a b, l)``
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    bias : ndarray, shape ``(d^{m+1},)``
    out_phi, out_S : ndarray, optional
        C-contiguous arrays of the two results' shapes and ``Z``'s dtype to write into.
    keep_phi : bool, default True
        Return ``phi(pad(Z))``; ``False`` returns ``None`` and never holds it whole.

    Returns
    -------
    (Phi, S)
        Shapes ``(h h d a_conv b_conv, l)`` (or ``None``) and ``(d^{m+1} a_conv b_conv, l)``.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, W, bias = rng.standard_normal((16, 3)), rng.standard_normal((2, 9)), np.array([0.5, -0.5])
    >>> Phi, S_ = conv_forward(ly, Z, W, bias)
    >>> np.array_equal(Phi, phi(ly, Z)), np.allclose(S_, S(ly, W, bias, phi(ly, Z)))
    (True, True)
    >>> none, S2 = conv_forward(ly, Z, W, bias, keep_phi=False)
    >>> none is None and np.array_equal(S2, S_)
    True
    """
    Z = _floating(Z)
    dtype = Z.dtype
    l = Z.shape[1]
    W = np.asarray(W, dtype=dtype)
    b = np.asarray(bias, dtype=dtype).reshape(-1, 1)
    plan = sparse.selection_plan(ly.P_phipad)
    if Z.shape[0] != ly.n_in:
        raise ShapeError(f"conv layer {ly.m}: Z must have d*a*b = {ly.n_in} rows, got {Z.shape[0]}")
    src = sparse.gather_source(plan, np.ascontiguousarray(Z))
    Phi = _result(out_phi, (ly.n_pos * ly.hhd, l), dtype, "conv_forward") if keep_phi else None
    S = _result(out_S, (ly.n_S, l), dtype, "conv_forward")
    S3 = S.reshape(ly.n_pos, ly.d_out, l)
    take, hhd = plan.take, ly.hhd
    step = _block(max(ly.d_out, ly.hhd) * l * dtype.itemsize, ly.n_pos)

    def run(j0: int, j1: int) -> None:
        block = None if Phi is not None else buffers.scratch("conv_forward.phi", (step * hhd, l), dtype)
        for a in range(j0, j1, step):
            e = min(a + step, j1)
            P = Phi[a * hhd:e * hhd] if Phi is not None else block[:(e - a) * hhd]  # type: ignore[index]
            np.take(src, take[a * hhd:e * hhd], axis=0, out=P, mode="clip")
            np.matmul(W, P.reshape(e - a, hhd, l), out=S3[a:e])
            S3[a:e] += b

    threads.parallel_blas(run, ly.n_pos, ly.d_out * ly.hhd * ly.n_pos * l)
    return Phi, S


@overload
def conv_backward(ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                  need_dZ: Literal[True] = ..., out: np.ndarray | None = ..., Z: np.ndarray | None = ...
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
@overload
def conv_backward(ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                  need_dZ: bool, out: np.ndarray | None = ..., Z: np.ndarray | None = ...
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]: ...
def conv_backward(ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *, need_dZ: bool = True,
                  out: np.ndarray | None = None, Z: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:meth:`S_T` then :meth:`phi_T` in one sweep: ``(dxi/dW, dxi/db, dxi/dvec(Z))``.

    The same products: ``dW = sum_j dS_j phi_j^T``, ``dxi/dphi_j = W^T dS_j``
    and ``P_pad^T P_phi^T vec(dxi/dphi)``, a block of positions at a
    time: the block of ``dxi/dphi`` is multiplied by the transposes of
    its rows of :attr:`P_phipad` while it is in cache, so ``dxi/dphi`` is
    never held whole.  ``need_dZ=False`` (the first layer) skips
    ``dxi/dphi`` and ``dxi/dZ`` (``None``).  Blocks are split over the
    kernel threads, each adding into its own ``dxi/dZ``; the parts are summed.
    With ``Phi=None`` and ``Z`` given, each block of ``phi(pad(Z))`` is
    rebuilt from ``Z`` (its rows of ``P_phi P_pad`` gathered) just before
    its GEMM, so ``phi`` is never held whole here either.

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    Phi : ndarray, shape ``(h h d^m a_conv b_conv, l)``, or None
        ``vec(phi(pad(Z^{m,i})))`` in column ``i``, as the forward pass kept it.
    dS : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
        ``vec(dxi/dS^{m,i})`` in column ``i``.
    need_dZ : bool, default True
        Compute ``dxi/dvec(Z)``.
    out : ndarray, optional
        C-contiguous ``(d a b, l)`` array of ``dS``'s dtype that receives ``dxi/dvec(Z)``.
    Z : ndarray, shape ``(d a b, l)``, optional
        ``vec(Z^{m,i})`` in column ``i``, where ``Phi`` is ``None``.

    Returns
    -------
    (dW, db, dZ)
        Shapes ``(d^{m+1}, h h d^m)``, ``(d^{m+1},)`` and ``(d a b, l)`` (or ``None``).

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(2, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Phi, W, dS = phi(ly, rng.standard_normal((16, 3))), rng.standard_normal((2, 9)), rng.standard_normal((32, 3))
    >>> dW, db, dZ = conv_backward(ly, W, Phi, dS)
    >>> dW2, db2, dPhi = S_T(ly, W, Phi, dS)
    >>> np.allclose(dW, dW2), np.allclose(db, db2), np.allclose(dZ, phi_T(ly, dPhi))
    (True, True, True)
    >>> conv_backward(ly, W, Phi, dS, need_dZ=False)[2] is None
    True
    >>> Z = rng.standard_normal((16, 3))                       # phi rebuilt block by block
    >>> np.allclose(conv_backward(ly, W, None, dS, Z=Z)[0], conv_backward(ly, W, phi(ly, Z), dS)[0])
    True
    """
    dS = _floating(dS)
    dtype = dS.dtype
    l = dS.shape[1]
    WT = np.asarray(W, dtype=dtype).T
    dS3 = dS.reshape(ly.n_pos, ly.d_out, l)
    P = ly.P_phipad
    hhd = ly.hhd
    if Phi is not None:
        Phi3 = np.asarray(Phi, dtype=dtype).reshape(ly.n_pos, hhd, l)

        def phi_block(a: int, e: int, into: np.ndarray | None) -> np.ndarray:
            return Phi3[a:e]
    elif Z is not None:
        if Z.shape != (ly.n_in, l):
            raise ShapeError(f"conv layer {ly.m}: Z must have shape (d*a*b, l) = ({ly.n_in}, {l}), "
                             f"got {Z.shape}")
        take = sparse.selection_plan(P).take
        src = sparse.gather_source(sparse.selection_plan(P), np.ascontiguousarray(Z, dtype=dtype))

        def phi_block(a: int, e: int, into: np.ndarray | None) -> np.ndarray:
            blk = into[:e - a]  # type: ignore[index]                # rows a*hhd:e*hhd of P_phipad vec(Z)
            np.take(src, take[a * hhd:e * hhd], axis=0, out=blk.reshape(-1, l), mode="clip")
            return blk
    else:
        raise ShapeError(f"conv layer {ly.m}: conv_backward needs phi(pad(Z)) or Z")
    res = _result(out, (ly.n_in, l), dtype, "conv_backward") if need_dZ else None
    step = _block(hhd * l * dtype.itemsize, ly.n_pos)
    part_name = buffers.partial_name("conv_backward.dZ")     # the worker threads' partial dxi/dZ

    def run(j0: int, j1: int) -> tuple[np.ndarray, np.ndarray | None]:
        dW = np.zeros(ly.W_shape, dtype=dtype)
        tmp = np.empty((min(step, j1 - j0), *ly.W_shape), dtype=dtype)
        target = None
        if res is not None:
            target = res if j0 == 0 else buffers.scratch(part_name, res.shape, dtype)
            target.fill(0)
            buf = buffers.scratch("conv_backward.dphi", (step, hhd, l), dtype)
        rebuilt = buffers.scratch("conv_backward.phi", (step, hhd, l), dtype) if Phi is None else None
        for a in range(j0, j1, step):                                 # cache-sized blocks
            e = min(a + step, j1)
            phi_blk = phi_block(a, e, rebuilt)
            t = np.matmul(dS3[a:e], phi_blk.transpose(0, 2, 1), out=tmp[:e - a])
            dW += t.sum(axis=0)                                       # dW += sum_j dS_j phi_j^T
            if target is not None:
                dphi = buf[:e - a]
                np.matmul(WT, dS3[a:e], out=dphi)                     # dxi/dphi_j = W^T dS_j
                sparse.csc_add(P, (a * hhd, e * hhd), dphi, target)  # += P_phipad^T rows
        return dW, target

    parts = threads.parallel_blas(run, ly.n_pos, 2 * ly.d_out * hhd * ly.n_pos * l)
    dW = _sum_dW([c for c, _ in parts])
    if res is not None:
        for _, t in parts[1:]:
            np.add(res, t, out=res)
    return dW, _db(dS3), res


def pool(ly: Any, A: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
         ) -> np.ndarray:
    """``vec(Z^{m+1}) = P_pool vec(sigma(S))`` for a batch (``A`` itself when ``r = 1``).

    Max pooling: the product of :meth:`P_pool` with ``A.ravel()``, a gather
    along the matrix's ``indices``.  ``A`` may be any batch of the shape of
    ``vec(S)`` (the R-operator pools ``R(S)`` with the same matrix).

    Parameters
    ----------
    A : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
        ``vec(sigma(S^{m,i}))`` in column ``i``.
    winners : integer ndarray or None
        From :meth:`winners` (max pooling); ``None`` for average pooling.

    Returns
    -------
    ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    The slides' 4 x 4 image, max pooled and average pooled:

    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> A = image.reshape(16, 1, order="F")                        # vec(image)
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
    >>> pool(ly, A, ly.winners(A)).ravel()                          # vec([[5, 9], [4, 6]])
    array([5., 4., 9., 6.])
    >>> pool(ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2, pool="avg")), A, None).ravel()
    array([3.5 , 2.5 , 5.5 , 3.25])
    """
    if not ly.pools:
        return A
    if winners is None:
        return sparse.spmm(ly.P_avg, A, out)
    A = _floating(A)
    l = A.shape[1]
    res = _result(out, (ly.n_out, l), A.dtype, "pool")
    sparse.select(ly.P_pool(winners), A.reshape(-1), res.reshape(-1))
    return res


def pool_T(ly: Any, dZnext: np.ndarray, winners: np.ndarray | None, *, out: np.ndarray | None = None
           ) -> np.ndarray:
    """Equation (7): ``P_pool^T vec(dxi/dZ^{m+1})``, the reverse mapping of pooling.

    Max pooling: ``P_pool^T`` holds at most one 1 per row (the windows are
    disjoint), so its product puts each entry of ``dxi/dZ^{m+1}`` at its
    winner in a zero result (:func:`sparsecnn.kernels.select_T`).

    Parameters
    ----------
    dZnext : ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        ``vec(dxi/dZ^{m+1,i})`` in column ``i``.
    winners : integer ndarray or None
        From :meth:`winners` (max pooling); ``None`` for average pooling.

    Returns
    -------
    ndarray, shape ``(d^{m+1} a_conv b_conv, l)``

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    The slides' example ("... Max Pooling X"): ``v`` goes to the winners 5, 7, 13, 14.

    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
    >>> w = ly.winners(image.reshape(16, 1, order="F"))
    >>> v = np.array([[1.], [2.], [3.], [4.]])
    >>> pool_T(ly, v, w).ravel()
    array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
    >>> np.array_equal(pool_T(ly, v, w), ly.P_pool(w).T @ v)
    True
    """
    if not ly.pools:
        return dZnext
    if winners is None:
        return sparse.spmm_T(ly.P_avg, dZnext, out)
    dZnext = _floating(dZnext)
    l = dZnext.shape[1]
    res = _result(out, (ly.n_S, l), dZnext.dtype, "pool_T")
    sparse.select_T(ly.P_pool(winners), dZnext.reshape(-1), res.reshape(-1))
    return res


def activate_pool(ly: Any, S: np.ndarray, *, order: str = "slides"
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

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    ReLU then 2 x 2 max pooling of a 4 x 4 ``S`` for three instances, in
    both orders and by hand:

    >>> ly = ConvShape(1, 4, 4, 1, ConvLayer(1, h=1, r=2))
    >>> S = np.random.default_rng(0).standard_normal((16, 3))
    >>> Z_slides, _ = activate_pool(ly, S)
    >>> Z_first, _ = activate_pool(ly, S, order="pool-first")
    >>> np.array_equal(Z_slides, Z_first)
    True
    >>> blocks = np.maximum(S, 0).reshape(2, 2, 2, 2, 3, order="F")   # (dr, window row, dq, window column, i)
    >>> np.array_equal(Z_slides, blocks.max(axis=(0, 2)).reshape(4, 3, order="F"))
    True
    """
    if order not in ACTIVATE_ORDERS:
        raise ConfigError(f"order must be one of {ACTIVATE_ORDERS}, got {order!r}")
    if order == "pool-first" and ly.max_pools and ly.sigma.monotone:
        winners = ly.winners(S)
        return ly.sigma.sigma(pool(ly, S, winners)), winners
    A = ly.sigma.sigma(S)
    winners = ly.winners(A)
    return pool(ly, A, winners), winners
