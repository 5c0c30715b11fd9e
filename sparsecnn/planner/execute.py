"""The executor: a forward pass that keeps exactly what a plan retains, and a
backward pass that rebuilds the rest by the plan's recipes.

Kept quantities are stored at their planned dtype: ``sigma'(S^m)`` as the
``bool`` array ``S^m > 0`` for ReLU and leaky ReLU, winners as the offset of
the winner inside its ``r x r`` window (``uint8`` when ``r^2 <= 256``),
expanded back to positions in ``vec(sigma(S^m))`` when ``P_pool^{m,i}`` is
needed.  Recomputed quantities live only during the backward pass of their
layer (or of the layer above, for ``Z^{m+1}``).

The backward pass follows the plan's choice for ``dxi/dS^m``: equation (6)
(``sigma'`` at the winners read from ``Z^{m+1}``), equation (5) (with
``sigma'(S^m)`` kept or from ``S^m``), or their forms without pooling.  The
arithmetic is the same as :meth:`sparsecnn.Network._backward`'s on a
store-all cache, so gradients agree to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import Workspace
from ..layers import ConvShape, FullShape
from . import rules
from .plan import Plan

__all__ = ["forward_planned", "backward_planned", "fused", "winner_offsets", "winner_positions"]


def _window_starts(ly: ConvShape) -> np.ndarray:
    """Position in ``vec(sigma(S^m))`` of the first entry of each pooling window, in output order."""
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    q_o, r_o, c = np.meshgrid(np.arange(ly.b_out), np.arange(ly.a_out), np.arange(d), indexing="ij")
    return (c + d * (r_o * r + a_conv * (q_o * r))).ravel().astype(np.int64)


def winner_offsets(ly: ConvShape, winners: np.ndarray) -> np.ndarray:
    """Winners as offsets ``k = dr + r dq`` inside their ``r x r`` window (column-major), compact dtype.

    Parameters
    ----------
    ly : ConvShape
    winners : integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        Positions in ``vec(sigma(S^m))`` (as from ``ConvShape.winners``).

    Returns
    -------
    ndarray of ``rules.winners_dtype(r)``, same shape.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), FullLayer(2)]).layers[0]
    >>> w = np.array([[5], [7], [13], [14]])          # the slides' 4x4 example
    >>> k = winner_offsets(ly, w); k.ravel(), k.dtype
    (array([3, 3, 3, 2], dtype=uint8), dtype('uint8'))
    >>> winner_positions(ly, k).ravel()
    array([ 5,  7, 13, 14], dtype=int32)
    """
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    idx = np.int32 if ly.n_S < 2**31 - 1 else np.int64
    delta = np.asarray(winners, dtype=idx) - _window_starts(ly).astype(idx)[:, None]   # d (dr + a_conv dq)
    dq = delta // (d * a_conv)
    delta -= dq * (d * a_conv)
    delta //= d                                                                        # dr
    dq *= r
    dq += delta
    return dq.astype(rules.winners_dtype(r))


def winner_positions(ly: ConvShape, offsets: np.ndarray) -> np.ndarray:
    """Inverse of :func:`winner_offsets`: positions in ``vec(sigma(S^m))`` (int32).

    Parameters
    ----------
    ly : ConvShape
    offsets : integer ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        Offsets ``k = dr + r dq`` of the winners inside their windows.

    Returns
    -------
    int32 ndarray, same shape: the winners as :meth:`ConvShape.winners` gives them.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), FullLayer(2)]).layers[0]
    >>> k = np.array([[3], [3], [3], [2]], dtype=np.uint8)      # the slides' 4x4 example
    >>> winner_positions(ly, k).ravel().tolist()
    [5, 7, 13, 14]
    >>> w = ly.winners(np.random.default_rng(0).standard_normal((16, 5)))
    >>> np.array_equal(winner_positions(ly, winner_offsets(ly, w)), w)
    True
    """
    d, a_conv, r = ly.d_out, ly.a_conv, ly.spec.r
    k = np.arange(r * r)
    lut = d * (k % r) + d * a_conv * (k // r)
    pos = _window_starts(ly)[:, None] + lut[np.asarray(offsets, dtype=np.intp)]
    return pos.astype(np.int32)


def _store_dsigma(ly: ConvShape | FullShape, S: np.ndarray) -> np.ndarray:
    if ly.sigma.name in rules.BOOL_DSIGMA:
        return np.greater(S, 0.0)
    return ly.sigma.dsigma(S)


def _owned(arr: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """``arr`` itself if it owns memory of its own size and shares none with ``others`` (the
    arrays kept so far and the work arrays shared by the layers); else a copy."""
    base = arr
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.base is not None or base.nbytes != arr.nbytes or any(np.may_share_memory(arr, o) for o in others):
        return np.array(arr, order="C")
    return arr


def fused(net: Any, plan: Plan, ly: ConvShape) -> bool:
    """Whether the executor runs layer ``m`` window by window (:meth:`ConvShape.conv_pool_forward`
    and :meth:`ConvShape.conv_pool_backward`).

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
    m = ly.m
    keep = set(plan.retained)
    return (ly.windowed and {f"pool{m}", f"Z{m + 1}"} <= keep
            and not keep & {f"phi{m}", f"S{m}", f"dsigma{m}"}
            and plan.recipe(f"dS{m}").rule in ("eq6", "eq5_identity"))


def forward_planned(net: Any, plan: Plan, Ws: list[np.ndarray], bs: list[np.ndarray], X: np.ndarray,
                    work: Workspace | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Forward pass for one batch keeping exactly ``plan.retained``.

    Returns ``(z^{L+1}, kept)``; ``kept`` maps each retained name to its array
    (``"Z{L+1}"`` is the output itself).  ``phi(pad(Z^m))`` and ``S^m`` come
    from one sweep (:meth:`sparsecnn.layers.ConvShape.conv_forward`).  With
    ``work``, the batch is consumed before the next pass that uses the same
    workspace (as in :meth:`sparsecnn.Network.objective`): quantities the plan
    keeps are formed in arrays of their own name there, reused batch after
    batch, and those it does not keep in arrays shared by all layers, so the
    memory held is the plan's plus one layer's temporaries.

    Parameters
    ----------
    net : Network
    plan : Plan
        Made for ``net`` (:meth:`sparsecnn.Network.plan`).
    Ws, bs : list of ndarray
        ``W^m`` and ``b^m`` at index ``m - 1`` (:meth:`sparsecnn.Network.unpack`).
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
    work : Workspace, optional
        Where the batch's arrays are formed (see above); ``None``: fresh arrays,
        the kept ones owned by the result.

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
    keep = set(plan.retained)
    kept: dict[str, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        if name in keep:
            kept[name] = arr if formed.get(name) is arr else _owned(arr, [*kept.values(), *shared])

    formed: dict[str, np.ndarray] = {}
    shared: list[np.ndarray] = []          # work arrays the next layer overwrites

    def scratch(name: str, shape: tuple[int, int], dtype: np.dtype, Z: np.ndarray) -> np.ndarray | None:
        if work is None:
            return None
        if name in keep:                                          # reused across batches
            formed[name] = work.get(name, shape, dtype)
            return formed[name]
        # one array for all layers, the other one where the input Z^m is the last one itself
        base = name.rstrip("0123456789")
        arr = work.get(work.apart_from(Z, base, base + "'"), shape, dtype)
        shared.append(arr)
        return arr

    Z = X
    dtype, l = X.dtype, X.shape[1]
    for ly in net.conv:
        m = ly.m
        if fused(net, plan, ly):
            # vec(Z^{m+1}) = P_pool vec(sigma(W^m phi(pad(Z^m)) + b^m 1^T)), a block of windows at a time
            k = rules.winners_dtype(ly.spec.r)
            Z, kept[f"pool{m}"] = ly.conv_pool_forward(
                Z, Ws[m - 1], bs[m - 1], order=net.activate_order,
                out=scratch(f"Z{m + 1}", (ly.n_out, l), dtype, Z),
                out_offsets=None if work is None else work.get(f"pool{m}", (ly.n_out, l), k))
            put(f"Z{m + 1}", Z)
            continue
        # vec(phi(pad(Z^m))) = P_phi P_pad vec(Z^m) and S^m = W^m phi(pad(Z^m)) + b^m 1^T, one sweep
        Phi, S = ly.conv_forward(Z, Ws[m - 1], bs[m - 1],
                                 out_phi=scratch(f"phi{m}", (ly.hhd * ly.n_pos, l), dtype, Z),
                                 out_S=scratch(f"S{m}", (ly.n_S, l), dtype, Z), keep_phi=f"phi{m}" in keep)
        if Phi is not None:
            put(f"phi{m}", Phi)
        del Phi
        put(f"S{m}", S)
        if f"dsigma{m}" in keep:
            kept[f"dsigma{m}"] = _store_dsigma(ly, S)
        # vec(Z^{m+1}) = P_pool vec(sigma(S^m)), in the network's order (Network.activate_order)
        Z, winners = ly.activate_pool(S, order=net.activate_order)
        del S
        if winners is not None and f"pool{m}" in keep:
            kept[f"pool{m}"] = winner_offsets(ly, winners)
        del winners
        put(f"Z{m + 1}", Z)
    for fl in net.full:
        m = fl.m
        s = fl.s(Ws[m - 1], bs[m - 1], Z)                         # s^m = W^m z^m + b^m
        put(f"S{m}", s)
        if f"dsigma{m}" in keep:
            kept[f"dsigma{m}"] = _store_dsigma(fl, s)
        Z = fl.sigma.sigma(s)                                     # z^{m+1} = sigma(s^m)
        del s
        put(f"Z{m + 1}", Z)
    return Z, kept


class _Store:
    """Kept quantities, decoded, and quantities rebuilt by the plan's recipes (memoised)."""

    def __init__(self, net: Any, plan: Plan, Ws: list[np.ndarray], bs: list[np.ndarray] | None,
                 X: np.ndarray | None, kept: dict[str, np.ndarray]) -> None:
        self.net, self.plan, self.Ws, self.bs, self.X, self.kept = net, plan, Ws, bs, X, kept
        self.tmp: dict[str, np.ndarray] = {}
        self.G = plan.graph

    def release_above(self, m: int) -> None:
        """Forget rebuilt quantities of layers ``>= m`` (the backward pass is done with them)."""
        for n in [n for n in self.tmp if self.G.nodes[n]["group"] >= m]:
            del self.tmp[n]

    def peek(self, name: str) -> np.ndarray | None:
        """``name`` if it is kept or already rebuilt, else ``None`` (nothing is computed)."""
        if name in self.tmp or name in self.kept:
            return self.get(name)
        return None

    def get(self, name: str) -> np.ndarray:
        if name in self.tmp:
            return self.tmp[name]
        if name in self.kept:
            value = self._decode(name, self.kept[name])
        elif name == "Z1":
            if self.X is None:
                raise ValueError("this plan rebuilds quantities from X: pass X to the backward pass")
            return self.X
        else:
            value = self._compute(name)
        self.tmp[name] = value
        return value

    def _layer(self, name: str) -> ConvShape | FullShape:
        ly: ConvShape | FullShape = self.net.layers[self.G.nodes[name]["group"] - 1]
        return ly

    def _decode(self, name: str, arr: np.ndarray) -> np.ndarray:
        if name.startswith("pool"):
            ly = self._layer(name)
            assert isinstance(ly, ConvShape)
            return winner_positions(ly, arr)
        if name.startswith("dsigma") and arr.dtype == bool:
            lo, hi = rules.BOOL_DSIGMA[self._layer(name).sigma.name]
            return np.where(arr, hi, lo)
        return arr

    def _compute(self, name: str) -> np.ndarray:
        r = self.plan.recipe(name)
        ly = self._layer(name)
        m = ly.m
        rule = r.rule
        if rule == "phi":
            assert isinstance(ly, ConvShape)
            # a fresh array: a rebuilt quantity may be needed while a lower layer rebuilds its own
            return ly.phi(self.get(f"Z{m}"))                      # P_phi P_pad vec(Z^m), pad included
        if rule == "pad":                                         # only ever needed on the way to phi
            raise AssertionError("pad(Z) is built inside ConvShape.phi")
        if rule in ("S_conv", "S_full"):
            if self.bs is None:
                raise ValueError("this plan recomputes S by a GEMM: pass the biases to the backward pass")
            W, b = self.Ws[m - 1], self.bs[m - 1]
            if isinstance(ly, ConvShape):
                return ly.S(W, b, self.get(f"phi{m}"))
            return ly.s(W, b, self.get(f"Z{m}"))
        if rule == "sigma":
            return ly.sigma.sigma(self.get(f"S{m}"))
        if rule == "winners":
            assert isinstance(ly, ConvShape)
            w = ly.winners(self.get(f"sigma{m}"))
            assert w is not None
            return w
        if rule == "pool_max":
            assert isinstance(ly, ConvShape)
            return ly.pool(self.get(f"sigma{m}"), self.get(f"pool{m}"))
        if rule == "pool_avg":
            assert isinstance(ly, ConvShape)
            return ly.pool(self.get(f"sigma{m}"), None)
        if rule == "Z_sigma":
            return ly.sigma.sigma(self.get(f"S{m}"))
        if rule == "dsigma_S":
            return ly.sigma.dsigma(self.get(f"S{m}"))
        if rule in ("dsigma_Z", "dsigmaZ"):
            from_output = ly.sigma.dsigma_from_output
            assert from_output is not None
            return from_output(self.get(f"Z{m + 1}"))
        raise AssertionError(f"no executor for recipe {r.id}")


def backward_planned(net: Any, plan: Plan, Ws: list[np.ndarray], bs: list[np.ndarray] | None,
                     X: np.ndarray | None, kept: dict[str, np.ndarray], dZ: np.ndarray,
                     work: Workspace | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Backward pass for one batch from ``dZ = dxi/dz^{L+1}``, following ``plan``.

    Returns ``(dWs, dbs)`` as :meth:`sparsecnn.Network._backward` does, with the
    same sweeps (:meth:`sparsecnn.layers.ConvShape.conv_backward`); ``work``, if
    given, holds ``dxi/dS^m`` and ``dxi/dZ^m`` (arrays shared by the layers).

    Parameters
    ----------
    net : Network
    plan : Plan
        The plan :func:`forward_planned` followed.
    Ws : list of ndarray
        ``W^m`` at index ``m - 1``.
    bs : list of ndarray or None
        ``b^m``; needed only where the plan recomputes ``S^m`` by a GEMM.
    X : ndarray or None
        The batch's input ``Z^1``; needed only where the plan rebuilds from it.
    kept : dict of str to ndarray
        What :func:`forward_planned` kept.
    dZ : ndarray, shape ``(n_L, l)``
        ``dxi/dz^{L+1,i}`` in column ``i``.
    work : Workspace, optional
        Where the temporaries of the backward pass are formed.

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
    st = _Store(net, plan, Ws, bs, X, kept)
    L = net.L
    dtype, l = dZ.dtype, dZ.shape[1]
    dWs: list[np.ndarray] = [np.empty(0)] * L
    dbs: list[np.ndarray] = [np.empty(0)] * L
    for fl in reversed(net.full):
        m = fl.m
        rule = plan.recipe(f"dS{m}").rule
        ds = dZ * st.get(f"dsigma{m}") if rule == "eq4" else dZ                 # (4)
        dWs[m - 1], dbs[m - 1], dZ = fl.s_T(Ws[m - 1], st.get(f"Z{m}"), ds)   # (1)-(3)
        st.release_above(m)
    for ly in reversed(net.conv):
        m = ly.m
        if fused(net, plan, ly):
            # (6) then dxi/dW^m, dxi/db^m and vec(dxi/dZ^m), a block of windows at a time
            _, out_dZ = ly._backward_arrays(work, l, dtype, need_dS=False)
            dWs[m - 1], dbs[m - 1], dZn = ly.conv_pool_backward(
                Ws[m - 1], st.get(f"Z{m}"), dZ, st.get(f"Z{m + 1}"), kept[f"pool{m}"], need_dZ=m > 1,
                out=out_dZ)
            st.release_above(m)
            if dZn is not None:
                dZ = dZn
            continue
        rule = plan.recipe(f"dS{m}").rule
        winners = st.get(f"pool{m}") if ly.max_pools else None
        out_dS, out_dZ = ly._backward_arrays(work, l, dtype)
        if rule == "eq6":
            dS = ly.pool_T(dZ * st.get(f"dsigmaZ{m}"), winners, out=out_dS)    # (6)
        elif rule == "eq5":
            dS = ly.pool_T(dZ, winners, out=out_dS)                             # (7), (5)
            dS *= st.get(f"dsigma{m}")
        elif rule == "eq5_identity":
            dS = ly.pool_T(dZ, winners, out=out_dS)                             # (7), sigma' = 1
        elif rule == "eq5_nopool":
            dS = dZ * st.get(f"dsigma{m}")                                      # (5), P_pool = I
        else:
            dS = dZ
        # dxi/dW^m = dxi/dS^m phi^T, dxi/db^m = dxi/dS^m 1 and (m > 1)
        # vec(dxi/dZ^m) = P_pad^T P_phi^T vec((W^m)^T dxi/dS^m), one sweep; where the plan
        # rebuilds phi(pad(Z^m)), the sweep gathers each block of it from Z^m as it goes
        Phi = st.peek(f"phi{m}")
        dWs[m - 1], dbs[m - 1], dZn = ly.conv_backward(Ws[m - 1], Phi, dS, need_dZ=m > 1, out=out_dZ,
                                                       Z=st.get(f"Z{m}") if Phi is None else None)
        del Phi
        del dS
        st.release_above(m)
        if dZn is not None:
            dZ = dZn
    return dWs, dbs
