"""``sparsecnn train`` and ``sparsecnn predict``: simpleNN's workflow from the command line.

``sparsecnn train --config CONFIG --train TRAIN.mat [--test TEST.mat] --solver newton|sgd|adam ...``
reads a simpleNN configuration and simpleNN ``.mat`` data, scales the pixels by
1/255 and centres them on the training mean (as simpleNN's MNIST example does),
trains with a progress bar showing ``f``, ``|g|``, CG iterations and the accuracy
on ``--test`` per iteration (epoch for SGD and Adam), and with ``--test`` ends
with the line ``test_acc: <fraction>``.  ``--C`` is simpleNN's: the objective
uses ``C = (--C) * l``.  ``--save`` writes the model (network, ``theta``, the
training mean and the scale) with :func:`sparsecnn.model_io.save_model`;
``--plot`` draws ``f`` and the test accuracy per iteration.

``sparsecnn predict --model MODEL.npz --data TEST.mat`` applies the saved
preprocessing and prints ``accuracy: <fraction>``.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="sparsecnn")
>>> add_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["train", "--config", "c", "--train", "t.mat", "--C", "0.01"])
>>> args.solver, args.C, args.GNsize, args.CGmax
('newton', 0.01, None, 250)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._argtypes import address, integer, number
from ._safe_io import unwritable
from .exceptions import DataFormatError, DivergenceError, SparseCNNError
from .optim._common import History

__all__ = ["add_parser", "run_train", "run_predict"]

PIXEL_SCALE = 1 / 255


def add_parser(subparsers: Any) -> None:
    """Register ``train`` and ``predict`` on ``subparsers``.

    Parameters
    ----------
    subparsers : argparse action
        What ``ArgumentParser.add_subparsers()`` returned.  Each of the two
        parsers sets ``func`` to :func:`run_train` or :func:`run_predict`.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["predict", "--model", "m.npz", "--data", "t.mat"])
    >>> args.func is run_predict, args.model.name, args.data.name
    (True, 'm.npz', 't.mat')
    >>> args = parser.parse_args(["train", "--config", "c", "--train", "t.mat", "--solver", "adam"])
    >>> args.bsize, args.lr, args.epoch_max         # None: the solver's own default
    (None, None, 500)
    """
    t = subparsers.add_parser(
        "train", help="train a CNN (Newton, SGD or Adam) on simpleNN .mat data",
        description="Train a CNN described by a simpleNN configuration file. Pixels are scaled by 1/255 "
                    "and centred on the training mean; the objective is "
                    "theta'theta/(2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2 with C = (--C) * l.")
    t.add_argument("--config", required=True, type=Path, help="simpleNN configuration file")
    t.add_argument("--train", required=True, type=Path, help="training data (.mat with Z and y)")
    t.add_argument("--test", type=Path, help="test data: accuracy per iteration and at the end")
    t.add_argument("--solver", choices=["newton", "sgd", "adam"], default="newton")
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
    s.add_argument("--momentum", type=number(0, strict=False, finite=True), default=0.0, help="SGD momentum (default 0)")
    s.add_argument("--decay", type=number(0, strict=False, finite=True), default=0.0, help="SGD lr decay: lr/(1 + decay t)")
    t.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float type of the network's products; f, the gradient and CG stay float64 "
                        "(default float64)")
    t.add_argument("--gn-dtype", choices=["float64", "float32"],
                   help="Newton: float type of the Gauss-Newton products in CG alone (default: --dtype)")
    t.add_argument("--seed", type=integer(0), default=111, help="seed of the initial theta and of sampling (default 111)")
    t.add_argument("--save", type=Path, help="write the model here (.npz, no pickle)")
    t.add_argument("--plot", type=Path, help="draw f and test accuracy per iteration to this image")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_train)

    p = subparsers.add_parser("predict", help="accuracy of a saved model on simpleNN .mat data",
                              description="Apply a model saved by 'sparsecnn train --save' to data.")
    p.add_argument("--model", required=True, type=Path, help="model file written by train --save")
    p.add_argument("--data", required=True, type=Path, help="data (.mat with Z and y)")
    p.set_defaults(func=run_predict)


def _fail(command: str, exc: BaseException) -> int:
    print(f"sparsecnn {command}: error: {exc}", file=sys.stderr)
    return 1


def run_train(args: argparse.Namespace) -> int:
    """Run ``sparsecnn train``; returns the exit status.

    Reads ``--config`` and ``--train`` (``Z`` of shape ``(l, d^1 a^1 b^1)``, ``y`` of
    shape ``(l, 1)``), turns the data into ``X`` of shape ``(d^1 a^1 b^1, l)``, scales
    by 1/255, centres, trains with ``C = (--C) l`` and prints a summary line; with
    ``--save``, ``--plot`` and ``--test``, what it wrote and ``test_acc: <fraction>``.

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

    >>> import tempfile, pathlib, scipy.io
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
    newton: 2 iterations in ... s, f 0.91..., |g| 0.44..., total #CG ...
    model saved to .../model.npz
    0
    """
    problem = check_outputs(args)
    if problem is not None:
        print(f"sparsecnn train: error: {problem}", file=sys.stderr)
        return 2
    try:
        return _train(args)
    except (SparseCNNError, OSError) as exc:
        return _fail("train", exc)


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


def _load(path: Path, net_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    from .data import load_simplenn_mat

    X, y = load_simplenn_mat(path, shape=net_shape)
    if X.shape[1] == 0:
        raise DataFormatError(f"{path}: holds no instances (l = 0 rows of Z); training, testing and the "
                              "accuracy need l >= 1")
    return X, y


def _train(args: argparse.Namespace) -> int:
    from .data import center, scale
    from .model_io import save_model
    from .network import Network
    from .optim import adam, newton, sgd

    if args.solver != "newton" and (args.scheduler is not None or args.workers is not None):
        raise SparseCNNError("--scheduler and --workers are for --solver newton")
    if args.solver != "newton" and args.gn_dtype is not None:
        raise SparseCNNError("--gn-dtype is for --solver newton")
    net = Network.from_simplenn_config(args.config).replace(dtype=args.dtype)
    shape = (net.input_shape[0], net.input_shape[1], net.input_shape[2])
    Xtr, ytr = _load(args.train, shape)
    Xtr, mean = center(scale(Xtr, PIXEL_SCALE))
    l = Xtr.shape[1]
    ytr = net.check_y(ytr, l)
    validation = None
    if args.test is not None:
        Xte, yte = _load(args.test, shape)
        Xte, _ = center(scale(Xte, PIXEL_SCALE), mean)
        validation = (Xte, net.check_y(yte, Xte.shape[1]))
    C = args.C * l
    theta0 = net.init_params(seed=args.seed)

    total = args.iter_max if args.solver == "newton" else args.epoch_max
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{args.solver}", unit="it" if args.solver == "newton" else "epoch",
                   file=sys.stderr, dynamic_ncols=True)

    def progress(row: dict[str, Any]) -> None:
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
    try:
        if args.solver == "newton":
            theta, hist = newton(net, theta0, Xtr, ytr, C=C, iter_max=args.iter_max, GNsize=args.GNsize,
                                 xi=args.xi, CGmax=args.CGmax, lam=args.lam, batch_size=args.bsize or 1024,
                                 jacobian=args.jacobian, seed=args.seed, validation=validation,
                                 gn_dtype=args.gn_dtype, callback=progress, scheduler=args.scheduler,
                                 workers=args.workers)
        elif args.solver == "sgd":
            theta, hist = sgd(net, theta0, Xtr, ytr, C=C, lr=args.lr or 0.01, momentum=args.momentum,
                              decay=args.decay, bsize=args.bsize or 128, epoch_max=args.epoch_max,
                              seed=args.seed, validation=validation, callback=progress)
        else:
            theta, hist = adam(net, theta0, Xtr, ytr, C=C, lr=args.lr or 1e-3, bsize=args.bsize or 128,
                               epoch_max=args.epoch_max, seed=args.seed, validation=validation,
                               callback=progress)
    except DivergenceError as exc:
        if args.save is not None and exc.theta is not None:
            save_model(args.save, net, exc.theta, mean=mean,
                       meta={"scale": PIXEL_SCALE, "solver": args.solver, "C": C, "seed": args.seed,
                             "train": str(args.train), "diverged": True, "iteration": exc.iteration})
            unit = "iteration" if args.solver == "newton" else "epoch"
            print(f"the last finite theta (before the failing step, {unit} {exc.iteration}) saved to "
                  f"{args.save}", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    extra = f", total #CG {sum(hist.cg_iters)}" if args.solver == "newton" else ""
    print(f"{args.solver}: {len(hist)} iterations in {elapsed:.1f} s, f {hist.f[-1]:.6g}, "
          f"|g| {hist.gnorm[-1]:.4g}{extra}")
    if args.save is not None:
        save_model(args.save, net, theta, mean=mean,
                   meta={"scale": PIXEL_SCALE, "solver": args.solver, "C": C, "seed": args.seed,
                         "train": str(args.train), "iterations": len(hist)})
        print(f"model saved to {args.save}")
    if args.plot is not None:
        plot_history(hist, args.plot, title=f"{args.solver} on {args.train.name}")
        print(f"curves drawn to {args.plot}")
    if validation is not None:
        acc = float(np.mean(net.predict(theta, validation[0]) == validation[1]))
        print(f"test_acc: {acc:g}")
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
    applies the saved scaling and centring, and prints ``accuracy: <fraction>``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` arguments (``model`` and ``data`` paths).

    Returns
    -------
    int
        0 on success; 1 after printing the error on stderr.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io
    >>> from sparsecnn import FullLayer, Network
    >>> from sparsecnn.model_io import save_model
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> net = Network((2, 2, 1), [FullLayer(2)])
    >>> save_model(folder / "model.npz", net, np.zeros(net.n_params), meta={"scale": 1 / 255})
    >>> scipy.io.savemat(folder / "test.mat", {"Z": np.ones((4, 4)), "y": np.array([[0], [0], [1], [0]])})
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> run_predict(parser.parse_args(["predict", "--model", str(folder / "model.npz"),
    ...                                "--data", str(folder / "test.mat")]))
    accuracy: 0.75
    0
    """
    from .model_io import load_model

    try:
        model = load_model(args.model)
        shape = (model.net.input_shape[0], model.net.input_shape[1], model.net.input_shape[2])
        X, y = _load(args.data, shape)
        X = model.preprocess(X)
        labels = model.net.check_y(y, X.shape[1])
        acc = float(np.mean(model.net.predict(model.theta, X) == labels))
    except (SparseCNNError, OSError) as exc:
        return _fail("predict", exc)
    print(f"accuracy: {acc:g}")
    return 0
