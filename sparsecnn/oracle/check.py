"""Check a PyTorch implementation against sparsecnn: ``f``, the gradient, ``J v``, ``J^T u``, ``G v``.

:func:`check` reads the model through ``torch.fx`` with
:func:`sparsecnn.interop.read_torch` (its own parameters, exactly; any traceable
module, see :data:`sparsecnn.interop.SUPPORTED_TORCH_MODULES`), runs both on the
same inputs and compares, block by block and entry by entry, what the model
computes with what the slides' sparse matrices compute in float64 (see
:mod:`sparsecnn.oracle.report` for the rows).

The rows and how they localise an error
---------------------------------------
- ``forward`` ``Z^{m+1}``, ``m = 1..L``: each layer's output against the model's
  intermediate tensor (the fx node ending the layer, captured by running the
  traced graph), so a forward bug is reported at its own layer;
- ``output`` ``z^{L+1}`` and ``f``;
- ``grad``, ``JTv``: blocks ``W^m``, ``b^m`` from ``m = L`` down to 1;
- ``Jv``: ``J v``, then ``J v^[m]`` (``v`` zero outside layer ``m``'s parameters)
  from ``m = L`` down to 1;
- ``Gv``: the model's ``G v`` by blocks, then ``Gv:JT``: the model's ``J^T``
  applied to ``(1/l) B`` times the *reference's* ``J v``, which isolates the
  backward half of ``G v`` (with ``"Gv"`` the ``Jv`` rows are always included).

:meth:`CheckReport.first_failing_layer <sparsecnn.oracle.report.CheckReport.first_failing_layer>`
explains how each product names the layer where the error starts.  A layer
without bias in the model has ``b^m = 0`` in ``theta``, ``v`` zero there and no
``b^m`` rows.

What each side computes
-----------------------
Both sides use the objective of NOTATION.md with the model's parameters,
``f = theta^T theta/(2C) + (1/l) sum_i xi_i`` with the squared loss
``xi_i = ||z^{L+1,i} - onehot(y^i)||^2`` or the cross-entropy loss
``xi_i = -log softmax(z^{L+1,i})_{y_i}`` (``loss=``; a model ending in
``log_softmax`` / ``softmax`` has it, and that final node is read as part of the loss):

- PyTorch: ``z^{L+1}`` is ``model(x)`` (shape ``(l, n_L)``; the input of a final
  ``log_softmax`` / ``softmax``), ``f`` that formula in the model's dtype (for
  cross-entropy ``F.nll_loss`` of what the model returns -- ``log`` of it after a
  final ``softmax``, where a ``p_y`` below the dtype's smallest normal number makes
  ``f`` and the gradient rows unavailable, saying why -- or ``F.cross_entropy``
  of its logits), the gradient by ``torch.autograd.grad``; ``J v`` by
  ``torch.func.jvp`` of ``functional_call(model, params, x)`` (without the final
  ``log_softmax``) along ``v`` (as PyTorch parameter tensors), ``J^T u`` by
  ``torch.func.vjp`` with cotangent ``u^T``, and ``G v = J^T (1/l) B (J v)``
  (``B = 2I``, or ``diag(p) - p p^T`` with ``p = softmax(z^{L+1})``) from
  PyTorch's own ``J v`` and ``J^T``.  An ``autograd.Function`` without ``setup_context`` cannot enter
  ``torch.func``: then ``J^T u`` falls back to ``torch.autograd.grad`` with
  ``grad_outputs`` and ``J v`` to the double-backward trick (``J v =
  d/dw <J^T w, v>``); the report says which was used.
- sparsecnn: the engine (:mod:`sparsecnn.engine`) with the reference backend:
  every step a literal product of :mod:`sparsecnn.equations` (``P_phi``,
  ``P_pad``, ``P_pool`` as ``csr_array``), keeping everything; the gradient and
  ``J^T u``, ``G v`` by the engine's backward pass, ``J v`` by its R-operator
  forward pass, on the same kept quantities.

Layouts
-------
Inputs ``x`` are PyTorch's ``(l, channels, height, width)``; ``X`` (keyword)
is sparsecnn's ``(d a b, l)`` with ``X[c + d*(r + a*q), i] = x[i, c, r, q]``.
Every reported entry is named in both layouts (see
:mod:`sparsecnn.oracle.layouts`): ``theta[k] = W^m[o, j]`` and the PyTorch
parameter name with its multi-index, ``z^{L+1}[k, i]`` and ``out[i, k]``.

Precision
---------
The reference always computes in float64 on exactly the numbers the model
sees: the model's parameters, ``x`` rounded to the model's dtype, and ``v``,
``u`` rounded likewise.  The difference is then the model's own rounding (or
its bug).  Each entry gets its own tolerance, a rounding-error bound of the
sums that produce it (``gamma_K |A||B|``, with the operands' own errors, carried
through every layer, :mod:`sparsecnn.oracle.bounds`), with ``u`` the unit roundoff of the
model plus that of float64.  The forward rows use the a priori bound; the
other products start from the model's measured forward differences, so that
their bounds stay tight.  A correct float32 model passes; a backward pass wrong
by 0.1% at some entries fails (``tests/test_torch_functional.py``).  Passing
``rtol`` switches to the normwise rule per block, ``atol + rtol * scale``.
Errors are also given in units of the model's machine epsilon.

Max-pooling ties
----------------
Where a window's maximum is attained twice, PyTorch picks the first in
row-major order and sparsecnn (``max_pool_winners``) the first in
column-major order: the same ``Z^{m+1}``, but a different ``P_pool^{m,i}`` and
so a different gradient.  With ``use_model_winners=True`` (default) the
model is run once with forward hooks on its ``MaxPool2d`` modules, the winners
of ``max_pool2d(input, return_indices=True)`` are converted with
:func:`sparsecnn.interop.torch_pool_indices_to_winners` and the reference
builds ``P_pool`` from them for ``f``, the gradient, ``J v``, ``J^T u`` and
``G v`` alike.  The report counts, per layer, the windows where the two rules
differ (exact ties, and near-ties where a float32 model saw a different
maximum than the float64 reference).

Examples
--------
The PyTorch-free part: the reference forward pass keeps what the backward pass reads.

>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> Ws, bs = net.unpack(net.init_params(seed=0))
>>> out, kept = reference_forward(net, Ws, bs, np.ones((16, 2)))
>>> sorted(kept)
['S1', 'S2', 'Z1', 'Z2', 'Z3', 'phi1', 'pool1']
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import engine, objective
from ..engine import Keep
from ..exceptions import ConfigError, InputTypeError, ShapeError
from ..interop import (
    TorchReading,
    X_from_torch,
    X_to_torch,
    _torch,
    read_torch,
    torch_pool_indices_to_winners,
)
from ..network import Network
from .bounds import ErrorBounds
from .layouts import (
    ParameterIndex,
    TorchParameter,
    layer_offsets,
    theta_to_torch,
    torch_parameters,
    torch_to_theta,
)
from .report import CheckReport, Comparison, TieInfo, eps_name

__all__ = [
    "check",
    "PRODUCTS",
    "default_rtol",
    "reference_forward",
    "reference_products",
    "compare_products",
    "model_pool_winners",
    "capture",
    "tie_info",
]

PRODUCTS = ("grad", "Jv", "JTv", "Gv")
"""Products :func:`check` can compare (``"JTu"`` is accepted for ``"JTv"``)."""

_ALIASES = {"grad": "grad", "jv": "Jv", "jtv": "JTv", "jtu": "JTv", "gv": "Gv"}


def default_rtol(eps: float) -> float:
    """``max(1e4 eps, 1e-9)`` (at most 0.1): the default relative tolerance for machine epsilon ``eps``.

    Examples
    --------
    >>> default_rtol(np.finfo(np.float32).eps), default_rtol(np.finfo(np.float64).eps)
    (0.0011920928955078125, 1e-09)
    """
    return float(min(max(1e4 * eps, 1e-9), 0.1))


def _parse_products(products: str | Iterable[str]) -> tuple[str, ...]:
    items = products.split(",") if isinstance(products, str) else list(products)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputTypeError(f"products must be names from {PRODUCTS}, got {item!r}")
        key = _ALIASES.get(item.strip().lower())
        if key is None:
            if not item.strip():
                continue
            raise ConfigError(f"unknown product {item!r}; choose from {', '.join(PRODUCTS)}")
        if key not in out:
            out.append(key)
    return tuple(p for p in PRODUCTS if p in out)


# ------------------------------------------------------------ the reference
def reference_forward(net: Network, Ws: list[np.ndarray], bs: list[np.ndarray], X: np.ndarray,
                      winners: Mapping[int, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The store-all forward pass of the reference backend, with max-pooling winners given from outside.

    The engine's forward loop (:func:`sparsecnn.engine.forward`) with
    :class:`~sparsecnn.engine.ReferenceBackend`: ``P_phi @ (P_pad @ Z)``,
    ``W @ phi + b 1^T``, ``P_pool @ vec(sigma(S))`` literally, in float64.

    Parameters
    ----------
    net : Network
    Ws, bs : lists of ndarray
        ``W^m``, ``b^m`` (``net.unpack(theta)``).
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
    winners : dict of int to ndarray, optional
        ``{m: winners}`` (positions in ``vec(sigma(S^m))``, shape
        ``(d^{m+1} a^{m+1} b^{m+1}, l)``) for max-pooling layers; the others
        use sparsecnn's own argmax.

    Returns
    -------
    out : ndarray, shape ``(n_L, l)``
    kept : dict
        ``Z{m}`` (``m = 1..L+1``, ``Z1 = X``), ``phi{m}``, ``S{m}`` (``s^m`` for
        full layers) and ``pool{m}`` (the winners used, as positions in
        ``vec(sigma(S^m))``).

    Examples
    --------
    Each kept quantity has one column per instance: ``vec(phi(pad(Z^{1,i})))``,
    ``vec(S^{1,i})``, ``vec(Z^{2,i})``, the winners of ``P_pool^{1,i}``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> Ws, bs = net.unpack(net.init_params(seed=0))
    >>> X = np.random.default_rng(0).standard_normal((36, 4))          # (d^1 a^1 b^1, l)
    >>> out, kept = reference_forward(net, Ws, bs, X)
    >>> out.shape, kept["phi1"].shape, kept["S1"].shape, kept["Z2"].shape, kept["pool1"].shape
    ((3, 4), (324, 4), (72, 4), (18, 4), (18, 4))
    """
    ref = net.replace(backend="reference")
    X = np.asarray(X, dtype=np.float64)
    given = ref.check_winners(winners, X.shape[1])
    Ws = [np.asarray(W, dtype=np.float64) for W in Ws]
    bs = [np.asarray(b, dtype=np.float64) for b in bs]
    out, kept = engine.forward(ref, ref.backend, Keep.everything(ref, "auto"), Ws, bs, X, winners=given)
    for ly in net.conv:                                   # the winners used, as positions
        if f"pool{ly.m}" in kept:
            kept[f"pool{ly.m}"] = engine.winner_positions(ly, kept[f"pool{ly.m}"])
    return out, kept


def reference_products(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, C: float, *,
                       products: Iterable[str] = PRODUCTS, v: np.ndarray | None = None,
                       u: np.ndarray | None = None, winners: Mapping[int, np.ndarray] | None = None
                       ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """sparsecnn's float64 ``z^{L+1}``, ``f``, gradient, ``J v``, ``J^T u`` and ``G v``.

    Returns
    -------
    results : dict
        ``"output"`` ``(n_L, l)``, ``"f"`` (float), ``"grad"`` ``(n,)``, and as
        requested ``"Jv"`` ``(n_L, l)``, ``"JTv"`` ``(n,)`` (``= J^T u``),
        ``"Gv"`` ``(n,)`` (``G = (1/l) sum_i (J^i)^T B^i J^i`` of ``net.loss``, no ``I/C`` term).
    kept : dict
        The forward pass's kept quantities (with the winners used).

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
    y : ndarray of int, shape ``(l,)``
        Labels in ``0..n_L-1``.
    C : float
        Regularisation of ``f``; ``inf`` for none.
    products : iterable of str
        Which of ``"grad"``, ``"Jv"``, ``"JTv"``, ``"Gv"`` to compute.
    v : ndarray, shape ``(n,)``, optional
        Needed for ``"Jv"`` and ``"Gv"``.
    u : ndarray, shape ``(n_L, l)``, optional
        Needed for ``"JTv"``.
    winners : dict of int to ndarray, optional
        As for :func:`reference_forward`.

    Examples
    --------
    The reference agrees with :meth:`Network.objective <sparsecnn.Network.objective>`:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> theta = net.init_params(seed=0)
    >>> X = np.random.default_rng(0).standard_normal((36, 4)); y = np.array([0, 1, 2, 0])
    >>> results, kept = reference_products(net, theta, X, y, np.inf, products=("grad", "Jv"),
    ...                                    v=np.ones(net.n_params))
    >>> sorted(results), results["output"].shape, results["grad"].shape, results["Jv"].shape
    (['Jv', 'f', 'grad', 'output'], (3, 4), (77,), (3, 4))
    >>> f, grad = net.objective(theta, X, y)
    >>> bool(np.isclose(results["f"], f)), bool(np.allclose(results["grad"], grad))
    (True, True)
    """
    products = set(products)
    Ws, bs = net.unpack(theta)
    out, kept = reference_forward(net, Ws, bs, X, winners)
    ref = net.replace(backend="reference")
    keep = Keep.everything(ref, "auto")
    encoded = {k: (engine.winner_offsets(ref.conv[int(k[4:]) - 1], v) if k.startswith("pool") else v)
               for k, v in kept.items()}

    def backward(dZ: np.ndarray) -> np.ndarray:
        return ref.pack(*engine.backward(ref, ref.backend, keep, Ws, bs, kept["Z1"], encoded, dZ))

    l = X.shape[1]
    xi_sum, dZ = ref.loss.batch(out, np.asarray(y), l)     # sum_i xi_i, (1/l) dxi/dz^{L+1}
    res: dict[str, Any] = {"output": out, "f": objective.value(theta, C, xi_sum, l)}
    if "grad" in products:
        res["grad"] = objective.gradient(theta, C, backward(dZ))
    if products & {"Jv", "Gv"}:
        if v is None:
            raise ConfigError("J v and G v need a vector v")
        Vs, vbs = net.unpack(v)
        Jv = engine.R_forward(ref, ref.backend, keep, Ws, encoded, Vs, vbs, X=kept["Z1"])
        if "Jv" in products:
            res["Jv"] = Jv
        if "Gv" in products:
            res["Gv"] = backward(ref.loss.B(Jv, 1.0 / l, out=out))
    if "JTv" in products:
        if u is None:
            raise ConfigError("J^T u needs a matrix u")
        res["JTv"] = backward(np.ascontiguousarray(u, dtype=np.float64))
    return res, kept


# ----------------------------------------------------------- comparison rows
def check_tolerances(rtol: object, atol: object, tol_factor: object = 1.0) -> None:
    """Refuse tolerances that would pass anything or nothing: each must be a finite real number.

    ``rtol`` (or ``None``: the default) and ``atol`` ``>= 0``, ``tol_factor > 0``.  An infinite
    one would report every entry as agreeing.

    Examples
    --------
    >>> check_tolerances(None, 0.0)
    >>> check_tolerances(float("inf"), 0.0)
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: rtol must be a finite number >= 0, got inf
    """
    for name, value, low in (("rtol", rtol, 0.0), ("atol", atol, 0.0), ("tol_factor", tol_factor, None)):
        if name == "rtol" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)) \
                or (float(value) < 0 if low is not None else float(value) <= 0):
            what = "a finite number >= 0" if low is not None else "a finite number > 0"
            raise ConfigError(f"{name} must be {what}, got {value!r}")


def compare_products(net: Network, ours: Mapping[str, Any], theirs: Mapping[str, Any], *,
                     rtol: float, atol: float, eps: float, k_worst: int = 5,
                     params: list[TorchParameter] | None = None,
                     labels: Mapping[str, str] | None = None,
                     bounds: Mapping[str, Any] | None = None, tol_factor: float = 1.0,
                     node_names: Mapping[int, str] | None = None) -> list[Comparison]:
    """The report's rows for every product present in both ``ours`` and ``theirs``.

    Both are in sparsecnn's layout: ``"output"`` and ``"Jv"`` ``(n_L, l)``,
    ``"f"`` a number, ``"grad"``, ``"JTv"``, ``"Gv"``, ``"GvJT"`` vectors in ``theta``'s
    order, ``"Z"`` ``{m: vec(Z^{m+1})}`` of shape ``(n_{m+1}, l)`` and ``"Jv_blocks"``
    ``{m: J v^[m]}`` of shape ``(n_L, l)``.  ``labels`` renames products in the rows
    (``{"JTv": "JTu"}``).

    Parameters
    ----------
    net : Network
    ours, theirs : mapping of str
        The reference and the results under test.
    rtol, atol, eps : float
        Tolerances and the machine epsilon of the implementation under test.
    k_worst : int
        Worst entries recorded per row.
    params : list of TorchParameter, optional
        PyTorch's parameter names (default those of :func:`sparsecnn.to_torch`).  A
        layer without a bias parameter gets no ``b^m`` row (``b^m`` is held at 0).
    labels : mapping of str to str, optional
    bounds : mapping of str, optional
        Per-entry error bounds, same keys and layouts as ``ours``
        (:mod:`sparsecnn.oracle.bounds`); where given, entry ``k`` passes when
        ``|theirs_k - ours_k| <= atol + tol_factor * bound_k`` and ``rtol`` is not used.
    tol_factor : float
        Multiplies the bounds.
    node_names : mapping of int to str, optional
        The model's fx node holding ``Z^{m+1}``, shown as the row's PyTorch name.

    Returns
    -------
    list of Comparison
        ``Z^{m+1}`` for ``m = 1..L`` (product ``"forward"``), ``z^{L+1}``, ``f``, then for
        each vector product the blocks ``W^m``, ``b^m`` from ``m = L`` down to 1;
        ``J v`` then ``J v^[m]`` from ``m = L`` down to 1; ``"GvJT"`` rows are labelled ``"Gv:JT"``.

    Examples
    --------
    An error in one entry of ``W^1`` of the gradient fails only that block:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> theta = net.init_params(seed=0)
    >>> X = np.random.default_rng(0).standard_normal((36, 4)); y = np.array([0, 1, 2, 0])
    >>> ours, _ = reference_products(net, theta, X, y, np.inf, products=("grad",))
    >>> theirs = dict(ours, grad=ours["grad"] + np.eye(net.n_params)[0] * 1e-3)
    >>> rows = compare_products(net, ours, theirs, rtol=1e-9, atol=0.0, eps=2.0 ** -52)
    >>> [(row.product, row.name, row.passed) for row in rows]
    [('output', 'z^{L+1}', True), ('f', 'f', True), ('grad', 'W^2', True), ('grad', 'b^2', True), ('grad', 'W^1', False), ('grad', 'b^1', True)]
    >>> rows[4].worst[0].ours_index, rows[4].worst[0].torch_index
    ('theta[0] = W^1[0, 0]', '0.weight[0, 0, 0, 0]')
    """
    labels = dict(labels or {"GvJT": "Gv:JT"})
    labels.setdefault("GvJT", "Gv:JT")
    bounds = dict(bounds or {})
    node_names = dict(node_names or {})
    pidx = ParameterIndex(net, params)
    off = layer_offsets(net)
    rows: list[Comparison] = []
    tol: dict[str, Any] = {"rtol": rtol, "atol": atol, "eps": eps}

    def entry_tol(b: Any) -> np.ndarray | None:
        return None if b is None else tol_factor * np.asarray(b, dtype=np.float64)

    def column_block(label: str, name: str, o: Any, t: Any, ours_name: str, torch_name: str,
                     bound: Any = None, m: int | None = None, image: tuple[int, int, int] | None = None) -> None:
        o, t = np.asarray(o, dtype=np.float64), np.asarray(t, dtype=np.float64)
        if o.shape != t.shape:
            raise ShapeError(f"{label} {name}: shape {t.shape} under test, {o.shape} in the reference")
        l = o.shape[1]

        def locate(k: int) -> tuple[str, str]:
            row, i = k // l, k % l
            if image is not None:                     # vec(Z): row c + d*(r + a*q) is [i, c, r, q] in NCHW
                a, _, d = image
                c, pix = row % d, row // d
                return f"{ours_name}[{row}, {i}]", f"{torch_name}[{i}, {c}, {pix % a}, {pix // a}]"
            return f"{ours_name}[{row}, {i}]", f"{torch_name}[{i}, {row}]"

        rows.append(Comparison.build(labels.get(label, label), name, o, t, m=m, k_worst=k_worst,
                                     torch_name=torch_name, locate=locate, tol=entry_tol(bound), **tol))

    if "Z" in ours and "Z" in theirs:
        for ly in net.layers:
            m = ly.m
            if m not in ours["Z"] or m not in theirs["Z"]:
                continue
            conv: Any = ly
            image = (conv.a_out, conv.b_out, conv.d_out) if m <= net.LC else None
            column_block("forward", f"Z^{m + 1}", ours["Z"][m], theirs["Z"][m], f"Z^{m + 1}",
                         node_names.get(m, f"Z{m + 1}"), bounds.get("Z", {}).get(m), m=m, image=image)
    if "output" in ours and "output" in theirs:
        column_block("output", "z^{L+1}", ours["output"], theirs["output"], "z^{L+1}", "out", bounds.get("output"))
    if "f" in ours and "f" in theirs:
        fb = bounds.get("f")
        rows.append(Comparison.build(labels.get("f", "f"), "f", np.array([ours["f"]]),
                                     np.array([theirs["f"]]), k_worst=k_worst, torch_name="f",
                                     locate=lambda k: ("f", "f"),
                                     tol=None if fb is None else entry_tol(np.array([fb])), **tol))
    for key in ("grad", "Jv", "JTv", "Gv", "GvJT"):
        if key not in ours or key not in theirs:
            continue
        if key == "Jv":
            column_block("Jv", "J v", ours["Jv"], theirs["Jv"], "Jv", "Jv", bounds.get("Jv"))
            blocks_o, blocks_t = ours.get("Jv_blocks", {}), theirs.get("Jv_blocks", {})
            for ly in reversed(net.layers):
                m = ly.m
                if m in blocks_o and m in blocks_t:
                    column_block("Jv", f"J v^[{m}]", blocks_o[m], blocks_t[m], f"Jv^[{m}]", f"Jv^[{m}]",
                                 bounds.get("Jv_blocks", {}).get(m), m=m)
            continue
        o = np.asarray(ours[key], dtype=np.float64)
        t = np.asarray(theirs[key], dtype=np.float64)
        if o.shape != t.shape:
            raise ShapeError(f"{key}: shape {t.shape} under test, {o.shape} in the reference (n,)")
        bound = bounds.get(key)
        product_scale = float(np.abs(o).max()) if o.size else 0.0
        for ly in reversed(net.layers):                        # backward order
            m = ly.m
            rows_, cols = ly.W_shape
            w_name = next(p.name for p in pidx.params if p.m == m and p.kind == "W")
            b_name = next((p.name for p in pidx.params if p.m == m and p.kind == "b"), None)
            blocks = [(f"W^{m}", off[m - 1], off[m - 1] + rows_ * cols, w_name)]
            if b_name is not None:                             # a layer without bias: b^m = 0, not compared
                blocks.append((f"b^{m}", off[m - 1] + rows_ * cols, off[m], b_name))
            for sym, start, stop, tname in blocks:
                def locate(k: int, start: int = int(start)) -> tuple[str, str]:
                    j = start + k
                    return f"theta[{j}] = {pidx.ours(j)}", pidx.torch(j)

                rows.append(Comparison.build(labels.get(key, key), sym, o[start:stop], t[start:stop], m=m,
                                             torch_name=tname, product_scale=product_scale,
                                             k_worst=k_worst, locate=locate,
                                             tol=None if bound is None else entry_tol(bound[start:stop]), **tol))
    return rows


# ------------------------------------------------------------ PyTorch side
def capture(reading: TorchReading, x: Any) -> tuple[dict[int, Any], dict[int, Any]]:
    """Run the traced model once (no gradient): each layer's output ``Z^{m+1}`` and the max-pooling winners.

    Parameters
    ----------
    reading : TorchReading
        From :func:`sparsecnn.interop.read_torch`.
    x : torch.Tensor, shape ``(l, d^1, a^1, b^1)``
        In the model's dtype.

    Returns
    -------
    outputs : dict of int to torch.Tensor
        ``{m: the output of layer m's last node}`` (NCHW for a conv layer, ``(l, n_{m+1})`` for a full one).
    indices : dict of int to torch.Tensor
        ``{m: indices}`` of ``max_pool2d(input, r, return_indices=True)`` on the input of each
        max-pooling node, PyTorch's ``(l, d^{m+1}, a^{m+1}, b^{m+1})``.

    Examples
    --------
    >>> import torch
    >>> from sparsecnn.interop import read_torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    ...                             torch.nn.Flatten(), torch.nn.Linear(8, 3))
    >>> outputs, indices = capture(read_torch(model, (1, 6, 6)), torch.randn(4, 1, 6, 6))
    >>> {m: tuple(t.shape) for m, t in outputs.items()}, {m: tuple(t.shape) for m, t in indices.items()}
    ({1: (4, 2, 2, 2), 2: (4, 3)}, {1: (4, 2, 2, 2)})
    """
    torch = _torch()
    F = torch.nn.functional
    want = {ly.out_node: ly.m for ly in reading.layers}
    pools = {ly.pool_node: ly.m for ly in reading.layers if ly.pool_node is not None}
    r_of = {ly.m: ly.spec.r for ly in reading.net.conv}
    outputs: dict[int, Any] = {}
    indices: dict[int, Any] = {}

    interpreter: Any = torch.fx.Interpreter

    class Capture(interpreter):
        def run_node(self, n: Any) -> Any:
            if n.name in pools:
                m = pools[n.name]
                arg = self.env[n.all_input_nodes[0]]
                _, indices[m] = F.max_pool2d(arg.detach(), r_of[m], return_indices=True)
            out = super().run_node(n)
            if n.name in want:
                outputs[want[n.name]] = out.detach().clone()
            return out

    with torch.no_grad():
        Capture(reading.graph_module).run(x)
    return outputs, indices


def model_pool_winners(model: Any, net: Network, x: Any, reading: TorchReading | None = None
                       ) -> dict[int, np.ndarray]:
    """``{m: winners}`` of every max-pooling layer, as the model's max pooling sees its input.

    Runs the traced model once (no gradient, :func:`capture`); at each max-pooling
    node (``MaxPool2d`` or ``F.max_pool2d``, before or after the activation) it calls
    ``torch.nn.functional.max_pool2d(input, r, return_indices=True)``, and the
    indices are converted by :func:`sparsecnn.interop.torch_pool_indices_to_winners`.
    Pooling ``S^m`` before a non-decreasing activation picks a window's maximum of
    ``sigma(S^m)`` as well, so the winners serve the slides' order too.

    Parameters
    ----------
    model : torch.nn.Module
    net : Network
        The network :func:`sparsecnn.from_torch` reads from ``model``.
    x : torch.Tensor, shape ``(l, d^1, a^1, b^1)``
        In the model's dtype.
    reading : TorchReading, optional
        :func:`sparsecnn.interop.read_torch`'s reading of ``model`` (read again when omitted).

    Returns
    -------
    dict of int to ndarray
        ``{m: winners}``, each of shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``, positions in
        ``vec(sigma(S^{m,i}))``; empty without max pooling.

    Examples
    --------
    >>> import torch
    >>> from sparsecnn import ConvLayer, FullLayer, Network, to_torch
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> model = to_torch(net, net.init_params(seed=0))
    >>> x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 1, 6, 6)))
    >>> winners = model_pool_winners(model, net, x)
    >>> list(winners), winners[1].shape
    ([1], (18, 4))
    """
    if not any(ly.max_pools for ly in net.conv):
        return {}
    if reading is None:
        a, b, d = net.input_shape
        reading = read_torch(model, (d, a, b))
    _, indices = capture(reading, x)
    return {m: torch_pool_indices_to_winners(idx.cpu(), net, m) for m, idx in sorted(indices.items())}


def tie_info(net: Network, kept: Mapping[str, np.ndarray], model_winners: Mapping[int, np.ndarray]
             ) -> list[TieInfo]:
    """Per max-pooling layer, how the model's winners compare with sparsecnn's argmax on ``sigma(S^m)``.

    ``kept`` is the reference forward pass (its ``S{m}``); see :class:`~sparsecnn.oracle.report.TieInfo`.

    Parameters
    ----------
    net : Network
    kept : mapping of str to ndarray
        From :func:`reference_forward` (``S{m}`` of shape ``(d^{m+1} a^m_conv b^m_conv, l)``,
        column ``i`` being ``vec(S^{m,i})``).
    model_winners : mapping of int to ndarray
        ``{m: winners}`` as :func:`model_pool_winners` returns.

    Returns
    -------
    list of TieInfo
        One per max-pooling layer present in ``model_winners``.

    Examples
    --------
    One ``2 x 2`` window ``[[1, 5], [5, 1]]``: sparsecnn's column-major argmax takes
    the 5 at ``vec`` position 1, PyTorch's row-major one the 5 at position 2.

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((2, 2, 1), [ConvLayer(1, h=1, r=2), FullLayer(1)])
    >>> Ws, bs = net.unpack(np.array([1.0, 0.0, 1.0, 0.0]))       # W^1 = 1, b^1 = 0, ...
    >>> _, kept = reference_forward(net, Ws, bs, np.array([[1.0], [5.0], [5.0], [1.0]]))
    >>> kept["pool1"]
    array([[1]], dtype=int32)
    >>> tie_info(net, kept, {1: np.array([[2]])})
    [TieInfo(m=1, windows=1, differ=1, exact=1, max_gap=0.0)]
    """
    out: list[TieInfo] = []
    for ly in net.conv:
        m = ly.m
        if not ly.max_pools or m not in model_winners:
            continue
        A = ly.sigma.sigma(kept[f"S{m}"])
        own_w = ly.winners(A)
        assert own_w is not None
        own = own_w.astype(np.int64)
        theirs = np.asarray(model_winners[m]).astype(np.int64)
        a_own = np.take_along_axis(A, own, axis=0)
        a_theirs = np.take_along_axis(A, theirs, axis=0)
        differ = own != theirs
        exact = differ & (a_own == a_theirs)
        scale = float(np.abs(A).max()) if A.size else 0.0
        gap = float(np.max(np.abs(a_own - a_theirs)[differ])) / scale if differ.any() and scale > 0 else 0.0
        out.append(TieInfo(m, int(own.size), int(differ.sum()), int(exact.sum()), gap))
    return out


def _to_numpy(t: Any) -> np.ndarray:
    import torch

    return t.detach().cpu().to(torch.float64).numpy()


def _torch_loss(out: Any, y: Any, loss: str, final: str | None) -> Any:
    """``(1/l) sum_i xi_i`` from what the model returns, as PyTorch computes it (reduction ``"mean"``)."""
    torch = _torch()
    F = torch.nn.functional
    l = out.shape[0]
    if loss == "cross-entropy":
        if final == "log_softmax":
            return F.nll_loss(out, y)                                # the model returns log softmax(z)
        if final == "softmax":
            return F.nll_loss(torch.log(out), y)                     # ... softmax(z)
        return F.cross_entropy(out, y)                               # ... the logits z
    Y = torch.zeros_like(out)
    Y[torch.arange(l, device=out.device), y] = 1.0
    return ((out - Y) ** 2).sum() / l                                # (1/l) sum_i ||z - onehot(y)||^2


def _torch_B(z: Any, w: Any, loss: str, l: int) -> Any:
    """``(1/l) B^i w_i`` per row of ``w`` ``(l, n_L)``: ``(2/l) w``, or ``(1/l)(p ⊙ w - p (p^T w))``, ``p = softmax(z)``."""
    torch = _torch()
    if loss == "cross-entropy":
        p = torch.softmax(z.detach(), dim=1)
        pw = p * w
        return (pw - p * pw.sum(dim=1, keepdim=True)) / l
    return (2.0 / l) * w


def _torch_products(model: Any, x: Any, y: np.ndarray, C: float, products: tuple[str, ...],
                    params: list[TorchParameter], v: np.ndarray, u: np.ndarray,
                    layer_of: Mapping[str, int] | None = None, GvJT_start: np.ndarray | None = None,
                    loss: str = "squared", final: str | None = None, logits_module: Any = None
                    ) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """PyTorch's results as numpy float64 in PyTorch's layout, the methods used, and failures.

    ``f`` and the gradient come from what the model returns (``F.nll_loss`` after a final
    ``log_softmax``, ``F.cross_entropy`` of logits, the squared loss); ``J v``, ``J^T u``
    and ``G v`` are products with ``J = dz^{L+1}/dtheta^T``, the Jacobian of the logits
    (``logits_module``: the model without its final log_softmax / softmax).
    With ``"Jv"`` or ``"Gv"``, also ``"Jv_blocks"`` ``{m: J v^[m]}`` (``v`` zero outside the
    parameters of layer ``m``, ``layer_of[name] = m``); with ``"Gv"`` and ``GvJT_start``
    (``(n_L, l)``, the reference's ``(1/l) B J v``), ``"GvJT"``: the model's ``J^T`` applied to it.
    """
    torch = _torch()
    named = dict(model.named_parameters())
    dtype = next(iter(named.values())).dtype
    device = next(iter(named.values())).device
    res: dict[str, Any] = {}
    notes: list[str] = []
    failed: dict[str, str] = {}
    logits_module = model if logits_module is None else logits_module
    # every parameter as a fresh leaf that requires grad, so that frozen ones (requires_grad=False) are
    # differentiated too; the model's own forward and backward run on them (functional_call)
    leaves = {k: p.detach().requires_grad_(True) for k, p in named.items()}
    returned = torch.func.functional_call(model, leaves, (x,))
    l = returned.shape[0]
    out = returned if final is None else logits_module(x)
    f = _torch_loss(returned, torch.as_tensor(y, device=device), loss, final)
    if np.isfinite(C):
        f = f + sum((p * p).sum() for p in leaves.values()) / (2.0 * C)
    res["output"] = _to_numpy(out)
    res["f"] = float(f.detach().cpu().to(torch.float64))
    if "grad" in products:
        grads = torch.autograd.grad(f, list(leaves.values()), allow_unused=True)
        res["grad"] = {k: (_to_numpy(g) if g is not None else np.zeros(tuple(named[k].shape)))
                       for k, g in zip(named, grads, strict=True)}
    if final == "softmax":
        # -log p_y of a returned softmax: below the smallest normal number p_y has lost its precision and
        # the derivative -1/(l p_y) overflows; where another p_j is 0, log's backward divides 0 by 0
        probs = _to_numpy(returned)
        p_y = probs[np.arange(l), np.asarray(y)]
        i = int(np.argmin(p_y))
        tiny = float(torch.finfo(dtype).tiny)
        name = str(dtype).replace("torch.", "")
        fix = ("that is the rounding of log(softmax(z)), not a wrong layer: end the model in log_softmax (the "
               "stable form), or check it on instances whose probabilities are not so small")
        if p_y[i] < tiny:
            msg = (f"the model returns p = softmax(z^{{L+1}}) and p_y = {p_y[i]:.3g} for instance {i}, below "
                   f"{name}'s smallest normal number {tiny:.3g}: log p_y has lost its precision there and the "
                   f"derivative -1/(l p_y) of the cross-entropy -log p_y can overflow, so PyTorch's "
                   f"F.nll_loss(log(model(x)), y) and its gradient are not comparable; {fix}")
            failed["f"] = msg
            if "grad" in res:
                del res["grad"]
                failed["grad"] = msg
        elif "grad" in res and (probs == 0).any() and not all(np.isfinite(g).all() for g in res["grad"].values()):
            j, k = (int(a[0]) for a in np.nonzero(probs == 0))
            del res["grad"]
            failed["grad"] = (f"the model returns p = softmax(z^{{L+1}}) and p[{j}, {k}] = 0 in {name}: the backward "
                              f"of log(p) divides its zero gradient there by p = 0 (0/0 = NaN), so PyTorch's "
                              f"gradient of F.nll_loss(log(model(x)), y) is NaN; {fix}")
    if not set(products) & {"Jv", "JTv", "Gv"}:
        return res, notes, failed

    detached = {k: p.detach() for k, p in named.items()}
    v_t = {k: torch.as_tensor(a).to(dtype=dtype, device=device) for k, a in theta_to_torch(params, v).items()}
    u_t = torch.as_tensor(np.ascontiguousarray(u.T)).to(dtype=dtype, device=device)

    def fn(p: dict[str, Any]) -> Any:
        return torch.func.functional_call(logits_module, p, (x,))

    def vjp(cot: Any) -> dict[str, Any]:
        try:
            _, pull = torch.func.vjp(fn, detached)
            got = pull(cot)[0]
            if "J^T: torch.func.vjp" not in notes:
                notes.append("J^T: torch.func.vjp")
            return dict(got)
        except RuntimeError as err:
            reason = str(err).splitlines()[0][:120]
        ps = {k: p.detach().requires_grad_(True) for k, p in named.items()}
        o = fn(ps)
        gs = torch.autograd.grad(o, list(ps.values()), grad_outputs=cot, allow_unused=True)
        note = f"J^T: torch.autograd.grad (torch.func.vjp failed: {reason})"
        if note not in notes:
            notes.append(note)
        return {k: (g if g is not None else torch.zeros_like(ps[k])) for k, g in zip(ps, gs, strict=True)}

    def jvp(tangent: dict[str, Any]) -> Any:
        tangent = {k: tangent.get(k, torch.zeros_like(p)) for k, p in detached.items()}
        try:
            with warnings.catch_warnings():       # forward AD loads decompositions that use torch.jit.script
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
                _, jv = torch.func.jvp(fn, (detached,), (tangent,))
            if "J v: torch.func.jvp" not in notes:
                notes.append("J v: torch.func.jvp")
            return jv
        except RuntimeError as err:
            reason = str(err).splitlines()[0][:120]
        ps = {k: p.detach().requires_grad_(True) for k, p in named.items()}
        o = fn(ps)
        w = torch.zeros_like(o, requires_grad=True)
        gs = torch.autograd.grad(o, list(ps.values()), grad_outputs=w, create_graph=True, allow_unused=True)
        s = sum((g * tangent[k]).sum() for k, g in zip(ps, gs, strict=True) if g is not None)
        (jv,) = torch.autograd.grad(s, w)
        note = f"J v: double backward d/dw <J^T w, v> (torch.func.jvp failed: {reason})"
        if note not in notes:
            notes.append(note)
        return jv

    jv = None
    if set(products) & {"Jv", "Gv"}:
        try:
            jv = jvp(v_t)
            if layer_of is not None:
                layers = sorted(set(layer_of.values()))
                res["Jv_blocks"] = {m: _to_numpy(jvp({k: t for k, t in v_t.items() if layer_of.get(k) == m}))
                                    for m in layers}
        except RuntimeError as err:
            msg = f"PyTorch could not compute J v: {str(err).splitlines()[0][:200]}"
            for p in ("Jv", "Gv"):
                if p in products:
                    failed[p] = msg
        if jv is not None:
            res["Jv"] = _to_numpy(jv)
    if "JTv" in products:
        res["JTv"] = {k: _to_numpy(g) for k, g in vjp(u_t).items()}
    if "Gv" in products and jv is not None:
        res["Gv"] = {k: _to_numpy(g) for k, g in vjp(_torch_B(out, jv.detach(), loss, l)).items()}
    if "Gv" in products and GvJT_start is not None:
        ref_t = torch.as_tensor(np.ascontiguousarray(GvJT_start.T)).to(dtype=dtype, device=device)
        res["GvJT"] = {k: _to_numpy(g) for k, g in vjp(ref_t).items()}
    return res, notes, failed


# --------------------------------------------------------------------- check
def _model_dtype(model: Any) -> Any:
    params = list(model.parameters())
    if not params:
        raise ConfigError("the model has no parameters (need Conv2d / Linear layers)")
    return params[0].dtype, params[0].device


def _bounds(reading: TorchReading, x_t: Any, indices: Mapping[int, Any], params: list[TorchParameter],
            prods: tuple[str, ...], labels: np.ndarray, C: float, theta: np.ndarray, v: np.ndarray,
            u_mat: np.ndarray, GvJT_start: np.ndarray | None, unit: float, observed: Mapping[int, Any],
            eta: float = 0.0) -> dict[str, Any]:
    """Per-entry rounding-error bounds (:mod:`sparsecnn.oracle.bounds`) in sparsecnn's layout.

    The forward rows get the a priori bounds; the other products start from the model's
    measured forward differences ``observed`` (``{m: |Z^{m+1} model - reference|}``, PyTorch layout).
    ``eta`` is the model's underflow unit (:class:`~sparsecnn.oracle.bounds.ErrorBounds`).
    """
    torch = _torch()
    net = reading.net
    gm = reading.graph_module
    Ws = [gm.get_parameter(ly.weight_name).detach().cpu().to(torch.float64) for ly in reading.layers]
    bs = [gm.get_parameter(ly.bias_name).detach().cpu().to(torch.float64) if ly.bias_name is not None
          else torch.zeros(W.shape[0], dtype=torch.float64) for ly, W in zip(reading.layers, Ws, strict=True)]
    x64 = x_t.detach().cpu().to(torch.float64)
    idx = {m: i.cpu() for m, i in indices.items()}
    prior = ErrorBounds(net, Ws, bs, x64, idx, unit, eta=eta)
    u64 = float(np.finfo(np.float64).eps) / 2.0
    eb = ErrorBounds(net, Ws, bs, x64, idx, unit, observed=observed, u_ref=u64, eta=eta)

    def vec(t: Any, m: int) -> np.ndarray:
        a = t.numpy()
        return X_from_torch(a) if m <= net.LC else np.ascontiguousarray(a.T)

    def to_theta(grads: list[tuple[Any, Any, Any, Any]], extra: np.ndarray | None = None) -> np.ndarray:
        arrays: dict[str, np.ndarray] = {}
        for ly, (_, EdW, _, Edb) in zip(reading.layers, grads, strict=True):
            arrays[ly.weight_name] = EdW.numpy()
            if ly.bias_name is not None:
                arrays[ly.bias_name] = Edb.numpy()
        out = torch_to_theta(params, arrays, net.n_params)
        return out if extra is None else out + extra

    res: dict[str, Any] = {"Z": {m: vec(prior.Z[m][1], m) for m in range(1, net.L + 1)},
                           "output": prior.output[1].numpy().T}
    out = eb.output[0]
    Y = torch.zeros_like(out)
    Y[torch.arange(out.shape[0]), torch.as_tensor(labels)] = 1.0
    plist = [torch.as_tensor(p) for p in Ws + bs]
    loss = net.loss.name
    res["f"] = prior.objective(Y, C, plist, loss)[0]
    _, dZ, EdZ = eb.objective(Y, C, plist, loss)
    reg = 2.0 * unit * np.abs(theta) / C if np.isfinite(C) else None
    if "grad" in prods:
        res["grad"] = to_theta(eb.backward(dZ, EdZ), reg)
    if "JTv" in prods:
        ut = torch.as_tensor(np.ascontiguousarray(u_mat.T))
        res["JTv"] = to_theta(eb.backward(ut, torch.zeros_like(ut)))
    if set(prods) & {"Jv", "Gv"}:
        arrs = theta_to_torch(params, v)

        def tangent(only: int | None) -> tuple[list[Any], list[Any]]:
            V, Vb = [], []
            for ly, W in zip(reading.layers, Ws, strict=True):
                keep = only is None or only == ly.m
                V.append(torch.as_tensor(arrs[ly.weight_name]) if keep else torch.zeros_like(W))
                Vb.append(torch.as_tensor(arrs[ly.bias_name]) if keep and ly.bias_name is not None
                          else torch.zeros(W.shape[0], dtype=torch.float64))
            return V, Vb

        Jv, EJv = eb.R_forward(*tangent(None))
        res["Jv"] = EJv.numpy().T
        res["Jv_blocks"] = {ly.m: eb.R_forward(*tangent(ly.m), only=ly.m)[1].numpy().T for ly in reading.layers}
        if "Gv" in prods:
            res["Gv"] = to_theta(eb.backward(*eb.B_start(Jv, EJv, loss)))     # (1/l) B J v, then J^T
            if GvJT_start is not None:                        # the reference's (1/l) B J v, rounded by the model
                ref = torch.as_tensor(np.ascontiguousarray(GvJT_start.T))
                res["GvJT"] = to_theta(eb.backward(ref, 2.0 * unit * ref.abs() + eta))   # eta: may underflow
    return res


def check(model: Any, x: Any = None, y: Any = None, *, X: np.ndarray | None = None,
          input_shape: tuple[int, int, int] | None = None, C: float = np.inf,
          products: str | Iterable[str] = ("grad",), seed: int = 0, rtol: float | None = None,
          atol: float = 0.0, use_model_winners: bool = True, raise_on_fail: bool = False,
          worst: int = 5, treat_as: Mapping[type, str] | None = None, tol_factor: float = 1.0,
          loss: str | None = None) -> CheckReport:
    """Compare a PyTorch model with sparsecnn's float64 reference, block by block, entry by entry.

    Parameters
    ----------
    model : torch.nn.Module
        Any model :func:`sparsecnn.from_torch` reads through ``torch.fx`` (an
        ``nn.Sequential`` or a class whose ``forward`` uses modules, ``F.*`` calls
        or tensor methods); modules that subclass a supported one (e.g. with a
        custom ``autograd.Function``) stay one node, so their own backward is checked.
        Dropout must be in eval mode (``model.eval()``).
    x : torch.Tensor or ndarray, shape ``(l, channels, height, width)``
        The instances, PyTorch's layout (rounded to the model's dtype).
    y : integer array, shape ``(l,)``, optional
        Labels ``0..n_L-1``; drawn from ``seed`` when omitted.
    X : ndarray, shape ``(d a b, l)``, keyword only
        The instances in sparsecnn's layout instead of ``x``; needs ``input_shape``.
    input_shape : (channels, height, width), optional
        PyTorch's order; read from ``x`` when given.
    C : float, default inf
        Regularisation of ``f`` (``inf``: none, so only the model's own
        computation is checked).
    products : str or iterable of str
        Any of ``"grad"`` (with ``f``), ``"Jv"``, ``"JTv"`` (``J^T u``), ``"Gv"``,
        or a comma-separated string.  The layer outputs ``Z^{m+1}``, ``z^{L+1}`` and
        ``f`` are always compared.  ``"Gv"`` brings the rows of ``J v`` (its first
        half) and ``Gv:JT`` (the model's ``J^T`` on the reference's ``(1/l) B J v``,
        its second half) so that the failing half and layer can be named.
    seed : int
        ``rng = numpy.random.default_rng(seed)``; ``v = rng.standard_normal(n)``
        (``theta``'s order; 0 on ``b^m`` of a layer without bias), then
        ``u = rng.standard_normal((n_L, l))``, then (if ``y`` is None)
        ``y = rng.integers(0, n_L, l)``.
    rtol : float, optional
        Default None: per-entry tolerances from rounding-error bounds
        (:mod:`sparsecnn.oracle.bounds`): entry ``k`` passes when
        ``|theirs_k - ours_k| <= atol + tol_factor * bound_k``.  A number switches to
        the normwise rule ``max abs err <= atol + rtol * scale`` per block.
    atol : float, default 0
    use_model_winners : bool, default True
        Build ``P_pool`` from the model's max-pooling winners (see the module docstring).
    raise_on_fail : bool, default False
        Raise :class:`~sparsecnn.oracle.report.OracleMismatch` instead of returning a failing report.
    worst : int, default 5
        Entries listed per failing row.
    treat_as : dict of type to str, optional
        ``{MyReLU: "relu"}``: a custom module (not a subclass of a supported one)
        read as that operation, its forward and backward compared as that operation's
        (see :func:`sparsecnn.interop.read_torch`).
    tol_factor : float, default 1
        Multiplies the rounding-error bounds (widen it for convolution algorithms
        outside the bound's assumptions, such as Winograd or FFT).
    loss : {None, "squared", "cross-entropy"}
        The loss ``xi`` of ``f`` (:mod:`sparsecnn.objective`).  ``None``: cross-entropy
        when the model ends in ``log_softmax`` / ``softmax`` (read as part of the loss,
        so ``f`` is ``F.nll_loss(model(x), y)``), else squared.  ``"cross-entropy"``
        for a model returning logits compares ``f`` with ``F.cross_entropy(model(x), y)``.
        ``J`` is always the Jacobian of the logits ``z^{L+1}``, and ``G = (1/l) sum_i
        J_i^T B_i J_i`` with ``B_i = 2I`` or ``diag(p_i) - p_i p_i^T``.

    Returns
    -------
    CheckReport
        ``report.passed``, ``report.table()``, ``report.failures()``,
        ``report.first_failure()``, ``report.first_failing_layer(product)``, ``str(report)``.

    Examples
    --------
    A float32 model converted from a sparsecnn network passes at float32's tolerance:

    >>> import torch
    >>> from sparsecnn import ConvLayer, FullLayer, Network, to_torch
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> model = to_torch(net, net.init_params(seed=0), dtype=torch.float32)
    >>> x = np.random.default_rng(0).standard_normal((4, 1, 6, 6))     # (l, d^1, a^1, b^1)
    >>> report = check(model, x, y=np.array([0, 1, 2, 0]))
    >>> [(row.product, row.name) for row in report.rows]
    [('forward', 'Z^2'), ('forward', 'Z^3'), ('output', 'z^{L+1}'), ('f', 'f'), ('grad', 'W^2'), ('grad', 'b^2'), ('grad', 'W^1'), ('grad', 'b^1')]
    >>> report.verdict()
    'PASSED: 8 rows within tolerance'
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dtype, device = _model_dtype(model)
    eps = float(torch.finfo(dtype).eps)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputTypeError(f"seed must be a non-negative integer (numpy.random.default_rng's seed), got {seed!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise InputTypeError(f"{name} must be a number, got {value!r}")
    if not isinstance(products, str) and not isinstance(products, Iterable):
        raise InputTypeError(f"products must be a comma-separated string or a list of names from "
                             f"{', '.join(PRODUCTS)}, got {products!r}")
    if input_shape is not None and (
            isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in input_shape)):
        raise ConfigError(f"input_shape must be (channels, height, width), three positive integers, "
                          f"got {input_shape!r}")
    if isinstance(worst, bool) or not isinstance(worst, numbers.Integral) or worst < 0:
        raise InputTypeError(f"worst must be a non-negative integer, got {worst!r}")
    check_tolerances(rtol, atol, tol_factor)
    if (x is None) == (X is None):
        raise InputTypeError("give the instances either as x (PyTorch layout, positional) or as X= "
                             "(sparsecnn layout), not both or neither")
    if x is not None:
        if hasattr(x, "detach"):
            x = x.detach().cpu().to(torch.float64).numpy()
        x_np = np.asarray(x)
        if x_np.ndim != 4:
            raise ShapeError(f"x must have shape (l, channels, height, width), got shape {x_np.shape}")
        shape = tuple(int(s) for s in x_np.shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise ShapeError(f"input_shape {tuple(input_shape)} differs from x's (channels, height, width) {shape}")
        X_from_torch(x_np)                                    # validates the type
        x_t = torch.as_tensor(np.ascontiguousarray(x_np, dtype=np.float64))
    else:
        if input_shape is None:
            raise ShapeError("X in sparsecnn's layout needs input_shape=(channels, height, width)")
        c, h, w = (int(s) for s in input_shape)
        x_t = X_to_torch((h, w, c), X)
        shape = (c, h, w)
    x_t = x_t.to(dtype=dtype, device=device)                  # what the model sees
    reading = read_torch(model, shape, treat_as=treat_as, loss=loss)
    net, theta = reading.net, reading.theta
    Xr = X_from_torch(x_t.cpu())                              # ... and so does the reference
    Xr = net.check_X(Xr)
    l = Xr.shape[1]
    C = net.check_C(C)
    prods = _parse_products(products)
    rng = np.random.default_rng(int(seed))
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, l))
    if y is None:
        y = rng.integers(0, net.n_L, size=l)
    labels = net.check_y(y, l)
    off = layer_offsets(net)
    for ly, tl in zip(net.layers, reading.layers, strict=True):
        if tl.bias_name is None:                              # no b^m in the model: no direction along it
            rows_, cols = ly.W_shape
            v[off[ly.m - 1] + rows_ * cols:off[ly.m]] = 0.0

    def rounded(a: np.ndarray) -> np.ndarray:
        return torch.as_tensor(a).to(dtype).to(torch.float64).numpy()

    v, u = rounded(v), rounded(u)
    rtol_used = default_rtol(eps) if rtol is None else float(rtol)

    params = torch_parameters(net, reading.parameter_names)
    layer_of = {p.name: p.m for p in params}
    captured, indices = capture(reading, x_t)
    model_w = {m: torch_pool_indices_to_winners(idx.cpu(), net, m) for m, idx in sorted(indices.items())}
    ours, kept = reference_products(net, theta, Xr, labels, C, products=prods, v=v, u=u,
                                    winners=model_w if use_model_winners else None)
    ours["Z"] = {m: kept[f"Z{m + 1}"] for m in range(1, net.L + 1)}
    if set(prods) & {"Jv", "Gv"}:
        ours.setdefault("Jv", None)
        blocks: dict[int, np.ndarray] = {}
        for ly in net.layers:
            vm = np.zeros_like(v)
            vm[off[ly.m - 1]:off[ly.m]] = v[off[ly.m - 1]:off[ly.m]]
            blocks[ly.m] = reference_products(net, theta, Xr, labels, C, products=("Jv",), v=vm,
                                              winners=model_w if use_model_winners else None)[0]["Jv"]
        ours["Jv_blocks"] = blocks
        if ours["Jv"] is None:
            ours["Jv"] = reference_products(net, theta, Xr, labels, C, products=("Jv",), v=v,
                                            winners=model_w if use_model_winners else None)[0]["Jv"]
    GvJT_start = None
    if "Gv" in prods:
        ours["GvJT"] = ours["Gv"]
        GvJT_start = net.loss.B(ours["Jv"], 1.0 / l, out=ours["output"])    # the reference's (1/l) B J v
    ties = tie_info(net, kept, model_w)
    theirs_raw, notes, failed = _torch_products(model, x_t, labels, C, prods, params, v, u, layer_of=layer_of,
                                                GvJT_start=GvJT_start, loss=net.loss.name, final=reading.final,
                                                logits_module=reading.logits_module)

    def vec(t: Any, m: int) -> np.ndarray:
        a = _to_numpy(t)
        return X_from_torch(a) if m <= net.LC else np.ascontiguousarray(a.T)

    theirs: dict[str, Any] = {"output": theirs_raw["output"].T, "Z": {m: vec(t, m) for m, t in captured.items()}}
    if "f" not in failed:
        theirs["f"] = theirs_raw["f"]
    for key in ("grad", "JTv", "Gv", "GvJT"):
        if key in theirs_raw:
            theirs[key] = torch_to_theta(params, theirs_raw[key], net.n_params)
    if "Jv" in theirs_raw:
        theirs["Jv"] = theirs_raw["Jv"].T
        theirs["Jv_blocks"] = {m: a.T for m, a in theirs_raw.get("Jv_blocks", {}).items()}
    bounds = None
    if rtol is None:
        observed = {}
        for ly in net.layers:
            ref_t = X_to_torch((ly.a_out, ly.b_out, ly.d_out), ours["Z"][ly.m]) \
                if ly.m <= net.LC else torch.as_tensor(np.ascontiguousarray(ours["Z"][ly.m].T))
            observed[ly.m] = (captured[ly.m].cpu().to(torch.float64) - ref_t.reshape(captured[ly.m].shape)).abs()
        bounds = _bounds(reading, x_t, indices, params, prods, labels, C, theta, v, u, GvJT_start,
                         (eps + float(np.finfo(np.float64).eps)) / 2.0, observed,   # unit roundoffs of both sides
                         eta=float(torch.finfo(dtype).tiny))                        # the smallest normal number
    rows = compare_products(net, ours, theirs, rtol=rtol_used, atol=float(atol), eps=eps,
                            k_worst=int(worst), params=params, bounds=bounds, tol_factor=float(tol_factor),
                            node_names={ly.m: ly.out_node for ly in reading.layers})
    for key, msg in failed.items():
        rows.append(Comparison.unavailable(key, "(all)", msg, rtol=rtol_used, atol=float(atol), eps=eps))

    unit = eps_name(eps)
    dtype_name = str(dtype).replace("torch.", "")
    if bounds is not None:
        tol_line = (f"tolerance per entry: |theirs - ours| <= atol + {float(tol_factor):g} * bound, bound = "
                    f"rounding-error bound gamma_K A'B' + E_A B' + |A| E_B (A' = |A| + E_A) carried through "
                    f"every layer (sparsecnn.oracle.bounds) with u = ({unit} + eps64)/2; atol = {float(atol):g}")
    else:
        tol_line = ("tolerance per row: max abs err <= atol + rtol * scale, scale = max(max|ours in block|, "
                    f"1e-3 max|ours in product|); rtol = {rtol_used:.3g}, atol = {float(atol):g}")
    setting = [
        f"model: {type(model).__name__} in {dtype_name} ({unit} = {eps:.3g}); input (channels, height, "
        f"width) = {shape}, l = {l}; C = {C:g}",
        "objective: f = theta'theta/(2C) + (1/l) sum_i " + (
            "-log softmax(z^{L+1,i})_{y_i} (cross-entropy" + (f"; the model's final {reading.final} is part of "
                                                               f"the loss, z^{{L+1}} its input)" if reading.final
                                                               else "; z^{L+1} = the model's logits)")
            if net.loss.name == "cross-entropy" else "||z^{L+1,i} - onehot(y^i)||^2") + " (the model's parameters)",
        tol_line,
        f"products: {', '.join(('forward', 'output', 'f', *prods))}",
    ]
    no_bias = [tl.m for tl in reading.layers if tl.bias_name is None]
    if no_bias:
        setting.append(f"layers without bias: {no_bias} (b^m held at 0 and not compared; v is 0 there)")
    if set(prods) & {"Jv", "JTv", "Gv"}:
        setting.append(f"random vectors: rng = numpy.random.default_rng({int(seed)}); v = rng.standard_normal(n), "
                       f"n = {net.n_params}; u = rng.standard_normal((n_L, l)) = ({net.n_L}, {l}); both rounded "
                       f"to {dtype_name}; G = (1/l) sum_i J_i' B_i J_i, B_i = "
                       f"{'diag(p_i) - p_i p_i^T' if net.loss.name == 'cross-entropy' else '2I'}; "
                       f"J v^[m]: v zero outside layer m")
        if notes:
            setting.append("PyTorch side: " + "; ".join(notes))
    setting.append("network (m = layer; model nodes per layer: "
                   + "; ".join(f"{tl.m}: {', '.join(tl.nodes)}" for tl in reading.layers) + "):")
    setting += ["  " + line for line in net.summary().splitlines()]
    report = CheckReport(rows, title=f"sparsecnn check: PyTorch {dtype_name} model against the sparsecnn "
                                     "float64 reference", setting=setting, ties=ties,
                         use_model_winners=bool(use_model_winners) if ties else None,
                         inputs={"X": Xr, "y": labels, "theta": theta, "v": v, "u": u,
                                 **{f"winners/{m}": kept[f"pool{m}"] for m in model_w}})
    if raise_on_fail:
        report.raise_if_failed()
    return report
