"""Distributed benchmark: one ``f`` + gradient evaluation on the 2,000 mnist-demo images.

Network ``mnist-demo-layer4.config``, pixels scaled by 1/255 and centred, ``C = 0.01 l``.
Times (median of ``--repeat`` runs, after one warm-up):

- in-process: :meth:`sparsecnn.Network.objective` on all 2,000 images;
- distributed: :meth:`sparsecnn.distributed.DistributedObjective.objective` with the images in
  ``--workers`` partitions on a ``LocalCluster`` of ``--workers`` single-threaded worker processes
  (Dask's nanny sets ``OMP_NUM_THREADS=1`` etc. in the workers);
- overhead per evaluation: the same distributed call on partitions of one image each (scatter of
  ``theta``, one task per partition, gathering the gradients), i.e. what distribution costs
  beyond the arithmetic.

Run ``python benchmarks/bench_distributed.py [--workers 2] [--repeat 5] [--json]``.  Add
``--scheduler tcp://HOST:8786`` to time a running cluster instead of a local one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from sparsecnn import Network, datasets
from sparsecnn.data import center, load_simplenn_mat, scale

DATA = datasets.DIRECTORY                  # simpleNN's mnist-demo files, packaged


def timed(fn, repeat: int) -> tuple[float, list[float]]:
    fn()                                                       # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", help="address of a running Dask scheduler (instead of a LocalCluster)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)

    from sparsecnn.distributed import DistributedObjective, connect, split_columns

    net = Network.from_simplenn_config(args.data / "mnist-demo-layer4.config")
    X, y = load_simplenn_mat(args.data / "mnist-demo.mat")
    X, _ = center(scale(X, 1 / 255))
    l = X.shape[1]
    C = 0.01 * l
    theta = net.init_params(seed=111)

    t_in, all_in = timed(lambda: net.objective(theta, X, y, C), args.repeat)
    f_in, g_in = net.objective(theta, X, y, C)

    t = time.perf_counter()
    client, cluster = connect(args.scheduler, None if args.scheduler else args.workers)
    t_start = time.perf_counter() - t
    try:
        n_workers = len(client.scheduler_info()["workers"])
        t = time.perf_counter()
        obj = DistributedObjective(net, split_columns(X, y, n_workers), client=client, C=C)
        t_load = time.perf_counter() - t
        t_dist, all_dist = timed(lambda: obj.objective(theta), args.repeat)
        f_d, g_d = obj.objective(theta)
        tiny = DistributedObjective(net, [(X[:, k:k + 1], y[k:k + 1]) for k in range(n_workers)],
                                    client=client, C=C)
        t_over, all_over = timed(lambda: tiny.objective(theta), args.repeat)
        obj.close()
        tiny.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    res = {
        "l": l, "n_params": net.n_params, "workers": n_workers, "cpus": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
        "in_process_s": t_in, "distributed_s": t_dist, "speedup": t_in / t_dist,
        "overhead_per_evaluation_s": t_over,
        "cluster_start_s": t_start, "partition_load_s": t_load,
        "rel_diff_f": abs(f_d - f_in) / abs(f_in),
        "rel_diff_g": float(np.linalg.norm(g_d - g_in) / np.linalg.norm(g_in)),
        "runs": {"in_process": all_in, "distributed": all_dist, "overhead": all_over},
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"f+g on {l} images, {net.n_params} parameters, {n_workers} workers, "
              f"{os.cpu_count()} CPUs, load average {res['loadavg_1min']:.1f}")
        print(f"  in-process      {t_in:8.3f} s")
        print(f"  distributed     {t_dist:8.3f} s  (speed-up {t_in / t_dist:.2f}x)")
        print(f"  overhead/eval   {t_over:8.3f} s  (one image per partition)")
        print(f"  cluster start   {t_start:8.3f} s, partitions loaded in {t_load:.3f} s")
        print(f"  relative difference: f {res['rel_diff_f']:.1e}, grad {res['rel_diff_g']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
