"""``sparsecnn check``, ``sparsecnn golden`` and ``sparsecnn check-golden``: the oracle from the command line.

``sparsecnn check --model module:function [--input-shape C,H,W] [--instances N --seed S --data FILE.mat]
[--products grad,Jv,JTv,Gv]`` imports ``function`` from ``module`` (a module
name on ``sys.path`` or the current folder, or a ``.py`` file path), calls it
without arguments to get a PyTorch ``nn.Sequential``, runs
:func:`sparsecnn.check` on ``N`` random instances (standard normal images,
labels drawn from ``S``) or on the first ``N`` instances of a simpleNN ``.mat``
file (pixels scaled by 1/255 and centred on their mean, as simpleNN's example
does) and prints the report.

``sparsecnn golden --config CONFIG --out case.npz [--instances N --seed S --C C]``
writes a golden file (:mod:`sparsecnn.oracle.golden`) for the network of a
simpleNN configuration file or a JSON network description.

``sparsecnn check-golden case.npz RESULTS.npz`` compares a results file with it
and prints the report.

Exit status: 0 when every row passes, 1 when some row fails, 2 when the
check could not run (bad arguments, a model or file that cannot be read; the
message goes to standard error).

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="sparsecnn")
>>> add_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["check", "--model", "mymodels:small", "--input-shape", "1,28,28"])
>>> args.input_shape, args.instances, args.products
((1, 28, 28), 8, ('grad',))
>>> parser.parse_args(["golden", "--config", "c.config", "--out", "case.npz"]).seed
0
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._argtypes import integer, number
from ._checks import FLOAT_WARNINGS
from ._safe_io import unwritable
from .data import center, load_simplenn_mat, scale
from .exceptions import ConfigError, SparseCNNError
from .interop import TREAT_AS, X_to_torch, _torch
from .oracle import check
from .oracle.check import _parse_products
from .oracle.golden import check_golden, load_network_file, make_golden, write_golden

__all__ = ["add_parser", "run_check", "run_golden", "run_check_golden", "load_model_function",
           "treat_as_classes"]


# ----------------------------------------------------------------- parsing
def _shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"must be channels,height,width (PyTorch's order), three positive integers, got {text!r}")
    return values[0], values[1], values[2]


def _treat_pair(text: str) -> tuple[str, str]:
    """``"CLASS=OPERATION"`` of ``--treat-as`` as ``(CLASS, OPERATION)``."""
    name, sep, op = text.partition("=")
    if not sep or not name.strip() or op.strip() not in TREAT_AS:
        raise argparse.ArgumentTypeError(f"must be CLASS=OPERATION with OPERATION one of {', '.join(TREAT_AS)} "
                                         f"(e.g. MyReLU=relu), got {text!r}")
    return name.strip(), op.strip()


def treat_as_classes(model: Any, pairs: Sequence[tuple[str, str]]) -> dict[type, str]:
    """``treat_as`` for :func:`sparsecnn.check` from ``--treat-as`` pairs: each class named among the model's modules.

    Examples
    --------
    >>> import torch
    >>> class MyReLU(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.clamp(min=0)
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), MyReLU())
    >>> treat_as_classes(model, [("MyReLU", "relu")]) == {MyReLU: "relu"}
    True
    >>> treat_as_classes(model, [("MyTanh", "tanh")])
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: --treat-as MyTanh=tanh: the model has no module of class MyTanh (its classes: Conv2d, MyReLU, Sequential)
    """
    classes: dict[str, set[type]] = {}
    for module in model.modules():
        classes.setdefault(type(module).__name__, set()).add(type(module))
    treat: dict[type, str] = {}
    for name, op in pairs:
        found = classes.get(name, set())
        if len(found) != 1:
            what = "no module of class" if not found else "several different classes named"
            raise ConfigError(f"--treat-as {name}={op}: the model has {what} {name} "
                              f"(its classes: {', '.join(sorted(classes))})")
        treat[found.pop()] = op
    return treat


def _products(text: str) -> tuple[str, ...]:
    try:
        return _parse_products(text)
    except SparseCNNError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subparsers: Any) -> None:
    """Register ``check``, ``golden`` and ``check-golden`` on ``subparsers``.

    Parameters
    ----------
    subparsers : argparse action
        What ``ArgumentParser.add_subparsers()`` returned.  The parsers set ``func``
        to :func:`run_check`, :func:`run_golden` and :func:`run_check_golden`.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["check", "--model", "m:f", "--input-shape", "3x8x8",
    ...                           "--products", "gv,JTu"])
    >>> args.input_shape, args.products, args.func is run_check
    ((3, 8, 8), ('JTv', 'Gv'), True)
    >>> args = parser.parse_args(["check-golden", "case.npz", "results.npz", "--rtol", "1e-6"])
    >>> args.golden.name, args.results.name, args.rtol
    ('case.npz', 'results.npz', 1e-06)
    """
    c = subparsers.add_parser(
        "check", help="check a PyTorch model against sparsecnn (f, gradient, Jv, J'u, Gv)",
        description="Import a function returning a PyTorch model (an nn.Sequential, or any nn.Module that "
                    "torch.fx can trace), compare its f, gradient and "
                    "(optionally) Jv, J^T u and Gv with sparsecnn's float64 reference, and print the report. "
                    "Exit status 0 when it passes, 1 when it fails, 2 on errors.")
    c.add_argument("--model", required=True, metavar="MODULE:FUNCTION",
                   help="module (or path/to/file.py) and the function returning the model")
    c.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                   help="channels,height,width of one image (needed without --data)")
    c.add_argument("--instances", type=integer(1), default=8, help="instances l (default 8)")
    c.add_argument("--seed", type=integer(0), default=0,
                   help="seed of the random data, labels and vectors (default 0)")
    c.add_argument("--data", type=Path, metavar="FILE.mat",
                   help="simpleNN .mat data (Z, y) instead of random instances: the first N are used")
    c.add_argument("--products", type=_products, default=("grad",),
                   help="comma-separated, from grad,Jv,JTv,Gv (default grad; output and f always)")
    c.add_argument("--C", type=number(0, strict=True), default=math.inf, help="regularisation C of f (default inf: none)")
    c.add_argument("--loss", choices=("squared", "cross-entropy"),
                   help="the loss of f (default: cross-entropy for a model ending in log_softmax, else squared)")
    c.add_argument("--rtol", type=number(0, strict=False),
                   help="relative tolerance (default max(1e4 eps, 1e-9) of the model's dtype)")
    c.add_argument("--atol", type=number(0, strict=False), default=0.0, help="absolute tolerance (default 0)")
    c.add_argument("--own-winners", action="store_true",
                   help="build P_pool from sparsecnn's argmax instead of the model's max-pool indices")
    c.add_argument("--worst", type=integer(0), default=5, help="entries listed per failing row (default 5)")
    c.add_argument("--treat-as", type=_treat_pair, action="append", default=[], metavar="CLASS=OPERATION",
                   help="read the model's modules of class CLASS as OPERATION (one of "
                        f"{', '.join(TREAT_AS)}), comparing their forward and backward as that "
                        "operation's; repeatable")
    c.set_defaults(func=run_check)

    g = subparsers.add_parser(
        "golden", help="write a golden file: inputs, parameters and f, gradient, Jv, J'u, Gv in both layouts",
        description="Compute f, the gradient, Jv, J^T u and Gv with sparsecnn for the network of CONFIG on "
                    "random instances and parameters, and write them with the inputs, in sparsecnn's and "
                    "PyTorch's layouts, to an .npz file (schema: sparsecnn.oracle.golden).")
    g.add_argument("--config", required=True, type=Path,
                   help="simpleNN configuration file, or a JSON network description")
    g.add_argument("--out", required=True, type=Path, help="the .npz file to write")
    g.add_argument("--instances", type=integer(1), default=4, help="instances l (default 4)")
    g.add_argument("--seed", type=integer(0), default=0, help="seed (default 0)")
    g.add_argument("--C", type=number(0, strict=True), default=math.inf, help="regularisation C of f (default inf: none)")
    g.set_defaults(func=run_golden)

    k = subparsers.add_parser(
        "check-golden", help="compare results (f, grad, Jv, JTu, Gv in an .npz) with a golden file",
        description="Compare someone's f, grad, Jv, JTu, Gv (plain names: sparsecnn's layout; torch/... "
                    "names: PyTorch's) with a golden file and print the report. Exit status 0 when it "
                    "passes, 1 when it fails, 2 on errors.")
    k.add_argument("golden", type=Path, help="golden file written by 'sparsecnn golden'")
    k.add_argument("results", type=Path, help="results .npz")
    k.add_argument("--rtol", type=number(0, strict=False),
                   help="relative tolerance (default max(1e4 eps, 1e-9) of the results' dtype)")
    k.add_argument("--atol", type=number(0, strict=False), default=0.0, help="absolute tolerance (default 0)")
    k.add_argument("--worst", type=integer(0), default=5, help="entries listed per failing row (default 5)")
    k.set_defaults(func=run_check_golden)


def _fail(command: str, exc: BaseException) -> int:
    print(f"sparsecnn {command}: error: {exc}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------- check
def load_model_function(spec: str) -> Any:
    """Call ``function`` of ``module`` for ``"module:function"`` (or ``"path/file.py:function"``).

    A module name is imported (the current folder added to ``sys.path``); a
    ``.py`` path is loaded from its file.

    Parameters
    ----------
    spec : str
        ``"module:function"`` or ``"path/file.py:function"``.

    Returns
    -------
    object
        What the function returns (for ``sparsecnn check``, a ``torch.nn.Sequential``).

    Raises
    ------
    ConfigError
        If the spec is malformed, the module cannot be imported, or the function is missing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny_models.py").write_text(
    ...     "import torch\\n"
    ...     "def small():\\n"
    ...     "    torch.manual_seed(0)\\n"
    ...     "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),\\n"
    ...     "        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(18, 3))\\n")
    >>> model = load_model_function(f"{folder / 'tiny_models.py'}:small")
    >>> type(model).__name__, len(model)
    ('Sequential', 5)
    >>> load_model_function("no colon")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: --model must be MODULE:FUNCTION (e.g. mymodels:small_cnn), got 'no colon'
    """
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"--model must be MODULE:FUNCTION (e.g. mymodels:small_cnn), got {spec!r}")
    try:
        if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"--model: no file {module_name}")
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ConfigError(f"--model: cannot import {module_name}")
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:   # the user's module may raise anything while importing
        raise ConfigError(f"--model: importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"--model: {module_name} has no function {func_name!r}")
    try:
        return func()
    except Exception as exc:
        raise ConfigError(f"--model: {spec}() failed: {type(exc).__name__}: {exc}") from None


def run_check(args: argparse.Namespace) -> int:
    """Run ``sparsecnn check``; returns the exit status.

    Loads the model, draws ``--instances`` standard normal images of shape
    ``(l, d^1, a^1, b^1)`` (or reads ``--data``), runs :func:`sparsecnn.check` and
    prints the report.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``check`` arguments (see :func:`add_parser`).

    Returns
    -------
    int
        0 when every row passes, 1 when one fails, 2 when the check could not run.

    Examples
    --------
    A float32 model in a temporary ``.py`` file, checked on two random ``6 x 6`` images:

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny_models.py").write_text(
    ...     "import torch\\n"
    ...     "def small():\\n"
    ...     "    torch.manual_seed(0)\\n"
    ...     "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),\\n"
    ...     "        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(18, 3))\\n")
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["check", "--model", f"{folder / 'tiny_models.py'}:small",
    ...                           "--input-shape", "1,6,6", "--instances", "2"])
    >>> run_check(args)  # doctest: +ELLIPSIS
    sparsecnn check: PyTorch float32 model against the sparsecnn float64 reference
    command line: --model .../tiny_models.py:small; data: 2 random instances (standard normal, seed 0)
    ...
    PASSED: 8 rows within tolerance
    0
    """
    try:
        return _check(args)
    except (SparseCNNError, OSError) as exc:
        return _fail("check", exc)


def _check(args: argparse.Namespace) -> int:
    torch = _torch()
    model = load_model_function(args.model)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"--model: {args.model}() returned {type(model).__name__}, not a torch.nn.Module")
    rng = np.random.default_rng(args.seed)
    if args.data is not None:
        shape = None
        if args.input_shape is not None:
            c, h, w = args.input_shape
            shape = (h, w, c)
        X, y = load_simplenn_mat(args.data, shape=shape)
        if shape is None:
            side = math.isqrt(X.shape[0])
            shape = (side, side, 1)
        l = min(args.instances, X.shape[1])
        X, _ = center(scale(X[:, :l], 1 / 255))
        x = X_to_torch(shape, X)
        labels: Any = y[:l]
        source = f"{args.data} (first {l} instances, scaled by 1/255 and centred)"
    else:
        if args.input_shape is None:
            raise ConfigError("--input-shape C,H,W is needed without --data")
        x = torch.as_tensor(rng.standard_normal((args.instances, *args.input_shape)))
        labels = None
        source = f"{args.instances} random instances (standard normal, seed {args.seed})"
    report = check(model, x, labels, C=args.C, products=args.products, seed=args.seed, rtol=args.rtol,
                   atol=args.atol, use_model_winners=not args.own_winners, worst=args.worst,
                   loss=getattr(args, "loss", None),
                   treat_as=treat_as_classes(model, getattr(args, "treat_as", [])) or None)
    report.setting.insert(0, f"command line: --model {args.model}; data: {source}")
    print(report)
    return 0 if report.passed else 1


# ------------------------------------------------------------------ golden
def run_golden(args: argparse.Namespace) -> int:
    """Run ``sparsecnn golden``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``golden`` arguments (see :func:`add_parser`).

    Returns
    -------
    int
        0 when the file was written, 2 when the network or the file failed.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "net.json").write_text(json.dumps({"input_shape": [6, 6, 1], "layers": [
    ...     {"kind": "conv", "d_out": 2, "h": 3, "p": 1, "r": 2}, {"kind": "full", "n_out": 3}]}))
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["golden", "--config", str(folder / "net.json"),
    ...                           "--out", str(folder / "case.npz"), "--instances", "2"])
    >>> run_golden(args)  # doctest: +ELLIPSIS
    wrote .../case.npz: network of .../net.json (L = 2, n = 77), l = 2, seed 0, C = inf
    f = ...
    arrays: X, y, theta, output, f, grad, v, u, Jv, JTu, Gv (sparsecnn's layout), torch/... (PyTorch's layout); schema: sparsecnn.oracle.golden
    0
    """
    problem = unwritable(args.out, "--out")
    if problem is not None:
        print(f"sparsecnn golden: error: {problem}", file=sys.stderr)
        return 2
    try:
        net = load_network_file(args.config)
        with warnings.catch_warnings():    # numpy's overflow warnings: make_golden names what is not finite
            warnings.filterwarnings("ignore", FLOAT_WARNINGS, RuntimeWarning)
            golden = make_golden(net, instances=args.instances, seed=args.seed, C=args.C)
        write_golden(args.out, golden)
    except (SparseCNNError, OSError) as exc:
        return _fail("golden", exc)
    print(f"wrote {args.out}: network of {args.config} (L = {net.L}, n = {net.n_params}), l = {golden.l}, "
          f"seed {args.seed}, C = {golden.C:g}")
    print(f"f = {golden.f:.17g}")
    print("arrays: X, y, theta, output, f, grad, v, u, Jv, JTu, Gv (sparsecnn's layout), torch/... "
          "(PyTorch's layout); schema: sparsecnn.oracle.golden")
    return 0


def run_check_golden(args: argparse.Namespace) -> int:
    """Run ``sparsecnn check-golden``; returns the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``check-golden`` arguments (see :func:`add_parser`).

    Returns
    -------
    int
        0 when every row passes, 1 when one fails, 2 when a file cannot be read.

    Examples
    --------
    Results that copy the golden file's own ``J v`` pass:

    >>> import tempfile, pathlib
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.oracle.golden import make_golden, write_golden
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    >>> write_golden(folder / "case.npz", golden)
    >>> np.savez(folder / "results.npz", Jv=golden.Jv)
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> run_check_golden(parser.parse_args(["check-golden", str(folder / "case.npz"),
    ...                                     str(folder / "results.npz")]))  # doctest: +ELLIPSIS
    sparsecnn check-golden: results against the sparsecnn float64 reference
    ...
    PASSED: 1 rows within tolerance
    0
    """
    try:
        report = check_golden(args.golden, args.results, rtol=args.rtol, atol=args.atol, worst=args.worst)
    except (SparseCNNError, OSError) as exc:
        return _fail("check-golden", exc)
    print(report)
    return 0 if report.passed else 1
