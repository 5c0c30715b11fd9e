"""Helpers shared by the operator builders: argument checks and read-only CSR."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from ..exceptions import ArchitectureError, InputTypeError


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise naming the slide symbol ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ArchitectureError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def selection_matrix(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int,
                     data: np.ndarray | None = None) -> sp.csr_array:
    """CSR 0/1 matrix with ones at ``(rows[k], cols[k])``; rows must be sorted.

    The arrays of the result are made read-only: builders are cached, so a
    caller must not be able to change the matrix another caller receives.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], np.asarray(cols, dtype=np.int64)[order]
    if data is None:
        data = np.ones(rows.size)
    else:
        data = np.asarray(data, dtype=np.float64)[order]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    np.cumsum(indptr, out=indptr)
    index_dtype = np.int32 if max(n_rows, n_cols, rows.size) < 2**31 - 1 else np.int64
    P = sp.csr_array((data, cols.astype(index_dtype), indptr.astype(index_dtype)),
                     shape=(n_rows, n_cols))
    P.has_sorted_indices = True
    return P


def freeze(P: sp.csr_array) -> sp.csr_array:
    """Mark the arrays of ``P`` read-only and return it."""
    for arr in (P.data, P.indices, P.indptr):
        arr.flags.writeable = False
    return P
