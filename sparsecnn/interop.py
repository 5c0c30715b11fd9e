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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .activations import LEAKY_SLOPE
from .exceptions import ConfigError, InputTypeError, ShapeError, SparseCNNError
from .layers import ConvLayer, ConvShape, FullLayer
from .network import Network

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
]

TORCH_REQUIREMENT = "torch==2.13.0"

SUPPORTED_TORCH_MODULES = (
    "Conv2d (square kernel, one int stride and padding for both directions, bias=True, "
    "padding_mode='zeros', dilation=1, groups=1), "
    "ReLU, LeakyReLU(negative_slope=0.01), Tanh, Sigmoid, Identity, "
    "MaxPool2d and AvgPool2d (square kernel_size equal to stride, padding=0, dilation=1, "
    "ceil_mode=False; each right after a Conv2d or its activation), "
    "Flatten(start_dim=1, end_dim=-1) once before the first Linear, Linear (bias=True); "
    "nested nn.Sequential containers are read in order"
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
    from .network import _as_matrix

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
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes)) or x is None:
        raise InputTypeError(f"x must be a tensor of shape (l, channels, height, width), got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.iscomplexobj(arr):
        raise InputTypeError(f"x must be a real numeric tensor, got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise ShapeError(f"x must have shape (l, channels, height, width), got shape {arr.shape}")
    l = arr.shape[0]
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
def _walk(module: Any, nn: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _walk(child, nn, full + ".")
        else:
            yield full, child


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


def _check_conv(where: str, mod: Any) -> tuple[int, int, int]:
    """``(h, s, p)`` of a supported Conv2d, or a ConfigError naming the setting."""
    kh, kw = _pair(mod.kernel_size)
    if kh != kw:
        raise _unsupported(where, f"kernel_size = {tuple(mod.kernel_size)} is not square (h x h filters only)")
    sh, sw = _pair(mod.stride)
    if sh != sw:
        raise _unsupported(where, f"stride = {tuple(mod.stride)} differs between directions")
    padding = mod.padding
    if isinstance(padding, str):
        if padding != "valid":
            raise _unsupported(where, f"padding = {padding!r} (give an int p; 'valid' means 0)")
        ph = pw = 0
    else:
        ph, pw = _pair(padding)
    if ph != pw:
        raise _unsupported(where, f"padding = {tuple(padding)} differs between directions")
    if mod.padding_mode != "zeros":
        raise _unsupported(where, f"padding_mode = {mod.padding_mode!r} (only 'zeros')")
    if tuple(_pair(mod.dilation)) != (1, 1):
        raise _unsupported(where, f"dilation = {tuple(mod.dilation)} (only 1)")
    if mod.groups != 1:
        raise _unsupported(where, f"groups = {mod.groups} (only 1)")
    if mod.bias is None:
        raise _unsupported(where, "bias=False (the slides' layer has a bias b^m)")
    return int(kh), int(sh), int(ph)


def _check_pool(where: str, mod: Any, nn: Any) -> tuple[str, int]:
    """``("max" or "avg", r)`` of a supported pooling module."""
    kind = "max" if isinstance(mod, nn.MaxPool2d) else "avg"
    kh, kw = _pair(mod.kernel_size)
    if kh != kw:
        raise _unsupported(where, f"kernel_size = {mod.kernel_size} is not square")
    stride = mod.stride if mod.stride is not None else mod.kernel_size
    if isinstance(stride, (tuple, list)) and len(stride) == 0:
        stride = mod.kernel_size
    sh, sw = _pair(stride)
    if (sh, sw) != (kh, kw):
        raise _unsupported(
            where, f"kernel_size = {mod.kernel_size} differs from stride = {mod.stride} "
                   f"(pooling windows of width r with stride r only)"
        )
    if tuple(_pair(mod.padding)) != (0, 0):
        raise _unsupported(where, f"padding = {mod.padding} (only 0)")
    if mod.ceil_mode:
        raise _unsupported(where, "ceil_mode=True (only floor: a partial window is dropped)")
    if kind == "max":
        if tuple(_pair(mod.dilation)) != (1, 1):
            raise _unsupported(where, f"dilation = {mod.dilation} (only 1)")
        if mod.return_indices:
            raise _unsupported(
                where, "return_indices=True inside the model (call torch.nn.functional.max_pool2d "
                       "with return_indices=True separately and use torch_pool_indices_to_winners)"
            )
    elif getattr(mod, "divisor_override", None) is not None:
        raise _unsupported(where, f"divisor_override = {mod.divisor_override} (only None)")
    return kind, int(kh)


def _activation_of(where: str, mod: Any, nn: Any) -> str | None:
    """The sparsecnn name of an activation module, or None if ``mod`` is not one."""
    if isinstance(mod, nn.ReLU):
        return "relu"
    if isinstance(mod, nn.Tanh):
        return "tanh"
    if isinstance(mod, nn.Sigmoid):
        return "sigmoid"
    if isinstance(mod, nn.LeakyReLU):
        if float(mod.negative_slope) != LEAKY_SLOPE:
            raise _unsupported(where, f"negative_slope = {mod.negative_slope} (only {LEAKY_SLOPE})")
        return "leaky_relu"
    return None


def from_torch(model: Any, input_shape: Sequence[int]) -> tuple[Network, np.ndarray]:
    """A sparsecnn network and its ``theta`` from a PyTorch ``nn.Sequential``.

    Parameters
    ----------
    model : torch.nn.Sequential
        ``Conv2d``, activation, pooling blocks, then ``Flatten``, then ``Linear``
        and activation blocks (see :data:`SUPPORTED_TORCH_MODULES`).  A
        ``Conv2d`` or ``Linear`` without an activation module gets the identity;
        ``Identity`` modules are skipped.
    input_shape : tuple of int
        PyTorch's ``(channels, height, width)`` = ``(d^1, a^1, b^1)`` of one image.

    Returns
    -------
    net : Network
        With ``input_shape = (a^1, b^1, d^1)``.  A full layer with its default
        activation (ReLU, or the identity for the last layer) gets ``activation=None``.
    theta : ndarray of float64, shape ``(n,)``
        ``W^m[o, r + h*q + h*h*c] = weight[o, c, r, q]`` for conv layers, the first
        full layer's columns permuted by :func:`flatten_permutation`; so that
        ``net.output(theta, X)`` equals ``model(X_to_torch(net, X)).T``.

    Raises
    ------
    ConfigError
        For a module or setting sparsecnn does not compute, naming it and listing
        what is supported; :class:`~sparsecnn.exceptions.ArchitectureError` (a
        ConfigError) where a layer would produce an empty image.
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
    torch = _torch()
    nn = torch.nn
    if not isinstance(model, nn.Sequential):
        raise ConfigError(
            f"model must be a torch.nn.Sequential, got {type(model).__name__}; "
            f"supported: {SUPPORTED_TORCH_MODULES}"
        )
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) \
            or len(input_shape) != 3:
        raise ConfigError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    channels, height, width = input_shape
    net_shape = (height, width, channels)

    # One entry per layer: [kind, module, activation, (pool kind, r), where].
    blocks: list[dict[str, Any]] = []
    flattened = False
    for name, mod in _walk(model, nn):
        where = f"model module {name} ({type(mod).__name__})"
        current = blocks[-1] if blocks else None
        if isinstance(mod, nn.Identity):
            continue
        if isinstance(mod, nn.Conv2d):
            if flattened:
                raise _unsupported(where, "a Conv2d after Flatten")
            h, s, p = _check_conv(where, mod)
            blocks.append({"kind": "conv", "mod": mod, "act": None, "pool": None, "where": where,
                           "h": h, "s": s, "p": p})
            continue
        act = _activation_of(where, mod, nn)
        if act is not None:
            if current is None or (current["kind"] == "conv" and flattened):
                raise _unsupported(where, "an activation must follow a Conv2d or a Linear")
            if current["act"] is not None:
                raise _unsupported(where, f"a second activation after {current['act']!r} in one layer")
            if current["pool"] is not None:
                raise _unsupported(
                    where, "an activation after pooling; sparsecnn applies the activation before "
                           "pooling (Conv2d, activation, pool) -- for max pooling and a "
                           "non-decreasing activation the order does not change the output"
                )
            current["act"] = act
            continue
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            kind, r = _check_pool(where, mod, nn)
            if current is None or current["kind"] != "conv" or flattened:
                raise _unsupported(where, "pooling must follow a Conv2d or its activation")
            if current["pool"] is not None:
                raise _unsupported(where, "a second pooling module in one layer")
            current["pool"] = (kind, r)
            continue
        if isinstance(mod, nn.Flatten):
            if flattened:
                raise _unsupported(where, "a second Flatten")
            if (mod.start_dim, mod.end_dim) not in ((1, -1), (1, 3)):
                raise _unsupported(
                    where, f"start_dim = {mod.start_dim}, end_dim = {mod.end_dim} (only 1 and -1)"
                )
            flattened = True
            continue
        if isinstance(mod, nn.Linear):
            if not flattened:
                raise _unsupported(where, "a Linear before Flatten (the image must be flattened first)")
            if mod.bias is None:
                raise _unsupported(where, "bias=False (the slides' layer has a bias b^m)")
            blocks.append({"kind": "full", "mod": mod, "act": None, "pool": None, "where": where})
            continue
        raise _unsupported(where, f"module {type(mod).__name__} is not supported")
    if not blocks or blocks[-1]["kind"] != "full":
        raise ConfigError(f"model must end with a Linear (and its activation); supported: {SUPPORTED_TORCH_MODULES}")

    n_full = sum(1 for blk in blocks if blk["kind"] == "full")
    specs: list[ConvLayer | FullLayer] = []
    seen_full = 0
    for blk in blocks:
        act = blk["act"] or "identity"
        if blk["kind"] == "conv":
            mod = blk["mod"]
            kind, r = blk["pool"] or ("max", 1)
            kwargs: dict[str, Any] = {"s": blk["s"], "p": blk["p"], "r": r, "activation": act}
            if kind != "max":
                kwargs["pool"] = kind
            specs.append(ConvLayer(int(mod.out_channels), blk["h"], **kwargs))
        else:
            seen_full += 1
            default = "identity" if seen_full == n_full else "relu"
            specs.append(FullLayer(int(blk["mod"].out_features), None if act == default else act))
    try:
        net = Network(net_shape, specs)
    except ConfigError as err:
        if "input_shape" in str(err):
            raise ConfigError(
                f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}"
            ) from None
        raise

    Ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    for blk, ly in zip(blocks, net.layers, strict=True):
        mod = blk["mod"]
        weight = mod.weight.detach().cpu().to(torch.float64).numpy()
        bias = mod.bias.detach().cpu().to(torch.float64).numpy()
        if isinstance(ly, ConvShape):
            if mod.in_channels != ly.d:
                raise ConfigError(
                    f"{blk['where']}: in_channels = {mod.in_channels}, but the image entering "
                    f"conv layer {ly.m} has d^{ly.m} = {ly.d} channels"
                )
            h = blk["h"]
            W = weight.transpose(0, 1, 3, 2).reshape(mod.out_channels, h * h * ly.d)   # [o, c, q, r]
        else:
            if mod.in_features != ly.n_in:
                raise ConfigError(
                    f"{blk['where']}: in_features = {mod.in_features}, but full layer {ly.m} "
                    f"receives n_{ly.m} = {ly.n_in} values"
                )
            W = weight
            if ly.m == net.LC + 1:
                W = weight[:, flatten_permutation(*_shape_entering_full(net))]
        Ws.append(W)
        bs.append(bias)
    return net, net.pack(Ws, bs)


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
    from .operators.pool import _check_winners

    _check_winners(winners, ly.a_conv, ly.b_conv, ly.d_out, ly.spec.r)
    return winners[:, 0] if single else winners
