"""``P_pool``: max pooling as a 0/1 selection matrix built from the data.

``vec(Z^{m+1,i}) = P_pool^{m,i} vec(sigma(S^{m,i}))``.  The matrix depends on
the instance: row ``o`` has its single 1 in the column of the entry that won
window ``o``.  The winners are found by :func:`max_pool_winners` or supplied
from outside (for example by an implementation under test), and
:func:`P_pool` turns them into the matrix.  The backward pass uses
``P_pool^T``, the "reverse mapping" of equation (7).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp

from ..exceptions import ArchitectureError, InputTypeError, ShapeError
from ..kernels import attach_plan
from ._common import check_int

__all__ = ["P_pool", "max_pool_winners", "pool_size"]

LAYOUTS = ("blocks", "instances-last")


def pool_size(a: int, b: int, d: int, r: int) -> tuple[int, int, int]:
    """Check the pool window and return ``(a_out, b_out, d * a_out * b_out)``.

    ``a_out = floor(a / r)``: a partial window at the bottom or right is dropped.

    Examples
    --------
    >>> pool_size(5, 4, 3, 2)
    (2, 2, 12)
    """
    a = check_int("a", a, 1)
    b = check_int("b", b, 1)
    d = check_int("d", d, 1)
    r = check_int("r", r, 1)
    if r > a or r > b:
        raise ArchitectureError(
            f"pool window r = {r} must fit the image a x b = {a} x {b}"
        )
    a_out, b_out = a // r, b // r
    return a_out, b_out, d * a_out * b_out


def _window_origin(a: int, b: int, d: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel, first row and first column of every window, in output order."""
    a_out, b_out, _ = pool_size(a, b, d, r)
    q_o, r_o, c = np.meshgrid(np.arange(b_out), np.arange(a_out), np.arange(d), indexing="ij")
    return c.ravel(), (r_o * r).ravel(), (q_o * r).ravel()


def max_pool_winners(V: np.ndarray, a: int, b: int, d: int, r: int) -> np.ndarray:
    """Index of the largest entry of every ``r x r`` window, for a batch.

    Parameters
    ----------
    V : ndarray, shape ``(d a b, l)`` or ``(d a b,)``
        ``vec`` of the images to pool, one column per instance.
    a, b, d : int
        Height, width and channels of the image.
    r : int
        Pool window width and stride.

    Returns
    -------
    ndarray of int32, shape ``(d a_out b_out, l)`` (or ``(d a_out b_out,)``)
        Entry ``[o, i]`` is the position in ``vec`` of instance ``i`` of the
        winner of window ``o``, where ``o = c + d*(r_out + a_out*q_out)``.
        Ties go to the first entry of the window in column-major order
        (rows fastest), which is the order of ``vec``.

    Examples
    --------
    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> max_pool_winners(image.reshape(-1, order="F"), 4, 4, 1, 2)
    array([ 5,  7, 13, 14], dtype=int32)
    """
    V = np.asarray(V)
    a_out, b_out, n_out = pool_size(a, b, d, r)
    single = V.ndim == 1
    if single:
        V = V[:, None]
    if V.ndim != 2 or V.shape[0] != d * a * b:
        raise ShapeError(f"the pooled image must have d*a*b = {d * a * b} rows, got shape {V.shape}")
    return _winners(V, a, b, d, r, single)


def _winners(V: np.ndarray, a: int, b: int, d: int, r: int, single: bool = False) -> np.ndarray:
    """:func:`max_pool_winners` without the checks (``V`` of shape ``(d a b, l)``), as written:
    the ``r^2`` entries of every window side by side in the order of ``vec`` (``k = dr + r dq``),
    ``argmax`` over them (the first of equal maxima), and the position of entry ``k`` of window
    ``o`` in ``vec``.  The fast backend finds the same winners by pairwise comparisons
    (:func:`sparsecnn.kernels.pooling.winners`)."""
    a_out, b_out = a // r, b // r
    l = V.shape[1]
    # [q, r, c, i] -> [q_out, dq, r_out, dr, c, i], windows' partial rows and columns dropped
    T = V.reshape(b, a, d, l)[: b_out * r, : a_out * r].reshape(b_out, r, a_out, r, d, l)
    entries = T.transpose(0, 2, 4, 5, 1, 3).reshape(b_out, a_out, d, l, r * r)   # k = dr + r dq last
    k = np.argmax(entries, axis=-1)
    dr, dq = k % r, k // r
    idx_type = np.int64 if d * a * b >= 2**31 - 1 else np.int32
    pos = _window_base(a, b, d, r)[..., None] + d * (dr + a * dq)
    w = pos.reshape(b_out * a_out * d, l).astype(idx_type)
    return w[:, 0] if single else w


def _window_base(a: int, b: int, d: int, r: int) -> np.ndarray:
    """Position in ``vec`` of the first entry of every window, shape ``(b_out, a_out, d)`` (int64)."""
    a_out, b_out = a // r, b // r
    q_o = np.arange(b_out)[:, None, None]
    r_o = np.arange(a_out)[None, :, None]
    c = np.arange(d)[None, None, :]
    return c + d * (r_o * r + a * (q_o * r))


def _check_winners(winners: np.ndarray, a: int, b: int, d: int, r: int) -> np.ndarray:
    w = np.asarray(winners)
    if not np.issubdtype(w.dtype, np.integer):
        raise InputTypeError(f"pooling winners must be integers, got dtype {w.dtype}")
    _, _, n_out = pool_size(a, b, d, r)
    if w.ndim not in (1, 2) or w.shape[0] != n_out:
        raise ShapeError(
            f"pooling winners must have d*a_out*b_out = {n_out} rows, got shape {w.shape}"
        )
    w2 = w.reshape(n_out, -1).astype(np.int64)
    c, r0, q0 = _window_origin(a, b, d, r)
    chan = w2 % d
    pix = w2 // d
    rr, qq = pix % a, pix // a
    inside = (
        (w2 >= 0) & (w2 < d * a * b) & (chan == c[:, None])
        & (rr >= r0[:, None]) & (rr < r0[:, None] + r)
        & (qq >= q0[:, None]) & (qq < q0[:, None] + r)
    )
    if not inside.all():
        o, i = np.argwhere(~inside)[0]
        raise ShapeError(
            f"pooling winner [{o}, {i}] = {w2[o, i]} is not inside window {o} "
            f"(channel {c[o]}, rows {r0[o]}..{r0[o] + r - 1}, columns {q0[o]}..{q0[o] + r - 1})"
        )
    return w


def P_pool(a: int, b: int, d: int, r: int, *, data: np.ndarray | None = None,
           winners: np.ndarray | None = None, layout: str = "blocks") -> sp.csr_array:
    """Max pooling with ``r x r`` windows and stride ``r`` as a selection matrix.

    Give either the image(s) to pool (``data``, the winners are found by
    :func:`max_pool_winners`) or the winners themselves (``winners``, for
    instance an argmax computed by another implementation, so that the same
    matrix can be rebuilt exactly).

    Parameters
    ----------
    a, b, d : int
        Height, width and channels of the image that is pooled
        (``a^m_conv``, ``b^m_conv``, ``d^{m+1}`` in a network).
    r : int
        Window width and stride (no overlap); ``a_out = floor(a/r)``.
    data : ndarray, shape ``(d a b,)`` or ``(d a b, l)``, optional
        ``vec(sigma(S^{m,i}))``, one column per instance.
    winners : integer ndarray, shape ``(d a_out b_out,)`` or ``(d a_out b_out, l)``, optional
        Winner of each window as a position in ``vec`` of its instance.
    layout : {"blocks", "instances-last"}
        ``"blocks"`` (default): the block-diagonal matrix
        ``diag(P_pool^{m,1}, ..., P_pool^{m,l})`` acting on
        ``[vec(sigma(S^{m,1})); ...; vec(sigma(S^{m,l}))]``.
        ``"instances-last"``: the same matrix with rows and columns permuted
        so that it acts on ``V.ravel()`` for the batch matrix ``V`` of shape
        ``(d a b, l)`` (row ``o*l + i``, column ``w*l + i``).

    Returns
    -------
    scipy.sparse.csr_array, shape ``(l d a_out b_out, l d a b)``
        For a single instance (1-D input) the slides' ``P_pool^{m,i}`` of shape
        ``(d a_out b_out, d a b)``: row ``o`` has a 1 in column ``winners[o]``.
        Ties go to the first entry of the window in column-major order.

    Examples
    --------
    The slides' 4x4 example ("Notes on RELU Activation + Max Pooling VI"):

    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> P = P_pool(4, 4, 1, 2, data=image.reshape(-1, order="F"))
    >>> P.shape
    (4, 16)
    >>> P @ image.reshape(-1, order="F")
    array([5., 4., 9., 6.])
    """
    if (data is None) == (winners is None):
        raise InputTypeError("P_pool needs exactly one of data= or winners=")
    if layout not in LAYOUTS:
        raise InputTypeError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if winners is None:
        winners = max_pool_winners(np.asarray(data), a, b, d, r)
    else:
        winners = _check_winners(winners, a, b, d, r)
    return _P_pool_from_winners(winners, d * a * b, layout)


_CONSTANTS: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
_CONSTANTS_KEEP = 32
_constants_lock = threading.Lock()


def _constant(kind: str, n: int) -> np.ndarray:
    """A read-only ``ones(n)`` (``kind="ones"``) or ``arange(n)`` (``"arange"``, int64;
    ``"arange32"``, int32), cached.

    The 32 most recently used are kept, so a repeated call with the same
    sizes allocates nothing.
    """
    key = (kind, n)
    with _constants_lock:
        arr = _CONSTANTS.get(key)
        if arr is not None:
            _CONSTANTS.move_to_end(key)
            return arr
    arr = np.ones(n) if kind == "ones" else np.arange(n, dtype=np.int32 if kind == "arange32" else np.int64)
    arr.flags.writeable = False
    with _constants_lock:
        _CONSTANTS[key] = arr
        while len(_CONSTANTS) > _CONSTANTS_KEEP:
            _CONSTANTS.popitem(last=False)
    return arr


def _P_pool_from_winners(winners: np.ndarray, n_in: int, layout: str) -> sp.csr_array:
    """:func:`P_pool` from winners already known to be valid (no checks).

    Built directly from ``(data, indices, indptr)``: one 1 per row, the
    column of row ``o*l + i`` (instances-last) being ``winners[o, i]*l + i``.
    ``data`` and ``indptr`` are shared read-only constants.
    """
    w = np.asarray(winners)
    single = w.ndim == 1
    w = w.reshape(w.shape[0], -1)
    n_out, l = w.shape
    n = n_out * l
    # int32 indices where every index fits (half the memory to write, as scipy itself prefers)
    small = max(n_in * l, n + 1) < 2**31
    itype, arange = (np.int32, "arange32") if small else (np.int64, "arange")
    if layout == "blocks":
        indices = (w.T.astype(itype) + np.multiply(n_in, _constant(arange, l), dtype=itype)[:, None]).ravel()
    else:
        indices = np.multiply(w, l, dtype=itype)
        indices += _constant(arange, l)
        indices = indices.reshape(-1)
    shape = (n_out, n_in) if single else (n_out * l, n_in * l)
    P = sp.csr_array((_constant("ones", n), indices, _constant(arange, n + 1)), shape=shape, copy=False)
    P.has_sorted_indices = True
    # one 1 per row, in distinct columns (the windows are disjoint): the product is a gather
    return attach_plan(P, P.indices, distinct_columns=True)
