"""Activation functions ``sigma`` with their derivatives ``sigma'``.

Each activation gives ``sigma(S)``, ``sigma'(S)`` and, where it exists,
``sigma'(S)`` computed from ``sigma(S)`` alone (ReLU: ``I[sigma(S) > 0]``,
tanh: ``1 - sigma(S)^2``, sigmoid: ``sigma(S)(1 - sigma(S))``).  The last one
is what lets a run drop ``S`` and keep only ``Z``; equation (6) of the slides
is the ReLU case.

Examples
--------
>>> import numpy as np
>>> relu = ACTIVATIONS["relu"]
>>> relu.sigma(np.array([-1.0, 2.0]))
array([0., 2.])
>>> relu.dsigma(np.array([-1.0, 2.0]))
array([0., 1.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .exceptions import ConfigError

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "LEAKY_SLOPE", "ACTIVATE_ORDERS"]

ACTIVATE_ORDERS = ("slides", "pool-first")
"""The orders of ``sigma`` and max pooling (``Network(activate_order=...)``): ``sigma`` first, as
the slides write it, or max pooling first, then ``sigma`` on the smaller result."""

Array = np.ndarray
LEAKY_SLOPE = 0.01
"""Slope of leaky ReLU for negative inputs (PyTorch's default)."""


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``sigma``.

    Attributes
    ----------
    name : str
    sigma : callable
        ``sigma(S)``, elementwise.
    dsigma : callable
        ``sigma'(S)``, elementwise, from ``S``.
    dsigma_from_output : callable or None
        ``sigma'(S)`` from ``sigma(S)``; ``None`` where ``sigma(S)`` does not
        determine it (leaky ReLU does, but only through the sign; identity is constant).
    monotone : bool
        Non-decreasing, so that it commutes with max pooling.

    The callables keep the shape of their argument: ``S^{m,i}`` of shape
    ``(d^{m+1}, a^m_conv b^m_conv)``, a batch of such, or ``s^{m,i}`` of shape
    ``(n_{m+1},)``.

    Examples
    --------
    >>> tanh = ACTIVATIONS["tanh"]
    >>> S = np.array([[0.0, 1.0]])
    >>> Z = tanh.sigma(S)
    >>> bool(np.allclose(tanh.dsigma(S), tanh.dsigma_from_output(Z)))
    True
    >>> tanh.monotone
    True
    """

    name: str
    sigma: Callable[[Array], Array]
    dsigma: Callable[[Array], Array]
    dsigma_from_output: Callable[[Array], Array] | None
    monotone: bool

    def backprop(self, dA: Array, S: Array) -> Array:
        """``dA ⊙ sigma'(S)`` in one pass where ``sigma'`` is a mask (ReLU), in ``dA``'s dtype
        (``dA`` itself for the identity).

        Examples
        --------
        >>> ACTIVATIONS["relu"].backprop(np.array([1., 2., 3.]), np.array([-1., 0., 5.]))
        array([0., 0., 3.])
        """
        if self.name == "relu":
            return np.multiply(dA, np.greater(S, 0))
        if self.name == "identity":
            return dA
        return dA * self.dsigma(S)

    def backprop_from_output(self, dZ: Array, Z: Array, out: Array | None = None) -> Array:
        """``dZ ⊙ sigma'(S)`` with ``sigma'(S)`` read from ``Z = sigma(S)`` (equation (6)'s mask product).

        For ReLU ``dZ ⊙ I[Z > 0]`` in one pass, in ``dZ``'s dtype.  ``out``
        (``dZ``'s shape and dtype) receives the result if given.

        Examples
        --------
        >>> ACTIVATIONS["relu"].backprop_from_output(np.array([1., 2.]), np.array([0., 4.]))
        array([0., 2.])
        """
        if self.dsigma_from_output is None:
            raise ConfigError(f"sigma' of {self.name!r} does not follow from sigma(S)")
        if self.name == "relu":
            return np.multiply(dZ, np.greater(Z, 0), out=out)
        if self.name == "identity":
            if out is None:
                return dZ
            np.copyto(out, dZ)
            return out
        return np.multiply(dZ, self.dsigma_from_output(Z), out=out)

    def sigma_into(self, S: Array, out: Array) -> Array:
        """``sigma(S)`` written into ``out`` (which may be ``S`` itself); returns ``out``.

        Examples
        --------
        >>> S = np.array([-1.0, 2.0])
        >>> ACTIVATIONS["relu"].sigma_into(S, S) is S, S
        (True, array([0., 2.]))
        """
        if self.name == "relu":
            return np.maximum(S, 0.0, out=out)
        if self.name != "identity" or out is not S:
            out[...] = self.sigma(S)
        return out


def _relu(S: Array) -> Array:
    return np.maximum(S, 0.0)


def _relu_prime(S: Array) -> Array:
    return (S > 0).astype(S.dtype)


def _identity(S: Array) -> Array:
    return S


def _ones(S: Array) -> Array:
    return np.ones_like(S)


def _tanh_prime(S: Array) -> Array:
    return 1.0 - np.tanh(S) ** 2


def _tanh_prime_from_output(Z: Array) -> Array:
    return 1.0 - Z * Z


def _sigmoid(S: Array) -> Array:
    out = np.empty_like(S)
    pos = S >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-S[pos]))
    e = np.exp(S[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _sigmoid_prime(S: Array) -> Array:
    z = _sigmoid(S)
    return z * (1.0 - z)


def _sigmoid_prime_from_output(Z: Array) -> Array:
    return Z * (1.0 - Z)


def _leaky(S: Array) -> Array:
    return np.where(S > 0, S, LEAKY_SLOPE * S)


def _leaky_prime(S: Array) -> Array:
    return np.where(S > 0, 1.0, LEAKY_SLOPE).astype(S.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, _relu_prime, _relu_prime, True),
    "identity": Activation("identity", _identity, _ones, _ones, True),
    "tanh": Activation("tanh", np.tanh, _tanh_prime, _tanh_prime_from_output, True),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_prime, _sigmoid_prime_from_output, True),
    "leaky_relu": Activation("leaky_relu", _leaky, _leaky_prime, _leaky_prime, True),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name, with an error listing the known ones.

    Examples
    --------
    >>> get_activation("tanh").name
    'tanh'
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"activation sigma must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None
