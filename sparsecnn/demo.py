"""``sparsecnn demo``: train a small CNN by Newton's method on scikit-learn's 8x8 digits.

The network is ``Network((8, 8, 1), [ConvLayer(8, h=3, p=1, r=2), FullLayer(10)])``:
one convolutional layer (8 filters of width 3, padding 1, ReLU, 2x2 max
pooling) and one full layer, 1,370 parameters.  By default it is trained by
the subsampled Gauss-Newton method as simpleNN runs it
(:func:`sparsecnn.optim.newton`: conjugate gradient on ``G v`` products, a
Levenberg-Marquardt ``lambda``, backtracking line search); ``--solver sgd``
trains with mini-batch gradient descent instead, each step
``theta <- theta + v`` with ``v <- momentum v - lr grad``.  Every forward and
backward step runs through the slides' sparse matrices.  After each Newton
iteration (or epoch) the objective ``f(theta)`` on the whole training set is
printed; at the end, the accuracy on the 450 test images, as the last line
``test_acc: <fraction>``.

The images are scaled by 1/16 (their largest value) and centred with the
training mean of each pixel.

``sparsecnn demo --data mnist-demo`` trains simpleNN's own example instead: the
network of the packaged ``mnist-demo-layer4.config`` (three convolutional
layers, one full layer, 62,026 parameters) on the 2,000 packaged ``mnist-demo``
images (:mod:`sparsecnn.datasets`), each scaled by its own minimum and maximum
and centred as simpleNN's ``example_mnist.m`` does, for a few Newton iterations
(``--iters``, default 5) with ``C = 0.01 l``, a progress bar and simpleNN's
per-iteration lines; the last line is the accuracy on the 1,000 test images.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="sparsecnn")
>>> _ = add_parser(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["demo", "--solver", "sgd", "--epochs", "1", "--quiet"])
>>> args.func(args)                                  # doctest: +ELLIPSIS
test_acc: 0...
0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from . import datasets
from ._argtypes import integer, number
from ._checks import FLOAT_WARNINGS
from .data import center, load_digits_data, scale, scale_minmax
from .exceptions import ConfigError, DivergenceError, InputTypeError, SparseCNNError
from .layers import ConvLayer, FullLayer
from .network import Network
from .optim import newton

__all__ = ["add_parser", "run_demo", "run_mnist_demo", "DemoResult", "demo_network", "DATA_SETS"]

DEFAULTS: dict[str, Any] = {
    "epochs": 15, "lr": 0.01, "momentum": 0.9, "batch_size": 32, "seed": 0, "C": math.inf,
    "solver": "newton", "iters": 15,
}
SOLVERS = ("newton", "sgd")
DATA_SETS = ("digits", "mnist-demo")
"""``--data``: scikit-learn's 8x8 digits (default) or simpleNN's packaged mnist-demo."""
MNIST_DEMO_ITERS = 5
"""Newton iterations of ``--data mnist-demo`` unless ``--iters`` says otherwise."""
NEWTON_C_PER_INSTANCE = 0.01
"""Newton's regularisation, simpleNN's ``-C 0.01``: ``C = 0.01 l``."""


def demo_network() -> Network:
    """The demo's CNN for 8x8 grey images and 10 classes.

    Examples
    --------
    >>> print(demo_network().summary())
    m  kind  input (a x b x d)  W^m      output
    1  conv  8 x 8 x 1          8 x 9    4 x 4 x 8
    2  full  128                10 x 128  10
    """
    return Network((8, 8, 1), [ConvLayer(8, h=3, p=1, r=2), FullLayer(10)])


@dataclass
class DemoResult:
    """What :func:`run_demo` measured.

    Attributes
    ----------
    losses : list of float
        ``f(theta)`` on the training set before training (index 0) and after each epoch.
    train_acc : list of float
        Training accuracy at the same points.
    test_acc : float
        Accuracy on the test set after the last epoch.
    seconds : float
        Wall time of the training loop and evaluations.
    theta : ndarray, shape ``(n,)``
        The trained parameters ``theta``.

    Examples
    --------
    >>> result = DemoResult()
    >>> result.losses, result.test_acc, result.theta.shape
    ([], nan, (0,))
    """

    losses: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: float = float("nan")
    seconds: float = 0.0
    theta: np.ndarray = field(default_factory=lambda: np.empty(0))


def run_demo(epochs: int = DEFAULTS["epochs"], lr: float = DEFAULTS["lr"],
             momentum: float = DEFAULTS["momentum"], batch_size: int = DEFAULTS["batch_size"],
             seed: int = DEFAULTS["seed"], C: float = DEFAULTS["C"], *,
             solver: str = DEFAULTS["solver"], iters: int = DEFAULTS["iters"],
             out: Any = None, loss: str = "squared") -> DemoResult:
    """Train the demo network on the digits and report the loss per epoch.

    Parameters
    ----------
    epochs : int
        Passes over the 1,347 training images.
    lr : float
        Step size of gradient descent.
    momentum : float
        Heavy-ball momentum in ``[0, 1)``; ``0`` is plain gradient descent.
    batch_size : int
        Instances per step; ``0`` means the whole training set (full gradient descent).
    seed : int
        Seed of ``init_params`` and of the shuffling.
    C : float
        Regularisation of ``f(theta) = theta^T theta/(2C) + (1/l) sum_i xi_i``; ``inf`` for none.
        With ``solver="newton"`` and ``C = inf`` the demo uses simpleNN's ``C = 0.01 l``.
    solver : {"newton", "sgd"}
        Subsampled Gauss-Newton (``iters`` iterations) or mini-batch gradient descent
        (``epochs``, ``lr``, ``momentum``, ``batch_size``).
    iters : int
        Newton iterations.
    out : file-like, optional
        Where the table goes (``None``: print nothing).
    loss : {"squared", "cross-entropy"}
        The loss ``xi`` (:mod:`sparsecnn.objective`).

    Returns
    -------
    DemoResult
        ``losses`` and ``train_acc`` hold ``iters + 1`` (Newton) or ``epochs + 1`` (SGD)
        entries; ``theta`` has shape ``(n,)`` with ``n = 1370``.

    Raises
    ------
    InputTypeError, ConfigError
        An argument of the wrong type or out of range (named, with what was given).
    DivergenceError
        ``theta`` or ``f(theta)`` stopped being finite (a learning rate or ``C`` far off);
        ``DivergenceError.theta`` is the last finite ``theta``.

    Examples
    --------
    One Newton iteration (about half a second), printing nothing:

    >>> result = run_demo(iters=1)
    >>> len(result.losses), result.losses[1] < result.losses[0], result.theta.shape
    (2, True, (1370,))
    >>> 0.0 <= result.test_acc <= 1.0
    True
    """
    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {solver!r}")
    _check_int("epochs", epochs, 0)
    _check_int("iters", iters, 1)
    _check_int("batch_size", batch_size, 0)
    _check_int("seed", seed, 0)
    _check_real("lr", lr, lambda v: 0 < v < math.inf, "a finite number > 0")
    _check_real("momentum", momentum, lambda v: 0 <= v < 1, "a number in [0, 1)")
    _check_real("C", C, lambda v: v > 0, "a number > 0 (inf: no regularisation)")
    X_train, y_train, X_test, y_test = load_digits_data()
    X_train, X_test = scale(X_train, 1 / 16), scale(X_test, 1 / 16)
    X_train, mean = center(X_train)
    X_test, _ = center(X_test, mean)
    l = X_train.shape[1]
    batch = l if batch_size == 0 else min(batch_size, l)

    net = demo_network().replace(loss=loss)
    say(f"sparsecnn demo: scikit-learn digits, {l} training and {X_test.shape[1]} test images "
        "of 8 x 8 x 1 (scaled by 1/16, centred)")
    say(net.summary())
    if solver == "newton":
        if math.isinf(C):
            C = NEWTON_C_PER_INSTANCE * l
        say(f"n = {net.n_params} parameters; Newton, {iters} iterations, C {C:g}, seed {seed}, {net.loss.name} loss")
        say(f"{'iter':>5}  {'f(theta)':>10}  {'#CG':>4}  {'train_acc':>9}  {'seconds':>7}")
    else:
        say(f"n = {net.n_params} parameters; epochs {epochs}, batch {batch}, lr {lr:g}, "
            f"momentum {momentum:g}, C {C:g}, seed {seed}")
        say(f"{'epoch':>5}  {'f(theta)':>10}  {'train_acc':>9}  {'seconds':>7}")

    result = DemoResult()
    start = time.perf_counter()

    def record(epoch: int, theta: np.ndarray) -> None:
        f, _ = net.objective(theta, X_train, y_train, C)
        if not math.isfinite(f):
            raise DivergenceError(f"sgd diverged in epoch {epoch}: f(theta) = {f}; try a smaller --lr "
                                  f"(lr = {lr:g})", iteration=epoch, theta=last_finite)
        acc = float(np.mean(net.predict(theta, X_train) == y_train))
        result.losses.append(f)
        result.train_acc.append(acc)
        say(f"{epoch:>5}  {f:>10.6f}  {acc:>9.4f}  {time.perf_counter() - start:>7.2f}")

    theta = net.init_params(seed=seed)
    if solver == "newton":
        f0, _ = net.objective(theta, X_train, y_train, C)
        result.losses.append(f0)
        result.train_acc.append(float(np.mean(net.predict(theta, X_train) == y_train)))
        say(f"{0:>5}  {f0:>10.6f}  {'':>4}  {result.train_acc[-1]:>9.4f}  {0.0:>7.2f}")

        def report(row: dict[str, Any]) -> None:
            result.losses.append(row["f"])
            result.train_acc.append(row["val_acc"])                # validation = training set
            say(f"{row['iter']:>5}  {row['f']:>10.6f}  {row['cg_iters']:>4}  {row['val_acc']:>9.4f}  "
                f"{time.perf_counter() - start:>7.2f}")

        theta, _ = newton(net, theta, X_train, y_train, C=C, iter_max=iters, seed=seed,
                          validation=(X_train, y_train), callback=report)
        result.test_acc = float(np.mean(net.predict(theta, X_test) == y_test))
        result.seconds = time.perf_counter() - start
        result.theta = theta
        return result
    rng = np.random.default_rng(seed)
    velocity = np.zeros_like(theta)
    last_finite = theta
    record(0, theta)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(l)
        for step, first in enumerate(range(0, l, batch), start=1):
            idx = order[first:first + batch]
            _, grad = net.objective(theta, X_train[:, idx], y_train[idx], C)
            with np.errstate(over="ignore", invalid="ignore"):        # reported just below
                velocity = momentum * velocity - lr * grad
                step_theta = theta + velocity
            if not np.isfinite(step_theta).all():
                raise DivergenceError(
                    f"sgd diverged in epoch {epoch} (step {step}): theta is no longer finite; try a smaller "
                    f"--lr (lr = {lr:g})", iteration=epoch, theta=theta)
            theta = last_finite = step_theta
        record(epoch, theta)
    result.test_acc = float(np.mean(net.predict(theta, X_test) == y_test))
    result.seconds = time.perf_counter() - start
    result.theta = theta
    return result


def run_mnist_demo(iters: int = MNIST_DEMO_ITERS, seed: int = 111, *, out: Any = None,
                   progress: bool = False, n_train: int | None = None, loss: str = "squared") -> DemoResult:
    """simpleNN's example: ``mnist-demo-layer4`` trained by Newton on the packaged ``mnist-demo``.

    The 2,000 training images ``X`` (shape ``(784, 2000)``) are scaled image by
    image to ``[0, 1]`` by their own minimum and maximum and centred on the
    training mean, as simpleNN's ``example_mnist.m`` does; the 1,000 test images
    likewise with the training mean.  Then ``iters`` iterations of
    :func:`sparsecnn.optim.newton` with simpleNN's defaults (``C = 0.01 l``,
    ``GNsize = ceil(0.05 l)``, ``xi = 0.1``, ``CGmax = 250``, ``lambda = 1``).

    Parameters
    ----------
    iters : int
        Newton iterations.
    seed : int
        Seed of ``init_params`` and of the subsampling (simpleNN's example: 111).
    out : file-like, optional
        Where the header and simpleNN's lines go (``initial f``, one line per
        iteration with ``f``, ``|g|``, ``alpha``, ``ratio``, ``lambda``, ``#CG``,
        ``actred``, ``prered``, then ``total_#CG``); ``None``: nowhere.
    progress : bool
        Show a progress bar on stderr.
    n_train : int, optional
        Train on the first ``n_train`` images only (default: all 2,000).
    loss : {"squared", "cross-entropy"}
        The loss ``xi`` (:mod:`sparsecnn.objective`).

    Returns
    -------
    DemoResult
        ``losses`` holds ``f(theta)`` before training and after each iteration,
        ``train_acc`` is empty (not measured, to save the passes), ``theta`` has
        shape ``(62026,)``.

    Examples
    --------
    ``sparsecnn demo --data mnist-demo`` runs ``run_mnist_demo(out=sys.stdout,
    progress=True)`` (5 to 10 s per iteration on one core).  One iteration on
    the first 200 images:

    >>> result = run_mnist_demo(iters=1, n_train=200)
    >>> len(result.losses), result.losses[1] < result.losses[0], result.theta.shape
    (2, True, (62026,))
    >>> 0.0 <= result.test_acc <= 1.0
    True
    """
    def say(text: str) -> None:
        if out is not None:
            tqdm.write(text, file=out)
            out.flush()

    _check_int("iters", iters, 1)
    _check_int("seed", seed, 0)
    net = Network.from_simplenn_config(datasets.path("mnist-demo-layer4"), loss=loss)
    X_train, y_train, X_test, y_test = datasets.mnist_demo()
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train <= X_train.shape[1]:
            raise InputTypeError(f"n_train must be an integer in 1..{X_train.shape[1]}, got {n_train!r}")
        X_train, y_train = X_train[:, :n_train], y_train[:n_train]
    X_train, mean = center(scale_minmax(X_train))
    X_test, _ = center(scale_minmax(X_test), mean)
    l = X_train.shape[1]
    C = NEWTON_C_PER_INSTANCE * l
    say(f"sparsecnn demo: simpleNN's mnist-demo, {l} training and {X_test.shape[1]} test images of "
        "28 x 28 x 1 (each scaled by its own min and max, centred), packaged in sparsecnn.datasets")
    say(net.summary())
    say(f"n = {net.n_params} parameters; Newton, {iters} iterations, C {C:g}, seed {seed}, {net.loss.name} loss")
    result = DemoResult()
    bar = tqdm(total=iters, desc="newton", unit="it", file=sys.stderr, dynamic_ncols=True) if progress else None

    def report(row: dict[str, Any]) -> None:
        result.losses.append(row["f"])
        if bar is not None:
            bar.set_postfix({"f": f"{row['f']:.4g}", "#CG": row["cg_iters"]}, refresh=False)
            bar.update(1)

    start = time.perf_counter()
    try:
        theta, hist = newton(net, net.init_params(seed=seed), X_train, y_train, C=C, iter_max=iters, seed=seed,
                             callback=report, log=say)
    finally:
        if bar is not None:
            bar.close()
    result.losses.insert(0, hist.f0)
    result.test_acc = float(np.mean(net.predict(theta, X_test) == y_test))
    result.seconds = time.perf_counter() - start
    result.theta = theta
    return result


def _run(args: argparse.Namespace) -> int:
    # numpy's overflow warnings (from every thread) would precede the DivergenceError that reports
    # the same event in one line
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", FLOAT_WARNINGS, RuntimeWarning)
        return _run_demo(args)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        if args.data == "mnist-demo":
            if args.solver != "newton":
                print("sparsecnn demo: --data mnist-demo trains by Newton's method (--solver newton)",
                      file=sys.stderr)
                return 2
            result = run_mnist_demo(MNIST_DEMO_ITERS if args.iters is None else args.iters,
                                    111 if args.seed is None else args.seed,
                                    out=None if args.quiet else sys.stdout, progress=not args.quiet,
                                    loss=args.loss)
        else:
            result = run_demo(args.epochs, args.lr, args.momentum, args.batch_size,
                              DEFAULTS["seed"] if args.seed is None else args.seed, args.C,
                              solver=args.solver, iters=DEFAULTS["iters"] if args.iters is None else args.iters,
                              out=None if args.quiet else sys.stdout, loss=args.loss)
    except (ImportError, SparseCNNError) as e:
        print(f"sparsecnn demo: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"trained in {result.seconds:.1f} s", flush=True)
    print(f"test_acc: {result.test_acc:.4f}", flush=True)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand on the ``sparsecnn`` command's subparsers.

    Parameters
    ----------
    subparsers : argparse action
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``demo`` parser; it sets ``func`` to the function that runs the demo.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> demo = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["demo", "--iters", "3", "--C", "50"])
    >>> args.solver, args.iters, args.C, args.batch_size, args.data
    ('newton', 3, 50.0, 32, 'digits')
    """
    parser = subparsers.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's 8x8 digits by Newton's method",
        description=(
            "Train Network((8, 8, 1), [ConvLayer(8, h=3, p=1, r=2), FullLayer(10)]) on "
            "scikit-learn's bundled digits by the subsampled Gauss-Newton method (default) or "
            "mini-batch gradient descent with momentum (--solver sgd), printing f(theta) per "
            "iteration or epoch and, last, 'test_acc: <fraction>'. Needs scikit-learn "
            "(pip install 'sparsecnn[demo]')."
        ),
    )
    parser.add_argument("--solver", choices=SOLVERS, default=DEFAULTS["solver"],
                        help="newton (default) or sgd")
    parser.add_argument("--data", choices=DATA_SETS, default="digits",
                        help="digits: scikit-learn's 8x8 digits (default); mnist-demo: simpleNN's example, "
                             "its network on its packaged 2,000 MNIST images, Newton with a progress bar")
    parser.add_argument("--iters", type=integer(1), default=None,
                        help=f"Newton iterations (default {DEFAULTS['iters']}; {MNIST_DEMO_ITERS} with "
                             "--data mnist-demo)")
    parser.add_argument("--epochs", type=integer(0), default=DEFAULTS["epochs"],
                        help="passes over the training set (default %(default)s)")
    parser.add_argument("--lr", type=number(0, strict=True, finite=True), default=DEFAULTS["lr"],
                        help="step size (default %(default)s)")
    parser.add_argument("--momentum", type=number(0, strict=False, below=1), default=DEFAULTS["momentum"],
                        help="heavy-ball momentum in [0, 1); 0 is plain gradient descent (default %(default)s)")
    parser.add_argument("--batch-size", type=integer(0), default=DEFAULTS["batch_size"],
                        help="instances per step; 0 = full gradient descent (default %(default)s)")
    parser.add_argument("--seed", type=integer(0), default=None,
                        help=f"seed of the initial parameters and the shuffling (default {DEFAULTS['seed']}; "
                             "111 with --data mnist-demo)")
    parser.add_argument("--C", type=number(0, strict=True), default=DEFAULTS["C"],
                        help="regularisation C of f = theta^T theta/(2C) + mean loss (default: inf, none)")
    parser.add_argument("--loss", choices=["squared", "cross-entropy"], default="squared",
                        help="the loss xi: squared ||z - onehot(y)||^2 (default) or cross-entropy -log softmax(z)_y")
    parser.add_argument("--quiet", action="store_true", help="print only the test_acc line")
    parser.set_defaults(func=_run)
    return parser


def _check_int(name: str, value: object, minimum: int) -> None:
    """An integer argument of :func:`run_demo`, ``>= minimum``, or a named error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_real(name: str, value: object, ok: Any, what: str) -> None:
    """A real argument of :func:`run_demo` for which ``ok(value)`` holds, or a named error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be {what}, got {value!r}")
    if not ok(float(value)):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
