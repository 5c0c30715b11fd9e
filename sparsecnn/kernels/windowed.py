"""Convolution and max pooling fused, window by window: the fast backend's conv+pool layers.

For a layer followed by max pooling whose ``sigma'`` can be read from
``Z^{m+1}`` (``ConvShape.windowed``), the forward pass
``vec(Z^{m+1}) = P_pool vec(sigma(W phi(pad(Z)) + b 1^T))``, its backward
pass (equation (6), then ``dxi/dW``, ``dxi/db``, ``dxi/dZ``) and its
R-operator run a block of pooling windows at a time: neither ``phi(pad(Z))``
nor ``S`` is ever held whole.  The winners come and go as offsets inside their
window (:mod:`sparsecnn.engine.winners`).

Examples
--------
>>> from sparsecnn.layers import ConvLayer, ConvShape
>>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
>>> rng = np.random.default_rng(0)
>>> Z, W, bias = rng.standard_normal((72, 4)), rng.standard_normal((3, 18)), rng.standard_normal(3)
>>> Z_next, k = conv_pool_forward(ly, Z, W, bias)
>>> np.allclose(Z_next, ly.activate_pool(ly.conv_forward(Z, W, bias)[1])[0])
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import machine
from ..activations import ACTIVATE_ORDERS
from ..exceptions import ConfigError, InputTypeError, ShapeError
from . import buffers, compiled, sparse, threads
from .conv import _block, _floating, _result, _sum_dW
from .pooling import window_max

__all__ = ["conv_pool_forward", "conv_pool_backward", "conv_pool_R"]

_FUSED_BLOCK_BYTES = machine.chosen().fused_block_bytes
"""Target size of a block of windows in :func:`conv_pool_forward` and its backward: half of the L2
cache (:func:`sparsecnn.machine.choose`; 1 MiB for a 2 MiB L2)."""


def _not_windowed(ly: Any, what: str) -> ConfigError:
    return ConfigError(f"conv layer {ly.m}: {what} needs max pooling and an activation whose sigma' "
                       f"follows from sigma; got pool {ly.spec.pool!r} with r = {ly.spec.r}, "
                       f"activation {ly.sigma.name!r}")


def _check_windowed(ly: Any, l: int, images: dict[str, np.ndarray | None],
                    pooled: dict[str, np.ndarray], offsets: np.ndarray) -> None:
    """Checks of the window-by-window kernels: ``images`` ``(d a b, l)``, ``pooled`` and
    ``offsets`` ``(d^{m+1} a^{m+1} b^{m+1}, l)`` (``None`` entries skipped), ``offsets``
    integers in ``0..r^2-1`` (positions in ``vec(S)`` would give a wrong gradient, not an error)."""
    pooled = {**pooled, "the winners' offsets": offsets}
    for names, rows, formula in ((images, ly.n_in, "d*a*b"), (pooled, ly.n_out, "d*a_out*b_out")):
        for name, arr in names.items():
            if arr is not None and arr.shape != (rows, l):
                raise ShapeError(f"conv layer {ly.m}: {name} must have shape ({formula}, l) = "
                                 f"({rows}, {l}), got {arr.shape}")
    r2 = ly.spec.r ** 2
    if offsets.dtype.kind not in "ui":
        raise InputTypeError(f"conv layer {ly.m}: the winners' offsets must be integers, got {offsets.dtype}")
    if offsets.size and (int(offsets.min()) < 0 or int(offsets.max()) >= r2):
        raise ShapeError(f"conv layer {ly.m}: the winners' offsets must lie in 0..r^2-1 = 0..{r2 - 1} "
                         f"(offsets inside the window, as conv_pool_forward gives them), got "
                         f"{int(offsets.min())}..{int(offsets.max())}")


def _windows_step(ly: Any, l: int, itemsize: int) -> int:
    """Windows per block: the block's ``S`` (or ``dxi/dS``) within ``_FUSED_BLOCK_BYTES``."""
    per_window = ly.spec.r ** 2 * ly.d_out * l * itemsize
    return max(1, min(ly.a_out * ly.b_out, _FUSED_BLOCK_BYTES // per_window))


def conv_pool_forward(ly: Any, Z: np.ndarray, W: np.ndarray, bias: np.ndarray, *, order: str = "slides",
                      out: np.ndarray | None = None, out_offsets: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``vec(Z^{m+1}) = P_pool vec(sigma(W phi(pad(Z)) + b 1^T))`` one pooling window at a time.

    The products of :meth:`conv_forward` then :meth:`activate_pool`, for
    max pooling: the rows of :attr:`P_phipad_windows` of a block of windows
    are gathered, multiplied by ``W``, the bias added, and each window's
    maximum taken while the block is in cache, so neither ``phi(pad(Z))``
    nor ``S`` is ever held whole.  Positions in no window are not computed.
    The winners come as offsets ``k = dr + r dq`` inside their window (as
    the planner keeps them, see :func:`sparsecnn.planner.execute.winner_positions`);
    ties go to the first entry in the order of ``vec``, as in :meth:`winners`.
    ``order`` as in :meth:`activate_pool`.  Blocks are split over the kernel threads.

    Parameters
    ----------
    Z : ndarray, shape ``(d a b, l)``
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    bias : ndarray, shape ``(d^{m+1},)``
    order : {"slides", "pool-first"}
    out, out_offsets : ndarray, optional
        C-contiguous ``(d^{m+1} a^{m+1} b^{m+1}, l)`` arrays (``Z``'s dtype, and the
        smallest unsigned integer type that holds ``r^2 - 1``) to write into.

    Returns
    -------
    (Z_next, offsets)
        Both of shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> from sparsecnn.engine import winner_positions
    >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, W, bias = rng.standard_normal((72, 4)), rng.standard_normal((3, 18)), rng.standard_normal(3)
    >>> Z_next, k = conv_pool_forward(ly, Z, W, bias)
    >>> Z_ref, winners = ly.activate_pool(ly.conv_forward(Z, W, bias)[1])
    >>> np.allclose(Z_next, Z_ref), np.array_equal(winner_positions(ly, k), winners), k.dtype
    (True, True, dtype('uint8'))
    """
    if not ly.windowed:
        raise _not_windowed(ly, "conv_pool_forward")
    if order not in ACTIVATE_ORDERS:
        raise ConfigError(f"order must be one of {ACTIVATE_ORDERS}, got {order!r}")
    Z = _floating(Z)
    if Z.ndim != 2 or Z.shape[0] != ly.n_in:
        raise ShapeError(f"conv layer {ly.m}: Z must have d*a*b = {ly.n_in} rows, got shape {Z.shape}")
    dtype, l = Z.dtype, Z.shape[1]
    W = np.asarray(W, dtype=dtype)
    b = np.asarray(bias, dtype=dtype).reshape(-1, 1)
    r, d, hhd = ly.spec.r, ly.d_out, ly.hhd
    r2, n_win = r * r, ly.a_out * ly.b_out
    k_type = np.min_scalar_type(r2 - 1)
    Zn = _result(out, (ly.n_out, l), dtype, "conv_pool_forward")
    K = _result(out_offsets, (ly.n_out, l), k_type, "conv_pool_forward offsets")
    plan = sparse.selection_plan(ly.P_phipad_windows)
    src = sparse.gather_source(plan, np.ascontiguousarray(Z))
    take = plan.take
    Zn3, K3 = Zn.reshape(n_win, d, l), K.reshape(n_win, d, l)
    pool_first = order == "pool-first" and ly.sigma.monotone
    step = _windows_step(ly, l, dtype.itemsize)
    pstep = _block(max(d, hhd) * l * dtype.itemsize, step * r2)         # positions per GEMM
    codes = list(range(r2))                                             # offsets k = dr + r dq
    fused = compiled.loops() if pool_first else None                   # one pass for + b, maxima, offsets
    b1 = b.ravel()

    def run(w0: int, w1: int) -> None:
        phi = buffers.scratch("conv_pool_forward.phi", (pstep * hhd, l), dtype)
        S = buffers.scratch("conv_pool_forward.S", (step, r2, d, l), dtype)
        for a in range(w0, w1, step):
            e = min(a + step, w1)
            n = e - a
            Sb = S[:n]
            Sj = Sb.reshape(n * r2, d, l)
            for j0 in range(a * r2, e * r2, pstep):      # rows of P_phipad_windows, a few positions
                j1 = min(j0 + pstep, e * r2)
                P = phi[:(j1 - j0) * hhd]
                np.take(src, take[j0 * hhd:j1 * hhd], axis=0, out=P, mode="clip")
                np.matmul(W, P.reshape(j1 - j0, hhd, l), out=Sj[j0 - a * r2:j1 - a * r2])   # W phi_j
            m_ = Zn3[a:e]                                # P_pool: each window's maximum and its offset
            if fused is not None:
                fused.max_offsets(Sb, b1, m_, K3[a:e])                           # + b 1^T, then P_pool
            else:
                Sb += b                                                          # + b 1^T
                if not pool_first:
                    ly.sigma.sigma_into(Sb, Sb)                                   # sigma(S)
                tmp = (buffers.scratch("conv_pool_forward.wins", (step, d, l), bool),
                       buffers.scratch("conv_pool_forward.wins23", (step, d, l), bool),
                       buffers.scratch("conv_pool_forward.pair", (step, d, l), dtype),
                       buffers.scratch("conv_pool_forward.k23", (step, d, l), k_type))
                window_max([Sb[:, kk] for kk in range(r2)], codes, m_, K3[a:e],
                           (tmp[0][:n], tmp[1][:n], tmp[2][:n], tmp[3][:n]))
            if pool_first:
                ly.sigma.sigma_into(m_, m_)                                       # sigma of the maxima

    threads.parallel_blas(run, n_win, d * hhd * r2 * n_win * l)
    return Zn, K


def conv_pool_backward(ly: Any, W: np.ndarray, Z: np.ndarray, dZnext: np.ndarray, Znext: np.ndarray,
                       offsets: np.ndarray, *, need_dZ: bool = True, out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Equation (6) then the backward step of the convolution, one pooling window at a time.

    For a block of windows: ``dxi/dS`` of its positions is
    ``P_pool^T (dxi/dvec(Z^{m+1}) ⊙ sigma'(S) read from Z^{m+1})`` (each
    window's gradient at its winner, zeros elsewhere), then, as in
    :meth:`conv_backward`, ``dxi/dW += sum_j dS_j phi_j^T`` with ``phi_j``
    gathered from ``Z`` (rows of :attr:`P_phipad_windows`) and
    ``vec(dxi/dZ) += (rows of P_phipad_windows)^T vec(W^T dS_j)``, all while
    the block is in cache: ``phi(pad(Z))`` and ``dxi/dS`` are never held whole.

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    Z : ndarray, shape ``(d a b, l)``
        The layer's input ``vec(Z^{m,i})``.
    dZnext, Znext : ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        ``dxi/dvec(Z^{m+1})`` and ``vec(Z^{m+1})``.
    offsets : unsigned integer ndarray, same shape
        The winners as offsets inside their windows (from :meth:`conv_pool_forward`).
    need_dZ : bool, default True
    out : ndarray, optional
        C-contiguous ``(d a b, l)`` array that receives ``dxi/dvec(Z)``.

    Returns
    -------
    (dW, db, dZ)
        As :meth:`conv_backward`.

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape
    >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, W, bias = rng.standard_normal((72, 4)), rng.standard_normal((3, 18)), rng.standard_normal(3)
    >>> Z_next, k = conv_pool_forward(ly, Z, W, bias)
    >>> dZ_next = rng.standard_normal(Z_next.shape)
    >>> dW, db, dZ = conv_pool_backward(ly, W, Z, dZ_next, Z_next, k)
    >>> Phi, S = ly.conv_forward(Z, W, bias)
    >>> dS = ly.pool_T(ly.sigma.backprop_from_output(dZ_next, Z_next), ly.winners(ly.sigma.sigma(S)))
    >>> ref = ly.conv_backward(W, Phi, dS)
    >>> all(np.allclose(x, y) for x, y in zip((dW, db, dZ), ref))
    True
    """
    if not ly.windowed:
        raise _not_windowed(ly, "conv_pool_backward")
    dZnext = _floating(dZnext)
    dtype, l = dZnext.dtype, dZnext.shape[1]
    r, d, hhd = ly.spec.r, ly.d_out, ly.hhd
    r2, n_win = r * r, ly.a_out * ly.b_out
    _check_windowed(ly, l, {"Z": Z}, {"dxi/dZ^{m+1}": dZnext, "Z^{m+1}": Znext}, offsets)
    WT = np.asarray(W, dtype=dtype).T
    P = ly.P_phipad_windows
    plan = sparse.selection_plan(P)
    src = sparse.gather_source(plan, np.ascontiguousarray(Z, dtype=dtype))
    take = plan.take
    dZn3, Zn3, K3 = dZnext.reshape(n_win, d, l), Znext.reshape(n_win, d, l), offsets.reshape(n_win, d, l)
    res = _result(out, (ly.n_in, l), dtype, "conv_pool_backward") if need_dZ else None
    step = _windows_step(ly, l, dtype.itemsize)
    pstep = _block(max(d, hhd) * l * dtype.itemsize, step * r2)         # positions per GEMM
    part_name = buffers.partial_name("conv_pool_backward.dZ")
    fused = compiled.loops()                                            # P_pool^T in one pass

    def run(w0: int, w1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        dW = np.zeros(ly.W_shape, dtype=dtype)
        db = np.zeros(d, dtype=dtype)
        phi = buffers.scratch("conv_pool_backward.phi", (pstep, hhd, l), dtype)
        dS = buffers.scratch("conv_pool_backward.dS", (step, r2, d, l), dtype)
        tmp = buffers.scratch("conv_pool_backward.dW", (pstep, d, hhd), dtype)
        gb = buffers.scratch("conv_pool_backward.g", (step, d, l), dtype)
        target = None
        if res is not None:
            target = res if w0 == 0 else buffers.scratch(part_name, res.shape, dtype)
            target.fill(0)
            dphi = buffers.scratch("conv_pool_backward.dphi", (pstep, hhd, l), dtype)
        for a in range(w0, w1, step):
            e = min(a + step, w1)
            n = e - a
            g = ly.sigma.backprop_from_output(dZn3[a:e], Zn3[a:e], out=gb[:n])   # (6): dZ ⊙ sigma'
            db += g.sum(axis=(0, 2))
            dSb = dS[:n]
            if fused is not None:                                     # P_pool^T: g at the winner
                fused.unpool(g, K3[a:e], dSb)
            else:
                at = buffers.scratch("conv_pool_backward.at", (step, d, l), bool)
                for kk in range(r2):
                    np.equal(K3[a:e], kk, out=at[:n])
                    np.multiply(g, at[:n], out=dSb[:, kk])
            dSj = dSb.reshape(n * r2, d, l)
            for j0 in range(a * r2, e * r2, pstep):                   # a few positions at a time
                j1 = min(j0 + pstep, e * r2)
                dSp = dSj[j0 - a * r2:j1 - a * r2]
                Pb = phi[:j1 - j0]
                np.take(src, take[j0 * hhd:j1 * hhd], axis=0, out=Pb.reshape(-1, l), mode="clip")
                t = np.matmul(dSp, Pb.transpose(0, 2, 1), out=tmp[:j1 - j0])
                dW += t.sum(axis=0)                                   # dW += sum_j dS_j phi_j^T
                if target is not None:
                    dp = dphi[:j1 - j0]
                    np.matmul(WT, dSp, out=dp)                        # dxi/dphi_j = W^T dS_j
                    sparse.csc_add(P, (j0 * hhd, j1 * hhd), dp.reshape(-1, l), target)
        return dW, db, target

    parts = threads.parallel_blas(run, n_win, 2 * d * hhd * r2 * n_win * l)
    dW = _sum_dW([p[0] for p in parts])
    db = _sum_dW([p[1] for p in parts])
    if res is not None:
        for _, _, t in parts[1:]:
            np.add(res, t, out=res)
    return dW, db, res


def conv_pool_R(ly: Any, Z: np.ndarray, RZ: np.ndarray | None, W: np.ndarray, V: np.ndarray,
                v_b: np.ndarray, Znext: np.ndarray, offsets: np.ndarray, *, out: np.ndarray | None = None
                ) -> np.ndarray:
    """The R-operator of :meth:`conv_pool_forward`: ``R(Z^{m+1})`` one pooling window at a time.

    ``R(S) = V phi(pad(Z)) + W phi(pad(R(Z))) + v_b 1^T`` as one GEMM per
    position (``[V W]`` times the rows of :attr:`P_phipad_windows` gathered
    from ``Z`` and from ``R(Z)``), then ``R(Z^{m+1}) = sigma'(S) ⊙ P_pool
    vec(R(S))`` with ``P_pool`` the forward pass's winners and ``sigma'``
    read from ``Z^{m+1}`` at them (max pooling selects, so the mask
    product may follow it).  ``RZ=None`` means ``R(Z) = 0`` (the first layer).

    Parameters
    ----------
    Z, RZ : ndarray, shape ``(d a b, l)``
        ``vec(Z^{m,i})`` and ``R(vec(Z^{m,i}))`` (or None).
    W, V : ndarray, shape ``(d^{m+1}, h h d^m)``
        ``W^m`` and the direction's ``V^m``.
    v_b : ndarray, shape ``(d^{m+1},)``
    Znext, offsets : ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        From :meth:`conv_pool_forward`.
    out : ndarray, optional
        C-contiguous array of that shape and ``Z``'s dtype to write into.

    Returns
    -------
    ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``

    Examples
    --------
    >>> from sparsecnn.layers import ConvLayer, ConvShape

    A directional derivative, against central differences:

    >>> ly = ConvShape(1, 6, 6, 2, ConvLayer(3, h=3, p=1, r=2))
    >>> rng = np.random.default_rng(0)
    >>> Z, RZ = rng.standard_normal((72, 4)), rng.standard_normal((72, 4))
    >>> W, V, b, v_b = rng.standard_normal((3, 18)), rng.standard_normal((3, 18)), np.zeros(3), np.ones(3)
    >>> Z_next, k = conv_pool_forward(ly, Z, W, b)
    >>> eps = 1e-6
    >>> plus = conv_pool_forward(ly, Z + eps * RZ, W + eps * V, b + eps * v_b)[0]
    >>> minus = conv_pool_forward(ly, Z - eps * RZ, W - eps * V, b - eps * v_b)[0]
    >>> np.allclose(conv_pool_R(ly, Z, RZ, W, V, v_b, Z_next, k), (plus - minus) / (2 * eps), atol=1e-6)
    True
    """
    if not ly.windowed:
        raise _not_windowed(ly, "conv_pool_R")
    Z = _floating(Z)
    dtype, l = Z.dtype, Z.shape[1]
    r, d, hhd = ly.spec.r, ly.d_out, ly.hhd
    r2, n_win = r * r, ly.a_out * ly.b_out
    _check_windowed(ly, l, {"Z": Z, "R(Z)": RZ}, {"Z^{m+1}": Znext}, offsets)
    plan = sparse.selection_plan(ly.P_phipad_windows)
    m_in = plan.shape[1]
    take = plan.take.reshape(-1, hhd)
    if RZ is None:                                  # R(S) = V phi + v_b 1^T
        WV = np.asarray(V, dtype=dtype)
        src = sparse.gather_source(plan, np.ascontiguousarray(Z))
        idx = take
    else:                                           # [V W] [phi; R(phi)]: Z and R(Z), each with a zero row
        WV = np.hstack([np.asarray(V, dtype=dtype), np.asarray(W, dtype=dtype)])
        src = np.zeros((2 * (m_in + 1), l), dtype=dtype)
        src[:m_in] = Z
        src[m_in + 1:2 * m_in + 1] = RZ
        idx = np.hstack([take, take + (m_in + 1)])
    cols = WV.shape[1]                              # h h d^m, or 2 h h d^m with R(Z)
    rows = idx.ravel()
    vb = np.asarray(v_b, dtype=dtype).reshape(-1, 1)
    res = _result(out, (ly.n_out, l), dtype, "conv_pool_R")
    R3, Zn3, K3 = res.reshape(n_win, d, l), Znext.reshape(n_win, d, l), offsets.reshape(n_win, d, l)
    step = _windows_step(ly, l, dtype.itemsize)
    pstep = _block(max(d, cols) * l * dtype.itemsize, step * r2)
    fused = compiled.loops()                                            # + v_b and P_pool in one pass

    def run(w0: int, w1: int) -> None:
        phi = buffers.scratch("conv_pool_R.phi", (pstep * cols, l), dtype)
        RS = buffers.scratch("conv_pool_R.RS", (step, r2, d, l), dtype)
        for a in range(w0, w1, step):
            e = min(a + step, w1)
            n = e - a
            RSj = RS[:n].reshape(n * r2, d, l)
            for j0 in range(a * r2, e * r2, pstep):
                j1 = min(j0 + pstep, e * r2)
                P = phi[:(j1 - j0) * cols]
                np.take(src, rows[j0 * cols:j1 * cols], axis=0, out=P, mode="clip")
                np.matmul(WV, P.reshape(j1 - j0, cols, l), out=RSj[j0 - a * r2:j1 - a * r2])
            Rb = R3[a:e]
            if fused is not None:
                fused.select_winners(RS[:n], vb.ravel(), K3[a:e], Rb)
            else:
                RSj += vb
                at = buffers.scratch("conv_pool_R.at", (step, d, l), bool)
                part = buffers.scratch("conv_pool_R.part", (step, d, l), dtype)
                for kk in range(r2):             # P_pool R(S): sum_k R(S)_k [k = winner], exact for finite R(S)
                    np.equal(K3[a:e], kk, out=at[:n])
                    np.multiply(RS[:n, kk], at[:n], out=Rb if kk == 0 else part[:n])
                    if kk:
                        np.add(Rb, part[:n], out=Rb)
            ly.sigma.backprop_from_output(Rb, Zn3[a:e], out=Rb)         # ⊙ sigma'(S) at the winners

    threads.parallel_blas(run, n_win, d * cols * r2 * n_win * l)
    return res
