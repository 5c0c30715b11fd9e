"""Following a plan: the engine's forward and backward pass (:mod:`sparsecnn.engine`) with a plan's choices.

Kept quantities are stored at their planned dtype: ``sigma'(S^m)`` as the
``bool`` array ``S^m > 0`` for ReLU and leaky ReLU, winners as the offset of
the winner inside its ``r x r`` window (``uint8`` when ``r^2 <= 256``),
expanded back to positions in ``vec(sigma(S^m))`` when ``P_pool^{m,i}`` is
needed.  Recomputed quantities are rebuilt by the plan's recipes, each of which
carries its own compute function (:mod:`sparsecnn.planner.graph`), and live
only during the backward pass of their layer.  The loops themselves are the
engine's (:func:`sparsecnn.engine.forward`, :func:`sparsecnn.engine.backward`),
the same that serve a network without a plan.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import Keep, backward, forward, winner_offsets, winner_positions
from ..kernels import Workspace
from .plan import Plan

__all__ = ["forward_planned", "backward_planned", "fused", "winner_offsets", "winner_positions"]


def fused(net: Any, plan: Plan, ly: Any) -> bool:
    """Whether layer ``m`` runs window by window under ``plan`` (fast backend).

    It does where max pooling follows, the plan keeps ``Z^{m+1}`` and the
    winners but none of ``phi(pad(Z^m))``, ``S^m``, ``sigma'(S^m)``, and takes
    ``dxi/dS^m`` by equation (6) (or its identity form): then nothing of the
    layer but ``Z^{m+1}`` and the winners outlives a block of windows.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> fused(net, net.plan("slides"), net.conv[0]), fused(net, net.plan("store-all"), net.conv[0])
    (True, False)
    """
    return ly.m in Keep.from_plan(net, plan, windowed=True).windowed


def forward_planned(net: Any, plan: Plan, Ws: list[np.ndarray], bs: list[np.ndarray], X: np.ndarray,
                    work: Workspace | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Forward pass for one batch keeping exactly ``plan.retained`` (the network's backend).

    Returns ``(z^{L+1}, kept)``; ``kept`` maps each retained name to its array
    (``"Z{L+1}"`` is the output itself).  See :func:`sparsecnn.engine.forward`.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> plan, theta = net.plan("min-memory"), net.init_params(seed=0)
    >>> Ws, bs = net.unpack(theta)
    >>> X = np.random.default_rng(0).random((16, 3))
    >>> out, kept = forward_planned(net, plan, Ws, bs, X)
    >>> plan.retained, kept["pool1"].dtype        # winners as offsets in their 2 x 2 window
    (('pool1', 'Z2', 'Z3'), dtype('uint8'))
    >>> kept["Z3"] is out, np.allclose(out, net.output(theta, X))
    (True, True)
    """
    keep = Keep.from_plan(net, plan, windowed=net.backend.windowed)
    return forward(net, net.backend, keep, Ws, bs, X, work=work)


def backward_planned(net: Any, plan: Plan, Ws: list[np.ndarray], bs: list[np.ndarray] | None,
                     X: np.ndarray | None, kept: dict[str, np.ndarray], dZ: np.ndarray,
                     work: Workspace | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Backward pass for one batch from ``dZ = dxi/dz^{L+1}``, following ``plan``.

    Returns ``(dWs, dbs)``; see :func:`sparsecnn.engine.backward`.

    Examples
    --------
    The gradients of ``sum_i dZ_i^T z^{L+1,i}`` are ``J^T dZ``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> plan, theta = net.plan("min-memory"), net.init_params(seed=0)
    >>> Ws, bs = net.unpack(theta)
    >>> X = np.random.default_rng(0).random((16, 3))
    >>> _, kept = forward_planned(net, plan, Ws, bs, X)
    >>> dZ = np.random.default_rng(1).standard_normal((3, 3))
    >>> dWs, dbs = backward_planned(net, plan, Ws, bs, X, kept, dZ)
    >>> [dW.shape for dW in dWs], [db.shape for db in dbs]
    ([(2, 9), (3, 8)], [(2,), (3,)])
    >>> np.allclose(net.pack(dWs, dbs), net.JTv(theta, X, dZ))
    True
    """
    keep = Keep.from_plan(net, plan, windowed=net.backend.windowed)
    return backward(net, net.backend, keep, Ws, bs, X, kept, dZ, work=work)
