"""The planner: which of ``Z``, ``S``, ``sigma'(S)``, ``phi(pad(Z))`` and the winners a run keeps.

The slides end by asking whether both ``Z^{m,i}`` and ``S^{m,i}`` must be
stored.  This package answers for any network the library builds:

- :mod:`~sparsecnn.planner.graph`: the compute graph (a ``networkx.DiGraph``)
  of the forward and backward pass, from the shapes alone;
- :mod:`~sparsecnn.planner.rules`: where a quantity can be recovered from
  others (equation (6) and its kin; note the correction to the issue's example
  in that module's docstring);
- :mod:`~sparsecnn.planner.plan`: :class:`Plan`, the policies ``"store-all"``,
  ``"slides"``, ``"min-memory"`` and byte budgets;
- :mod:`~sparsecnn.planner.execute`: the forward and backward pass that follow a plan;
- :mod:`~sparsecnn.planner.draw`: ``explain()``, matplotlib drawing, DOT.

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((8, 8, 1), [ConvLayer(4, h=3, p=1, r=2, activation="tanh"), FullLayer(10)])
>>> plan = net.plan("min-memory")
>>> plan.retained                  # tanh + max pooling: equation (6) holds, no sigma'(S) kept
('pool1', 'Z2', 'Z3')
"""

from .graph import Recipe, build_graph
from .plan import POLICIES, BudgetError, Plan, make_plan

__all__ = ["Plan", "BudgetError", "POLICIES", "make_plan", "build_graph", "Recipe"]
