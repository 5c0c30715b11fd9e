"""Newton benchmark: simpleNN's MNIST demo, ``mnist-demo-layer4.config``, 20 iterations.

Settings as simpleNN's ``example_mnist.m`` with ``-C 0.01`` (``C = 0.01 l``),
``GNsize = ceil(0.05 l) = 100``, ``xi = 0.1``, ``CGmax = 250``, ``lambda = 1``, seed 111;
pixels scaled by 1/255 and centred on the training mean.  Reports the test
accuracy, the wall time of the 20 iterations (loading excluded), the CG
iterations and where the time goes.

Run ``python benchmarks/bench_newton.py`` (``--seeds 5`` for mean and spread over
seeds 111..115, ``--jacobian store`` for simpleNN's stored Jacobian, ``--dtype float32``
for the products in single precision, ``--gn-dtype float32`` for the ``G v`` products alone,
``--batch-size`` for the instances per pass).  Reference:
simpleNN under Octave took 503 s for the 20 iterations and reached 0.951 on the machine the
target was set on; ``bench_simplenn.py`` times simpleNN on this machine beside sparsecnn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sparsecnn import Network, datasets
from sparsecnn.data import center, load_simplenn_mat, scale
from sparsecnn.optim import newton

DATA = datasets.DIRECTORY                  # simpleNN's mnist-demo files, packaged


def run(seed: int, args: argparse.Namespace) -> dict[str, object]:
    net = Network.from_simplenn_config(args.data / "mnist-demo-layer4.config")
    Xtr, ytr = load_simplenn_mat(args.data / "mnist-demo.mat")
    Xte, yte = load_simplenn_mat(args.data / "mnist-demo.t.mat")
    if args.images is not None:                     # a smaller run (smoke tests), not the benchmark
        Xtr, ytr = Xtr[:, :args.images], ytr[:args.images]
    Xtr, mean = center(scale(Xtr, 1 / 255))
    Xte, _ = center(scale(Xte, 1 / 255), mean)
    l = Xtr.shape[1]
    theta0 = net.init_params(seed=seed)

    def show(row: dict[str, object]) -> None:
        if not args.quiet:
            print(f"  {row['iter']:2d}-iter f: {row['f']:.6g} |g|: {row['gnorm']:.4g} alpha: {row['step']:g} "
                  f"lambda: {row['lam']:.4g} #CG: {row['cg_iters']} ratio: {row['ratio']:.3g} "
                  f"time: {row['time']:.2f}s", flush=True)

    t = time.perf_counter()
    theta, hist = newton(net, theta0, Xtr, ytr, C=0.01 * l, iter_max=args.iter_max, seed=seed,
                         jacobian=args.jacobian, callback=show, dtype=args.dtype,
                         gn_dtype=args.gn_dtype,
                         batch_size=args.batch_size)
    wall = time.perf_counter() - t
    acc = float(np.mean(net.predict(theta, Xte) == yte))
    return {"seed": seed, "test_acc": acc, "time_s": wall, "cg_iters": hist.cg_iters,
            "total_cg": int(sum(hist.cg_iters)), "f0": hist.f0, "f": hist.f[-1],
            "ls_steps": hist.extra["ls_steps"], "timing": hist.timing}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, starting at --seed (default 1)")
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--iter-max", type=int, default=20)
    p.add_argument("--jacobian", choices=["recompute", "store"], default="recompute")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--gn-dtype", choices=["float64", "float32"], help="dtype of G v in CG alone (default --dtype)")
    p.add_argument("--batch-size", type=int, default=1024, help="instances per pass (simpleNN's bsize)")
    p.add_argument("--images", type=int, default=None, help="use only the first N training images")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not (args.data / "mnist-demo.mat").is_file():
        print(f"simpleNN data not found in {args.data}", file=sys.stderr)
        return 1
    results = []
    for seed in range(args.seed, args.seed + args.seeds):
        r = run(seed, args)
        results.append(r)
        tm = r["timing"]
        assert isinstance(tm, dict)
        mixed = f", G v {args.gn_dtype}" if args.gn_dtype else ""
        ls_steps = r["ls_steps"]
        assert isinstance(ls_steps, list)
        print(f"seed {seed} ({args.dtype}{mixed}, batch {args.batch_size}): test_acc {r['test_acc']:.4f}  "
              f"time {r['time_s']:.1f} s  #CG total {r['total_cg']} per iter {r['cg_iters']}  "
              f"line-search trials {sum(ls_steps)}  f {r['f0']:.4g} -> {r['f']:.4g}")
        print("  breakdown: " + ", ".join(f"{k} {v:.1f} s" for k, v in tm.items()), flush=True)
    if len(results) > 1:
        accs = [float(r["test_acc"]) for r in results]  # type: ignore[arg-type]
        times = [float(r["time_s"]) for r in results]  # type: ignore[arg-type]
        print(f"test_acc mean {statistics.mean(accs):.4f} sd {statistics.stdev(accs):.4f} "
              f"min {min(accs):.4f} max {max(accs):.4f}; time mean {statistics.mean(times):.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
