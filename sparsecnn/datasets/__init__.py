"""simpleNN's ``mnist-demo`` data and configuration, shipped inside the package.

Four files sit beside this module, copied byte for byte from simpleNN (licence
in ``COPYRIGHT.simpleNN``, kept with them):

- ``mnist-demo`` (``mnist-demo.mat``): 2,000 MNIST training images, ``Z`` of
  shape ``2000 x 784`` (raw pixels 0..255, one image per row) and labels ``y``;
- ``mnist-demo.t`` (``mnist-demo.t.mat``): 1,000 test images, the same layout;
- ``mnist-demo-layer4`` (``mnist-demo-layer4.config``): the network, three
  convolutional layers and one full layer.

- :func:`path` gives a packaged file's path from its name (or its file name);
- :func:`mnist_demo` reads both ``.mat`` files with
  :func:`sparsecnn.data.load_simplenn_mat`: ``X`` of shape ``(d^1 a^1 b^1, l)``,
  one column ``vec(Z^{1,i})`` per image, pixel values unchanged;
- :func:`resolve` is what the command line does with ``--config``, ``--train``,
  ``--test``, ``--val`` and ``--data``: an existing file is used as is, a packaged
  name gives the packaged file, anything else is an error listing the names.

Examples
--------
>>> path("mnist-demo-layer4").name
'mnist-demo-layer4.config'
>>> sorted(NAMES)
['mnist-demo', 'mnist-demo-layer4', 'mnist-demo.t']
>>> X, y, X_test, y_test = mnist_demo()
>>> X.shape, y.shape, X_test.shape, y_test.shape
((784, 2000), (2000,), (784, 1000), (1000,))
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np

from ..data import load_simplenn_mat
from ..exceptions import DataFormatError

__all__ = ["DIRECTORY", "NAMES", "DATA_NAMES", "CONFIG_NAMES", "path", "resolve", "mnist_demo"]

DIRECTORY = Path(__file__).resolve().parent
"""The folder of the packaged files."""

NAMES: dict[str, str] = {
    "mnist-demo": "mnist-demo.mat",
    "mnist-demo.t": "mnist-demo.t.mat",
    "mnist-demo-layer4": "mnist-demo-layer4.config",
}
"""Packaged name -> file name."""

DATA_NAMES = ("mnist-demo", "mnist-demo.t")
"""The names of simpleNN ``.mat`` data (``Z`` and ``y``)."""

CONFIG_NAMES = ("mnist-demo-layer4",)
"""The names of simpleNN configuration files."""

_FILES = (*NAMES.values(), "COPYRIGHT.simpleNN")


def _listing(names: tuple[str, ...] | None = None) -> str:
    shown = names if names is not None else tuple(NAMES)
    return ", ".join(f"{n} ({NAMES[n]})" for n in shown)


def path(name: str) -> Path:
    """The path of a packaged file.

    Parameters
    ----------
    name : str
        A packaged name (``"mnist-demo"``, ``"mnist-demo.t"``,
        ``"mnist-demo-layer4"``) or a packaged file name (``"mnist-demo.mat"``,
        ``"mnist-demo.t.mat"``, ``"mnist-demo-layer4.config"``,
        ``"COPYRIGHT.simpleNN"``).

    Returns
    -------
    Path
        An existing regular file inside the installed package.

    Raises
    ------
    DataFormatError
        If ``name`` is neither; the message lists the packaged names (and the
        closest one when the name looks like a typo).

    Examples
    --------
    >>> path("mnist-demo.t").name, path("COPYRIGHT.simpleNN").is_file()
    ('mnist-demo.t.mat', True)
    >>> path("mnist-dem")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: 'mnist-dem' is not a packaged file (did you mean 'mnist-demo'?); ...
    """
    if not isinstance(name, str):
        raise DataFormatError(f"a packaged name must be a string, got {name!r}; "
                              f"the packaged names are {_listing()}")
    file = NAMES.get(name, name if name in _FILES else None)
    if file is None:
        close = difflib.get_close_matches(name, [*NAMES, *_FILES], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataFormatError(f"{name!r} is not a packaged file{hint}; the packaged names are {_listing()}")
    return DIRECTORY / file


def resolve(name_or_path: str | os.PathLike[str], kind: str | None = None) -> Path:
    """A command-line file argument as a path: an existing file, else a packaged name.

    Parameters
    ----------
    name_or_path : str or path-like
        A path to a file, or one of the packaged names (a file of that name in
        the working folder wins over the packaged one).
    kind : {"data", "config"}, optional
        What the argument must be: ``"data"`` accepts the names of ``.mat``
        data, ``"config"`` the names of configurations.

    Returns
    -------
    Path

    Raises
    ------
    DataFormatError
        If the path does not exist and is not a packaged name of the right
        kind; the message lists the packaged names.

    Examples
    --------
    >>> resolve("mnist-demo", kind="data") == path("mnist-demo")
    True
    >>> resolve("mnist-demo", kind="config")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: 'mnist-demo' is packaged data (mnist-demo.mat), not a configuration; ...
    >>> resolve("mnist-demo.t.mta")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: mnist-demo.t.mta: no such file, and not a packaged name (did you mean 'mnist-demo.t.mat'?); ...
    """
    if kind not in (None, "data", "config"):
        raise ValueError(f"kind must be None, 'data' or 'config', got {kind!r}")
    text = os.fspath(name_or_path)
    given = Path(text)
    if given.exists() or text not in NAMES:
        if not given.exists():
            close = difflib.get_close_matches(text, [*NAMES, *NAMES.values()], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataFormatError(f"{text}: no such file, and not a packaged name{hint}; "
                                  f"the packaged names are {_listing()}")
        return given
    if kind == "config" and text not in CONFIG_NAMES:
        raise DataFormatError(f"{text!r} is packaged data ({NAMES[text]}), not a configuration; "
                              f"the packaged configurations are {_listing(CONFIG_NAMES)}")
    if kind == "data" and text not in DATA_NAMES:
        raise DataFormatError(f"{text!r} is a packaged configuration ({NAMES[text]}), not data; "
                              f"the packaged data are {_listing(DATA_NAMES)}")
    return path(text)


def mnist_demo() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """simpleNN's ``mnist-demo`` training and test sets in the slides' layout.

    Returns
    -------
    X : ndarray of float64, shape ``(784, 2000)``
        Column ``i`` is ``vec(Z^{1,i})`` (``d^1 a^1 b^1 = 1 * 28 * 28``), raw
        pixels 0..255: exactly :func:`sparsecnn.data.load_simplenn_mat` of
        ``mnist-demo.mat``.
    y : ndarray of int64, shape ``(2000,)``
        Labels 0..9.
    X_test : ndarray of float64, shape ``(784, 1000)``
    y_test : ndarray of int64, shape ``(1000,)``
        Likewise from ``mnist-demo.t.mat``.

    Examples
    --------
    >>> X, y, X_test, y_test = mnist_demo()
    >>> float(X.min()), float(X.max()), sorted(set(y_test.tolist())) == list(range(10))
    (0.0, 255.0, True)
    """
    X, y = load_simplenn_mat(path("mnist-demo"))
    X_test, y_test = load_simplenn_mat(path("mnist-demo.t"))
    return X, y, X_test, y_test
