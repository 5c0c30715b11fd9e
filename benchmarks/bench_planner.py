"""Planner benchmark: bytes kept per instance and function+gradient time of each policy.

The mnist-demo network (input 28x28x1; ``ConvLayer(32, h=5, p=2, r=2)``,
``ConvLayer(64, h=3, p=1, r=2)``, ``ConvLayer(64, h=3, p=1, r=2)``,
``FullLayer(10)``), on the first 1,024 images of the packaged ``mnist-demo.mat``
(``Z`` is ``l x 784``, each image row by row; ``vec(Z^{1,i})`` is the transposed
image; pixels scaled by 1/255), or on random data of the same shape when the
file is absent.

For each policy (``store-all``, ``slides``, ``min-memory`` and byte budgets)
it prints the bytes the plan keeps per instance, the same measured with
tracemalloc on the forward cache of all the images, the ratio to
``store-all``, the median wall time of ``net.objective(theta, X, y, C,
plan=...)`` (function and gradient over all the images, one batch) over
``--repeats`` runs after a warm-up (the policies take turns, so that a
change in the machine's load touches all of them alike), the median process
CPU time, their ratios to ``store-all``, and the relative gradient difference
to ``store-all``.

Target: ``min-memory`` keeps at most 1/8 of ``store-all``'s bytes at no more
than 1.3x its time.

Run ``python benchmarks/bench_planner.py`` (``--repeats 7``, ``--images 512``,
``--budget 20000 --budget 200000``, ``--json out.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _data import DATA, load, mnist_demo_network  # noqa: E402  (benchmarks/ is on sys.path)

from sparsecnn import Network


def held_bytes(net: Network, theta: np.ndarray, X: np.ndarray, plan: object) -> int:
    """Bytes the forward cache holds, measured with tracemalloc from outside."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = net.forward(theta, X, plan=plan)  # type: ignore[arg-type]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del cache
    return int(held)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1024, help="instances (default 1024)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per policy after a warm-up (default 5)")
    p.add_argument("--budget", type=float, action="append", default=None,
                   help="byte budgets per instance to add (default: 20000)")
    p.add_argument("--data", type=Path, default=DATA / "mnist-demo.mat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)

    net = mnist_demo_network()
    X, y, source = load(args.data, args.images, args.seed)
    l = X.shape[1]
    theta = net.init_params(seed=args.seed)
    C = 0.01 * l
    budgets = args.budget if args.budget is not None else [20000.0]
    policies: list[str | float] = ["store-all", "slides", "min-memory", *budgets]
    print(f"{net!r}\ndata: {source}, l = {l}; objective = f and gradient over all {l} images, "
          f"median of {args.repeats} runs after a warm-up", flush=True)

    plans = [net.plan(policy) for policy in policies]
    rows = []
    grads = []
    for policy, plan in zip(policies, plans, strict=True):
        _, g = net.objective(theta, X, y, C, plan=plan, batch_size=l)          # warm-up (also lazy caches)
        held = held_bytes(net, theta, X, plan)
        grads.append(g)
        rows.append({
            "policy": policy if isinstance(policy, str) else f"budget {policy:g}",
            "retained": list(plan.retained),
            "bytes_per_instance": plan.bytes_per_instance,
            "measured_bytes_per_instance": held / l,
            "recompute_flops_per_instance": plan.recompute_flops_per_instance,
            "times_s": [],
            "cpu_s": [],
            "grad_rel_diff": float(np.linalg.norm(g - grads[0]) / np.linalg.norm(grads[0])),
        })
    # round robin, so that a change in the machine's load touches every policy alike
    for k in range(args.repeats):
        for row, plan in zip(rows, plans, strict=True):
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            net.objective(theta, X, y, C, plan=plan, batch_size=l)
            row["times_s"].append(time.perf_counter() - t)
            row["cpu_s"].append(time.process_time() - c)
        print(f"  run {k + 1}/{args.repeats}: " + ", ".join(
            f"{r['policy']} {r['times_s'][-1]:.2f} s" for r in rows), flush=True)
    for row in rows:
        row["time_s"] = statistics.median(row["times_s"])
        row["cpu_time_s"] = statistics.median(row["cpu_s"])

    base = rows[0]
    header = ("policy", "kept B/inst", "measured", "vs store-all", "recompute flops/inst", "f+grad time (s)",
              "vs store-all", "CPU time (s)", "vs store-all", "grad rel. diff")
    table = [header]
    for r in rows:
        table.append((
            str(r["policy"]),
            f"{r['bytes_per_instance']:,}",
            f"{r['measured_bytes_per_instance']:,.0f}",
            f"{r['bytes_per_instance'] / base['bytes_per_instance']:.4f}",
            f"{r['recompute_flops_per_instance']:,}",
            f"{r['time_s']:.3f}",
            f"{r['time_s'] / base['time_s']:.2f}x",
            f"{r['cpu_time_s']:.3f}",
            f"{r['cpu_time_s'] / base['cpu_time_s']:.2f}x",
            f"{r['grad_rel_diff']:.1e}",
        ))
    widths = [max(len(cells[k]) for cells in table) for k in range(len(header))]
    print()
    print("| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in table[1:]:
        print("| " + " | ".join(c.rjust(w) if k else c.ljust(w)
                                for k, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |")
    mm = next(r for r in rows if r["policy"] == "min-memory")
    bytes_ratio = mm["bytes_per_instance"] / base["bytes_per_instance"]
    time_ratio = mm["time_s"] / base["time_s"]
    ok = bytes_ratio <= 1 / 8 and time_ratio <= 1.3
    print(f"\nmin-memory: {bytes_ratio:.4f} of store-all's bytes (target <= 0.125), {time_ratio:.2f}x its time "
          f"(target <= 1.3x): {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "l": l, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
