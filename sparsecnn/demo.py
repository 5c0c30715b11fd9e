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
training mean of each pixel, as simpleNN's MNIST example does with 1/255.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._argtypes import integer, number
from .layers import ConvLayer, FullLayer
from .network import Network

__all__ = ["add_parser", "run_demo", "DemoResult", "demo_network"]

DEFAULTS: dict[str, Any] = {
    "epochs": 15, "lr": 0.01, "momentum": 0.9, "batch_size": 32, "seed": 0, "C": math.inf,
    "solver": "newton", "iters": 15,
}
SOLVERS = ("newton", "sgd")
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
             out: Any = None) -> DemoResult:
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

    Returns
    -------
    DemoResult
        ``losses`` and ``train_acc`` hold ``iters + 1`` (Newton) or ``epochs + 1`` (SGD)
        entries; ``theta`` has shape ``(n,)`` with ``n = 1370``.

    Examples
    --------
    One Newton iteration (about half a second), printing nothing:

    >>> result = run_demo(iters=1)
    >>> len(result.losses), result.losses[1] < result.losses[0], result.theta.shape
    (2, True, (1370,))
    >>> 0.0 <= result.test_acc <= 1.0
    True
    """
    from .data import center, load_digits_data, scale

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    X_train, y_train, X_test, y_test = load_digits_data()
    X_train, X_test = scale(X_train, 1 / 16), scale(X_test, 1 / 16)
    X_train, mean = center(X_train)
    X_test, _ = center(X_test, mean)
    l = X_train.shape[1]
    batch = l if batch_size == 0 else min(batch_size, l)

    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    net = demo_network()
    say(f"sparsecnn demo: scikit-learn digits, {l} training and {X_test.shape[1]} test images "
        "of 8 x 8 x 1 (scaled by 1/16, centred)")
    say(net.summary())
    if solver == "newton":
        if math.isinf(C):
            C = NEWTON_C_PER_INSTANCE * l
        say(f"n = {net.n_params} parameters; Newton, {iters} iterations, C {C:g}, seed {seed}")
        say(f"{'iter':>5}  {'f(theta)':>10}  {'#CG':>4}  {'train_acc':>9}  {'seconds':>7}")
    else:
        say(f"n = {net.n_params} parameters; epochs {epochs}, batch {batch}, lr {lr:g}, "
            f"momentum {momentum:g}, C {C:g}, seed {seed}")
        say(f"{'epoch':>5}  {'f(theta)':>10}  {'train_acc':>9}  {'seconds':>7}")

    result = DemoResult()
    start = time.perf_counter()

    def record(epoch: int, theta: np.ndarray) -> None:
        f, _ = net.objective(theta, X_train, y_train, C)
        acc = float(np.mean(net.predict(theta, X_train) == y_train))
        result.losses.append(f)
        result.train_acc.append(acc)
        say(f"{epoch:>5}  {f:>10.6f}  {acc:>9.4f}  {time.perf_counter() - start:>7.2f}")

    theta = net.init_params(seed=seed)
    if solver == "newton":
        from .optim import newton

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
    record(0, theta)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(l)
        for first in range(0, l, batch):
            idx = order[first:first + batch]
            _, grad = net.objective(theta, X_train[:, idx], y_train[idx], C)
            velocity = momentum * velocity - lr * grad
            theta = theta + velocity
        if not np.isfinite(theta).all():
            raise FloatingPointError(
                f"training diverged in epoch {epoch} (theta is no longer finite); try a smaller --lr"
            )
        record(epoch, theta)
    result.test_acc = float(np.mean(net.predict(theta, X_test) == y_test))
    result.seconds = time.perf_counter() - start
    result.theta = theta
    return result


def _run(args: argparse.Namespace) -> int:
    try:
        result = run_demo(args.epochs, args.lr, args.momentum, args.batch_size, args.seed, args.C,
                          solver=args.solver, iters=args.iters,
                          out=None if args.quiet else sys.stdout)
    except ImportError as e:
        print(f"sparsecnn demo: {e}", file=sys.stderr)
        return 1
    except FloatingPointError as e:
        print(f"sparsecnn demo: {e}", file=sys.stderr)
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
    >>> args.solver, args.iters, args.C, args.batch_size
    ('newton', 3, 50.0, 32)
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
    parser.add_argument("--iters", type=integer(0), default=DEFAULTS["iters"],
                        help="Newton iterations (default %(default)s)")
    parser.add_argument("--epochs", type=integer(0), default=DEFAULTS["epochs"],
                        help="passes over the training set (default %(default)s)")
    parser.add_argument("--lr", type=number(0, strict=True), default=DEFAULTS["lr"],
                        help="step size (default %(default)s)")
    parser.add_argument("--momentum", type=number(0, strict=False, below=1), default=DEFAULTS["momentum"],
                        help="heavy-ball momentum in [0, 1); 0 is plain gradient descent (default %(default)s)")
    parser.add_argument("--batch-size", type=integer(0), default=DEFAULTS["batch_size"],
                        help="instances per step; 0 = full gradient descent (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                        help="seed of the initial parameters and the shuffling (default %(default)s)")
    parser.add_argument("--C", type=number(0, strict=True), default=DEFAULTS["C"],
                        help="regularisation C of f = theta^T theta/(2C) + mean loss (default: inf, none)")
    parser.add_argument("--quiet", action="store_true", help="print only the test_acc line")
    parser.set_defaults(func=_run)
    return parser
