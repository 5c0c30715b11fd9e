"""The slides' sparse products, fed to the machine.

Nothing here changes *what* is computed.  Every function takes one of the
slides' literal matrices (``P_phi``, ``P_pad``, their product, ``P_pool``)
as a ``scipy.sparse`` CSR matrix and returns exactly ``P @ X`` or
``P^T @ X`` for a dense batch ``X`` with one column per instance
(C order, instances in the last axis).  What changes is how the product is
carried out:

- **Selection products.**  ``P_phi``, ``P_pad``, ``P_phi P_pad`` and
  ``P_pool`` hold at most one stored 1 per row.  For such a matrix the CSR
  product ``y_k = sum_{jj in row k} data[jj] x[indices[jj]]`` reduces to
  ``y_k = x[indices[indptr[k]]]`` (or ``0`` for an empty row): a row gather
  driven by the matrix's own ``indices`` array (:func:`select`).  This is the
  sparse product specialised to its matrix, not another operator: the index
  array *is* the matrix.  ``P^T x`` is the CSC product with the same arrays
  (:func:`select_T`), a scatter-add that reads ``x`` in order.
- **Any sparse matrix** (:func:`spmm`, :func:`spmm_T`, :func:`csc_add`): the
  CSR and CSC products with the matrix's own arrays, through
  :mod:`sparsecnn.kernels.sparsetools`, rows split over the kernel threads.
- **dtype.**  The result has the dtype of ``X`` (float32 stays float32);
  the matrix's stored values are cast once per dtype and cached.

Examples
--------
>>> from sparsecnn.operators import P_pad, P_phi
>>> P = (P_phi(4, 4, 1, 3) @ P_pad(2, 2, 1, 1)).tocsr()
>>> X = np.arange(8.0).reshape(4, 2)
>>> np.array_equal(select(P, X), P @ X)
True
>>> dPhi = np.ones((P.shape[0], 2))
>>> np.array_equal(select_T(P, dPhi), P.T @ dPhi)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..exceptions import InputTypeError, ShapeError
from . import sparsetools
from .buffers import partial_name, scratch
from .threads import parallel_ranges

__all__ = ["SelectionPlan", "selection_plan", "attach_plan", "select", "select_T", "spmm", "spmm_T",
           "gather_source", "csc_add"]


@dataclass(frozen=True)
class SelectionPlan:
    """The index arrays of a 0/1 selection matrix ``P`` (at most one 1 per row).

    Attributes
    ----------
    shape : (int, int)
        Shape of ``P``.
    take : ndarray of intp, shape ``(P.shape[0],)``
        Column of the 1 in each row, ``P.shape[1]`` for an empty row (the
        product reads a zero there).
    has_empty : bool
        Whether some row of ``P`` is empty.
    indptr, indices : ndarray
        ``P``'s own arrays, by reference: the plan is valid for ``P`` as long
        as ``P`` still holds these very arrays.
    distinct_columns : bool, default False
        Known to hold each column at most once (``P^T`` is a selection matrix
        too), as for max pooling with disjoint windows: ``P^T x`` is then a
        plain scatter.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(2), np.array([2, 0]), np.array([0, 1, 1, 2])), shape=(3, 3))
    >>> plan = selection_plan(P)
    >>> plan.shape, plan.take.tolist(), plan.has_empty       # row 1 is empty: it reads entry 3, a zero
    ((3, 3), [2, 3, 0], True)
    >>> plan.indices is P.indices
    True
    """

    shape: tuple[int, int]
    take: np.ndarray
    has_empty: bool
    indptr: np.ndarray
    indices: np.ndarray
    distinct_columns: bool = False
    """Known to hold each column at most once (``P^T`` is a selection matrix too),
    as for max pooling with disjoint windows: ``P^T x`` is then a plain scatter."""


def attach_plan(P: Any, take: np.ndarray, *, distinct_columns: bool = False) -> Any:
    """Record on ``P`` the index arrays of a selection matrix built by this package
    with exactly one 1 per row in column ``take[k]`` (no checks).  Returns ``P``.

    :func:`selection_plan` then returns the recorded plan without scanning ``P``.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(3), np.array([1, 0, 1]), np.arange(4)), shape=(3, 2))
    >>> P = attach_plan(P, np.array([1, 0, 1]))
    >>> selection_plan(P).take.tolist()
    [1, 0, 1]
    >>> select(P, np.array([10., 20.]))
    array([20., 10., 20.])
    """
    P._sparsecnn_plan = SelectionPlan(P.shape, take, False, P.indptr, P.indices, distinct_columns)
    return P


def _as_csr(P: Any) -> Any:
    if not (sp.issparse(P) and P.format == "csr"):
        raise InputTypeError(f"expected a scipy.sparse CSR matrix, got {type(P).__name__}")
    return P


def selection_plan(P: Any) -> SelectionPlan:
    """Check that ``P`` is a 0/1 selection matrix and return its index arrays.

    The result is remembered on the matrix object (``P._sparsecnn_plan``) for
    as long as ``P`` keeps the same ``indptr`` and ``indices`` arrays; the
    operators of :mod:`sparsecnn.operators` are read-only, so it stays valid.

    Raises
    ------
    InputTypeError
        If a row of ``P`` holds more than one stored entry, or an entry is not 1.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(2), np.array([2, 0]), np.array([0, 1, 1, 2])), shape=(3, 3))
    >>> plan = selection_plan(P)
    >>> plan.take.tolist(), plan.has_empty, selection_plan(P) is plan
    ([2, 3, 0], True, True)
    >>> selection_plan(sp.csr_array(np.array([[1., 1.]])))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: select: a row of the matrix holds more than one entry; not a selection matrix
    """
    P = _as_csr(P)
    plan: SelectionPlan | None = getattr(P, "_sparsecnn_plan", None)
    if plan is not None and plan.indptr is P.indptr and plan.indices is P.indices:
        return plan
    n_rows, n_cols = P.shape
    counts = np.diff(P.indptr)
    if counts.size and counts.max() > 1:
        raise InputTypeError("select: a row of the matrix holds more than one entry; not a selection matrix")
    if P.data.size and not np.all(P.data == 1):
        raise InputTypeError("select: the matrix has entries other than 1; not a selection matrix")
    take = np.full(n_rows, n_cols, dtype=np.intp)
    nonempty = counts == 1
    take[nonempty] = P.indices[P.indptr[:-1][nonempty]]
    take.flags.writeable = False
    plan = SelectionPlan((n_rows, n_cols), take, bool((~nonempty).any()), P.indptr, P.indices)
    try:
        P._sparsecnn_plan = plan
    except AttributeError:  # pragma: no cover - a matrix class with __slots__
        pass
    return plan


def _check_dense(X: np.ndarray, rows: int, what: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim not in (1, 2) or X.shape[0] != rows:
        raise ShapeError(f"{what}: the dense operand must have {rows} rows, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    return np.ascontiguousarray(X)


def _out(out: np.ndarray | None, shape: tuple[int, ...], dtype: Any, what: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
        raise ShapeError(f"{what}: out must be a C-contiguous {np.dtype(dtype)} array of shape {shape}, "
                         f"got {out.dtype} {out.shape}")
    return out


def gather_source(plan: SelectionPlan, X: np.ndarray) -> np.ndarray:
    """The array a selection product gathers from: ``X`` itself, or (when ``P``
    has empty rows) a copy of ``X`` with a zero row appended, which the empty
    rows read (``plan.take`` points there).  The copy is a per-thread work array.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(2), np.array([2, 0]), np.array([0, 1, 1, 2])), shape=(3, 3))
    >>> plan, X = selection_plan(P), np.array([[10.], [20.], [30.]])
    >>> src = gather_source(plan, X); src.ravel()
    array([10., 20., 30.,  0.])
    >>> np.array_equal(src[plan.take], P @ X)                 # the gather is the product
    True
    >>> gather_source(selection_plan(sp.csr_array(np.eye(3))), X) is X   # no empty row: no copy
    True
    """
    m = plan.shape[1]
    if not plan.has_empty:
        return X
    Xe = scratch("select.Xe", (m + 1, *X.shape[1:]), X.dtype)
    Xe[:m] = X
    Xe[m] = 0
    return Xe


def csc_add(P: Any, rows: tuple[int, int], X: np.ndarray, target: np.ndarray) -> None:
    """``target += P[r0:r1]^T X`` for rows ``r0:r1`` of a CSR ``P`` (``X`` holds those rows
    of the dense operand), the CSC product with ``P``'s own arrays (dtype of ``X``).

    ``X`` (``r1 - r0`` rows) and ``target`` (``P.shape[1]`` rows) must be
    C-contiguous with the same number of columns and the same dtype.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(3), np.array([1, 0, 1]), np.arange(4)), shape=(3, 2))
    >>> X, target = np.array([[5.], [7.]]), np.ones((2, 1))      # X: rows 1 and 2 of the operand
    >>> csc_add(P, (1, 3), X, target); target.ravel()
    array([6., 8.])
    >>> np.array_equal(target, 1 + P[1:3].T @ X)
    True
    """
    r0, r1 = rows
    n = P.shape[1]
    width = target.size // n if n else 0
    if X.size != (r1 - r0) * width or target.size != n * width or not (
            X.flags.c_contiguous and target.flags.c_contiguous) or X.dtype != target.dtype:
        raise ShapeError(f"csc_add: X must hold {r1 - r0} rows of {width} and target {n} rows of {width}, "
                         f"C-contiguous, one dtype; got {X.shape} {X.dtype} and {target.shape} {target.dtype}")
    sparsetools.csc_matvecs(P.shape[1], r1 - r0, width, P.indptr[r0:r1 + 1], P.indices,
                             _data(P, X.dtype), X.reshape(-1), target.reshape(-1))


def select(P: Any, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``P @ X`` for a 0/1 selection matrix ``P`` in CSR: row ``k`` of the result is
    row ``P.indices[P.indptr[k]]`` of ``X``, or zeros for an empty row.

    Parameters
    ----------
    P : CSR matrix, shape ``(n, m)``, at most one stored 1 per row.
    X : ndarray, shape ``(m, l)`` or ``(m,)``
    out : ndarray, shape ``(n, l)``, optional

    Examples
    --------
    >>> P = sp.csr_array((np.ones(2), np.array([2, 0]), np.array([0, 1, 1, 2])), shape=(3, 3))
    >>> select(P, np.array([10., 20., 30.]))
    array([30.,  0., 10.])
    """
    plan = selection_plan(P)
    n, m = plan.shape
    X = _check_dense(X, m, "select")
    tail = X.shape[1:]
    res = _out(out, (n, *tail), X.dtype, "select")
    src = gather_source(plan, X)
    take = plan.take
    width = int(np.prod(tail)) if tail else 1

    def run(a: int, b: int) -> None:
        np.take(src, take[a:b], axis=0, out=res[a:b], mode="clip")

    parallel_ranges(run, n, n * width)
    return res


def select_T(P: Any, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``P^T @ X`` for a selection matrix ``P`` (CSR, at most one stored 1 per row).

    The CSC product with ``P``'s own arrays: every row ``k`` of ``X`` is added
    to row ``P.indices[P.indptr[k]]`` of the result, reading ``X`` in order.
    On two threads each adds half of the rows of ``X`` into its own result,
    and the two are summed.

    Examples
    --------
    >>> P = sp.csr_array((np.ones(2), np.array([2, 2]), np.array([0, 1, 1, 2])), shape=(3, 3))
    >>> select_T(P, np.array([1., 5., 2.]))
    array([0., 0., 3.])
    """
    plan = selection_plan(P)  # checks the structure
    if not plan.distinct_columns:
        return spmm_T(P, X, out)
    n, m = plan.shape
    X = _check_dense(X, n, "select_T")
    tail = X.shape[1:]
    res = _out(out, (m, *tail), X.dtype, "select_T")
    width = int(np.prod(tail)) if tail else 1
    flat = res.reshape(m, width) if tail else res
    xf = X.reshape(n, width) if tail else X

    def zero(a: int, b: int) -> None:
        flat[a:b].fill(0)

    def put(a: int, b: int) -> None:
        flat[plan.take[a:b]] = xf[a:b]

    parallel_ranges(zero, m, m * width)
    parallel_ranges(put, n, n * width)
    return res


def _data(P: Any, dtype: np.dtype[Any]) -> np.ndarray:
    """``P.data`` in ``dtype``, cast once per matrix and dtype (remembered on ``P``)."""
    if P.data.dtype == dtype:
        return np.asarray(P.data)
    cache: dict[str, Any] | None = getattr(P, "_sparsecnn_data", None)
    if cache is None or cache.get("source") is not P.data:
        cache = {"source": P.data}
        try:
            P._sparsecnn_data = cache
        except AttributeError:  # pragma: no cover
            pass
    arr = cache.get(dtype.str)
    if arr is None:
        arr = P.data.astype(dtype)
        arr.flags.writeable = False
        cache[dtype.str] = arr
    return arr


def spmm(P: Any, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``P @ X`` for any CSR matrix, rows split over the kernel threads (dtype of ``X``).

    Examples
    --------
    >>> P = sp.csr_array(np.array([[1., 2.], [0., 3.]]))
    >>> spmm(P, np.array([[1., 1.], [1., 2.]]))
    array([[3., 5.],
           [3., 6.]])
    """
    P = _as_csr(P)
    n, m = P.shape
    X = _check_dense(X, m, "spmm")
    tail = X.shape[1:]
    width = int(np.prod(tail)) if tail else 1
    res = _out(out, (n, *tail), X.dtype, "spmm")
    data = _data(P, X.dtype)
    indptr, indices = P.indptr, P.indices
    xr = X.reshape(-1)

    def run(a: int, b: int) -> None:
        part = res[a:b]
        part.fill(0)
        sparsetools.csr_matvecs(b - a, m, width, indptr[a:b + 1], indices, data, xr, part.reshape(-1))

    parallel_ranges(run, n, P.nnz * width)
    return res


def spmm_T(P: Any, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``P^T @ X`` for a CSR ``P`` without forming ``P^T``: the CSC product with ``P``'s arrays.

    Reads ``X`` in order and adds into the result; on two threads, each half of
    the rows of ``X`` goes into its own result and the results are summed.

    Examples
    --------
    >>> P = sp.csr_array(np.array([[1., 2.], [0., 3.]]))
    >>> spmm_T(P, np.array([[1., 1.], [1., 2.]]))
    array([[1., 1.],
           [5., 8.]])
    """
    P = _as_csr(P)
    n, m = P.shape
    X = _check_dense(X, n, "spmm_T")
    tail = X.shape[1:]
    width = int(np.prod(tail)) if tail else 1
    res = _out(out, (m, *tail), X.dtype, "spmm_T")
    data = _data(P, X.dtype)
    indptr, indices = P.indptr, P.indices
    xr = X.reshape(-1)
    part = partial_name("spmm_T.part")

    def run(a: int, b: int) -> np.ndarray:
        target = res if a == 0 else scratch(part, (m, *tail), X.dtype)
        target.fill(0)
        sparsetools.csc_matvecs(m, b - a, width, indptr[a:b + 1], indices, data,
                                 xr[a * width:b * width], target.reshape(-1))
        return target

    parts = parallel_ranges(run, n, P.nnz * width)
    for extra in parts[1:]:
        np.add(res, extra, out=res)
    return res
