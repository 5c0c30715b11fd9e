"""Save and load trained models without pickle.

A model file is an ``.npz`` archive (``numpy.savez``) of four arrays:

- ``format``: the text ``"sparsecnn-model"``, ``version``: the integer ``1``;
- ``network``: the network as JSON text: ``{"input_shape": [a, b, d],
  "layers": [{"kind": "conv", "d_out": ..., "h": ..., "s": ..., "p": ..., "r": ...,
  "activation": ..., "pool": ...}, {"kind": "full", "n_out": ..., "activation": ...}],
  "pool_backward": ...}``;
- ``theta``: float64, shape ``(n,)``; ``mean``: float64, the per-pixel training
  mean subtracted from the inputs (shape ``(d a b,)``; empty when none);
- ``meta``: JSON text (``scale``, the factor applied to the pixels before centring,
  and free-form training information).

Writing goes to a temporary file in the target's folder, then ``os.replace``
puts it in place, so a reader never sees half a file.  Reading uses
``numpy.load(allow_pickle=False)``; a missing, corrupt or foreign file raises
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

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DataFormatError, SparseCNNError
from .layers import ConvLayer, FullLayer
from .network import Network

__all__ = ["Model", "save_model", "load_model", "network_to_dict", "network_from_dict", "FORMAT", "VERSION"]

FORMAT = "sparsecnn-model"
VERSION = 1
_KEYS = ("format", "version", "network", "theta", "mean", "meta")


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
    """

    net: Network
    theta: np.ndarray
    mean: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Factor applied to the raw inputs before centring (1 when not recorded)."""
        return float(self.meta.get("scale", 1.0))

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        """``scale * X - mean`` (one column per instance), as at training time.

        Parameters
        ----------
        X : ndarray, shape ``(d^1 a^1 b^1, l)``
            Raw inputs, column ``i`` being ``vec(Z^{1,i})``.

        Returns
        -------
        ndarray of float64, shape ``(d^1 a^1 b^1, l)``

        Examples
        --------
        >>> net = Network((1, 2, 1), [FullLayer(2)])
        >>> model = Model(net, net.init_params(seed=0), mean=np.array([1., 2.]), meta={"scale": 0.5})
        >>> model.preprocess(np.array([[2., 4.], [4., 8.]]))
        array([[0., 1.],
               [0., 2.]])
        """
        X = np.asarray(X, dtype=np.float64) * self.scale
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


def network_from_dict(data: object, source: str = "<dict>") -> Network:
    """Inverse of :func:`network_to_dict`; malformed data raise :class:`DataFormatError`.

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
    try:
        if not isinstance(data, dict):
            raise TypeError("the network description is not a JSON object")
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
                raise ValueError(f"layer {k} has kind {kind!r}, expected 'conv' or 'full'")
        return Network(tuple(data["input_shape"]), layers, pool_backward=data.get("pool_backward", "auto"),
                       loss=data.get("loss", "squared"))
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
    ['format', 'mean', 'meta', 'network', 'theta', 'version']
    """
    theta = net._check_theta(theta)
    mean_arr = np.zeros(0) if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
    if mean_arr.size not in (0, net.n_input):
        raise DataFormatError(f"mean must have d*a*b = {net.n_input} entries, got {mean_arr.size}")
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "network": np.array(json.dumps(network_to_dict(net))),
        "theta": theta,
        "mean": mean_arr,
        "meta": np.array(json.dumps(meta or {})),
    }
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _text(archive: Any, key: str, source: str) -> str:
    arr = archive[key]
    if arr.shape != () or arr.dtype.kind != "U":
        raise DataFormatError(f"{source}: entry {key!r} must be text, got dtype {arr.dtype} shape {arr.shape}")
    return str(arr[()])


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Model
        ``theta`` of shape ``(n,)``; ``mean`` of shape ``(d^1 a^1 b^1,)`` or ``None``
        when none was saved.

    Raises
    ------
    DataFormatError
        If the file is missing, is not an ``.npz`` archive (or needs pickle), lacks an
        entry, is not a sparsecnn model, or its network, ``theta`` or ``mean`` do not fit.

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
    source = str(path)
    if not Path(path).is_file():
        raise DataFormatError(f"{source}: model file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DataFormatError(f"{source}: cannot read the model file ({exc})") from None
    if not head.startswith(b"PK\x03\x04"):
        what = "a single .npy array" if head.startswith(b"\x93NUMPY") else "not a zip archive"
        raise DataFormatError(f"{source}: not a sparsecnn model file ({what}; expected an .npz archive "
                              "written by save_model)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataFormatError(f"{source}: not a sparsecnn model (a single array, not an .npz archive)")
        with loaded as archive:
            missing = [k for k in _KEYS if k not in archive.files]
            if "format" in missing or ("format" in archive.files and _text(archive, "format", source) != FORMAT):
                raise DataFormatError(f"{source}: not a sparsecnn model (no format entry {FORMAT!r})")
            if missing:
                raise DataFormatError(f"{source}: model file lacks entries {missing}")
            version = archive["version"]
            if version.shape != () or version.dtype.kind not in "iu" or int(version) != VERSION:
                raise DataFormatError(f"{source}: model format version {version!r} is not supported "
                                      f"(this sparsecnn reads version {VERSION})")
            network_text = _text(archive, "network", source)
            meta_text = _text(archive, "meta", source)
            theta = np.array(archive["theta"])
            mean = np.array(archive["mean"])
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{source}: not a readable sparsecnn model file ({type(exc).__name__}: {exc})") from None
    try:
        desc = json.loads(network_text)
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{source}: corrupt JSON in the model file: {exc}") from None
    if not isinstance(meta, dict):
        raise DataFormatError(f"{source}: entry 'meta' must be a JSON object")
    net = network_from_dict(desc, source)
    if theta.dtype.kind != "f" or theta.shape != (net.n_params,):
        raise DataFormatError(f"{source}: theta must be {net.n_params} floats for this network, "
                              f"got dtype {theta.dtype} shape {theta.shape}")
    if not np.isfinite(theta).all():
        raise DataFormatError(f"{source}: theta holds NaN or Inf")
    if mean.dtype.kind != "f" or mean.shape not in ((0,), (net.n_input,)):
        raise DataFormatError(f"{source}: mean must be empty or {net.n_input} floats, "
                              f"got dtype {mean.dtype} shape {mean.shape}")
    return Model(net, theta.astype(np.float64), mean.astype(np.float64) if mean.size else None, meta)
