"""``P_phi``: the im2col operator ``phi`` as a 0/1 selection matrix.

``vec(phi(Z)) = P_phi vec(Z)``.  Each column of ``phi(Z)`` is one ``h x h x d``
sub-image; its rows run filter row fastest, then filter column, then channel
(row ``r + h*q + h*h*c``), and the columns run over output rows fastest
(column ``j = r_out + a_conv*q_out``).  The backward pass uses ``P_phi^T``,
which adds every entry of ``dxi/dphi`` back to the pixel it was copied from.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..exceptions import ArchitectureError
from ._common import check_int, freeze, selection_matrix

__all__ = ["P_phi", "conv_size"]


def conv_size(a: int, h: int, s: int) -> int:
    """``floor((a - h)/s) + 1``, the number of filter positions along a side of length ``a``.

    Examples
    --------
    >>> conv_size(32, 5, 1)
    28
    """
    return (a - h) // s + 1


@lru_cache(maxsize=256)
def _P_phi(a: int, b: int, d: int, h: int, s: int) -> sp.csr_array:
    a_conv, b_conv = conv_size(a, h, s), conv_size(b, h, s)
    hhd = h * h * d
    # k = r + h*q + h*h*c indexes the rows of phi, j = r_out + a_conv*q_out its columns
    r3, q3, c3 = np.meshgrid(np.arange(h), np.arange(h), np.arange(d), indexing="ij")
    k = (r3 + h * q3 + h * h * c3).ravel()
    r, q, c = r3.ravel(), q3.ravel(), c3.ravel()
    r_grid, q_grid = np.meshgrid(np.arange(a_conv), np.arange(b_conv), indexing="ij")
    j = (r_grid + a_conv * q_grid).ravel()
    r_out, q_out = r_grid.ravel(), q_grid.ravel()
    rows = k[None, :] + hhd * j[:, None]
    pix_r = r_out[:, None] * s + r[None, :]
    pix_q = q_out[:, None] * s + q[None, :]
    cols = c[None, :] + d * (pix_r + a * pix_q)
    return freeze(selection_matrix(rows.ravel(), cols.ravel(), hhd * a_conv * b_conv, d * a * b))


def P_phi(a: int, b: int, d: int, h: int, s: int = 1) -> sp.csr_array:
    """im2col for ``h x h`` filters with stride ``s`` on an ``a x b`` image with ``d`` channels.

    Parameters
    ----------
    a, b : int
        Height and width of the (already padded) image, ``Z`` is ``d x ab``.
    d : int
        Number of channels.
    h : int
        Filter width (square filters), ``1 <= h <= min(a, b)``.
    s : int, default 1
        Stride.

    Returns
    -------
    scipy.sparse.csr_array, shape ``(h h d a_conv b_conv, d a b)``
        With ``a_conv = floor((a - h)/s) + 1`` (likewise ``b_conv``).  Row
        ``(r + h*q + h*h*c) + h*h*d*(r_out + a_conv*q_out)`` holds a single 1 in
        column ``c + d*((r_out*s + r) + a*(q_out*s + q))``.  Cached, read-only.

    Raises
    ------
    ArchitectureError
        If the filter is larger than the image.

    Notes
    -----
    Implements ``vec(phi(pad(Z^{m,i}))) = P_phi^m vec(pad(Z^{m,i}))``, the
    operand of ``S^{m,i} = W^m phi(pad(Z^{m,i})) + b^m 1^T``.

    Examples
    --------
    >>> P = P_phi(3, 3, 1, 2)        # 2x2 filter on a 3x3 image: 4 positions
    >>> P.shape
    (16, 9)
    >>> P.toarray()[:4].nonzero()[1]   # first column of phi: pixels (0,0),(1,0),(0,1),(1,1)
    array([0, 1, 3, 4])
    """
    a = check_int("a", a, 1)
    b = check_int("b", b, 1)
    d = check_int("d", d, 1)
    h = check_int("h", h, 1)
    s = check_int("s", s, 1)
    if h > a or h > b:
        raise ArchitectureError(
            f"filter width h = {h} must fit the image a x b = {a} x {b} (padding included)"
        )
    return _P_phi(a, b, d, h, s)
