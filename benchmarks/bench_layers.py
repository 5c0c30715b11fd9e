"""Where the default path's time goes, conv layer by conv layer, in float64 and float32 (issue 16, item 2).

For each conv layer of the mnist-demo network, on one batch of ``--batch`` images
and on one thread (kernel threads and BLAS both at 1, so that every figure is
one core's), the script times:

- the window-by-window kernels as ``objective`` runs them:
  ``conv_pool_forward`` (in the network's ``activate_order``, by default the
  maxima first, then ``sigma`` on them) and ``conv_pool_backward`` (``dxi/dZ``
  for layers 2 on);
- their GEMMs alone, at the kernels' own shapes: one filter position at a time,
  ``W phi_j`` forward, ``dS_j phi_j^T`` and ``W^T dS_j`` backward, on an operand
  block reused from position to position (so it is in cache, as in the kernels);
- their gathers alone: the rows of ``P_phi P_pad`` that each position reads,
  ``np.take`` from ``Z`` (once forward, once backward);
- the rest, by difference: the bias, ``sigma``, the pooling maxima and ``P_pool^T``,
  the scatter of ``dxi/dphi`` to ``dxi/dZ``, the block loops.

Then the whole ``objective`` on the same batch, beside the sum of the conv
kernels timed alone; the difference is the full layer, the loss, the casts and
the sums. Each figure is the best over ``--rounds`` rounds (both dtypes in
turn) of ``--repeats`` runs, so that a slow spell of the machine touches every
part, and the last table puts float32 over float64 for each part. The GEMMs'
rate here is one core's; ``bench_core.py`` gives the rate of the whole machine.

Run ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_layers.py``
(``--batch 1024 --repeats 3 --rounds 3``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import DATA, load, mnist_demo_network  # noqa: E402
from _roofline import pass_gemms  # noqa: E402

from sparsecnn import kernels, machine  # noqa: E402
from sparsecnn._argtypes import integer  # noqa: E402


def best(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` timings of ``fn()`` (after one call to warm up)."""
    fn()
    out = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return float(out)


def layer_parts(ly: Any, Z: np.ndarray, W: np.ndarray, b: np.ndarray, order: str, flops: float, repeats: int
                ) -> tuple[dict[str, float], np.ndarray]:
    """The timings of one conv layer on the batch ``Z`` (its GEMMs: ``flops``; ``sigma`` before or after
    the pooling as ``order`` says), and its output ``Z^{m+1}``."""
    dtype, l = Z.dtype, Z.shape[1]
    d, hhd, first = ly.d_out, ly.hhd, ly.m == 1
    Zn = np.empty((ly.n_out, l), dtype)
    K = np.empty((ly.n_out, l), np.min_scalar_type(ly.spec.r ** 2 - 1))
    dZ = None if first else np.empty((ly.n_in, l), dtype)
    fwd = best(lambda: ly.conv_pool_forward(Z, W, b, order=order, out=Zn, out_offsets=K), repeats)
    dZn = np.asarray(np.random.default_rng(ly.m).standard_normal(Zn.shape), dtype=dtype)
    bwd = best(lambda: ly.conv_pool_backward(W, Z, dZn, Zn, K, need_dZ=not first, out=dZ), repeats)

    plan = kernels.selection_plan(ly.P_phipad_windows)
    src = kernels.gather_source(plan, Z).copy()
    take = plan.take.reshape(-1, hhd)
    n = take.shape[0]                                    # positions some pooling window reads
    phi, dphi = np.empty((hhd, l), dtype), np.empty((hhd, l), dtype)
    S = np.empty((d, l), dtype)
    dS = np.asarray(np.random.default_rng(0).standard_normal((d, l)), dtype=dtype)
    dW = np.empty((d, hhd), dtype)
    WT = np.ascontiguousarray(W.T)

    def gathers() -> None:
        for j in range(n):
            np.take(src, take[j], axis=0, out=phi, mode="clip")

    def gemms() -> None:
        for _ in range(n):
            np.matmul(W, phi, out=S)                     # S_j = W phi_j
            np.matmul(dS, phi.T, out=dW)                 # dS_j phi_j^T
            if not first:
                np.matmul(WT, dS, out=dphi)              # W^T dS_j

    parts = {"forward kernel": fwd, "backward kernel": bwd,
             "gathers alone": 2 * best(gathers, repeats),    # forward and backward each gather once
             "GEMMs alone": best(gemms, repeats), "flops": flops}
    return parts, Zn


def derived(r: dict[str, float]) -> dict[str, float]:
    """The sums, rates and shares of a layer's timings."""
    kern = r["forward kernel"] + r["backward kernel"]
    return {**r, "kernels": kern, "GEMM GFLOP/s": r["flops"] / r["GEMMs alone"] / 1e9,
            "rest": kern - r["GEMMs alone"] - r["gathers alone"], "GEMM share": r["GEMMs alone"] / kern}


def run(net: Any, theta: np.ndarray, X: np.ndarray, y: np.ndarray, dtype: str, repeats: int
        ) -> dict[str, dict[str, float]]:
    """One round in one dtype: every conv layer's parts (:func:`layer_parts`), then the whole objective."""
    l = X.shape[1]
    X = np.ascontiguousarray(X, dtype=dtype)
    Ws, bs = net.unpack(theta)
    gemms = pass_gemms(net.input_shape, [ly.spec for ly in net.layers])
    rows: dict[str, dict[str, float]] = {}
    Z = X
    for ly in net.conv:
        W = np.asarray(Ws[ly.m - 1], dtype=dtype)
        b = np.asarray(bs[ly.m - 1], dtype=dtype)
        flops = sum(g.flops(l) for g in gemms if g.label.startswith(f"conv{ly.m} "))
        rows[f"conv {ly.m}"], Z = layer_parts(ly, Z, W, b, net.activate_order, flops, repeats)
    rows["objective"] = {"time": best(lambda: net.objective(theta, X, y, batch_size=l, dtype=dtype), repeats)}
    return rows


def fmt(x: float, unit: str = "ms") -> str:
    return f"{x * 1e3:.1f}" if unit == "ms" else f"{x:.1f}" if unit == "rate" else f"{x:.0%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=integer(1), default=1024, help="images in the batch (default 1024)")
    p.add_argument("--repeats", type=integer(1), default=3, help="timings per round (default 3)")
    p.add_argument("--rounds", type=integer(1), default=3,
                   help="rounds over both dtypes; each figure is its best over all (default 3)")
    args = p.parse_args(argv)
    kernels.set_num_threads(1)
    net = mnist_demo_network()
    theta = net.init_params(seed=1)
    X, y, _ = load(DATA / "mnist-demo.mat", args.batch, 0)
    X = X - X.mean(axis=1, keepdims=True)                # centred on the batch mean
    results: dict[str, dict[str, dict[str, float]]] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(args.rounds):                     # rounds, so that a slow spell hits every part
            for dtype in ("float64", "float32"):
                new = run(net, theta, X, y, dtype, args.repeats)
                old = results.setdefault(dtype, new)
                for name, r in new.items():
                    for k, v in r.items():
                        old[name][k] = min(old[name][k], v)
    for rows in results.values():
        for name in rows:
            if name != "objective":
                rows[name] = derived(rows[name])
        rows["objective"]["conv kernels alone"] = sum(r["kernels"] for n, r in rows.items() if n != "objective")
    print(f"One thread, batch of {X.shape[1]} mnist-demo images, best of {args.rounds} rounds of "
          f"{args.repeats}; times in ms. Window loops: {machine.chosen().compiled_why}.\n")
    print("| dtype | layer | forward kernel | backward kernel | GEMMs alone | GEMM GFLOP/s | gathers alone "
          "| rest | GEMM share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, rows in results.items():
        for name, r in rows.items():
            if name == "objective":
                continue
            print(f"| {dtype} | {name} | {fmt(r['forward kernel'])} | {fmt(r['backward kernel'])} "
                  f"| {fmt(r['GEMMs alone'])} | {fmt(r['GEMM GFLOP/s'], 'rate')} | {fmt(r['gathers alone'])} "
                  f"| {fmt(r['rest'])} | {fmt(r['GEMM share'], '%')} |")
        o = rows["objective"]
        print(f"| {dtype} | whole `objective` | {fmt(o['time'])} in all; the conv kernels timed alone add up "
              f"to {fmt(o['conv kernels alone'])} | | | | | | |")
    print("\nfloat32 time over float64 time, by part:\n")
    print("| layer | kernels | GEMMs alone | gathers alone | rest |")
    print("|---|---|---|---|---|")
    r64, r32 = results["float64"], results["float32"]
    for name in r64:
        if name == "objective":
            continue
        print(f"| {name} | " + " | ".join(f"{r32[name][k] / r64[name][k]:.2f}"
                                          for k in ("kernels", "GEMMs alone", "gathers alone", "rest")) + " |")
    print(f"| whole `objective` | {r32['objective']['time'] / r64['objective']['time']:.2f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
