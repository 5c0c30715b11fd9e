"""The window-by-window kernels' elementwise steps as single loops, compiled by numba where installed.

Between its GEMMs, a block of pooling windows in
:mod:`sparsecnn.kernels.windowed` needs three elementwise steps:

- forward: ``+ b 1^T``, then each window's maximum and the offset of its
  winner (``P_pool``, ties to the first entry in the order of ``vec``);
- backward: ``P_pool^T``, each window's gradient put at its winner and
  zeros elsewhere;
- R-operator: ``+ v_b 1^T``, then ``P_pool`` with the forward pass's winners.

numpy does these in about ten passes over the block (``window_max``, a mask
and a product per offset).  The functions below do each in one pass, with
the same arithmetic in the same order: the offsets, ``P_pool^T`` and the
R-operator's values are bitwise those of the numpy passes, and each maximum
is its winner's own entry (where a window's largest entries are ``-0.0`` and
``0.0``, numpy's ``maximum`` may give ``0.0`` for a ``-0.0`` winner; the
two compare equal).  They are plain Python: where numba is installed
(``pip install 'sparsecnn[fast]'``), :func:`loops` returns them compiled
(``nogil``, so the kernel threads run them in parallel; cached on disk after
the first compilation); where it is not, :func:`loops` returns ``None`` and
the kernels keep their numpy passes.  ``sparsecnn info`` says which is in
use.  The tests run these loops uncompiled on small blocks, and compiled on
the kernels' own shapes, against the numpy passes.

Examples
--------
>>> loops() is None or callable(loops().max_offsets)
True
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

from .. import machine

__all__ = ["max_offsets", "unpool", "select_winners", "loops", "use"]


def max_offsets(S: np.ndarray, b: np.ndarray, best: np.ndarray, which: np.ndarray) -> None:
    """Each window's maximum of ``S + b 1^T`` and its winner's offset, one pass.

    ``S`` has shape ``(n, r^2, d, l)`` (window, offset, channel, image), ``b``
    shape ``(d,)``; ``best`` receives the maxima and ``which`` the offsets
    (shape ``(n, d, l)``).  A later entry wins only if strictly larger, so ties
    go to the first; a NaN in a window makes its maximum NaN.

    Examples
    --------
    One window of ``r^2 = 4`` entries, one channel, two images (the slides'
    top-left window, then a tie):

    >>> S = np.array([[[[3.0, 1.0]], [[4.0, 1.0]], [[2.0, 0.0]], [[5.0, 1.0]]]])    # (n, r^2, d, l)
    >>> best, which = np.empty((1, 1, 2)), np.empty((1, 1, 2), dtype=np.uint8)
    >>> max_offsets(S, np.array([0.5]), best, which); best, which
    (array([[[5.5, 1.5]]]), array([[[3, 0]]], dtype=uint8))
    """
    n, r2, d, l = S.shape
    for w in range(n):
        for c in range(d):
            bc = b[c]
            m = best[w, c]
            k = which[w, c]
            s = S[w, 0, c]
            for i in range(l):
                m[i] = s[i] + bc
                k[i] = 0
            for kk in range(1, r2):
                s = S[w, kk, c]
                for i in range(l):
                    v = s[i] + bc
                    if v > m[i]:
                        m[i] = v
                        k[i] = kk
                    elif v != v:
                        m[i] = v


def unpool(g: np.ndarray, which: np.ndarray, dS: np.ndarray) -> None:
    """``P_pool^T``: ``dS[w, k] = g[w] * (which[w] == k)``, one pass.

    ``g`` and ``which`` have shape ``(n, d, l)``, ``dS`` shape ``(n, r^2, d, l)``.
    The product (not a branch) keeps numpy's ``g * mask``: ``-0.0`` and NaN
    times ``False`` as numpy gives them.

    Examples
    --------
    >>> dS = np.empty((1, 4, 1, 2))
    >>> unpool(np.array([[[7.0, 8.0]]]), np.array([[[3, 0]]], dtype=np.uint8), dS); dS[0, :, 0]
    array([[0., 8.],
           [0., 0.],
           [0., 0.],
           [7., 0.]])
    """
    n, r2, d, l = dS.shape
    for w in range(n):
        for kk in range(r2):
            for c in range(d):
                gw = g[w, c]
                k = which[w, c]
                out = dS[w, kk, c]
                for i in range(l):
                    out[i] = gw[i] * (k[i] == kk)


def select_winners(RS: np.ndarray, vb: np.ndarray, which: np.ndarray, out: np.ndarray) -> None:
    """``P_pool vec(R(S) + v_b 1^T)`` with given winners, one pass.

    ``out[w] = sum_k (RS[w, k] + v_b) * (which[w] == k)``, summed over ``k`` in
    order, which is exactly the winner's entry for finite ``R(S)``.

    Examples
    --------
    >>> RS = np.arange(8.0).reshape(1, 4, 1, 2)
    >>> out = np.empty((1, 1, 2))
    >>> select_winners(RS, np.array([0.5]), np.array([[[3, 0]]], dtype=np.uint8), out); out
    array([[[6.5, 1.5]]])
    """
    n, r2, d, l = RS.shape
    for w in range(n):
        for c in range(d):
            vc = vb[c]
            k = which[w, c]
            o = out[w, c]
            s = RS[w, 0, c]
            for i in range(l):
                o[i] = (s[i] + vc) * (k[i] == 0)
            for kk in range(1, r2):
                s = RS[w, kk, c]
                for i in range(l):
                    o[i] = o[i] + (s[i] + vc) * (k[i] == kk)


_lock = threading.Lock()
_compiled: SimpleNamespace | None = None
_enabled = True


def _compile() -> SimpleNamespace | None:
    global _compiled
    with _lock:
        if _compiled is None:
            try:
                import numba  # optional: sparsecnn[fast]
            except ImportError:
                return None
            try:
                _compiled = _jit_all(numba.njit(nogil=True, cache=True))
            except RuntimeError:       # no writable place for numba's cache: compile in every process
                _compiled = _jit_all(numba.njit(nogil=True))
        return _compiled


def _jit_all(jit: Any) -> SimpleNamespace:
    return SimpleNamespace(max_offsets=jit(max_offsets), unpool=jit(unpool), select_winners=jit(select_winners))


def loops() -> Any:
    """The compiled loops (``max_offsets``, ``unpool``, ``select_winners``), or ``None``.

    ``None`` where numba is not installed, or inside ``use(False)``.

    Examples
    --------
    >>> with use(False):
    ...     loops() is None
    True
    """
    if not _enabled or not machine.chosen().compiled:
        return None
    return _compile()


@contextlib.contextmanager
def use(flag: bool) -> Iterator[None]:
    """Run the window-by-window kernels with (``True``) or without the compiled loops.

    For tests and benchmarks that compare the two in one process; not thread-safe.

    Examples
    --------
    >>> with use(False):
    ...     loops() is None
    True
    """
    global _enabled
    old, _enabled = _enabled, bool(flag)
    try:
        yield
    finally:
        _enabled = old
