"""The one encoding of the max-pooling winners inside the engine, and its conversions.

The engine keeps each winner as its offset ``k = dr + r dq`` inside its ``r x r``
window (column-major, ``uint8`` when ``r^2 <= 256``): one small integer per
pooled output, the encoding :mod:`sparsecnn.planner` counts bytes for and the
window-by-window kernels produce.  ``P_pool^{m,i}`` needs positions in
``vec(sigma(S^{m,i}))`` (row ``o`` of ``P_pool`` has its 1 in column
``winners[o, i]``): :func:`winner_positions` gives them when the matrix is
built.  Winners given from outside (``winners=`` of :meth:`sparsecnn.Network.forward`,
PyTorch's indices through :func:`sparsecnn.interop.torch_pool_indices_to_winners`)
are positions, as :func:`sparsecnn.operators.max_pool_winners` returns them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..planner import rules

__all__ = ["winner_offsets", "winner_positions"]


def _window_starts(ly: Any) -> np.ndarray:
    """Position in ``vec(sigma(S^m))`` of the first entry of each pooling window, in output order."""
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    q_o, r_o, c = np.meshgrid(np.arange(ly.b_out), np.arange(ly.a_out), np.arange(d), indexing="ij")
    return (c + d * (r_o * r + a_conv * (q_o * r))).ravel().astype(np.int64)


def winner_offsets(ly: Any, winners: np.ndarray) -> np.ndarray:
    """Winners as offsets ``k = dr + r dq`` inside their ``r x r`` window (column-major), compact dtype.

    Parameters
    ----------
    ly : ConvShape
    winners : integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        Positions in ``vec(sigma(S^m))`` (as from ``ConvShape.winners``).

    Returns
    -------
    ndarray of ``rules.winners_dtype(r)``, same shape.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), FullLayer(2)]).layers[0]
    >>> w = np.array([[5], [7], [13], [14]])          # the slides' 4x4 example
    >>> k = winner_offsets(ly, w); k.ravel(), k.dtype
    (array([3, 3, 3, 2], dtype=uint8), dtype('uint8'))
    >>> winner_positions(ly, k).ravel()
    array([ 5,  7, 13, 14], dtype=int32)
    """
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    idx = np.int32 if ly.n_S < 2**31 - 1 else np.int64
    delta = np.asarray(winners, dtype=idx) - _window_starts(ly).astype(idx)[:, None]   # d (dr + a_conv dq)
    dq = delta // (d * a_conv)
    delta -= dq * (d * a_conv)
    delta //= d                                                                        # dr
    dq *= r
    dq += delta
    return dq.astype(rules.winners_dtype(r))


def winner_positions(ly: Any, offsets: np.ndarray) -> np.ndarray:
    """Inverse of :func:`winner_offsets`: positions in ``vec(sigma(S^m))`` (int32).

    Parameters
    ----------
    ly : ConvShape
    offsets : integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        Offsets ``k = dr + r dq`` of the winners inside their windows.

    Returns
    -------
    int32 ndarray, same shape: the winners as :meth:`ConvShape.winners` gives them.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), FullLayer(2)]).layers[0]
    >>> k = np.array([[3], [3], [3], [2]], dtype=np.uint8)      # the slides' 4x4 example
    >>> winner_positions(ly, k).ravel().tolist()
    [5, 7, 13, 14]
    >>> w = ly.winners(np.random.default_rng(0).standard_normal((16, 5)))
    >>> np.array_equal(winner_positions(ly, winner_offsets(ly, w)), w)
    True
    """
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    k = np.arange(r * r)
    lut = d * (k % r) + d * a_conv * (k // r)
    pos = _window_starts(ly)[:, None] + lut[np.asarray(offsets, dtype=np.intp)]
    return pos.astype(np.int32)
