"""Command line: ``sparsecnn demo`` (and the other subcommands as they come).

Each subcommand lives in its own module, which provides ``add_parser(subparsers)``
registering its arguments and setting ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sparsecnn`` command."""
    from . import demo, train_cli

    parser = argparse.ArgumentParser(
        prog="sparsecnn",
        description="CNNs computed with the slides' sparse matrices.",
    )
    parser.add_argument("--version", action="version", version=f"sparsecnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    train_cli.add_parser(sub)
    from . import oracle_cli

    oracle_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sparsecnn`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
