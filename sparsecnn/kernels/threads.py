"""The kernel threads and the BLAS thread limits.

scipy's sparse products and numpy's gathers run on one core but release the
GIL, so a product is split by rows over a small thread pool
(:func:`set_num_threads`; default: the cores this process may use, at most 2
unless asked); the GEMMs of a layer are split likewise
(:func:`parallel_blas`), with BLAS's own threads limited meanwhile
(:func:`blas_serial`).

Examples
--------
>>> parallel_ranges(lambda a, b: (a, b), 10)          # a small job: one range, this thread
[(0, 10)]
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import machine
from ..exceptions import InputTypeError

__all__ = [
    "set_num_threads", "get_num_threads", "parallel_ranges", "parallel_blas",
    "set_blas_split", "get_blas_split", "blas_serial", "on_every_worker",
]

_MIN_SPLIT = 1 << 16
"""Entries of output below which a kernel runs on one thread (thread start-up costs more)."""


_num_threads = machine.chosen().threads
"""One thread per CPU this process may use, or ``SPARSECNN_NUM_THREADS`` (:mod:`sparsecnn.machine`)."""
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

    The default is the number of CPUs this process may use, or the
    environment variable ``SPARSECNN_NUM_THREADS`` (:func:`sparsecnn.machine.choose`);
    see :func:`set_num_threads`.

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


def on_every_worker(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once on each kernel thread of the pool (if it has been started).

    Examples
    --------
    >>> on_every_worker(lambda: None)
    """
    with _pool_lock:
        pool = _pool
    if pool is None:
        return
    workers = max(1, _num_threads - 1)
    barrier = threading.Barrier(workers)        # one task on each worker thread at once

    def run() -> None:
        barrier.wait(timeout=10)
        fn()

    for f in [pool.submit(run) for _ in range(workers)]:
        f.result()
