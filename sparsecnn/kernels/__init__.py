"""The fast backend's kernels: how the slides' products are fed to the machine.

Nothing here changes *what* is computed: every kernel returns exactly the
slides' product (``P @ X``, ``P^T @ X``, ``W phi + b 1^T``, ...).  What changes
is how it is carried out:

- :mod:`~sparsecnn.kernels.threads`: the kernel thread pool (two cores) and
  the BLAS thread limits;
- :mod:`~sparsecnn.kernels.buffers`: per-thread scratch and the named work
  arrays a caller reuses across batches (first touch once);
- :mod:`~sparsecnn.kernels.sparse`: the selection products (a row gather
  driven by the matrix's own ``indices``) and general CSR/CSC products;
- :mod:`~sparsecnn.kernels.sparsetools`: the one door to scipy's private
  ``_sparsetools``, checked at import against ``P @ X``, with a public fallback;
- :mod:`~sparsecnn.kernels.compiled`: the window-by-window kernels' bias,
  maxima and ``P_pool^T`` as one loop each, compiled by numba where installed.

The blocked convolution and the window-by-window conv+pool kernels that use
these are the methods of :class:`sparsecnn.layers.ConvShape`, called by
:class:`sparsecnn.engine.FastBackend`.

Examples
--------
>>> import numpy as np
>>> from sparsecnn.operators import P_pad, P_phi
>>> P = (P_phi(4, 4, 1, 3) @ P_pad(2, 2, 1, 1)).tocsr()
>>> X = np.arange(8.0).reshape(4, 2)
>>> np.array_equal(select(P, X), P @ X)
True
"""

from .buffers import Scratch, Workspace, partial_name, release_scratch, scratch
from .sparse import (
    SelectionPlan,
    attach_plan,
    csc_add,
    gather_source,
    select,
    select_T,
    selection_plan,
    spmm,
    spmm_T,
)
from .threads import (
    blas_serial,
    get_blas_split,
    get_num_threads,
    on_every_worker,
    parallel_blas,
    parallel_ranges,
    set_blas_split,
    set_num_threads,
)

__all__ = [
    "set_num_threads", "get_num_threads", "parallel_ranges", "parallel_blas",
    "set_blas_split", "get_blas_split", "blas_serial", "on_every_worker",
    "SelectionPlan", "selection_plan", "attach_plan", "select", "select_T", "spmm", "spmm_T",
    "Scratch", "scratch", "partial_name", "release_scratch", "Workspace", "gather_source", "csc_add",
]
