"""``sparsecnn train`` and ``sparsecnn predict``: simpleNN's workflow from the command line.

``sparsecnn train --config CONFIG --train TRAIN [--test TEST] [--val VAL] --solver newton|sgd|adam ...``
reads a simpleNN configuration and simpleNN ``.mat`` data, scales the pixels
(``--scale 255``: by 1/255, the default; ``--scale minmax``: each image by its own
minimum and maximum, which is what simpleNN's MNIST example does) and centres
them on the training mean, then trains.  Each of ``--config``, ``--train``,
``--test``, ``--val`` (and ``predict --data``) is a path or one of the packaged
names ``mnist-demo-layer4``, ``mnist-demo``, ``mnist-demo.t``
(:mod:`sparsecnn.datasets`), so

    sparsecnn train --config mnist-demo-layer4 --train mnist-demo --test mnist-demo.t --iter-max 5

works from any folder.  ``--C`` is simpleNN's: the objective uses ``C = (--C) * l``.
``--loss`` picks ``xi``: the squared loss (the default) or the cross-entropy
``-log softmax(z^{L+1,i})_{y_i}``, for every solver.

Output, as simpleNN's: ``initial f: ...``, one line per Newton iteration
(``k-iter f: ... |g|: ... alpha: ... ratio: ... lambda: ... #CG: ... actred: ...
prered: ...`` and ``val_acc: ...`` with validation data) or per epoch, and
``total_#CG: ...``; a progress bar on stderr; ``--log FILE`` writes the same
lines to a file.  ``--val`` keeps the model of the iteration (epoch) with the best
validation accuracy, prints that iteration and saves that model; without it the
last iterate is kept, and ``--test`` only reports accuracies (it never chooses
the model).  With ``--test`` the run ends with the line ``test_acc: <fraction>``.
``--save`` writes the model (network, ``theta``, the training mean and the
scaling) with :func:`sparsecnn.model_io.save_model`; ``--plot`` draws ``f`` and
the validation accuracy per iteration.

``sparsecnn predict --model MODEL.npz --data TEST [--bsize N] [--output LABELS.txt]``
applies the saved preprocessing, prints ``accuracy: <fraction>`` and, on
request, writes the predicted labels, one per line.

Examples
--------
>>> parser = argparse.ArgumentParser(prog="sparsecnn")
>>> add_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["train", "--config", "c", "--train", "t.mat", "--C", "0.01"])
>>> args.solver, args.C, args.GNsize, args.CGmax, args.scale
('newton', 0.01, None, 250, '255')
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.io
from tqdm import tqdm

from . import datasets, objective
from ._argtypes import address, integer, number
from ._checks import FLOAT_WARNINGS
from ._safe_io import unwritable
from .data import SCALINGS, center, load_simplenn_mat, scale_pixels
from .exceptions import DataFormatError, DivergenceError, LabelError, NonFiniteError, SparseCNNError
from .model_io import Model, load_model, save_model
from .network import Network
from .optim import adam, newton, sgd
from .optim._common import History

__all__ = ["add_parser", "run_train", "run_predict", "plot_history", "preprocess"]

PIXEL_SCALE = 1 / 255
"""The factor of ``--scale 255``."""

_NAMES = ", ".join(datasets.NAMES)


def add_parser(subparsers: Any) -> None:
    """Register ``train`` and ``predict`` on ``subparsers``.

    Parameters
    ----------
    subparsers : argparse action
        What ``ArgumentParser.add_subparsers()`` returned.  Each of the two
        parsers sets ``func`` to :func:`run_train` or :func:`run_predict`.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["predict", "--model", "m.npz", "--data", "mnist-demo.t", "--bsize", "64"])
    >>> args.func is run_predict, args.model.name, args.data, args.bsize, args.output
    (True, 'm.npz', 'mnist-demo.t', 64, None)
    >>> args = parser.parse_args(["train", "--config", "c", "--train", "t.mat", "--solver", "adam"])
    >>> args.bsize, args.lr, args.epoch_max, args.val, args.log        # None: the solver's own default
    (None, None, 500, None, None)
    """
    t = subparsers.add_parser(
        "train", help="train a CNN (Newton, SGD or Adam) on simpleNN .mat data",
        description="Train a CNN described by a simpleNN configuration file. Pixels are scaled (--scale) "
                    "and centred on the training mean; the objective is "
                    "theta'theta/(2C) + (1/l) sum_i xi_i with C = (--C) * l and the loss xi_i (--loss) "
                    "either ||z^{L+1,i} - y^i||^2 or -log softmax(z^{L+1,i})_{y_i}. "
                    f"Files are paths or the packaged names {_NAMES}.")
    t.add_argument("--config", required=True, help="simpleNN configuration file, or mnist-demo-layer4")
    t.add_argument("--train", required=True, help="training data (.mat with Z and y), or mnist-demo")
    t.add_argument("--test", help="test data: accuracy per iteration (without --val) and at the end")
    t.add_argument("--val", metavar="FILE",
                   help="validation data (.mat with Z and y): keep, print and save the model of the "
                        "iteration (epoch) with the best validation accuracy, as simpleNN does")
    t.add_argument("--scale", choices=SCALINGS, default="255",
                   help="pixel scaling before centring: 255 divides by 255 (default); minmax maps each "
                        "image to [0, 1] by its own minimum and maximum, as simpleNN's example does")
    t.add_argument("--solver", choices=["newton", "sgd", "adam"], default="newton")
    t.add_argument("--loss", choices=sorted(objective.LOSSES, reverse=True), default="squared",
                   help="the loss xi: squared ||z - onehot(y)||^2 (default) or cross-entropy -log softmax(z)_y")
    t.add_argument("--C", type=number(0, strict=True, finite=True), default=0.01,
                   help="simpleNN's C: the objective uses C * l (default 0.01)")
    g = t.add_argument_group("Newton")
    g.add_argument("--GNsize", type=integer(1), help="subsample size for G (default ceil(0.05 l))")
    g.add_argument("--iter-max", type=integer(1), default=100, help="Newton iterations (default 100)")
    g.add_argument("--xi", type=number(0, strict=True, finite=True), default=0.1, help="CG relative tolerance (default 0.1)")
    g.add_argument("--CGmax", type=integer(1), default=250, help="CG iteration limit (default 250)")
    g.add_argument("--lambda", dest="lam", type=number(0, strict=False, finite=True), default=1.0,
                   help="initial Levenberg-Marquardt lambda (default 1)")
    g.add_argument("--jacobian", choices=["recompute", "store"], default="recompute",
                   help="recompute J v and J^T u (default) or store dz/dS per instance (simpleNN)")
    dist = g.add_mutually_exclusive_group()
    dist.add_argument("--scheduler", metavar="ADDRESS", type=address,
                      help="compute f, g and G v on the Dask cluster at ADDRESS (e.g. tcp://host:8786)")
    dist.add_argument("--workers", type=integer(1), metavar="N",
                      help="compute f, g and G v on a local Dask cluster of N worker processes")
    s = t.add_argument_group("SGD and Adam")
    s.add_argument("--bsize", type=integer(1),
                   help="mini-batch size (default 128); for Newton, instances per forward pass (default 1024)")
    s.add_argument("--epoch-max", type=integer(1), default=500, help="epochs (default 500)")
    s.add_argument("--lr", type=number(0, strict=True, finite=True), help="learning rate (default 0.01 for SGD, 0.001 for Adam)")
    s.add_argument("--momentum", type=number(0, strict=False, finite=True, below=1), default=0.0,
                   help="SGD momentum in [0, 1) (default 0)")
    s.add_argument("--decay", type=number(0, strict=False, finite=True), default=0.0, help="SGD lr decay: lr/(1 + decay t)")
    t.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float type of the network's products; f, the gradient and CG stay float64 "
                        "(default float64)")
    t.add_argument("--gn-dtype", choices=["float64", "float32"],
                   help="Newton: float type of the Gauss-Newton products in CG alone (default: --dtype)")
    t.add_argument("--seed", type=integer(0), default=111, help="seed of the initial theta and of sampling (default 111)")
    t.add_argument("--save", type=Path, help="write the model here (.npz, no pickle)")
    t.add_argument("--log", type=Path, metavar="FILE", help="write the per-iteration lines to this file too")
    t.add_argument("--plot", type=Path, help="draw f and validation accuracy per iteration to this image")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-iteration lines")
    t.set_defaults(func=run_train)

    p = subparsers.add_parser("predict", help="accuracy of a saved model on simpleNN .mat data",
                              description="Apply a model saved by 'sparsecnn train --save' to data "
                                          f"(a path or one of the packaged names {_NAMES}).")
    p.add_argument("--model", required=True, type=Path, help="model file written by train --save")
    p.add_argument("--data", required=True, help="data (.mat with Z and y), or mnist-demo.t")
    p.add_argument("--bsize", type=integer(1), help="instances per forward pass (default 1024)")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the predicted labels here, one per line")
    p.set_defaults(func=run_predict)


def _fail(command: str, exc: BaseException) -> int:
    print(f"sparsecnn {command}: error: {exc}", file=sys.stderr)
    return 1


def _duration(seconds: float) -> str:
    """``seconds`` for a person: ``"40 s"``, ``"7 min"``, ``"2.5 h"``.

    Examples
    --------
    >>> _duration(40.2), _duration(420), _duration(9000)
    ('40 s', '7 min', '2.5 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_train(args: argparse.Namespace) -> int:
    """Run ``sparsecnn train``; returns the exit status.

    Reads ``--config`` and ``--train`` (``Z`` of shape ``(l, d^1 a^1 b^1)``, ``y`` of
    shape ``(l, 1)``), turns the data into ``X`` of shape ``(d^1 a^1 b^1, l)``, scales
    (``--scale``), centres, trains with ``C = (--C) l`` and prints simpleNN's lines and
    a summary line; with ``--val`` the best iteration, with ``--save``, ``--plot`` and
    ``--test`` what it wrote and ``test_acc: <fraction>``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train`` arguments (see :func:`add_parser`).

    Returns
    -------
    int
        0 on success; 2 when ``--save``, ``--plot`` or ``--log`` cannot be written (checked
        before any work); 1 after printing the error on stderr when the configuration,
        the data or a file fails (:class:`~sparsecnn.exceptions.SparseCNNError`, ``OSError``)
        or the run diverges (:class:`~sparsecnn.exceptions.DivergenceError`; with
        ``--save``, the last finite ``theta`` is saved, marked ``"diverged"`` in its metadata).

    Examples
    --------
    Two Newton iterations on 30 random ``6 x 6`` images in a temporary folder:

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny.config").write_text(
    ...     "L = 2; LC = 1; LF = 1; wd_input = 6; ht_input = 6; ch_input = [1,2]; wd_pad_added = [1]; "
    ...     "wd_filter = [3]; strides = [1]; wd_subimage_pool = [2]; full_neurons = [3];".replace("; ", ";\\n"))
    >>> rng = np.random.default_rng(0)
    >>> scipy.io.savemat(folder / "train.mat", {"Z": rng.integers(0, 256, (30, 36)),
    ...                                         "y": rng.integers(0, 3, (30, 1))})
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "--config", str(folder / "tiny.config"),
    ...                           "--train", str(folder / "train.mat"), "--iter-max", "2", "--quiet",
    ...                           "--save", str(folder / "model.npz")])
    >>> run_train(args)  # doctest: +ELLIPSIS
    iteration 1 took ... s: 2 iterations will take roughly ... s (later iterations often take more CG steps)
    newton: 2 iterations in ... s, f 0.91..., |g| 0.44..., total #CG ...
    model saved to .../model.npz
    0
    """
    problem = check_outputs(args)
    if problem is not None:
        print(f"sparsecnn train: error: {problem}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():     # numpy's overflow warnings: the divergence checks report them
            warnings.filterwarnings("ignore", FLOAT_WARNINGS, RuntimeWarning)
            return _train(args)
    except (SparseCNNError, OSError) as exc:
        return _fail("train", exc)


def _same(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:                                 # one does not exist (yet): compare the names
        return os.path.realpath(a) == os.path.realpath(b)


def clobbers(args: argparse.Namespace, outputs: tuple[str, ...], inputs: tuple[str, ...]) -> str | None:
    """Why writing an output option would destroy an input file or another output, or None.

    ``--save`` naming the ``--train`` file would replace the data with the model (atomically, so
    the data are gone); two outputs naming one file would leave only the last written.

    Examples
    --------
    >>> import tempfile
    >>> data = Path(tempfile.mkdtemp()) / "run.mat"
    >>> _ = data.write_bytes(b"MATLAB")
    >>> check = argparse.Namespace(save=data, log=data.with_suffix(".log"), train=str(data))
    >>> clobbers(check, ("save", "log"), ("train",))  # doctest: +ELLIPSIS
    '--save .../run.mat is the --train file .../run.mat: writing it would replace that file; give another name'
    >>> clobbers(argparse.Namespace(save=Path("a.npz"), log=Path("a.npz")), ("save", "log"), ())
    '--save and --log both name a.npz: one would replace the other; give two names'
    """
    given = [(o, getattr(args, o, None)) for o in outputs]
    written = [(o, p) for o, p in given if p is not None]
    for option, path in written:
        for source in inputs:
            text = getattr(args, source, None)
            if text is None:
                continue
            candidates = [text] + ([datasets.path(text)] if text in datasets.NAMES else [])
            if any(_same(path, c) for c in candidates if os.path.exists(c)):
                return (f"--{option} {path} is the --{source} file {text}: writing it would replace that file; "
                        "give another name")
    for k, (option, path) in enumerate(written):
        for other, other_path in written[k + 1:]:
            if _same(path, other_path):
                return f"--{option} and --{other} both name {path}: one would replace the other; give two names"
    return None


def check_outputs(args: argparse.Namespace) -> str | None:
    """Why ``--save``, ``--plot`` or ``--log`` could not be written after training, or None.

    Checked before any work starts, so a long run is not lost to a typo: the folder must
    exist and be writable, the name must not be a folder, and ``--plot`` needs matplotlib
    and a format it writes (its suffix).

    Examples
    --------
    >>> check_outputs(argparse.Namespace(save=Path("/nonexistent/m.npz"), plot=None))
    '--save /nonexistent/m.npz: the folder /nonexistent does not exist'
    >>> check_outputs(argparse.Namespace(save=None, plot=Path("p.xyz")))  # doctest: +ELLIPSIS
    "--plot p.xyz: matplotlib cannot write '.xyz' files; use one of .avif, .eps, ..."
    """
    for option in ("save", "plot", "log"):
        path = getattr(args, option, None)
        if path is not None:
            problem = unwritable(path, f"--{option}")
            if problem is not None:
                return problem
    problem = clobbers(args, ("save", "plot", "log"), ("config", "train", "test", "val"))
    if problem is not None:
        return problem
    plot = getattr(args, "plot", None)
    if plot is not None and Path(plot).suffix:
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError as exc:  # pragma: no cover - matplotlib is an optional dependency
            return f"--plot needs matplotlib ({exc})"
        formats = sorted(FigureCanvasBase.get_supported_filetypes())
        if Path(plot).suffix[1:].lower() not in formats:
            return (f"--plot {plot}: matplotlib cannot write {Path(plot).suffix!r} files; use one of "
                    + ", ".join("." + f for f in formats))
    return None


def _load(text: str, shape: tuple[int, int, int], option: str) -> tuple[np.ndarray, np.ndarray]:
    """``--train``/``--test``/``--val``/``--data`` read into ``(X, y)``; errors name the option."""
    path = datasets.resolve(text, "data")
    try:
        X, y = load_simplenn_mat(path, shape=shape)
    except DataFormatError as exc:
        labels = True
        if ": missing variable" in str(exc):            # not a corrupt file that merely hides y
            with contextlib.suppress(Exception):       # only to word the message
                labels = "y" in {name for name, _, _ in scipy.io.whosmat(path)}
        if not labels:
            need = {"--val": "the best model is chosen by validation accuracy",
                    "--test": "the test accuracy is measured",
                    "--data": "the accuracy is measured"}.get(option, "training fits")
            raise DataFormatError(f"{option} {text}: the file has images Z but no labels y (l x 1); "
                                  f"{need} against the labels, so they are required") from None
        a, b, d = shape
        why = (f" (the configuration's input is a^1 x b^1 x d^1 = {a} x {b} x {d}: Z needs {a * b * d} columns)"
               if "columns" in str(exc) else "")                 # only where Z's width is the problem
        raise DataFormatError(f"{option} {text}: {exc}{why}") from None
    if X.shape[1] == 0:
        raise DataFormatError(f"{option} {text}: holds no instances (l = 0 rows of Z); training, testing and "
                              "the accuracy need l >= 1")
    return X, y


def _labels(net: Network, y: np.ndarray, option: str, text: str) -> np.ndarray:
    """The labels ``y`` of ``option``'s file checked against ``n_L``; an error names the option and the file.

    Examples
    --------
    >>> from sparsecnn import FullLayer
    >>> _labels(Network((1, 1, 1), [FullLayer(3)]), np.array([1, 2, 3]), "--train", "t.mat")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.LabelError: --train t.mat: y must hold labels in 0..n_L-1 = 0..2, got 3 at position 2; the labels run from 1 to 3 = n_L: 1-based labels (as MATLAB's) must be stored as 0..n_L-1
    """
    try:
        return net.check_y(y, y.size)
    except LabelError as exc:
        message = f"{option} {text}: {exc}"
        if y.size and y.min() == 1 and y.max() == net.n_L:
            message += (f"; the labels run from 1 to {net.n_L} = n_L: 1-based labels (as MATLAB's) must be "
                        f"stored as 0..n_L-1")
        elif y.size and y.max() >= net.n_L:
            message += (f"; the network's last layer has n_L = {net.n_L} outputs (full_neurons of the "
                        f"configuration), one per class")
        raise LabelError(message) from None


def _predict(net: Network, theta: np.ndarray, X: np.ndarray, option: str, text: str,
             batch_size: int = 1024) -> np.ndarray:
    """``argmax_k z^{L+1,i}_k`` as :meth:`Network.predict`, refusing instances whose output is not finite.

    Huge inputs or parameters (a model saved from a run that was diverging) overflow the products;
    the argmax of NaN or Inf is a label chosen by the overflow, so no accuracy is computed from it.

    Examples
    --------
    >>> from sparsecnn import FullLayer
    >>> net = Network((1, 2, 1), [FullLayer(2)])
    >>> theta = net.pack([np.ones((2, 2))], [np.zeros(2)])
    >>> _predict(net, theta, np.array([[1., 1e308], [0., 1e308]]), "--data", "t.mat")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.NonFiniteError: --data t.mat: the network's output z^{L+1} is not finite for instance 1 (row 1 of Z; 1 instance in all): the products overflow (its scaled pixels reach max |X| = 1e+308, the model's max |theta| = 1); no label or accuracy is given for it
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = net.output(theta, X, batch_size=batch_size)
    bad = ~np.isfinite(out).all(axis=0)
    if bad.any():
        i, count = int(np.argmax(bad)), int(bad.sum())
        raise NonFiniteError(f"{option} {text}: the network's output z^{{L+1}} is not finite for instance {i} "
                             f"(row {i} of Z; {count} instance{'s' if count > 1 else ''} in all): the products "
                             f"overflow (its scaled pixels reach max |X| = {np.abs(X[:, i]).max():g}, the model's "
                             f"max |theta| = {np.abs(theta).max():g}); no label or accuracy is given for it")
    return out.argmax(axis=0)


def preprocess(X: np.ndarray, scaling: str, mean: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``X`` scaled by ``scaling`` (``"minmax"`` or ``"255"``), then centred.

    Parameters
    ----------
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
        Raw pixels.
    scaling : {"minmax", "255"}
    mean : ndarray, shape ``(d^1 a^1 b^1,)``, optional
        The training mean; by default the mean of the scaled ``X``.

    Returns
    -------
    Xc : ndarray, shape ``(d^1 a^1 b^1, l)``
    mean : ndarray, shape ``(d^1 a^1 b^1,)``

    Examples
    --------
    Two images of 3 pixels, each mapped to [0, 1] by its own range, then centred:

    >>> Xc, mean = preprocess(np.array([[0., 10.], [255., 30.], [51., 20.]]), "minmax")
    >>> mean
    array([0.  , 1.  , 0.35])
    >>> Xc
    array([[ 0.  ,  0.  ],
           [ 0.  ,  0.  ],
           [-0.15,  0.15]])
    """
    return center(scale_pixels(X, scaling), mean)


def _prepared(text: str, shape: tuple[int, int, int], option: str, scaling: str, mean: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_load` then :func:`preprocess`; a scaling error names the option and the file."""
    X, y = _load(text, shape, option)
    try:
        X, mean = preprocess(X, scaling, mean)
    except DataFormatError as exc:
        raise DataFormatError(f"{option} {text}: {exc}") from None
    return X, y, mean


def _model_meta(args: argparse.Namespace, C: float, **extra: object) -> dict[str, Any]:
    """The metadata ``train`` saves with a model: the run's settings (``meta["scale"]`` for
    ``--scale 255``, which older readers use), then ``extra``."""
    meta: dict[str, Any] = {"scaling": args.scale, "solver": args.solver, "C": C, "seed": args.seed,
                            "train": str(args.train)}
    if args.scale == "255":
        meta["scale"] = PIXEL_SCALE
    meta.update(extra)
    return meta


def _model_scaling(model: Model) -> str:
    """The pixel scaling a saved model was trained with (models before ``--scale``: by ``meta["scale"]``)."""
    scaling = model.meta.get("scaling")
    if scaling is None:
        return "255" if math.isclose(model.scale, PIXEL_SCALE) else ""
    if scaling not in SCALINGS:
        raise DataFormatError(f"the model's pixel scaling must be one of {SCALINGS}, got {scaling!r}")
    return str(scaling)


@contextlib.contextmanager
def _log_file(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh


def _train(args: argparse.Namespace) -> int:
    if args.solver != "newton" and (args.scheduler is not None or args.workers is not None):
        raise SparseCNNError("--scheduler and --workers are for --solver newton")
    if args.solver != "newton" and args.gn_dtype is not None:
        raise SparseCNNError("--gn-dtype is for --solver newton")
    net = Network.from_simplenn_config(datasets.resolve(args.config, "config")).replace(dtype=args.dtype,
                                                                                        loss=args.loss)
    shape = (net.input_shape[0], net.input_shape[1], net.input_shape[2])
    Xtr, ytr, mean = _prepared(args.train, shape, "--train", args.scale, None)
    l = Xtr.shape[1]
    ytr = _labels(net, ytr, "--train", args.train)
    test = val = None
    if args.test is not None:
        Xte, yte, _ = _prepared(args.test, shape, "--test", args.scale, mean)
        test = (Xte, _labels(net, yte, "--test", args.test))
    if args.val is not None:
        Xva, yva, _ = _prepared(args.val, shape, "--val", args.scale, mean)
        val = (Xva, _labels(net, yva, "--val", args.val))
    validation = val if val is not None else test
    C = args.C * l
    theta0 = net.init_params(seed=args.seed)
    unit = "iteration" if args.solver == "newton" else "epoch"

    with _log_file(args.log) as log_fh:
        bar: Any = None

        def say(line: str, always: bool = False) -> None:
            """A line to stdout (above the progress bar; not with --quiet unless ``always``) and the log."""
            if log_fh is not None:
                log_fh.write(line + "\n")
                log_fh.flush()
            if always or not args.quiet:
                tqdm.write(line, file=sys.stdout)

        total = args.iter_max if args.solver == "newton" else args.epoch_max
        if not args.quiet:
            bar = tqdm(total=total, desc=args.solver, unit="it" if args.solver == "newton" else "epoch",
                       file=sys.stderr, dynamic_ncols=True)

        done = 0

        def progress(row: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            if done == 1 and total > 1:
                took = time.perf_counter() - start
                more = " (later iterations often take more CG steps)" if args.solver == "newton" else ""
                say(f"{unit} 1 took {took:.1f} s: {total} {unit}s will take roughly "
                    f"{_duration(took * total)}{more}", always=True)
            if bar is None:
                return
            post = {"f": f"{row['f']:.4g}", "|g|": f"{row['gnorm']:.3g}"}
            if args.solver == "newton":
                post["#CG"] = str(row["cg_iters"])
            if not math.isnan(row["val_acc"]):
                post["val_acc"] = f"{row['val_acc']:.4f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)

        start = time.perf_counter()
        hist: History
        keep_best = val is not None
        try:
            if args.solver == "newton":
                theta, hist = newton(net, theta0, Xtr, ytr, C=C, iter_max=args.iter_max, GNsize=args.GNsize,
                                     xi=args.xi, CGmax=args.CGmax, lam=args.lam, batch_size=args.bsize or 1024,
                                     jacobian=args.jacobian, seed=args.seed, validation=validation,
                                     keep_best=keep_best, gn_dtype=args.gn_dtype, callback=progress,
                                     scheduler=args.scheduler, workers=args.workers, log=say)
            elif args.solver == "sgd":
                theta, hist = sgd(net, theta0, Xtr, ytr, C=C, lr=args.lr or 0.01, momentum=args.momentum,
                                  decay=args.decay, bsize=args.bsize or 128, epoch_max=args.epoch_max,
                                  seed=args.seed, validation=validation, keep_best=keep_best,
                                  callback=progress, log=say)
            else:
                theta, hist = adam(net, theta0, Xtr, ytr, C=C, lr=args.lr or 1e-3, bsize=args.bsize or 128,
                                   epoch_max=args.epoch_max, seed=args.seed, validation=validation,
                                   keep_best=keep_best, callback=progress, log=say)
        except DivergenceError as exc:
            if args.save is not None and exc.theta is not None:
                save_model(args.save, net, exc.theta, mean=mean,
                           meta=_model_meta(args, C, diverged=True, iteration=exc.iteration))
                print(f"the last finite theta (before the failing step, {unit} {exc.iteration}) saved to "
                      f"{args.save}", file=sys.stderr)
            raise
        finally:
            if bar is not None:
                bar.close()
                bar = None
        elapsed = time.perf_counter() - start
        extra = f", total #CG {sum(hist.cg_iters)}" if args.solver == "newton" else ""
        print(f"{args.solver}: {len(hist)} iterations in {elapsed:.1f} s, f {hist.f[-1]:.6g}, "
              f"|g| {hist.gnorm[-1]:.4g}{extra}")
        if val is not None:
            _predict(net, theta, val[0], "--val", args.val)          # the accuracies were of finite outputs
            say(f"best val_acc: {hist.best_val_acc:g} at {unit} {hist.best_iter} of {len(hist)} "
                "(the model kept)", always=True)
        if args.save is not None:
            meta = _model_meta(args, C, iterations=len(hist))
            if val is not None:
                meta.update(best_iteration=hist.best_iter, best_val_acc=hist.best_val_acc, val=str(args.val))
            save_model(args.save, net, theta, mean=mean, meta=meta)
            print(f"model saved to {args.save}")
        if args.plot is not None:
            plot_history(hist, args.plot, title=f"{args.solver} on {Path(args.train).name}")
            print(f"curves drawn to {args.plot}")
        if test is not None:
            acc = float(np.mean(_predict(net, theta, test[0], "--test", args.test) == test[1]))
            say(f"test_acc: {acc:g}", always=True)
    return 0


def plot_history(hist: History, path: Path, title: str = "") -> None:
    """Draw ``f`` and the validation accuracy per iteration to an image file.

    Parameters
    ----------
    hist : History
        As the optimisers return it.
    path : Path
        The image file; its suffix picks the format (``.png``, ``.svg``, ...).
    title : str

    Raises
    ------
    OSError
        Without matplotlib, or when the file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> hist = History(f0=2.0)
    >>> for k, f in enumerate([1.0, 0.5], start=1):
    ...     hist.append({"iter": k, "f": f, "val_acc": 0.5 + 0.1 * k})
    >>> path = Path(tempfile.mkdtemp()) / "curves.png"
    >>> plot_history(hist, path, title="two iterations")
    >>> path.stat().st_size > 0
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is an optional dependency
        raise OSError(f"--plot needs matplotlib ({exc})") from None
    its = np.arange(1, len(hist) + 1)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].semilogy(np.concatenate([[0], its]), [hist.f0, *hist.f] if not math.isnan(hist.f0) else
                   [np.nan, *hist.f], marker=".")
    ax[0].set_xlabel("iteration")
    ax[0].set_ylabel("f(theta)")
    ax[1].plot(its, hist.val_acc, marker=".")
    ax[1].set_xlabel("iteration")
    ax[1].set_ylabel("test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


def run_predict(args: argparse.Namespace) -> int:
    """Run ``sparsecnn predict``; returns the exit status.

    Loads the model, reads ``--data`` into ``X`` of shape ``(d^1 a^1 b^1, l)``,
    applies the saved scaling and centring, predicts ``argmax_k z^{L+1,i}_k`` in
    batches of ``--bsize`` instances, prints ``accuracy: <fraction>`` and with
    ``--output`` writes the ``l`` predicted labels, one per line.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` arguments (``model``, ``data``, ``bsize``, ``output``).

    Returns
    -------
    int
        0 on success; 2 when ``--output`` cannot be written (a folder, a missing or read-only
        folder) or the model file cannot be used (missing, not a model file, changed since it was
        written, a malformed entry such as a non-numeric ``meta.scale``), checked before any data
        is read; 1 for any later error.  Each error is one line on stderr.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sparsecnn import FullLayer
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> save_model(folder / "model.npz", net, np.zeros(net.n_params), meta={"scale": 1 / 255})
    >>> scipy.io.savemat(folder / "test.mat", {"Z": np.ones((4, 4)), "y": np.array([[0], [0], [1], [0]])})
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> run_predict(parser.parse_args(["predict", "--model", str(folder / "model.npz"),
    ...                                "--data", str(folder / "test.mat"), "--bsize", "3",
    ...                                "--output", str(folder / "labels.txt")]))  # doctest: +ELLIPSIS
    accuracy: 0.75
    predicted labels written to .../labels.txt
    0
    >>> (folder / "labels.txt").read_text().split()
    ['0', '0', '0', '0']
    """
    problem = None if args.output is None else (unwritable(args.output, "--output")
                                                 or clobbers(args, ("output",), ("model", "data")))
    if problem is not None:
        print(f"sparsecnn predict: error: {problem}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
    except (SparseCNNError, OSError) as exc:
        _fail("predict", exc)
        return 2
    try:
        shape = (model.net.input_shape[0], model.net.input_shape[1], model.net.input_shape[2])
        scaling = _model_scaling(model)
        if scaling:
            mean = model.mean if model.mean is not None else np.zeros(model.net.n_input)
            X, y, _ = _prepared(args.data, shape, "--data", scaling, mean)
        else:
            X, y = _load(args.data, shape, "--data")
            X = model.preprocess(X)
        labels = _labels(model.net, y, "--data", args.data)
        bsize = args.bsize if args.bsize is not None else 1024
        predicted = _predict(model.net, model.theta, X, "--data", args.data, batch_size=bsize)
        acc = float(np.mean(predicted == labels))
        if args.output is not None:
            args.output.write_text("".join(f"{int(k)}\n" for k in predicted), encoding="utf-8")
    except (SparseCNNError, OSError) as exc:
        return _fail("predict", exc)
    print(f"accuracy: {acc:g}")
    if args.output is not None:
        print(f"predicted labels written to {args.output}")
    return 0
