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
from collections.abc import Callable

__all__ = ["integer", "number"]


def integer(minimum: int) -> Callable[[str], int]:
    """An integer ``>= minimum``."""

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

    NaN is always refused; ``inf`` only with ``finite=True``.
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
