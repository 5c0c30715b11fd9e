"""Exceptions raised by sparsecnn.

Every error about user input is a subclass of :class:`SparseCNNError` and
also of :class:`ValueError` or :class:`TypeError`, so callers may catch
either the library's own class or the built-in one.  Messages name the
slide symbol, what was expected and what was given.
"""

from __future__ import annotations

__all__ = [
    "SparseCNNError",
    "ShapeError",
    "NonFiniteError",
    "LabelError",
    "ConfigError",
    "ArchitectureError",
    "DataFormatError",
    "InputTypeError",
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
