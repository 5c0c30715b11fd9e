"""The engine: one forward, one backward and one R-operator loop over the layers, two backends.

- :mod:`~sparsecnn.engine.passes`: :func:`forward`, :func:`backward`, :func:`R_forward`;
- :mod:`~sparsecnn.engine.store`: :class:`Keep` (what a pass keeps: a plan,
  everything, or nothing) and :class:`Store` (kept and rebuilt quantities);
- :mod:`~sparsecnn.engine.backends`: :class:`ReferenceBackend` (the equations
  of :mod:`sparsecnn.equations`, literally) and :class:`FastBackend` (the
  kernels of :mod:`sparsecnn.kernels`);
- :mod:`~sparsecnn.engine.winners`: the winners' one encoding (offsets in their window).
"""

from .backends import BACKENDS, Backend, FastBackend, ReferenceBackend, get_backend
from .passes import R_forward, backward, batches, forward
from .store import POOL_BACKWARDS, Keep, Store
from .winners import winner_offsets, winner_positions

__all__ = [
    "forward", "backward", "R_forward", "batches", "Keep", "Store", "POOL_BACKWARDS",
    "Backend", "ReferenceBackend", "FastBackend", "BACKENDS", "get_backend",
    "winner_offsets", "winner_positions",
]
