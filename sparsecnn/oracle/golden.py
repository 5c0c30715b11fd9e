"""Golden files: sparsecnn's answers on stated inputs, for implementations that cannot run Python.

``sparsecnn golden --config CONFIG --out case.npz`` (:func:`make_golden`,
:func:`write_golden`) writes one ``.npz`` archive (``numpy.savez``; no pickled
objects: text is stored as 0-d unicode arrays, everything else as numbers).
Someone computes ``f``, the gradient, ``J v``, ``J^T u`` and ``G v`` for the
stored network, parameters, inputs and vectors, saves them in a results
``.npz``, and ``sparsecnn check-golden case.npz RESULTS.npz``
(:func:`check_golden`) prints the same report as :func:`sparsecnn.check`.

Schema, version 2
-----------------
Shapes use ``n`` (parameters), ``l`` (instances), ``n_L`` (outputs), ``a, b, d``
(height, width, channels of the input image) and, for max-pooling layer ``m``,
``n_out^m = d^{m+1} a^{m+1} b^{m+1}``.  Floats are float64, integers int64.

Description (0-d arrays):

- ``schema`` (unicode): ``"sparsecnn-golden"``;
- ``schema_version`` (int64): ``2``;
- ``sha256`` (unicode, JSON): ``{name: SHA-256}`` of every other array's dtype,
  shape and bytes (:func:`golden_checksums`); :func:`read_golden` refuses a file
  whose arrays do not match, naming them;
- ``network`` (unicode, JSON): ``input_shape`` ``[a, b, d]``; ``layers``, each
  ``{"kind": "conv", "d_out", "h", "s", "p", "r", "activation", "pool"}`` or
  ``{"kind": "full", "n_out", "activation"}`` (activation ``null``: ReLU, the
  identity for the last layer); ``pool_backward``; ``torch_input_shape``
  ``[d, a, b]``; ``torch_modules``, the ``nn.Sequential`` that
  ``sparsecnn.to_torch`` builds, one string per module; ``torch_parameters``,
  each ``{"name", "symbol": "W^m" or "b^m", "layer", "shape"}``; ``n_params``; ``n_L``;
  ``loss``, ``"squared"`` or ``"cross-entropy"`` (absent in older files: squared);
- ``info`` (unicode, JSON): ``seed``, ``instances``, ``objective``, ``G``,
  ``max_pool_ties`` (per layer: ``windows``, ``tied`` -- windows whose maximum
  is attained more than once -- and ``matter`` -- those where ``sigma'`` at the
  maximum is nonzero, so the choice of winner changes the products: use the
  file's winners there), ``sparsecnn_version``;
- ``C`` (float64): the objective's ``C`` (``inf``: no regularisation term);
- ``f`` (float64): ``theta^T theta/(2C) + (1/l) sum_i xi_i``, ``xi_i = ||z^{L+1,i} - onehot(y^i)||^2``
  or (cross-entropy) ``-log softmax(z^{L+1,i})_{y_i}``.

sparsecnn's layout (NOTATION.md):

- ``layer_offsets``, int64 ``(L+1,)``: ``theta[off[m-1]:off[m]] = vec([W^m b^m])``;
- ``X``, ``(d a b, l)``: column ``i`` is ``vec(Z^{1,i})``;
- ``y``, int64 ``(l,)``: labels ``0..n_L-1``;
- ``theta``, ``(n,)``: ``[vec(W^1); b^1; ...; vec(W^L); b^L]``;
- ``output``, ``(n_L, l)``: ``z^{L+1}``, one column per instance;
- ``grad``, ``(n,)``: ``df/dtheta``;
- ``v``, ``(n,)``: the vector of ``J v`` and ``G v``;
- ``u``, ``(n_L, l)``: the vector of ``J^T u``, column ``i`` for instance ``i``;
- ``Jv``, ``(n_L, l)``: column ``i`` is ``J^i v``;
- ``JTu``, ``(n,)``: ``sum_i (J^i)^T u_i``;
- ``Gv``, ``(n,)``: ``G v`` with ``G = (1/l) sum_i (J^i)^T 2I J^i`` (no ``I/C`` term);
- ``winners/<m>``, int64 ``(n_out^m, l)``, for each max-pooling layer ``m``:
  row ``c + d*(r_out + a_out*q_out)`` holds the position ``c + d*(r + a_conv*q)``
  in ``vec(sigma(S^{m,i}))`` of the window's winner (ties to the first in
  column-major order), i.e. ``P_pool^{m,i}``.

PyTorch's layout (``<key>`` is a ``state_dict`` key of ``sparsecnn.to_torch(net,
theta)``, e.g. ``0.weight``; see :mod:`sparsecnn.oracle.layouts`):

- ``torch/x``, ``(l, d, a, b)``: ``x[i, c, r, q] = X[c + d*(r + a*q), i]``;
- ``torch/output``, ``torch/u``, ``torch/Jv``, ``(l, n_L)``: ``output``, ``u``, ``Jv`` transposed;
- ``torch/theta/<key>``, ``torch/grad/<key>``, ``torch/v/<key>``,
  ``torch/JTu/<key>``, ``torch/Gv/<key>``, each of the parameter's shape (OIHW
  filters ``(d^{m+1}, d^m, h, h)``, ``Linear`` weights ``(n_{m+1}, n_m)``,
  biases): ``theta``, ``grad``, ``v``, ``J^T u``, ``G v``;
- ``torch/winners/<m>``, int64 ``(l, d, a_out, b_out)``: PyTorch's
  ``return_indices``, the flat index ``r*b_conv + q`` of the winner within its channel.

Results files
-------------
A results ``.npz`` holds any of ``f``, ``output``, ``grad``, ``Jv``, ``JTu``,
``Gv``.  The layout is declared by the name: plain names are sparsecnn's layout
(shapes as above); names under ``torch/`` are PyTorch's: ``torch/output`` and
``torch/Jv`` ``(l, n_L)``, and for ``grad``, ``JTu``, ``Gv`` either every
parameter as ``torch/grad/<key>`` or one flat vector ``torch/grad`` of length
``n`` in ``model.parameters()`` order (``torch.nn.utils.parameters_to_vector``).
``f`` has no layout.  A product given in both layouts is compared in both.
The golden file's own inputs (``X``, ``theta``, ``v``, ``torch/x``, ...) are
ignored, so a golden file checks against itself; any other name is an error.
Each row's tolerance comes from the dtype of the array it compares (a float32
gradient is judged in units of ``eps32`` even when ``f`` is float64, and the
reverse); float16 results are refused (their rounding, ``eps = 9.8e-4``, would
hide errors of a few per cent).

Examples
--------
>>> import tempfile, pathlib
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)])
>>> case = pathlib.Path(tempfile.mkdtemp()) / "case.npz"
>>> write_golden(case, make_golden(net, instances=2, seed=0))
>>> golden = read_golden(case)
>>> golden.grad.shape, golden.Jv.shape, sorted(golden.winners)
((47,), (3, 2), [1])
>>> results = case.with_name("results.npz")
>>> np.savez(results, grad=golden.grad.astype(np.float32), Jv=golden.Jv)
>>> report = check_golden(case, results)
>>> report.passed, [r.name for r in report.rows][:3]
(True, ['W^2', 'b^2', 'W^1'])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._safe_io import atomic_write, read_npz, regular_file
from .._version import __version__
from ..engine import winner_positions
from ..exceptions import DataFormatError, NonFiniteError, ShapeError
from ..model_io import network_from_dict, network_to_dict, parse_json
from ..network import Network
from ..second_order import gauss_newton
from .check import check_tolerances, compare_products, default_rtol
from .layouts import (
    TorchParameter,
    layer_offsets,
    torch_flat_to_theta,
    torch_module_descriptions,
    torch_parameters,
    torch_to_theta,
)
from .report import CheckReport, eps_name

__all__ = [
    "GOLDEN_SCHEMA",
    "GOLDEN_VERSION",
    "Golden",
    "make_golden",
    "write_golden",
    "read_golden",
    "read_results",
    "check_golden",
    "winners_to_torch",
    "load_network_file",
    "golden_checksums",
]

GOLDEN_SCHEMA = "sparsecnn-golden"
GOLDEN_VERSION = 2
RESULT_NAMES = ("f", "output", "grad", "Jv", "JTu", "Gv")
"""Products a results file may hold."""

_THETA_LIKE = ("grad", "JTu", "Gv")
_MAX_NETWORK_FILE = 1_000_000


# -------------------------------------------------------------- conversions
def winners_to_torch(winners: np.ndarray, net: Network, m: int) -> np.ndarray:
    """Winners as positions in ``vec(sigma(S^m))`` to PyTorch's ``return_indices`` layout.

    The inverse of :func:`sparsecnn.interop.torch_pool_indices_to_winners`:
    ``winners[c + d*(r_out + a_out*q_out), i] = c + d*(r + a_conv*q)`` becomes
    ``indices[i, c, r_out, q_out] = r*b_conv + q``, shape ``(l, d, a_out, b_out)``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((2, 2, 1), [ConvLayer(1, h=1, r=2), FullLayer(1)])
    >>> winners_to_torch(np.array([[2]]), net, 1)      # (r, q) = (0, 1): flat index 1
    array([[[[1]]]])
    """
    ly = net.conv[m - 1]
    w = np.asarray(winners, dtype=np.int64)
    l = w.shape[1]
    pix = w // ly.d_out                                   # w = c + d*(r + a_conv*q)
    r, q = pix % ly.a_conv, pix // ly.a_conv
    flat = r * ly.b_conv + q
    return np.ascontiguousarray(flat.reshape(ly.b_out, ly.a_out, ly.d_out, l).transpose(3, 2, 1, 0))


def _x_to_torch(net: Network, X: np.ndarray) -> np.ndarray:
    a, b, d = net.input_shape
    l = X.shape[1]
    return np.ascontiguousarray(X.reshape(b, a, d, l).transpose(3, 2, 1, 0))


def _x_from_torch(x: np.ndarray) -> np.ndarray:
    l = x.shape[0]
    return np.ascontiguousarray(x.transpose(3, 2, 1, 0).reshape(-1, l))


def _ties(net: Network, kept: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Per max-pooling layer: windows whose maximum is attained more than once, and those where
    ``sigma'`` at the tied maximum is nonzero (the choice then changes the gradient)."""
    out: dict[str, dict[str, int]] = {}
    for ly in net.conv:
        if not ly.max_pools:
            continue
        S = kept[f"S{ly.m}"]
        A = ly.sigma.sigma(S)
        r, l = ly.spec.r, S.shape[1]

        def windows(V: np.ndarray, ly: Any = ly, r: int = r, l: int = l) -> np.ndarray:
            V4 = V.reshape(ly.b_conv, ly.a_conv, ly.d_out, l)[: ly.b_out * r, : ly.a_out * r]
            return V4.reshape(ly.b_out, r, ly.a_out, r, ly.d_out, l)

        Aw = windows(A)
        top = Aw.max(axis=(1, 3), keepdims=True)
        tied = (Aw == top).sum(axis=(1, 3)) > 1
        dsig = windows(ly.sigma.dsigma(S))
        matters = tied & ((dsig * (Aw == top)).max(axis=(1, 3)) > 0)
        out[str(ly.m)] = {"windows": int(tied.size), "tied": int(tied.sum()), "matter": int(matters.sum())}
    return out


# ------------------------------------------------------------------ golden
@dataclass
class Golden:
    """The contents of a golden file, in sparsecnn's layout (see the module docstring).

    Attributes
    ----------
    net : Network
    C : float
    X, y, theta, output, f, grad, v, u, Jv, JTu, Gv
        As in the schema.
    winners : dict of int to ndarray
        ``{m: winners}`` for max-pooling layers.
    info : dict
        The ``info`` JSON.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    >>> golden.l, golden.X.shape, golden.theta.shape, golden.Jv.shape, golden.winners[1].shape
    (2, (36, 2), (77,), (3, 2), (18, 2))
    """

    net: Network
    C: float
    X: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    output: np.ndarray
    f: float
    grad: np.ndarray
    v: np.ndarray
    u: np.ndarray
    Jv: np.ndarray
    JTu: np.ndarray
    Gv: np.ndarray
    winners: dict[int, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> list[TorchParameter]:
        """PyTorch's parameters of ``to_torch(net, theta)`` with their ``theta`` positions."""
        return torch_parameters(self.net)

    @property
    def l(self) -> int:
        """The number of instances ``l`` (columns of ``X``)."""
        return int(self.X.shape[1])

    def description(self) -> dict[str, Any]:
        """The ``network`` JSON.

        Returns
        -------
        dict
            :func:`~sparsecnn.model_io.network_to_dict` of ``net`` plus ``torch_input_shape``
            ``[d^1, a^1, b^1]``, ``torch_modules``, ``torch_parameters``, ``n_params``, ``n_L``.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
        >>> desc = golden.description()
        >>> desc["torch_input_shape"], desc["n_params"], desc["n_L"]
        ([1, 6, 6], 77, 3)
        >>> desc["torch_parameters"][0]
        {'name': '0.weight', 'symbol': 'W^1', 'layer': 1, 'shape': [2, 1, 3, 3]}
        """
        net = self.net
        desc = network_to_dict(net)
        a, b, d = net.input_shape
        desc["torch_input_shape"] = [d, a, b]
        desc["torch_modules"] = torch_module_descriptions(net)
        desc["torch_parameters"] = [{"name": p.name, "symbol": p.symbol, "layer": p.m, "shape": list(p.shape)}
                                    for p in self.params]
        desc["n_params"] = int(net.n_params)
        desc["n_L"] = int(net.n_L)
        return desc

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the file, by name (both layouts).

        Returns
        -------
        dict of str to ndarray
            The names and shapes of the schema in the module docstring.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
        >>> arrays = golden.arrays()
        >>> arrays["X"].shape, arrays["torch/x"].shape            # (d^1 a^1 b^1, l) and (l, d^1, a^1, b^1)
        ((36, 2), (2, 1, 6, 6))
        >>> sorted(key for key in arrays if key.startswith("torch/grad/"))
        ['torch/grad/0.bias', 'torch/grad/0.weight', 'torch/grad/4.bias', 'torch/grad/4.weight']
        """
        net, params = self.net, self.params
        arrays: dict[str, np.ndarray] = {
            "schema": np.array(GOLDEN_SCHEMA),
            "schema_version": np.array(GOLDEN_VERSION, dtype=np.int64),
            "network": np.array(json.dumps(self.description())),
            "info": np.array(json.dumps(self.info)),
            "C": np.array(float(self.C)),
            "f": np.array(float(self.f)),
            "layer_offsets": layer_offsets(net),
            "X": self.X, "y": self.y.astype(np.int64), "theta": self.theta, "output": self.output,
            "grad": self.grad, "v": self.v, "u": self.u, "Jv": self.Jv, "JTu": self.JTu, "Gv": self.Gv,
        }
        for m, w in sorted(self.winners.items()):
            arrays[f"winners/{m}"] = np.asarray(w, dtype=np.int64)
        arrays["torch/x"] = _x_to_torch(net, self.X)
        arrays["torch/output"] = np.ascontiguousarray(self.output.T)
        arrays["torch/u"] = np.ascontiguousarray(self.u.T)
        arrays["torch/Jv"] = np.ascontiguousarray(self.Jv.T)
        for key, vec in (("theta", self.theta), ("grad", self.grad), ("v", self.v), ("JTu", self.JTu),
                         ("Gv", self.Gv)):
            for p in params:
                arrays[f"torch/{key}/{p.name}"] = np.ascontiguousarray(vec[p.theta_index])
        for m, w in sorted(self.winners.items()):
            arrays[f"torch/winners/{m}"] = winners_to_torch(w, net, m)
        arrays["sha256"] = np.array(json.dumps(golden_checksums(arrays)))
        return arrays


def golden_checksums(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """SHA-256 of each array but ``sha256``: its dtype, shape and little-endian bytes.

    Examples
    --------
    >>> sums = golden_checksums({"f": np.array(1.0), "y": np.array([0, 1])})
    >>> sorted(sums), sums["f"] == golden_checksums({"f": np.array(1.0, dtype=">f8")})["f"]
    (['f', 'y'], True)
    """
    out: dict[str, str] = {}
    for key in sorted(arrays):
        if key == "sha256":
            continue
        arr = np.asarray(arrays[key])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder in "<>" else arr.dtype
        arr = np.ascontiguousarray(arr, dtype=dt)
        h = hashlib.sha256(f"{dt.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
        out[key] = h.hexdigest()
    return out


def make_golden(net: Network, *, instances: int = 4, seed: int = 0, C: float = np.inf,
                theta: np.ndarray | None = None, X: np.ndarray | None = None,
                y: np.ndarray | None = None) -> Golden:
    """Compute a golden case with sparsecnn's public API.

    Parameters
    ----------
    net : Network
    instances : int
        ``l``, when ``X`` is not given.
    seed : int
        ``rng = numpy.random.default_rng(seed)``; ``theta`` is
        ``net.init_params(seed)`` with biases ``0.1 * rng.standard_normal``
        (layer by layer), then ``X = rng.standard_normal((d a b, l))``,
        ``y = rng.integers(0, n_L, l)``, ``v = rng.standard_normal(n)``,
        ``u = rng.standard_normal((n_L, l))``; given ``theta``, ``X``, ``y`` replace theirs.
    C : float, default inf
    theta : ndarray, shape ``(n,)``, optional
    X : ndarray, shape ``(d^1 a^1 b^1, l)``, optional
    y : ndarray of int, shape ``(l,)``, optional

    Returns
    -------
    Golden
        ``output`` and ``Jv`` of shape ``(n_L, l)``; ``grad``, ``JTu``, ``Gv`` of shape ``(n,)``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> golden = make_golden(net, instances=2, seed=0)
    >>> f, grad = net.objective(golden.theta, golden.X, golden.y, golden.C)
    >>> bool(np.isclose(golden.f, f)), bool(np.allclose(golden.grad, grad))
    (True, True)
    >>> golden.info["max_pool_ties"]
    {'1': {'windows': 36, 'tied': 5, 'matter': 0}}
    """

    rng = np.random.default_rng(seed)
    if theta is None:
        Ws, _ = net.unpack(net.init_params(seed=seed))
        theta = net.pack(Ws, [0.1 * rng.standard_normal((W.shape[0],)) for W in Ws])
    theta = net.check_theta(theta)
    X_new = rng.standard_normal((net.n_input, int(instances)))
    X = net.check_X(X_new if X is None else X)
    l = X.shape[1]
    y_new = rng.integers(0, net.n_L, size=l)
    labels = net.check_y(y_new if y is None else y, l)
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, l))
    C = net.check_C(C)
    f, grad = net.objective(theta, X, labels, C)
    G = gauss_newton(net, theta, X)
    cache = net.replace(activate_order="slides").forward(theta, X)       # P_pool as the slides choose it
    winners = {ly.m: np.asarray(winner_positions(ly, cache.kept[f"pool{ly.m}"]), dtype=np.int64)
               for ly in net.conv if ly.max_pools}
    info = {
        "seed": int(seed), "instances": int(l),
        "objective": "f = theta'theta/(2C) + (1/l) sum_i " + (
            "-log softmax(z^{L+1,i})_{y_i}" if net.loss.name == "cross-entropy"
            else "||z^{L+1,i} - onehot(y^i)||^2"),
        "G": "G = (1/l) sum_i J_i' " + ("(diag(p_i) - p_i p_i'), p_i = softmax(z^{L+1,i})"
                                        if net.loss.name == "cross-entropy" else "(2I)")
             + " J_i, J_i = dz^{L+1,i}/dtheta'",
        "max_pool_ties": _ties(net, cache.kept),
        "sparsecnn_version": __version__,
    }
    golden = Golden(net, C, X, labels, theta, np.array(G.output), float(f), grad, v, u, G.Jv(v), G.JTv(u),
                    G.matvec(v), winners, info)
    for name in ("output", "f", "grad", "Jv", "JTu", "Gv"):           # a golden case holds numbers only
        value = np.asarray(getattr(golden, name))
        if not np.isfinite(value).all():
            raise NonFiniteError(f"the golden case's {name} is not finite ({value.flat[np.argmin(np.isfinite(value))]}"
                                 f"): theta (max |theta| {np.abs(theta).max():.3g}), X (max |X| "
                                 f"{np.abs(X).max():.3g}) or 1/C (C = {C:.3g}) overflow the float64 reference")
    return golden


def write_golden(path: str | os.PathLike[str], golden: Golden) -> None:
    """Write ``golden`` atomically (a temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : str or path-like
        Written as given (no ``.npz`` is appended).
    golden : Golden

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sparsecnn import FullLayer, Network
    >>> case = pathlib.Path(tempfile.mkdtemp()) / "case.npz"
    >>> write_golden(case, make_golden(Network((2, 2, 1), [FullLayer(3)]), instances=2))
    >>> sorted(np.load(case).files)[:6]
    ['C', 'Gv', 'JTu', 'Jv', 'X', 'f']
    """
    arrays = golden.arrays()
    atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


# ------------------------------------------------------------------ reading
def _open_npz(path: str | os.PathLike[str], what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (:func:`sparsecnn._safe_io.read_npz`: regular files, no pickle,
    sizes checked before reading), or a DataFormatError saying what is wrong."""
    return read_npz(path, what)


def _text(arrays: Mapping[str, np.ndarray], key: str, source: str) -> str:
    arr = arrays[key]
    if arr.shape != () or arr.dtype.kind != "U":
        raise DataFormatError(f"{source}: entry {key!r} must be text, got dtype {arr.dtype} shape {arr.shape}")
    return str(arr[()])


def _float_array(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...], source: str,
                 what: str = "golden file") -> np.ndarray:
    if key not in arrays:
        raise DataFormatError(f"{source}: {what} lacks {key!r} (shape {shape})")
    arr = arrays[key]
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise DataFormatError(f"{source}: {key!r} must be numeric, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise DataFormatError(f"{source}: {key!r} must have shape {shape}, got {arr.shape}")
    out = arr.astype(np.float64)
    if arr.dtype.kind == "f" and not np.isfinite(out).all() and key != "C":
        raise DataFormatError(f"{source}: {key!r} holds NaN or Inf")
    return out


def read_golden(path: str | os.PathLike[str]) -> Golden:
    """Read a golden file written by :func:`write_golden`.

    Raises
    ------
    DataFormatError
        If the file is missing, not an ``.npz`` archive, needs pickle, is not a
        sparsecnn golden file, has another schema version, or an array is
        missing, has the wrong shape or disagrees with its other layout.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Golden

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> case = pathlib.Path(tempfile.mkdtemp()) / "case.npz"
    >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    >>> write_golden(case, golden)
    >>> again = read_golden(case)
    >>> again.net.summary() == golden.net.summary(), bool(np.array_equal(again.Gv, golden.Gv))
    (True, True)
    >>> read_golden(case.with_name("absent.npz"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: .../absent.npz: golden file not found
    """
    source = os.fspath(path)
    arrays = _open_npz(path, "golden file")
    if "schema" not in arrays or _text(arrays, "schema", source) != GOLDEN_SCHEMA:
        raise DataFormatError(f"{source}: not a sparsecnn golden file (no schema entry {GOLDEN_SCHEMA!r})")
    version = arrays.get("schema_version")
    if version is None or version.shape != () or version.dtype.kind not in "iu" or int(version) != GOLDEN_VERSION:
        raise DataFormatError(f"{source}: golden schema version {version!r} is not supported "
                              f"(this sparsecnn reads version {GOLDEN_VERSION})")
    for key in ("network", "info", "sha256"):
        if key not in arrays:
            raise DataFormatError(f"{source}: golden file lacks {key!r}")
    stored = parse_json(_text(arrays, "sha256", source), "sha256", source)
    if not isinstance(stored, dict):
        raise DataFormatError(f"{source}: entry 'sha256' must be a JSON object {{name: SHA-256}}")
    actual = golden_checksums(arrays)
    wrong = sorted(set(stored) ^ set(actual)) + sorted(k for k in set(stored) & set(actual)
                                                       if stored[k] != actual[k])
    if wrong:
        shown = ", ".join(repr(k) for k in wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
        raise DataFormatError(f"{source}: array{'s' if len(wrong) > 1 else ''} {shown} "
                              f"{'do' if len(wrong) > 1 else 'does'} not match the SHA-256 stored when the "
                              "golden file was written (changed, added or removed afterwards); refusing an "
                              "altered golden file")
    desc = parse_json(_text(arrays, "network", source), "network", source)
    info = parse_json(_text(arrays, "info", source), "info", source)
    net = network_from_dict(desc, source)
    n, n_L = net.n_params, net.n_L
    X = arrays.get("X")
    if X is None or X.ndim != 2:
        raise DataFormatError(f"{source}: golden file lacks X of shape (d a b, l)")
    l = X.shape[1]
    if l < 1:
        raise DataFormatError(f"{source}: X has l = 0 instances; a golden case needs l >= 1")
    get = {k: _float_array(arrays, k, s, source) for k, s in (
        ("C", ()), ("f", ()), ("X", (net.n_input, l)), ("theta", (n,)), ("output", (n_L, l)), ("grad", (n,)),
        ("v", (n,)), ("u", (n_L, l)), ("Jv", (n_L, l)), ("JTu", (n,)), ("Gv", (n,)))}
    y = arrays.get("y")
    if y is None or y.shape != (l,) or y.dtype.kind not in "iu":
        raise DataFormatError(f"{source}: golden file needs integer labels y of shape ({l},)")
    bad = (y < 0) | (y >= n_L)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataFormatError(f"{source}: y must hold labels in 0..n_L-1 = 0..{n_L - 1}, got {y[k]} at "
                              f"position {k}")
    winners: dict[int, np.ndarray] = {}
    for ly in net.conv:
        if ly.max_pools:
            key = f"winners/{ly.m}"
            w = arrays.get(key)
            if w is None or w.shape != (ly.n_out, l) or w.dtype.kind not in "iu":
                raise DataFormatError(f"{source}: golden file needs integer {key!r} of shape ({ly.n_out}, {l})")
            if w.size and (w.min() < 0 or w.max() >= ly.n_S):
                raise DataFormatError(f"{source}: {key!r} must hold positions in vec(sigma(S^{ly.m})), "
                                      f"0..{ly.n_S - 1}, got {w.min()}..{w.max()}")
            winners[ly.m] = w.astype(np.int64)
    if not float(get["C"]) > 0:
        raise DataFormatError(f"{source}: C must be > 0, got {float(get['C'])}")
    golden = Golden(net, float(get["C"]), get["X"], y.astype(np.int64), get["theta"], get["output"],
                    float(get["f"]), get["grad"], get["v"], get["u"], get["Jv"], get["JTu"], get["Gv"],
                    winners, info if isinstance(info, dict) else {})
    # the PyTorch layout must hold the same numbers
    for key, ref in golden.arrays().items():
        if key.startswith("torch/") and key in arrays:
            if arrays[key].shape != ref.shape or not np.array_equal(arrays[key], ref):
                raise DataFormatError(f"{source}: {key!r} disagrees with its sparsecnn-layout array")
    return golden


_INPUTS = ("schema", "schema_version", "sha256", "network", "info", "C", "layer_offsets", "X", "y", "theta", "v", "u",
           "torch/x", "torch/u")
_INPUT_PREFIXES = ("winners/", "torch/winners/", "torch/theta/", "torch/v/")


def read_results(path: str | os.PathLike[str], golden: Golden
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]], list[str]]:
    """Results in either layout, converted to sparsecnn's layout.

    Returns
    -------
    results : dict
        ``{"sparsecnn": {...}, "torch": {...}}`` (layouts present only), each
        mapping ``f``, ``output``, ``grad``, ``Jv``, ``JTv`` (``J^T u``), ``Gv``
        to arrays in sparsecnn's layout.
    eps : dict
        ``{layout: {product: machine epsilon}}``: the epsilon of each product's own
        dtype (the lowest precision among its arrays when given per parameter;
        float64 for integers).
    found : list of str
        The names read.

    Parameters
    ----------
    path : str or path-like
        A results ``.npz`` (see "Results files" in the module docstring).
    golden : Golden
        The case the results answer.

    Raises
    ------
    DataFormatError
        For an unreadable file, an unknown name, a wrong shape, or a float16 array
        (its rounding would hide errors of a few per cent).

    Examples
    --------
    ``grad`` as one flat float32 vector in PyTorch's parameter order:

    >>> import tempfile, pathlib
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    >>> flat = np.concatenate([golden.grad[p.theta_index].ravel() for p in golden.params])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.npz"
    >>> np.savez(path, f=golden.f, **{"torch/grad": flat.astype(np.float32)})
    >>> results, eps, found = read_results(path, golden)
    >>> sorted(results["torch"]), found
    (['f', 'grad'], ['f', 'torch/grad'])
    >>> bool(eps["torch"]["grad"] == np.finfo(np.float32).eps), bool(eps["torch"]["f"] == np.finfo(np.float64).eps)
    (True, True)
    >>> bool(np.allclose(results["torch"]["grad"], golden.grad, rtol=1e-6))
    True
    """
    source = os.fspath(path)
    arrays = _open_npz(path, "results file")
    net, l = golden.net, golden.l
    n, n_L = net.n_params, net.n_L
    params = golden.params
    param_names = {p.name for p in params}
    ours: dict[str, Any] = {}
    torch_: dict[str, Any] = {}
    used: set[str] = set()
    eps64 = float(np.finfo(np.float64).eps)
    eps_of: dict[str, float] = {}                      # array name -> machine epsilon of its dtype

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        used.add(key)
        arr = arrays[key]
        if arr.dtype.kind not in "fiu" or arr.dtype == bool:
            raise DataFormatError(f"{source}: {key!r} must be a float array, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
            raise DataFormatError(
                f"{source}: {key!r} is {arr.dtype}; float16 results cannot be checked (eps = "
                f"{float(np.finfo(arr.dtype).eps):.2g} would allow errors of about 10%); compute in float32 "
                "or float64")
        eps_of[key] = float(np.finfo(arr.dtype).eps) if arr.dtype.kind == "f" else eps64
        if arr.shape != shape and not (shape == () and arr.size == 1):
            raise DataFormatError(f"{source}: {key!r} must have shape {shape}, got {arr.shape}")
        return arr.astype(np.float64).reshape(shape)

    sources: dict[tuple[str, str], list[str]] = {}      # (layout, product) -> array names

    if "f" in arrays:
        ours["f"] = float(take("f", ()))
        sources[("sparsecnn", "f")] = ["f"]
    for key, shape in (("output", (n_L, l)), ("Jv", (n_L, l)), ("grad", (n,)), ("JTu", (n,)), ("Gv", (n,))):
        if key in arrays:
            ours["JTv" if key == "JTu" else key] = take(key, shape)
            sources[("sparsecnn", "JTv" if key == "JTu" else key)] = [key]
    for key in ("output", "Jv"):
        if f"torch/{key}" in arrays:
            torch_[key] = take(f"torch/{key}", (l, n_L)).T
            sources[("torch", key)] = [f"torch/{key}"]
    for key in _THETA_LIKE:
        target = "JTv" if key == "JTu" else key
        flat = f"torch/{key}"
        per = {k[len(flat) + 1:]: k for k in arrays if k.startswith(flat + "/")}
        if flat in arrays and per:
            raise DataFormatError(f"{source}: give {key} in PyTorch's layout either as one flat vector "
                                  f"{flat!r} or per parameter, not both")
        if flat in arrays:
            torch_[target] = torch_flat_to_theta(params, take(flat, (n,)))
            sources[("torch", target)] = [flat]
        elif per:
            unknown = sorted(set(per) - param_names)
            missing = sorted(param_names - set(per))
            if unknown or missing:
                raise DataFormatError(
                    f"{source}: {flat}/<name> must cover exactly the parameters "
                    f"{[p.name for p in params]}; unknown {unknown}, missing {missing}")
            try:
                torch_[target] = torch_to_theta(
                    params, {name: take(k, next(p.shape for p in params if p.name == name))
                             for name, k in per.items()}, n)
            except ShapeError as exc:
                raise DataFormatError(f"{source}: {exc}") from None
            sources[("torch", target)] = list(per.values())
    extra = sorted(k for k in arrays if k not in used and k not in _INPUTS
                   and not k.startswith(_INPUT_PREFIXES))
    if extra:
        raise DataFormatError(
            f"{source}: unknown arrays {extra}; a results file holds f, output, grad, Jv, JTu, Gv "
            f"(sparsecnn's layout) or torch/output, torch/Jv, torch/grad[/<param>], torch/JTu[/<param>], "
            f"torch/Gv[/<param>] (PyTorch's), parameters {[p.name for p in params]}")
    if not ours and not torch_:
        raise DataFormatError(f"{source}: no results found; expected any of {', '.join(RESULT_NAMES)} "
                              f"(or their torch/ forms)")
    if torch_ and set(ours) == {"f"}:                  # f has no layout: keep it with the rest
        torch_["f"] = ours.pop("f")
        sources[("torch", "f")] = sources.pop(("sparsecnn", "f"))
    eps: dict[str, dict[str, float]] = {}
    for (layout, product), names in sources.items():
        eps.setdefault(layout, {})[product] = max(eps_of[k] for k in names)
    results: dict[str, dict[str, Any]] = {}
    if ours:
        results["sparsecnn"] = ours
    if torch_:
        results["torch"] = torch_
    return results, eps, sorted(used)


def check_golden(golden: Golden | str | os.PathLike[str], results: str | os.PathLike[str], *,
                 rtol: float | None = None, atol: float = 0.0, worst: int = 5,
                 eps: float | None = None) -> CheckReport:
    """Compare a results file with a golden file; the report of :func:`sparsecnn.check`.

    Parameters
    ----------
    golden : Golden or path
    results : path
        See "Results files" in the module docstring.
    rtol : float, optional
        Default :func:`~sparsecnn.oracle.check.default_rtol` of ``eps``.
    atol : float, default 0
    worst : int
        Entries listed per failing row.
    eps : float, optional
        Machine epsilon of the implementation; default from the results' dtypes.

    Returns
    -------
    CheckReport
        One row per block of each product the results hold, as :func:`sparsecnn.check`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.npz"
    >>> wrong = golden.Gv.copy(); wrong[-1] += 1.0                  # the last entry of b^2
    >>> np.savez(path, Jv=golden.Jv, Gv=wrong)
    >>> report = check_golden(golden, path)
    >>> [(row.product, row.name, row.passed) for row in report.rows]
    [('Jv', 'J v', True), ('Gv', 'W^2', True), ('Gv', 'b^2', False), ('Gv', 'W^1', True), ('Gv', 'b^1', True)]
    """
    check_tolerances(rtol, atol)
    source = os.fspath(results)
    if not isinstance(golden, Golden):
        golden_source = os.fspath(golden)
        golden = read_golden(golden)
    else:
        golden_source = "<golden>"
    found, eps_found, names = read_results(results, golden)
    ref: dict[str, Any] = {"output": golden.output, "f": golden.f, "grad": golden.grad, "Jv": golden.Jv,
                           "JTv": golden.JTu, "Gv": golden.Gv}
    rows = []
    rtols: dict[str, float] = {}                     # eps name -> rtol used, for the report
    for layout, theirs in found.items():
        labels = {"JTv": "JTu"}
        if layout == "torch" and "sparsecnn" in found:
            labels = {k: f"{labels.get(k, k)}[torch]" for k in ("output", "f", "grad", "Jv", "JTv", "Gv")}
        for product in ("output", "f", "grad", "Jv", "JTv", "Gv"):       # compare_products' order
            if product not in theirs:
                continue
            eps_p = eps_found[layout][product] if eps is None else float(eps)   # the row's own dtype
            rtol_p = default_rtol(eps_p) if rtol is None else float(rtol)
            rtols[eps_name(eps_p)] = rtol_p
            rows += compare_products(golden.net, ref, {product: theirs[product]}, rtol=rtol_p, atol=atol,
                                     eps=eps_p, k_worst=worst, params=golden.params, labels=labels)
    net = golden.net
    if rtol is None:
        rtol_text = ("rtol from each row's own dtype, max(1e4 eps, 1e-9): "
                     + ", ".join(f"{unit}: {r:.3g}" for unit, r in sorted(rtols.items())))
    else:
        rtol_text = f"rtol = {float(rtol):.3g}"
    ties = golden.info.get("max_pool_ties", {}) if isinstance(golden.info, dict) else {}
    setting = [
        f"golden: {golden_source} (schema {GOLDEN_SCHEMA} v{GOLDEN_VERSION}); l = {golden.l}, n = {net.n_params}, "
        f"C = {golden.C:g}",
        f"results: {source}: {', '.join(names)} ({' and '.join(found)} layout"
        + ("s" if len(found) > 1 else "") + ")",
        "tolerance per row: max abs err <= atol + rtol * scale, scale = max(max|ours in block|, "
        f"1e-3 max|ours in product|); {rtol_text}, atol = {atol:g}",
    ]
    for m, t in sorted(ties.items(), key=lambda kv: int(kv[0])):
        if isinstance(t, dict):
            setting.append(f"max pooling, layer {m}: P_pool from winners/{m}; {t.get('tied', 0)} of "
                           f"{t.get('windows', 0)} windows tied, {t.get('matter', 0)} where the choice changes a "
                           f"product (use the file's winners there)")
    setting.append("network (m = layer):")
    setting += ["  " + line for line in net.summary().splitlines()]
    return CheckReport(rows, title="sparsecnn check-golden: results against the sparsecnn float64 reference",
                       setting=setting)


def load_network_file(path: str | os.PathLike[str]) -> Network:
    """A network from a simpleNN configuration file or a JSON description (``network_to_dict``'s form).

    Parameters
    ----------
    path : str or path-like
        A file whose text starts with ``{`` is read as JSON, any other as a
        simpleNN configuration.

    Returns
    -------
    Network

    Raises
    ------
    DataFormatError, ConfigError
        For invalid JSON or an invalid configuration.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.json"
    >>> _ = path.write_text(json.dumps({"input_shape": [6, 6, 1], "layers": [
    ...     {"kind": "conv", "d_out": 2, "h": 3, "p": 1, "r": 2}, {"kind": "full", "n_out": 3}]}))
    >>> load_network_file(path)
    Network(input_shape=(6, 6, 1), layers=[ConvLayer(d_out=2, h=3, s=1, p=1, r=2, activation='relu', pool='max'), FullLayer(n_out=3, activation=None)])
    """
    source = os.fspath(path)
    regular_file(path, "network file (simpleNN configuration or JSON)")
    try:
        with open(source, "rb") as fh:
            head = fh.read(_MAX_NETWORK_FILE + 1)
        text = head.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        text = ""                                  # the simpleNN reader reports the problem
    if text.lstrip().startswith("{"):
        if len(head) > _MAX_NETWORK_FILE:
            raise DataFormatError(f"{source}: larger than {_MAX_NETWORK_FILE:,} bytes; not a network description")
        try:
            desc = json.loads(text)
        except RecursionError:
            raise DataFormatError(f"{source}: invalid JSON network description (nested too deeply)") from None
        except ValueError as exc:
            raise DataFormatError(f"{source}: invalid JSON network description: {exc}") from None
        return network_from_dict(desc, source)
    return Network.from_simplenn_config(path)
