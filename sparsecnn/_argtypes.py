"""Argument checkers for the ``sparsecnn`` subcommands (argparse ``type=`` callables).

Examples
--------
>>> integer(1)("3")
3
>>> number(0, strict=True)("inf")
inf
>>> number(0, strict=True, finite=True)("0")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a finite number > 0, got '0'
"""

from __future__ import annotations

import argparse
import math
import urllib.parse
from collections.abc import Callable

__all__ = ["integer", "number", "address"]

_SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")


def integer(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=`` callable accepting an integer ``>= minimum``.

    Parameters
    ----------
    minimum : int
        The smallest value accepted.

    Returns
    -------
    callable
        ``parse(text) -> int``; raises ``argparse.ArgumentTypeError`` otherwise.

    Examples
    --------
    >>> at_least_one = integer(1)
    >>> at_least_one("4")
    4
    >>> at_least_one("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 1, got '0'
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


def number(minimum: float, *, strict: bool, finite: bool = False,
           below: float | None = None) -> Callable[[str], float]:
    """A number ``> minimum`` (``strict``) or ``>= minimum``, optionally ``< below``.

    NaN is always refused; ``inf`` too with ``finite=True``.

    Parameters
    ----------
    minimum : float
        Lower bound.
    strict : bool
        Refuse ``minimum`` itself.
    finite : bool
        Refuse ``inf``.
    below : float, optional
        Exclusive upper bound.

    Returns
    -------
    callable
        ``parse(text) -> float``; raises ``argparse.ArgumentTypeError`` otherwise.

    Examples
    --------
    >>> momentum = number(0, strict=False, below=1)
    >>> momentum("0"), momentum("0.9")
    (0.0, 0.9)
    >>> momentum("1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number >= 0 and < 1, got '1'
    """
    what = f"{'a finite number' if finite else 'a number'} {'>' if strict else '>='} {minimum:g}"
    if below is not None:
        what += f" and < {below:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = value > minimum if strict else value >= minimum       # False for NaN
        if below is not None:
            ok = ok and value < below
        if finite:
            ok = ok and math.isfinite(value)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def address(text: str) -> str:
    """An argparse ``type=`` callable accepting a Dask scheduler address ``[scheme://]host:port``.

    Examples
    --------
    >>> address("tcp://127.0.0.1:8786"), address("node7:8786")
    ('tcp://127.0.0.1:8786', 'node7:8786')
    >>> address("notanaddress")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a scheduler address such as tcp://host:8786, got 'notanaddress'
    """
    bad = argparse.ArgumentTypeError(f"must be a scheduler address such as tcp://host:8786, got {text!r}")
    full = text if "://" in text else f"tcp://{text}"
    try:
        parts = urllib.parse.urlsplit(full)
        port = parts.port
    except ValueError:
        raise bad from None
    if parts.scheme == "inproc":
        return text
    if parts.scheme not in _SCHEMES or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise bad
    return text
