"""Data in the layout of the slides: ``X`` of shape ``(d a b, l)``, column ``i`` = ``vec(Z^{1,i})``.

- :func:`load_simplenn_mat` reads simpleNN's ``.mat`` files (``Z`` of shape
  ``l x (d a b)``, ``y`` of shape ``l x 1``) with :func:`scipy.io.loadmat`;
  nothing is ever unpickled.
- :func:`scale_minmax` maps each image to ``[0, 1]`` by its own minimum and
  maximum, as simpleNN's MNIST example (``example_mnist.m``) and its Python
  version do; :func:`scale_255` divides by 255 (:func:`scale` by any factor);
  :func:`scale_pixels` picks one by name (``"minmax"`` or ``"255"``).  The two
  differ wherever an image does not span 0 to 255 (202 of the 2,000
  ``mnist-demo`` training images peak at 254).
- :func:`center` subtracts the training mean of each pixel, as simpleNN's
  example does after scaling.  Both are kept separate from the loader, which
  returns the pixel values unchanged.
- :func:`load_digits_data` gives scikit-learn's bundled 8x8 digits (no
  download) in the same layout, for the demo.

Examples
--------
>>> import numpy as np
>>> X = np.array([[0., 255.], [51., 102.]])      # 2 pixels, 2 instances
>>> Xs = scale(X, 1 / 255)
>>> Xc, mean = center(Xs)
>>> mean
array([0.5, 0.3])
>>> Xc
array([[-0.5,  0.5],
       [-0.1,  0.1]])
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._checks import check_finite, real_numeric
from ._limits import check_bytes
from ._matfile import check_mat_v4, check_mat_v5, is_mat_v4, is_mat_v5
from ._safe_io import file_name
from .exceptions import DataFormatError, InputTypeError, NonFiniteError, ShapeError

__all__ = ["load_simplenn_mat", "scale", "scale_minmax", "scale_255", "scale_pixels", "SCALINGS", "center",
           "load_digits_data", "DIGITS_N_TEST"]

SCALINGS = ("minmax", "255")
"""The names :func:`scale_pixels` accepts: ``"minmax"`` (simpleNN's example) and ``"255"``."""

DIGITS_N_TEST = 450
"""Number of test images in :func:`load_digits_data`: the last 450 of the 1,797."""

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _sniff(path: str, head: bytes) -> None:
    """Reject, from their first bytes, files that are clearly not MAT v4/v5/v7 files."""
    if head.startswith(_HDF5_SIGNATURE) or head[512:520] == _HDF5_SIGNATURE \
            or head.startswith(b"MATLAB 7.3"):
        raise DataFormatError(
            f"{path}: this is a MATLAB v7.3 (HDF5) file, which sparsecnn does not read; "
            "save it again as a v7 file (MATLAB/Octave: save(file, 'Z', 'y', '-v7'))"
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise DataFormatError(
            f"{path}: this looks like a Python pickle, not a MAT file; "
            "sparsecnn never unpickles files (expected a MATLAB v5/v7 .mat file with Z and y)"
        )
    if head.startswith(b"\x93NUMPY") or head.startswith(b"PK\x03\x04"):
        raise DataFormatError(
            f"{path}: this is a NumPy .npy/.npz (or zip) file, not a MAT file "
            "(expected a MATLAB v5/v7 .mat file with Z and y)"
        )


def load_simplenn_mat(path: str | os.PathLike[str], shape: tuple[int, int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Read simpleNN's ``.mat`` data as ``(X, y)`` in the slides' layout.

    Parameters
    ----------
    path : str or path-like
        A MATLAB v4/v5/v7 MAT file holding ``Z`` (``l x (d a b)``: one instance
        per row, the ``a b`` pixels of channel 1 first, then channel 2, ...)
        and ``y`` (``l x 1``, integer labels).
    shape : (a, b, d), optional
        Height, width and channels of the images.  By default a single-channel
        square image is inferred from the number of columns of ``Z`` (784 gives
        ``(28, 28, 1)``).

    Returns
    -------
    X : ndarray of float64, shape ``(d a b, l)``
        Column ``i`` is ``vec(Z^{1,i})``: entry ``c + d*j`` is pixel ``j`` of
        channel ``c``, pixel ``j`` being column ``j`` of channel ``c``'s block
        of row ``i`` of ``Z`` -- exactly how simpleNN's ``check_data`` reads
        it.  Pixel values are unchanged (0..255 for MNIST).  simpleNN's MNIST
        rows hold each image row by row, so ``mat(X[:, i], a, b)`` is the
        *transposed* image: for ``d = 1``, ``X = Z.T``.
    y : ndarray of int64, shape ``(l,)``
        The labels as stored (0..9 for simpleNN's MNIST files).

    Raises
    ------
    DataFormatError
        If the file is missing or unreadable, is not a MAT file (a pickle is
        recognised and rejected without being unpickled), is a v7.3/HDF5 file,
        lacks ``Z`` or ``y``, or if their shapes, types or values are wrong
        (``Z`` not ``l x (d a b)`` or not finite, ``y`` not ``l`` non-negative
        integers).

    Notes
    -----
    Only :func:`scipy.io.loadmat` with ``variable_names=['Z', 'y']`` reads the
    file; MAT files hold no Python objects, so nothing is unpickled.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "tiny.mat"
    >>> scipy.io.savemat(f, {"Z": np.arange(8.).reshape(2, 4), "y": np.array([[3], [1]])})
    >>> X, y = load_simplenn_mat(f)           # 4 columns: 2 x 2 images
    >>> X
    array([[0., 4.],
           [1., 5.],
           [2., 6.],
           [3., 7.]])
    >>> y
    array([3, 1])
    """
    import scipy.io

    name = file_name(path, "simpleNN .mat file")
    file = Path(name)
    if not file.exists():
        raise DataFormatError(f"{name}: no such file (expected a simpleNN .mat file with Z and y)")
    if not file.is_file():
        raise DataFormatError(f"{name}: not a regular file (expected a simpleNN .mat file with Z and y)")
    try:
        with open(file, "rb") as fh:
            head = fh.read(520)
    except OSError as e:
        raise DataFormatError(f"{name}: cannot read the file: {e.strerror or e}") from None
    if not head:
        raise DataFormatError(f"{name}: the file is empty (expected a simpleNN .mat file with Z and y)")
    _sniff(name, head)
    if is_mat_v5(head):                  # scipy's compiled reader is not hardened: check the structure first
        check_bytes(file.stat().st_size, "the MAT file", name)
        check_mat_v5(file.read_bytes(), name)
    elif is_mat_v4(head):                # scipy reads the sizes a v4 header claims: check them first
        check_bytes(file.stat().st_size, "the MAT file", name)
        check_mat_v4(file.read_bytes(), name)
    try:
        contents: dict[str, Any] = scipy.io.loadmat(name, variable_names=["Z", "y"])
    except NotImplementedError as e:  # scipy's answer to v7.3 files
        raise DataFormatError(
            f"{name}: this is a MATLAB v7.3 (HDF5) file, which sparsecnn does not read; "
            f"save it again as a v7 file ({e})"
        ) from None
    except Exception as e:  # any parse failure of a corrupt or foreign file
        raise DataFormatError(
            f"{name}: not a readable MAT file (expected MATLAB v5/v7 with variables Z and y): "
            f"{type(e).__name__}: {e}"
        ) from None
    missing = [v for v in ("Z", "y") if v not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        try:
            found = sorted(n for n, _, _ in scipy.io.whosmat(name))
        except Exception:  # only used to improve the message
            pass
        raise DataFormatError(
            f"{name}: missing variable{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"simpleNN's data has Z (l x d*a*b pixels) and y (l x 1 labels), "
            f"this file has {found or 'no variables'}"
        )
    Z = _as_numeric(name, "Z", contents["Z"])
    y_raw = _as_numeric(name, "y", contents["y"])

    if Z.ndim != 2:
        raise DataFormatError(f"{name}: Z must be a matrix l x (d*a*b), got shape {Z.shape}")
    l, n = Z.shape
    if shape is None:
        side = math.isqrt(n)
        if side * side != n or n == 0:
            raise DataFormatError(
                f"{name}: Z has {n} columns, which is not a square single-channel image; "
                "pass shape=(a, b, d)"
            )
        a, b, d = side, side, 1
    else:
        a, b, d = _check_shape(shape)
        if n != d * a * b:
            raise DataFormatError(
                f"{name}: Z must have d*a*b = {d}*{a}*{b} = {d * a * b} columns for shape={shape}, got {n}"
            )
    if not np.isfinite(Z).all():
        i, j = np.argwhere(~np.isfinite(Z))[0]
        raise DataFormatError(f"{name}: Z must be finite, got {Z[i, j]} at row {i}, column {j}")

    if y_raw.ndim != 2 or 1 not in y_raw.shape or y_raw.size != l:
        raise DataFormatError(
            f"{name}: y must be l x 1 with l = {l} (one label per row of Z), got shape {y_raw.shape}"
        )
    y_flat = y_raw.reshape(-1)
    if not np.isfinite(y_flat).all() or not np.array_equal(y_flat, np.round(y_flat)):
        k = int(np.argmax(~np.isfinite(y_flat) | (y_flat != np.round(y_flat))))
        raise DataFormatError(f"{name}: y must hold integer labels, got {y_flat[k]} at position {k}")
    if (y_flat < 0).any():
        k = int(np.argmax(y_flat < 0))
        raise DataFormatError(f"{name}: y must hold labels >= 0, got {y_flat[k]} at position {k}")
    if (y_flat >= 2.0**63).any():                   # a cast would wrap around to a negative label
        k = int(np.argmax(y_flat >= 2.0**63))
        given = int(y_flat[k]) if y_flat.dtype.kind in "iu" else f"{float(y_flat[k]):g}"
        raise DataFormatError(f"{name}: y must hold labels < 2^63, got {given} at position {k}")
    y = y_flat.astype(np.int64)

    # row i, column c*ab + j  ->  X[c + d*j, i]
    X = np.ascontiguousarray(Z.reshape(l, d, a * b).transpose(2, 1, 0).reshape(a * b * d, l))
    return X, y


def _as_numeric(name: str, var: str, value: object) -> np.ndarray:
    arr = np.asarray(value.toarray()) if isinstance(value, sp.spmatrix | sp.sparray) else np.asarray(value)
    if arr.dtype == object or arr.dtype.names is not None or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataFormatError(f"{name}: {var} must be a numeric matrix, got MATLAB data of dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise DataFormatError(f"{name}: {var} must be real, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def _check_shape(shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise InputTypeError(f"shape must be a tuple (a, b, d), got {shape!r}")
    out = []
    for sym, v in zip("abd", shape, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputTypeError(f"shape: {sym} must be a positive integer, got {v!r}")
        out.append(int(v))
    return out[0], out[1], out[2]


def scale(X: np.ndarray, factor: float) -> np.ndarray:
    """``factor * X`` as a new float64 array.

    ``factor = 1/255`` maps pixels 0..255 to ``[0, 1]``; simpleNN's MNIST
    example scales each image by its own range instead (:func:`scale_minmax`).

    Parameters
    ----------
    X : ndarray, shape ``(d a b, l)``
    factor : float

    Examples
    --------
    >>> scale(np.array([[0, 255]]), 1 / 255)
    array([[0., 1.]])
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"factor must be a number, got {factor!r}")
    if not math.isfinite(factor):
        raise NonFiniteError(f"factor must be finite, got {factor}")
    return _pixels(X, matrix=False) * float(factor)


def scale_255(X: np.ndarray) -> np.ndarray:
    """``X / 255`` as a new float64 array: pixels 0..255 to ``[0, 1]``.

    Parameters
    ----------
    X : ndarray, shape ``(d a b, l)``

    Examples
    --------
    >>> scale_255(np.array([[0., 51.], [255., 102.]]))
    array([[0. , 0.2],
           [1. , 0.4]])
    """
    return scale(X, 1 / 255)


def scale_minmax(X: np.ndarray) -> np.ndarray:
    """Each image by its own range: ``(x - min_i) / (max_i - min_i)`` on column ``i`` of ``X``.

    This is the "max-min normalization" of simpleNN's MNIST example: the minimum
    and maximum are taken over all ``d a b`` entries of one image (one row of
    simpleNN's ``Z``, one column of ``X``), so every image spans ``[0, 1]``.

    Parameters
    ----------
    X : ndarray, shape ``(d a b, l)``
        Column ``i`` is ``vec(Z^{1,i})``.

    Returns
    -------
    ndarray of float64, shape ``(d a b, l)``

    Raises
    ------
    ShapeError
        If ``X`` is not a matrix.
    DataFormatError
        If an image is constant (``max_i = min_i``).  simpleNN divides by zero
        there and trains on NaN; this names the image instead.  Use
        :func:`scale_255` for such data, or remove the image.

    Examples
    --------
    >>> scale_minmax(np.array([[10., 0.], [20., 254.], [30., 127.]]))   # 2 images of 3 pixels
    array([[0. , 0. ],
           [0.5, 1. ],
           [1. , 0.5]])
    >>> scale_minmax(np.array([[1., 7.], [2., 7.]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: image 1 (column 1 of X) is constant: all its d*a*b = 2 pixels are 7, ...
    """
    X = _pixels(X)
    if X.size == 0:
        return X.copy()
    lo, hi = X.min(axis=0), X.max(axis=0)
    flat = np.flatnonzero(hi == lo)
    if flat.size:
        i = int(flat[0])
        raise DataFormatError(
            f"image {i} (column {i} of X) is constant: all its d*a*b = {X.shape[0]} pixels are {lo[i]:g}, "
            f"so min-max scaling would divide by max - min = 0 (simpleNN's example gets NaN there); "
            f"{flat.size} such image{'s' if flat.size > 1 else ''} in all; scale by 255 instead "
            "(--scale 255) or remove the image"
        )
    with np.errstate(over="ignore"):
        span = hi - lo
    wide = ~np.isfinite(span)                       # max - min overflows (pixels beyond +-9e307)
    if wide.any():                                  # halving is exact: the same quotient without overflow
        out = np.empty_like(X)
        out[:, ~wide] = (X[:, ~wide] - lo[~wide]) / span[~wide]
        out[:, wide] = (X[:, wide] / 2 - lo[wide] / 2) / (hi[wide] / 2 - lo[wide] / 2)
        return out
    return (X - lo) / span


def scale_pixels(X: np.ndarray, method: str) -> np.ndarray:
    """Scale raw pixels by name: ``"minmax"`` (:func:`scale_minmax`) or ``"255"`` (:func:`scale_255`).

    Parameters
    ----------
    X : ndarray, shape ``(d a b, l)``
    method : {"minmax", "255"}

    Returns
    -------
    ndarray of float64, shape ``(d a b, l)``

    Examples
    --------
    >>> X = np.array([[0., 51.], [204., 102.]])
    >>> scale_pixels(X, "255")
    array([[0. , 0.2],
           [0.8, 0.4]])
    >>> scale_pixels(X, "minmax")
    array([[0., 0.],
           [1., 1.]])
    """
    if method == "minmax":
        return scale_minmax(X)
    if method == "255":
        return scale_255(X)
    raise InputTypeError(f"the pixel scaling must be one of {SCALINGS}, got {method!r}")


def center(X: np.ndarray, mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the mean of each pixel (each row of ``X``).

    Parameters
    ----------
    X : ndarray, shape ``(d a b, l)``
    mean : ndarray, shape ``(d a b,)``, optional
        The per-pixel mean to subtract; by default the mean of ``X`` over its
        instances.  Centre test data with the training mean, as simpleNN's
        example does: ``Xtr, mu = center(Xtr)`` then ``Xte, _ = center(Xte, mu)``.

    Returns
    -------
    Xc : ndarray of float64, shape ``(d a b, l)``
    mean : ndarray of float64, shape ``(d a b,)``

    Examples
    --------
    >>> Xc, mu = center(np.array([[1., 3.], [2., 2.]]))
    >>> mu
    array([2., 2.])
    >>> center(np.array([[5.], [5.]]), mu)[0]
    array([[3.],
           [3.]])
    """
    X = _pixels(X)
    if mean is None:
        if X.shape[1] == 0:
            raise ShapeError("X has no instances (l = 0): its mean is undefined")
        mean = X.mean(axis=1)
    else:
        mean = _pixels(mean, "mean", matrix=False).reshape(-1)
        if mean.shape != (X.shape[0],):
            raise ShapeError(f"mean must have d*a*b = {X.shape[0]} entries, got {mean.size}")
    return X - mean[:, None], mean


def _pixels(X: object, name: str = "X", *, matrix: bool = True) -> np.ndarray:
    """``X`` as a finite float64 array (a ``(d a b, l)`` matrix when ``matrix``), or a named error.

    A NaN would otherwise spread: into every pixel of its image (min-max scaling) or of its
    row (the mean that :func:`center` subtracts), far from where it was.
    """
    arr = real_numeric(name, X)
    if matrix and arr.ndim != 2:
        raise ShapeError(f"{name} must be a matrix (d a b, l), got shape {arr.shape}")
    return check_finite(name, np.asarray(arr, dtype=np.float64))


def load_digits_data(n_test: int = DIGITS_N_TEST
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download) in the ``X`` layout.

    Parameters
    ----------
    n_test : int, default 450
        The last ``n_test`` images form the test set, the others the training
        set (a fixed split, the same on every machine).

    Returns
    -------
    X_train : ndarray of float64, shape ``(64, 1797 - n_test)``
        Column ``i`` is ``vec(Z^{1,i})`` of the upright 8x8 image
        (column-major), pixel values unchanged (0..16).
    y_train : ndarray of int64
        Digits 0..9.
    X_test, y_test
        Likewise for the test set.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install 'sparsecnn[demo]'``).

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_digits_data()
    >>> X_train.shape, X_test.shape, y_train[:5]
    ((64, 1347), (64, 450), array([0, 1, 2, 3, 4]))
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "load_digits_data needs scikit-learn, which is not installed: "
            "pip install 'sparsecnn[demo]' (or pip install scikit-learn)"
        ) from e
    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)          # (l, 8, 8), upright
    total = images.shape[0]
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 0 < n_test < total:
        raise InputTypeError(f"n_test must be an integer in 1..{total - 1}, got {n_test!r}")
    l, a, b = images.shape
    X = np.ascontiguousarray(images.transpose(2, 1, 0).reshape(a * b, l))   # vec: rows fastest
    y = np.asarray(digits.target, dtype=np.int64)
    split = total - int(n_test)
    return X[:, :split].copy(), y[:split].copy(), X[:, split:].copy(), y[split:].copy()
