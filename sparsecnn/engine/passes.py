"""The engine's three loops over the layers: forward, backward, and the R-operator forward pass.

Each loop is written once.  At every step it calls one equation through the
backend (:mod:`sparsecnn.engine.backends`), and reads what the forward pass
kept, or rebuilds it, through the store (:mod:`sparsecnn.engine.store`).
What is kept is the :class:`~sparsecnn.engine.store.Keep`'s choice: a plan,
everything, or nothing but the output; winners are kept as offsets inside their
window (:mod:`sparsecnn.engine.winners`) and may be given from outside as
positions (``winners={m: ...}``).

Forward, conv layer ``m``::

    vec(phi(pad(Z^m))) = P_phi P_pad vec(Z^m)                 backend.conv_forward
    S^m                = W^m phi(pad(Z^m)) + b^m 1^T
    vec(Z^{m+1})       = P_pool^m vec(sigma(S^m))             backend.activate_pool

Backward, conv layer ``m`` (``dxi/dS^m`` by the plan's recipe: equation (5) or (6))::

    dxi/dvec(S^m)      = recipe "dS{m}"                        (5), (6), (7)
    dxi/dW^m, dxi/db^m, vec(dxi/dZ^m)                          backend.conv_backward

Full layer ``m``: ``s^m = W^m z^m + b^m``, ``z^{m+1} = sigma(s^m)``; backward
(4) then (1)-(3).  Layers in ``keep.windowed`` (fast backend) take all three
steps of the forward or the backward pass in one window-by-window kernel.

Examples
--------
>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> from sparsecnn.engine import Keep, get_backend
>>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> Ws, bs = net.unpack(net.init_params(seed=0))
>>> X = np.random.default_rng(0).random((36, 4))
>>> keep = Keep.everything(net, "auto")
>>> out, kept = forward(net, get_backend("reference"), keep, Ws, bs, X)
>>> dWs, dbs = backward(net, get_backend("reference"), keep, Ws, bs, X, kept, np.ones((3, 4)))
>>> out2, kept2 = forward(net, get_backend("fast"), keep, Ws, bs, X)
>>> bool(np.allclose(out, out2, rtol=1e-13)), [dW.shape for dW in dWs]
(True, [(2, 9), (3, 18)])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import ConfigError
from ..kernels import Workspace
from .store import Keep, Store
from .winners import winner_offsets

__all__ = ["forward", "backward", "R_forward", "batches"]


def batches(l: int, batch_size: int) -> Iterator[slice]:
    """The batches of ``l`` instances, ``batch_size`` at a time: the one batch loop of the library.

    Examples
    --------
    >>> [(sl.start, sl.stop) for sl in batches(5, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    for start in range(0, l, batch_size):
        yield slice(start, min(start + batch_size, l))


def _owned(arr: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """``arr`` itself if it owns memory of its own size and shares none with ``others`` (the
    arrays kept so far and the work arrays shared by the layers); else a copy."""
    base = arr
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.base is not None or base.nbytes != arr.nbytes or any(np.may_share_memory(arr, o) for o in others):
        return np.array(arr, order="C")
    return arr


def _store_dsigma(ly: Any, S: np.ndarray) -> np.ndarray:
    if ly.sigma.name in ("relu", "leaky_relu"):                  # planner.rules.BOOL_DSIGMA: S > 0 decides
        return np.greater(S, 0.0)
    return ly.sigma.dsigma(S)


def forward(net: Any, backend: Any, keep: Keep, Ws: Sequence[np.ndarray], bs: Sequence[np.ndarray],
            X: np.ndarray, *, winners: Mapping[int, np.ndarray] | None = None,
            work: Workspace | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Forward pass of one batch: ``z^{L+1}`` and the quantities ``keep`` retains.

    Parameters
    ----------
    net : Network
    backend : Backend
    keep : Keep
    Ws, bs : list of ndarray
        ``W^m``, ``b^m`` at index ``m - 1``, in ``X``'s dtype.
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
    winners : mapping of int to ndarray, optional
        ``{m: positions in vec(sigma(S^m))}`` of shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        for max-pooling layers: ``P_pool^m`` is built from them instead of the argmax.
    work : Workspace, optional
        Where the batch's arrays are formed: kept ones in arrays of their own
        name (reused batch after batch), the others in arrays shared by the
        layers; the batch is consumed before the next pass that uses ``work``.

    Returns
    -------
    (out, kept)
        ``kept`` maps each retained name to its array (winners as offsets).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.engine import Keep, get_backend
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> Ws, bs = net.unpack(net.init_params(seed=0))
    >>> X = np.random.default_rng(0).random((36, 4))
    >>> out, kept = forward(net, get_backend("reference"), Keep.from_plan(net, net.plan("slides"), windowed=False),
    ...                     Ws, bs, X)
    >>> out.shape, sorted(kept), kept["pool1"].dtype
    ((3, 4), ['Z2', 'Z3', 'pool1'], dtype('uint8'))
    """
    keep_names = keep.retained
    kept: dict[str, np.ndarray] = {}
    formed: dict[str, np.ndarray] = {}
    shared: list[np.ndarray] = []          # work arrays the next layer overwrites
    given = dict(winners or {})

    def put(name: str, arr: np.ndarray) -> None:
        if name in keep_names:
            kept[name] = arr if formed.get(name) is arr else _owned(arr, [*kept.values(), *shared])

    def scratch(name: str, shape: tuple[int, int], dtype: np.dtype, Z: np.ndarray) -> np.ndarray | None:
        if work is None:
            return None
        if name in keep_names:                                    # reused across batches
            formed[name] = work.get(name, shape, dtype)
            return formed[name]
        base = name.rstrip("0123456789")                          # one array for all layers, or the other
        arr = work.get(work.apart_from(Z, base, base + "'"), shape, dtype)
        shared.append(arr)
        return arr

    windowed = _windowed(keep, backend)
    Z = X
    dtype, l = X.dtype, X.shape[1]
    if "Z1" in keep_names:
        kept["Z1"] = X
    for ly in net.conv:
        m = ly.m
        W, b = Ws[m - 1], bs[m - 1]
        w_given = given.get(m)
        if m in windowed and w_given is None:
            # vec(Z^{m+1}) = P_pool vec(sigma(W^m phi(pad(Z^m)) + b^m 1^T)), a block of windows at a time
            k_type = np.min_scalar_type(ly.spec.r ** 2 - 1)
            Z, offsets = backend.conv_pool_forward(
                ly, Z, W, b, order=net.activate_order, out=scratch(f"Z{m + 1}", (ly.n_out, l), dtype, Z),
                out_offsets=None if work is None else work.get(f"pool{m}", (ly.n_out, l), k_type))
            if f"pool{m}" in keep_names:
                kept[f"pool{m}"] = offsets
            del offsets
            put(f"Z{m + 1}", Z)
            continue
        # vec(phi(pad(Z^m))) = P_phi P_pad vec(Z^m) and S^m = W^m phi(pad(Z^m)) + b^m 1^T
        Phi, S = backend.conv_forward(ly, Z, W, b, keep_phi=f"phi{m}" in keep_names,
                                      out_phi=scratch(f"phi{m}", (ly.hhd * ly.n_pos, l), dtype, Z),
                                      out_S=scratch(f"S{m}", (ly.n_S, l), dtype, Z))
        if Phi is not None:
            put(f"phi{m}", Phi)
        del Phi
        put(f"S{m}", S)
        if f"dsigma{m}" in keep_names:
            kept[f"dsigma{m}"] = _store_dsigma(ly, S)
        # vec(Z^{m+1}) = P_pool vec(sigma(S^m)); P_pool from the argmax or from the winners given
        Z, w = backend.activate_pool(ly, S, net.activate_order, w_given)
        del S
        if w is not None and f"pool{m}" in keep_names:
            kept[f"pool{m}"] = winner_offsets(ly, w)
        del w
        put(f"Z{m + 1}", Z)
    for fl in net.full:
        m = fl.m
        s = backend.s(fl, Ws[m - 1], bs[m - 1], Z)                # s^m = W^m z^m + b^m
        put(f"S{m}", s)
        if f"dsigma{m}" in keep_names:
            kept[f"dsigma{m}"] = _store_dsigma(fl, s)
        Z = fl.sigma.sigma(s)                                     # z^{m+1} = sigma(s^m)
        del s
        put(f"Z{m + 1}", Z)
    return Z, kept


def _windowed(keep: Keep, backend: Any) -> frozenset[int]:
    """The layers that run window by window: those ``keep`` marks, where the backend has the kernels."""
    return keep.windowed if backend.windowed else frozenset()


def _dS(keep: Keep, st: Store, ly: Any, dZ: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``dxi/dS^m`` from ``dxi/dZ^{m+1}`` by the recipe ``keep`` chose (equation (4), (5) or (6))."""
    compute = keep.recipe(f"dS{ly.m}").compute
    assert compute is not None
    dS: np.ndarray = compute(st, ly, dZ, out)
    return dS


def backward(net: Any, backend: Any, keep: Keep, Ws: Sequence[np.ndarray], bs: Sequence[np.ndarray] | None,
             X: np.ndarray | None, kept: dict[str, np.ndarray], dZ: np.ndarray,
             work: Workspace | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Backward pass of one batch from ``dZ = dxi/dz^{L+1}`` (one column per instance).

    Returns the gradients of ``sum_i`` (column ``i`` of ``dZ``)``^T z^{L+1,i}``
    with respect to each ``W^m`` and ``b^m`` (lists at index ``m - 1``): with
    ``dZ = (1/l) dxi/dz^{L+1}`` the gradient of the loss term, with ``dZ = u``
    ``J^T u``.  ``X`` (and ``bs``, where ``S^m`` is rebuilt by a GEMM) let the
    store rebuild what ``keep`` did not retain; ``work`` holds ``dxi/dS^m`` and
    ``dxi/dZ^m``.  The products run in ``dZ``'s dtype.

    Examples
    --------
    With ``dZ = u`` the result is ``J^T u``, whatever is kept and whichever backend:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.engine import Keep, get_backend
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> Ws, bs = net.unpack(net.init_params(seed=0))
    >>> X = np.random.default_rng(0).random((36, 4))
    >>> u = np.random.default_rng(1).standard_normal((3, 4))
    >>> for keep in (Keep.everything(net, "auto"), Keep.from_plan(net, net.plan("min-memory"), windowed=True)):
    ...     for be in (get_backend("reference"), get_backend("fast")):
    ...         _, kept = forward(net, be, keep, Ws, bs, X)
    ...         assert np.allclose(net.pack(*backward(net, be, keep, Ws, bs, X, kept, u)), net.JTv(net.init_params(seed=0), X, u))
    """
    st = Store(net, backend, keep, list(Ws), None if bs is None else list(bs), X, kept)
    L = net.L
    dtype, l = dZ.dtype, dZ.shape[1]
    dWs: list[np.ndarray] = [np.empty(0)] * L
    dbs: list[np.ndarray] = [np.empty(0)] * L
    for fl in reversed(net.full):
        m = fl.m
        ds = _dS(keep, st, fl, dZ, None)                                               # (4)
        dWs[m - 1], dbs[m - 1], dZ = backend.s_T(fl, Ws[m - 1], st.get(f"Z{m}"), ds)   # (1)-(3)
        st.release_above(m)
    windowed = _windowed(keep, backend)
    for ly in reversed(net.conv):
        m = ly.m
        if m in windowed:
            # (6), then dxi/dW^m, dxi/db^m and vec(dxi/dZ^m), a block of windows at a time
            _, out_dZ = ly._backward_arrays(work, l, dtype, need_dS=False)
            dWs[m - 1], dbs[m - 1], dZn = backend.conv_pool_backward(
                ly, Ws[m - 1], st.get(f"Z{m}"), dZ, st.get(f"Z{m + 1}"), kept[f"pool{m}"], need_dZ=m > 1,
                out=out_dZ)
        else:
            out_dS, out_dZ = ly._backward_arrays(work, l, dtype)
            dS = _dS(keep, st, ly, dZ, out_dS)                                         # (5), (6), (7)
            # dxi/dW^m = dxi/dS^m phi^T, dxi/db^m = dxi/dS^m 1, vec(dxi/dZ^m) = P_pad^T P_phi^T vec(W^T dS);
            # where phi(pad(Z^m)) is not kept, the backend rebuilds it from Z^m
            Phi = st.peek(f"phi{m}")
            dWs[m - 1], dbs[m - 1], dZn = backend.conv_backward(
                ly, Ws[m - 1], Phi, dS, need_dZ=m > 1, out=out_dZ, Z=st.get(f"Z{m}") if Phi is None else None)
            del Phi, dS
        st.release_above(m)
        if dZn is not None:
            dZ = dZn
    return dWs, dbs


def _example_store(net: Any) -> Store:
    """The store of one forward pass of ``net`` under the plan "slides" on two random instances
    (fast backend, nothing run window by window): for the examples of :class:`Store`."""
    Ws, bs = net.unpack(net.init_params(seed=0))
    X = np.random.default_rng(0).random((net.n_input, 2))
    keep = Keep.from_plan(net, net.plan("slides"), windowed=False)
    _, kept = forward(net, net.backend, keep, Ws, bs, X)
    return Store(net, net.backend, keep, Ws, bs, X, kept)


def _pool_after_mask(ly: Any) -> bool:
    """Whether ``P_pool (sigma'(S^m) ⊙ R(S^m)) = (P_pool R(S^m)) ⊙ sigma'(S^m) read from Z^{m+1}``:
    ``sigma'`` follows from ``sigma`` and ``P_pool`` selects (max pooling) or is absent."""
    return ly.sigma.dsigma_from_output is not None and ly.eq6_valid and (ly.max_pools or not ly.pools)


def _dsigma_times(ly: Any, st: Store, m: int, RS: np.ndarray) -> np.ndarray | None:
    """``sigma'(S^m) ⊙ RS`` where ``S^m`` is at hand; ``None`` when it is not."""
    if ly.sigma.name == "identity":
        return RS
    if not st.has(f"S{m}"):
        return None
    return ly.sigma.dsigma(st.get(f"S{m}")) * RS


def R_forward(net: Any, backend: Any, keep: Keep, Ws: Sequence[np.ndarray], kept: dict[str, np.ndarray],
              Vs: Sequence[np.ndarray], vbs: Sequence[np.ndarray], X: np.ndarray | None = None,
              work: Workspace | None = None) -> np.ndarray:
    """The R-operator forward pass of one batch: ``R(z^{L+1}) = J v``, shape ``(n_L, l)``.

    ``R(.)`` is the directional derivative along ``v = (V^m, v_b^m)``::

        R(S^m)     = V^m phi(pad(Z^m)) + W^m phi(pad(R(Z^m))) + v_b^m 1^T
        R(Z^{m+1}) = P_pool^m (sigma'(S^m) ⊙ R(S^m))         (winners of the forward pass)

    Where max pooling selects (or there is no pooling) and ``sigma'`` follows
    from ``sigma``, ``P_pool (sigma'(S) ⊙ R(S))`` is formed as
    ``(P_pool R(S)) ⊙ sigma'`` read from ``Z^{m+1}``, the analogue of equation (6).
    Layers in ``keep.windowed`` run window by window.  Runs in the dtype of the
    kept arrays (``Vs`` and ``vbs`` should have it too).

    Examples
    --------
    Against central differences of the output along ``v``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.engine import Keep, get_backend
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> Ws, bs = net.unpack(net.init_params(seed=0))
    >>> X = np.random.default_rng(0).random((36, 4))
    >>> theta, v = net.init_params(seed=0), np.random.default_rng(2).standard_normal(net.n_params)
    >>> keep, be = Keep.everything(net, "auto"), get_backend("reference")
    >>> _, kept = forward(net, be, keep, Ws, bs, X)
    >>> Jv = R_forward(net, be, keep, Ws, kept, *net.unpack(v), X=X)
    >>> eps = 1e-6
    >>> fd = (net.output(theta + eps * v, X) - net.output(theta - eps * v, X)) / (2 * eps)
    >>> bool(np.allclose(Jv, fd, atol=1e-6))
    True
    """
    st = Store(net, backend, keep, list(Ws), None, X, kept)
    R: np.ndarray | None = None                                   # R(Z^1) = 0
    windowed = _windowed(keep, backend)
    for ly in net.conv:
        m = ly.m
        W, V, vb = Ws[m - 1], Vs[m - 1], vbs[m - 1]
        if m in windowed:
            Z = st.get(f"Z{m}")
            out_R = work.get(f"RZ{m + 1}", (ly.n_out, Z.shape[1]), Z.dtype) if work is not None else None
            R = backend.conv_pool_R(ly, Z, R, W, V, vb, st.get(f"Z{m + 1}"), kept[f"pool{m}"], out=out_R)
            continue
        RS = backend.conv_R(ly, W, V, vb, st.get(f"phi{m}"), R, work)          # R(S^m)
        winners = st.winners(m)
        if st.has(f"Z{m + 1}") and _pool_after_mask(ly):
            R = ly.sigma.backprop_from_output(backend.pool(ly, RS, winners), st.get(f"Z{m + 1}"))
            continue
        RA = _dsigma_times(ly, st, m, RS)                                      # sigma'(S^m) ⊙ R(S^m)
        if RA is None:
            raise ConfigError(f"conv layer {m}: J v needs S^{m} (sigma'(S^{m}) does not follow "
                              f"from Z^{m + 1} here)")
        R = backend.pool(ly, RA, winners)                                      # P_pool R(sigma^m)
    for fl in net.full:
        m = fl.m
        Rs = backend.s(fl, Vs[m - 1], vbs[m - 1], st.get(f"Z{m}"))             # V^m z^m + v_b^m
        if R is not None:
            Rs += Ws[m - 1] @ R                                                # + W^m R(z^m)
        Rz = _dsigma_times(fl, st, m, Rs)
        if Rz is None:
            from_output = fl.sigma.dsigma_from_output
            if from_output is None:
                raise ConfigError(f"full layer {m}: J v needs s^{m} or sigma' from z^{m + 1}")
            Rz = Rs * from_output(st.get(f"Z{m + 1}"))
        R = Rz
    assert R is not None
    return R
