"""The compute graph of one forward and backward pass, from the network's shapes alone.

:func:`build_graph` returns a ``networkx.DiGraph``.  Its nodes are the
quantities of one instance's forward and backward pass; its edges are the
computations.  A computation with several operands (for example equation
(6), which reads ``dxi/dZ^{m+1}``, ``sigma'`` at the winners and the winners)
is a *recipe*: one edge from each operand to the result, all with the same
``recipe`` attribute.  A node with several recipes can be obtained in several
ways; the planner chooses one (:mod:`sparsecnn.planner.plan`).  Alternative
recipes exist only where :mod:`sparsecnn.planner.rules` says they are valid.

Node names (layer number last, as in :attr:`Plan.retained
<sparsecnn.planner.plan.Plan.retained>`):

=================  ==========================================================
``Z{m}``           ``vec(Z^m)``; ``Z1`` is ``X`` (held by the caller)
``pad{m}``         ``vec(pad(Z^m))`` (only where ``p^m > 0``)
``phi{m}``         ``vec(phi(pad(Z^m)))``
``S{m}``           ``vec(S^m)`` (``s^m`` for a full layer)
``sigma{m}``       ``vec(sigma(S^m))`` where pooling follows (else it is ``Z^{m+1}``)
``pool{m}``        max-pooling winners, one offset ``0..r^2-1`` per pooled output
``dsigma{m}``      ``vec(sigma'(S^m))`` (not for the identity)
``dsigmaZ{m}``     ``sigma'(S^m)`` at the winners, read from ``Z^{m+1}`` (equation (6))
``W{m}``           the parameters ``[W^m b^m]``
``dZ{m}``          ``dxi/dvec(Z^m)``
``dA{m}``          ``dxi/dvec(sigma(S^m))^T = dxi/dvec(Z^{m+1})^T P_pool^m`` (equation (7))
``dS{m}``          ``dxi/dvec(S^m)``
``dphi{m}``        ``dxi/dvec(phi(pad(Z^m)))``
``dW{m}, db{m}``   ``dxi/dvec(W^m)``, ``dxi/db^m``
=================  ==========================================================

Node attributes: ``label`` (slide notation), ``kind`` (``"input"``,
``"param"``, ``"forward"``, ``"backward"``), ``layer``, ``group`` (the layer
whose forward pass produces it), ``shape`` (``(rows, cols)`` of one
instance's matrix), ``shape_text`` (the same in slide symbols), ``size``
(entries per instance), ``dtype`` (as stored), ``bytes`` (per instance, at
that dtype) and ``storable`` (whether a plan may keep it).

Edge attributes: ``recipe`` (its id), ``equation``, ``op`` (``"sparse"``:
flops = nnz of the operator; ``"gemm"``: ``2 rows inner cols``;
``"elementwise"``: the size; ``"compare"``: one comparison per entry),
``flops`` (per instance, for the whole recipe), ``backward`` (whether it is
work of the backward pass proper rather than recomputation) and
``recovery`` (whether it is an alternative to keeping the result).
``graph.graph["recipes"]`` maps recipe ids to :class:`Recipe`.

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> G = build_graph(net)
>>> G.nodes["phi1"]["shape"], G.nodes["phi1"]["bytes"]
((9, 36), 2592)
>>> G.nodes["pool1"]["dtype"], G.nodes["pool1"]["bytes"]
('uint8', 18)
>>> G.edges["dsigmaZ1", "dS1"]["equation"].startswith("(6)")
True
>>> sorted(r.rule for r in recipes_for(G, "dS1"))
['eq5', 'eq6']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from ..layers import ConvShape, FullShape
from . import rules

__all__ = ["Recipe", "build_graph", "recipes_for", "FORWARD_STORABLE"]

FORWARD_STORABLE = ("Z", "phi", "S", "pool", "dsigma")
"""Prefixes of the quantities a plan may keep."""

F64 = np.dtype(np.float64)


@dataclass(frozen=True)
class Recipe:
    """One way to compute ``output`` from ``inputs``.

    Attributes
    ----------
    id : str
        Unique name, ``"<output>:<rule>"``.
    output : str
    inputs : tuple of str
    op : str
        ``"sparse"``, ``"gemm"``, ``"elementwise"``, ``"compare"`` or ``"copy"``.
    flops : int
        Per instance.
    equation : str
        The slide equation it implements.
    rule : str
        The recipe's name (``"phi"``, ``"eq6"``, ...).
    compute : callable or None
        How the engine computes ``output`` (as autograd's ``defvjp`` attaches a
        function to an operation): a forward quantity by ``compute(store, layer)``,
        ``dxi/dS^m`` by ``compute(store, layer, dxi/dZ^{m+1}, out)``, reading
        its inputs from the store (:class:`sparsecnn.engine.Store`) and calling
        the equations through ``store.backend``; ``None`` for the steps the
        backward loop takes itself (the gradients, ``dxi/dZ^m``).
    backward : bool
        Work of the backward pass proper (not recomputation of a forward quantity).
    recovery : bool
        An alternative way to obtain a quantity (a recovery rule), not the forward pass's own edge.

    Examples
    --------
    ``S^1 = W^1 phi(pad(Z^1)) + b^1 1^T`` of ``ConvLayer(2, h=3, p=1)`` on a ``6 x 6 x 1``
    image is a GEMM of ``2 x 9`` by ``9 x 36``: ``2 * 2 * 9 * 36 = 1296`` flops.

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> G = build_graph(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
    >>> (recipe,) = recipes_for(G, "S1")
    >>> recipe.id, recipe.inputs, recipe.op, recipe.flops
    ('S1:S_conv', ('phi1', 'W1'), 'gemm', 1296)
    >>> recipe.equation
    'S^1 = W^1 phi(pad(Z^1)) + b^1 1^T'
    """

    id: str
    output: str
    inputs: tuple[str, ...]
    op: str
    flops: int
    equation: str
    rule: str
    backward: bool = False
    recovery: bool = False
    compute: Callable[..., Any] | None = field(default=None, compare=False, repr=False)


def recipes_for(G: nx.DiGraph, node: str) -> list[Recipe]:
    """The recipes that produce ``node`` (empty for inputs, parameters and ``Z^{L+1}``'s loss).

    Parameters
    ----------
    G : networkx.DiGraph
        A graph from :func:`build_graph`.
    node : str
        A node name such as ``"phi1"`` or ``"dS2"``.

    Returns
    -------
    list of Recipe
        More than one where a recovery rule offers an alternative.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> G = build_graph(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
    >>> recipes_for(G, "Z1")
    []
    >>> [(r.rule, r.inputs) for r in recipes_for(G, "dS1")]
    [('eq5', ('dA1', 'dsigma1')), ('eq6', ('dZ2', 'dsigmaZ1', 'pool1'))]
    """
    return [G.graph["recipes"][rid] for rid in G.graph["by_output"].get(node, [])]


# ------------------------------------------------- how each recipe is computed
# Forward quantities: compute(store, layer).  ``store.get(name)`` gives a kept or
# rebuilt quantity (winners as positions in vec(sigma(S^m))), ``store.W(m)`` and
# ``store.b(m)`` the parameters, ``store.backend`` the equations.
def _pad(st: Any, ly: Any) -> Any:
    return st.backend.pad(ly, st.get(f"Z{ly.m}"))                          # P_pad vec(Z^m)


def _phi(st: Any, ly: Any) -> Any:
    return st.backend.phi(ly, st.get(f"Z{ly.m}"))                          # P_phi P_pad vec(Z^m)


def _S_conv(st: Any, ly: Any) -> Any:
    m = ly.m
    return st.backend.S(ly, st.W(m), st.b(m), st.get(f"phi{m}"))          # W^m phi + b^m 1^T


def _S_full(st: Any, ly: Any) -> Any:
    m = ly.m
    return st.backend.s(ly, st.W(m), st.b(m), st.get(f"Z{m}"))            # W^m z^m + b^m


def _sigma(st: Any, ly: Any) -> Any:
    return ly.sigma.sigma(st.get(f"S{ly.m}"))                              # sigma(S^m)


def _winners(st: Any, ly: Any) -> Any:
    return st.backend.winners(ly, st.get(f"sigma{ly.m}"))                  # argmax in each window


def _pool_max(st: Any, ly: Any) -> Any:
    m = ly.m
    return st.backend.pool(ly, st.get(f"sigma{m}"), st.get(f"pool{m}"))   # P_pool vec(sigma(S^m))


def _pool_avg(st: Any, ly: Any) -> Any:
    return st.backend.pool(ly, st.get(f"sigma{ly.m}"), None)


def _dsigma_S(st: Any, ly: Any) -> Any:
    return ly.sigma.dsigma(st.get(f"S{ly.m}"))                             # sigma'(S^m)


def _dsigma_Z(st: Any, ly: Any) -> Any:
    return ly.sigma.dsigma_from_output(st.get(f"Z{ly.m + 1}"))             # sigma'(S^m) read from Z^{m+1}


# dxi/dS^m: compute(store, layer, dxi/dZ^{m+1}, out), out an optional work array
def _eq4(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    return dZ * st.get(f"dsigma{ly.m}")                                     # (4)


def _copy(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    return dZ                                                               # sigma' = 1, no pooling


def _eq5(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    m = ly.m
    dS = st.backend.eq7(ly, dZ, st.winners(m), out=out)                     # (7)
    dS *= st.get(f"dsigma{m}")                                              # (5): ⊙ sigma'(S^m)
    return dS


def _eq5_identity(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    return st.backend.eq7(ly, dZ, st.winners(ly.m), out=out)                # (7), sigma' = 1


def _eq5_nopool(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    return dZ * st.get(f"dsigma{ly.m}")                                     # (5) with P_pool = I


def _eq6(st: Any, ly: Any, dZ: Any, out: Any) -> Any:
    m = ly.m
    return st.backend.eq7(ly, dZ * st.get(f"dsigmaZ{m}"), st.winners(m), out=out)   # (6)


COMPUTE: dict[str, Callable[..., Any]] = {
    "pad": _pad, "phi": _phi, "S_conv": _S_conv, "S_full": _S_full, "sigma": _sigma,
    "winners": _winners, "pool_max": _pool_max, "pool_avg": _pool_avg, "Z_sigma": _sigma,
    "dsigma_S": _dsigma_S, "dsigma_Z": _dsigma_Z, "dsigmaZ": _dsigma_Z,
    "eq4": _eq4, "eq4_identity": _copy, "eq5": _eq5, "eq5_identity": _eq5_identity,
    "eq5_nopool": _eq5_nopool, "identity_nopool": _copy, "eq6": _eq6,
}
"""Recipe rule -> compute function (attached to every :class:`Recipe` of that rule)."""


class _Builder:
    def __init__(self, net: object) -> None:
        self.G = nx.DiGraph()
        self.G.graph["recipes"] = {}
        self.G.graph["by_output"] = {}

    def node(self, name: str, label: str, kind: str, layer: int, group: int, shape: tuple[int, int],
             shape_text: str, dtype: np.dtype = F64, storable: bool = False) -> None:
        size = int(shape[0] * shape[1])
        per_instance = kind in ("forward", "input", "backward")
        self.G.add_node(name, label=label, kind=kind, layer=layer, group=group, shape=shape,
                        shape_text=shape_text, size=size if per_instance else 0,
                        dtype=dtype.name, bytes=size * dtype.itemsize if per_instance else 0,
                        storable=storable)

    def recipe(self, output: str, inputs: tuple[str, ...], op: str, flops: int, equation: str,
               rule: str, *, backward: bool = False, recovery: bool = False) -> None:
        rid = f"{output}:{rule}"
        r = Recipe(rid, output, inputs, op, int(flops), equation, rule, backward, recovery, COMPUTE.get(rule))
        assert rid not in self.G.graph["recipes"], rid
        self.G.graph["recipes"][rid] = r
        self.G.graph["by_output"].setdefault(output, []).append(rid)

    def edges(self) -> None:
        """One edge per operand of every recipe (after all nodes exist)."""
        for r in self.G.graph["recipes"].values():
            for u in r.inputs:
                assert u in self.G and r.output in self.G, (u, r.output)
                assert not self.G.has_edge(u, r.output), f"edge {u} -> {r.output} in two recipes"
                self.G.add_edge(u, r.output, recipe=r.id, equation=r.equation, op=r.op, flops=r.flops,
                                backward=r.backward, recovery=r.recovery, rule=r.rule)

    # ------------------------------------------------------------------ conv
    def conv(self, ly: ConvShape, first: bool) -> None:
        m, sp_ = ly.m, ly.spec
        Zm, Zn = f"Z{m}", f"Z{m + 1}"
        n_in, n_pos, hhd, n_S, n_out = ly.n_in, ly.n_pos, ly.hhd, ly.n_S, ly.n_out
        dp1 = f"d^{m + 1}"
        self.node(f"W{m}", f"[W^{m} b^{m}]", "param", m, m, (ly.d_out, hhd + 1),
                  f"d^{m + 1} x (h h d^{m} + 1) = {ly.d_out} x {hhd + 1}")
        if sp_.p > 0:
            self.node(f"pad{m}", f"pad(Z^{m})", "forward", m, m, (ly.d, ly.a_pad * ly.b_pad),
                      f"d^{m} x a_pad b_pad = {ly.d} x {ly.a_pad * ly.b_pad}")
            self.recipe(f"pad{m}", (Zm,), "sparse", n_in,
                        f"vec(pad(Z^{m})) = P_pad^{m} vec(Z^{m})", "pad", recovery=False)
            src = f"pad{m}"
        else:
            src = Zm
        self.node(f"phi{m}", f"phi(pad(Z^{m}))", "forward", m, m, (hhd, n_pos),
                  f"h h d^{m} x a_conv b_conv = {hhd} x {n_pos}", storable=True)
        self.recipe(f"phi{m}", (src,), "sparse", hhd * n_pos,
                    f"vec(phi(pad(Z^{m}))) = P_phi^{m} vec(pad(Z^{m}))", "phi")
        self.node(f"S{m}", f"S^{m}", "forward", m, m, (ly.d_out, n_pos),
                  f"{dp1} x a_conv b_conv = {ly.d_out} x {n_pos}", storable=True)
        self.recipe(f"S{m}", (f"phi{m}", f"W{m}"), "gemm", 2 * ly.d_out * hhd * n_pos,
                    f"S^{m} = W^{m} phi(pad(Z^{m})) + b^{m} 1^T", "S_conv")
        out_text = f"{dp1} x a^{m + 1} b^{m + 1} = {ly.d_out} x {ly.a_out * ly.b_out}"
        self.node(Zn, f"Z^{m + 1}", "forward", m + 1, m, (ly.d_out, ly.a_out * ly.b_out), out_text,
                  storable=True)
        if ly.pools:
            self.node(f"sigma{m}", f"sigma(S^{m})", "forward", m, m, (ly.d_out, n_pos),
                      f"{dp1} x a_conv b_conv = {ly.d_out} x {n_pos}")
            self.recipe(f"sigma{m}", (f"S{m}",), "elementwise", n_S, f"sigma(S^{m})", "sigma")
            if ly.max_pools:
                self.node(f"pool{m}", f"winners^{m}", "forward", m, m,
                          (ly.d_out, ly.a_out * ly.b_out), out_text + " (offsets in r x r)",
                          dtype=rules.winners_dtype(sp_.r), storable=True)
                self.recipe(f"pool{m}", (f"sigma{m}",), "compare", n_S,
                            f"P_pool^{m}: argmax of sigma(S^{m}) in each {sp_.r}x{sp_.r} window", "winners",
                            recovery=False)
                self.recipe(Zn, (f"sigma{m}", f"pool{m}"), "sparse", n_out,
                            f"vec(Z^{m + 1}) = P_pool^{m} vec(sigma(S^{m}))", "pool_max")
            else:
                self.recipe(Zn, (f"sigma{m}",), "sparse", sp_.r * sp_.r * n_out,
                            f"vec(Z^{m + 1}) = P_pool^{m} vec(sigma(S^{m})), P_pool entries 1/r^2",
                            "pool_avg")
        else:
            self.recipe(Zn, (f"S{m}",), "elementwise", n_S, f"Z^{m + 1} = sigma(S^{m}) (r = 1)", "Z_sigma")
        self._dsigma(ly, n_S, (ly.d_out, n_pos), f"{dp1} x a_conv b_conv = {ly.d_out} x {n_pos}")
        # backward
        dZn = f"dZ{m + 1}"
        needs = rules.needs_sigma_prime(ly)
        self.node(f"dS{m}", f"dxi/dS^{m}", "backward", m, m, (ly.d_out, n_pos),
                  f"{dp1} x a_conv b_conv = {ly.d_out} x {n_pos}")
        if ly.pools:
            self.node(f"dA{m}", f"dxi/dsigma(S^{m})", "backward", m, m, (ly.d_out, n_pos),
                      f"{dp1} x a_conv b_conv = {ly.d_out} x {n_pos}")
            ins = (dZn, f"pool{m}") if ly.max_pools else (dZn,)
            nnz = n_out if ly.max_pools else sp_.r * sp_.r * n_out
            self.recipe(f"dA{m}", ins, "sparse", nnz,
                        f"(7) dxi/dvec(sigma(S^{m}))^T = dxi/dvec(Z^{m + 1})^T P_pool^{m}", "eq7",
                        backward=True)
            if needs:
                self.recipe(f"dS{m}", (f"dA{m}", f"dsigma{m}"), "elementwise", n_S,
                            f"(5) dxi/dvec(S^{m})^T = (dxi/dvec(Z^{m + 1})^T P_pool^{m}) ⊙ vec(sigma'(S^{m}))^T",
                            "eq5", backward=True)
                if ly.max_pools and rules.sigma_prime_from_next_Z(ly):
                    self.recipe(f"dS{m}", (dZn, f"dsigmaZ{m}", f"pool{m}"), "sparse", 2 * n_out,
                                f"(6) dxi/dvec(S^{m})^T = (dxi/dvec(Z^{m + 1})^T ⊙ vec(sigma'(S^{m}) "
                                f"from Z^{m + 1})^T) P_pool^{m}", "eq6", backward=True, recovery=True)
            else:
                self.recipe(f"dS{m}", (f"dA{m}",), "copy", 0,
                            f"(5) with sigma' = 1: dxi/dvec(S^{m})^T = dxi/dvec(Z^{m + 1})^T P_pool^{m}",
                            "eq5_identity", backward=True)
        elif needs:
            self.recipe(f"dS{m}", (dZn, f"dsigma{m}"), "elementwise", n_S,
                        f"(5) with P_pool = I: dxi/dS^{m} = dxi/dZ^{m + 1} ⊙ sigma'(S^{m})", "eq5_nopool",
                        backward=True)
        else:
            self.recipe(f"dS{m}", (dZn,), "copy", 0, f"(5) with P_pool = I, sigma' = 1: dxi/dS^{m} = dxi/dZ^{m + 1}",
                        "identity_nopool", backward=True)
        gemm = 2 * ly.d_out * hhd * n_pos
        self.node(f"dW{m}", f"dxi/dW^{m}", "backward", m, m, (ly.d_out, hhd), f"{dp1} x h h d^{m}")
        self.recipe(f"dW{m}", (f"dS{m}", f"phi{m}"), "gemm", gemm,
                    f"dxi/dW^{m} = dxi/dS^{m} phi(pad(Z^{m}))^T", "dW_conv", backward=True)
        self.node(f"db{m}", f"dxi/db^{m}", "backward", m, m, (ly.d_out, 1), f"{dp1} x 1")
        self.recipe(f"db{m}", (f"dS{m}",), "elementwise", n_S,
                    f"dxi/db^{m} = dxi/dS^{m} 1_(a_conv b_conv)", "db_conv", backward=True)
        if not first:
            self.node(f"dphi{m}", f"dxi/dphi(pad(Z^{m}))", "backward", m, m, (hhd, n_pos),
                      f"h h d^{m} x a_conv b_conv = {hhd} x {n_pos}")
            self.recipe(f"dphi{m}", (f"dS{m}", f"W{m}"), "gemm", gemm,
                        f"dxi/dphi(pad(Z^{m})) = (W^{m})^T dxi/dS^{m}", "dphi", backward=True)
            self.node(f"dZ{m}", f"dxi/dZ^{m}", "backward", m, m, (ly.d, ly.a * ly.b),
                      f"d^{m} x a^{m} b^{m} = {ly.d} x {ly.a * ly.b}")
            nnz = hhd * n_pos + (n_in if sp_.p > 0 else 0)
            self.recipe(f"dZ{m}", (f"dphi{m}",), "sparse", nnz,
                        f"vec(dxi/dZ^{m}) = (P_pad^{m})^T (P_phi^{m})^T vec(dxi/dphi(pad(Z^{m})))",
                        "dZ_conv", backward=True)

    def _dsigma(self, ly: ConvShape | FullShape, n: int, shape: tuple[int, int], shape_text: str) -> None:
        m = ly.m
        if not rules.needs_sigma_prime(ly):
            return
        name = ly.sigma.name
        self.node(f"dsigma{m}", f"sigma'(S^{m})", "forward", m, m, shape, shape_text,
                  dtype=rules.dsigma_dtype(ly), storable=True)
        self.recipe(f"dsigma{m}", (f"S{m}",), "elementwise", n, f"sigma'(S^{m}) ({name})", "dsigma_S")
        if not rules.sigma_prime_from_next_Z(ly):
            return
        if isinstance(ly, FullShape) or not ly.pools:
            self.recipe(f"dsigma{m}", (f"Z{m + 1}",), "elementwise", n,
                        f"sigma'(S^{m}) from sigma(S^{m}) = Z^{m + 1} ({name}; (6) without pooling)",
                        "dsigma_Z", recovery=True)
        elif ly.max_pools:
            n_out = ly.n_out
            self.node(f"dsigmaZ{m}", f"sigma'(S^{m}) at winners", "forward", m, m,
                      (ly.d_out, ly.a_out * ly.b_out), f"d^{m + 1} x a^{m + 1} b^{m + 1}")
            what = f"vec(I[Z^{m + 1}])" if name == "relu" else f"sigma' from Z^{m + 1}"
            self.recipe(f"dsigmaZ{m}", (f"Z{m + 1}",), "elementwise", n_out,
                        f"(6) {what} ({name}): Z^{m + 1} holds sigma(S^{m}) at the winners", "dsigmaZ",
                        recovery=True)

    # ------------------------------------------------------------------ full
    def full(self, fl: FullShape, first: bool, last: bool) -> None:
        m = fl.m
        Zm, Zn = f"Z{m}", f"Z{m + 1}"
        n_in, n_out = fl.n_in, fl.n_out
        self.node(f"W{m}", f"[W^{m} b^{m}]", "param", m, m, (n_out, n_in + 1),
                  f"n_{m + 1} x (n_{m} + 1) = {n_out} x {n_in + 1}")
        self.node(f"S{m}", f"s^{m}", "forward", m, m, (n_out, 1), f"n_{m + 1} = {n_out}", storable=True)
        self.recipe(f"S{m}", (Zm, f"W{m}"), "gemm", 2 * n_out * n_in, f"s^{m} = W^{m} z^{m} + b^{m}", "S_full")
        self.node(Zn, f"z^{m + 1}", "forward", m + 1, m, (n_out, 1), f"n_{m + 1} = {n_out}",
                  storable=True)
        self.recipe(Zn, (f"S{m}",), "elementwise", n_out, f"z^{m + 1} = sigma(s^{m})", "Z_sigma")
        self._dsigma(fl, n_out, (n_out, 1), f"n_{m + 1} = {n_out}")
        if last:
            self.node(f"dZ{m + 1}", f"dxi/dz^{m + 1}", "backward", m + 1, m, (n_out, 1), f"n_{m + 1} = {n_out}")
            self.recipe(f"dZ{m + 1}", (Zn,), "elementwise", 2 * n_out,
                        f"dxi/dz^{m + 1} = 2(z^{m + 1} - y)", "loss", backward=True)
        self.node(f"dS{m}", f"dxi/ds^{m}", "backward", m, m, (n_out, 1), f"n_{m + 1} = {n_out}")
        if rules.needs_sigma_prime(fl):
            self.recipe(f"dS{m}", (f"dZ{m + 1}", f"dsigma{m}"), "elementwise", n_out,
                        f"(4) dxi/ds^{m} = dxi/dz^{m + 1} ⊙ sigma'(s^{m})", "eq4", backward=True)
        else:
            self.recipe(f"dS{m}", (f"dZ{m + 1}",), "copy", 0,
                        f"(4) with sigma' = 1: dxi/ds^{m} = dxi/dz^{m + 1}", "eq4_identity", backward=True)
        self.node(f"dW{m}", f"dxi/dW^{m}", "backward", m, m, (n_out, n_in), f"n_{m + 1} x n_{m}")
        self.recipe(f"dW{m}", (f"dS{m}", Zm), "gemm", 2 * n_out * n_in,
                    f"(1) dxi/dW^{m} = dxi/ds^{m} (z^{m})^T", "dW_full", backward=True)
        self.node(f"db{m}", f"dxi/db^{m}", "backward", m, m, (n_out, 1), f"n_{m + 1}")
        self.recipe(f"db{m}", (f"dS{m}",), "copy", 0, f"(2) dxi/db^{m} = dxi/ds^{m}", "db_full", backward=True)
        if not first:
            self.node(f"dZ{m}", f"dxi/dz^{m}", "backward", m, m, (n_in, 1), f"n_{m} = {n_in}")
            self.recipe(f"dZ{m}", (f"dS{m}", f"W{m}"), "gemm", 2 * n_out * n_in,
                        f"(3) dxi/dz^{m} = (W^{m})^T dxi/ds^{m}", "dZ_full", backward=True)


def build_graph(net: object) -> nx.DiGraph:
    """The compute graph of ``net`` (a :class:`sparsecnn.Network`) for one instance.

    Parameters
    ----------
    net : Network

    Returns
    -------
    networkx.DiGraph
        See the module docstring for the nodes, edges and their attributes.
        ``G.graph`` also holds ``"recipes"`` (id to :class:`Recipe`),
        ``"by_output"`` (node to recipe ids), ``"L"`` and ``"groups"`` (layer
        ``m`` to the quantities its forward pass produces that a plan may keep).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> G = build_graph(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
    >>> G.number_of_nodes(), G.graph["L"], G.graph["groups"]
    (22, 2, {1: ['phi1', 'S1', 'Z2', 'pool1', 'dsigma1'], 2: ['S2', 'Z3']})
    >>> G.nodes["S1"]["shape_text"], G.nodes["Z2"]["shape_text"]
    ('d^2 x a_conv b_conv = 2 x 36', 'd^2 x a^2 b^2 = 2 x 9')
    """
    b = _Builder(net)
    a1, b1, d1 = net.input_shape  # type: ignore[attr-defined]
    b.node("Z1", "Z^1 = X", "input", 1, 0, (d1, a1 * b1), f"d^1 x a^1 b^1 = {d1} x {a1 * b1}")
    layers: list[ConvShape | FullShape] = net.layers  # type: ignore[attr-defined]
    L = len(layers)
    for ly in layers:
        if isinstance(ly, ConvShape):
            b.conv(ly, first=ly.m == 1)
        else:
            b.full(ly, first=ly.m == 1, last=ly.m == L)
    b.edges()
    G = b.G
    G.graph["L"] = L
    G.graph["groups"] = {
        m: [n for n, a in G.nodes(data=True) if a["storable"] and a["group"] == m] for m in range(1, L + 1)
    }
    # what the backward pass of layer m must produce: its gradients and dxi/dZ^m for layer m - 1
    G.graph["targets"] = {m: [f"dW{m}", f"db{m}"] + ([f"dZ{m}"] if m > 1 else []) for m in range(1, L + 1)}
    return G
