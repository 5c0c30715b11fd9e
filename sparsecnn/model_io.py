"""Save and load trained models without pickle.

A model file is an ``.npz`` archive (``numpy.savez``) of seven arrays:

- ``format``: the text ``"sparsecnn-model"``, ``version``: the integer ``2``;
- ``network``: the network as JSON text: ``{"input_shape": [a, b, d],
  "layers": [{"kind": "conv", "d_out": ..., "h": ..., "s": ..., "p": ..., "r": ...,
  "activation": ..., "pool": ...}, {"kind": "full", "n_out": ..., "activation": ...}],
  "pool_backward": ...}``;
- ``theta``: float64, shape ``(n,)``; ``mean``: float64, the per-pixel training
  mean subtracted from the inputs (shape ``(d a b,)``; empty when none);
- ``meta``: JSON text (``scale``, the factor applied to the pixels before centring,
  a finite number, and free-form training information);
- ``sha256``: JSON text, the SHA-256 of the canonical form of each of
  ``network``, ``theta``, ``mean`` and ``meta`` (:func:`model_checksums`).

Writing goes to a temporary file in the target's folder, then ``os.replace``
puts it in place, so a reader never sees half a file
(:func:`sparsecnn._safe_io.atomic_write`: the umask applies, symlinks are
written through).  Reading (:func:`sparsecnn._safe_io.read_npz`) accepts only a
regular file, never unpickles, and checks every array's declared size before
reading it; the description is checked against the size limits of
the size limits (:func:`sparsecnn.config.set_limits`) and the checksums are verified before the network is
built.  A missing, corrupt, altered or foreign file raises
:class:`~sparsecnn.exceptions.DataFormatError` naming the file and the problem.

Examples
--------
>>> import tempfile, pathlib
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> theta = net.init_params(seed=0)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
>>> save_model(path, net, theta, mean=np.zeros(16), meta={"scale": 1 / 255})
>>> model = load_model(path)
>>> model.net.summary() == net.summary(), bool(np.array_equal(model.theta, theta))
(True, True)
>>> model.meta["scale"] == 1 / 255
True
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._limits import check_network_size
from ._safe_io import atomic_write, file_name, read_npz
from .exceptions import DataFormatError, InputTypeError, SparseCNNError
from .layers import ConvLayer, FullLayer
from .network import Network

__all__ = ["Model", "save_model", "load_model", "network_to_dict", "network_from_dict", "model_checksums",
           "parse_json", "canonical_json", "FORMAT", "VERSION"]

FORMAT = "sparsecnn-model"
VERSION = 2
_KEYS = ("format", "version", "network", "theta", "mean", "meta", "sha256")
_CHECKED = ("network", "theta", "mean", "meta")
_WHAT = {"network": "the network description", "theta": "theta", "mean": "the training mean",
         "meta": "the metadata"}


@dataclass
class Model:
    """A loaded model: the network, ``theta``, the input preprocessing and free-form metadata.

    Attributes
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
        The parameters ``theta = [vec(W^1); b^1; ...; vec(W^L); b^L]``.
    mean : ndarray, shape ``(d^1 a^1 b^1,)``, or None
        Training mean of each pixel, subtracted after scaling; ``None`` for none.
    meta : dict
        JSON data; ``meta["scale"]`` is the factor applied to raw pixels.

    Examples
    --------
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> model = Model(net, net.init_params(seed=0), mean=np.full(4, 0.5), meta={"scale": 0.5})
    >>> model.scale, model.theta.shape
    (0.5, (10,))
    >>> Model(net, net.init_params(seed=0), mean=None, meta={"scale": "1/255"})
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: Model: meta['scale'] (the factor applied to the raw pixels) must be a finite number, got '1/255'
    """

    net: Network
    theta: np.ndarray
    mean: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.net, Network):
            raise InputTypeError(f"Model: net must be a Network, got {type(self.net).__name__}")
        self.theta = self.net.check_theta(self.theta)
        if self.mean is not None:
            self.mean = _check_mean(self.net, self.mean, allow_empty=False)
        _check_meta(self.meta, "Model", full=False)

    @property
    def scale(self) -> float:
        """Factor applied to the raw inputs before centring (1 when not recorded)."""
        return float(self.meta.get("scale", 1.0))

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        """``scale * X - mean`` (one column per instance), as at training time.

        Parameters
        ----------
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
            Raw inputs, column ``i`` being ``vec(Z^{1,i})``; a vector of ``d^1 a^1 b^1``
            entries is one instance.  Checked as :meth:`Network.check_X` checks ``X``.

        Returns
        -------
        ndarray of float64, shape ``(d^1 a^1 b^1, l)``

        Raises
        ------
        ShapeError, NonFiniteError, InputTypeError
            If ``X`` does not have ``d^1 a^1 b^1`` rows, is not finite or not numeric.

        Examples
        --------
        >>> net = Network((1, 2, 1), [FullLayer(2)])
        >>> model = Model(net, net.init_params(seed=0), mean=np.array([1., 2.]), meta={"scale": 0.5})
        >>> model.preprocess(np.array([[2., 4.], [4., 8.]]))
        array([[0., 1.],
               [0., 2.]])
        >>> model.preprocess(np.array([2., 4.]))           # one instance
        array([[0.],
               [0.]])
        >>> model.preprocess(np.ones(3))
        Traceback (most recent call last):
        ...
        sparsecnn.exceptions.ShapeError: X must have d*a*b = 2 rows, got 3
        """
        X = self.net.check_X(X) * self.scale
        return X - self.mean[:, None] if self.mean is not None else X


def network_to_dict(net: Network) -> dict[str, Any]:
    """The architecture of ``net`` as JSON-ready data.

    Examples
    --------
    >>> network_to_dict(Network((2, 2, 1), [FullLayer(3)]))["layers"]
    [{'kind': 'full', 'n_out': 3, 'activation': None}]
    """
    layers: list[dict[str, Any]] = []
    for ly in net.conv:
        s = ly.spec
        layers.append({"kind": "conv", "d_out": s.d_out, "h": s.h, "s": s.s, "p": s.p, "r": s.r,
                       "activation": s.activation, "pool": s.pool})
    for fl in net.full:
        layers.append({"kind": "full", "n_out": fl.spec.n_out, "activation": fl.spec.activation})
    return {"input_shape": list(net.input_shape), "layers": layers, "pool_backward": net.pool_backward,
            "loss": net.loss.name}


def canonical_json(data: object) -> str:
    """The canonical JSON text of ``data``: sorted keys, no spaces (what the checksums hash).

    Examples
    --------
    >>> canonical_json({"b": [1, 2], "a": None})
    '{"a":null,"b":[1,2]}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def parse_json(text: str, key: str, source: str) -> Any:
    """``json.loads(text)``, or a DataFormatError naming entry ``key`` (also for absurd nesting).

    Examples
    --------
    >>> parse_json("[" * 100000 + "]" * 100000, "meta", "m.npz")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: m.npz: entry 'meta' is not valid JSON (nested too deeply)
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise DataFormatError(f"{source}: entry {key!r} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:                  # JSONDecodeError, or an integer of > 4300 digits
        raise DataFormatError(f"{source}: corrupt JSON in entry {key!r}: {exc}") from None


def _sha256_array(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f8").tobytes()).hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_checksums(network: object, theta: np.ndarray, mean: np.ndarray, meta: object) -> dict[str, str]:
    """SHA-256 of the canonical contents of a model file, by entry.

    Parameters
    ----------
    network, meta : JSON data
        The ``network`` description and the ``meta`` dict, hashed as :func:`canonical_json` text.
    theta, mean : ndarray
        Hashed as little-endian float64 bytes.

    Returns
    -------
    dict
        ``{"network": hex, "theta": hex, "mean": hex, "meta": hex}``.

    Examples
    --------
    >>> sums = model_checksums({"layers": []}, np.zeros(2), np.zeros(0), {})
    >>> sorted(sums), len(sums["theta"])
    (['mean', 'meta', 'network', 'theta'], 64)
    """
    return {"network": _sha256_text(canonical_json(network)), "theta": _sha256_array(theta),
            "mean": _sha256_array(mean), "meta": _sha256_text(canonical_json(meta))}


def _int_list(value: object, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))


def network_from_dict(data: object, source: str = "<dict>") -> Network:
    """Inverse of :func:`network_to_dict`; malformed data raise :class:`DataFormatError`.

    The sizes are checked against the limits of the size limits (:func:`sparsecnn.config.set_limits`) before any
    operator is built (:class:`~sparsecnn.exceptions.SizeLimitError`).

    Parameters
    ----------
    data : dict
        ``{"input_shape": [a^1, b^1, d^1], "layers": [...], "pool_backward": ..., "loss": ...}``
        as :func:`network_to_dict` writes it (without ``"loss"``, as older files: ``"squared"``).
    source : str
        Name used in error messages (the model file).

    Returns
    -------
    Network

    Raises
    ------
    DataFormatError
        If ``data`` is not such a description.
    SizeLimitError
        If the network would need more memory than the limit.

    Examples
    --------
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> network_from_dict(network_to_dict(net)).summary() == net.summary()
    True
    >>> network_from_dict(network_to_dict(net.replace(loss="cross-entropy"))).loss.name
    'cross-entropy'
    >>> network_from_dict({"input_shape": [2, 2, 1], "layers": [{"kind": "pool"}]})
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: <dict>: invalid network description: layer 1 has kind 'pool', expected 'conv' or 'full'
    """
    return _build(*_specs(data, source), source)


def _specs(data: object, source: str
           ) -> tuple[tuple[int, int, int], list[ConvLayer | FullLayer], dict[str, object]]:
    """The input shape, layer specifications and options (``pool_backward``, ``loss``) of a description
    (nothing built)."""
    try:
        if not isinstance(data, dict):
            raise TypeError("the network description is not a JSON object")
        shape = data["input_shape"]
        if not _int_list(shape, 3):
            raise ValueError(f"input_shape must be [a, b, d], three positive integers, got {shape!r}"[:300])
        if not isinstance(data["layers"], list):
            raise TypeError("'layers' is not a list")
        layers: list[ConvLayer | FullLayer] = []
        for k, spec in enumerate(data["layers"], start=1):
            if not isinstance(spec, dict):
                raise TypeError(f"layer {k} is not a JSON object")
            spec = dict(spec)
            kind = spec.pop("kind", None)
            if kind == "conv":
                layers.append(ConvLayer(**spec))
            elif kind == "full":
                layers.append(FullLayer(**spec))
            else:
                raise ValueError(f"layer {k} has kind {kind!r}, expected 'conv' or 'full'"[:300])
        options = {"pool_backward": data.get("pool_backward", "auto"), "loss": data.get("loss", "squared")}
        return (shape[0], shape[1], shape[2]), layers, options
    except (KeyError, TypeError, ValueError, SparseCNNError) as exc:
        raise DataFormatError(f"{source}: invalid network description: {exc}") from None


def _build(shape: tuple[int, int, int], layers: list[ConvLayer | FullLayer], options: dict[str, object],
           source: str) -> Network:
    check_network_size(shape, layers, source)
    try:
        return Network(shape, layers, **options)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, SparseCNNError) as exc:
        raise DataFormatError(f"{source}: invalid network description: {exc}") from None


def save_model(path: str | os.PathLike[str], net: Network, theta: np.ndarray, *,
               mean: np.ndarray | None = None, meta: dict[str, Any] | None = None) -> None:
    """Write a model file atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : str or path-like
        Written exactly as given (no ``.npz`` is appended).
    net : Network
    theta : ndarray, shape ``(n,)``
    mean : ndarray, shape ``(d a b,)``, optional
        The training mean subtracted from the inputs.
    meta : dict, optional
        JSON-serialisable; ``meta["scale"]`` is the factor applied before centring.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> save_model(path, net, net.init_params(seed=0))
    >>> sorted(np.load(path).files)
    ['format', 'mean', 'meta', 'network', 'sha256', 'theta', 'version']
    """
    if not isinstance(net, Network):
        raise InputTypeError(f"save_model: net must be a Network, got {type(net).__name__}")
    theta = net.check_theta(theta)
    mean_arr = np.zeros(0) if mean is None else _check_mean(net, mean, allow_empty=True)
    meta = {} if meta is None else meta
    meta_text = _check_meta(meta, "save_model")
    desc = network_to_dict(net)
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "network": np.array(json.dumps(desc)),
        "theta": theta,
        "mean": mean_arr,
        "meta": np.array(meta_text),
        "sha256": np.array(json.dumps(model_checksums(desc, theta, mean_arr, meta))),
    }
    atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def _check_mean(net: Network, mean: object, *, allow_empty: bool) -> np.ndarray:
    """The training mean as a finite float64 vector of ``d^1 a^1 b^1`` entries (or none), or a named error."""
    try:
        arr = np.asarray(mean, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputTypeError(f"mean (the training mean of each pixel) must be numbers, got {mean!r}"[:300]) from None
    if arr.size != net.n_input and not (allow_empty and arr.size == 0):
        raise DataFormatError(f"mean must have d*a*b = {net.n_input} entries, got {arr.size}")
    if not np.isfinite(arr).all():
        raise DataFormatError("mean (the training mean of each pixel) must be finite")
    return arr


def _check_meta(meta: object, source: str, *, full: bool = True) -> str:
    """``meta``'s JSON text, after checking it is a dict of JSON data with text keys (so it reads back as
    given) and a finite ``meta["scale"]``; with ``full=False`` only the dict and the scale (returns "")."""
    if not isinstance(meta, dict):
        raise InputTypeError(f"{source}: meta must be a dict of JSON data, got {type(meta).__name__}")

    if not full:
        _check_meta_scale(meta, source)
        return ""
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError, RecursionError) as exc:      # ValueError: a circular reference
        raise InputTypeError(f"{source}: meta must be JSON data (text, int, float, bool, None, lists, dicts): "
                             f"{type(exc).__name__}: {exc}"[:400]) from None
    todo: list[tuple[object, str]] = [(meta, "")]          # a stack, not recursion: any depth is checked
    while todo:
        value, where = todo.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputTypeError(f"{source}: meta{where} has the key {key!r}; JSON keys are text, so it "
                                         "would come back as a different key"[:300])
                todo.append((item, f"{where}[{key!r}]"))
        elif isinstance(value, (list, tuple)):
            todo.extend((item, f"{where}[{k}]") for k, item in enumerate(value))
        elif not (value is None or isinstance(value, (str, int, float))):     # bool is an int
            raise InputTypeError(f"{source}: meta{where[:200]} is {type(value).__name__} {value!r}; meta holds "
                                 "JSON data only (text, int, float, bool, None, lists, dicts)"[:400])
    _check_meta_scale(meta, source)
    return text


def _check_meta_scale(meta: dict[str, Any], source: str) -> None:
    if "scale" in meta:
        scale = meta["scale"]
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise InputTypeError(f"{source}: meta['scale'] (the factor applied to the raw pixels) must be a "
                                 f"finite number, got {scale!r}"[:300])


def _check_scale(meta: dict[str, Any], source: str) -> None:
    if "scale" in meta:
        scale = meta["scale"]
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise DataFormatError(f"{source}: meta['scale'] (the factor applied to the raw pixels) must be a "
                                  f"finite number, got {scale!r}"[:300])


def _text(arrays: dict[str, np.ndarray], key: str, source: str) -> str:
    arr = arrays[key]
    if arr.shape != () or arr.dtype.kind != "U":
        raise DataFormatError(f"{source}: entry {key!r} must be text, got dtype {arr.dtype} shape {arr.shape}")
    return str(arr[()])


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
        A regular file.

    Returns
    -------
    Model
        ``theta`` of shape ``(n,)``; ``mean`` of shape ``(d^1 a^1 b^1,)`` or ``None``
        when none was saved.

    Raises
    ------
    DataFormatError
        If the file is missing or not a regular file, is not an ``.npz`` archive (or
        needs pickle), lacks an entry, is not a sparsecnn model, an entry does not match
        its SHA-256 (the message names it), or its network, ``theta``, ``mean`` or
        ``meta["scale"]`` do not fit.
    SizeLimitError
        If the file's arrays or its network would need more memory than the limit of
        the size limits (:func:`sparsecnn.config.set_limits`) (checked before anything is built).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> save_model(path, net, net.init_params(seed=0), meta={"solver": "sgd"})
    >>> model = load_model(path)
    >>> model.theta.shape, model.mean, model.meta
    ((10,), None, {'solver': 'sgd'})
    >>> load_model(path.with_name("absent.npz"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: .../absent.npz: model file not found
    """
    source = file_name(path, "model file")
    arrays = read_npz(path, "model file")
    if "format" not in arrays or _text(arrays, "format", source) != FORMAT:
        raise DataFormatError(f"{source}: not a sparsecnn model (no format entry {FORMAT!r})")
    version = arrays.get("version")
    if version is None or version.shape != () or version.dtype.kind not in "iu" or int(version) != VERSION:
        raise DataFormatError(f"{source}: model format version {version!r} is not supported "
                              f"(this sparsecnn reads version {VERSION})")
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise DataFormatError(f"{source}: model file lacks entries {missing}")
    desc = parse_json(_text(arrays, "network", source), "network", source)
    meta = parse_json(_text(arrays, "meta", source), "meta", source)
    sums = parse_json(_text(arrays, "sha256", source), "sha256", source)
    theta, mean = arrays["theta"], arrays["mean"]
    for key, arr in (("theta", theta), ("mean", mean)):
        if arr.dtype.kind != "f" or arr.ndim != 1:
            raise DataFormatError(f"{source}: {key} must be a vector of floats, got dtype {arr.dtype} "
                                  f"shape {arr.shape}")
    if not isinstance(sums, dict) or sorted(sums) != sorted(_CHECKED):
        raise DataFormatError(f"{source}: entry 'sha256' must map {list(_CHECKED)} to their SHA-256")
    actual = model_checksums(desc, theta, mean, meta)
    wrong = [k for k in _CHECKED if sums[k] != actual[k]]
    if wrong:
        raise DataFormatError(f"{source}: {', '.join(_WHAT[k] for k in wrong)} "
                              f"{'does' if len(wrong) == 1 else 'do'} not match the SHA-256 stored when the "
                              f"model was saved (entr{'y' if len(wrong) == 1 else 'ies'} {wrong} changed "
                              "afterwards); refusing an altered model")
    if not isinstance(meta, dict):
        raise DataFormatError(f"{source}: entry 'meta' must be a JSON object")
    _check_scale(meta, source)
    shape, layers, options = _specs(desc, source)
    est = check_network_size(shape, layers, source)
    if theta.shape != (est.n_params,):
        raise DataFormatError(f"{source}: theta must be {est.n_params} floats for this network, "
                              f"got dtype {theta.dtype} shape {theta.shape}")
    if not np.isfinite(theta).all():
        raise DataFormatError(f"{source}: theta holds NaN or Inf")
    if not np.isfinite(mean).all():
        raise DataFormatError(f"{source}: mean (the training mean of each pixel) holds NaN or Inf")
    net = _build(shape, layers, options, source)
    if mean.shape not in ((0,), (net.n_input,)):
        raise DataFormatError(f"{source}: mean must be empty or {net.n_input} floats, "
                              f"got dtype {mean.dtype} shape {mean.shape}")
    return Model(net, theta.astype(np.float64), mean.astype(np.float64) if mean.size else None, meta)
