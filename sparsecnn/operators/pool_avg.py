"""``P_pool`` for average pooling: a constant matrix with entries ``1/r^2``.

Unlike max pooling, the matrix does not depend on the data: row ``o`` averages
the ``r x r`` entries of window ``o``.  The backward pass uses ``P_pool^T``,
which spreads ``dxi/dZ^{m+1}`` evenly over each window.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ._common import freeze, selection_matrix
from .pool import pool_size

__all__ = ["P_pool_avg"]


@lru_cache(maxsize=256)
def _P_pool_avg(a: int, b: int, d: int, r: int) -> sp.csr_array:
    a_out, b_out, n_out = pool_size(a, b, d, r)
    q_o, r_o, c3 = np.meshgrid(np.arange(b_out), np.arange(a_out), np.arange(d), indexing="ij")
    o = (c3 + d * (r_o + a_out * q_o)).ravel()
    c, r0, q0 = c3.ravel(), (r_o * r).ravel(), (q_o * r).ravel()
    dq, dr = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
    rows = np.repeat(o, r * r)
    cols = (c[:, None] + d * ((r0[:, None] + dr.ravel()) + a * (q0[:, None] + dq.ravel()))).ravel()
    data = np.full(rows.size, 1.0 / (r * r))
    return freeze(selection_matrix(rows, cols, n_out, d * a * b, data))


def P_pool_avg(a: int, b: int, d: int, r: int) -> sp.csr_array:
    """Average pooling with ``r x r`` windows and stride ``r``.

    Parameters
    ----------
    a, b, d : int
        Height, width and channels of the pooled image (``a^m_conv, b^m_conv, d^{m+1}``).
    r : int
        Window width and stride; ``a_out = floor(a/r)``.

    Returns
    -------
    scipy.sparse.csr_array, shape ``(d a_out b_out, d a b)``
        Row ``o = c + d*(r_out + a_out*q_out)`` holds ``1/r^2`` in the columns
        ``c + d*((r_out*r + i) + a*(q_out*r + j))``, ``0 <= i, j < r``.  Cached, read-only.

    Notes
    -----
    Implements ``vec(Z^{m+1,i}) = P_pool^m vec(sigma(S^{m,i}))`` with the same
    matrix for every instance.

    Examples
    --------
    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> P_pool_avg(4, 4, 1, 2) @ image.reshape(-1, order="F")
    array([3.5 , 2.5 , 5.5 , 3.25])
    """
    pool_size(a, b, d, r)
    return _P_pool_avg(int(a), int(b), int(d), int(r))
