"""The engine's store: what a forward pass kept, decoded, and what the backward pass rebuilds.

A :class:`Keep` says what one forward pass keeps and how each other quantity
the backward pass reads is obtained: a plan of :mod:`sparsecnn.planner`
(``Keep.from_plan``), "everything" (``Keep.everything``, the store-all cache of
:meth:`sparsecnn.Network.forward` without a plan, with the choice between
equations (5) and (6) given by ``pool_backward``) or nothing but the output
(``Keep.nothing``).  All three are plans in the same sense: a set of kept names
and, for every name that is not kept, a :class:`~sparsecnn.planner.graph.Recipe`
that carries its own compute function.

A :class:`Store` serves one batch: ``get(name)`` returns a kept quantity
(winners decoded from their offsets to positions, ``sigma'`` from ``bool``), or
rebuilds it by its recipe, once.

Examples
--------
>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> keep = Keep.from_plan(net, net.plan("min-memory"), windowed=False)
>>> sorted(keep.retained), keep.recipe("dS1").rule, keep.recipe("phi1").compute is not None
(['Z2', 'Z3', 'pool1'], 'eq6', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from ..exceptions import ConfigError
from ..layers import FullShape
from ..planner import rules
from ..planner.graph import Recipe, build_graph
from .winners import winner_positions

__all__ = ["Keep", "Store", "POOL_BACKWARDS"]

POOL_BACKWARDS = ("auto", "eq5", "eq6")
"""How ``dxi/dvec(S^m)`` is formed where everything is kept: equation (5), (6), or (6) where it holds."""


def _graph(net: Any) -> nx.DiGraph:
    """The compute graph of ``net`` (built once per network)."""
    G = net.__dict__.get("_compute_graph")
    if G is None:
        G = build_graph(net)
        net.__dict__["_compute_graph"] = G
    return G


def _fused(ly: Any, retained: frozenset[str], dS_rule: str) -> bool:
    m = ly.m
    return (ly.windowed and {f"pool{m}", f"Z{m + 1}"} <= retained
            and not retained & {f"phi{m}", f"S{m}", f"dsigma{m}"}
            and dS_rule in ("eq6", "eq5_identity"))


@dataclass(frozen=True)
class Keep:
    """What a forward pass keeps, how the rest is rebuilt, and which layers run window by window.

    Attributes
    ----------
    retained : frozenset of str
        Names kept from the forward pass (``Z{m}``, ``phi{m}``, ``S{m}``, ``pool{m}``, ``dsigma{m}``).
    recipes : mapping of str to Recipe
        For every other quantity the backward pass reads (and every ``dS{m}``), its recipe.
    windowed : frozenset of int
        Conv layers whose forward, backward and R-operator passes run window by
        window (fast backend; the layer keeps only ``Z^{m+1}`` and the winners).
    graph : networkx.DiGraph
        The network's compute graph (the ``group`` of each name).
    plan : Plan or None
        The plan this was made from.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> sorted(Keep.everything(net, "auto").retained)
    ['S1', 'S2', 'Z1', 'Z2', 'Z3', 'phi1', 'pool1']
    >>> Keep.from_plan(net, net.plan("slides"), windowed=True).windowed      # layer 1 window by window
    frozenset({1})
    """

    retained: frozenset[str]
    recipes: Mapping[str, Recipe] = field(repr=False)
    windowed: frozenset[int]
    graph: nx.DiGraph = field(repr=False)
    plan: Any = field(default=None, repr=False)

    def recipe(self, name: str) -> Recipe:
        """The recipe of ``name`` (``KeyError`` if this keep has none: it must be kept).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> Keep.everything(net, "eq5").recipe("dS1").rule, Keep.everything(net, "eq6").recipe("dS1").rule
        ('eq5', 'eq6')
        """
        return self.recipes[name]

    @property
    def reads_X(self) -> bool:
        """Whether the backward pass rebuilds something from ``Z^1 = X``."""
        return "Z1" not in self.retained and any("Z1" in r.inputs for r in self.recipes.values())

    @classmethod
    def from_plan(cls, net: Any, plan: Any, *, windowed: bool) -> Keep:
        """A :class:`~sparsecnn.planner.Plan`'s choices; ``windowed``: the backend has the window-by-window kernels.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> keep = Keep.from_plan(net, net.plan("min-memory"), windowed=False)
        >>> sorted(keep.retained), keep.windowed, keep.reads_X
        (['Z2', 'Z3', 'pool1'], frozenset(), True)
        """
        retained = frozenset(plan.retained)
        recipes = {name: plan.recipe(name) for name in plan.recipes}
        win = frozenset(ly.m for ly in net.conv
                        if windowed and _fused(ly, retained, recipes[f"dS{ly.m}"].rule))
        return cls(retained, recipes, win, plan.graph, plan)

    @classmethod
    def everything(cls, net: Any, pool_backward: str) -> Keep:
        """Keep ``Z^m`` (``Z^1 = X`` included), ``phi(pad(Z^m))``, ``S^m`` and the winners of every layer.

        ``pool_backward`` (``"auto"``, ``"eq5"``, ``"eq6"``) picks ``dxi/dS^m``: equation (6)
        (``sigma'`` read from ``Z^{m+1}``) or (5) (``sigma'(S^m)`` from ``S^m``).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2, pool="avg", activation="tanh"), FullLayer(3)])
        >>> Keep.everything(net, "auto").recipe("dS1").rule       # (6) does not hold for tanh + average
        'eq5'
        >>> Keep.everything(net, "eq6")
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ConfigError: conv layer 1: equation (6) needs sigma'(S^1) to follow from Z^2, which does not hold for activation 'tanh' with avg pooling
        """
        if pool_backward not in POOL_BACKWARDS:
            raise ConfigError(f"pool_backward must be one of {POOL_BACKWARDS}, got {pool_backward!r}")
        G = _graph(net)
        by_id = G.graph["recipes"]
        retained = {"Z1"}
        recipes: dict[str, Recipe] = {}
        for ly in net.layers:
            m = ly.m
            retained |= {f"Z{m + 1}", f"S{m}"}
            needs = rules.needs_sigma_prime(ly)
            if isinstance(ly, FullShape):
                recipes[f"dS{m}"] = by_id[f"dS{m}:eq4" if needs else f"dS{m}:eq4_identity"]
                if needs:
                    recipes[f"dsigma{m}"] = by_id[f"dsigma{m}:dsigma_S"]
                continue
            retained.add(f"phi{m}")
            if ly.max_pools:
                retained.add(f"pool{m}")
            mode = pool_backward
            if mode == "auto":
                mode = "eq6" if ly.eq6_valid else "eq5"
            if mode == "eq6" and not ly.eq6_valid:
                raise ConfigError(
                    f"conv layer {m}: equation (6) needs sigma'(S^{m}) to follow from Z^{m + 1}, "
                    f"which does not hold for activation {ly.sigma.name!r} with {ly.spec.pool} pooling")
            if not needs:
                rule = "eq5_identity" if ly.pools else "identity_nopool"
            elif not ly.pools:
                rule = "eq5_nopool"
                recipes[f"dsigma{m}"] = by_id[f"dsigma{m}:dsigma_Z" if mode == "eq6" else f"dsigma{m}:dsigma_S"]
            elif mode == "eq6":
                rule = "eq6"
                recipes[f"dsigmaZ{m}"] = by_id[f"dsigmaZ{m}:dsigmaZ"]
            else:
                rule = "eq5"
                recipes[f"dsigma{m}"] = by_id[f"dsigma{m}:dsigma_S"]
            recipes[f"dS{m}"] = by_id[f"dS{m}:{rule}"]
        return cls(frozenset(retained), recipes, frozenset(), G)

    @classmethod
    def nothing(cls, net: Any, *, windowed: bool = False) -> Keep:
        """Keep nothing but the output (a forward pass for :meth:`~sparsecnn.Network.output`);
        ``windowed``: every conv layer with max pooling and ``sigma'`` readable from ``Z^{m+1}``
        runs window by window (the backend has the kernels).

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> Keep.nothing(Network((2, 2, 1), [FullLayer(3)])).retained
        frozenset()
        """
        win = frozenset(ly.m for ly in net.conv if windowed and ly.windowed)
        return cls(frozenset(), {}, win, _graph(net))


class Store:
    """Kept quantities of one batch, decoded, and quantities rebuilt by their recipes (memoised).

    Parameters
    ----------
    net : Network
    backend : Backend
        What the recipes call (:mod:`sparsecnn.engine.backends`).
    keep : Keep
    Ws, bs : list of ndarray
        ``W^m``, ``b^m`` at index ``m - 1`` (``bs`` may be None where no ``S^m`` is rebuilt).
    X : ndarray or None
        ``Z^1`` of the batch, where something is rebuilt from it.
    kept : dict of str to ndarray
        What the forward pass kept.

    Examples
    --------
    ``phi(pad(Z^1))`` is not kept by the plan "slides": the store rebuilds it once, by its recipe.

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.engine import forward, get_backend
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> Ws, bs = net.unpack(net.init_params(seed=0))
    >>> X = np.random.default_rng(0).random((36, 2))
    >>> keep, be = Keep.from_plan(net, net.plan("slides"), windowed=False), get_backend("fast")
    >>> _, kept = forward(net, be, keep, Ws, bs, X)
    >>> st = Store(net, be, keep, Ws, bs, X, kept)
    >>> st.has("phi1"), np.array_equal(st.get("phi1"), net.conv[0].phi(X)), st.has("phi1")
    (False, True, True)
    >>> st.winners(1).dtype, st.W(1).shape, st.b(1).shape        # winners decoded to positions
    (dtype('int32'), (2, 9), (2,))
    >>> st.peek("S1") is None                                     # not kept, not rebuilt: nothing computed
    True
    >>> st.release_above(1); st.has("phi1")
    False
    """

    def __init__(self, net: Any, backend: Any, keep: Keep, Ws: list[np.ndarray], bs: list[np.ndarray] | None,
                 X: np.ndarray | None, kept: dict[str, np.ndarray]) -> None:
        self.net, self.backend, self.keep = net, backend, keep
        self.Ws, self.bs, self.X, self.kept = Ws, bs, X, kept
        self.tmp: dict[str, np.ndarray] = {}

    def W(self, m: int) -> np.ndarray:
        """``W^m`` (see the class example).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.W(1).shape                                  # d^2 x h h d^1
        (2, 9)
        """
        return self.Ws[m - 1]

    def b(self, m: int) -> np.ndarray:
        """``b^m`` (see the class example).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.b(1).shape
        (2,)
        """
        if self.bs is None:
            raise ValueError("this plan recomputes S by a GEMM: pass the biases to the backward pass")
        return self.bs[m - 1]

    def has(self, name: str) -> bool:
        """Whether ``name`` is kept or already rebuilt (nothing is computed).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.has("Z2"), st.has("phi1")
        (True, False)
        """
        return name in self.tmp or name in self.kept

    def peek(self, name: str) -> np.ndarray | None:
        """``name`` if it is kept or already rebuilt, else ``None``.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.peek("phi1") is None, st.peek("Z2").shape
        (True, (18, 2))
        """
        return self.get(name) if self.has(name) else None

    def get(self, name: str) -> np.ndarray:
        """``name``, kept (decoded) or rebuilt by its recipe.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.get("phi1").shape, st.has("phi1")                # rebuilt by its recipe, then held
        ((324, 2), True)
        """
        if name in self.tmp:
            return self.tmp[name]
        if name in self.kept:
            value = self._decode(name, self.kept[name])
        elif name == "Z1":
            if self.X is None:
                raise ValueError("this plan rebuilds quantities from X: pass X to the backward pass")
            return self.X
        else:
            recipe = self.keep.recipe(name)
            assert recipe.compute is not None, recipe.id
            value = recipe.compute(self, self._layer(name))
        self.tmp[name] = value
        return value

    def winners(self, m: int) -> np.ndarray | None:
        """Positions of the winners of layer ``m`` in ``vec(sigma(S^m))``; ``None`` without max pooling.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> st.kept["pool1"].dtype, st.winners(1).dtype         # kept as offsets, given as positions
        (dtype('uint8'), dtype('int32'))
        """
        return self.get(f"pool{m}") if self.net.layers[m - 1].max_pools else None

    def release_above(self, m: int) -> None:
        """Forget rebuilt quantities of layers ``>= m`` (the backward pass is done with them).

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> from sparsecnn.engine.passes import _example_store
        >>> st = _example_store(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> _ = st.get("phi1"); st.release_above(1); st.has("phi1")
        False
        """
        nodes = self.keep.graph.nodes
        for n in [n for n in self.tmp if nodes[n]["group"] >= m]:
            del self.tmp[n]

    def _layer(self, name: str) -> Any:
        return self.net.layers[self.keep.graph.nodes[name]["group"] - 1]

    def _decode(self, name: str, arr: np.ndarray) -> np.ndarray:
        if name.startswith("pool"):
            return winner_positions(self._layer(name), arr)
        if name.startswith("dsigma") and arr.dtype == bool:
            lo, hi = rules.BOOL_DSIGMA[self._layer(name).sigma.name]
            return np.where(arr, hi, lo)
        return arr
