"""The correctness oracle: check another implementation against sparsecnn, entry by entry.

- :func:`check` (:mod:`sparsecnn.oracle.check`): a PyTorch model (any module
  ``torch.fx`` can trace) against the float64 reference -- each layer's output,
  ``f``, the gradient, ``J v``, ``J^T u``, ``G v`` -- returning a
  :class:`CheckReport` (:mod:`sparsecnn.oracle.report`) that names the layer
  where an error starts and the worst entries in both layouts, each entry
  judged against its own rounding-error bound (:mod:`sparsecnn.oracle.bounds`);
- golden files (:mod:`sparsecnn.oracle.golden`) for implementations that cannot
  run Python: :func:`write_golden`, :func:`read_golden`, :func:`check_golden`;
- the index arithmetic between sparsecnn's and PyTorch's layouts
  (:mod:`sparsecnn.oracle.layouts`).

PyTorch is needed only by :func:`check`; golden files are written and checked
without it.
"""

from .check import PRODUCTS, check, default_rtol
from .golden import (
    GOLDEN_SCHEMA,
    GOLDEN_VERSION,
    Golden,
    check_golden,
    make_golden,
    read_golden,
    write_golden,
)
from .report import CheckReport, Comparison, OracleMismatch, TieInfo, WorstEntry

__all__ = [
    "check", "PRODUCTS", "default_rtol",
    "CheckReport", "Comparison", "OracleMismatch", "TieInfo", "WorstEntry",
    "Golden", "make_golden", "write_golden", "read_golden", "check_golden", "GOLDEN_SCHEMA", "GOLDEN_VERSION",
]
