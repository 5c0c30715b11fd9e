"""``P_pad``: zero padding as a 0/1 selection matrix.

``vec(pad(Z)) = P_pad vec(Z)``; its transpose drops the padding again, which
is how the backward pass carries ``dxi/dvec(pad(Z))`` back to ``dxi/dvec(Z)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ._common import check_int, freeze, selection_matrix

__all__ = ["P_pad"]


@lru_cache(maxsize=256)
def _P_pad(a: int, b: int, d: int, p: int) -> sp.csr_array:
    a_pad, b_pad = a + 2 * p, b + 2 * p
    c, r, q = np.meshgrid(np.arange(d), np.arange(a), np.arange(b), indexing="ij")
    cols = c + d * (r + a * q)
    rows = c + d * ((r + p) + a_pad * (q + p))
    return freeze(selection_matrix(rows.ravel(), cols.ravel(), d * a_pad * b_pad, d * a * b))


def P_pad(a: int, b: int, d: int, p: int) -> sp.csr_array:
    """Zero padding of ``p`` pixels on each side of an ``a x b`` image with ``d`` channels.

    Parameters
    ----------
    a, b : int
        Height and width of the image ``Z`` (``Z`` is ``d x ab``).
    d : int
        Number of channels.
    p : int
        Zeros added on each side, ``p >= 0``.

    Returns
    -------
    scipy.sparse.csr_array, shape ``(d a_pad b_pad, d a b)``
        With ``a_pad = a + 2p``, ``b_pad = b + 2p``.  Row
        ``c + d*((r+p) + a_pad*(q+p))`` holds a single 1 in column
        ``c + d*(r + a*q)``: channel ``c`` of pixel ``(r, q)`` moves to pixel
        ``(r+p, q+p)`` of the padded image.  Rows of the border are empty.
        The result is cached and read-only.

    Notes
    -----
    Implements ``vec(pad(Z^{m,i})) = P_pad^m vec(Z^{m,i})``; the backward pass
    uses ``(P_pad^m)^T``.

    Examples
    --------
    >>> P = P_pad(1, 1, 1, 1)
    >>> P.shape
    (9, 1)
    >>> P.toarray().ravel()
    array([0., 0., 0., 0., 1., 0., 0., 0., 0.])
    """
    a = check_int("a", a, 1)
    b = check_int("b", b, 1)
    d = check_int("d", d, 1)
    p = check_int("p", p, 0)
    return _P_pad(a, b, d, p)
