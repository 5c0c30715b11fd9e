"""Work arrays: per-thread scratch for the kernels, and named arrays a caller reuses across batches.

Every kernel takes ``out=``; a caller that reuses its buffers across batches
avoids the first-touch cost of fresh large arrays (:class:`Workspace`), and the
kernels keep their own temporaries between calls (:func:`scratch`).

Examples
--------
>>> ws = Workspace()
>>> ws.get("S1", (2, 3), np.float64).shape
(2, 3)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .threads import on_every_worker

__all__ = ["Scratch", "Workspace", "scratch", "partial_name", "release_scratch"]


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


_scratch = Scratch(keep=32)          # the kernels of a few layers, in two dtypes, without eviction


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
    on_every_worker(_scratch.clear)
