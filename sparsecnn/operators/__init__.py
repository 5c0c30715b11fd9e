"""Operator builders: the slides' selection matrices as ``scipy.sparse.csr_array``.

One operator per module, each with its transpose used by the backward pass:

- :func:`P_pad` (``pad.py``): zero padding, ``vec(pad(Z)) = P_pad vec(Z)``;
- :func:`P_phi` (``phi.py``): im2col, ``vec(phi(Z)) = P_phi vec(Z)``;
- :func:`P_pool` (``pool.py``): max pooling from the data,
  ``vec(Z^{m+1}) = P_pool vec(sigma(S^m))``;
- :func:`P_pool_avg` (``pool_avg.py``): average pooling, a constant ``P_pool``.
"""

from .pad import P_pad
from .phi import P_phi, conv_size
from .pool import P_pool, max_pool_winners, pool_size
from .pool_avg import P_pool_avg

__all__ = ["P_pad", "P_phi", "P_pool", "P_pool_avg", "max_pool_winners", "conv_size", "pool_size"]
