r"""``vec`` and ``mat``: the column-major reshapes of the slides.

``vec`` stacks the columns of a matrix (MATLAB order): entry :math:`(c, j)` of a
:math:`d \times ab` matrix lands at position :math:`c + dj` (0-based),

.. math::

    \mathrm{vec}(Z)_{c + dj} = Z_{cj},

and ``mat`` is the inverse reshape.  A batch of :math:`l` instances is held as a
matrix with one column per instance, column :math:`i` being
:math:`\mathrm{vec}(Z^{m,i})`; :func:`vec_batch` and :func:`mat_batch` convert
between that and a stack ``(l, d, ab)``.

Examples
--------
>>> import numpy as np
>>> Z = np.array([[1., 2., 3.], [4., 5., 6.]])   # d = 2 channels, ab = 3 pixels
>>> vec(Z)
array([1., 4., 2., 5., 3., 6.])
>>> mat(vec(Z), 2, 3)
array([[1., 2., 3.],
       [4., 5., 6.]])
"""

from __future__ import annotations

import numpy as np

from .exceptions import ShapeError

__all__ = ["vec", "mat", "vec_batch", "mat_batch"]


def vec(Z: np.ndarray) -> np.ndarray:
    r"""Stack the columns of ``Z`` into one vector (column-major): :math:`\mathrm{vec}(Z)_{c + dj} = Z_{cj}`.

    Parameters
    ----------
    Z : ndarray, shape ``(d, ab)``

    Returns
    -------
    ndarray, shape ``(d*ab,)``
        Entry :math:`(c, j)` of :math:`Z` at position :math:`c + dj`.

    Examples
    --------
    >>> vec(np.arange(4.).reshape(2, 2))
    array([0., 2., 1., 3.])
    """
    Z = np.asarray(Z)
    if Z.ndim != 2:
        raise ShapeError(f"vec expects a matrix Z of 2 dimensions, got {Z.ndim}")
    return Z.reshape(-1, order="F")


def mat(v: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`vec`: reshape ``v`` column-major to ``rows x cols``.

    Parameters
    ----------
    v : ndarray, shape ``(rows*cols,)``
    rows, cols : int

    Returns
    -------
    ndarray, shape ``(rows, cols)``

    Examples
    --------
    >>> mat(np.arange(4.), 2, 2)
    array([[0., 2.],
           [1., 3.]])
    """
    v = np.asarray(v)
    if rows < 0 or cols < 0:
        raise ShapeError(f"mat expects rows, cols >= 0, got rows = {rows}, cols = {cols}")
    if v.ndim != 1 or v.size != rows * cols:
        raise ShapeError(
            f"mat expects a vector of rows*cols = {rows * cols} entries, got shape {v.shape}"
        )
    return v.reshape(rows, cols, order="F")


def vec_batch(Zs: np.ndarray) -> np.ndarray:
    """Turn a stack of ``l`` matrices ``Z^{i}`` into the batch layout.

    Parameters
    ----------
    Zs : ndarray, shape ``(l, d, ab)``

    Returns
    -------
    ndarray, shape ``(d*ab, l)``
        Column ``i`` is ``vec(Z^{i})`` (C-ordered, instances in the last axis).

    Examples
    --------
    >>> Zs = np.arange(8.).reshape(2, 2, 2)
    >>> vec_batch(Zs)[:, 1]
    array([4., 6., 5., 7.])
    """
    Zs = np.asarray(Zs)
    if Zs.ndim != 3:
        raise ShapeError(f"vec_batch expects a stack of shape (l, d, ab), got {Zs.shape}")
    l, d, ab = Zs.shape
    return np.ascontiguousarray(Zs.transpose(2, 1, 0).reshape(ab * d, l))


def mat_batch(V: np.ndarray, d: int, ab: int) -> np.ndarray:
    """Inverse of :func:`vec_batch`.

    Parameters
    ----------
    V : ndarray, shape ``(d*ab, l)``
    d, ab : int

    Returns
    -------
    ndarray, shape ``(l, d, ab)``
        Entry ``[i]`` is ``mat(V[:, i], d, ab)``.

    Examples
    --------
    >>> V = np.arange(8.).reshape(4, 2)
    >>> mat_batch(V, 2, 2)[0]
    array([[0., 4.],
           [2., 6.]])
    """
    V = np.asarray(V)
    if d < 0 or ab < 0:
        raise ShapeError(f"mat_batch expects d, ab >= 0, got d = {d}, ab = {ab}")
    if V.ndim != 2 or V.shape[0] != d * ab:
        raise ShapeError(f"mat_batch expects V with d*ab = {d * ab} rows, got shape {V.shape}")
    l = V.shape[1]
    return np.ascontiguousarray(V.reshape(ab, d, l).transpose(2, 1, 0))
