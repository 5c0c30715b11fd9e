"""Plans: what a run keeps between the forward and the backward pass, and how it gets the rest.

A :class:`Plan` marks every forward quantity the backward pass reads as
*kept* (held from the forward pass to the backward pass) or *recomputed*
(rebuilt in the backward pass from kept ones, by a recipe of the compute
graph, :mod:`sparsecnn.planner.graph`).  Policies:

``"store-all"``
    Everything the backward pass reads is kept: ``Z^m``, ``phi(pad(Z^m))``,
    ``S^m`` (not for the identity, whose ``sigma' = 1``), the winners.
``"slides"``
    What the slides keep: ``Z^m`` and the winners; ``sigma'(S^m)`` only where
    equation (6) and its kin do not hold (:mod:`sparsecnn.planner.rules`);
    ``phi(pad(Z^m))`` recomputed by sparse products.
``"min-memory"``
    The fewest bytes from which the backward pass needs no GEMM again (only
    sparse products and elementwise work); ties go to fewer flops.
a number ``B``
    A byte budget per instance: the plan with the fewest recomputation flops
    whose kept bytes are at most ``B``.  Forward segments, GEMMs included,
    may be recomputed from checkpoints (``Z^1 = X`` is always one).  A
    budget below the smallest feasible one raises :class:`BudgetError` naming
    that smallest budget.

Bytes count everything held between the forward and the backward pass except
the input ``X`` (the caller holds it), each quantity at the dtype it is
stored in (``bool`` for ``sigma'`` of ReLU and leaky ReLU, ``uint8`` winner
offsets); ``Z^{L+1}``, the output, is always kept.  Flops are per instance:
a sparse product costs the nnz of its operator, a GEMM ``2 rows inner cols``
(the bias is not counted), elementwise work one flop per entry.

How the optimum is found
------------------------
Each quantity a plan may keep belongs to the layer whose forward pass
produces it (``Z^{m+1}`` to layer ``m``), and every recipe reads only
quantities of its own layer, the layer's input ``Z^m`` and the parameters.
So a plan is a choice, layer by layer from ``L`` down to 1, of a kept subset
and of recipes, linked only by whether layer ``m`` needs ``Z^m`` rebuilt.  A
dynamic programme over the layers with that one bit of state, keeping the
Pareto front of (bytes, flops) at every step, finds the exact optimum of
every policy; a quantity needed twice is recomputed once.

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((8, 8, 1), [ConvLayer(4, h=3, p=1, r=2), FullLayer(10)])
>>> make_plan(net, "min-memory").retained
('pool1', 'Z2', 'Z3')
>>> make_plan(net, "store-all").retained
('phi1', 'S1', 'pool1', 'Z2', 'Z3')
>>> make_plan(net, "min-memory").bytes_per_instance     # 64 uint8 offsets + 8 * (64 + 10)
656
>>> make_plan(net, 80).retained                         # only the output: recompute from X
('Z3',)
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..exceptions import ConfigError, InputTypeError
from . import draw, rules
from .graph import Recipe, build_graph

__all__ = ["Plan", "BudgetError", "POLICIES", "make_plan", "pareto_front"]

POLICIES = ("store-all", "slides", "min-memory")
"""The named policies; a number is a byte budget per instance."""

_ORDER = {"phi": 0, "S": 1, "dsigma": 2, "pool": 3, "Z": 4}


class BudgetError(ConfigError):
    """No plan keeps at most the requested bytes per instance."""


def _prefix(name: str) -> str:
    return name.rstrip("0123456789")


def _sort_key(G: nx.DiGraph, name: str) -> tuple[int, int]:
    return (G.nodes[name]["group"], _ORDER.get(_prefix(name), 9))


@dataclass(frozen=True)
class _Option:
    """One way for layer ``m``'s backward pass to get what it needs, given a kept subset."""

    rflops: int
    bflops: int
    uses_input: bool
    recipes: tuple[tuple[str, str], ...]

    @property
    def cost(self) -> tuple[int, int]:
        return (self.rflops, self.bflops)


@dataclass(frozen=True)
class _Partial:
    nbytes: int
    cost: tuple[int, int]
    choices: tuple[tuple[int, frozenset[str], _Option], ...]


class _Solver:
    """Exact plan search on the compute graph (see the module docstring)."""

    def __init__(self, G: nx.DiGraph) -> None:
        self.G = G
        self.L: int = G.graph["L"]
        self.recipes: dict[str, Recipe] = G.graph["recipes"]
        self._cache: dict[tuple[int, frozenset[str], bool, bool], list[_Option]] = {}

    def nbytes(self, kept: Iterable[str]) -> int:
        return int(sum(self.G.nodes[n]["bytes"] for n in kept))

    def forced(self, m: int) -> frozenset[str]:
        return frozenset({f"Z{self.L + 1}"}) if m == self.L else frozenset()

    def all_subsets(self, m: int) -> list[frozenset[str]]:
        forced = self.forced(m)
        free = [n for n in self.G.graph["groups"][m] if n not in forced]
        return [forced | frozenset(c) for k in range(len(free) + 1) for c in itertools.combinations(free, k)]

    def local_options(self, m: int, kept: frozenset[str], demand: bool, allow_gemm: bool) -> list[_Option]:
        key = (m, kept, demand, allow_gemm)
        if key not in self._cache:
            self._cache[key] = self._local_options(m, kept, demand, allow_gemm)
        return self._cache[key]

    def _local_options(self, m: int, kept: frozenset[str], demand: bool, allow_gemm: bool) -> list[_Option]:
        G, recipes = self.G, self.recipes
        local = [n for n, a in G.nodes(data=True)
                 if a["group"] == m and a["kind"] in ("forward", "backward") and n not in kept]
        allowed: dict[str, list[Recipe]] = {}
        for n in local:
            rs = [recipes[r] for r in G.graph["by_output"].get(n, [])]
            allowed[n] = [r for r in rs if allow_gemm or r.backward or r.op != "gemm"]
        targets = list(G.graph["targets"][m])
        if demand and f"Z{m + 1}" not in kept:
            targets.append(f"Z{m + 1}")
        choice_nodes = [n for n in local if len(allowed[n]) > 1]
        options: dict[tuple[Any, ...], _Option] = {}
        for combo in itertools.product(*(allowed[n] for n in choice_nodes)):
            assign = {n: rs[0] for n, rs in allowed.items() if len(rs) == 1}
            assign.update(zip(choice_nodes, combo, strict=True))
            closure = _closure(G, m, kept, assign, targets)
            if closure is None:
                continue
            needed, uses_input = closure
            opt = _Option(
                rflops=sum(r.flops for r in needed.values() if not r.backward),
                bflops=sum(r.flops for r in needed.values() if r.backward),
                uses_input=uses_input,
                recipes=tuple(sorted((n, r.id) for n, r in needed.items())),
            )
            options[opt.recipes] = opt
        # drop options another one beats on cost without needing more
        opts = sorted(options.values(), key=lambda o: (o.cost, o.uses_input))
        kept_opts: list[_Option] = []
        for o in opts:
            if not any(p.cost <= o.cost and (o.uses_input or not p.uses_input) for p in kept_opts):
                kept_opts.append(o)
        return kept_opts

    def front(self, subsets: Any, allow_gemm: bool) -> list[_Partial]:
        """Pareto front of complete plans over (bytes, cost); ``subsets(m)`` lists kept subsets of layer m."""
        states: dict[bool, list[_Partial]] = {False: [_Partial(0, (0, 0), ())]}
        for m in range(self.L, 0, -1):
            new: dict[bool, list[_Partial]] = {False: [], True: []}
            for demand, partials in states.items():
                for K in subsets(m):
                    kb = self.nbytes(K)
                    for opt in self.local_options(m, K, demand, allow_gemm):
                        nxt = opt.uses_input and m > 1
                        for p in partials:
                            new[nxt].append(_Partial(p.nbytes + kb,
                                                     (p.cost[0] + opt.cost[0], p.cost[1] + opt.cost[1]),
                                                     p.choices + ((m, K, opt),)))
            states = {d: pareto_front(ps) for d, ps in new.items() if ps}
        return pareto_front([p for ps in states.values() for p in ps])


def _closure(G: nx.DiGraph, m: int, kept: frozenset[str], assign: dict[str, Recipe], targets: list[str]
             ) -> tuple[dict[str, Recipe], bool] | None:
    """What layer ``m`` computes to reach ``targets`` with recipes ``assign``, and whether it reads
    ``Z^m`` (from layer ``m - 1``); ``None`` where a needed quantity has no recipe."""
    needed: dict[str, Recipe] = {}
    uses_input = False
    visiting: set[str] = set()

    def visit(n: str) -> bool:
        nonlocal uses_input
        a = G.nodes[n]
        if n in kept or a["kind"] == "param" or n in needed:
            return True
        if a["group"] != m:                      # Z^m (from below) or dZ^{m+1} (from above)
            if n == f"Z{m}" and m > 1:
                uses_input = True
            return True
        r = assign.get(n)
        if r is None or n in visiting:
            return False
        visiting.add(n)
        ok = all(visit(u) for u in r.inputs)
        visiting.discard(n)
        needed[n] = r
        return ok

    if not all(visit(t) for t in targets):
        return None
    return needed, uses_input


def pareto_front(partials: Sequence[_Partial]) -> list[_Partial]:
    """The plans no other plan beats on both bytes and cost, sorted by bytes.

    Parameters
    ----------
    partials : sequence of _Partial
        Candidate (partial) plans, each with ``nbytes`` kept per instance and ``cost``
        ``(recompute flops, backward flops)`` per instance.

    Returns
    -------
    list of _Partial
        Increasing ``nbytes`` and strictly decreasing ``cost``; among equal
        ``nbytes`` the cheapest.

    Examples
    --------
    >>> candidates = [_Partial(100, (50, 0), ()), _Partial(80, (90, 0), ()),
    ...               _Partial(120, (60, 0), ()), _Partial(80, (70, 0), ())]
    >>> [(p.nbytes, p.cost) for p in pareto_front(candidates)]
    [(80, (70, 0)), (100, (50, 0))]
    """
    out: list[_Partial] = []
    for p in sorted(partials, key=lambda p: (p.nbytes, p.cost)):
        if not out or p.cost < out[-1].cost:
            out.append(p)
    return out


def _fixed(G: nx.DiGraph, policy: str) -> dict[int, frozenset[str]]:
    """Kept subsets of ``"store-all"`` and ``"slides"``, layer by layer."""
    L = G.graph["L"]
    net_layers = G.graph["layers"]
    kept: dict[int, frozenset[str]] = {}
    for m in range(1, L + 1):
        ly = net_layers[m - 1]
        names = {f"Z{m + 1}"}
        if rules.has_winners(ly):
            names.add(f"pool{m}")
        if policy == "store-all":
            if f"phi{m}" in G:
                names.add(f"phi{m}")
            if rules.needs_sigma_prime(ly):
                names.add(f"S{m}")
        elif rules.needs_sigma_prime(ly) and not rules.sigma_prime_from_next_Z(ly):
            names.add(f"dsigma{m}")
        kept[m] = frozenset(names)
    return kept


@dataclass
class Plan:
    """What a run keeps between the forward and the backward pass, and how it rebuilds the rest.

    Made by :meth:`sparsecnn.Network.plan`; followed by
    :meth:`~sparsecnn.Network.forward`, :meth:`~sparsecnn.Network.backward`
    and :meth:`~sparsecnn.Network.objective` given ``plan=``.

    Attributes
    ----------
    network : Network
    policy : str or float
        ``"store-all"``, ``"slides"``, ``"min-memory"`` or a byte budget per instance.
    retained : tuple of str
        The kept quantities, e.g. ``("pool1", "Z2", "Z3")``; layer number last.
    bytes_per_instance : int
        Bytes kept per instance (``X`` excluded), at the stored dtypes.
    recompute_flops_per_instance : int
        Flops per instance spent in the backward pass rebuilding forward quantities.
    backward_flops_per_instance : int
        Flops per instance of the backward pass proper (equations (1)-(7) and the gradients).
    recipes : dict of str to str
        For every quantity the backward pass computes, the id of the recipe it uses.
    graph : networkx.DiGraph
        The compute graph with node attribute ``status`` (``"kept"``, ``"recomputed"``,
        ``"dropped"``, ``"backward"``, ``"unused"``, ``"input"``, ``"param"``) and edge
        attribute ``chosen`` (the edge's recipe is the one the backward pass uses).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)]).plan("slides")
    >>> plan
    Plan(policy='slides', retained=('pool1', 'Z2', 'Z3'), bytes_per_instance=96, recompute_flops_per_instance=152, backward_flops_per_instance=726)
    >>> plan.recipe("dS1").equation[:3], plan.recomputed()
    ('(6)', ('dsigmaZ1', 'phi1'))
    """

    network: Any = field(repr=False)
    policy: str | float
    retained: tuple[str, ...]
    bytes_per_instance: int
    recompute_flops_per_instance: int
    backward_flops_per_instance: int
    recipes: dict[str, str] = field(repr=False)
    graph: nx.DiGraph = field(repr=False)
    store_all_bytes: int = field(default=0, repr=False)

    def recipe(self, name: str) -> Recipe:
        """The :class:`~sparsecnn.planner.graph.Recipe` the backward pass uses for ``name``.

        Parameters
        ----------
        name : str
            A recomputed or backward quantity, such as ``"phi1"`` or ``"dS1"``.

        Returns
        -------
        Recipe

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).plan("slides")
        >>> r = plan.recipe("phi1")
        >>> r.inputs, r.op, r.flops                    # nnz of P_phi^1: h h d^1 a_conv b_conv = 9 * 36
        (('pad1',), 'sparse', 324)
        """
        recipe: Recipe = self.graph.graph["recipes"][self.recipes[name]]
        return recipe

    def recomputed(self) -> tuple[str, ...]:
        """Forward quantities rebuilt in the backward pass, in layer order.

        Returns
        -------
        tuple of str

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> net.plan("slides").recomputed()          # pad(Z^1), phi(pad(Z^1)) and (6)'s mask
        ('dsigmaZ1', 'pad1', 'phi1')
        """
        G = self.graph
        names = [n for n, a in G.nodes(data=True) if a.get("status") == "recomputed"]
        return tuple(sorted(names, key=lambda n: (G.nodes[n]["group"], n)))

    def explain(self) -> str:
        """A table: what is kept, what is recomputed, by which equation, at what cost.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> print(net.plan("min-memory").explain())
        Plan 'min-memory': keeps 186 bytes per instance (store-all 3,354: 5.5%); recomputes 378 flops per instance
        quantity  slide symbol            shape   dtype    bytes/inst  status      flops/inst  how
        pad1      pad(Z^1)                1 x 64  float64           0  recomputed          36  vec(pad(Z^1)) = P_pad^1 vec(Z^1) [sparse]
        phi1      phi(pad(Z^1))           9 x 36  float64           0  recomputed         324  vec(phi(pad(Z^1))) = P_phi^1 vec(pad(Z^1)) [sparse]
        pool1     winners^1               2 x 9   uint8            18  kept                    held from the forward pass
        dsigmaZ1  sigma'(S^1) at winners  2 x 9   float64           0  recomputed          18  (6) vec(I[Z^2]) (relu): Z^2 holds sigma(S^1) at the winners [elementwise]
        Z2        Z^2                     2 x 9   float64         144  kept                    held from the forward pass
        dS1       dxi/dS^1                2 x 36                       backward                backward pass uses (6) dxi/dvec(S^1)^T = (dxi/dvec(Z^2)^T ⊙ vec(sigma'(S^1) from Z^2)^T) P_pool^1
        Z3        z^3                     3 x 1   float64          24  kept                    held from the forward pass
        dS2       dxi/ds^2                3 x 1                        backward                backward pass uses (4) with sigma' = 1: dxi/ds^2 = dxi/dz^3
        <BLANKLINE>
        layer 1: relu with max pooling: equation (6) reads sigma'(S^1) at the winners from Z^2, so S^1 is not needed (rule 1)
        """
        return draw.explain_table(self)

    def draw(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the compute graph with matplotlib (through networkx); returns the axes.

        Kept quantities are green, recomputed ones orange, the backward pass
        blue, quantities dropped after the forward pass grey; the edges the
        backward pass uses are solid, the other recipes dashed.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw; a new figure when ``None``.
        **kwargs
            Passed to :func:`~sparsecnn.planner.draw.draw_plan` (``with_labels``, ``font_size``).

        Returns
        -------
        matplotlib Axes

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> fig, ax = plt.subplots()
        >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).plan("min-memory")
        >>> plan.draw(ax, with_labels=False) is ax
        True
        >>> plt.close(fig)
        """
        return draw.draw_plan(self, ax=ax, **kwargs)

    def to_dot(self) -> str:
        """The annotated compute graph in Graphviz DOT.

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> print(Network((1, 1, 2), [FullLayer(2)]).plan("slides").to_dot().splitlines()[0])
        digraph plan {
        """
        return draw.to_dot(self)


def _check_policy(policy: object) -> str | float:
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ConfigError(f"plan policy must be one of {POLICIES} or a byte budget per instance, "
                              f"got {policy!r}")
        return policy
    if isinstance(policy, bool) or not isinstance(policy, numbers.Real):
        raise InputTypeError(f"plan policy must be one of {POLICIES} or a number of bytes per instance, "
                             f"got {policy!r}")
    value = float(policy)
    if value != value or value < 0:
        raise ConfigError(f"a byte budget per instance must be a number >= 0, got {policy!r}")
    return int(policy) if isinstance(policy, numbers.Integral) else value


def make_plan(net: Any, policy: str | float) -> Plan:
    """The plan of ``net`` for ``policy`` (see the module docstring); same as ``net.plan(policy)``.

    Parameters
    ----------
    net : Network
    policy : {"store-all", "slides", "min-memory"} or float
        A named policy, or a byte budget per instance.

    Returns
    -------
    Plan

    Raises
    ------
    BudgetError
        A byte budget below the smallest feasible one (the message names it).

    Examples
    --------
    On ``6 x 6 x 1`` images, ``Z^2`` is ``2 x 9`` (144 bytes), the winners 18 ``uint8``
    offsets and ``z^3`` 3 floats (24 bytes):

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> make_plan(net, "min-memory")
    Plan(policy='min-memory', retained=('pool1', 'Z2', 'Z3'), bytes_per_instance=186, recompute_flops_per_instance=378, backward_flops_per_instance=1626)
    >>> make_plan(net, 10)
    Traceback (most recent call last):
    ...
    sparsecnn.planner.plan.BudgetError: no plan keeps at most 10 bytes per instance; the smallest feasible budget is 24 bytes per instance (keeping Z3 and recomputing the rest from X)
    """
    policy = _check_policy(policy)
    G = build_graph(net)
    G.graph["layers"] = list(net.layers)
    solver = _Solver(G)
    if policy in ("store-all", "slides"):
        fixed = _fixed(G, str(policy))
        best = min(solver.front(lambda m: [fixed[m]], True), key=lambda p: p.cost)
    elif policy == "min-memory":
        best = solver.front(solver.all_subsets, False)[0]
    else:
        front = solver.front(solver.all_subsets, True)
        fits = [p for p in front if p.nbytes <= float(policy)]
        if not fits:
            smallest = front[0]
            kept = sorted(set().union(*(K for _, K, _ in smallest.choices)), key=lambda n: _sort_key(G, n))
            raise BudgetError(
                f"no plan keeps at most {policy} bytes per instance; the smallest feasible budget is "
                f"{smallest.nbytes} bytes per instance (keeping {', '.join(kept)} and recomputing the rest "
                f"from X)"
            )
        best = min(fits, key=lambda p: (p.cost, p.nbytes))
    store_all = _fixed(G, "store-all")
    return _finish(net, policy, G, best, solver.nbytes(set().union(*store_all.values())))


def _finish(net: Any, policy: str | float, G: nx.DiGraph, best: _Partial, store_all_bytes: int) -> Plan:
    kept: set[str] = set()
    recipes: dict[str, str] = {}
    for _, K, opt in best.choices:
        kept |= K
        recipes.update(dict(opt.recipes))
    retained = tuple(sorted(kept, key=lambda n: _sort_key(G, n)))
    for n, a in G.nodes(data=True):
        if a["kind"] in ("input", "param"):
            a["status"] = a["kind"]
        elif n in kept:
            a["status"] = "kept"
        elif n in recipes:
            a["status"] = "recomputed" if a["kind"] == "forward" else "backward"
        else:
            a["status"] = "dropped" if a["kind"] == "forward" else "unused"
    for _, v, a in G.edges(data=True):
        a["chosen"] = recipes.get(v) == a["recipe"]
    return Plan(
        network=net,
        policy=policy,
        retained=retained,
        bytes_per_instance=int(best.nbytes),
        recompute_flops_per_instance=int(best.cost[0]),
        backward_flops_per_instance=int(best.cost[1]),
        recipes=recipes,
        graph=G,
        store_all_bytes=int(store_all_bytes),
    )
