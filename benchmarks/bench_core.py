"""Core benchmark: sparsecnn against PyTorch CPU, one process, same data and parameters.

The mnist-demo network of simpleNN's ``mnist-demo-layer4.config`` (input
28x28x1; ``ConvLayer(32, h=5, p=2, r=2)``, ``ConvLayer(64, h=3, p=1, r=2)``,
``ConvLayer(64, h=3, p=1, r=2)``, ``FullLayer(10)``), on the 2,000 images of
the packaged ``mnist-demo.mat`` (:mod:`sparsecnn.datasets`; ``Z`` is ``l x 784``, each image row by
row; ``vec(Z^{1,i})`` is the transposed image; pixels scaled by 1/255), or on
random data of the same shape when the file is absent.

Rows (each the median of ``--repeats`` runs after a warm-up, all rows timed
round robin so that a change in the machine's load touches every row alike):

- ``sparsecnn net.objective``: ``f`` and its gradient over all the images,
  ``C = inf``, at each ``--batch`` and ``--dtype`` (``net.objective(...,
  dtype=...)``; float32 products, float64 sums), with the network's defaults:
  work buffers kept between calls, max pooling before ReLU;
- ``sparsecnn plan=<policy>``: the same in float64 at the first ``--batch``,
  keeping what each planner policy keeps (``store-all``, ``slides``,
  ``min-memory``): the memory columns show what each keeps;
- ``torch``: the same network as an ``nn.Sequential`` with the same
  parameters, forward, squared loss, backward, per batch, in float64 and
  float32 (``torch.set_num_threads(--threads)``);
- ``G v`` on ``--gv-images`` images: ``Network.gauss_newton(theta, X) @ v``
  against ``torch.func`` (``jvp`` then ``vjp``), in float64 and float32, and
  the float64 product with the cross-entropy loss (``B^i = (diag(p_i) -
  p_i p_i^T)/l``, its relative difference to ``torch.func``'s) and its time
  against the squared loss's.

Then the peak memory of each row (tracemalloc's peak for numpy's allocations,
and the peak resident set size sampled every millisecond above its level
before the run, which also sees PyTorch's allocations), and a per-operator
profile of ``net.objective(..., plan="store-all")`` in float64 (the default
runs the conv layers window by window, in one kernel each): time inside each layer method
(``conv_forward``: the ``P_phi P_pad`` gather and the GEMMs ``W phi_j``, one
sweep; ``conv_backward``: the GEMMs ``dS_j phi_j^T``, ``W^T dS_j`` and the
``P^T`` scatter; pooling ``winners``/``pool``/``pool_T``; full-layer GEMMs
``s``/``s_T``; elementwise ``sigma`` and the mask products), with the sweeps
split into im2col products and GEMMs by timing ``phi``/``phi_T`` and
``S``/``S_T`` apart on the same batch.

The gradients of every row are compared with PyTorch's (relative 2-norm
difference), so a fast wrong answer shows.

The roofline (``benchmarks/_roofline.py``, left out with ``--no-roofline``):
in every run of the round robin, numpy's GEMM is timed at the shapes of the
products each row performs, giving that run's GEMM floor; each row's share of
the machine's rate is its run's floor over its run's time, the median over the
runs, so that a spell of a slower machine (a VM's neighbours) touches the floor
and the row alike. ``G v`` gets the same, against the GEMMs of one product
(:func:`_roofline.gv_gemms`).

Run ``python benchmarks/bench_core.py`` (``--repeats 5 --threads 2
--batch 1024 --batch 128 --images 2000``, ``--json out.json``, ``--no-torch``).
To benchmark against a current numpy, run it with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` unset (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
python benchmarks/bench_core.py``); the header prints the BLAS kernel that runs.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _data import DATA, RSSPeak, load, mnist_demo_network  # noqa: E402  (benchmarks/ is on sys.path)
from _roofline import floor_seconds, gv_gemms, measure, pass_gemms, square_rate, total_flops  # noqa: E402

import sparsecnn
from sparsecnn import Network, kernels


# ----------------------------------------------------------------- environment
def environment(threads: int) -> list[str]:
    lines = [f"python {platform.python_version()}, numpy {np.__version__}, "
             f"scipy {__import__('scipy').__version__}, sparsecnn {sparsecnn.__version__}"]
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    lines.append(f"machine: {model}, {os.cpu_count()} cores visible; load average "
                 f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            lines.append(f"thread pool: {info.get('internal_api')} {info.get('version')} "
                         f"({info.get('architecture', '-')} kernel), {info.get('num_threads')} threads, "
                         f"{Path(str(info.get('filepath'))).name}")
    except ImportError:
        lines.append("thread pool: threadpoolctl not installed; BLAS threads not shown or limited")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                          "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_ARENA_MAX",
                                          "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                          "SPARSECNN_NUM_THREADS")}
    lines.append("environment: " + ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in env.items()))
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        thp = "?"
    lines.append(f"allocator: glibc malloc (defaults unless set above) for numpy and torch alike; "
                 f"transparent huge pages: {thp}")
    lines.append(f"threads: sparsecnn kernels {kernels.get_num_threads()}, BLAS limited to {threads}")
    lines.append(f"window loops (bias, maxima, P_pool^T): {sparsecnn.machine.chosen().compiled_why}")
    return lines


# ------------------------------------------------------------------ torch side
def torch_model(net: Network, theta: np.ndarray, dtype: Any) -> Any:
    """``nn.Sequential`` equal to ``net`` with parameters ``theta`` (NOTATION.md's maps)."""
    import torch
    from torch import nn

    Ws, bs = net.unpack(theta)
    mods: list[Any] = []
    for ly in net.conv:
        h, d = ly.spec.h, ly.d
        conv = nn.Conv2d(d, ly.d_out, h, stride=ly.spec.s, padding=ly.spec.p)
        # W^m[o, r + h*q + h*h*c] = w[o, c, r, q]
        w = Ws[ly.m - 1].reshape(ly.d_out, d, h, h).transpose(0, 1, 3, 2)
        conv.weight.data = torch.tensor(np.ascontiguousarray(w))
        conv.bias.data = torch.tensor(bs[ly.m - 1].copy())  # type: ignore[union-attr]
        mods += [conv, nn.ReLU(), nn.MaxPool2d(ly.spec.r)]
    mods.append(nn.Flatten())
    last = net.conv[-1]
    a, b, d = last.a_out, last.b_out, last.d_out
    for k, fl in enumerate(net.full):
        lin = nn.Linear(fl.n_in, fl.n_out)
        W = Ws[fl.m - 1]
        if k == 0:   # ours c + d*(r + a*q), torch's flatten c*a*b + r*b + q
            c, r, q = np.meshgrid(np.arange(d), np.arange(a), np.arange(b), indexing="ij")
            perm = (c + d * (r + a * q)).reshape(-1)       # torch column -> our column
            W = W[:, perm]
        lin.weight.data = torch.tensor(np.ascontiguousarray(W))
        lin.bias.data = torch.tensor(bs[fl.m - 1].copy())
        mods.append(lin)
        if not fl.last:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods).to(dtype)


def torch_grad_to_theta(net: Network, model: Any) -> np.ndarray:
    """The gradients held by ``model``'s parameters, in the order of ``theta``."""
    convs = [m for m in model if m.__class__.__name__ == "Conv2d"]
    lins = [m for m in model if m.__class__.__name__ == "Linear"]
    dWs, dbs = [], []
    for ly, conv in zip(net.conv, convs, strict=True):
        g = conv.weight.grad.double().numpy()              # [o, c, r, q] -> [o, c, q, r]
        dWs.append(g.transpose(0, 1, 3, 2).reshape(ly.d_out, -1))
        dbs.append(conv.bias.grad.double().numpy())
    last = net.conv[-1]
    a, b, d = last.a_out, last.b_out, last.d_out
    for k, lin in enumerate(lins):
        g = lin.weight.grad.double().numpy()
        if k == 0:
            c, r, q = np.meshgrid(np.arange(d), np.arange(a), np.arange(b), indexing="ij")
            perm = (c + d * (r + a * q)).reshape(-1)
            G = np.empty_like(g)
            G[:, perm] = g
            g = G
        dWs.append(g)
        dbs.append(lin.bias.grad.double().numpy())
    return net.pack(dWs, dbs)


def torch_images(net: Network, X: np.ndarray, dtype: Any) -> Any:
    """``x[i, c, r, q] = X[c + d*(r + a*q), i]`` (NCHW)."""
    import torch

    a, b, d = net.input_shape
    x = X.T.reshape(-1, b, a, d).transpose(0, 3, 2, 1)
    return torch.tensor(np.ascontiguousarray(x), dtype=dtype)


def torch_fg(model: Any, x: Any, Y: Any, batch: int) -> Callable[[], float]:
    import torch

    l = x.shape[0]

    def run() -> float:
        for p in model.parameters():
            p.grad = None
        total = 0.0
        for s in range(0, l, batch):
            out = model(x[s:s + batch])
            loss = ((out - Y[s:s + batch]) ** 2).sum() / l
            loss.backward()
            total += float(loss.detach())
        return total

    del torch
    return run


# ----------------------------------------------------------------- measuring
def peak_memory(fn: Callable[[], object], reset: Callable[[], None] | None = None) -> tuple[int, int]:
    """(tracemalloc peak, RSS peak above the start) of one call of ``fn``, in bytes;
    ``reset`` runs before each measured call (to free work arrays kept from earlier calls)."""
    if reset is not None:
        reset()
    gc.collect()
    with RSSPeak() as rss:
        fn()
    if reset is not None:
        reset()
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return int(peak), int(rss.above_start)


def _bind(fn: Callable[..., object], *args: Any, **kw: Any) -> Callable[[], object]:
    def call() -> object:
        return fn(*args, **kw)

    return call


@dataclasses.dataclass
class Row:
    name: str
    impl: str
    dtype: str
    batch: int | str
    fn: Callable[[], object]
    times: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    grad_diff: float = float("nan")
    tracemalloc_peak: int = 0
    rss_peak: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def op_profile(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, batch: int,
               repeats: int) -> tuple[float, dict[str, float]]:
    """Time inside each layer method during ``net.objective`` (the best of ``repeats`` runs)."""
    totals: dict[str, float] = collections.defaultdict(float)
    saved: list[tuple[object, str, object]] = []

    def wrap(obj: object, name: str, label: str) -> None:
        f = getattr(obj, name)

        def g(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            r = f(*a, **k)
            totals[label] += time.perf_counter() - t
            return r

        saved.append((obj, name, obj.__dict__.get(name, None)))
        object.__setattr__(obj, name, g)

    sigmas: list[tuple[Any, Any]] = []
    for ly in net.conv:
        for nm in ("conv_forward", "conv_backward", "winners", "pool", "pool_T"):
            wrap(ly, nm, f"{nm}{ly.m}")
    layers: list[Any] = [*net.conv, *net.full]
    for layer in layers:
        sigmas.append((layer, layer.sigma))
        layer.sigma = dataclasses.replace(layer.sigma)
        for nm in ("sigma", "backprop", "backprop_from_output"):
            wrap(layer.sigma, nm, f"{nm}{layer.m}")
    for fl in net.full:
        for nm in ("s", "s_T"):
            wrap(fl, nm, f"{nm}{fl.m}")
    best: tuple[float, dict[str, float]] | None = None
    try:
        for _ in range(repeats):
            totals.clear()
            t = time.perf_counter()
            net.objective(theta, X, y, batch_size=batch, plan="store-all")     # the layer-by-layer sweeps
            total = time.perf_counter() - t
            if best is None or total < best[0]:
                best = (total, dict(totals))
    finally:
        for obj, name, old in saved:
            if old is None:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, old)
        for layer, sig in sigmas:
            layer.sigma = sig
    assert best is not None
    return best


CATEGORIES = (
    ("conv sweeps (conv_forward, conv_backward)", ("conv_forward", "conv_backward")),
    ("pooling (winners, pool, pool_T)", ("winners", "pool", "pool_T")),
    ("full-layer GEMMs (s, s_T)", ("s", "s_T")),
    ("elementwise (sigma, mask products)", ("sigma", "backprop", "backprop_from_output")),
)


def sweep_split(net: Network, theta: np.ndarray, X: np.ndarray, batch: int, repeats: int
                ) -> dict[str, float]:
    """The conv sweeps taken apart on one batch: im2col products (``phi``, ``phi_T``) and
    GEMMs (``S``, ``S_T``) timed on their own, best of ``repeats``, summed over the conv layers."""
    Ws, bs = net.unpack(theta)
    Z = np.ascontiguousarray(X[:, :batch])
    best: dict[str, float] = {}
    for ly in net.conv:
        Phi = ly.phi(Z)
        S = ly.S(Ws[ly.m - 1], bs[ly.m - 1], Phi)
        dS = np.random.default_rng(0).standard_normal(S.shape)
        dPhi = ly.S_T(Ws[ly.m - 1], Phi, dS)[2]
        W, b = Ws[ly.m - 1], bs[ly.m - 1]
        first = ly.m == 1                                  # the first layer needs no dxi/dZ
        jobs = {"im2col products (phi, phi_T)": [_bind(ly.phi, Z)] + ([] if first else [_bind(ly.phi_T, dPhi)]),
                "GEMMs (S, S_T)": [_bind(ly.S, W, b, Phi), _bind(ly.S_T, W, Phi, dS, need_dPhi=not first)]}
        for label, fns in jobs.items():
            for fn in fns:
                ts = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t)
                best[label] = best.get(label, 0.0) + min(ts)
        Z, _ = ly.activate_pool(S)
    scale = X.shape[1] / batch
    return {k: v * scale for k, v in best.items()}


def _category(label: str) -> str:
    base = label.rstrip("0123456789")
    for cat, names in CATEGORIES:
        if base in names:
            return cat
    return "other"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w) if k == 0 else str(c).rjust(w)
                                     for k, (c, w) in enumerate(zip(r, widths, strict=True))) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5, help="timed runs of every row after a warm-up (>= 5)")
    p.add_argument("--batch", type=int, action="append", default=None, help="batch sizes (default 1024, 128)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS, torch and sparsecnn's kernels")
    p.add_argument("--dtype", action="append", default=None, choices=["float64", "float32"],
                   help="dtypes (default both)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--policies", default="store-all,slides,min-memory",
                   help="planner policies timed in float64 at the first batch size ('' for none)")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the reference backend's row (Network(backend='reference'), float64)")
    p.add_argument("--no-roofline", action="store_true",
                   help="leave out the machine's GEMM rates and each row's share of them")
    p.add_argument("--gv-images", type=int, default=100)
    p.add_argument("--profile-batch", type=int, default=128)
    p.add_argument("--data", type=Path, default=DATA / "mnist-demo.mat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each timed run, so that idle thread pools of the "
                        "previous row (OpenBLAS, OpenMP) have stopped spinning (default 0.5)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    batches = args.batch or [1024, 128]
    dtypes = args.dtype or ["float64", "float32"]

    kernels.set_num_threads(args.threads)
    limiter: Any = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)
    except ImportError:
        pass
    torch: Any = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch not installed: PyTorch rows skipped")
        else:
            torch.set_num_threads(args.threads)

    net = mnist_demo_network()
    X, y, source = load(args.data, args.images, args.seed)
    l = X.shape[1]
    theta = net.init_params(seed=args.seed)
    print(f"{net!r}\ndata: {source}, l = {l}; function+gradient over all {l} images (C = inf), "
          f"median of {args.repeats} runs after a warm-up")
    for line in environment(args.threads):
        print("  " + line)
    if torch is not None:
        print(f"  torch {torch.__version__}: {torch.get_num_threads()} threads, "
              f"{torch.get_num_interop_threads()} interop threads, mkldnn "
              f"{'on' if torch.backends.mkldnn.is_available() else 'off'}")

    rows: list[Row] = []
    grads: dict[str, np.ndarray] = {}
    for dt in dtypes:
        for bsz in batches:
            rows.append(Row("sparsecnn net.objective", "sparsecnn", dt, bsz,
                            _bind(net.objective, theta, X, y, batch_size=bsz, dtype=dt)))
    for policy in [p for p in args.policies.split(",") if p]:
        plan = net.plan(policy)
        rows.append(Row(f"sparsecnn plan={policy}", "plan", "float64", batches[0],
                        _bind(net.objective, theta, X, y, batch_size=batches[0], plan=plan)))
    if not args.no_reference:
        ref_net = net.replace(backend="reference")
        rows.append(Row("sparsecnn backend=reference", "reference", "float64", batches[0],
                        _bind(ref_net.objective, theta, X, y, batch_size=batches[0])))
    if torch is not None:
        Y = np.eye(net.n_L)[y]
        for dt in dtypes:
            tdt = getattr(torch, dt)
            model = torch_model(net, theta, tdt)
            x = torch_images(net, X, tdt)
            Yt = torch.tensor(Y, dtype=tdt)
            for bsz in batches:
                rows.append(Row("torch", "torch", dt, bsz, torch_fg(model, x, Yt, bsz)))
                rows[-1].model = model  # type: ignore[attr-defined]

    # warm-up, gradients for the check
    for row in rows:
        res = row.fn()
        if row.impl == "torch":
            g = torch_grad_to_theta(net, row.model)  # type: ignore[attr-defined]
        else:
            assert isinstance(res, tuple)
            g = np.asarray(res[1])
        grads[f"{row.name}|{row.dtype}|{row.batch}"] = g
    ref = next((v for k, v in grads.items() if k.startswith("torch|float64")), None)
    if ref is None:
        ref = grads[f"sparsecnn net.objective|float64|{batches[0]}"]
    for row in rows:
        g = grads[f"{row.name}|{row.dtype}|{row.batch}"]
        row.grad_diff = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))

    # the machine's GEMM rate at the network's shapes, measured in every run beside the rows, so that
    # each row's share of it compares times taken minutes apart at most (a VM's speed drifts)
    specs = [ly.spec for ly in net.layers]
    windowed = pass_gemms(net.input_shape, specs, windowed=True)
    whole = pass_gemms(net.input_shape, specs, windowed=False)
    floors: dict[tuple[str, bool], list[float]] = collections.defaultdict(list)   # (dtype, windowed)
    cols = min(batches[0], 256)

    print(f"\ntiming {len(rows)} rows x {args.repeats} runs, round robin ...", flush=True)
    for k in range(args.repeats):
        for row in rows:
            gc.collect()
            # let the previous row's BLAS / OpenMP threads stop spinning before this one starts
            time.sleep(args.pause)
            t, c = time.perf_counter(), time.process_time()
            row.fn()
            row.times.append(time.perf_counter() - t)
            row.cpu.append(time.process_time() - c)
        if not args.no_roofline:
            for dt in dtypes:
                for win, gemms in ((True, windowed), (False, whole)):
                    floors[(dt, win)].append(floor_seconds(measure(gemms, dt, cols=cols, repeats=2), l))
        print(f"  run {k + 1}/{args.repeats}: " + ", ".join(
            f"{r.impl}/{r.dtype[-2:]}/{r.batch} {r.times[-1]:.2f}" for r in rows)
            + "".join(f", GEMM floor/{dt[-2:]} {floors[(dt, True)][-1]:.2f}" for dt in dtypes
                      if floors[(dt, True)]), flush=True)
    for row in rows:
        # for sparsecnn the peak then includes the work arrays that the network keeps between calls
        row.tracemalloc_peak, row.rss_peak = peak_memory(row.fn, net.release_buffers if row.impl != "torch"
                                                         else None)

    # G v
    gv_rows: list[list[str]] = []
    gv_floor: list[str] = []
    gv_ce = ""
    if hasattr(net, "gauss_newton") and args.gv_images > 0:
        Xg = np.ascontiguousarray(X[:, :args.gv_images])
        v = np.random.default_rng(args.seed + 1).standard_normal(net.n_params)
        gv_times: dict[str, list[float]] = {"sparsecnn": [], "sparsecnn matvec": [], "torch.func": []}

        def sc_gv() -> np.ndarray:
            G = net.gauss_newton(theta, Xg)
            return G @ v

        G0 = net.gauss_newton(theta, Xg)
        Gv_ref = G0 @ v
        G32 = net.gauss_newton(theta, Xg, dtype="float32")
        # the same product with the cross-entropy loss: B^i = (diag(p_i) - p_i p_i^T)/l instead of 2I/l
        Gce = net.replace(loss="cross-entropy").gauss_newton(theta, Xg)
        fns: dict[str, Callable[[], object]] = {"sparsecnn": sc_gv, "sparsecnn matvec": lambda: G0 @ v,
                                                "sparsecnn float32 matvec": lambda: G32 @ v,
                                                "sparsecnn matvec, cross-entropy": lambda: Gce @ v}
        gv_times["sparsecnn float32 matvec"] = []
        gv_times["sparsecnn matvec, cross-entropy"] = []
        gv32_diff = float(np.linalg.norm(G32 @ v - Gv_ref) / np.linalg.norm(Gv_ref))
        gv_diff = gv_ce_diff = float("nan")
        if torch is not None:
            from torch.func import functional_call, jvp, vjp

            model = torch_model(net, theta, torch.float64)
            xg = torch_images(net, Xg, torch.float64)
            names = [n for n, _ in model.named_parameters()]
            params = tuple(p.detach() for _, p in model.named_parameters())
            # v in torch's parameter layout: build a model from v and read its parameters
            vmodel = torch_model(net, v, torch.float64)
            tangents = tuple(p.detach() for _, p in vmodel.named_parameters())
            lg = Xg.shape[1]

            def f_out(*ps: Any) -> Any:
                return functional_call(model, dict(zip(names, ps, strict=True)), (xg,))

            def torch_gv() -> Any:
                Jv = jvp(f_out, params, tangents)[1]
                pull = vjp(f_out, *params)[1]
                return pull((2.0 / lg) * Jv)

            fns["torch.func"] = torch_gv
            out = torch_gv()
            for prm, g in zip(model.parameters(), out, strict=True):
                prm.grad = g
            tg = torch_grad_to_theta(net, model)
            gv_diff = float(np.linalg.norm(tg - Gv_ref) / np.linalg.norm(tg))
            # cross-entropy: u_i = (diag(p_i) - p_i p_i^T) (J v)_i / l, p_i = softmax(z^{L+1,i})
            Jv = jvp(f_out, params, tangents)[1]
            prob = torch.softmax(f_out(*params), dim=1)
            u = (prob * Jv - prob * (prob * Jv).sum(dim=1, keepdim=True)) / lg
            for prm, g in zip(model.parameters(), vjp(f_out, *params)[1](u), strict=True):
                prm.grad = g
            tg = torch_grad_to_theta(net, model)
            gv_ce_diff = float(np.linalg.norm(tg - Gce @ v) / np.linalg.norm(tg))
        for fn in fns.values():
            fn()
        gv_g = gv_gemms(net.input_shape, [ly.spec for ly in net.layers])
        gv_floors: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                gv_times[name].append(time.perf_counter() - t)
            if not args.no_roofline:                   # the GEMMs of one G v at their shapes' rates, this run
                for dt in ("float64", "float32"):
                    gv_floors[dt].append(floor_seconds(measure(gv_g, dt, cols=Xg.shape[1], repeats=2),
                                                       Xg.shape[1]))
        base_t = statistics.median(gv_times["torch.func"]) if gv_times["torch.func"] else float("nan")
        for name in fns:
            med = statistics.median(gv_times[name])
            diff = gv32_diff if "float32" in name else gv_ce_diff if "cross-entropy" in name else gv_diff
            gv_rows.append([name, f"{med:.3f}", f"{med / base_t:.2f}x" if base_t == base_t else "-",
                            f"{diff:.1e}" if name != "torch.func" else "-"])
        ce_ratio = statistics.median(c / s for c, s in zip(gv_times["sparsecnn matvec, cross-entropy"],
                                                            gv_times["sparsecnn matvec"], strict=True))
        gv_ce = (f"\nThe product alone with the cross-entropy loss against the squared loss, float64: "
                 f"{ce_ratio:.2f}x (median of the {args.repeats} runs' ratios)")
        for dt, name in (("float64", "sparsecnn matvec"), ("float32", "sparsecnn float32 matvec")):
            if gv_floors[dt]:                          # per run: floor / time, and floor / torch.func
                pairs = list(zip(gv_floors[dt], gv_times[name], strict=True))
                share = statistics.median(f / t for f, t in pairs)
                vs_torch = (statistics.median(f / t for f, t in zip(gv_floors[dt], gv_times["torch.func"],
                                                                  strict=True))
                            if gv_times["torch.func"] else float("nan"))
                gv_floor.append(f"{dt}: {total_flops(gv_g, Xg.shape[1]) / 1e9:.2f} GFLOP, GEMM floor "
                                f"{statistics.median(gv_floors[dt]):.3f} s ({vs_torch:.2f}x torch.func); "
                                f"{name} at {100 * share:.0f}% of it")

    # roofline: numpy's own GEMM rate at the network's shapes, and each row's share of it
    roof_rows: list[list[str]] = []
    roof_table: list[list[str]] = []
    if not args.no_roofline:
        for dt in dtypes:
            floor_w = statistics.median(floors[(dt, True)])
            sq = square_rate(dt)
            at_shapes = total_flops(windowed, l) / floor_w / 1e9
            roof_table.append([dt, f"{at_shapes:.1f}", f"{sq:.1f}", f"{total_flops(windowed, l) / 1e9:.1f}",
                               f"{floor_w:.3f}"])
            for r in rows:
                if r.dtype != dt:
                    continue
                # the products each row performs: window by window only the positions a window reads
                runs_windowed = r.name in ("sparsecnn net.objective", "sparsecnn plan=slides",
                                           "sparsecnn plan=min-memory")
                gemms = windowed if runs_windowed else whole
                per_run = floors[(dt, runs_windowed)]        # each run's floor against that run's time
                share = statistics.median(f / t for f, t in zip(per_run, r.times, strict=True))
                outside = statistics.median(max(t - f, 0.0) for f, t in zip(per_run, r.times, strict=True))
                gflop = total_flops(gemms, l) / 1e9
                roof_rows.append([r.name, dt, str(r.batch), f"{gflop:.1f}", f"{gflop / r.median:.1f}",
                                  f"{100 * share:.0f}%", f"{outside:.3f}"])

    # per-operator profile of net.objective
    total, ops = op_profile(net, theta, X, y, args.profile_batch, max(3, args.repeats // 2))
    split = sweep_split(net, theta, X, args.profile_batch, max(3, args.repeats // 2))

    # ------------------------------------------------------------------ output
    def torch_time(dt: str) -> float:
        ts = [r.median for r in rows if r.impl == "torch" and r.dtype == dt]
        return min(ts) if ts else float("nan")

    table = []
    for r in rows:
        tt = torch_time(r.dtype)
        table.append([r.name, r.dtype, str(r.batch), f"{r.median:.3f}",
                      f"{statistics.median(r.cpu):.3f}",
                      f"{r.median / tt:.2f}x" if tt == tt else "-",
                      f"{r.tracemalloc_peak / 2**20:.0f}" if r.impl != "torch" else "-",
                      f"{r.rss_peak / 2**20:.0f}", f"{r.grad_diff:.1e}"])
    print("\nFunction + gradient, all images (ratio: to PyTorch at its best batch size, same dtype)\n")
    print(md_table(["implementation", "dtype", "batch", "time (s)", "CPU (s)", "vs torch best",
                    "tracemalloc peak (MiB)", "RSS peak (MiB)", "grad rel. diff"], table))
    if roof_table:
        print("\nThe machine's GEMM rate (numpy, this BLAS): at the network's shapes (the GEMMs of one f + "
              "gradient, window by window, each timed alone and weighted by its FLOPs; measured in every run, the median "
              "shown) and at a 2048^2 square\n")
        print(md_table(["dtype", "GFLOP/s at the network's shapes", "GFLOP/s square", "GFLOP per f+g",
                        "GEMM floor (s)"], roof_table))
        print("\nEach row against it (GFLOP: the GEMMs it performs; share: the floor at the network's "
              "shapes over its time, and outside: its time less that floor, both per run against the floor "
              "measured in the same run, median over the runs)\n")
        print(md_table(["implementation", "dtype", "batch", "GFLOP", "GFLOP/s", "share of the rate",
                        "outside the GEMMs (s)"], roof_rows))
    if gv_rows:
        print(f"\nG v on {args.gv_images} images (sparsecnn: gauss_newton(theta, X) @ v, forward "
              f"included; matvec: the product alone; float64 unless named; torch.func: float64, jvp then vjp)\n")
        print(md_table(["implementation", "time (s)", "vs torch.func", "rel. diff"], gv_rows))
        print(gv_ce)
        if gv_floor:
            print("\nThe GEMMs of one G v (V phi and W R(phi), then the backward pass), each timed alone at "
                  "its shape:\n")
            for line in gv_floor:
                print(f"- {line}")
    by_cat: dict[str, float] = collections.defaultdict(float)
    for label, t in ops.items():
        by_cat[_category(label)] += t
    by_cat["other"] += total - sum(ops.values())
    print(f"\nPer-operator profile of net.objective, float64, batch {args.profile_batch}: {total:.3f} s\n")
    prof = [[cat, f"{t:.3f}", f"{100 * t / total:.0f}%"] for cat, t in
            sorted(by_cat.items(), key=lambda kv: -kv[1])]
    print(md_table(["operator", "time (s)", "share"], prof))
    sweeps = by_cat[CATEGORIES[0][0]]
    parts = sum(split.values())
    print(f"\nThe conv sweeps taken apart (phi/phi_T and S/S_T timed on their own, scaled to all {l} "
          f"images; their sum {parts:.3f} s against {sweeps:.3f} s fused)\n")
    print(md_table(["part", "time (s)", "share of the parts"],
                   [[k, f"{v:.3f}", f"{100 * v / parts:.0f}%"] for k, v in split.items()]))
    detail = [[label, f"{t:.3f}"] for label, t in sorted(ops.items(), key=lambda kv: -kv[1])]
    print("\n" + md_table(["method (layer m)", "time (s)"], detail))
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({
            "source": source, "l": l, "threads": args.threads, "environment": environment(args.threads),
            "rows": [{"name": r.name, "dtype": r.dtype, "batch": r.batch, "times_s": r.times, "cpu_s": r.cpu,
                      "median_s": r.median, "grad_rel_diff": r.grad_diff,
                      "tracemalloc_peak_bytes": r.tracemalloc_peak, "rss_peak_bytes": r.rss_peak}
                     for r in rows],
            "gv": gv_rows, "roofline": {"machine": roof_table, "rows": roof_rows}, "profile": {"total_s": total, "ops_s": ops, "categories_s": dict(by_cat),
                                       "sweep_split_s": split},
        }, indent=2))
    if limiter is not None:
        limiter.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
