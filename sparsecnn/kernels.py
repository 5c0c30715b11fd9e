"""Kernels: how the slides' sparse products are fed to the machine.

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
- **Two cores.**  scipy's sparse products and numpy's gathers run on one
  core but release the GIL, so a product is split by rows over a small
  thread pool (:func:`set_num_threads`; default: the cores this process may
  use, at most 2 unless asked).
- **Preallocated outputs.**  Every kernel takes ``out=``; a caller that
  reuses its buffers across batches avoids the first-touch cost of fresh
  large arrays.
- **dtype.**  The result has the dtype of ``X`` (float32 stays float32);
  the matrix's stored values are cast once per dtype and cached.

Examples
--------
>>> import numpy as np
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

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse import _sparsetools

from .exceptions import InputTypeError, ShapeError

__all__ = [
    "set_num_threads", "get_num_threads", "parallel_ranges", "parallel_blas",
    "set_blas_split", "get_blas_split", "blas_serial",
    "SelectionPlan", "selection_plan", "attach_plan", "select", "select_T", "spmm", "spmm_T",
    "Scratch", "scratch", "partial_name", "release_scratch", "Workspace", "gather_source", "csc_add",
]

# --------------------------------------------------------------------- threads
_MIN_SPLIT = 1 << 16
"""Entries of output below which a kernel runs on one thread (thread start-up costs more)."""


def _default_threads() -> int:
    env = os.environ.get("SPARSECNN_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 2))


_num_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Threads used by the kernels of this module (not by BLAS).

    Examples
    --------
    >>> old = get_num_threads(); set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(old)
    """
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputTypeError(f"number of threads must be a positive integer, got {n!r}")
    with _pool_lock:
        if _pool is not None and int(n) != _num_threads:
            _pool.shutdown(wait=True)
            _pool = None
        _num_threads = int(n)


def get_num_threads() -> int:
    """Threads used by the kernels of this module.

    The default is the number of cores this process may use, at most 2, or
    the environment variable ``SPARSECNN_NUM_THREADS``; see :func:`set_num_threads`.

    Examples
    --------
    >>> get_num_threads() >= 1
    True
    """
    return _num_threads


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, _num_threads - 1),
                                       thread_name_prefix="sparsecnn")
        return _pool


def parallel_ranges(fn: Callable[[int, int], Any], n: int, work: int | None = None) -> list[Any]:
    """Run ``fn(start, stop)`` over a split of ``range(n)`` on the kernel threads.

    ``work`` (default ``n``) is the size of the job in entries; below
    ``2**16`` entries, or with one thread, ``fn(0, n)`` runs on the calling
    thread.  Returns the results in order of the ranges.

    Examples
    --------
    A small job runs whole on the calling thread:

    >>> parallel_ranges(lambda a, b: list(range(a, b)), 5)
    [[0, 1, 2, 3, 4]]

    A large one is cut into one contiguous range per thread:

    >>> parts = parallel_ranges(lambda a, b: (a, b), 10, work=1 << 20)
    >>> len(parts) == get_num_threads(), parts[0][0], parts[-1][1], sum(b - a for a, b in parts)
    (True, 0, 10, 10)
    """
    k = _num_threads
    if k <= 1 or n < 2 or (work if work is not None else n) < _MIN_SPLIT \
            or threading.current_thread().name.startswith("sparsecnn"):
        return [fn(0, n)]
    k = min(k, n)
    bounds = [n * t // k for t in range(k + 1)]
    futures: list[Future[Any]] = [
        _executor().submit(fn, bounds[t], bounds[t + 1]) for t in range(1, k)
    ]
    first = fn(bounds[0], bounds[1])
    return [first] + [f.result() for f in futures]


_controller: Any = None
_blas_split = True


def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, or ``False`` without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller


def set_blas_split(split: bool) -> None:
    """How :func:`parallel_blas` uses the cores for jobs made of many GEMMs.

    ``True`` (default, where threadpoolctl is installed): the job is split over
    the kernel threads, each calling BLAS on one thread, as PyTorch splits a
    batch over its threads; ``False``: one thread calls BLAS, which uses its
    own threads inside every GEMM.  The results are the same either way.

    Examples
    --------
    >>> split = get_blas_split()
    >>> set_blas_split(False); get_blas_split()
    False
    >>> set_blas_split(split)
    """
    global _blas_split
    _blas_split = bool(split)


def get_blas_split() -> bool:
    """Whether :func:`parallel_blas` splits GEMM jobs over the kernel threads (see :func:`set_blas_split`).

    ``False`` whenever threadpoolctl is not installed (BLAS's threads cannot be limited then).

    Examples
    --------
    >>> isinstance(get_blas_split(), bool)
    True
    """
    return _blas_split and bool(_blas_controller())


def parallel_blas(fn: Callable[[int, int], Any], n: int, work: int | None = None) -> list[Any]:
    """:func:`parallel_ranges` for jobs that call BLAS.

    With :func:`get_blas_split` the ranges run on the kernel threads with BLAS
    limited to one thread meanwhile; otherwise ``fn(0, n)`` runs on the
    calling thread and BLAS uses its own threads.

    Examples
    --------
    A sum of 64 small GEMMs, split over the threads and summed back:

    >>> A = np.random.default_rng(0).standard_normal((64, 8, 8))
    >>> parts = parallel_blas(lambda a, b: np.matmul(A[a:b], A[a:b]).sum(axis=0), 64, work=1 << 20)
    >>> np.allclose(sum(parts), np.matmul(A, A).sum(axis=0))
    True
    """
    if (not get_blas_split() or _num_threads <= 1 or n < 2
            or (work if work is not None else n) < _MIN_SPLIT
            or threading.current_thread().name.startswith("sparsecnn")):
        return [fn(0, n)]
    with _blas_controller().limit(limits=1, user_api="blas"):
        return parallel_ranges(fn, n, work)


@contextlib.contextmanager
def blas_serial() -> Iterator[None]:
    """BLAS on one thread inside the block, when :func:`get_blas_split` holds.

    The network's passes split their large GEMM jobs over the kernel threads
    themselves (:func:`parallel_blas`); the remaining GEMMs (full layers, small
    batches) are too small to gain from BLAS's own threads and lose much when
    the other core is busy, since BLAS threads wait for each other.  As a
    decorator it covers a whole training loop (``newton_loop``,
    ``minibatch_train``): BLAS threads woken by a vector product between two
    passes would otherwise spin while the kernel threads run the next pass.

    Examples
    --------
    >>> with blas_serial():
    ...     float(np.ones((2, 2)) @ np.ones(2) @ np.ones(2))
    4.0
    >>> @blas_serial()
    ... def loop():
    ...     return float(np.ones(3) @ np.ones(3))
    >>> loop(), loop()
    (3.0, 3.0)
    """
    if not get_blas_split() or _num_threads <= 1 or threading.current_thread().name.startswith("sparsecnn"):
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


# ------------------------------------------------------------- scratch space
class Scratch:
    """Work arrays kept between calls, one set per thread.

    A kernel asks for ``get(name, shape, dtype)`` and receives the same array
    (uninitialised) every time it asks with the same name, shape and dtype, so
    large temporaries are touched once, not once per batch.  The ``keep``
    most recently used arrays of each thread are kept.  Arrays from a
    ``Scratch`` never leave the function that uses them.

    Parameters
    ----------
    keep : int, default 8
        Arrays kept per thread; asking for another one drops the least recently used.

    Examples
    --------
    >>> sc = Scratch(keep=2)
    >>> A = sc.get("a", (3, 2), np.float64)
    >>> sc.get("a", (3, 2), np.float64) is A
    True
    >>> _ = sc.get("b", (4,), np.float64); _ = sc.get("c", (4,), np.float64)   # "a" is dropped
    >>> sc.get("a", (3, 2), np.float64) is A
    False
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """The calling thread's array for ``(name, shape, dtype)``, uninitialised.

        The same array as the last time it was asked for, if it is still kept;
        otherwise a new one (dropping the least recently used beyond ``keep``).

        Examples
        --------
        >>> sc = Scratch()
        >>> A = sc.get("phi", (4, 2), np.float32)
        >>> sc.get("phi", (4, 2), np.float32) is A, A.dtype
        (True, dtype('float32'))
        >>> sc.get("phi", (4, 3), np.float32) is A          # another shape: another array
        False
        """
        store: dict[tuple[Any, ...], np.ndarray] | None = getattr(self._local, "store", None)
        if store is None:
            store = {}
            self._local.store = store
        dt = np.dtype(dtype)
        key = (name, shape, dt.str)
        arr = store.pop(key, None)
        if arr is None:
            arr = np.empty(shape, dtype=dt)
            while len(store) >= self.keep:
                store.pop(next(iter(store)))
        store[key] = arr                                  # most recently used last
        return arr

    def clear(self) -> None:
        """Drop this thread's arrays.

        Examples
        --------
        >>> sc = Scratch()
        >>> A = sc.get("a", (2,), np.float64)
        >>> sc.clear()
        >>> sc.get("a", (2,), np.float64) is A
        False
        """
        self._local.store = {}


class Workspace:
    """Named work arrays that a caller reuses across batches and calls, one set per thread.

    ``get(name, shape, dtype)`` returns a C-contiguous array of that shape,
    uninitialised: the leading ``prod(shape)`` entries of one flat buffer per
    ``(name, dtype)``, which grows to the largest size asked for and is then
    reused.  A smaller last batch therefore reads a prefix of the same memory
    instead of touching fresh pages.  Unlike :class:`Scratch` there is no limit
    on the number of names; :meth:`release` frees them all.

    Examples
    --------
    >>> ws = Workspace()
    >>> A = ws.get("S1", (4, 3), np.float64)
    >>> B = ws.get("S1", (4, 2), np.float64)          # a smaller batch: same memory
    >>> np.shares_memory(A, B), B.shape, ws.nbytes
    (True, (4, 2), 96)
    >>> ws.release(); ws.nbytes
    0
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {}                                         # a copy starts empty

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._local = threading.local()

    def _store(self) -> dict[tuple[str, str], np.ndarray]:
        store: dict[tuple[str, str], np.ndarray] | None = getattr(self._local, "store", None)
        if store is None:
            store = {}
            self._local.store = store
        return store

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A work array of ``shape`` and ``dtype`` named ``name`` (contents undefined).

        Examples
        --------
        >>> ws = Workspace()
        >>> A = ws.get("dS1", (2, 3), np.float64)
        >>> B = ws.get("dS1", (3, 3), np.float64)          # larger: the buffer grows
        >>> C = ws.get("dS1", (3, 3), np.float32)          # another dtype: a buffer of its own
        >>> np.shares_memory(A, B), B.shape, ws.nbytes     # 9 float64 + 9 float32
        (False, (3, 3), 108)
        >>> np.shares_memory(ws.get("dS1", (3, 1), np.float64), B)
        True
        """
        dt = np.dtype(dtype)
        size = int(np.prod(shape))
        store = self._store()
        key = (name, dt.str)
        flat = store.get(key)
        if flat is None or flat.size < size:
            store.pop(key, None)
            flat = store[key] = np.empty(size, dtype=dt)
        return flat[:size].reshape(shape)

    def apart_from(self, arr: np.ndarray, *names: str) -> str:
        """The first of ``names`` whose arrays share no memory with ``arr``.

        A layer that writes into an array shared by all layers picks it so: where
        its input is the previous layer's output itself (identity, no pooling),
        it writes into the other one instead of over its own input.

        Examples
        --------
        >>> ws = Workspace()
        >>> S = ws.get("S", (4, 2), np.float64)
        >>> ws.apart_from(S, "S", "S'"), ws.apart_from(np.ones(3), "S", "S'")
        ("S'", 'S')
        """
        for name in names:
            if not any(np.may_share_memory(arr, a) for (n, _), a in self._store().items() if n == name):
                return name
        raise ValueError(f"every one of {names} shares memory with the array")

    @property
    def nbytes(self) -> int:
        """Bytes held by the calling thread's arrays."""
        return int(sum(a.nbytes for a in self._store().values()))

    def release(self) -> None:
        """Free the calling thread's arrays.

        Examples
        --------
        >>> ws = Workspace()
        >>> _ = ws.get("Z2", (8, 4), np.float64); ws.nbytes
        256
        >>> ws.release(); ws.nbytes
        0
        """
        self._local.store = {}


# -------------------------------------------------------- selection matrices
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


_scratch = Scratch(keep=32)          # the kernels of a few layers, in two dtypes, without eviction


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
    Xe = _scratch.get("select.Xe", (m + 1, *X.shape[1:]), X.dtype)
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
    _sparsetools.csc_matvecs(P.shape[1], r1 - r0, width, P.indptr[r0:r1 + 1], P.indices,
                             _data(P, X.dtype), X.reshape(-1), target.reshape(-1))


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A work array of the calling thread (see :class:`Scratch`), uninitialised.

    The module's own :class:`Scratch`, shared by the kernels.

    Examples
    --------
    >>> A = scratch("example.buf", (2, 3), np.float32)
    >>> scratch("example.buf", (2, 3), np.float32) is A, A.shape, A.dtype
    (True, (2, 3), dtype('float32'))
    """
    return _scratch.get(name, shape, dtype)


def partial_name(name: str) -> str:
    """``name`` made private to the calling thread, for a worker's partial result.

    A kernel thread's partial sum outlives its task (the caller adds it up), so
    the :func:`scratch` array that holds it is named after the thread that
    called the kernel: callers on several threads never share one.  Call it
    on the calling thread, before the work is split.

    Examples
    --------
    >>> partial_name("conv_backward.dZ") == f"conv_backward.dZ.{threading.get_ident()}"
    True
    """
    return f"{name}.{threading.get_ident()}"


def release_scratch() -> None:
    """Free the kernels' work arrays (:func:`scratch`) of the calling thread and of the
    kernel threads.

    Examples
    --------
    >>> A = scratch("example.buf", (2, 3), np.float32)
    >>> release_scratch()
    >>> scratch("example.buf", (2, 3), np.float32) is A
    False
    """
    _scratch.clear()
    with _pool_lock:
        pool = _pool
    if pool is None:
        return
    workers = max(1, _num_threads - 1)
    barrier = threading.Barrier(workers)        # one task on each worker thread at once

    def clear() -> None:
        barrier.wait(timeout=10)
        _scratch.clear()

    for f in [pool.submit(clear) for _ in range(workers)]:
        f.result()


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
        _sparsetools.csr_matvecs(b - a, m, width, indptr[a:b + 1], indices, data, xr, part.reshape(-1))

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
        _sparsetools.csc_matvecs(m, b - a, width, indptr[a:b + 1], indices, data,
                                 xr[a * width:b * width], target.reshape(-1))
        return target

    parts = parallel_ranges(run, n, P.nnz * width)
    for extra in parts[1:]:
        np.add(res, extra, out=res)
    return res
