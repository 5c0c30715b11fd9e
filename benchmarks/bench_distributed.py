"""Distributed benchmark: Newton on the 2,000 mnist-demo images, in-process against Dask worker processes.

Network ``mnist-demo-layer4.config``, pixels scaled by 1/255 and centred, ``C = 0.01 l``, seed 111,
``--iter-max`` (3) Newton iterations with simpleNN's other defaults (``GNsize`` 100, ``xi`` 0.1).

For each number ``N`` of ``--workers`` (1, 2 and 4 by default) the script starts a cluster the way
one runs on a real cluster, as separate processes on 127.0.0.1: ``dask scheduler`` and
``dask worker SCHEDULER --nworkers N --nthreads 1`` (not a ``LocalCluster``).  Then it alternates
``--repeat`` times (the machine may be busy; medians are reported):

- in-process: :func:`sparsecnn.optim.newton` with sparsecnn's kernel threads set to
  ``min(N, cores)``, the cores the ``N`` single-threaded workers have in total (BLAS on one thread,
  as in the workers);
- Dask: :func:`sparsecnn.distributed.newton_distributed` on the ``N`` workers, one partition each.

Where the Dask time goes (``--breakdown``, on by default):

- calls: the ``f`` + gradient evaluations, Gauss-Newton builds and ``G v`` products of the run;
- a call: an ``f`` + gradient and a ``G v`` on partitions of one image each (task messages,
  scheduling, gathering, and the arithmetic of one image, timed apart in this process);
- serialising ``theta`` (or ``v``): ``pickle`` of the ``n``-vector;
- the arithmetic of one worker: its share (``l/N`` images for ``f`` + gradient, ``GNsize/N`` for
  ``G v``) in this process on one thread, against the whole on ``min(N, cores)`` threads.

Run ``python benchmarks/bench_distributed.py [--workers 1 2 4] [--repeat 3] [--json]``;
``--scheduler tcp://HOST:8786`` times a running cluster instead (``--workers`` is then ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from sparsecnn import Network, datasets
from sparsecnn.data import center, load_simplenn_mat, scale
from sparsecnn.kernels import threads
from sparsecnn.optim import newton
from sparsecnn.second_order import GaussNewton

DATA = datasets.DIRECTORY                  # simpleNN's mnist-demo files, packaged


@contextlib.contextmanager
def cluster(n_workers: int) -> Iterator[str]:
    """``dask scheduler`` and ``dask worker --nworkers n --nthreads 1`` as subprocesses; yields the address."""
    dask_cli = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    tmp = Path(tempfile.mkdtemp(prefix="sparsecnn-bench-dask-"))
    sched_file = tmp / "scheduler.json"
    logs = [open(tmp / "scheduler.log", "w"), open(tmp / "workers.log", "w")]  # noqa: SIM115
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        if not sched_file.exists():
            raise RuntimeError(f"dask scheduler did not start; see {tmp / 'scheduler.log'}")
        time.sleep(0.2)                                        # the file is written, then completed
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--nworkers", str(n_workers),
                                       "--nthreads", "1", "--dashboard-address", ":0"],
                                      stdout=logs[1], stderr=subprocess.STDOUT))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()                                                       # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@contextlib.contextmanager
def kernel_threads(n: int) -> Iterator[None]:
    """sparsecnn's kernel threads = ``n`` and BLAS on one thread (what a worker with ``--nthreads n`` has)."""
    old = threads.get_num_threads()
    threads.set_num_threads(n)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        threads.set_num_threads(old)


def run_config(address: str | None, N: int, args: argparse.Namespace, net: Network, X: np.ndarray,
               y: np.ndarray) -> dict[str, Any]:
    from sparsecnn.distributed import DistributedObjective, connect, newton_distributed, split_columns

    l = X.shape[1]
    C = 0.01 * l
    theta0 = net.init_params(seed=111)
    kw: dict[str, Any] = dict(C=C, iter_max=args.iter_max, seed=111)
    cores = min(N, os.cpu_count() or 1)
    client, _ = connect(address)
    try:
        client.wait_for_workers(N, timeout=120)
        N = len(client.scheduler_info()["workers"])
        t_in: list[float] = []
        t_dask: list[float] = []
        rows: dict[str, Any] = {}
        for _ in range(args.repeat):                           # alternate: the load changes
            with kernel_threads(cores):
                t = time.perf_counter()
                _, h_in = newton(net, theta0, X, y, **kw)
                t_in.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, h_d = newton_distributed(net, theta0, split_columns(X, y, N), client=client, **kw)
            t_dask.append(time.perf_counter() - t)
            rows = {"f_in": h_in.f[-1], "f_dask": h_d.f[-1], "cg_in": int(sum(h_in.cg_iters)),
                    "cg_dask": int(sum(h_d.cg_iters)), "ls_steps": int(sum(h_d.extra["ls_steps"]))}
        res: dict[str, Any] = {"workers": N, "cores_in_process": cores, "in_process_s": statistics.median(t_in),
                               "dask_s": statistics.median(t_dask), "runs_in_process": t_in,
                               "runs_dask": t_dask, **rows}
        res["ratio"] = res["dask_s"] / res["in_process_s"]
        if args.breakdown:
            theta = theta0
            GNsize = int(np.ceil(0.05 * l))
            idx = np.random.default_rng(0).permutation(l)[:GNsize]
            v = np.random.default_rng(1).standard_normal(net.n_params)
            n_rep = 3 * args.repeat
            # a call beyond the arithmetic: one image per worker
            with DistributedObjective(net, [(X[:, k:k + 1], y[k:k + 1]) for k in range(N)], client=client,
                                      C=C) as tiny:
                rt_fg = median_time(lambda: tiny.objective(theta), n_rep)
                G = tiny.gauss_newton(theta, np.arange(N))
                rt_gv = median_time(lambda: G @ v, n_rep)
                G.release()
            # one worker's arithmetic (its share, one thread) against the whole in-process
            share = slice(0, l // N)
            with kernel_threads(1):
                one_fg = median_time(lambda: net.objective(theta, X[:, :1], y[:1], C), n_rep)
                G1 = GaussNewton(net, theta, X[:, :1])
                one_gv = median_time(lambda: G1 @ v, n_rep)
                w_fg = median_time(lambda: net.objective(theta, X[:, share], y[share], C), args.repeat)
                Gw = GaussNewton(net, theta, X[:, idx[:GNsize // N]])
                w_gv = median_time(lambda: Gw @ v, n_rep)
            with kernel_threads(cores):
                a_fg = median_time(lambda: net.objective(theta, X, y, C), args.repeat)
                Ga = GaussNewton(net, theta, X[:, idx])
                a_gv = median_time(lambda: Ga @ v, n_rep)
            t = time.perf_counter()
            for _ in range(100):
                pickle.loads(pickle.dumps(theta, protocol=5))
            ser = (time.perf_counter() - t) / 100
            res.update({"round_trip_fg_s": rt_fg, "round_trip_gv_s": rt_gv, "one_image_fg_s": one_fg,
                        "one_image_gv_s": one_gv, "serialise_theta_s": ser,
                        "theta_bytes": int(theta.nbytes), "worker_fg_s": w_fg, "worker_gv_s": w_gv,
                        "in_process_fg_s": a_fg, "in_process_gv_s": a_gv,
                        "calls_fg": 1 + rows["ls_steps"],               # initial + line-search trials
                        "calls_gv": rows["cg_dask"], "calls_gn_build": args.iter_max})
    finally:
        client.close()
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--scheduler", help="address of a running Dask scheduler (instead of starting one)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--iter-max", type=int, default=3)
    p.add_argument("--images", type=int, help="first IMAGES images only (smoke tests)")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)

    net = Network.from_simplenn_config(args.data / "mnist-demo-layer4.config")
    X, y = load_simplenn_mat(args.data / "mnist-demo.mat")
    if args.images is not None:
        X, y = X[:, :args.images], y[:args.images]
    X, _ = center(scale(X, 1 / 255))

    results = []
    if args.scheduler:
        from sparsecnn.distributed import connect

        c, _ = connect(args.scheduler)
        n = len(c.scheduler_info()["workers"])
        c.close()
        results.append(run_config(args.scheduler, n, args, net, X, y))
    else:
        for N in args.workers:
            with cluster(N) as address:
                results.append(run_config(address, N, args, net, X, y))
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "python": platform.python_version(), "loadavg": list(os.getloadavg())}
    if args.json:
        print(json.dumps({"machine": machine, "l": X.shape[1], "iter_max": args.iter_max, "results": results},
                         indent=2))
        return 0
    print(f"Newton, {args.iter_max} iterations on {X.shape[1]} mnist-demo images ({net.n_params} parameters); "
          f"{machine['cpus']} CPUs, load average {' '.join(f'{a:.1f}' for a in os.getloadavg())}; "
          f"medians of {args.repeat}, in-process and Dask alternated")
    print("| workers | in-process (threads) | Dask | Dask / in-process | f in / Dask | CG in / Dask |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['in_process_s']:.2f} s ({r['cores_in_process']}) | {r['dask_s']:.2f} s | "
              f"{r['ratio']:.2f}x | {r['f_in']:.6g} / {r['f_dask']:.6g} | {r['cg_in']} / {r['cg_dask']} |")
    if args.breakdown:
        print("\nWhere the Dask time goes (per call; a worker's arithmetic on one thread)")
        print("| workers | f+g calls | G v calls | call f+g (1 image in-process) | call G v (1 image in-process) "
              "| pickle theta | worker f+g | in-process f+g | worker G v | in-process G v |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['workers']} | {r['calls_fg']} | {r['calls_gv']} | {1e3 * r['round_trip_fg_s']:.1f} ms "
                  f"({1e3 * r['one_image_fg_s']:.1f} ms) | {1e3 * r['round_trip_gv_s']:.1f} ms "
                  f"({1e3 * r['one_image_gv_s']:.1f} ms) | {1e3 * r['serialise_theta_s']:.2f} ms "
                  f"({r['theta_bytes'] // 1024} KiB) | {r['worker_fg_s']:.3f} s | {r['in_process_fg_s']:.3f} s | "
                  f"{1e3 * r['worker_gv_s']:.1f} ms | {1e3 * r['in_process_gv_s']:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
