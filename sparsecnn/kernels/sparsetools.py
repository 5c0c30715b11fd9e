"""The one door to scipy's private ``scipy.sparse._sparsetools``, with a public fallback.

:func:`csr_matvecs` and :func:`csc_matvecs` add a sparse matrix (given by its
own ``indptr``, ``indices``, ``data`` arrays) times a dense block to an output
block, in place, without building a new matrix object: what the fast kernels
(:mod:`sparsecnn.kernels.sparse`) need to split one product over threads by
rows, and to add into a caller's buffer.  scipy's compiled routines of the same
names do exactly that, but they are private API.

So at import this module checks the private routines against the public
product ``P @ X`` on a small case (both routines, float64 and float32, a row
range not starting at 0).  If they are missing, or disagree, or the environment
variable ``SPARSECNN_PUBLIC_SPARSE`` is set to ``1``, every call goes through
the public ``scipy.sparse`` product instead (the same numbers, a little slower:
a matrix object is built around the arrays at each call).
:func:`use_public_products` switches at run time; :data:`USING_PRIVATE` tells
which is in use.

Examples
--------
>>> import numpy as np
>>> indptr, indices, data = np.array([0, 1, 3]), np.array([1, 0, 1]), np.array([2., 3., 4.])
>>> X, Y = np.array([[1., 10.], [100., 1000.]]), np.zeros((2, 2))
>>> csr_matvecs(2, 2, 2, indptr, indices, data, X.ravel(), Y.ravel()); Y      # [[0 2], [3 4]] @ X
array([[ 200., 2000.],
       [ 403., 4030.]])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["csr_matvecs", "csc_matvecs", "use_public_products", "USING_PRIVATE", "self_check"]


def _public_csr(n_row: int, n_col: int, n_vecs: int, Ap: np.ndarray, Aj: np.ndarray, Ax: np.ndarray,
                Xx: np.ndarray, Yx: np.ndarray) -> None:
    """``Y += A X`` with ``A`` the CSR matrix ``(Ax, Aj, Ap)`` of shape ``(n_row, n_col)``; public scipy."""
    a, b = int(Ap[0]), int(Ap[-1])
    A = sp.csr_array((Ax[a:b], Aj[a:b], Ap - a), shape=(n_row, n_col))
    Y = Yx.reshape(n_row, n_vecs)
    Y += A @ Xx.reshape(n_col, n_vecs)


def _public_csc(n_row: int, n_col: int, n_vecs: int, Ap: np.ndarray, Ai: np.ndarray, Ax: np.ndarray,
                Xx: np.ndarray, Yx: np.ndarray) -> None:
    """``Y += A X`` with ``A`` the CSC matrix ``(Ax, Ai, Ap)`` of shape ``(n_row, n_col)``; public scipy."""
    a, b = int(Ap[0]), int(Ap[-1])
    A = sp.csc_array((Ax[a:b], Ai[a:b], Ap - a), shape=(n_row, n_col))
    Y = Yx.reshape(n_row, n_vecs)
    Y += A @ Xx.reshape(n_col, n_vecs)


def _private() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """scipy's private routines, or ``None`` where this scipy has none."""
    try:
        from scipy.sparse import _sparsetools  # noqa: PLC0415 - private API, probed once here
    except ImportError:  # pragma: no cover - depends on the scipy version
        return None
    csr, csc = getattr(_sparsetools, "csr_matvecs", None), getattr(_sparsetools, "csc_matvecs", None)
    if csr is None or csc is None:  # pragma: no cover - depends on the scipy version
        return None
    return csr, csc


def self_check(csr: Callable[..., None], csc: Callable[..., None]) -> bool:
    """Whether ``csr`` and ``csc`` compute ``Y += P X`` and ``Y += P^T X`` as ``P @ X`` does.

    Checked on a small random matrix, in float64 and float32, on all rows and
    on a row range that does not start at 0 (as the threaded kernels call them).

    Examples
    --------
    >>> self_check(_public_csr, _public_csc)
    True
    >>> self_check(lambda *args: None, _public_csc)             # adds nothing: caught
    False
    """
    rng = np.random.default_rng(12345)
    P = sp.random_array((7, 5), density=0.5, rng=rng, format="csr")
    P.sort_indices()
    try:
        for dtype in (np.float64, np.float32):
            data = P.data.astype(dtype)
            X = rng.standard_normal((5, 3)).astype(dtype)
            XT = rng.standard_normal((7, 3)).astype(dtype)
            Y = np.ones((7, 3), dtype=dtype)
            csr(7, 5, 3, P.indptr, P.indices, data, X.ravel(), Y.ravel())
            YT = np.ones((5, 3), dtype=dtype)
            csc(5, 7, 3, P.indptr, P.indices, data, XT.ravel(), YT.ravel())
            Yr = np.ones((4, 3), dtype=dtype)                            # rows 2..5 only
            csr(4, 5, 3, P.indptr[2:7], P.indices, data, X.ravel(), Yr.ravel())
            tol = 1e-12 if dtype == np.float64 else 1e-5
            Pd = P.toarray().astype(dtype)
            if not (np.allclose(Y, 1 + Pd @ X, rtol=tol, atol=tol)
                    and np.allclose(YT, 1 + Pd.T @ XT, rtol=tol, atol=tol)
                    and np.allclose(Yr, 1 + Pd[2:6] @ X, rtol=tol, atol=tol)):
                return False
    except Exception:  # noqa: BLE001 - any failure of a private routine means: do not use it
        return False
    return True


_found = _private()
_PRIVATE_OK = _found is not None and self_check(*_found)
USING_PRIVATE: bool = _PRIVATE_OK and os.environ.get("SPARSECNN_PUBLIC_SPARSE", "") != "1"
"""Whether the kernels call scipy's private routines (checked at import) or the public product."""

_csr: Callable[..., None] = _found[0] if USING_PRIVATE and _found else _public_csr
_csc: Callable[..., None] = _found[1] if USING_PRIVATE and _found else _public_csc


def use_public_products(public: bool = True) -> bool:
    """Route every product through the public ``scipy.sparse`` product (``public=True``) or back to
    scipy's private routines where they passed the import check; returns the previous setting.

    Examples
    --------
    >>> import sparsecnn.kernels.sparsetools as shim
    >>> old = use_public_products(True)
    >>> shim.USING_PRIVATE
    False
    >>> _ = use_public_products(old)
    """
    global _csr, _csc, USING_PRIVATE
    previous = not USING_PRIVATE
    USING_PRIVATE = (not public) and _PRIVATE_OK
    _csr, _csc = (_found if USING_PRIVATE and _found else (_public_csr, _public_csc))
    return previous


def csr_matvecs(n_row: int, n_col: int, n_vecs: int, Ap: np.ndarray, Aj: np.ndarray, Ax: np.ndarray,
                Xx: Any, Yx: Any) -> None:
    """``Y += A X``, ``A`` in CSR (``Ap`` may be a slice of a larger ``indptr``), ``X``, ``Y`` flat row-major.

    Examples
    --------
    Rows 1..2 of ``[[0, 2], [3, 4]]`` only: ``Ap`` is a slice of ``indptr``.

    >>> indptr, indices, data = np.array([0, 1, 3]), np.array([1, 0, 1]), np.array([2., 3., 4.])
    >>> Y = np.zeros(1)
    >>> csr_matvecs(1, 2, 1, indptr[1:], indices, data, np.array([1., 1.]), Y); Y
    array([7.])
    """
    _csr(n_row, n_col, n_vecs, Ap, Aj, Ax, Xx, Yx)


def csc_matvecs(n_row: int, n_col: int, n_vecs: int, Ap: np.ndarray, Ai: np.ndarray, Ax: np.ndarray,
                Xx: Any, Yx: Any) -> None:
    """``Y += A X``, ``A`` in CSC of shape ``(n_row, n_col)`` (so a CSR ``P``'s arrays give ``P^T``).

    Examples
    --------
    The arrays of the CSR ``P = [[0, 2], [3, 4]]`` read as CSC are ``P^T``:

    >>> indptr, indices, data = np.array([0, 1, 3]), np.array([1, 0, 1]), np.array([2., 3., 4.])
    >>> Y = np.zeros(2)
    >>> csc_matvecs(2, 2, 1, indptr, indices, data, np.array([1., 1.]), Y); Y      # P^T [1, 1]
    array([3., 6.])
    """
    _csc(n_row, n_col, n_vecs, Ap, Ai, Ax, Xx, Yx)
