"""Recovery rules: when a quantity of the forward pass can be rebuilt from others.

The slides end on a question: must ``Z^{m,i}`` and ``S^{m,i}`` both be kept?
The backward pass reads ``S^m`` only through ``sigma'(S^m)`` in equation (5),

    dxi/dvec(S^m)^T = (dxi/dvec(Z^{m+1})^T P_pool^m) ⊙ vec(sigma'(S^m))^T,

and for ReLU with max pooling equation (6) replaces it with

    dxi/dvec(S^m)^T = (dxi/dvec(Z^{m+1})^T ⊙ vec(I[Z^{m+1}])^T) P_pool^m.

This module states, for one layer at a time, which such recoveries are valid.
The planner (:mod:`sparsecnn.planner.graph`) adds an alternative edge to the
compute graph only where the rule here says it holds.

The rules
---------
1. **sigma' from Z^{m+1}, max pooling** (equation (6) and its kin). Only the
   winners of max pooling receive a gradient (equation (7) puts
   ``dxi/dZ^{m+1}`` at the winners and zeros elsewhere), and ``Z^{m+1}``
   holds ``sigma(S^m)`` at exactly those winners.  So ``sigma'(S^m)`` at the
   winners is known from ``Z^{m+1}`` whenever ``sigma'`` is a function of
   ``sigma``: ReLU ``I[z > 0]``, leaky ReLU by the sign of ``z``, tanh
   ``1 - z^2``, sigmoid ``z (1 - z)``, identity ``1``.  This is
   :attr:`sparsecnn.layers.ConvShape.eq6_valid`.
2. **sigma' from sigma(S), no pooling** (``r = 1``, and every full layer):
   ``Z^{m+1} = sigma(S^m)`` entry by entry, so the same functions give
   ``sigma'(S^m)`` everywhere.
3. **Average pooling with a non-identity activation: nothing recovers
   sigma'.**  ``Z^{m+1}`` holds window averages of ``sigma(S^m)``, and an
   average does not determine ``sigma'`` at each entry of its window.  There
   the backward pass must read ``sigma'(S^m)`` kept, or ``S^m`` kept (from
   which ``sigma'`` follows elementwise).  With the identity ``sigma' = 1``
   and nothing is needed.
4. **Winners** are kept (one small integer per pooled output: the offset of
   the winner inside its ``r x r`` window, ``0..r^2-1``, as ``uint8`` when
   ``r^2 <= 256``) or recomputed from ``sigma(S^m)``, itself recomputed from
   ``S^m`` elementwise.  They are recomputed from ``sigma(S^m)``, as the
   forward pass found them, not from ``S^m`` directly: ReLU maps all negative
   entries to 0, so the argmax of ``S^m`` and of ``sigma(S^m)`` can differ.
5. **phi(pad(Z^m))** is recomputed from ``Z^m`` by the sparse products
   ``P_phi P_pad vec(Z^m)`` (no GEMM).
6. **Forward segments**: ``S^m`` needs a GEMM with ``W^m``; a byte budget
   may recompute it from a kept ``phi(pad(Z^m))`` or ``Z^m`` (a checkpoint),
   ``Z^1 = X`` being always available.
7. **Storage**: ``sigma'(S^m)`` takes two values for ReLU (``0, 1``) and leaky
   ReLU (``0.01, 1``), decided by ``S > 0``: one byte (``bool``) per entry is
   exact.  Tanh and sigmoid keep ``float64``.

Where this differs from the issue
---------------------------------
The issue's example says "leaky ReLU or tanh followed by max pooling" must
keep ``sigma'(S^m)``.  That is not so: by rule 1 equation (6) holds for
them exactly as for ReLU (``sigma'`` at the winners is read from
``Z^{m+1}``; finite differences and PyTorch confirm the gradient).  The
genuinely unrecoverable case is rule 3, average pooling with a
non-identity activation, and it is there that the planner keeps
``sigma'(S^m)`` (or ``S^m``).  The slides' last note, "for general cases we
might not be able to avoid storing sigma'(S^{m,i})", is right in spirit; the
cases it covers are narrower than the issue's example.

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((8, 8, 1), [ConvLayer(2, h=3, r=2, activation="tanh"),
...                           ConvLayer(2, h=1, r=2, activation="tanh", pool="avg"),
...                           FullLayer(3)])
>>> sigma_prime_from_next_Z(net.layers[0]), sigma_prime_from_next_Z(net.layers[1])
(True, False)
>>> needs_sigma_prime(net.layers[1]), dsigma_dtype(net.layers[1])
(True, dtype('float64'))
"""

from __future__ import annotations

import numpy as np

from ..activations import LEAKY_SLOPE
from ..layers import ConvShape, FullShape

__all__ = [
    "Layer",
    "BOOL_DSIGMA",
    "needs_sigma_prime",
    "sigma_prime_from_next_Z",
    "dsigma_dtype",
    "dsigma_bytes",
    "winners_dtype",
    "has_winners",
]

Layer = ConvShape | FullShape

BOOL_DSIGMA: dict[str, tuple[float, float]] = {
    "relu": (0.0, 1.0),
    "leaky_relu": (LEAKY_SLOPE, 1.0),
}
"""Activations whose ``sigma'(S)`` is ``lo`` where ``S <= 0`` and ``hi`` where
``S > 0``: the stored ``bool`` array ``S > 0`` determines it exactly."""


def needs_sigma_prime(ly: Layer) -> bool:
    """Whether the backward pass of layer ``m`` reads ``sigma'(S^m)`` at all.

    False for the identity (``sigma' = 1``): equation (5) reduces to equation (7).

    Examples
    --------
    >>> from sparsecnn import Network, FullLayer
    >>> net = Network((1, 1, 2), [FullLayer(3), FullLayer(2)])
    >>> needs_sigma_prime(net.layers[0]), needs_sigma_prime(net.layers[1])
    (True, False)
    """
    return ly.sigma.name != "identity"


def sigma_prime_from_next_Z(ly: Layer) -> bool:
    """Whether the ``sigma'(S^m)`` the backward pass needs follows from ``Z^{m+1}`` (rules 1-3).

    For a full layer or a conv layer without pooling: ``sigma'`` must be a
    function of ``sigma`` (``Activation.dsigma_from_output``).  With max
    pooling the same, at the winners (equation (6)).  With average pooling
    only the identity (rule 3); this is ``ConvShape.eq6_valid``.

    Parameters
    ----------
    ly : ConvShape or FullShape
        Layer ``m`` of a built network (``net.layers[m-1]``).

    Returns
    -------
    bool

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2),
    ...                           ConvLayer(2, h=1, r=3, activation="sigmoid", pool="avg"),
    ...                           FullLayer(4, activation="tanh"), FullLayer(3)])
    >>> [sigma_prime_from_next_Z(ly) for ly in net.layers]
    [True, False, True, True]
    """
    if isinstance(ly, FullShape) or not ly.pools:
        return ly.sigma.dsigma_from_output is not None
    return bool(ly.eq6_valid)


def dsigma_dtype(ly: Layer) -> np.dtype:
    """The smallest exact dtype of a kept ``sigma'(S^m)`` (rule 7): ``bool`` or ``float64``.

    Parameters
    ----------
    ly : ConvShape or FullShape

    Returns
    -------
    numpy.dtype
        ``bool`` for the activations of :data:`BOOL_DSIGMA` (ReLU, leaky ReLU), whose
        ``sigma'`` is fixed by ``S > 0``; ``float64`` otherwise.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2, activation="leaky_relu"),
    ...                           FullLayer(4, activation="tanh"), FullLayer(3)])
    >>> [dsigma_dtype(ly) for ly in net.layers]
    [dtype('bool'), dtype('float64'), dtype('float64')]
    """
    return np.dtype(bool) if ly.sigma.name in BOOL_DSIGMA else np.dtype(np.float64)


def dsigma_bytes(ly: Layer) -> int:
    """Bytes per instance of a kept ``sigma'(S^m)``: one entry per entry of ``S^m``.

    ``S^{m,i}`` has ``d^{m+1} a^m_conv b^m_conv`` entries in a conv layer and
    ``n_{m+1}`` in a full layer; each takes ``dsigma_dtype(ly).itemsize`` bytes.

    Parameters
    ----------
    ly : ConvShape or FullShape

    Returns
    -------
    int

    Examples
    --------
    ``S^1`` of ``ConvLayer(2, h=3, p=1)`` on a ``6 x 6 x 1`` image is ``2 x 36``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(4, activation="tanh"),
    ...                           FullLayer(3)])
    >>> [dsigma_bytes(ly) for ly in net.layers]          # bool, then float64
    [72, 32, 24]
    """
    n = ly.n_S if isinstance(ly, ConvShape) else ly.n_out
    return n * dsigma_dtype(ly).itemsize


def has_winners(ly: Layer) -> bool:
    """Whether layer ``m`` has max-pooling winners (a data-dependent ``P_pool^{m,i}``).

    Parameters
    ----------
    ly : ConvShape or FullShape

    Returns
    -------
    bool
        True for a conv layer with max pooling and ``r^m > 1``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), ConvLayer(2, h=1, r=1),
    ...                           ConvLayer(2, h=1, r=3, pool="avg"), FullLayer(3)])
    >>> [has_winners(ly) for ly in net.layers]
    [True, False, False, False]
    """
    return isinstance(ly, ConvShape) and ly.max_pools


def winners_dtype(r: int) -> np.dtype:
    """Dtype of a kept winner, the offset ``0..r^2-1`` inside its window (rule 4).

    Examples
    --------
    >>> winners_dtype(2), winners_dtype(16), winners_dtype(17)
    (dtype('uint8'), dtype('uint8'), dtype('uint16'))
    """
    if r * r <= 256:
        return np.dtype(np.uint8)
    if r * r <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)
