"""Max pooling's winners, fast: pairwise comparisons on strided views, a cache-sized block at a time.

:func:`sparsecnn.operators.max_pool_winners` finds the winners as the slides
define them (an ``argmax`` over each window's ``r^2`` entries, the first of
equal maxima in the order of ``vec``); :func:`max_pool_winners` here finds the
same winners without stacking the entries, a block of windows at a time on the
kernel threads, and :func:`window_max` is the comparison both it and the
window-by-window conv+pool kernels (:mod:`sparsecnn.kernels.windowed`) use.

Examples
--------
>>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])   # the slides' example
>>> max_pool_winners(image.reshape(16, 1, order="F"), 4, 4, 1, 2).ravel()
array([ 5,  7, 13, 14], dtype=int32)
"""

from __future__ import annotations

import numpy as np

from ..operators.pool import _window_base
from .threads import parallel_ranges

__all__ = ["window_max", "max_pool_winners"]

_BLOCK = 1 << 15
"""Windows per block in :func:`_winners`: the temporaries of a block stay in cache."""


def window_max(views: list[np.ndarray], codes: list[int], best: np.ndarray, which: np.ndarray,
               tmp: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], *, final_max: bool = True) -> None:
    """The maximum of each window and which entry holds it, from one view per entry.

    ``views[k]`` holds entry ``k`` (in the order of ``vec``) of every window;
    ``which`` receives ``codes[k]`` of the winning entry (a later entry wins only
    if strictly larger, so ties go to the first), ``best`` the maximum (with
    ``final_max=False`` and ``r = 2``, the larger of the first pair only, when the
    caller does not need the values).  For ``r = 2`` the maxima go by pairs
    (``np.maximum`` and comparisons, no masked float copy); ``tmp`` holds two
    ``bool`` arrays, one of ``best``'s dtype and one of ``which``'s, all of its shape.

    Examples
    --------
    >>> v = [np.array([1., 5.]), np.array([3., 5.]), np.array([3., 2.]), np.array([0., 9.])]
    >>> best, which = np.empty(2), np.empty(2, dtype=np.uint8)
    >>> tmp = (np.empty(2, bool), np.empty(2, bool), np.empty(2), np.empty(2, np.uint8))
    >>> window_max(v, [0, 1, 2, 3], best, which, tmp); best, which     # ties: the first
    (array([3., 9.]), array([1, 3], dtype=uint8))
    """
    g, g2, hi, which2 = tmp
    codes = [which.dtype.type(c) for c in codes]           # products stay in which's integer type
    if len(views) == 4:
        v0, v1, v2, v3 = views
        np.greater(v1, v0, out=g)                          # first max of (v0, v1)
        np.maximum(v0, v1, out=best)
        np.greater(v3, v2, out=g2)                         # first max of (v2, v3)
        np.maximum(v2, v3, out=hi)
        np.multiply(g, codes[1] - codes[0], out=which)
        which += codes[0]
        np.multiply(g2, codes[3] - codes[2], out=which2)
        which2 += codes[2]
        np.greater(hi, best, out=g)                        # (v2, v3) wins only if strictly larger
        np.copyto(which, which2, where=g)
        if final_max:
            np.maximum(best, hi, out=best)
        return
    np.copyto(best, views[0])
    which.fill(codes[0])
    for kk in range(1, len(views)):
        np.greater(views[kk], best, out=g)
        np.copyto(best, views[kk], where=g)
        np.copyto(which, codes[kk], where=g)


def max_pool_winners(V: np.ndarray, a: int, b: int, d: int, r: int, single: bool = False) -> np.ndarray:
    """:func:`sparsecnn.operators.max_pool_winners` (the same winners), fast and without the checks.

    ``V`` has shape ``(d a b, l)``.

    Pairwise comparisons on strided views of ``V`` (no stacking, no copy of
    ``V``), a block of window columns at a time so that the temporaries stay
    in cache.  A later entry of a window wins only if strictly larger, so
    ties go to the first entry in the order of ``vec``.  The blocks are split
    over the kernel threads.

    Examples
    --------
    >>> from sparsecnn.operators import max_pool_winners as literal
    >>> V = np.random.default_rng(0).standard_normal((2 * 6 * 4, 3))
    >>> np.array_equal(max_pool_winners(V, 6, 4, 2, 2), literal(V, 6, 4, 2, 2))
    True
    """
    a_out, b_out = a // r, b // r
    l = V.shape[1]
    n_cols = a_out * d * l                         # windows per window column q_out
    big = d * a * b >= 2**31 - 1
    idx_type = np.int64 if big else np.int32
    # [q, r, (c, i)] -> [q_out, dq, r_out, dr, (c, i)]
    T = V.reshape(b, a, d * l)[: b_out * r, : a_out * r].reshape(b_out, r, a_out, r, d * l)
    offsets = [d * (dr + a * dq) for dq in range(r) for dr in range(r)]      # k = dr + r*dq
    base = _window_base(a, b, d, r).reshape(b_out, a_out, d, 1).astype(idx_type)
    W = np.empty((b_out, a_out, d, l), dtype=idx_type)
    # blocks of whole window columns, or of window rows within one column when a column is large
    per_row = d * l
    rows_per_blk = max(1, min(a_out, _BLOCK // max(per_row, 1)))
    cols_per_blk = max(1, min(b_out, _BLOCK // max(n_cols, 1))) if rows_per_blk == a_out else 1
    shape = (cols_per_blk, rows_per_blk, per_row)
    W4 = W.reshape(b_out, a_out, d * l)
    blocks = [(q0, min(b_out, q0 + cols_per_blk), r0, min(a_out, r0 + rows_per_blk))
              for q0 in range(0, b_out, cols_per_blk) for r0 in range(0, a_out, rows_per_blk)]

    def run(k0: int, k1: int) -> None:                # blocks k0:k1, temporaries of this thread
        best = np.empty(shape, dtype=V.dtype)
        u = np.empty(shape, dtype=idx_type)
        tmp = (np.empty(shape, dtype=bool), np.empty(shape, dtype=bool), np.empty(shape, dtype=V.dtype),
               np.empty(shape, dtype=idx_type))
        for q0, q1, r0, r1 in blocks[k0:k1]:
            nq, nr = q1 - q0, r1 - r0
            blk = T[q0:q1, :, r0:r1]
            views = [blk[:, dq, :, dr] for dq in range(r) for dr in range(r)]
            sl = (slice(0, nq), slice(0, nr))
            uu = u[sl]
            window_max(views, offsets, best[sl], uu, (tmp[0][sl], tmp[1][sl], tmp[2][sl], tmp[3][sl]),
                       final_max=False)
            np.add(uu.reshape(nq, nr, d, l), base[q0:q1, r0:r1],
                   out=W4[q0:q1, r0:r1].reshape(nq, nr, d, l))

    parallel_ranges(run, len(blocks), V.size)         # blocks split over the kernel threads
    w = W.reshape(b_out * a_out * d, l)
    return w[:, 0] if single else w
