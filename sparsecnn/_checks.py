"""Input checks shared by modules that cannot import one another (``network`` and ``second_order``)."""

from __future__ import annotations

import numpy as np

from .exceptions import InputTypeError, NonFiniteError

__all__ = ["check_finite", "real_numeric", "FLOAT_WARNINGS"]

FLOAT_WARNINGS = r"(overflow|invalid value|divide by zero) encountered"
"""The messages of numpy's floating-point RuntimeWarnings, which the command line silences
(``warnings.filterwarnings("ignore", FLOAT_WARNINGS, RuntimeWarning)``): its divergence checks
report the same event as one line."""


def check_finite(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` if every entry is finite, else a NonFiniteError naming ``name`` and the first bad entry.

    Examples
    --------
    >>> check_finite("v", np.array([1.0, np.nan]))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.NonFiniteError: v must be finite, got nan at entry 1
    """
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = int(bad[0]) if arr.ndim == 1 else tuple(int(i) for i in bad)
        raise NonFiniteError(f"{name} must be finite, got {arr[tuple(bad)]} at entry {where}")
    return arr


def real_numeric(name: str, a: object, what: str = "a real numeric array") -> np.ndarray:
    """``a`` as an array of real numbers (``bool`` included), unconverted, or an InputTypeError.

    Text, ``None``, objects and complex numbers are refused before any cast: casting would
    drop an imaginary part (a wrong number) or fail with NumPy's own message.

    Examples
    --------
    >>> real_numeric("v", [1, 2])
    array([1, 2])
    >>> real_numeric("y", np.array([1j]), "a vector of integer labels")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: y must be a vector of integer labels, got dtype complex128
    """
    if isinstance(a, (str, bytes)) or a is None:
        raise InputTypeError(f"{name} must be {what}, got {type(a).__name__}")
    arr = np.asarray(a)
    if arr.dtype == object or np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number)
                                                            or arr.dtype == bool):
        raise InputTypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    return arr
