"""Optimisers: the subsampled Gauss-Newton method of simpleNN, SGD with momentum, Adam.

Each takes ``(net, theta, X, y)`` and keyword options and returns
``(theta, history)`` with a :class:`History` of ``f``, ``|g|``, CG iterations,
step size, ``lambda``, validation accuracy and time per iteration.
"""

from ._common import History
from .adam import adam
from .newton import conjugate_gradient, newton
from .sgd import sgd

__all__ = ["newton", "sgd", "adam", "conjugate_gradient", "History"]
