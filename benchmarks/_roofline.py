"""The machine's own GEMM rate, at a network's shapes and at large square ones (the roofline).

A pass of ``f`` and its gradient is, for most of its FLOPs, three GEMMs per
conv layer and position block: ``S = W^m phi`` (forward), ``dxi/dW^m =
dxi/dS phi^T`` and ``(W^m)^T dxi/dS`` (backward, for ``m > 1``), plus the full
layers' ``W^m z``, ``dxi/ds z^T`` and ``(W^m)^T dxi/ds``.  This module counts
those FLOPs from the layer specs alone (the products performed: a conv layer
run window by window computes only the positions that some pooling window
reads), times numpy's own GEMM at exactly those shapes, and so gives the
time the GEMMs alone would take on this machine: the floor of a pass, and
the yardstick for "share of the machine's rate".

Run ``python benchmarks/_roofline.py`` for the table of the mnist-demo
network (``--dtype``, ``--cols``, ``--repeats``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsecnn import ConvLayer, FullLayer


@dataclass(frozen=True)
class Gemm:
    """One kind of GEMM of a pass: ``(M x K) @ (K x N)`` for one instance.

    ``scaled`` names the dimension that grows with the number of instances:
    ``"N"`` for products such as ``W^m phi`` (one block of columns per
    instance), ``"K"`` for the parameter gradients, summed over instances.
    """

    label: str
    M: int
    K: int
    N: int
    scaled: str = "N"

    def shape(self, l: int) -> tuple[int, int, int]:
        """``(M, K, N)`` of the product over ``l`` instances."""
        return (self.M, self.K * l, self.N) if self.scaled == "K" else (self.M, self.K, self.N * l)

    def flops(self, l: int) -> float:
        return 2.0 * self.M * self.K * self.N * l


def pass_gemms(input_shape: Sequence[int], layers: Sequence[ConvLayer | FullLayer], *,
               windowed: bool = True, gradient: bool = True) -> list[Gemm]:
    """The GEMMs of one forward (and, with ``gradient``, backward) pass, from the specs alone.

    Parameters
    ----------
    input_shape : (a^1, b^1, d^1)
    layers : ConvLayer and FullLayer specs, in order
    windowed : bool
        Conv layers with max pooling compute only the positions that some
        window reads (``(r a^{m+1}) x (r b^{m+1})``), as the window-by-window
        kernels do; ``False``: all ``a_conv x b_conv`` positions.
    gradient : bool
        Include the backward GEMMs.

    Examples
    --------
    >>> g = pass_gemms((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), FullLayer(10)])
    >>> [(x.label, x.shape(2)) for x in g]  # doctest: +NORMALIZE_WHITESPACE
    [('conv1 W phi', (32, 25, 1568)), ('conv1 dS phi^T', (32, 1568, 25)),
     ('full2 W z', (10, 6272, 2)), ('full2 ds z^T', (10, 2, 6272)), ('full2 W^T ds', (6272, 10, 2))]
    """
    a, b, d = (int(x) for x in input_shape)
    n = a * b * d
    out: list[Gemm] = []
    first_conv = True
    for k, spec in enumerate(layers, start=1):
        if isinstance(spec, ConvLayer):
            a_conv = (a + 2 * spec.p - spec.h) // spec.s + 1
            b_conv = (b + 2 * spec.p - spec.h) // spec.s + 1
            a_out, b_out = a_conv // spec.r, b_conv // spec.r
            positions = a_conv * b_conv
            if windowed and spec.pool == "max" and spec.r > 1:
                positions = (a_out * spec.r) * (b_out * spec.r)
            hhd = spec.h * spec.h * d
            out.append(Gemm(f"conv{k} W phi", spec.d_out, hhd, positions))
            if gradient:
                out.append(Gemm(f"conv{k} dS phi^T", spec.d_out, positions, hhd, "K"))
                if not first_conv:
                    out.append(Gemm(f"conv{k} W^T dS", hhd, spec.d_out, positions))
            a, b, d, first_conv = a_out, b_out, spec.d_out, False
            n = a * b * d
        else:
            out.append(Gemm(f"full{k} W z", spec.n_out, n, 1))
            if gradient:
                out.append(Gemm(f"full{k} ds z^T", spec.n_out, 1, n, "K"))
                out.append(Gemm(f"full{k} W^T ds", n, spec.n_out, 1))
            n = spec.n_out
    return out


def gv_gemms(input_shape: Sequence[int], layers: Sequence[ConvLayer | FullLayer]) -> list[Gemm]:
    """The GEMMs of one Gauss-Newton product ``G v = J^T B J v``, window by window.

    ``J v`` is the R-forward pass: ``V^m phi`` in every layer and ``W^m R(phi)``
    in every layer but the first (its input does not depend on ``theta``), as
    many products as two forward passes less one layer's; ``J^T`` is the
    backward pass of the gradient.

    Examples
    --------
    >>> g = gv_gemms((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), FullLayer(10)])
    >>> [x.label for x in g]  # doctest: +NORMALIZE_WHITESPACE
    ['conv1 V phi', 'full2 V z', 'full2 W R(z)', 'conv1 dS phi^T', 'full2 ds z^T', 'full2 W^T ds']
    """
    forward = pass_gemms(input_shape, layers, gradient=False)
    backward = [g for g in pass_gemms(input_shape, layers) if g not in forward]
    R: list[Gemm] = []
    for k, g in enumerate(forward):
        what = g.label.split(" W ")
        R.append(Gemm(f"{what[0]} V {what[1]}", g.M, g.K, g.N, g.scaled))
        if k > 0:
            R.append(Gemm(f"{what[0]} W R({what[1]})", g.M, g.K, g.N, g.scaled))
    return R + backward


def gemm_seconds(M: int, K: int, N: int, dtype: np.dtype | str, repeats: int = 3, *,
                 transposed: bool = False) -> float:
    """Best of ``repeats`` timings of ``A @ B`` with ``A`` of ``M x K`` and ``B`` of ``K x N``.

    ``transposed``: ``B`` is the transpose of a C-ordered ``N x K`` array, as
    ``phi^T`` is in ``dxi/dS phi^T`` (``phi`` is stored one row per entry of a
    filter window).
    """
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K)).astype(dtype)
    B = rng.standard_normal((N, K)).astype(dtype).T if transposed else rng.standard_normal((K, N)).astype(dtype)
    C = np.empty((M, N), dtype=dtype)
    np.matmul(A, B, out=C)                       # warm-up: pages touched, threads woken
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(A, B, out=C)
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass(frozen=True)
class Rate:
    gemm: Gemm
    gflops: float            # GFLOP/s measured at this shape


def measure(gemms: Sequence[Gemm], dtype: np.dtype | str, *, cols: int = 256, repeats: int = 3) -> list[Rate]:
    """numpy's GEMM rate at each shape, over a batch of ``cols`` instances."""
    rates = []
    for g in gemms:
        M, K, N = g.shape(cols)
        seconds = gemm_seconds(M, K, N, dtype, repeats, transposed=g.scaled == "K")
        rates.append(Rate(g, g.flops(cols) / seconds / 1e9))
    return rates


def square_rate(dtype: np.dtype | str, n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n`` GEMM: the machine's best case."""
    return 2.0 * n**3 / gemm_seconds(n, n, n, dtype, repeats) / 1e9


def floor_seconds(rates: Sequence[Rate], l: int) -> float:
    """Time the GEMMs of a pass over ``l`` instances need at the measured rates."""
    return sum(r.gemm.flops(l) / (r.gflops * 1e9) for r in rates)


def total_flops(gemms: Sequence[Gemm], l: int) -> float:
    return sum(g.flops(l) for g in gemms)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", action="append", choices=["float64", "float32"], default=None)
    p.add_argument("--cols", type=int, default=256, help="instances per timed GEMM (default 256)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=2000, help="l for the floor of one pass")
    p.add_argument("--square", type=int, default=2048)
    args = p.parse_args(argv)
    layers: list[ConvLayer | FullLayer] = [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2), ConvLayer(64, h=3, p=1, r=2),
              FullLayer(10)]
    gemms = pass_gemms((28, 28, 1), layers)
    print("| dtype | GEMM | M x K x N (over --cols instances) | GFLOP/s |")
    print("|---|---|---|---|")
    for dtype in args.dtype or ["float64", "float32"]:
        rates = measure(gemms, dtype, cols=args.cols, repeats=args.repeats)
        for r in rates:
            g = r.gemm
            M, K, N = g.shape(args.cols)
            print(f"| {dtype} | {g.label} | {M} x {K} x {N} | {r.gflops:.1f} |")
        sq = square_rate(dtype, args.square, args.repeats)
        flops = total_flops(gemms, args.images)
        floor = floor_seconds(rates, args.images)
        print(f"| {dtype} | {args.square}^2 square | | {sq:.1f} |")
        print(f"| {dtype} | f + gradient on {args.images} images: {flops / 1e9:.1f} GFLOP | floor "
              f"{floor:.3f} s at the shapes' rates ({flops / floor / 1e9:.1f} GFLOP/s) | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
