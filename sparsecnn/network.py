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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .exceptions import (
    ConfigError,
    InputTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)
from .kernels import Workspace, blas_serial, release_scratch
from .layers import ACTIVATE_ORDERS, POOL_BACKWARDS, ConvLayer, ConvShape, FullLayer, FullShape

if TYPE_CHECKING:  # pragma: no cover
    from .planner import Plan

__all__ = ["Network", "ForwardCache", "DEFAULT_BATCH_SIZE", "DTYPES"]

DTYPES = ("float64", "float32")
"""The float types the products can run in (``Network(dtype=...)`` and each method's ``dtype=``)."""

DEFAULT_BATCH_SIZE = 1024
"""Instances per batch in :meth:`Network.objective` and :meth:`Network.output`."""


def check_finite(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` if every entry is finite, else a NonFiniteError naming ``name`` and the first bad entry.

    Examples
    --------
    >>> check_finite("v", np.array([1.0, np.nan]))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.NonFiniteError: v must be finite, got nan at entry 1
    """
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = int(bad[0]) if arr.ndim == 1 else tuple(int(i) for i in bad)
        raise NonFiniteError(f"{name} must be finite, got {arr[tuple(bad)]} at entry {where}")
    return arr


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


def _reads_X(plan: Plan) -> bool:
    """Whether the backward pass of ``plan`` rebuilds something from ``Z^1 = X``."""
    return any("Z1" in plan.recipe(n).inputs for n in plan.recipes)


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
        plan, everything (store-all, winners as positions in ``vec(sigma(S^m))``);
        with a plan, exactly ``plan.retained`` at the planned dtypes (winners as
        offsets inside their window, ``sigma'(S^m)`` as ``bool`` for ReLU).
    plan : Plan or None
        The plan the forward pass followed (:meth:`Network.plan`).
    X : ndarray or None
        The input, held by reference when a plan rebuilds quantities from it
        (not counted in :attr:`nbytes`: the caller holds it).

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
                 activate_order: str = "pool-first", reuse_buffers: bool = True) -> None:
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
        return f"Network(input_shape={self.input_shape}, layers=[{specs}])"

    def replace(self, **options: object) -> Network:
        """The same layers with other constructor options (``pool_backward``, ``dtype``,
        ``activate_order``, ``reuse_buffers``); the parameter layout is unchanged.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)])
        >>> slides = net.replace(activate_order="slides", dtype="float32")
        >>> slides.activate_order, slides.dtype, slides.n_params == net.n_params
        ('slides', dtype('float32'), True)
        """
        kw: dict[str, object] = {"pool_backward": self.pool_backward, "dtype": self.dtype,
                                 "activate_order": self.activate_order, "reuse_buffers": self.reuse_buffers}
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
        theta = self._check_theta(theta)
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
    def _check_theta(self, theta: object) -> np.ndarray:
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
        if isinstance(y, (str, bytes)) or y is None:
            raise InputTypeError(f"y must be a vector of integer labels, got {type(y).__name__}")
        arr = np.asarray(y)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InputTypeError(f"y must be a vector of integer labels, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise InputTypeError(f"y must be a vector of real integer labels, got dtype {arr.dtype}")
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

    def _check_batch_size(self, batch_size: object) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputTypeError(f"batch_size must be a positive integer, got {batch_size!r}")
        return int(batch_size)

    def _pool_mode_check(self, pool_backward: str | None) -> None:
        """Check ``pool_backward`` against every conv layer before any work is done."""
        for ly in self.conv:
            self._pool_mode(ly, pool_backward)

    def _pool_mode(self, ly: ConvShape, pool_backward: str | None) -> str:
        mode = pool_backward or self.pool_backward
        if mode not in POOL_BACKWARDS:
            raise ConfigError(f"pool_backward must be one of {POOL_BACKWARDS}, got {mode!r}")
        if mode == "auto":
            return "eq6" if ly.eq6_valid else "eq5"
        if mode == "eq6" and not ly.eq6_valid:
            raise ConfigError(
                f"conv layer {ly.m}: equation (6) needs sigma'(S^{ly.m}) to follow from Z^{ly.m + 1}, "
                f"which does not hold for activation {ly.sigma.name!r} with {ly.spec.pool} pooling"
            )
        return mode

    # --------------------------------------------------------- forward pass
    def _forward(self, Ws: list[np.ndarray], bs: list[np.ndarray], X: np.ndarray,
                 keep: bool = True, plan: Plan | None = None, work: Workspace | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Forward pass for one batch; returns ``z^{L+1}`` and the kept quantities.

        Without a plan, ``keep=True`` keeps everything (store-all): ``Z{m}``
        for ``m = 1..L+1`` (``Z1`` is ``X``), ``phi{m}``, ``S{m}`` and the
        winners ``pool{m}`` (positions, as from ``ConvShape.winners``).  With a
        plan (:meth:`plan`), exactly ``plan.retained`` at the planned dtypes
        (see :mod:`sparsecnn.planner.execute`).  The products run in ``X``'s
        float dtype (``Ws`` and ``bs`` should have it too).  With ``work``,
        ``phi{m}`` and ``S{m}`` are written into its arrays, valid until the
        next pass that uses the same workspace.
        """
        if plan is not None and keep:
            from .planner.execute import forward_planned

            return forward_planned(self, plan, Ws, bs, X, work)
        kept: dict[str, np.ndarray] = {}
        Z = X
        dtype, l = X.dtype, X.shape[1]
        for ly in self.conv:
            m = ly.m
            out_phi = out_S = None
            if work is not None:
                out_phi = work.get(f"phi{m}", (ly.hhd * ly.n_pos, l), dtype) if keep else None
                # not kept: one S array for the layers, the other one where Z^m is the last S itself
                out_S = work.get(f"S{m}" if keep else work.apart_from(Z, "S", "S'"), (ly.n_S, l), dtype)
            # vec(phi(pad(Z^m))) = P_phi P_pad vec(Z^m) and S^m = W^m phi(pad(Z^m)) + b^m 1^T, one sweep
            # (phi held whole only when kept for the backward pass)
            Phi, S = ly.conv_forward(Z, Ws[m - 1], bs[m - 1], out_phi=out_phi, out_S=out_S, keep_phi=keep)
            # vec(Z^{m+1}) = P_pool vec(sigma(S^m)); P_pool (the winners) chosen by the data
            Znext, winners = ly.activate_pool(S, order=self.activate_order)
            if keep:
                assert Phi is not None
                kept[f"Z{m}"], kept[f"phi{m}"], kept[f"S{m}"] = Z, Phi, S
                if winners is not None:
                    kept[f"pool{m}"] = winners
            Z = Znext
        for fl in self.full:
            m = fl.m
            s = fl.s(Ws[m - 1], bs[m - 1], Z)                 # s^m = W^m z^m + b^m
            if keep:
                kept[f"Z{m}"], kept[f"S{m}"] = Z, s
            Z = fl.sigma.sigma(s)                             # z^{m+1} = sigma(s^m)
        if keep:
            kept[f"Z{self.L + 1}"] = Z
        return Z, kept

    # -------------------------------------------------------- backward pass
    def _backward(self, Ws: list[np.ndarray], kept: dict[str, np.ndarray], dZ: np.ndarray,
                  pool_backward: str | None = None, *, plan: Plan | None = None,
                  bs: list[np.ndarray] | None = None, X: np.ndarray | None = None,
                  work: Workspace | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Backward pass for one batch from ``dZ = dxi/dz^{L+1}`` (one column per instance).

        Returns the gradients of ``sum_i`` (column ``i`` of ``dZ``)``^T z^{L+1,i}``
        with respect to each ``W^m`` and ``b^m``.  Without a plan ``kept`` is a
        store-all dict from :meth:`_forward`; with one, it is what the planned
        forward pass kept, and ``X`` (and ``bs``, where the plan recomputes
        ``S^m`` by a GEMM) let the backward pass rebuild the rest.  The products
        run in ``dZ``'s float dtype; ``work`` holds ``dxi/dS^m`` and ``dxi/dZ^m``.
        """
        if plan is not None:
            from .planner.execute import backward_planned

            return backward_planned(self, plan, Ws, bs, X, kept, dZ, work)
        dWs: list[np.ndarray] = [np.empty(0)] * self.L
        dbs: list[np.ndarray] = [np.empty(0)] * self.L
        dtype, l = dZ.dtype, dZ.shape[1]
        for fl in reversed(self.full):
            m = fl.m
            ds = fl.sigma.backprop(dZ, kept[f"S{m}"])        # (4): dxi/dz^{m+1} ⊙ sigma'(s^m)
            dWs[m - 1], dbs[m - 1], dZ = fl.s_T(Ws[m - 1], kept[f"Z{m}"], ds)   # (1)-(3)
        for ly in reversed(self.conv):
            m = ly.m
            mode = self._pool_mode(ly, pool_backward)
            winners = kept.get(f"pool{m}")
            out_dS, out_dZ = ly._backward_arrays(work, l, dtype)
            if mode == "eq6" and ly.sigma.dsigma_from_output is not None:
                # (6): (dxi/dvec(Z^{m+1})^T ⊙ vec(sigma'(S^m) read from Z^{m+1})^T) P_pool
                dS = ly.pool_T(ly.sigma.backprop_from_output(dZ, kept[f"Z{m + 1}"]), winners, out=out_dS)
            else:
                # (7) then (5): (dxi/dvec(Z^{m+1})^T P_pool) ⊙ vec(sigma'(S^m))^T
                dS = ly.sigma.backprop(ly.pool_T(dZ, winners, out=out_dS), kept[f"S{m}"])
            # dxi/dW^m = dxi/dS^m phi^T, dxi/db^m = dxi/dS^m 1, and (m > 1)
            # vec(dxi/dZ^m) = P_pad^T P_phi^T vec((W^m)^T dxi/dS^m), one sweep
            dWs[m - 1], dbs[m - 1], dZn = ly.conv_backward(Ws[m - 1], kept[f"phi{m}"], dS,
                                                           need_dZ=m > 1, out=out_dZ)
            if dZn is not None:
                dZ = dZn
        return dWs, dbs

    # ---------------------------------------------------------------- public
    def _batches(self, l: int, batch_size: int) -> Iterator[slice]:
        for start in range(0, l, batch_size):
            yield slice(start, min(start + batch_size, l))

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
        dt = self._resolve_dtype(dtype)
        Ws, bs = self._params(theta, dt)
        X = self.check_X(X)
        batch_size = self._check_batch_size(batch_size)
        work = self._work()
        out = np.empty((self.n_L, X.shape[1]))
        with blas_serial():
            for sl in self._batches(X.shape[1], batch_size):
                out[:, sl], _ = self._forward(Ws, bs, self._batch(X, sl, dt, work), keep=False, work=work)
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
                dtype: object = None) -> ForwardCache:
        """Forward pass over all of ``X`` at once, keeping what the backward pass reads.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
        plan : Plan, policy name or byte budget, optional
            What to keep (see :meth:`plan`); ``None`` keeps everything, with
            winners as positions (the store-all dict of :meth:`_forward`).
        dtype : {"float64", "float32"}, optional
            The products' float type (default: the network's); :meth:`backward`
            follows it.

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
        theta = self._check_theta(theta)
        dt = self._resolve_dtype(dtype)
        Ws, bs = self._params(theta, dt)
        X = np.ascontiguousarray(self.check_X(X), dtype=dt)
        the_plan = self._resolve_plan(plan)
        with blas_serial():
            out, kept = self._forward(Ws, bs, X, plan=the_plan)
        if the_plan is None:
            return ForwardCache(theta, Ws, bs, out, kept)
        return ForwardCache(theta, Ws, bs, out, kept, the_plan, X if _reads_X(the_plan) else None)

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
        f_sum, dZ = self._loss(cache.output, labels, cache.l)
        if cache.plan is not None and pool_backward is not None:
            raise ConfigError("pool_backward cannot be combined with a plan: the plan chooses between "
                              "equations (5) and (6)")
        with blas_serial():
            dWs, dbs = self._backward(cache.Ws, cache.kept, dZ, pool_backward, plan=cache.plan, bs=cache.bs,
                                      X=cache.X)
        return self._finish(cache.theta, C, f_sum, cache.l, self.pack(dWs, dbs))

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
        from .planner import make_plan

        return make_plan(self, policy)

    def _resolve_plan(self, plan: object) -> Plan | None:
        """``plan`` as a :class:`Plan` of this network (a policy or budget is planned here)."""
        from .planner import Plan

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

    def _loss(self, out: np.ndarray, labels: np.ndarray, l_total: int) -> tuple[float, np.ndarray]:
        """Squared loss of a batch: ``sum_i xi_i`` (summed in float64) and
        ``dZ = (1/l) dxi/dz^{L+1}`` (in ``out``'s dtype)."""
        diff = np.array(out, dtype=np.float64)
        diff[labels, np.arange(labels.size)] -= 1.0                  # z^{L+1,i} - y^i
        dZ = (2.0 / l_total) * diff
        return float(np.einsum("ij,ij->", diff, diff)), dZ.astype(out.dtype, copy=False)

    # ------------------------------------------------------ dtype and buffers
    def _resolve_dtype(self, dtype: object) -> np.dtype:
        return self.dtype if dtype is None else _check_dtype(dtype)

    def _params(self, theta: np.ndarray, dtype: np.dtype) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``W^m``, ``b^m`` from ``theta`` (checked), in ``dtype``."""
        Ws, bs = self.unpack(theta)
        if dtype != np.float64:
            Ws = [np.ascontiguousarray(W, dtype=dtype) for W in Ws]
            bs = [np.ascontiguousarray(b, dtype=dtype) for b in bs]
        return Ws, bs

    def _work(self) -> Workspace:
        """The network's workspace, or a fresh one when buffers are not kept between calls."""
        return self._workspace if self.reuse_buffers else Workspace()

    @staticmethod
    def _batch(X: np.ndarray, sl: slice, dtype: np.dtype, work: Workspace) -> np.ndarray:
        """Columns ``sl`` of ``X`` as a C-contiguous batch in ``dtype``, in ``work``'s array ``"X"``."""
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

    def _finish(self, theta: np.ndarray, C: float, f_sum: float, l: int, grad_loss: np.ndarray
                ) -> tuple[float, np.ndarray]:
        f = float(theta @ theta) / (2.0 * C) + f_sum / l
        return f, theta / C + grad_loss

    def objective(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, C: float = np.inf, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, pool_backward: str | None = None,
                  plan: Plan | str | float | None = None, dtype: object = None
                  ) -> tuple[float, np.ndarray]:
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
            rebuilds the rest (see :meth:`plan`); ``None`` keeps everything.
        dtype : {"float64", "float32"}, optional
            The products' float type for this call (default: the network's).
            ``f`` and the gradient are summed over batches in float64.

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
        theta = self._check_theta(theta)
        dt = self._resolve_dtype(dtype)
        Ws, bs = self._params(theta, dt)
        X = self.check_X(X)
        C = self.check_C(C)
        batch_size = self._check_batch_size(batch_size)
        l = X.shape[1]
        labels = self.check_y(y, l)
        the_plan = self._resolve_plan(plan)
        if the_plan is not None and pool_backward is not None:
            raise ConfigError("pool_backward cannot be combined with a plan: the plan chooses between "
                              "equations (5) and (6)")
        self._pool_mode_check(pool_backward)
        work = self._work()
        f_sum = 0.0
        grad = np.zeros(self.n_params)
        with blas_serial():
            for sl in self._batches(l, batch_size):
                Xb = self._batch(X, sl, dt, work)
                out, kept = self._forward(Ws, bs, Xb, plan=the_plan, work=work)
                fb, dZ = self._loss(out, labels[sl], l)
                f_sum += fb
                dWs, dbs = self._backward(Ws, kept, dZ, pool_backward, plan=the_plan, bs=bs, X=Xb, work=work)
                grad += self.pack(dWs, dbs)
        return self._finish(theta, C, f_sum, l, grad)

    # ---------------------------------------------------------- construction
    @classmethod
    def from_simplenn_config(cls, path: str | os.PathLike[str]) -> Network:
        """Build the network described by a simpleNN configuration file.

        See :func:`sparsecnn.config.read_simplenn_config` for the format.

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
        from .config import network_from_simplenn_config

        return network_from_simplenn_config(path)

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
        from .second_order import net_Jv

        return net_Jv(self, theta, X, v, dtype=dtype)

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
        from .second_order import net_JTv

        return net_JTv(self, theta, X, u, dtype=dtype)

    def gauss_newton(self, theta: np.ndarray, X: np.ndarray, *, jacobian: str = "recompute",
                     dtype: object = None):
        """``G = (1/l) sum_i (J^i)^T 2I J^i`` (``n x n``) as a ``scipy.sparse.linalg.LinearOperator``.

        ``jacobian="store"`` keeps ``dz^{L+1}/dS^m`` per instance (simpleNN's choice).
        See :class:`sparsecnn.second_order.GaussNewton`.

        Examples
        --------
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> theta, X = net.init_params(seed=0), np.random.default_rng(0).random((16, 2))
        >>> G, v = net.gauss_newton(theta, X), np.ones(net.n_params)
        >>> bool(np.isclose(v @ (G @ v), 2 / 2 * np.sum(net.Jv(theta, X, v) ** 2)))
        True
        """
        from .second_order import gauss_newton

        return gauss_newton(self, theta, X, jacobian=jacobian, dtype=dtype)
