"""Scaling benchmark: time and memory of ``f``, its gradient and one Newton iteration as ``l`` grows.

The mnist-demo network (simpleNN's ``mnist-demo-layer4.config``) on ``l``
synthetic 28x28 images (random pixels in ``[0, 1]``, random labels; the
default ``l`` are 2,000, 8,000, 32,000 and 60,000).  Rows:

- ``objective``: ``net.objective(theta, X, y, C)`` (``f`` and its gradient
  over all ``l`` images, batch 1024), with the default path and with
  ``plan="min-memory"``;
- ``newton 1 it``: ``newton(net, theta, X, y, C=0.01 l, iter_max=1)`` (one
  Newton iteration: ``f`` and gradient, ``G`` on ``ceil(0.05 l)`` images, CG,
  the line search), with the default plan and with ``plan="min-memory"``.

Every row runs in a process of its own, so that one row's memory cannot
hide another's; ``X`` is built before the clock and the memory counters
start.  Columns: wall time, the peak resident set size above the level
before the run (``/proc/self/statm`` sampled every millisecond, which also
sees memory that tracemalloc cannot), and tracemalloc's peak of numpy's
allocations.  Time should grow linearly in ``l`` and memory stay bounded by
the batch; the last column divides the time by ``l / l_0`` (the first
``l``), so that linear growth shows as a constant.

Run ``python benchmarks/bench_scaling.py`` (``--l 2000 --l 8000 ...``,
``--rows objective,newton``, ``--json out.json``).  To benchmark against a
current numpy, run it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``
unset (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_scaling.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from _data import RSSPeak, mnist_demo_network  # noqa: E402  (benchmarks/ is on sys.path)

from sparsecnn.optim import newton

PLANS = {"default": None, "min-memory": "min-memory"}
ROWS = ("objective", "newton")


def synthetic(l: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (``784 x l``, pixels in ``[0, 1]``) and labels in ``0..9``."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(784, l)).astype(np.float64) / 255.0
    return X, rng.integers(0, 10, size=l)


def child(row: str, plan_name: str, l: int, seed: int) -> dict[str, Any]:
    """One row, in this process: returns its time and memory."""
    net = mnist_demo_network()
    theta = net.init_params(seed=seed)
    X, y = synthetic(l, seed)
    plan = PLANS[plan_name]
    C = 0.01 * l
    if row == "objective":
        def run() -> None:
            net.objective(theta, X, y, C, plan=plan)
    else:
        def run() -> None:
            newton(net, theta, X, y, C=C, iter_max=1, seed=seed, plan="auto" if plan is None else plan)
    tracemalloc.start()
    with RSSPeak() as rss:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"row": row, "plan": plan_name, "l": l, "seconds": seconds, "rss_peak": rss.above_start,
            "traced_peak": traced}


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--l", type=int, action="append", default=None,
                   help="numbers of images (default 2000, 8000, 32000, 60000)")
    p.add_argument("--rows", default=",".join(ROWS), help="objective, newton, or both (comma-separated)")
    p.add_argument("--plans", default=",".join(PLANS), help="default, min-memory, or both")
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", nargs=3, metavar=("ROW", "PLAN", "L"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        row, plan_name, l = args.child
        print(json.dumps(child(row, plan_name, int(l), args.seed)))
        return 0
    sizes = args.l or [2000, 8000, 32000, 60000]
    rows = [r for r in args.rows.split(",") if r]
    plans = [q for q in args.plans.split(",") if q]
    bad = [r for r in rows if r not in ROWS] + [q for q in plans if q not in PLANS]
    if bad or any(n < 1 for n in sizes):
        p.error(f"rows must be among {ROWS}, plans among {tuple(PLANS)}, l >= 1; got {bad or sizes}")
    print(f"mnist-demo network, synthetic 28x28 images, seed {args.seed}; python {sys.version.split()[0]}, "
          f"numpy {np.__version__}, {os.cpu_count()} cores visible")
    results = []
    print("\n| row | plan | l | time | time / (l / l_0) | RSS peak | tracemalloc peak |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        for plan_name in plans:
            first = None
            for l in sizes:
                done = subprocess.run([sys.executable, __file__, "--seed", str(args.seed), "--child", row,
                                       plan_name, str(l)], capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                res = json.loads(done.stdout.strip().splitlines()[-1])
                results.append(res)
                first = first or res
                per = res["seconds"] / (l / first["l"])
                label = "objective" if row == "objective" else "newton 1 it"
                print(f"| {label} | {plan_name} | {l:,} | {res['seconds']:.2f} s | {per:.2f} s | "
                      f"{mib(res['rss_peak'])} | {mib(res['traced_peak'])} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
