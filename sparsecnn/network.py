"""The network: shape inference, the parameter vector, forward and backward passes.

``Network`` chains convolutional layers ``m = 1..L^C`` and full layers
``m = L^C+1..L`` (see :mod:`sparsecnn.layers`) and evaluates the objective of
NOTATION.md,

    f(theta) = theta^T theta / (2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2,

with its gradient, for a whole batch at a time: each operator is one sparse
product per batch and each ``W^m`` one GEMM per batch.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import config, engine, objective, second_order
from ._checks import real_numeric
from .engine import Keep
from .exceptions import (
    ArchitectureError,
    ConfigError,
    InputTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from .kernels import Workspace, blas_serial, release_scratch
from .layers import ACTIVATE_ORDERS, POOL_BACKWARDS, ConvLayer, ConvShape, FullLayer, FullShape
from .operators.pool import _check_winners
from .planner import Plan, make_plan

__all__ = ["Network", "ForwardCache", "DEFAULT_BATCH_SIZE", "DTYPES"]

DTYPES = ("float64", "float32")
"""The float types the products can run in (``Network(dtype=...)`` and each method's ``dtype=``)."""

DEFAULT_BATCH_SIZE = 1024
"""Instances per batch in :meth:`Network.objective` and :meth:`Network.output`."""


def _as_matrix(name: str, X: object, rows: int, rows_formula: str) -> np.ndarray:
    """``X`` as a finite float64 matrix with ``rows`` rows, or a clear error."""
    if isinstance(X, (str, bytes)) or X is None:
        raise InputTypeError(f"{name} must be a numeric array, got {type(X).__name__}")
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise InputTypeError(f"{name} must be a dense numeric array, got {type(X).__name__}")
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputTypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputTypeError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be a matrix of shape ({rows_formula} = {rows}, l), got shape {arr.shape}")
    if arr.shape[0] != rows:
        raise ShapeError(f"{name} must have {rows_formula} = {rows} rows, got {arr.shape[0]}")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise NonFiniteError(
            f"{name} must be finite, got {arr[tuple(bad)]} at entry {tuple(int(i) for i in bad)}"
        )
    return arr


def _check_dtype(dtype: object) -> np.dtype:
    """``dtype`` as ``np.float64`` or ``np.float32``, or a clear error."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dt


@dataclass
class ForwardCache:
    """What a forward pass kept for the backward pass.

    Attributes
    ----------
    theta : ndarray, shape ``(n,)``
    Ws, bs : list of ndarray
        ``W^m`` and ``b^m`` as unpacked from ``theta``, in the dtype the pass ran in.
    output : ndarray, shape ``(n_L, l)``
        ``z^{L+1}``, one column per instance, in the dtype the pass ran in.
    kept : dict of str to ndarray
        Named intermediate quantities: ``"Z2"`` (``vec(Z^2)``, one column per
        instance), ``"phi1"``, ``"S1"``, ``"pool1"`` (winners), ...  Without a
        plan, everything (store-all); with a plan, exactly ``plan.retained`` at
        the planned dtypes (``sigma'(S^m)`` as ``bool`` for ReLU).  Winners are
        kept as offsets inside their window either way
        (:func:`sparsecnn.engine.winner_positions` gives positions).
    plan : Plan or None
        The plan the forward pass followed (:meth:`Network.plan`).
    X : ndarray or None
        The input, held by reference when a plan rebuilds quantities from it
        (not counted in :attr:`nbytes`: the caller holds it).
    keep : Keep or None
        What the forward pass kept and how the backward pass rebuilds the rest
        (:class:`sparsecnn.engine.Keep`).

    Examples
    --------
    :meth:`Network.forward` makes one; without a plan it keeps everything:

    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> cache = net.forward(net.init_params(seed=0), np.ones((16, 5)))
    >>> cache.l, cache.output.shape, sorted(cache.kept)
    (5, (3, 5), ['S1', 'S2', 'Z1', 'Z2', 'Z3', 'phi1', 'pool1'])
    >>> cache.kept["phi1"].shape                   # (h h d^1 a_conv b_conv, l)
    (144, 5)

    With a plan it keeps the plan's ``retained`` only:

    >>> small = net.forward(net.init_params(seed=0), np.ones((16, 5)), plan="min-memory")
    >>> sorted(small.kept), small.nbytes == 5 * small.plan.bytes_per_instance
    (['Z2', 'Z3', 'pool1'], True)
    """

    theta: np.ndarray
    Ws: list[np.ndarray]
    bs: list[np.ndarray]
    output: np.ndarray
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    plan: Plan | None = None
    X: np.ndarray | None = None
    keep: Keep | None = field(default=None, repr=False)

    @property
    def l(self) -> int:
        """Number of instances."""
        return int(self.output.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held between the forward and the backward pass: :attr:`kept` and
        :attr:`output`, each array once (``Z1``, the input, excluded)."""
        arrays = {id(v): v for k, v in self.kept.items() if k != "Z1"}
        arrays[id(self.output)] = self.output
        return int(sum(v.nbytes for v in arrays.values()))


class Network:
    """A CNN as the slides write it.

    Parameters
    ----------
    input_shape : tuple of int
        ``(a^1, b^1, d^1)``: height, width and channels of the input image.
    layers : sequence of ConvLayer and FullLayer
        Convolutional layers first, then at least one full layer.
    pool_backward : {"auto", "eq5", "eq6"}
        How ``dxi/dvec(S^m)`` is formed where pooling follows an activation.
        ``"eq5"``: ``(dxi/dvec(Z^{m+1})^T P_pool) ⊙ vec(sigma'(S^m))^T``;
        ``"eq6"``: ``(dxi/dvec(Z^{m+1})^T ⊙ vec(sigma'(S^m) read from Z^{m+1})^T) P_pool``,
        which needs only ``Z^{m+1}``; ``"auto"`` uses (6) where it holds.
    dtype : {"float64", "float32"}, default "float64"
        The float type of the products (``phi``, ``S``, the GEMMs, ``P_pool``).
        ``theta``, ``f``, the gradient and the sums over batches stay float64
        whatever the products run in; each method takes ``dtype=`` to override
        it for one call.  The oracle comparisons (:mod:`sparsecnn.oracle`) run
        in float64.
    activate_order : {"pool-first", "slides"}, default "pool-first"
        ``"slides"``: ``Z^{m+1} = mat(P_pool vec(sigma(S^m)))`` as written:
        ``sigma`` on all of ``S^m``, then max pooling.  ``"pool-first"``: max
        pooling of ``S^m`` itself, then ``sigma`` on the ``r^2`` times smaller
        result.  For a non-decreasing ``sigma`` (all five here) and max pooling
        it is the same ``Z^{m+1}``, since ``sigma(max_k s_k) = max_k sigma(s_k)``,
        and the same gradient; ``P_pool^{m,i}`` may differ only in windows where
        ``sigma`` flattens the entries (see :meth:`ConvShape.activate_pool`).
        Layers with average pooling always use the slides' order.
    reuse_buffers : bool, default True
        :meth:`objective` and :meth:`output` keep their large work arrays
        (``phi(pad(Z^m))``, ``S^m``, ``dxi/dS^m``, ``dxi/dZ^m`` of one batch) on
        the network between calls, so that fresh memory is touched once rather
        than at every call; :meth:`release_buffers` frees them.  ``False``
        reuses them across the batches of one call only.
    backend : {"fast", "reference"}, default "fast"
        Who computes each step (:mod:`sparsecnn.engine.backends`): ``"reference"``
        the literal products of :mod:`sparsecnn.equations` through the ``csr_array``
        operators (no threads, no work arrays, float64); ``"fast"`` the blocked,
        threaded and window-by-window kernels of :mod:`sparsecnn.kernels`.
        Both give the same numbers to rounding.
    loss : {"squared", "cross-entropy"}, default "squared"
        The loss ``xi`` of the objective (:mod:`sparsecnn.objective`): ``||z^{L+1} - onehot(y)||^2``
        or ``-log softmax(z^{L+1})_y``.

    Examples
    --------
    >>> net = Network((8, 8, 1), [ConvLayer(4, h=3, p=1, r=2), FullLayer(10)])
    >>> net.n_params
    690
    >>> theta = net.init_params(seed=0)
    >>> X = np.random.default_rng(0).standard_normal((64, 5))
    >>> net.output(theta, X).shape
    (10, 5)
    """

    def __init__(self, input_shape: Sequence[int], layers: Sequence[ConvLayer | FullLayer],
                 *, pool_backward: str = "auto", dtype: object = "float64",
                 activate_order: str = "pool-first", reuse_buffers: bool = True, backend: str = "fast",
                 loss: str = "squared") -> None:
        if isinstance(input_shape, (str, bytes)) or len(input_shape) != 3:
            raise ConfigError(f"input_shape must be (a, b, d), got {input_shape!r}")
        for name, v in zip(("a", "b", "d"), input_shape, strict=True):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ConfigError(f"input_shape: {name} must be a positive integer, got {v!r}")
        if pool_backward not in POOL_BACKWARDS:
            raise ConfigError(f"pool_backward must be one of {POOL_BACKWARDS}, got {pool_backward!r}")
        if activate_order not in ACTIVATE_ORDERS:
            raise ConfigError(f"activate_order must be one of {ACTIVATE_ORDERS}, got {activate_order!r}")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.pool_backward = pool_backward
        self.dtype: np.dtype = _check_dtype(dtype)
        self.activate_order = activate_order
        self.reuse_buffers = bool(reuse_buffers)
        self.backend: engine.Backend = engine.get_backend(backend)
        self.loss: objective.Loss = objective.get_loss(loss)
        self._workspace = Workspace()
        layers = list(layers)
        if not layers or not isinstance(layers[-1], FullLayer):
            raise ConfigError("layers must end with at least one FullLayer")
        self.conv: list[ConvShape] = []
        self.full: list[FullShape] = []
        a, b, d = self.input_shape
        n = a * b * d
        for m, spec in enumerate(layers, start=1):
            if isinstance(spec, ConvLayer):
                if self.full:
                    raise ConfigError(f"layer {m}: a ConvLayer cannot follow a FullLayer")
                layer = ConvShape(m, a, b, d, spec)
                self.conv.append(layer)
                a, b, d = layer.a_out, layer.b_out, layer.d_out
                n = layer.n_out
            elif isinstance(spec, FullLayer):
                fl = FullShape(m, n, spec, last=(m == len(layers)))
                self.full.append(fl)
                n = fl.n_out
            else:
                raise InputTypeError(
                    f"layer {m} must be a ConvLayer or a FullLayer, got {type(spec).__name__}"
                )
        self.layers: list[ConvShape | FullShape] = [*self.conv, *self.full]
        sizes = [int(np.prod(ly.W_shape)) + ly.W_shape[0] for ly in self.layers]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    # ------------------------------------------------------------------ sizes
    @property
    def L(self) -> int:
        """Number of layers."""
        return len(self.layers)

    @property
    def LC(self) -> int:
        """Number of convolutional layers ``L^C``."""
        return len(self.conv)

    @property
    def n_input(self) -> int:
        """Rows of ``X``: ``d^1 a^1 b^1``."""
        a, b, d = self.input_shape
        return a * b * d

    @property
    def n_L(self) -> int:
        """Size of the output ``z^{L+1}`` (number of classes)."""
        return self.full[-1].n_out

    @property
    def n_params(self) -> int:
        """Length ``n`` of ``theta``."""
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        specs = ", ".join(repr(ly.spec) for ly in self.layers)
        loss = "" if self.loss.name == "squared" else f", loss={self.loss.name!r}"
        return f"Network(input_shape={self.input_shape}, layers=[{specs}]{loss})"

    def replace(self, **options: object) -> Network:
        """The same layers with other constructor options (``pool_backward``, ``dtype``,
        ``activate_order``, ``reuse_buffers``, ``backend``, ``loss``); the parameter layout is unchanged.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)])
        >>> slides = net.replace(activate_order="slides", dtype="float32")
        >>> slides.activate_order, slides.dtype, slides.n_params == net.n_params
        ('slides', dtype('float32'), True)
        """
        kw: dict[str, object] = {"pool_backward": self.pool_backward, "dtype": self.dtype,
                                 "activate_order": self.activate_order, "reuse_buffers": self.reuse_buffers,
                                 "backend": self.backend.name, "loss": self.loss.name}
        unknown = set(options) - set(kw)
        if unknown:
            raise ConfigError(f"replace: unknown options {sorted(unknown)}; expected some of {sorted(kw)}")
        kw.update(options)
        return Network(self.input_shape, [ly.spec for ly in self.layers], **kw)  # type: ignore[arg-type]

    def summary(self) -> str:
        """A table of the layers with the slides' sizes.

        Examples
        --------
        >>> print(Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)]).summary())
        m  kind  input (a x b x d)  W^m      output
        1  conv  4 x 4 x 1          2 x 9    2 x 2 x 2
        2  full  8                  3 x 8    3
        """
        rows = [("m", "kind", "input (a x b x d)", "W^m", "output")]
        for ly in self.conv:
            rows.append((str(ly.m), "conv", f"{ly.a} x {ly.b} x {ly.d}",
                         f"{ly.W_shape[0]} x {ly.W_shape[1]}", f"{ly.a_out} x {ly.b_out} x {ly.d_out}"))
        for fl in self.full:
            rows.append((str(fl.m), "full", str(fl.n_in), f"{fl.W_shape[0]} x {fl.W_shape[1]}",
                         str(fl.n_out)))
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

    # ------------------------------------------------------------- parameters
    def pack(self, W: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        """``theta = [vec(W^1); b^1; ...; vec(W^L); b^L]`` (each layer ``vec([W^m b^m])``).

        Parameters
        ----------
        W, b : lists of length ``L``; ``W[m-1]`` and ``b[m-1]`` belong to layer ``m``.

        Returns
        -------
        ndarray, shape ``(n,)``

        Examples
        --------
        >>> net = Network((1, 1, 1), [FullLayer(2)])
        >>> net.pack([np.array([[1.], [2.]])], [np.array([3., 4.])])
        array([1., 2., 3., 4.])
        """
        if len(W) != self.L or len(b) != self.L:
            raise ShapeError(f"pack needs L = {self.L} matrices W and vectors b, got {len(W)} and {len(b)}")
        theta = np.empty(self.n_params)
        for m, ly in enumerate(self.layers, start=1):
            Wm = np.asarray(W[m - 1], dtype=np.float64)
            bm = np.asarray(b[m - 1], dtype=np.float64).reshape(-1)
            if Wm.shape != ly.W_shape:
                raise ShapeError(f"W^{m} must have shape {ly.W_shape}, got {Wm.shape}")
            if bm.shape != (ly.W_shape[0],):
                raise ShapeError(f"b^{m} must have {ly.W_shape[0]} entries, got {bm.size}")
            start, stop = self._offsets[m - 1], self._offsets[m]
            theta[start:stop - bm.size] = Wm.reshape(-1, order="F")
            theta[stop - bm.size:stop] = bm
        return theta

    def unpack(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Inverse of :meth:`pack`: ``(W, b)``, lists with layer ``m`` at index ``m-1``.

        The matrices are views of ``theta`` where possible.

        Examples
        --------
        >>> net = Network((1, 1, 1), [FullLayer(2)])
        >>> W, b = net.unpack(np.array([1., 2., 3., 4.]))
        >>> W[0], b[0]
        (array([[1.],
               [2.]]), array([3., 4.]))
        """
        theta = self.check_theta(theta)
        Ws, bs = [], []
        for m, ly in enumerate(self.layers, start=1):
            rows, cols = ly.W_shape
            block = theta[self._offsets[m - 1]:self._offsets[m]].reshape(cols + 1, rows).T
            Ws.append(block[:, :cols])
            bs.append(block[:, cols])
        return Ws, bs

    def init_params(self, seed: int | None = None) -> np.ndarray:
        """Random ``theta``: ``W^m`` normal with standard deviation ``sqrt(2 / fan_in)``, ``b^m = 0``.

        ``fan_in`` is ``h h d^m`` for a conv layer and ``n_m`` for a full layer.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)])
        >>> theta = net.init_params(seed=1)
        >>> theta.shape, net.unpack(theta)[1][0]
        ((47,), array([0., 0.]))
        """
        rng = np.random.default_rng(seed)
        Ws = [rng.standard_normal(ly.W_shape) * np.sqrt(2.0 / ly.fan_in) for ly in self.layers]
        bs = [np.zeros(ly.W_shape[0]) for ly in self.layers]
        return self.pack(Ws, bs)

    # ---------------------------------------------------------------- checks
    def check_theta(self, theta: object) -> np.ndarray:
        """``theta`` as a finite float64 vector of ``n`` entries, or a clear error.

        Examples
        --------
        >>> Network((1, 1, 1), [FullLayer(2)]).check_theta([1, 2, 3, 4])
        array([1., 2., 3., 4.])
        >>> Network((1, 1, 1), [FullLayer(2)]).check_theta(np.ones(3))
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ShapeError: theta must be a vector of n = 4 entries, got shape (3,)
        """
        if isinstance(theta, (str, bytes)) or theta is None:
            raise InputTypeError(f"theta must be a numeric vector, got {type(theta).__name__}")
        arr = np.asarray(theta)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise InputTypeError(f"theta must be a real numeric vector, got dtype {arr.dtype}")
        if arr.ndim != 1 or arr.size != self.n_params:
            raise ShapeError(f"theta must be a vector of n = {self.n_params} entries, got shape {arr.shape}")
        arr = np.asarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            k = int(np.argwhere(~np.isfinite(arr))[0, 0])
            raise NonFiniteError(f"theta must be finite, got {arr[k]} at entry {k}")
        return arr

    def check_X(self, X: object) -> np.ndarray:
        """``X`` as a finite float64 ``(d a b, l)`` matrix, or a clear error.

        Examples
        --------
        >>> Network((28, 28, 1), [FullLayer(10)]).check_X(np.zeros((783, 2)))
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ShapeError: X must have d*a*b = 784 rows, got 783
        """
        return _as_matrix("X", X, self.n_input, "d*a*b")

    def check_y(self, y: object, l: int) -> np.ndarray:
        """Labels as an int64 vector of length ``l`` with values in ``0..n_L-1``.

        Integer-valued floats and a ``(l, 1)`` or ``(1, l)`` matrix are accepted;
        anything else raises :class:`~sparsecnn.InputTypeError`,
        :class:`~sparsecnn.ShapeError` or :class:`~sparsecnn.LabelError`.

        Examples
        --------
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> net.check_y([[0], [2.0], [1]], 3)
        array([0, 2, 1])
        >>> net.check_y([0, 3], 2)
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.LabelError: y must hold labels in 0..n_L-1 = 0..2, got 3 at position 1
        """
        arr = real_numeric("y", y, "a vector of integer labels")
        if l == 0:
            raise ShapeError("l = 0: there are no instances (columns of X); f and the accuracy average over "
                             "the l instances, so l >= 1 is needed")
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
        if arr.ndim != 1 or arr.size != l:
            raise ShapeError(f"y must have one label per column of X, l = {l}, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
                raise LabelError("y must hold integer labels 0..n_L-1, got non-integer values")
        bad = (arr < 0) | (arr >= self.n_L)            # in y's own dtype: no wrap-around in a cast
        if bad.any():
            k = int(np.argmax(bad))
            value = int(arr[k]) if arr.dtype.kind in "iub" else float(arr[k])
            raise LabelError(
                f"y must hold labels in 0..n_L-1 = 0..{self.n_L - 1}, got {value:g} at position {k}"
                if isinstance(value, float) else
                f"y must hold labels in 0..n_L-1 = 0..{self.n_L - 1}, got {value} at position {k}"
            )
        return arr.astype(np.int64)

    @staticmethod
    def check_C(C: object) -> float:
        """The regularisation constant ``C > 0`` as a float (``inf`` means no regularisation).

        Examples
        --------
        >>> Network.check_C(10), Network.check_C(np.inf)
        (10.0, inf)
        >>> Network.check_C(0)
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ConfigError: C must be > 0, got 0
        """
        if isinstance(C, bool) or not isinstance(C, numbers.Real):
            raise InputTypeError(f"C must be a positive number, got {C!r}")
        value = float(C)
        if not value > 0:
            raise ConfigError(f"C must be > 0, got {C}")
        return value

    @staticmethod
    def check_batch_size(batch_size: object) -> int:
        """``batch_size`` as a positive int, or a clear error.

        Examples
        --------
        >>> Network.check_batch_size(64)
        64
        >>> Network.check_batch_size(0)
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.InputTypeError: batch_size must be a positive integer, got 0
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputTypeError(f"batch_size must be a positive integer, got {batch_size!r}")
        return int(batch_size)

    def check_winners(self, winners: object, l: int) -> dict[int, np.ndarray]:
        """Winners given from outside as ``{m: positions in vec(sigma(S^m))}``, checked.

        Each value is an integer array of shape ``(d^{m+1} a^{m+1} b^{m+1}, l)`` whose
        entry ``[o, i]`` is the column of the 1 in row ``o`` of ``P_pool^{m,i}``
        (what :func:`sparsecnn.operators.max_pool_winners` returns); ``m`` must be
        a conv layer with max pooling.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(1, h=1, r=2), FullLayer(2)])
        >>> net.check_winners({1: np.array([[5], [7], [13], [14]])}, 1)[1].ravel().tolist()
        [5, 7, 13, 14]
        >>> net.check_winners({2: np.zeros((4, 1), int)}, 1)
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ConfigError: winners: layer 2 is not a conv layer with max pooling (max-pooling layers: [1])
        """
        if winners is None:
            return {}
        if not isinstance(winners, Mapping):
            raise InputTypeError(f"winners must be a mapping {{m: array}}, got {type(winners).__name__}")
        pooling = [ly.m for ly in self.conv if ly.max_pools]
        out: dict[int, np.ndarray] = {}
        for m, w in winners.items():
            if isinstance(m, bool) or not isinstance(m, numbers.Integral) or int(m) not in pooling:
                raise ConfigError(f"winners: layer {m!r} is not a conv layer with max pooling "
                                  f"(max-pooling layers: {pooling})")
            ly = self.conv[int(m) - 1]
            arr = np.asarray(w)
            if arr.ndim != 2 or arr.shape != (ly.n_out, l):
                raise ShapeError(f"winners of layer {m} must have shape (d^{m + 1} a^{m + 1} b^{m + 1}, l) = "
                                 f"({ly.n_out}, {l}), got {arr.shape}")
            out[int(m)] = np.asarray(_check_winners(arr, ly.a_conv, ly.b_conv, ly.d_out, ly.spec.r))
        return out

    def keep(self, plan: Plan | None = None, pool_backward: str | None = None, *, fastest: bool = False) -> Keep:
        """What a forward pass keeps (:class:`sparsecnn.engine.Keep`): the plan's choice, or everything
        (``dxi/dS^m`` by ``pool_backward``, default the network's); ``fastest``: without a plan or
        ``pool_backward``, the fastest exact plan (:meth:`auto_plan`).

        Examples
        --------
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> sorted(net.keep().retained), net.keep(fastest=True).windowed
        (['S1', 'S2', 'Z1', 'Z2', 'Z3', 'phi1', 'pool1'], frozenset({1}))
        """
        if plan is not None:
            if pool_backward is not None:
                raise ConfigError("pool_backward cannot be combined with a plan: the plan chooses between "
                                  "equations (5) and (6)")
            return Keep.from_plan(self, plan, windowed=self.backend.windowed)
        if fastest and pool_backward is None:
            auto = self.auto_plan()
            if auto is not None:
                return Keep.from_plan(self, auto, windowed=True)
        return Keep.everything(self, pool_backward or self.pool_backward)

    # ---------------------------------------------------------------- public
    def _batches(self, l: int, batch_size: int) -> Iterator[slice]:
        return engine.batches(l, batch_size)

    def output(self, theta: np.ndarray, X: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE,
               dtype: object = None) -> np.ndarray:
        """The network's output ``z^{L+1}``, shape ``(n_L, l)``, one column per instance (float64).

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
        batch_size : int
            Instances per forward pass.
        dtype : {"float64", "float32"}, optional
            The products' float type for this call (default: the network's).

        Examples
        --------
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> net.output(np.zeros(15), np.ones((4, 2)))
        array([[0., 0.],
               [0., 0.],
               [0., 0.]])
        """
        dt = self.resolve_dtype(dtype)
        Ws, bs = self.params(theta, dt)
        X = self.check_X(X)
        batch_size = self.check_batch_size(batch_size)
        work = self._work()
        keep = Keep.nothing(self, windowed=self.backend.windowed)
        out = np.empty((self.n_L, X.shape[1]))
        with blas_serial():
            for sl in self._batches(X.shape[1], batch_size):
                out[:, sl], _ = engine.forward(self, self.backend, keep, Ws, bs, self._batch(X, sl, dt, work),
                                               work=work)
        return out

    def predict(self, theta: np.ndarray, X: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE,
                dtype: object = None) -> np.ndarray:
        """Predicted labels ``argmax_k z^{L+1,i}_k``, shape ``(l,)`` (ties to the smallest ``k``).

        ``X`` is ``(d^1 a^1 b^1, l)``; the arguments are those of :meth:`output`.

        Examples
        --------
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> theta = net.pack([np.zeros((3, 4))], [np.array([0., 2., 1.])])
        >>> net.predict(theta, np.ones((4, 2)))
        array([1, 1])
        """
        return self.output(theta, X, batch_size=batch_size, dtype=dtype).argmax(axis=0)

    def forward(self, theta: np.ndarray, X: np.ndarray, *, plan: Plan | str | float | None = None,
                dtype: object = None, winners: Mapping[int, np.ndarray] | None = None) -> ForwardCache:
        """Forward pass over all of ``X`` at once, keeping what the backward pass reads.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
        plan : Plan, policy name or byte budget, optional
            What to keep (see :meth:`plan`); ``None`` keeps everything:
            ``Z{m}`` (``Z1 = X``), ``phi{m}``, ``S{m}`` and the winners ``pool{m}``.
        dtype : {"float64", "float32"}, optional
            The products' float type (default: the network's); :meth:`backward`
            follows it.
        winners : dict of int to ndarray, optional
            ``{m: positions in vec(sigma(S^m))}``, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)``:
            ``P_pool^{m,i}`` is built from these instead of the argmax (see
            :meth:`check_winners`); for instance PyTorch's, so both sides use one matrix.

        Returns
        -------
        ForwardCache
            Pass it to :meth:`backward`.  With a plan it holds
            ``plan.bytes_per_instance * l`` bytes, and ``X`` by reference when
            the plan rebuilds quantities from it.

        Examples
        --------
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((36, 4))
        >>> cache = net.forward(theta, X, plan="min-memory")
        >>> sorted(cache.kept), cache.nbytes == cache.plan.bytes_per_instance * 4
        (['Z2', 'Z3', 'pool1'], True)
        >>> np.allclose(net.backward(cache, [0, 1, 2, 0])[1], net.objective(theta, X, [0, 1, 2, 0])[1])
        True
        """
        theta = self.check_theta(theta)
        dt = self.resolve_dtype(dtype)
        Ws, bs = self.params(theta, dt)
        X = np.ascontiguousarray(self.check_X(X), dtype=dt)
        given = self.check_winners(winners, X.shape[1])
        the_plan = self.resolve_plan(plan)
        keep = self.keep(the_plan, None)
        with blas_serial():
            out, kept = engine.forward(self, self.backend, keep, Ws, bs, X, winners=given)
        return ForwardCache(theta, Ws, bs, out, kept, the_plan, X if keep.reads_X else None, keep)

    def backward(self, cache: ForwardCache, y: np.ndarray, C: float = np.inf, *,
                 pool_backward: str | None = None) -> tuple[float, np.ndarray]:
        """Finish :meth:`objective` from a :class:`ForwardCache`: returns ``(f, grad)``.

        ``y`` holds ``l`` labels; ``grad`` has shape ``(n,)``.  The backward pass
        follows ``cache.plan`` when the cache has one (``pool_backward`` then must
        be ``None``: the plan chose the equations), in the cache's dtype.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((16, 3))
        >>> f, g = net.backward(net.forward(theta, X), [0, 1, 2], C=10.0)
        >>> bool(np.isclose(f, net.objective(theta, X, [0, 1, 2], C=10.0)[0])), g.shape
        (True, (47,))
        """
        C = self.check_C(C)
        labels = self.check_y(y, cache.l)
        keep = self.keep(cache.plan, pool_backward)
        if cache.plan is None and pool_backward is None and cache.keep is not None:
            keep = cache.keep
        xi_sum, dZ = self.loss.batch(cache.output, labels, cache.l)
        X = cache.X if cache.X is not None else cache.kept.get("Z1")
        with blas_serial():
            dWs, dbs = engine.backward(self, self.backend, keep, cache.Ws, cache.bs, X, cache.kept, dZ)
        return objective.finish(cache.theta, C, xi_sum, cache.l, self.pack(dWs, dbs))

    def plan(self, policy: str | float = "slides") -> Plan:
        """What to keep between the forward and the backward pass, and how to rebuild the rest.

        Parameters
        ----------
        policy : {"store-all", "slides", "min-memory"} or float
            A named policy or a byte budget per instance (see
            :mod:`sparsecnn.planner.plan`).

        Returns
        -------
        Plan
            With ``retained``, ``bytes_per_instance``,
            ``recompute_flops_per_instance``, ``graph``, ``explain()``,
            ``draw()`` and ``to_dot()``.

        Raises
        ------
        BudgetError
            A budget below the smallest feasible one; the message names it.

        Examples
        --------
        >>> net = Network((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2),
        ...                             ConvLayer(64, h=3, p=1, r=2), FullLayer(10)])
        >>> net.plan("min-memory").retained
        ('pool1', 'Z2', 'pool2', 'Z3', 'pool3', 'Z4', 'Z5')
        >>> net.plan("min-memory").bytes_per_instance, net.plan("store-all").bytes_per_instance
        (89936, 1250256)
        """
        return make_plan(self, policy)

    def auto_plan(self) -> Plan | None:
        """The fastest exact plan: ``plan("slides")`` where it lets some conv layer run window by
        window (fast backend), else ``None`` (store-all).

        Examples
        --------
        >>> Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)]).auto_plan().policy
        'slides'
        >>> Network((6, 6, 1), [ConvLayer(2, h=3, r=2, pool="avg"), FullLayer(3)]).auto_plan() is None
        True
        >>> Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)], backend="reference").auto_plan() is None
        True
        """
        if not self.backend.windowed or not any(ly.windowed for ly in self.conv):
            return None
        slides = self.plan("slides")
        return slides if Keep.from_plan(self, slides, windowed=True).windowed else None

    def resolve_plan(self, plan: object) -> Plan | None:
        """``plan`` as a :class:`Plan` of this network (a policy or budget is planned here; ``None`` stays).

        Examples
        --------
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)])
        >>> net.resolve_plan("min-memory").retained, net.resolve_plan(None)
        (('pool1', 'Z2', 'Z3'), None)
        """
        if plan is None:
            return None
        if not isinstance(plan, Plan):
            return self.plan(plan)  # type: ignore[arg-type]
        if plan.network is not self and (
            plan.network.input_shape != self.input_shape
            or [ly.spec for ly in plan.network.layers] != [ly.spec for ly in self.layers]
        ):
            raise ConfigError(f"the plan was made for {plan.network!r}, not for {self!r}")
        return plan

    # ------------------------------------------------------ dtype and buffers
    def resolve_dtype(self, dtype: object) -> np.dtype:
        """The products' float type for one call: ``dtype``, or the network's where ``None``.

        Examples
        --------
        >>> net = Network((1, 1, 1), [FullLayer(2)], dtype="float32")
        >>> net.resolve_dtype(None), net.resolve_dtype("float64")
        (dtype('float32'), dtype('float64'))
        """
        return self.dtype if dtype is None else _check_dtype(dtype)

    def params(self, theta: np.ndarray, dtype: np.dtype) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``W^m``, ``b^m`` from ``theta`` (checked), in ``dtype`` (lists at index ``m - 1``).

        Examples
        --------
        >>> Ws, bs = Network((1, 1, 1), [FullLayer(2)]).params(np.arange(4.0), np.dtype("float32"))
        >>> Ws[0].dtype, bs[0]
        (dtype('float32'), array([2., 3.], dtype=float32))
        """
        Ws, bs = self.unpack(theta)
        if dtype != np.float64:
            Ws = [np.ascontiguousarray(W, dtype=dtype) for W in Ws]
            bs = [np.ascontiguousarray(b, dtype=dtype) for b in bs]
        return Ws, bs

    def _work(self) -> Workspace | None:
        """The network's workspace, or a fresh one when buffers are not kept between calls
        (``None`` for the reference backend, which uses no work arrays)."""
        if self.backend.name == "reference":
            return None
        return self._workspace if self.reuse_buffers else Workspace()

    @staticmethod
    def _batch(X: np.ndarray, sl: slice, dtype: np.dtype, work: Workspace | None) -> np.ndarray:
        """Columns ``sl`` of ``X`` as a C-contiguous batch in ``dtype``, in ``work``'s array ``"X"``."""
        if work is None:
            return np.ascontiguousarray(X[:, sl], dtype=dtype)
        Xb = work.get("X", (X.shape[0], sl.stop - sl.start), dtype)
        np.copyto(Xb, X[:, sl])
        return Xb

    def release_buffers(self) -> None:
        """Free the work arrays that :meth:`objective` and :meth:`output` keep between calls
        (those of the calling thread), and the kernels' own (:func:`sparsecnn.kernels.release_scratch`).

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> _ = net.output(net.init_params(seed=0), np.ones((16, 5)))
        >>> net.buffer_bytes > 0
        True
        >>> net.release_buffers(); net.buffer_bytes
        0
        """
        self._workspace.release()
        release_scratch()

    @property
    def buffer_bytes(self) -> int:
        """Bytes of work arrays kept between calls (calling thread; see ``reuse_buffers``)."""
        return self._workspace.nbytes

    def objective(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, C: float = np.inf, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, pool_backward: str | None = None,
                  plan: Plan | str | float | None = None, dtype: object = None,
                  winners: Mapping[int, np.ndarray] | None = None) -> tuple[float, np.ndarray]:
        """``f(theta)`` and its gradient, batch by batch.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
            One instance per column, ``vec(Z^{1,i})``.
        y : integer ndarray, shape ``(l,)``
            Labels in ``0..n_L-1``.
        C : float, default inf
            Regularisation: ``f = theta^T theta/(2C) + (1/l) sum_i xi_i``.
        batch_size : int
            Instances per forward/backward pass; bounds the memory.
        pool_backward : {"auto", "eq5", "eq6"}, optional
            Overrides the network's choice for this call (not with a plan).
        plan : Plan, policy name or byte budget, optional
            Each batch keeps what the plan retains and the backward pass
            rebuilds the rest (see :meth:`plan`); ``None``: the fastest exact
            path, :meth:`auto_plan` (conv layers with max pooling run window by
            window on the fast backend), or everything where none applies or
            ``pool_backward`` is given.
        dtype : {"float64", "float32"}, optional
            The products' float type for this call (default: the network's).
            ``f`` and the gradient are summed over batches in float64.
        winners : dict of int to ndarray, optional
            Max-pooling winners given from outside, as for :meth:`forward`
            (one column per column of ``X``).

        Returns
        -------
        f : float
        grad : ndarray, shape ``(n,)``, in the order of ``theta``.

        Examples
        --------
        >>> net = Network((2, 2, 1), [FullLayer(3)])
        >>> f, g = net.objective(np.zeros(15), np.ones((4, 2)), [0, 2], C=1.0)
        >>> f
        1.0
        """
        theta = self.check_theta(theta)
        dt = self.resolve_dtype(dtype)
        Ws, bs = self.params(theta, dt)
        X = self.check_X(X)
        C = self.check_C(C)
        batch_size = self.check_batch_size(batch_size)
        l = X.shape[1]
        labels = self.check_y(y, l)
        given = self.check_winners(winners, l)
        keep = self.keep(self.resolve_plan(plan), pool_backward, fastest=True)
        work = self._work()
        xi_sum = 0.0
        grad = np.zeros(self.n_params)
        be = self.backend
        with blas_serial():
            for sl in self._batches(l, batch_size):
                Xb = self._batch(X, sl, dt, work)
                out, kept = engine.forward(self, be, keep, Ws, bs, Xb, work=work,
                                           winners={m: w[:, sl] for m, w in given.items()})
                xi_b, dZ = self.loss.batch(out, labels[sl], l)        # sum_i xi_i, (1/l) dxi/dz^{L+1}
                xi_sum += xi_b
                dWs, dbs = engine.backward(self, be, keep, Ws, bs, Xb, kept, dZ, work=work)
                grad += self.pack(dWs, dbs)
        return objective.finish(theta, C, xi_sum, l, grad)

    # ---------------------------------------------------------- construction
    @classmethod
    def from_simplenn_config(cls, path: str | os.PathLike[str], **kwargs: object) -> Network:
        """Build the network described by a simpleNN configuration file.

        See :func:`sparsecnn.config.read_simplenn_config` for the format;
        ``kwargs`` (``backend=``, ``dtype=``, ...) go to :class:`Network`.

        Examples
        --------
        A round trip through the text :func:`sparsecnn.config.to_simplenn_config` writes:

        >>> import pathlib, tempfile
        >>> from sparsecnn.config import to_simplenn_config
        >>> net = Network((8, 8, 1), [ConvLayer(4, h=3, p=1, r=2), FullLayer(10)])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "net.config"
        ...     _ = path.write_text(to_simplenn_config(net))
        ...     back = Network.from_simplenn_config(path)
        >>> back
        Network(input_shape=(8, 8, 1), layers=[ConvLayer(d_out=4, h=3, s=1, p=1, r=2, activation='relu', pool='max'), FullLayer(n_out=10, activation=None)])
        >>> back.n_params == net.n_params
        True
        """
        return cls.from_config_dict(config.read_simplenn_config(path), os.fspath(path), **kwargs)

    @classmethod
    def from_config_dict(cls, cfg: dict[str, Any], source: str = "<config>", **kwargs: object) -> Network:
        """Build the network a checked configuration dict describes.

        ``cfg`` is what :func:`sparsecnn.config.parse_simplenn_config` returns;
        the memory the network would need is checked against the size limits
        (:func:`sparsecnn.config.set_limits`) before anything is built, and
        ``source`` starts every error message.

        Examples
        --------
        >>> from sparsecnn.config import parse_simplenn_config
        >>> cfg = parse_simplenn_config(
        ...     "L = 2;\\nLC = 1;\\nLF = 1;\\nwd_input = 6;\\nht_input = 6;\\nch_input = [1,2];\\n"
        ...     "wd_pad_added = [1];\\nwd_filter = [3];\\nstrides = [1];\\nwd_subimage_pool = [2];\\n"
        ...     "full_neurons = [3];")
        >>> print(Network.from_config_dict(cfg).summary())
        m  kind  input (a x b x d)  W^m     output
        1  conv  6 x 6 x 1          2 x 9   3 x 3 x 2
        2  full  18                 3 x 18  3
        """
        input_shape, layers = config.layers_from_config_dict(cfg, source)
        try:
            return cls(input_shape, layers, **kwargs)  # type: ignore[arg-type]
        except ArchitectureError as e:
            raise ArchitectureError(f"{source}: {e}") from None

    # ------------------------------------------------- second order (delegates)
    def Jv(self, theta: np.ndarray, X: np.ndarray, v: np.ndarray, *, dtype: object = None) -> np.ndarray:
        """``J^i v`` for every instance, shape ``(n_L, l)`` (R-operator forward pass).

        ``theta`` and ``v`` have shape ``(n,)`` (``v`` in the order of ``theta``),
        ``X`` shape ``(d^1 a^1 b^1, l)``.  See :mod:`sparsecnn.second_order`.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((16, 2))
        >>> v = np.random.default_rng(1).standard_normal(net.n_params)
        >>> eps = 1e-6                                     # a directional difference agrees
        >>> fd = (net.output(theta + eps * v, X) - net.output(theta - eps * v, X)) / (2 * eps)
        >>> bool(np.allclose(net.Jv(theta, X, v), fd, atol=1e-6))
        True
        """
        return second_order.net_Jv(self, theta, X, v, dtype=dtype)

    def JTv(self, theta: np.ndarray, X: np.ndarray, u: np.ndarray, *, dtype: object = None) -> np.ndarray:
        """``sum_i (J^i)^T u_i`` for ``u`` of shape ``(n_L, l)``; shape ``(n,)`` (backward pass).

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((16, 2))
        >>> u, v = np.ones((3, 2)), np.random.default_rng(1).standard_normal(net.n_params)
        >>> bool(np.isclose(net.JTv(theta, X, u) @ v, np.sum(u * net.Jv(theta, X, v))))
        True
        """
        return second_order.net_JTv(self, theta, X, u, dtype=dtype)

    def gauss_newton(self, theta: np.ndarray, X: np.ndarray, *, jacobian: str = "recompute",
                     dtype: object = None):
        """``G = (1/l) sum_i (J^i)^T B^i J^i`` (``n x n``) as a ``scipy.sparse.linalg.LinearOperator``.

        ``B^i`` is the Hessian of ``xi`` in ``z^{L+1,i}`` for the network's loss:
        ``2I`` for the squared loss, ``diag(p_i) - p_i p_i^T`` with ``p_i =
        softmax(z^{L+1,i})`` for cross-entropy.  ``jacobian="store"`` keeps ``dz^{L+1}/dS^m`` per instance (simpleNN's choice).
        See :class:`sparsecnn.second_order.GaussNewton`.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((16, 2))
        >>> G, v = net.gauss_newton(theta, X), np.ones(net.n_params)
        >>> bool(np.isclose(v @ (G @ v), 2 / 2 * np.sum(net.Jv(theta, X, v) ** 2)))
        True
        """
        return second_order.gauss_newton(self, theta, X, jacobian=jacobian, dtype=dtype)
