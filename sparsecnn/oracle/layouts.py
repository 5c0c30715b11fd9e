"""Where every entry of ``theta``, ``X`` and ``z^{L+1}`` lives in PyTorch's layout.

The oracle reports each mismatch with its index in both layouts, and golden
files hold every array in both; this module holds the index arithmetic, without
importing PyTorch.  (0-based indices; ``a, b, d`` are the height, width and
channels of the image at hand.)

``theta`` (NOTATION.md) is ``[vec(W^1); b^1; ...; vec(W^L); b^L]``: with
``off_m`` the first position of layer ``m`` and ``W^m`` of shape
``rows x cols``, ``W^m[o, j]`` is ``theta[off_m + o + rows*j]`` and ``b^m[o]``
is ``theta[off_m + rows*cols + o]``.

PyTorch keeps one tensor per parameter, in the order of
``model.named_parameters()`` (weight, then bias, for each ``Conv2d`` and
``Linear``):

- conv layer ``m``: ``weight[o, c, r, q]`` (OIHW) is ``W^m[o, r + h*q + h*h*c]``,
  ``bias[o]`` is ``b^m[o]``;
- the first full layer: ``weight[k, c*a*b + r*b + q]`` (row-major flatten of
  the NCHW image) is ``W^{L^C+1}[k, c + d*(r + a*q)]`` (``vec`` of ``Z^{L^C+1}``);
- other full layers: ``weight[k, j]`` is ``W^m[k, j]``, ``bias[k]`` is ``b^m[k]``;
- a flat PyTorch vector (``torch.nn.utils.parameters_to_vector``) is these
  tensors flattened row-major and concatenated in that order;
- images: ``x[i, c, r, q]`` (NCHW) is ``X[c + d*(r + a*q), i]``;
- outputs and ``J v``: ``out[i, k]`` is ``z^{L+1}[k, i]`` (the transpose);
- max-pool winners: PyTorch's ``indices[i, c, r_out, q_out] = r*b_conv + q``
  is ``winners[c + d*(r_out + a_out*q_out), i] = c + d*(r + a_conv*q)``.

:func:`torch_parameters` gives, for each PyTorch parameter, an integer array of
its shape whose entries are positions in ``theta``; converting a vector is then
one gather (:func:`theta_to_torch`) or one scatter (:func:`torch_to_theta`).
The parameter names default to those of ``sparsecnn.to_torch(net, theta)``
(``nn.Sequential`` indices: ``Conv2d``, activation, pooling when ``r > 1``, per
conv layer; ``Flatten``; ``Linear``, activation, per full layer).

Examples
--------
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> [(p.name, p.symbol, p.shape) for p in torch_parameters(net)]
[('0.weight', 'W^1', (2, 1, 3, 3)), ('0.bias', 'b^1', (2,)), ('4.weight', 'W^2', (3, 8)), ('4.bias', 'b^2', (3,))]
>>> where = ParameterIndex(net)              # theta[5] = W^1[1, 2]: filter row 2 (j = r + h*q + h*h*c)
>>> where.ours(5), where.torch(5), where.ours(21), where.torch(21)
('W^1[1, 2]', '0.weight[1, 0, 2, 0]', 'W^2[1, 0]', '4.weight[1, 0]')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import ShapeError
from ..interop import flatten_permutation
from ..layers import ConvShape
from ..network import Network

__all__ = [
    "TorchParameter",
    "torch_parameters",
    "torch_module_names",
    "torch_module_descriptions",
    "theta_to_torch",
    "torch_to_theta",
    "torch_flat_to_theta",
    "layer_offsets",
    "ParameterIndex",
]


@dataclass(frozen=True)
class TorchParameter:
    """One PyTorch parameter tensor and where its entries sit in ``theta``.

    Attributes
    ----------
    name : str
        Its ``state_dict`` key (for example ``"3.weight"``).
    m : int
        The layer, ``1..L``.
    kind : {"W", "b"}
    theta_index : ndarray of int64
        PyTorch's shape; entry ``[o, c, r, q]`` (or ``[k, j]``, ``[o]``) is the
        position in ``theta`` of that parameter entry.

    Examples
    --------
    Filter 1 of ``W^1`` (``2 x 9``, its 9 columns ``r + 3q``) sits at ``theta[1 + 2 j]``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> weight = torch_parameters(net)[0]
    >>> weight.name, weight.symbol, weight.shape, weight.size
    ('0.weight', 'W^1', (2, 1, 3, 3), 18)
    >>> weight.theta_index[1, 0]                # [r, q] of filter 1, channel 0
    array([[ 1,  7, 13],
           [ 3,  9, 15],
           [ 5, 11, 17]])
    """

    name: str
    m: int
    kind: str
    theta_index: np.ndarray

    @property
    def symbol(self) -> str:
        """``"W^m"`` or ``"b^m"``."""
        return f"{self.kind}^{self.m}"

    @property
    def shape(self) -> tuple[int, ...]:
        """PyTorch's shape of the tensor (OIHW for a conv weight)."""
        return tuple(int(s) for s in self.theta_index.shape)

    @property
    def size(self) -> int:
        """Number of entries of the tensor."""
        return int(self.theta_index.size)


def layer_offsets(net: Network) -> np.ndarray:
    """``off`` of length ``L + 1``: layer ``m`` is ``theta[off[m-1]:off[m]] = vec([W^m b^m])``.

    Examples
    --------
    >>> from sparsecnn import FullLayer, Network
    >>> layer_offsets(Network((2, 2, 1), [FullLayer(3), FullLayer(2)]))
    array([ 0, 15, 23])
    """
    sizes = [ly.W_shape[0] * (ly.W_shape[1] + 1) for ly in net.layers]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _shape_entering_full(net: Network) -> tuple[int, int, int]:
    if net.conv:
        last = net.conv[-1]
        return last.a_out, last.b_out, last.d_out
    a, b, d = net.input_shape
    return a, b, d


def torch_module_names(net: Network) -> list[tuple[str, str]]:
    """``(weight name, bias name)`` per layer, as in ``sparsecnn.to_torch(net, theta)``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> torch_module_names(Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(5), FullLayer(3)]))
    [('0.weight', '0.bias'), ('3.weight', '3.bias'), ('5.weight', '5.bias')]
    """
    names: list[tuple[str, str]] = []
    k = 0
    for ly in net.conv:
        names.append((f"{k}.weight", f"{k}.bias"))
        k += 3 if ly.spec.r > 1 else 2          # Conv2d, activation[, pooling]
    k += 1                                       # Flatten
    for _ in net.full:
        names.append((f"{k}.weight", f"{k}.bias"))
        k += 2                                   # Linear, activation
    return names


def torch_module_descriptions(net: Network) -> list[str]:
    """The modules of ``sparsecnn.to_torch(net, theta)``, as PyTorch prints them, in order.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> torch_module_descriptions(Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
    ['Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))', 'ReLU()', 'MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)', 'Flatten(start_dim=1, end_dim=-1)', 'Linear(in_features=8, out_features=3, bias=True)', 'Identity()']
    """
    acts = {"relu": "ReLU()", "identity": "Identity()", "tanh": "Tanh()", "sigmoid": "Sigmoid()",
            "leaky_relu": "LeakyReLU(negative_slope=0.01)"}
    out: list[str] = []
    for ly in net.conv:
        s = ly.spec
        pad = f", padding=({s.p}, {s.p})" if s.p else ""
        out.append(f"Conv2d({ly.d}, {ly.d_out}, kernel_size=({s.h}, {s.h}), stride=({s.s}, {s.s}){pad})")
        out.append(acts.get(ly.sigma.name, ly.sigma.name))
        if s.r > 1:
            if s.pool == "avg":
                out.append(f"AvgPool2d(kernel_size={s.r}, stride={s.r}, padding=0)")
            else:
                out.append(f"MaxPool2d(kernel_size={s.r}, stride={s.r}, padding=0, dilation=1, ceil_mode=False)")
    out.append("Flatten(start_dim=1, end_dim=-1)")
    for fl in net.full:
        out.append(f"Linear(in_features={fl.n_in}, out_features={fl.n_out}, bias=True)")
        out.append(acts.get(fl.sigma.name, fl.sigma.name))
    return out


def torch_parameters(net: Network, names: Sequence[tuple[str, str | None]] | None = None) -> list[TorchParameter]:
    """Every PyTorch parameter of ``net``, in ``named_parameters()`` order, with its ``theta`` positions.

    Parameters
    ----------
    net : Network
    names : list of (weight name, bias name), optional
        One pair per layer; default :func:`torch_module_names` (``to_torch``'s).  A bias
        name None means the model's layer has no bias: ``b^m`` has no PyTorch parameter.

    Returns
    -------
    list of TorchParameter
        ``W^1, b^1, ..., W^L, b^L``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> [(p.name, p.shape) for p in torch_parameters(net)]
    [('0.weight', (2, 1, 3, 3)), ('0.bias', (2,)), ('4.weight', (3, 18)), ('4.bias', (3,))]
    >>> [p.name for p in torch_parameters(net, names=[("conv.weight", "conv.bias"), ("fc.weight", "fc.bias")])]
    ['conv.weight', 'conv.bias', 'fc.weight', 'fc.bias']
    """
    names = list(names) if names is not None else torch_module_names(net)
    if len(names) != net.L:
        raise ShapeError(f"need one (weight, bias) name pair per layer, L = {net.L}, got {len(names)}")
    off = layer_offsets(net)
    params: list[TorchParameter] = []
    for (w_name, b_name), ly in zip(names, net.layers, strict=True):
        m = ly.m
        rows, cols = ly.W_shape
        base = int(off[m - 1])
        W = base + np.arange(rows)[:, None] + rows * np.arange(cols)[None, :]     # W^m[o, j] -> theta
        if isinstance(ly, ConvShape):
            h = ly.spec.h
            w = W.reshape(rows, ly.d, h, h).transpose(0, 1, 3, 2)                # [o, c, q, r] -> [o, c, r, q]
        elif m == net.LC + 1:
            w = np.empty_like(W)
            w[:, flatten_permutation(*_shape_entering_full(net))] = W
        else:
            w = W
        params.append(TorchParameter(w_name, m, "W", np.ascontiguousarray(w, dtype=np.int64)))
        if b_name is not None:
            params.append(TorchParameter(b_name, m, "b", base + rows * cols + np.arange(rows, dtype=np.int64)))
    return params


def theta_to_torch(params: Sequence[TorchParameter], vector: np.ndarray) -> dict[str, np.ndarray]:
    """A vector in ``theta``'s order as PyTorch parameter arrays, ``{name: array}``.

    Examples
    --------
    >>> from sparsecnn import FullLayer, Network
    >>> net = Network((1, 1, 2), [FullLayer(2)])
    >>> theta_to_torch(torch_parameters(net), np.arange(6.))
    {'1.weight': array([[0., 2.],
           [1., 3.]]), '1.bias': array([4., 5.])}
    """
    vector = np.asarray(vector)
    return {p.name: vector[p.theta_index] for p in params}


def torch_to_theta(params: Sequence[TorchParameter], arrays: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """PyTorch parameter arrays ``{name: array}`` as one vector in ``theta``'s order.

    Parameters
    ----------
    params : sequence of TorchParameter
        From :func:`torch_parameters`.
    arrays : mapping of str to ndarray
        PyTorch's parameter tensors as arrays, by name (a ``state_dict``).
    n : int
        Length of ``theta``.

    Returns
    -------
    ndarray of float64, shape ``(n,)``
        Zero where no parameter lands (``b^m`` of a layer without bias).

    Raises
    ------
    ShapeError
        If a parameter is missing or has the wrong shape.

    Examples
    --------
    The inverse of :func:`theta_to_torch`:

    >>> from sparsecnn import FullLayer, Network
    >>> net = Network((1, 1, 2), [FullLayer(2)])
    >>> torch_to_theta(torch_parameters(net), {"1.weight": np.array([[0., 2.], [1., 3.]]),
    ...                                        "1.bias": np.array([4., 5.])}, net.n_params)
    array([0., 1., 2., 3., 4., 5.])
    """
    out = np.zeros(n, dtype=np.float64)
    for p in params:
        if p.name not in arrays:
            raise ShapeError(f"missing PyTorch parameter {p.name!r} ({p.symbol}, shape {p.shape})")
        arr = np.asarray(arrays[p.name], dtype=np.float64)
        if arr.shape != p.shape:
            raise ShapeError(f"PyTorch parameter {p.name!r} ({p.symbol}) must have shape {p.shape}, "
                             f"got {arr.shape}")
        out[p.theta_index.ravel()] = arr.ravel()
    return out


def torch_flat_to_theta(params: Sequence[TorchParameter], flat: np.ndarray) -> np.ndarray:
    """A flat PyTorch vector (``parameters_to_vector`` order) in ``theta``'s order.

    Parameters
    ----------
    params : sequence of TorchParameter
        From :func:`torch_parameters`, in ``named_parameters()`` order.
    flat : ndarray, shape ``(n,)``
        Each PyTorch tensor flattened row-major, concatenated.

    Returns
    -------
    ndarray of float64, shape ``(n,)``

    Raises
    ------
    ShapeError
        If ``flat`` does not have ``n`` entries.

    Examples
    --------
    ``W^1`` is ``2 x 2``: PyTorch flattens it by rows, ``theta`` by columns.

    >>> from sparsecnn import FullLayer, Network
    >>> net = Network((1, 1, 2), [FullLayer(2)])
    >>> torch_flat_to_theta(torch_parameters(net), np.array([0., 2., 1., 3., 4., 5.]))
    array([0., 1., 2., 3., 4., 5.])
    """
    flat = np.asarray(flat, dtype=np.float64).reshape(-1)
    n = sum(p.size for p in params)
    if flat.size != n:
        raise ShapeError(f"a flat PyTorch parameter vector must have n = {n} entries, got {flat.size}")
    n_theta = max((int(p.theta_index.max()) + 1 for p in params if p.size), default=0)
    out = np.zeros(max(n, n_theta))
    start = 0
    for p in params:
        out[p.theta_index.ravel()] = flat[start:start + p.size]
        start += p.size
    return out


class ParameterIndex:
    """Names of a position of ``theta`` in both layouts.

    Parameters
    ----------
    net : Network
    params : list of TorchParameter, optional
        Default :func:`torch_parameters` of ``net``.

    Examples
    --------
    ``W^1`` of ``ConvLayer(2, h=3)`` is ``2 x 9``, so ``theta[18:20]`` is ``b^1``:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> where = ParameterIndex(Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
    >>> where.ours(19), where.torch(19)
    ('b^1[1]', '0.bias[1]')
    """

    def __init__(self, net: Network, params: Sequence[TorchParameter] | None = None) -> None:
        self.net = net
        self.params = list(params) if params is not None else torch_parameters(net)
        self.offsets = layer_offsets(net)
        n = int(self.offsets[-1])
        self._param = np.full(n, -1, dtype=np.int64)     # theta position -> parameter number (-1: none)
        self._flat = np.zeros(n, dtype=np.int64)         # theta position -> flat index in that tensor
        for k, p in enumerate(self.params):
            idx = p.theta_index.ravel()
            self._param[idx] = k
            self._flat[idx] = np.arange(idx.size)

    def layer(self, k: int) -> int:
        """The layer ``m`` holding ``theta[k]``.

        Parameters
        ----------
        k : int
            A position in ``theta``, ``0..n-1``.

        Returns
        -------
        int
            ``m`` in ``1..L``.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> where = ParameterIndex(Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]))
        >>> where.layer(0), where.layer(19), where.layer(20)      # layer 1 is theta[0:20]
        (1, 1, 2)
        """
        return int(np.searchsorted(self.offsets, k, side="right"))

    def ours(self, k: int) -> str:
        """``"W^m[o, j]"`` or ``"b^m[o]"`` for ``theta[k]``.

        Parameters
        ----------
        k : int
            A position in ``theta``.

        Returns
        -------
        str

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> where = ParameterIndex(Network((1, 1, 2), [FullLayer(2)]))
        >>> [where.ours(k) for k in range(6)]
        ['W^1[0, 0]', 'W^1[1, 0]', 'W^1[0, 1]', 'W^1[1, 1]', 'b^1[0]', 'b^1[1]']
        """
        m = self.layer(k)
        rows, cols = self.net.layers[m - 1].W_shape
        j = k - int(self.offsets[m - 1])
        if j < rows * cols:
            return f"W^{m}[{j % rows}, {j // rows}]"
        return f"b^{m}[{j - rows * cols}]"

    def torch(self, k: int) -> str:
        """``"name[multi-index]"`` of ``theta[k]`` in PyTorch's parameters.

        Parameters
        ----------
        k : int
            A position in ``theta``.

        Returns
        -------
        str

        Examples
        --------
        >>> from sparsecnn import FullLayer, Network
        >>> where = ParameterIndex(Network((1, 1, 2), [FullLayer(2)]))
        >>> [where.torch(k) for k in range(6)]
        ['1.weight[0, 0]', '1.weight[1, 0]', '1.weight[0, 1]', '1.weight[1, 1]', '1.bias[0]', '1.bias[1]']
        """
        if self._param[k] < 0:
            return "(no PyTorch parameter: the layer has no bias)"
        p = self.params[int(self._param[k])]
        multi = np.unravel_index(int(self._flat[k]), p.shape)
        return f"{p.name}[{', '.join(str(int(i)) for i in multi)}]"
