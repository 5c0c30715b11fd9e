"""Size limits checked before anything is built from a file.

A configuration, model or golden file of a few bytes can describe a network
whose operators (``P_pad``, ``P_phi``, ``P_pool``) or ``theta`` need gigabytes,
or an ``.npz`` member whose header declares a huge array.  The loaders
(:meth:`sparsecnn.Network.from_simplenn_config`,
:func:`sparsecnn.model_io.load_model`, :func:`sparsecnn.oracle.read_golden`)
estimate the bytes from the shapes alone and raise
:class:`~sparsecnn.exceptions.SizeLimitError`, stating the size that would be
needed, when it exceeds the limit.

The limit is ``max_bytes`` (default 4 GiB, or the environment variable
``SPARSECNN_MAX_BYTES`` read at import); change it with :func:`set_limits`
or for a block with :func:`size_limits`.

Examples
--------
>>> from sparsecnn.layers import ConvLayer, FullLayer
>>> est = network_bytes((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), FullLayer(10)])
>>> est.n_params, est.total < 10**8
(63562, True)
>>> with size_limits(max_bytes=10**6):
...     check_network_size((6000, 6000, 1), [ConvLayer(2, h=5), FullLayer(10)], "model.npz")
Traceback (most recent call last):
...
sparsecnn.exceptions.SizeLimitError: model.npz: this network would need about 46.6 GB to build (P_phi of layer 1: 898,800,400 entries); the limit is 1 MB (sparsecnn.config.set_limits(max_bytes=...) or the environment variable SPARSECNN_MAX_BYTES)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .exceptions import ConfigError, SizeLimitError
from .layers import ConvLayer, FullLayer

__all__ = ["get_limits", "set_limits", "size_limits", "network_bytes", "check_network_size",
           "check_bytes", "NetworkSize", "format_bytes"]

_DEFAULT_MAX_BYTES = 4 * 2**30
# bytes per stored entry of a sparse operator: the value, its column index, and the transpose's copy
_BYTES_PER_NNZ = 2 * (8 + 8)


def _env_limit() -> int:
    text = os.environ.get("SPARSECNN_MAX_BYTES", "")
    try:
        value = int(float(text)) if text else _DEFAULT_MAX_BYTES
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        warnings.warn(f"SPARSECNN_MAX_BYTES must be a positive number of bytes, got {text!r}; using "
                      f"{_DEFAULT_MAX_BYTES}", RuntimeWarning, stacklevel=2)
        return _DEFAULT_MAX_BYTES
    return value


_limits = {"max_bytes": _env_limit()}


def get_limits() -> dict[str, int]:
    """The current limits, ``{"max_bytes": ...}``.

    Examples
    --------
    >>> sorted(get_limits())
    ['max_bytes']
    """
    return dict(_limits)


def set_limits(*, max_bytes: int) -> None:
    """Set the largest estimated memory (bytes) a loader may commit to one network or file.

    Examples
    --------
    >>> old = get_limits()["max_bytes"]
    >>> set_limits(max_bytes=2**20); get_limits()["max_bytes"]
    1048576
    >>> set_limits(max_bytes=old)
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    _limits["max_bytes"] = max_bytes


@contextmanager
def size_limits(*, max_bytes: int) -> Iterator[None]:
    """:func:`set_limits` for a ``with`` block, restoring the previous limits after it.

    Examples
    --------
    >>> with size_limits(max_bytes=123):
    ...     get_limits()["max_bytes"]
    123
    """
    old = dict(_limits)
    set_limits(max_bytes=max_bytes)
    try:
        yield
    finally:
        _limits.update(old)


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units.

    Examples
    --------
    >>> format_bytes(999), format_bytes(4.8e9), format_bytes(10**400)
    ('999 B', '4.8 GB', 'about 10^400 B')
    """
    if n >= 1e18:
        return f"about 10^{len(str(int(n))) - 1} B"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class NetworkSize:
    """Estimated sizes of a network, from the shapes alone.

    Attributes
    ----------
    n_params : int
        ``n``, the entries of ``theta``.
    total : int
        Estimated bytes to build the network and run one instance: the operators,
        ``theta`` and one instance's forward arrays.
    largest : str
        What dominates, for the error message.
    """

    n_params: int
    total: int
    largest: str


def network_bytes(input_shape: Sequence[int], layers: Sequence[ConvLayer | FullLayer]) -> NetworkSize:
    """Estimate what building ``Network(input_shape, layers)`` needs, without building anything.

    Per conv layer ``m`` with input ``a x b x d``: ``P_pad`` has ``d a b`` entries and
    ``d a_pad b_pad`` rows (as many as the padded image),
    ``P_phi`` ``h^2 d a_conv b_conv`` (the same number as ``phi(Z^m)`` per instance),
    ``P_pool`` (average) ``d^{m+1} a_conv b_conv``; ``W^m`` and ``b^m`` add
    ``d^{m+1} (h^2 d + 1)`` parameters.  A full layer adds ``n_{m+1} (n_m + 1)``.
    Impossible shapes (a filter larger than the image) count as empty: the
    network's constructor reports them.

    Examples
    --------
    >>> network_bytes((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).n_params
    47
    """
    a, b, d = (int(v) for v in input_shape)
    n_in = a * b * d
    n_params = 0
    parts: list[tuple[int, str]] = []                   # (bytes, description)
    for m, spec in enumerate(layers, start=1):
        if isinstance(spec, ConvLayer):
            a_pad, b_pad = a + 2 * spec.p, b + 2 * spec.p
            a_conv = max((a_pad - spec.h) // spec.s + 1, 0)
            b_conv = max((b_pad - spec.h) // spec.s + 1, 0)
            nnz_phi = spec.h * spec.h * d * a_conv * b_conv
            parts.append((_BYTES_PER_NNZ * d * a * b, f"P_pad of layer {m}: {d * a * b:,} entries"))
            n_pad = d * a_pad * b_pad                  # rows of P_pad, columns of P_phi, the padded image
            parts.append((3 * 8 * n_pad, f"the padded image of layer {m}: {n_pad:,} entries"))
            parts.append((_BYTES_PER_NNZ * nnz_phi + 8 * nnz_phi, f"P_phi of layer {m}: {nnz_phi:,} entries"))
            n_S = spec.d_out * a_conv * b_conv
            parts.append((_BYTES_PER_NNZ * n_S + 8 * n_S, f"S^{m}: {n_S:,} entries per instance"))
            n_params += spec.d_out * (spec.h * spec.h * d + 1)
            a, b, d = a_conv // spec.r, b_conv // spec.r, spec.d_out
            n_in = a * b * d
        else:
            n_params += spec.n_out * (n_in + 1)
            n_in = spec.n_out
    parts.append((8 * n_params, f"theta: n = {n_params:,} parameters"))
    total = sum(p[0] for p in parts)
    return NetworkSize(n_params, total, max(parts)[1])


def check_bytes(needed: int, what: str, source: str) -> None:
    """Raise :class:`SizeLimitError` when ``needed`` bytes exceed the limit.

    Examples
    --------
    >>> check_bytes(10, "an array", "f.npz")
    >>> with size_limits(max_bytes=5):
    ...     check_bytes(10, "array 'X'", "f.npz")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.SizeLimitError: f.npz: array 'X' would need 10 B; the limit is 5 B (sparsecnn.config.set_limits(max_bytes=...) or the environment variable SPARSECNN_MAX_BYTES)
    """
    limit = _limits["max_bytes"]
    if needed > limit:
        raise SizeLimitError(f"{source}: {what} would need {format_bytes(needed)}; the limit is "
                             f"{format_bytes(limit)} (sparsecnn.config.set_limits(max_bytes=...) or the "
                             "environment variable SPARSECNN_MAX_BYTES)")


def check_network_size(input_shape: Sequence[int], layers: Sequence[ConvLayer | FullLayer],
                       source: str) -> NetworkSize:
    """:func:`network_bytes`, refused with :class:`SizeLimitError` above the limit.

    Examples
    --------
    >>> check_network_size((8, 8, 1), [FullLayer(3)], "net.config").n_params
    195
    """
    est = network_bytes(input_shape, layers)
    limit = _limits["max_bytes"]
    if est.total > limit:
        raise SizeLimitError(f"{source}: this network would need about {format_bytes(est.total)} to build "
                             f"({est.largest}); the limit is {format_bytes(limit)} "
                             "(sparsecnn.config.set_limits(max_bytes=...) or the environment variable "
                             "SPARSECNN_MAX_BYTES)")
    return est
