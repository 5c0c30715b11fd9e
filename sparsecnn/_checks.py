"""Input checks shared by modules that cannot import one another (``network`` and ``second_order``)."""

from __future__ import annotations

import numpy as np

from .exceptions import NonFiniteError

__all__ = ["check_finite", "FLOAT_WARNINGS"]

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
