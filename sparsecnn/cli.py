"""Command line: ``sparsecnn demo``, ``train``, ``predict``, ``check``, ``golden``, ``check-golden``, ``info``.

Where a subcommand takes a file (``--config``, ``--train``, ``--test``, ``--val``,
``predict --data``), the packaged names ``mnist-demo-layer4``, ``mnist-demo`` and
``mnist-demo.t`` (:mod:`sparsecnn.datasets`) work from any folder.

Each subcommand lives in its own module, which provides ``add_parser(subparsers)``
registering its arguments and setting ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__, demo, machine, oracle_cli, train_cli


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sparsecnn`` command, with every subcommand registered.

    Returns
    -------
    argparse.ArgumentParser
        Its subcommands are ``demo`` (:mod:`sparsecnn.demo`), ``train`` and
        ``predict`` (:mod:`sparsecnn.train_cli`) and ``check``, ``golden`` and
        ``check-golden`` (:mod:`sparsecnn.oracle_cli`) and ``info``
        (:mod:`sparsecnn.machine`); each sets ``func``.

    Examples
    --------
    >>> args = build_parser().parse_args(["demo", "--solver", "sgd", "--epochs", "1"])
    >>> args.command, args.solver, args.epochs, callable(args.func)
    ('demo', 'sgd', 1, True)
    """
    parser = argparse.ArgumentParser(
        prog="sparsecnn",
        description="CNNs computed with the slides' sparse matrices.",
    )
    parser.add_argument("--version", action="version", version=f"sparsecnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    train_cli.add_parser(sub)
    oracle_cli.add_parser(sub)
    machine.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sparsecnn`` command; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success; what the subcommand returns otherwise.

    Examples
    --------
    A subcommand that fails reports on stderr and returns a non-zero status (2: an
    argument that cannot be used, checked before any work):

    >>> main(["predict", "--model", "absent.npz", "--data", "absent.mat"])
    2

    ``--version`` (and ``--help``) end through ``SystemExit``, as argparse does:

    >>> try:
    ...     main(["--version"])
    ... except SystemExit as stop:
    ...     print("exit status", stop.code)  # doctest: +ELLIPSIS
    sparsecnn ...
    exit status 0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader of stdout went away (``sparsecnn info | head``): stop quietly, as the shell's own
        # tools do, and keep Python from reporting the failed flush of stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
