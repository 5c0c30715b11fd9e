"""Showing a plan: the :meth:`Plan.explain <sparsecnn.planner.plan.Plan.explain>` table,
a matplotlib drawing through networkx, and Graphviz DOT.

The DOT writer is written here (pydot, which ``networkx.nx_pydot`` needs, is
not a dependency of sparsecnn).

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)]).plan("slides")
>>> dot = to_dot(plan)
>>> '"pool1" -> "dS1"' in dot and "fillcolor" in dot
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

from . import rules

if TYPE_CHECKING:  # pragma: no cover
    from .plan import Plan

__all__ = ["explain_table", "draw_plan", "to_dot", "STATUS_COLORS"]

STATUS_COLORS = {
    "kept": "#4caf50",
    "recomputed": "#ff9800",
    "dropped": "#d9d9d9",
    "backward": "#64b5f6",
    "unused": "#f2f2f2",
    "input": "#9e9e9e",
    "param": "#bdbdbd",
}
"""Fill colour of a node by its ``status`` in :attr:`Plan.graph`."""


def _policy_text(plan: Plan) -> str:
    return repr(plan.policy) if isinstance(plan.policy, str) else f"budget {plan.policy:g} bytes"


def _fmt(n: int) -> str:
    return f"{n:,}"


def explain_table(plan: Plan) -> str:
    """The text of :meth:`Plan.explain`: one row per quantity the backward pass reads.

    A header line (bytes kept per instance against ``"store-all"``, flops recomputed
    per instance), then a table of the kept and recomputed quantities and the
    ``dxi/dS^m`` of the backward pass, each with its slide symbol, shape (such as
    ``d^{m+1} x a^m_conv b^m_conv``), dtype, bytes, status and recipe; then one note
    per layer on how ``sigma'(S^m)`` is obtained.

    Parameters
    ----------
    plan : Plan

    Returns
    -------
    str

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).plan("slides")
    >>> table = explain_table(plan)
    >>> print(table.splitlines()[0])
    Plan 'slides': keeps 186 bytes per instance (store-all 3,354: 5.5%); recomputes 378 flops per instance
    >>> [line.split()[0] for line in table.splitlines()[2:10]]
    ['pad1', 'phi1', 'pool1', 'dsigmaZ1', 'Z2', 'dS1', 'Z3', 'dS2']
    >>> print(table.splitlines()[-1])
    layer 1: relu with max pooling: equation (6) reads sigma'(S^1) at the winners from Z^2, so S^1 is not needed (rule 1)
    """
    G = plan.graph
    sa = plan.store_all_bytes
    share = f"{100.0 * plan.bytes_per_instance / sa:.1f}%" if sa else "-"
    lines = [
        f"Plan {_policy_text(plan)}: keeps {_fmt(plan.bytes_per_instance)} bytes per instance "
        f"(store-all {_fmt(sa)}: {share}); recomputes {_fmt(plan.recompute_flops_per_instance)} "
        f"flops per instance"
    ]
    rows = [("quantity", "slide symbol", "shape", "dtype", "bytes/inst", "status", "flops/inst", "how")]
    names = [n for n, a in G.nodes(data=True)
             if a["kind"] == "forward" and a["status"] in ("kept", "recomputed")]
    names += [n for n in G.nodes if n.startswith("dS") and n in plan.recipes]
    order = ["pad", "phi", "S", "sigma", "dsigma", "pool", "dsigmaZ", "Z", "dS"]
    names.sort(key=lambda n: (G.nodes[n]["group"], order.index(n.rstrip("0123456789"))))
    for n in names:
        a = G.nodes[n]
        if a["status"] == "kept":
            how, flops, nbytes = "held from the forward pass", "", _fmt(a["bytes"])
        else:
            r = plan.recipe(n)
            how, flops, nbytes = f"{r.equation} [{r.op}]", _fmt(r.flops), "0"
            if a["kind"] == "backward":
                how, flops, nbytes = f"backward pass uses {r.equation}", "", ""
        rows.append((n, a["label"], f"{a['shape'][0]} x {a['shape'][1]}", a["dtype"] if nbytes else "",
                     nbytes, a["status"], flops, how))
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    right = {4, 6}
    for row in rows:
        cells = [c.rjust(w) if k in right and row is not rows[0] else c.ljust(w)
                 for k, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    notes = []
    for ly in G.graph["layers"]:
        m = ly.m
        if rules.needs_sigma_prime(ly) and not rules.sigma_prime_from_next_Z(ly):
            if f"dsigma{m}" in plan.retained:
                what = f"sigma'(S^{m}) is kept"
            elif f"S{m}" in plan.retained:
                what = f"S^{m} is kept and sigma'(S^{m}) follows elementwise"
            else:
                what = f"S^{m} is recomputed from a checkpoint by a GEMM"
            notes.append(
                f"layer {m}: average pooling after {ly.sigma.name}: Z^{m + 1} holds window averages, "
                f"which do not determine sigma'(S^{m}) at each entry, so {what} (rule 3)"
            )
        elif rules.has_winners(ly) and rules.needs_sigma_prime(ly) and f"dsigmaZ{m}" in plan.recipes:
            notes.append(
                f"layer {m}: {ly.sigma.name} with max pooling: equation (6) reads sigma'(S^{m}) at the "
                f"winners from Z^{m + 1}, so S^{m} is not needed (rule 1)"
            )
    if notes:
        lines.append("")
        lines += notes
    return "\n".join(lines)


def _positions(G: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """One row per layer: forward quantities on the left, the backward pass on the right;
    ``Z^m`` and ``dxi/dZ^m`` between the rows of layers ``m - 1`` and ``m``."""
    order = {"pad": 1, "phi": 2, "W": 3, "S": 4, "sigma": 5, "pool": 6, "dsigma": 7, "dsigmaZ": 8,
             "dA": 12, "dS": 13, "dphi": 14, "dW": 15, "db": 16}
    pos = {}
    for n, a in G.nodes(data=True):
        prefix = n.rstrip("0123456789")
        if prefix == "Z":
            pos[n] = (0.0, -float(a["layer"] - 1) - 0.5)
        elif prefix == "dZ":
            pos[n] = (11.0, -float(a["layer"] - 1) - 0.5)
        else:
            pos[n] = (float(order.get(prefix, 9)), -float(a["group"]))
    return pos
def draw_plan(plan: Plan, ax: Any = None, *, with_labels: bool = True, font_size: float = 6.0) -> Any:
    """Draw :attr:`Plan.graph` on ``ax`` (a new figure when ``None``); returns the axes.

    One row per layer: forward quantities (``pad(Z^m)``, ``phi(pad(Z^m))``, ``S^m``, ...)
    on the left, the backward pass on the right; nodes are coloured by status
    (:data:`STATUS_COLORS`), the edges the plan uses are solid.  Needs matplotlib.

    Parameters
    ----------
    plan : Plan
    ax : matplotlib Axes, optional
    with_labels : bool
        Write the node names.
    font_size : float
        Size of the node names.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).plan("slides")
    >>> ax = draw_plan(plan)
    >>> ax.get_title()
    "plan 'slides': 186 bytes/instance kept, 378 flops/instance recomputed"
    >>> plt.close(ax.figure)
    """
    import matplotlib.pyplot as plt

    G = plan.graph
    if ax is None:
        _, ax = plt.subplots(figsize=(14, 1.6 + 1.6 * G.graph["L"]))
    pos = _positions(G)
    colors = [STATUS_COLORS[G.nodes[n]["status"]] for n in G.nodes]
    chosen = [(u, v) for u, v, a in G.edges(data=True) if a["chosen"]]
    other = [(u, v) for u, v, a in G.edges(data=True) if not a["chosen"]]
    nx.draw_networkx_nodes(G, pos, ax=ax, node_color=colors, node_size=420, edgecolors="#555555")
    arc = "arc3,rad=0.18"
    nx.draw_networkx_edges(G, pos, edgelist=other, ax=ax, style="dashed", edge_color="#bbbbbb",
                           arrows=True, arrowsize=6, node_size=420, connectionstyle=arc)
    nx.draw_networkx_edges(G, pos, edgelist=chosen, ax=ax, edge_color="#333333", arrows=True,
                           arrowsize=8, node_size=420, connectionstyle=arc)
    if with_labels:
        nx.draw_networkx_labels(G, pos, ax=ax, font_size=font_size)
    ax.set_title(f"plan {_policy_text(plan)}: {plan.bytes_per_instance:,} bytes/instance kept, "
                 f"{plan.recompute_flops_per_instance:,} flops/instance recomputed", fontsize=9)
    handles = [plt.Line2D([], [], marker="o", linestyle="", markerfacecolor=c, markeredgecolor="#555555",
                          label=s) for s, c in STATUS_COLORS.items()]
    ax.legend(handles=handles, fontsize=6, loc="lower left", frameon=False)
    ax.set_axis_off()
    return ax


def _q(s: object) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(plan: Plan) -> str:
    """:attr:`Plan.graph` as Graphviz DOT: nodes coloured by status, the edges the backward pass uses solid.

    Each node carries its name, slide symbol, shape, dtype and bytes per instance;
    each edge its rule, equation and flops.  Render with ``dot -Tsvg``.

    Parameters
    ----------
    plan : Plan

    Returns
    -------
    str

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> plan = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).plan("slides")
    >>> dot = to_dot(plan)
    >>> dot.splitlines()[0], dot.splitlines()[-1]
    ('digraph plan {', '}')
    >>> print(next(line for line in dot.splitlines() if line.startswith('  "Z1" [')))
      "Z1" [label="Z1\\nZ^1 = X\\n1x36 float64, 288 B", fillcolor="#9e9e9e", status="input", bytes=288];
    """
    G = plan.graph
    lines = ["digraph plan {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontsize=10];',
             f"  label={_q('plan ' + _policy_text(plan) + f': {plan.bytes_per_instance} bytes/instance kept, ' + f'{plan.recompute_flops_per_instance} flops/instance recomputed')};"]
    for n, a in G.nodes(data=True):
        label = f"{n}\\n{a['label']}\\n{a['shape'][0]}x{a['shape'][1]} {a['dtype']}, {a['bytes']} B"
        lines.append(f"  {_q(n)} [label=\"{label}\", fillcolor={_q(STATUS_COLORS[a['status']])}, "
                     f"status={_q(a['status'])}, bytes={a['bytes']}];")
    for u, v, a in G.edges(data=True):
        style = "solid" if a["chosen"] else "dashed"
        lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(a['rule'] + ' ' + str(a['flops']))}, "
                     f"equation={_q(a['equation'])}, flops={a['flops']}, style={style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
