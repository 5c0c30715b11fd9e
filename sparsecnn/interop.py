"""PyTorch interop: models, parameters, images and max-pooling winners in both layouts.

PyTorch is imported inside the functions that need it, so ``import sparsecnn``
never needs it; without it those functions raise :class:`TorchNotAvailableError`
(an :class:`ImportError`) saying ``pip install torch==2.13.0``.

The permutations between PyTorch's layouts and NOTATION.md's (0-based indices,
``a, b, d`` = height, width, channels of the image at hand):

- batch of images: PyTorch ``x[i, c, r, q]`` (NCHW) is ``X[c + d*(r + a*q), i]``;
  column ``i`` of ``X`` is ``vec(Z^{1,i})`` (:func:`X_to_torch`, :func:`X_from_torch`);
- conv filters: PyTorch ``weight[o, c, r, q]`` (OIHW) is ``W^m[o, r + h*q + h*h*c]``;
  conv biases ``bias[o]`` are ``b^m[o]``;
- flatten: PyTorch's ``torch.flatten(x[i])`` holds channel ``c`` of pixel
  ``(r, q)`` at ``c*a*b + r*b + q`` (row-major), ``vec(Z^{L^C+1,i})`` at
  ``c + d*(r + a*q)``; so the first ``Linear`` has
  ``weight[k, c*a*b + r*b + q] = W^{L^C+1}[k, c + d*(r + a*q)]``
  (:func:`flatten_permutation`); other ``Linear`` layers are ``W^m`` and ``b^m`` as they are;
- max-pool indices: PyTorch's ``indices[i, c, r_out, q_out] = r*b_conv + q``
  (flat within the channel) is ``winners[c + d*(r_out + a_out*q_out), i] =
  c + d*(r + a_conv*q)``, the position in ``vec(sigma(S^{m,i}))``
  (:func:`torch_pool_indices_to_winners`).

A network maps to an ``nn.Sequential`` with, for each convolutional layer
``m``, ``Conv2d`` then the activation module then (when ``r^m > 1``)
``MaxPool2d(r^m)`` or ``AvgPool2d(r^m)``; then ``Flatten``; then, for each
full layer, ``Linear`` and its activation module (``Identity`` for the
identity).

The other way, :func:`from_torch` (and :func:`read_torch`, which also says
where each layer sits in the model) reads any module ``torch.fx`` can trace:
an ``nn.Sequential`` or a class whose ``forward`` calls modules,
``torch.nn.functional`` functions or tensor methods (see
:data:`SUPPORTED_TORCH_MODULES`).  The traced graph must be one chain; modules
that subclass a supported one, and modules declared with ``treat_as``, are
kept as one node (fx does not trace into them), so their own ``forward`` and
backward are what the oracle compares.

Examples
--------
Entry ``c + d*(r + a*q)`` of column ``i`` of ``X`` is ``x[i, c, r, q]``:

>>> import numpy as np
>>> a, b, d = 2, 3, 2                        # height, width, channels
>>> x = np.arange(12.).reshape(1, d, a, b)   # x[0, c, r, q] = 6c + 3r + q
>>> X = X_from_torch(x)                      # X_from_torch also takes an ndarray
>>> X.shape
(12, 1)
>>> c, r, q = 1, 1, 2
>>> print(X[c + d * (r + a * q), 0], x[0, c, r, q])
11.0 11.0
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .activations import LEAKY_SLOPE
from .exceptions import ConfigError, InputTypeError, ShapeError, SparseCNNError
from .layers import ConvLayer, ConvShape, FullLayer
from .network import Network, _as_matrix
from .objective import get_loss
from .operators.pool import _check_winners

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "TorchNotAvailableError",
    "X_to_torch",
    "X_from_torch",
    "to_torch",
    "from_torch",
    "torch_pool_indices_to_winners",
    "flatten_permutation",
    "SUPPORTED_TORCH_MODULES",
    "TREAT_AS",
    "TorchLayer",
    "TorchReading",
    "read_torch",
    "trace_torch",
]

TORCH_REQUIREMENT = "torch==2.13.0"

SUPPORTED_TORCH_MODULES = (
    "Conv2d / F.conv2d (square kernel, one int stride and padding for both directions or padding='same' "
    "with an odd kernel, with or without "
    "bias, padding_mode='zeros', dilation=1, groups=1); "
    "ReLU, Tanh, Sigmoid, LeakyReLU(negative_slope=0.01) / F.relu, torch.relu, x.relu(), F.tanh, "
    "torch.tanh, F.sigmoid, torch.sigmoid, F.leaky_relu; "
    "MaxPool2d / F.max_pool2d and AvgPool2d / F.avg_pool2d (square kernel equal to stride, padding=0, "
    "ceil_mode=False; after a convolution, before or after its activation -- average pooling after it); "
    "Flatten / torch.flatten(x, 1) / x.view(x.size(0), -1) / x.view(-1, n) / reshape, once before the "
    "first Linear; Linear / F.linear (with or without bias); "
    "Dropout, Dropout2d, F.dropout(x, p, training=self.training) in eval mode, Identity (skipped); "
    "subclasses of these modules (kept as one node) and modules declared with treat_as; "
    "as one chain (no branches), in module, torch.nn.functional or tensor-method form; "
    "a final LogSoftmax / Softmax / F.log_softmax / F.softmax over dim 1 is read as part of the "
    "cross-entropy loss, not as a layer"
)
"""What :func:`from_torch` reads; every error message about a model repeats it."""

_ACTIVATION_MODULES = {
    "relu": "ReLU",
    "identity": "Identity",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "leaky_relu": "LeakyReLU",
}


class TorchNotAvailableError(SparseCNNError, ImportError):
    """PyTorch is needed for this function but is not installed."""


def _torch() -> Any:
    """Import torch or raise :class:`TorchNotAvailableError` saying how to install it."""
    try:
        import torch
    except ImportError as err:
        raise TorchNotAvailableError(
            f"this sparsecnn function needs PyTorch, which is not installed: "
            f"pip install {TORCH_REQUIREMENT}  (or pip install 'sparsecnn[torch]')"
        ) from err
    return torch


# ----------------------------------------------------------------- layouts
def flatten_permutation(a: int, b: int, d: int) -> np.ndarray:
    """PyTorch's flatten index of every entry of ``vec(Z)``.

    Parameters
    ----------
    a, b, d : int
        Height, width and channels of the image ``Z`` (``d x ab``).

    Returns
    -------
    ndarray of int64, shape ``(d a b,)``
        Entry ``c + d*(r + a*q)`` (channel ``c`` of pixel ``(r, q)`` in
        ``vec(Z)``) holds ``c*a*b + r*b + q``, its index in
        ``torch.flatten(x[i])`` of the NCHW tensor.  So
        ``W_ours = W_torch[:, perm]`` for the first full layer and
        ``vec(Z) = x_flat[perm]``.

    Examples
    --------
    >>> flatten_permutation(2, 2, 2)     # d = 2 channels of a 2 x 2 image
    array([0, 4, 2, 6, 1, 5, 3, 7])
    """
    k = np.arange(d * a * b, dtype=np.int64)
    c, pix = k % d, k // d
    r, q = pix % a, pix // a
    return c * a * b + r * b + q


def _input_shape_of(net_or_shape: Network | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(net_or_shape, Network):
        a, b, d = net_or_shape.input_shape
        return a, b, d
    if isinstance(net_or_shape, (str, bytes)) or not isinstance(net_or_shape, Sequence) \
            or len(net_or_shape) != 3:
        raise InputTypeError(
            f"net_or_shape must be a Network or its input_shape (a, b, d) = (height, width, channels), "
            f"got {net_or_shape!r}"
        )
    for name, v in zip(("a", "b", "d"), net_or_shape, strict=True):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigError(f"input shape: {name} must be a positive integer, got {v!r}")
    a, b, d = (int(v) for v in net_or_shape)
    return a, b, d


def X_to_torch(net_or_shape: Network | Sequence[int], X: np.ndarray,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """A batch in the ``X`` layout as a PyTorch NCHW tensor.

    Parameters
    ----------
    net_or_shape : Network or tuple of int
        The network, or its ``input_shape`` ``(a, b, d)`` = (height, width,
        channels) -- sparsecnn's order, *not* PyTorch's ``(channels, height, width)``.
    X : ndarray, shape ``(d a b, l)`` or ``(d a b,)``
        Column ``i`` is ``vec(Z^{1,i})``: channel ``c`` of pixel ``(r, q)`` at
        row ``c + d*(r + a*q)``.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    torch.Tensor, shape ``(l, d, a, b)``
        ``x[i, c, r, q] = X[c + d*(r + a*q), i]``.

    Raises
    ------
    TorchNotAvailableError
        Without PyTorch.

    Examples
    --------
    Two instances of a ``2 x 3`` image with one channel (``d a b = 6``); pixel
    ``(r, q)`` is row ``r + 2q`` of ``X``:

    >>> X = np.arange(12.).reshape(6, 2)
    >>> x = X_to_torch((2, 3, 1), X)
    >>> tuple(x.shape), x.dtype
    ((2, 1, 2, 3), torch.float64)
    >>> x[1, 0].numpy()
    array([[ 1.,  5.,  9.],
           [ 3.,  7., 11.]])
    >>> bool(np.array_equal(X_from_torch(x), X))
    True
    """
    torch = _torch()
    a, b, d = _input_shape_of(net_or_shape)

    X = _as_matrix("X", X, d * a * b, "d*a*b")
    l = X.shape[1]
    x = np.ascontiguousarray(X.reshape(b, a, d, l).transpose(3, 2, 1, 0))
    return torch.from_numpy(x).to(dtype or torch.float64)


def X_from_torch(x: Any) -> np.ndarray:
    """A PyTorch NCHW batch (tensor or array) in the ``X`` layout.

    Parameters
    ----------
    x : torch.Tensor or ndarray, shape ``(l, d, a, b)``
        ``l`` images with ``d`` channels, height ``a`` and width ``b``.

    Returns
    -------
    ndarray of float64, shape ``(d a b, l)``
        Column ``i`` is ``vec(Z^{1,i})``: ``X[c + d*(r + a*q), i] = x[i, c, r, q]``.

    Examples
    --------
    >>> x = np.arange(8.).reshape(1, 2, 2, 2)   # 1 image, 2 channels, 2 x 2
    >>> X_from_torch(x).ravel()
    array([0., 4., 2., 6., 1., 5., 3., 7.])
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():                 # numpy has no bfloat16: widen first (exact)
            x = x.double()
        x = x.numpy()
    if isinstance(x, (str, bytes)) or x is None:
        raise InputTypeError(f"x must be a tensor of shape (l, channels, height, width), got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.iscomplexobj(arr):
        raise InputTypeError(f"x must be a real numeric tensor, got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise ShapeError(f"x must have shape (l, channels, height, width), got shape {arr.shape}")
    l = arr.shape[0]
    if l == 0:
        raise ShapeError(f"x has l = 0 instances (shape {arr.shape}); give at least one image")
    return np.ascontiguousarray(arr.transpose(3, 2, 1, 0).reshape(-1, l), dtype=np.float64)


# ------------------------------------------------------------ to PyTorch
def _activation_module(nn: Any, name: str) -> Any:
    if name == "relu":
        return nn.ReLU()
    if name == "identity":
        return nn.Identity()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    raise ConfigError(
        f"activation {name!r} has no PyTorch module here; supported: {sorted(_ACTIVATION_MODULES)}"
    )


def to_torch(net: Network, theta: np.ndarray, dtype: torch.dtype | None = None) -> torch.nn.Sequential:
    """The network with parameters ``theta`` as a PyTorch ``nn.Sequential``.

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
        ``[vec(W^1); b^1; ...; vec(W^L); b^L]``.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    torch.nn.Sequential
        For each conv layer ``m``: ``Conv2d(d^m, d^{m+1}, h^m, stride=s^m,
        padding=p^m)`` with ``weight[o, c, r, q] = W^m[o, r + h*q + h*h*c]``
        and ``bias = b^m``; the activation module (``ReLU``, ``Identity``,
        ``Tanh``, ``Sigmoid``, ``LeakyReLU(0.01)``); ``MaxPool2d(r^m)`` or
        ``AvgPool2d(r^m)`` when ``r^m > 1``.  Then ``Flatten()``, then for each
        full layer ``Linear(n_m, n_{m+1})`` and its activation module.  The
        first ``Linear`` has its columns permuted (:func:`flatten_permutation`):
        ``weight[:, perm] = W^{L^C+1}``.  The model takes ``X_to_torch(net, X)``
        and returns ``z^{L+1}`` transposed, shape ``(l, n_L)``.

    Raises
    ------
    TorchNotAvailableError
        Without PyTorch.

    Examples
    --------
    >>> import torch
    >>> from sparsecnn import ConvLayer, FullLayer
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> theta = net.init_params(seed=0)
    >>> model = to_torch(net, theta)
    >>> [type(module).__name__ for module in model]
    ['Conv2d', 'ReLU', 'MaxPool2d', 'Flatten', 'Linear', 'Identity']
    >>> X = np.random.default_rng(0).standard_normal((36, 4))      # (d^1 a^1 b^1, l)
    >>> with torch.no_grad():
    ...     out = model(X_to_torch(net, X)).numpy()                  # (l, n_L)
    >>> out.shape, bool(np.allclose(out.T, net.output(theta, X)))
    ((4, 3), True)
    """
    torch = _torch()
    nn = torch.nn
    dtype = dtype or torch.float64
    Ws, bs = net.unpack(theta)
    modules: list[Any] = []
    with torch.no_grad():
        for ly in net.conv:
            spec = ly.spec
            W, bias = Ws[ly.m - 1], bs[ly.m - 1]
            conv = nn.Conv2d(ly.d, ly.d_out, spec.h, stride=spec.s, padding=spec.p, bias=True, dtype=dtype)
            w = W.reshape(ly.d_out, ly.d, spec.h, spec.h).transpose(0, 1, 3, 2)   # [o, c, q, r] -> [o, c, r, q]
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            conv.bias.copy_(torch.from_numpy(np.array(bias)))
            modules += [conv, _activation_module(nn, ly.sigma.name)]
            if spec.r > 1:
                pool = getattr(spec, "pool", "max")
                if pool == "max":
                    modules.append(nn.MaxPool2d(spec.r))
                elif pool == "avg":
                    modules.append(nn.AvgPool2d(spec.r))
                else:
                    raise ConfigError(
                        f"conv layer {ly.m}: pool {pool!r} has no PyTorch module here; supported: 'max', 'avg'"
                    )
        modules.append(nn.Flatten())
        for j, fl in enumerate(net.full):
            W, bias = Ws[fl.m - 1], bs[fl.m - 1]
            if j == 0:
                Wt = np.empty_like(W)
                Wt[:, flatten_permutation(*_shape_entering_full(net))] = W
                W = Wt
            lin = nn.Linear(fl.n_in, fl.n_out, bias=True, dtype=dtype)
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            lin.bias.copy_(torch.from_numpy(np.array(bias)))
            modules += [lin, _activation_module(nn, fl.sigma.name)]
    return nn.Sequential(*modules)


def _shape_entering_full(net: Network) -> tuple[int, int, int]:
    """``(a, b, d)`` of ``Z^{L^C+1}``, the image flattened into the first full layer."""
    if net.conv:
        last = net.conv[-1]
        return last.a_out, last.b_out, last.d_out
    a, b, d = net.input_shape
    return a, b, d


# ---------------------------------------------------------- from PyTorch
def _unsupported(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: {what}; supported: {SUPPORTED_TORCH_MODULES}")


def _pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return value[0], value[0]
        if len(value) == 2:
            return value[0], value[1]
        return value[0], None
    return value, value


def _check_conv(where: str, kernel_size: Any, stride: Any, padding: Any, padding_mode: str, dilation: Any,
                groups: int) -> tuple[int, int, int]:
    """``(h, s, p)`` of a supported convolution, or a ConfigError naming the setting."""
    kh, kw = _pair(kernel_size)
    if kh != kw:
        raise _unsupported(where, f"kernel_size = {tuple(_pair(kernel_size))} is not square (h x h filters only)")
    sh, sw = _pair(stride)
    if sh != sw:
        raise _unsupported(where, f"stride = {tuple(_pair(stride))} differs between directions")
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise _unsupported(where, f"padding = {padding!r} (an int p, 'valid' (0) or 'same')")
        if padding == "same" and kh % 2 == 0:
            raise _unsupported(where, f"padding = 'same' with an even kernel h = {kh}: PyTorch then pads "
                                      f"{(kh - 2) // 2} before and {kh // 2} after, and P_pad pads p on every side")
        ph = pw = 0 if padding == "valid" else (kh - 1) // 2      # 'same' (stride 1, as PyTorch requires)
    else:
        ph, pw = _pair(padding)
    if ph != pw:
        raise _unsupported(where, f"padding = {tuple(_pair(padding))} differs between directions")
    if padding_mode != "zeros":
        raise _unsupported(where, f"padding_mode = {padding_mode!r} (only 'zeros')")
    if tuple(_pair(dilation)) != (1, 1):
        raise _unsupported(where, f"dilation = {tuple(_pair(dilation))} (only 1)")
    if groups != 1:
        raise _unsupported(where, f"groups = {groups} (only 1)")
    return int(kh), int(sh), int(ph)


def _check_pool(where: str, kind: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: bool, return_indices: bool, divisor_override: Any) -> int:
    """``r`` of a supported pooling (``kind`` "max" or "avg"), or a ConfigError naming the setting."""
    kh, kw = _pair(kernel_size)
    if kh != kw:
        raise _unsupported(where, f"kernel_size = {kernel_size} is not square")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel_size
    sh, sw = _pair(stride)
    if (sh, sw) != (kh, kw):
        raise _unsupported(
            where, f"kernel_size = {kernel_size} differs from stride = {stride} "
                   f"(pooling windows of width r with stride r only)"
        )
    if tuple(_pair(padding)) != (0, 0):
        raise _unsupported(where, f"padding = {padding} (only 0)")
    if ceil_mode:
        raise _unsupported(where, "ceil_mode=True (only floor: a partial window is dropped)")
    if kind == "max":
        if tuple(_pair(dilation)) != (1, 1):
            raise _unsupported(where, f"dilation = {dilation} (only 1)")
        if return_indices:
            raise _unsupported(
                where, "return_indices=True inside the model (call torch.nn.functional.max_pool2d "
                       "with return_indices=True separately and use torch_pool_indices_to_winners)"
            )
    elif divisor_override is not None:
        raise _unsupported(where, f"divisor_override = {divisor_override} (only None)")
    return int(kh)


@dataclass
class TorchLayer:
    """Where layer ``m`` of the network sits in the traced PyTorch model.

    Attributes
    ----------
    m : int
        The layer, ``1..L``.
    kind : {"conv", "full"}
    weight_name : str
        The parameter holding ``W^m`` (a ``named_parameters()`` key, e.g. ``"conv2.weight"``).
    bias_name : str or None
        The parameter holding ``b^m``; None for a layer without bias (``b^m`` held at 0).
    nodes : list of str
        The fx nodes (``torch.fx.Node.name``) that make the layer, in order.
    out_node : str
        The fx node whose output is ``Z^{m+1}`` (NCHW for a conv layer, ``(l, n_{m+1})`` for a full one).
    pool_node : str or None
        The fx node of the layer's max pooling (its input's argmax gives ``P_pool^{m,i}``).
    where : str
        The conv / linear node, its target and its source line.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    >>> read_torch(model, (1, 2, 2)).layers[0]
    TorchLayer(m=1, kind='full', weight_name='1.weight', bias_name=None, nodes=['_1'], out_node='_1', pool_node=None, where='model node _1 [module 1 (Linear)], no source line (called by nn.Sequential)')
    """

    m: int
    kind: str
    weight_name: str
    bias_name: str | None
    nodes: list[str]
    out_node: str
    pool_node: str | None
    where: str


@dataclass
class TorchReading:
    """What :func:`read_torch` found in a PyTorch model.

    Attributes
    ----------
    net : Network
    theta : ndarray of float64, shape ``(n,)``
        The model's parameters in ``theta``'s order; ``b^m = 0`` for a layer without bias.
    layers : list of TorchLayer
        One per layer ``m = 1..L``.
    graph_module : torch.fx.GraphModule
        The traced model (its nodes are named in ``layers``).
    loss : str
        ``"cross-entropy"`` or ``"squared"`` (``net.loss.name``).
    final : {None, "log_softmax", "softmax"}
        The model's final log_softmax / softmax, read as part of the cross-entropy loss.
    logits_module : torch.fx.GraphModule
        The traced model without that final node: it returns ``z^{L+1}`` (the logits),
        shape ``(l, n_L)``; the same module as ``graph_module`` when there is none.

    Examples
    --------
    >>> import torch
    >>> reading = read_torch(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False)), (1, 2, 2))
    >>> reading.parameter_names, reading.has_bias, reading.theta[-2:]     # b^1 held at 0
    ([('1.weight', None)], [False], array([0., 0.]))
    """

    net: Network
    theta: np.ndarray
    layers: list[TorchLayer]
    graph_module: Any
    loss: str = "squared"
    final: str | None = None
    logits_module: Any = None

    @property
    def parameter_names(self) -> list[tuple[str, str | None]]:
        """``(weight name, bias name or None)`` per layer."""
        return [(ly.weight_name, ly.bias_name) for ly in self.layers]

    @property
    def has_bias(self) -> list[bool]:
        """Whether layer ``m`` (index ``m - 1``) has a bias in the model."""
        return [ly.bias_name is not None for ly in self.layers]


TREAT_AS = ("relu", "tanh", "sigmoid", "leaky_relu", "identity", "flatten")
"""What ``treat_as={MyModule: name}`` may declare a custom module to be."""


def _supported_classes(nn: Any) -> tuple[type, ...]:
    return (nn.Conv2d, nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d,
            nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.LogSoftmax, nn.Softmax)


def _source_line(node: Any) -> str:
    """``file:line: code`` of the model's line that made ``node`` (from fx's recorded stack trace)."""
    trace = getattr(node, "stack_trace", None) or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', trace)
    torch_dir = os.sep + "torch" + os.sep
    own = [f for f in frames if torch_dir not in f[0]]
    outside_fx = [f for f in frames if os.sep + "fx" + os.sep not in f[0]]
    if not own:
        called_by = outside_fx[-1][0] if outside_fx else ""
        return "no source line (called by nn.Sequential)" if "container" in called_by else "no source line"
    path, line, _, code = own[-1]
    return f"{os.path.basename(path)}:{line}: {code.strip()}"


def _fn_name(target: Any) -> str:
    mod = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or repr(target)
    if mod.startswith("torch.nn.functional") or target in _functional_names():
        return f"torch.nn.functional.{name}"
    return f"{mod}.{name}" if mod else name


def _functional_names() -> set[Any]:
    torch = _torch()
    F = torch.nn.functional
    return {F.max_pool2d, F.avg_pool2d, F.linear, F.conv2d}


def _signatures() -> dict[Any, tuple[str, tuple[str, ...], dict[str, Any]]]:
    """``{function: (kind, parameter names, defaults)}`` of every supported functional form."""
    torch = _torch()
    F = torch.nn.functional
    conv = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    conv_d = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    maxp = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    maxp_d = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}
    avgp = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    avgp_d = {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True, "divisor_override": None}
    drop = ("input", "p", "training", "inplace")
    drop_d = {"p": 0.5, "training": True, "inplace": False}
    table: dict[Any, tuple[str, tuple[str, ...], dict[str, Any]]] = {
        F.conv2d: ("conv", conv, conv_d),
        F.linear: ("linear", ("input", "weight", "bias"), {"bias": None}),
        F.relu: ("relu", ("input", "inplace"), {}), torch.relu: ("relu", ("input",), {}),
        F.relu_: ("relu", ("input",), {}), torch.relu_: ("relu", ("input",), {}),
        torch.tanh: ("tanh", ("input",), {}), F.tanh: ("tanh", ("input",), {}),
        torch.sigmoid: ("sigmoid", ("input",), {}), F.sigmoid: ("sigmoid", ("input",), {}),
        F.leaky_relu: ("leaky_relu", ("input", "negative_slope", "inplace"), {"negative_slope": 0.01}),
        F.leaky_relu_: ("leaky_relu", ("input", "negative_slope"), {"negative_slope": 0.01}),
        F.max_pool2d: ("max", maxp, maxp_d), torch.max_pool2d: ("max", maxp[:-1], dict(maxp_d, stride=None)),
        F.avg_pool2d: ("avg", avgp, avgp_d),
        torch.flatten: ("flatten", ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}),
        torch.reshape: ("reshape", ("input", "shape"), {}),
        F.dropout: ("dropout", drop, drop_d), F.dropout2d: ("dropout", drop, drop_d),
        torch.dropout: ("dropout", ("input", "p", "training"), {}),
        F.log_softmax: ("softmax", ("input", "dim"), {}), F.softmax: ("softmax", ("input", "dim"), {}),
        torch.log_softmax: ("softmax", ("input", "dim"), {}), torch.softmax: ("softmax", ("input", "dim"), {}),
    }
    return table


_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
            "sigmoid_": "sigmoid", "flatten": "flatten", "view": "reshape", "reshape": "reshape",
            "contiguous": "identity", "log_softmax": "softmax", "softmax": "softmax"}
_SHAPE_METHODS = {"size", "dim"}


def _bind(names: tuple[str, ...], defaults: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
          ) -> dict[str, Any]:
    out = dict(defaults)
    out.update(zip(names, args, strict=False))
    out.update(kwargs)
    return out


class _Op:
    """One recognised node of the chain."""

    def __init__(self, kind: str, node: Any, where: str, **info: Any) -> None:
        self.kind, self.node, self.where, self.info = kind, node, where, info


def _describe(node: Any, gm: Any) -> str:
    if node.op == "call_module":
        what = f"module {node.target} ({type(gm.get_submodule(node.target)).__name__})"
    elif node.op == "call_function":
        what = f"call {_fn_name(node.target)}"
    elif node.op == "call_method":
        what = f"method .{node.target}()"
    else:
        what = f"{node.op} {node.target}"
    src = _source_line(node)
    return f"model node {node.name} [{what}]" + (f" at {src}" if not src.startswith("no source") else f", {src}")


def _is_shape_node(node: Any, shape_nodes: set[str]) -> bool:
    """A node computing sizes (``x.size(0)``, ``x.shape[0]``, arithmetic on them), not a tensor."""
    import operator

    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function":
        if node.target is getattr and len(node.args) > 1 and node.args[1] == "shape":
            return True
        if node.target in (operator.getitem, operator.mul, operator.floordiv, operator.add, operator.sub):
            from torch.fx.node import Node

            ins = [a for a in node.all_input_nodes if isinstance(a, Node)]
            return bool(ins) and all(a.name in shape_nodes for a in ins)
    return False


def _classify(node: Any, gm: Any, treat_as: dict[type, str], nn: Any) -> _Op:
    """What a chain node computes, or a ConfigError naming it and listing what is supported."""
    where = _describe(node, gm)
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        for cls, name in treat_as.items():
            if isinstance(mod, cls):
                kind = {"flatten": "flatten", "identity": "identity"}.get(name, "act")
                return _Op(kind, node, where, act=name, start_dim=1, end_dim=-1, module=mod)
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            for attr in ("weight", "bias"):
                value = getattr(mod, attr, None)
                if value is not None and not isinstance(value, nn.Parameter):
                    raise _unsupported(
                        where, f"its {attr} is not an nn.Parameter but computed from other parameters (pruning with "
                               f"torch.nn.utils.prune, a parametrization such as weight_norm or spectral_norm); "
                               f"sparsecnn compares the gradient with respect to W^m and b^m themselves: make the "
                               f"pruning or parametrization permanent first (prune.remove(module, '{attr}'), "
                               f"torch.nn.utils.parametrize.remove_parametrizations(module, '{attr}'))")
        if isinstance(mod, nn.Conv2d):
            h, s, p = _check_conv(where, mod.kernel_size, mod.stride, mod.padding, mod.padding_mode,
                                  mod.dilation, mod.groups)
            return _Op("conv", node, where, h=h, s=s, p=p, weight=f"{node.target}.weight",
                       bias=None if mod.bias is None else f"{node.target}.bias", module=mod)
        if isinstance(mod, nn.Linear):
            return _Op("linear", node, where, weight=f"{node.target}.weight",
                       bias=None if mod.bias is None else f"{node.target}.bias", module=mod)
        if isinstance(mod, nn.LeakyReLU):
            if float(mod.negative_slope) != LEAKY_SLOPE:
                raise _unsupported(where, f"negative_slope = {mod.negative_slope} (only {LEAKY_SLOPE})")
            return _Op("act", node, where, act="leaky_relu")
        for cls, name in ((nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid")):
            if isinstance(mod, cls):
                return _Op("act", node, where, act=name)
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            kind = "max" if isinstance(mod, nn.MaxPool2d) else "avg"
            r = _check_pool(where, kind, mod.kernel_size, mod.stride, mod.padding, getattr(mod, "dilation", 1),
                            mod.ceil_mode, getattr(mod, "return_indices", False),
                            getattr(mod, "divisor_override", None))
            return _Op("pool", node, where, pool=kind, r=r)
        if isinstance(mod, nn.Flatten):
            return _Op("flatten", node, where, start_dim=mod.start_dim, end_dim=mod.end_dim)
        if isinstance(mod, (nn.Dropout, nn.Dropout2d)):
            if mod.training and float(mod.p) > 0:
                raise _unsupported(where, f"{type(mod).__name__}(p={mod.p}) in training mode drops entries "
                                          f"at random; call model.eval() first (dropout is the identity in eval mode)")
            return _Op("identity", node, where)
        if isinstance(mod, nn.Identity):
            return _Op("identity", node, where)
        if isinstance(mod, (nn.LogSoftmax, nn.Softmax)):
            return _Op("softmax", node, where, dim=mod.dim,
                       final="log_softmax" if isinstance(mod, nn.LogSoftmax) else "softmax")
        hint = "" if type(mod).__module__.startswith("torch.") else (
            f" (if it computes a supported operation, declare it: treat_as={{{type(mod).__name__}: 'relu'}}, "
            f"one of {', '.join(TREAT_AS)})")
        raise _unsupported(where, f"module {type(mod).__name__} is not supported{hint}")
    if node.op == "call_function":
        sig = _signatures().get(node.target)
        if sig is None:
            raise _unsupported(where, f"function {_fn_name(node.target)} is not supported")
        kind, names, defaults = sig
        a = _bind(names, defaults, node.args, node.kwargs)
        return _from_call(kind, a, node, where, gm)
    if node.op == "call_method":
        method = _METHODS.get(str(node.target))
        if method is None:
            raise _unsupported(where, f"tensor method .{node.target}() is not supported")
        kind = method
        if kind == "flatten":
            a = _bind(("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}, node.args, node.kwargs)
        elif kind == "softmax":
            a = _bind(("input", "dim"), {"dim": None}, node.args, node.kwargs)
            a["final"] = str(node.target)
        else:
            a = {"input": node.args[0]}
        return _from_call(kind, a, node, where, gm)
    raise _unsupported(where, f"{node.op} nodes are not supported")


def _final_name(node: Any, a: Mapping[str, Any]) -> str:
    if "final" in a:
        return "log_softmax" if "log" in str(a["final"]) else "softmax"
    return "log_softmax" if "log" in getattr(node.target, "__name__", str(node.target)) else "softmax"


def _param_name(where: str, what: str, value: Any, gm: Any) -> str | None:
    from torch.fx.node import Node

    if value is None:
        return None
    if not isinstance(value, Node) or value.op != "get_attr":
        raise _unsupported(where, f"the {what} must be a parameter of the model (self.<name>), "
                                  f"got {getattr(value, 'name', value)!r}")
    try:
        gm.get_parameter(value.target)
    except AttributeError:
        raise _unsupported(where, f"the {what} {value.target!r} is not an nn.Parameter of the model") from None
    return str(value.target)


def _from_call(kind: str, a: dict[str, Any], node: Any, where: str, gm: Any) -> _Op:
    if kind == "conv":
        weight = _param_name(where, "weight", a["weight"], gm)
        assert weight is not None
        w = gm.get_parameter(weight)
        if w.ndim != 4:
            raise _unsupported(where, f"weight of shape {tuple(w.shape)} (conv2d needs (out, in, h, h))")
        h, s, p = _check_conv(where, tuple(w.shape[2:]), a["stride"], a["padding"], "zeros", a["dilation"],
                              a["groups"])
        return _Op("conv", node, where, h=h, s=s, p=p, weight=weight, bias=_param_name(where, "bias", a["bias"], gm))
    if kind == "linear":
        weight = _param_name(where, "weight", a["weight"], gm)
        return _Op("linear", node, where, weight=weight, bias=_param_name(where, "bias", a["bias"], gm))
    if kind in ("relu", "tanh", "sigmoid"):
        return _Op("act", node, where, act=kind)
    if kind == "leaky_relu":
        if float(a["negative_slope"]) != LEAKY_SLOPE:
            raise _unsupported(where, f"negative_slope = {a['negative_slope']} (only {LEAKY_SLOPE})")
        return _Op("act", node, where, act="leaky_relu")
    if kind in ("max", "avg"):
        r = _check_pool(where, kind, a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("dilation", 1),
                        a.get("ceil_mode", False), a.get("return_indices", False), a.get("divisor_override"))
        return _Op("pool", node, where, pool=kind, r=r)
    if kind == "flatten":
        return _Op("flatten", node, where, start_dim=a["start_dim"], end_dim=a["end_dim"])
    if kind == "reshape":
        return _Op("reshape", node, where)
    if kind == "dropout":
        if a.get("training", True) and float(a.get("p", 0.5)) > 0:
            raise _unsupported(where, "dropout with training=True drops entries at random; pass "
                                      "training=self.training and call model.eval() first (dropout is the "
                                      "identity in eval mode)")
        return _Op("identity", node, where)
    if kind == "identity":
        return _Op("identity", node, where)
    if kind == "softmax":
        return _Op("softmax", node, where, dim=a.get("dim"), final=_final_name(node, a))
    raise _unsupported(where, f"{kind} is not supported")  # pragma: no cover - every kind is handled above


class _Tracer:
    """torch.fx's tracer keeping supported modules (and their subclasses) and ``treat_as`` modules whole."""

    def __new__(cls, leaves: tuple[type, ...]) -> Any:
        torch = _torch()

        tracer_base: Any = torch.fx.Tracer

        class Tracer(tracer_base):
            def is_leaf_module(self, m: Any, qualname: str) -> bool:
                if isinstance(m, leaves):
                    return True
                return bool(super().is_leaf_module(m, qualname))

        tracer = Tracer()
        tracer.record_stack_traces = True
        return tracer


def trace_torch(model: Any, treat_as: Mapping[type, str] | None = None) -> Any:
    """The model as a ``torch.fx.GraphModule``: supported modules, their subclasses and ``treat_as`` kept whole.

    Parameters
    ----------
    model : torch.nn.Module
    treat_as : dict of type to str, optional
        Module classes to keep as one node (see :func:`read_torch`).

    Returns
    -------
    torch.fx.GraphModule

    Raises
    ------
    ConfigError
        When fx cannot trace ``model`` (its message, and what to do).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> [node.op for node in trace_torch(model).graph.nodes]
    ['placeholder', 'call_module', 'call_module', 'output']
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    leaves = _supported_classes(nn) + tuple(treat_as or {})
    try:
        graph = _Tracer(leaves).trace(model)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... with its own message
        raise ConfigError(
            f"torch.fx could not trace {type(model).__name__}.forward: {type(err).__name__}: {err}. "
            f"sparsecnn reads a model as one chain of operations traced by torch.fx.symbolic_trace: move "
            f"data-dependent control flow (if / for on tensor values, Python calls on tensor contents) out "
            f"of forward, or put the part that fx cannot trace into its own module that subclasses a "
            f"supported one or is declared with treat_as (fx keeps such a module as one node)"
        ) from err
    return torch.fx.GraphModule(model, graph)


def _run_shapes(gm: Any, example: Any) -> dict[str, tuple[int, ...] | None]:
    """Each node's output shape (None for non-tensors) on ``example``."""
    torch = _torch()
    shapes: dict[str, tuple[int, ...] | None] = {}

    interpreter: Any = torch.fx.Interpreter

    class Shapes(interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            shapes[n.name] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
            return out

    with torch.no_grad():
        Shapes(gm).run(example)
    return shapes


def read_torch(model: Any, input_shape: Sequence[int], *, treat_as: Mapping[type, str] | None = None,
               loss: str | None = None) -> TorchReading:
    """Read a PyTorch model through ``torch.fx``: the network, ``theta`` and where each layer sits.

    See :func:`from_torch` (which returns ``reading.net, reading.theta``) for what is read.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : tuple of int
        PyTorch's ``(channels, height, width)``.
    treat_as : dict of type to str, optional
        ``{MyModule: "relu"}``: instances of ``MyModule`` are kept as one fx node and read as that
        operation; one of ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"``, ``"identity"``, ``"flatten"``.
    loss : {None, "squared", "cross-entropy"}
        The loss of the network returned (see :func:`from_torch`).

    Returns
    -------
    TorchReading

    Examples
    --------
    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv2d(1, 2, 3, bias=False)
    ...         self.fc = torch.nn.Linear(8, 3)
    ...     def forward(self, x):
    ...         x = torch.nn.functional.max_pool2d(self.conv(x), 2).relu()
    ...         return self.fc(x.view(x.size(0), -1))
    >>> reading = read_torch(Net(), (1, 6, 6))
    >>> reading.net
    Network(input_shape=(6, 6, 1), layers=[ConvLayer(d_out=2, h=3, s=1, p=0, r=2, activation='relu', pool='max'), FullLayer(n_out=3, activation=None)])
    >>> reading.parameter_names
    [('conv.weight', None), ('fc.weight', 'fc.bias')]
    >>> [(ly.m, ly.nodes, ly.out_node, ly.pool_node) for ly in reading.layers]
    [(1, ['conv', 'max_pool2d', 'relu'], 'relu', 'max_pool2d'), (2, ['fc'], 'fc', None)]
    """
    torch = _torch()
    nn = torch.nn
    from torch.fx.node import Node

    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                          f"supported: {SUPPORTED_TORCH_MODULES}")
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) \
            or len(input_shape) != 3:
        raise ConfigError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    if treat_as is not None and not isinstance(treat_as, Mapping):
        raise InputTypeError(f"treat_as must be a dict of module classes to operation names, e.g. "
                             f"{{MyModule: 'relu'}}, got {type(treat_as).__name__}")
    treat: dict[type, str] = {}
    for cls, name in dict(treat_as or {}).items():
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise InputTypeError(f"treat_as keys must be torch.nn.Module classes, got {cls!r}")
        if name not in TREAT_AS:
            raise ConfigError(f"treat_as[{cls.__name__}] = {name!r}: must be one of {', '.join(TREAT_AS)}")
        treat[cls] = name
    if loss is not None:
        get_loss(loss)                                          # an unknown name: ConfigError listing them
    lazy = [k for k, p in model.named_parameters() if nn.parameter.is_lazy(p)]
    no_data = [k for k, p in model.named_parameters() if p.is_meta]
    if no_data and not lazy:
        raise ConfigError(f"parameters {no_data} are on the 'meta' device and hold no values; load or "
                          f"initialise them (e.g. model.to_empty(device='cpu') and load_state_dict) first")
    if lazy:
        raise ConfigError(f"parameters {lazy} are uninitialized (a lazy module such as LazyLinear or LazyConv2d "
                          f"has no shape yet): run the model once on an input of shape (l, channels, height, "
                          f"width), then read it")
    channels, height, width = input_shape
    gm = trace_torch(model, treat)

    # 1. the chain of recognised operations, without running the model
    ops: list[_Op] = []
    shape_nodes: set[str] = set()
    current: Any = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise _unsupported(_describe(node, gm), "a second input (the model must take one tensor x)")
            current = node
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            out = node.args[0]
            if out is not current:
                raise ConfigError(
                    f"the model must return the tensor z^{{L+1}} of shape (l, n_L), the output of its last "
                    f"operation ({getattr(current, 'name', None)}); it returns {out!r}"
                )
            continue
        if _is_shape_node(node, shape_nodes):
            shape_nodes.add(node.name)
            continue
        inputs = [a for a in node.all_input_nodes if isinstance(a, Node) and a.op != "get_attr"
                  and a.name not in shape_nodes]
        if inputs != [current]:
            raise _unsupported(
                _describe(node, gm),
                f"it takes {[a.name for a in inputs]} while the chain's tensor is {current.name}; "
                f"sparsecnn reads one chain of operations (no branches, skip connections or sums of tensors)"
            )
        if ops and ops[-1].kind == "softmax":
            raise _unsupported(_describe(node, gm), f"an operation after the {ops[-1].info['final']} of "
                                                    f"{ops[-1].node.name}: a log_softmax / softmax is read as "
                                                    f"part of the cross-entropy loss and must be the model's "
                                                    f"last operation")
        ops.append(_classify(node, gm, treat, nn))
        current = node

    # 1b. a final log_softmax / softmax: part of the cross-entropy loss, not a layer
    final_op = ops.pop() if ops and ops[-1].kind == "softmax" else None
    if final_op is not None:
        if final_op.info["dim"] not in (1, -1, None):
            raise _unsupported(final_op.where, f"{final_op.info['final']} over dim = {final_op.info['dim']}; the "
                                               f"cross-entropy loss takes softmax(z^{{L+1,i}}) over the n_L "
                                               f"outputs of each instance (dim=1)")
        if loss == "squared":
            raise ConfigError(
                f"{final_op.where}: the model ends in {final_op.info['final']}, which belongs to the "
                f"cross-entropy loss -log softmax(z^{{L+1}})_y, but loss='squared' was asked for "
                f"(||z^{{L+1}} - onehot(y)||^2 on the logits z^{{L+1}}); pass loss='cross-entropy' (or no loss), "
                f"or remove the {final_op.info['final']} so that the model returns z^{{L+1}}"
            )
        loss = "cross-entropy"
    loss = loss or "squared"

    # 2. layers from the chain
    blocks: list[dict[str, Any]] = []
    flattened = False
    for op in ops:
        current_blk = blocks[-1] if blocks else None
        if op.kind == "identity":
            if current_blk is not None and not (current_blk["kind"] == "conv" and flattened):
                current_blk["nodes"].append(op.node.name)
            continue
        if op.kind == "conv":
            if flattened:
                raise _unsupported(op.where, "a Conv2d after the image was flattened")
            blocks.append({"kind": "conv", "op": op, "act": None, "act_op": None, "pool": None,
                           "pool_op": None, "nodes": [op.node.name]})
            continue
        if op.kind == "act":
            if current_blk is None or (current_blk["kind"] == "conv" and flattened):
                raise _unsupported(op.where, "an activation must follow a Conv2d or a Linear")
            if current_blk["act"] is not None:
                raise _unsupported(op.where, f"a second activation after {current_blk['act']!r} in one layer")
            if current_blk["pool"] is not None and current_blk["pool"][0] == "avg" and op.info["act"] != "identity":
                raise _unsupported(
                    op.where, "an activation after average pooling: sparsecnn's layer is sigma, then P_pool "
                              "(mat(P_pool vec(sigma(S^m)))), and for average pooling the other order is a "
                              "different function; apply the activation before the average pooling"
                )
            current_blk["act"] = op.info["act"]
            current_blk["act_op"] = op
            current_blk["nodes"].append(op.node.name)
            continue
        if op.kind == "pool":
            if current_blk is None or current_blk["kind"] != "conv" or flattened:
                raise _unsupported(op.where, "pooling must follow a Conv2d or its activation")
            if current_blk["pool"] is not None:
                raise _unsupported(op.where, "a second pooling in one layer")
            current_blk["pool"] = (op.info["pool"], op.info["r"])
            current_blk["pool_op"] = op
            current_blk["nodes"].append(op.node.name)
            continue
        if op.kind in ("flatten", "reshape"):
            if op.kind == "flatten" and (op.info["start_dim"], op.info["end_dim"]) not in ((1, -1), (1, 3)):
                raise _unsupported(
                    op.where, f"start_dim = {op.info['start_dim']}, end_dim = {op.info['end_dim']} "
                              f"(only 1 and -1: each image flattened to one row)"
                )
            if flattened:
                if op.kind == "flatten":
                    raise _unsupported(op.where, "a second flatten")
                op.kind = "reshape-again"
                continue
            flattened = True
            continue
        if op.kind == "linear":
            if not flattened:
                raise _unsupported(op.where, "a Linear before the image is flattened (flatten it first)")
            blocks.append({"kind": "full", "op": op, "act": None, "act_op": None, "pool": None,
                           "pool_op": None, "nodes": [op.node.name]})
            continue
        raise _unsupported(op.where, f"{op.kind} is not supported")  # pragma: no cover
    if not blocks or blocks[-1]["kind"] != "full":
        last = ops[-1] if ops else None
        raise ConfigError(
            (f"{last.where} is the model's last operation" if last is not None else "the model has no operation")
            + f": model must end with a Linear (and its activation), whose output z^{{L+1}} has shape (l, n_L) "
              f"(a convolution's output is flattened before a Linear); supported: {SUPPORTED_TORCH_MODULES}")

    n_full = sum(1 for blk in blocks if blk["kind"] == "full")
    specs: list[ConvLayer | FullLayer] = []
    seen_full = 0
    for blk in blocks:
        act = blk["act"] or "identity"
        op = blk["op"]
        if blk["kind"] == "conv":
            kind, r = blk["pool"] or ("max", 1)
            kwargs: dict[str, Any] = {"s": op.info["s"], "p": op.info["p"], "r": r, "activation": act}
            if kind != "max":
                kwargs["pool"] = kind
            d_out = int(gm.get_parameter(op.info["weight"]).shape[0])
            specs.append(ConvLayer(d_out, op.info["h"], **kwargs))
        else:
            seen_full += 1
            default = "identity" if seen_full == n_full else "relu"
            n_out = int(gm.get_parameter(op.info["weight"]).shape[0])
            specs.append(FullLayer(n_out, None if act == default else act))
    try:
        net = Network((height, width, channels), specs, loss=loss)
    except ConfigError as err:
        if "input_shape" in str(err):
            raise ConfigError(
                f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}"
            ) from None
        raise

    # 3. parameters, checked against the sizes the network implies
    used: list[str] = []
    Ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    layers: list[TorchLayer] = []
    for blk, ly in zip(blocks, net.layers, strict=True):
        op = blk["op"]
        w_name, b_name = op.info["weight"], op.info["bias"]
        weight = gm.get_parameter(w_name).detach().cpu().to(torch.float64).numpy()
        bias = (gm.get_parameter(b_name).detach().cpu().to(torch.float64).numpy() if b_name is not None
                else np.zeros(weight.shape[0]))
        if bias.shape != (weight.shape[0],):
            raise ConfigError(f"{op.where}: bias {b_name} has shape {bias.shape}, expected ({weight.shape[0]},)")
        used += [w_name] + ([b_name] if b_name is not None else [])
        if isinstance(ly, ConvShape):
            if weight.shape[1] != ly.d:
                raise ConfigError(
                    f"{op.where}: in_channels = {weight.shape[1]}, but the image entering "
                    f"conv layer {ly.m} has d^{ly.m} = {ly.d} channels"
                )
            h = op.info["h"]
            W = weight.transpose(0, 1, 3, 2).reshape(weight.shape[0], h * h * ly.d)   # [o, c, q, r]
        else:
            if weight.ndim != 2 or weight.shape[1] != ly.n_in:
                raise ConfigError(
                    f"{op.where}: in_features = {weight.shape[-1]}, but full layer {ly.m} "
                    f"receives n_{ly.m} = {ly.n_in} values"
                )
            W = weight
            if ly.m == net.LC + 1:
                W = weight[:, flatten_permutation(*_shape_entering_full(net))]
        Ws.append(W)
        bs.append(bias)
        pool_op = blk["pool_op"]
        layers.append(TorchLayer(ly.m, blk["kind"], w_name, b_name, list(blk["nodes"]), blk["nodes"][-1],
                                 pool_op.node.name if pool_op is not None and pool_op.info["pool"] == "max"
                                 else None, op.where))
    dup = sorted({k for k in used if used.count(k) > 1})
    if dup:
        raise ConfigError(f"parameters {dup} are used by more than one layer; sparsecnn's layers each have "
                          f"their own W^m and b^m")
    unused = sorted(k for k, _ in model.named_parameters() if k not in used)
    if unused:
        raise ConfigError(f"parameters {unused} of the model are not the weight or bias of a convolution or "
                          f"Linear in its chain; sparsecnn cannot account for them")

    # 4. run once on an example batch: sizes, flatten / view / reshape and the output
    params = list(model.parameters())
    dtype = params[0].dtype if params else torch.float64
    device = params[0].device if params else "cpu"
    example = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64).to(dtype=dtype, device=device)
    try:
        shapes = _run_shapes(gm, example)
    except Exception as err:  # the model's own error on an input of this shape
        raise ConfigError(f"running the model on an input of shape (l, channels, height, width) = "
                          f"{tuple(example.shape)} failed: {type(err).__name__}: {err}") from err
    for op in ops:
        if op.kind in ("flatten", "reshape", "reshape-again"):
            before = shapes.get(op.node.all_input_nodes[0].name)
            after = shapes.get(op.node.name)
            if before is None or after is None or len(after) != 2 or after[0] != before[0] \
                    or int(np.prod(before[1:])) != after[1]:
                raise _unsupported(op.where, f"reshapes {before} to {after}; only flattening each image "
                                             f"(l, ...) to one row (l, n) is supported")
    out_shape = shapes.get(ops[-1].node.name) if ops else None
    if out_shape is None or len(out_shape) != 2 or out_shape[0] != 2 or out_shape[1] != net.n_L:
        raise ConfigError(f"the model's output must have shape (l, n_L) = (2, {net.n_L}) for 2 images, "
                          f"got {out_shape}")
    logits = gm if final_op is None else _without_final(gm, final_op.node)
    return TorchReading(net, net.pack(Ws, bs), layers, gm, loss, None if final_op is None
                        else str(final_op.info["final"]), logits)


def _without_final(gm: Any, final: Any) -> Any:
    """``gm`` with its final log_softmax / softmax node removed: it returns that node's input, the logits."""
    torch = _torch()
    graph = torch.fx.Graph()
    env: dict[Any, Any] = {}
    for node in gm.graph.nodes:
        if node is final:
            env[node] = env[final.all_input_nodes[0]]
        elif node.op == "output":
            graph.output(env[node.args[0]])
        else:
            env[node] = graph.node_copy(node, lambda n: env[n])
    return torch.fx.GraphModule(gm, graph)


def from_torch(model: Any, input_shape: Sequence[int], *, treat_as: Mapping[type, str] | None = None,
               loss: str | None = None) -> tuple[Network, np.ndarray]:
    """A sparsecnn network and its ``theta`` from a PyTorch model, read through ``torch.fx``.

    The model is traced with ``torch.fx`` (:func:`trace_torch`); its graph must be one chain of
    the operations in :data:`SUPPORTED_TORCH_MODULES`, whether written as modules,
    ``torch.nn.functional`` calls or tensor methods.  Modules that subclass a supported one
    (for example with a custom ``autograd.Function`` in ``forward``) stay one node and are read
    as that operation.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` or any module fx can trace.  Convolutions, activations and
        pooling make the conv layers (pooling before or after the activation: for max
        pooling the order does not change ``Z^{m+1}``, since every activation here is
        non-decreasing; average pooling must come after the activation), then a flatten
        (``Flatten``, ``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)``, ``x.view(-1, n)``,
        ``reshape``), then ``Linear`` layers and their activations.  A convolution or
        ``Linear`` without an activation gets the identity; ``Identity`` and dropout in
        eval mode are skipped.
    input_shape : tuple of int
        PyTorch's ``(channels, height, width)`` = ``(d^1, a^1, b^1)`` of one image.
    treat_as : dict of type to str, optional
        Custom module classes to read as ``"relu"``, ``"tanh"``, ``"sigmoid"``,
        ``"leaky_relu"``, ``"identity"`` or ``"flatten"`` (see :func:`read_torch`).
    loss : {None, "squared", "cross-entropy"}, optional
        The loss of the network returned.  A final ``LogSoftmax`` / ``Softmax`` /
        ``F.log_softmax`` / ``F.softmax`` (over ``dim=1``) is read as part of the
        cross-entropy loss ``-log softmax(z^{L+1})_y``, not as a layer: ``net``
        computes the logits ``z^{L+1}`` (its input) and ``net.loss.name ==
        "cross-entropy"``.  ``None`` (default): ``"cross-entropy"`` for such a
        model, ``"squared"`` otherwise.  Pass ``"cross-entropy"`` for a model that
        returns logits and is trained with ``F.cross_entropy``; ``"squared"`` with a
        final log_softmax is refused.

    Returns
    -------
    net : Network
        With ``input_shape = (a^1, b^1, d^1)``.  A full layer with its default
        activation (ReLU, or the identity for the last layer) gets ``activation=None``.
    theta : ndarray of float64, shape ``(n,)``
        ``W^m[o, r + h*q + h*h*c] = weight[o, c, r, q]`` for conv layers, the first
        full layer's columns permuted by :func:`flatten_permutation`; so that
        ``net.output(theta, X)`` equals ``model(X_to_torch(net, X)).T``.  A layer
        without bias (``bias=False``, ``F.conv2d(x, w)``) gets ``b^m = 0``.

    Raises
    ------
    ConfigError
        For an operation or setting sparsecnn does not compute, naming the fx node and its
        source line and listing what is supported; when fx cannot trace the model; when the
        output is not ``(l, n_L)``; for an unknown ``loss``, or ``loss="squared"`` with a final
        ``log_softmax`` / ``softmax``; for dropout in training mode;
        :class:`~sparsecnn.exceptions.ArchitectureError` (a ConfigError) where a layer
        would produce an empty image.
    TorchNotAvailableError
        Without PyTorch.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    ...     torch.nn.Flatten(), torch.nn.Linear(18, 3))
    >>> net, theta = from_torch(model, (1, 6, 6))                   # (d^1, a^1, b^1)
    >>> net
    Network(input_shape=(6, 6, 1), layers=[ConvLayer(d_out=2, h=3, s=1, p=1, r=2, activation='relu', pool='max'), FullLayer(n_out=3, activation=None)])
    >>> theta.shape                                                  # 2 (9 + 1) + 3 (18 + 1)
    (77,)
    >>> X = np.random.default_rng(0).standard_normal((36, 4))
    >>> with torch.no_grad():
    ...     out = model(X_to_torch(net, X, dtype=torch.float32)).numpy()
    >>> bool(np.allclose(out.T, net.output(theta, X), atol=1e-5))
    True
    """
    reading = read_torch(model, input_shape, treat_as=treat_as, loss=loss)
    return reading.net, reading.theta


# ---------------------------------------------------------------- pooling
def torch_pool_indices_to_winners(indices: Any, net: Network, m: int) -> np.ndarray:
    """Max-pooling winners of conv layer ``m`` from PyTorch's ``return_indices``.

    Parameters
    ----------
    indices : torch.Tensor or integer ndarray, shape ``(l, d^{m+1}, a^{m+1}, b^{m+1})``
        From ``max_pool2d(sigma(S^m), r^m, return_indices=True)`` on the NCHW
        tensor ``(l, d^{m+1}, a^m_conv, b^m_conv)``: the flat index
        ``r*b^m_conv + q`` of the winner within its channel.  A single instance
        ``(d^{m+1}, a^{m+1}, b^{m+1})`` is accepted too.
    net : Network
    m : int
        A convolutional layer, ``1..L^C``, with max pooling and ``r^m > 1``.

    Returns
    -------
    ndarray of int32, shape ``(d^{m+1} a^{m+1} b^{m+1}, l)`` (``(d^{m+1} a^{m+1} b^{m+1},)``
    for a single instance)
        Entry ``[c + d*(r_out + a_out*q_out), i]`` is the position
        ``c + d*(r + a_conv*q)`` in ``vec(sigma(S^{m,i}))`` of the winner of
        that window, as :func:`sparsecnn.max_pool_winners` returns; pass it to
        ``net.conv[m-1].P_pool`` or :func:`sparsecnn.P_pool` (``winners=``) to
        rebuild ``P_pool^{m,i}`` with PyTorch's choice among ties (PyTorch takes
        the first maximum in row-major order, sparsecnn in column-major order).

    Raises
    ------
    ConfigError
        If layer ``m`` is not a convolutional layer with max pooling.
    ShapeError
        If ``indices`` has the wrong shape or a winner outside its window.

    Examples
    --------
    The window ``[[1, 5], [5, 1]]``: PyTorch picks the 5 at row 0, column 1
    (flat index 1); in ``vec`` that entry is at ``0 + 1*(0 + 2*1) = 2``.

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((2, 2, 1), [ConvLayer(1, h=1, r=2), FullLayer(1)])
    >>> torch_pool_indices_to_winners(np.array([[[[1]]]]), net, 1)
    array([[2]], dtype=int32)
    """
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 1 <= m <= net.LC:
        raise ConfigError(f"m must be a convolutional layer 1..L^C = 1..{net.LC}, got {m!r}")
    ly = net.conv[int(m) - 1]
    if ly.spec.r == 1 or getattr(ly.spec, "pool", "max") != "max":
        raise ConfigError(f"conv layer {m} has no max pooling (r = {ly.spec.r}, "
                          f"pool = {getattr(ly.spec, 'pool', 'max')!r})")
    if hasattr(indices, "detach"):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise InputTypeError(f"indices must be integers, got dtype {idx.dtype}")
    single = idx.ndim == 3
    if single:
        idx = idx[None]
    expected = (ly.d_out, ly.a_out, ly.b_out)
    if idx.ndim != 4 or idx.shape[1:] != expected:
        raise ShapeError(
            f"indices of conv layer {m} must have shape (l, d^{m + 1}, a^{m + 1}, b^{m + 1}) = "
            f"(l, {', '.join(map(str, expected))}), got {tuple(np.shape(indices))}"
        )
    idx = idx.astype(np.int64)
    if ((idx < 0) | (idx >= ly.a_conv * ly.b_conv)).any():
        raise ShapeError(
            f"indices of conv layer {m} must lie in 0..a_conv*b_conv-1 = 0..{ly.a_conv * ly.b_conv - 1}"
        )
    rr, qq = idx // ly.b_conv, idx % ly.b_conv
    chan = np.arange(ly.d_out)[None, :, None, None]
    pos = chan + ly.d_out * (rr + ly.a_conv * qq)               # (l, d, a_out, b_out)
    l = pos.shape[0]
    winners = pos.transpose(3, 2, 1, 0).reshape(-1, l)            # (d a_out b_out, l), as X_from_torch
    winners = np.ascontiguousarray(winners, dtype=np.int32 if ly.n_S < 2**31 - 1 else np.int64)

    _check_winners(winners, ly.a_conv, ly.b_conv, ly.d_out, ly.spec.r)
    return winners[:, 0] if single else winners
