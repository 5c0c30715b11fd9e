"""Exceptions raised by sparsecnn.

Every error about user input is a subclass of :class:`SparseCNNError` and
also of :class:`ValueError` or :class:`TypeError`, so callers may catch
either the library's own class or the built-in one.  Messages name the
slide symbol, what was expected and what was given.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SparseCNNError",
    "ShapeError",
    "NonFiniteError",
    "LabelError",
    "ConfigError",
    "ArchitectureError",
    "DataFormatError",
    "InputTypeError",
    "SizeLimitError",
    "DivergenceError",
]


class SparseCNNError(Exception):
    """Base class of every error sparsecnn raises on purpose."""


class ShapeError(SparseCNNError, ValueError):
    """An array has the wrong shape or length (for example ``X`` or ``theta``)."""


class NonFiniteError(SparseCNNError, ValueError):
    """An array holds NaN or Inf where finite numbers are required."""


class LabelError(SparseCNNError, ValueError):
    """Labels ``y`` are not integers in ``0..n_L-1``."""


class ConfigError(SparseCNNError, ValueError):
    """A network description (simpleNN configuration or layer list) is malformed."""


class ArchitectureError(ConfigError):
    """A layer would produce an empty image, or a window does not fit its image."""


class DataFormatError(SparseCNNError, ValueError):
    """A data or model file is missing, corrupt or not in the expected format."""


class InputTypeError(SparseCNNError, TypeError):
    """An argument has the wrong type (for example a string where an array is expected)."""


class SizeLimitError(SparseCNNError, ValueError):
    """Building or reading something would need more memory than the configured limit.

    The message states the size that would be needed and how to raise the limit
    (the size limits (:func:`sparsecnn.config.set_limits`)).
    """


class DivergenceError(SparseCNNError, ArithmeticError):
    """An optimiser met a non-finite ``f``, gradient or step.

    Attributes
    ----------
    iteration : int
        The iteration (Newton) or epoch (SGD, Adam) where it happened; 0 at the
        initial ``theta``.
    theta : ndarray or None
        The last finite iterate, shape ``(n,)`` (the one the failing step started from).
    history : object or None
        The optimiser's :class:`~sparsecnn.optim.History` up to the last finite iterate.

    Examples
    --------
    >>> import numpy as np
    >>> err = DivergenceError("sgd diverged", iteration=3, theta=np.zeros(2))
    >>> err.iteration, err.theta.shape, isinstance(err, ArithmeticError)
    (3, (2,), True)
    """

    def __init__(self, message: str, *, iteration: int = 0, theta: Any = None,
                 history: Any = None) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.theta: Any = theta
        self.history: Any = history
