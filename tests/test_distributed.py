"""sparsecnn.distributed on a two-worker Dask LocalCluster: equal to in-process, survives a killed
worker, names a malformed partition; and ``import sparsecnn`` does not import Dask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from sparsecnn import ConvLayer, FullLayer, Network  # noqa: E402
from sparsecnn.distributed import (  # noqa: E402
    DistributedObjective,
    connect,
    newton_distributed,
    owner_of,
    split_columns,
)
from sparsecnn.exceptions import ConfigError, InputTypeError, LabelError, ShapeError  # noqa: E402
from sparsecnn.kernels.threads import get_num_threads  # noqa: E402
from sparsecnn.objective import SquaredLoss  # noqa: E402
from sparsecnn.optim import newton  # noqa: E402
from sparsecnn.second_order import GaussNewton  # noqa: E402

RTOL = 1e-12
C = 10.0


def rel(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def client():
    c, cluster = connect(workers=2, processes=False)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    net = Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(4, h=3, p=1, r=2), FullLayer(3)])
    rng = np.random.default_rng(0)
    l = 301
    X = rng.standard_normal((net.n_input, l))
    y = rng.integers(0, 3, l)
    return net, X, y, net.init_params(seed=1)


@pytest.fixture(scope="module")
def obj(client, problem):
    net, X, y, _ = problem
    o = DistributedObjective(net, split_columns(X, y, 3), client=client, C=C, batch_size=64)
    yield o
    o.close()


def test_import_sparsecnn_does_not_import_dask():
    code = ("import sys, sparsecnn, sparsecnn.cli, sparsecnn.optim; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_partition_sizes(obj, problem):
    assert sum(obj.sizes) == obj.l == problem[1].shape[1]
    assert len(obj.sizes) == 3 and max(obj.sizes) - min(obj.sizes) <= 1
    assert list(obj.offsets) == [0, *np.cumsum(obj.sizes)]


def test_objective_equals_in_process(obj, problem):
    net, X, y, theta = problem
    f0, g0 = net.objective(theta, X, y, C)
    f, g = obj.objective(theta)
    assert rel(f, f0) < RTOL and rel(g, g0) < RTOL
    assert rel(obj.f(theta), f0) < RTOL
    evs = obj.evaluate(theta)
    assert rel(obj.f_from(theta, evs), f0) < RTOL and rel(obj.gradient_from(theta, evs), g0) < RTOL


def test_Jv_JTv_equal_in_process(obj, problem):
    net, X, y, theta = problem
    rng = np.random.default_rng(5)
    v = rng.standard_normal(net.n_params)
    u = rng.standard_normal((net.n_L, X.shape[1]))
    assert rel(obj.Jv(theta, v), net.Jv(theta, X, v)) < RTOL
    assert rel(obj.JTv(theta, u), net.JTv(theta, X, u)) < RTOL
    with pytest.raises(ShapeError, match="u must have shape"):
        obj.JTv(theta, u[:, :10])


@pytest.mark.parametrize("jacobian", ["recompute", "store"])
def test_gauss_newton_equals_in_process(obj, problem, jacobian):
    net, X, y, theta = problem
    rng = np.random.default_rng(6)
    v = rng.standard_normal(net.n_params)
    idx = rng.permutation(X.shape[1])[:70]                       # spread over all partitions
    G = obj.gauss_newton(theta, idx, jacobian=jacobian)
    G0 = GaussNewton(net, theta, X[:, idx], jacobian=jacobian)
    assert rel(G @ v, G0 @ v) < RTOL
    assert rel(obj.gauss_newton(theta) @ v, GaussNewton(net, theta, X) @ v) < RTOL
    G.release()


def test_newton_same_steps_as_in_process(client, problem):
    net, X, y, theta = problem
    kw = dict(C=C, iter_max=3, GNsize=40, seed=7, batch_size=64, CGmax=20)
    th0, h0 = newton(net, theta, X, y, **kw)
    th1, h1 = newton_distributed(net, theta, split_columns(X, y, 4), client=client, **kw)
    assert h1.cg_iters == h0.cg_iters and h1.step == h0.step
    assert rel(th1, th0) < 1e-10
    np.testing.assert_allclose(h1.f, h0.f, rtol=1e-10)


class WeightedSquaredLoss(SquaredLoss):
    """``xi = sum_j w_j (z_j - y_j)^2``: a loss whose ``B = 2 diag(w)`` is not ``2I``."""

    name = "weighted-squared"

    def __init__(self, w: np.ndarray) -> None:
        self.w = np.asarray(w, dtype=np.float64)[:, None]

    def xi(self, out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        diff = self._diff(out, labels)
        return np.einsum("ij,ij->j", self.w * diff, diff)

    def batch(self, out: np.ndarray, labels: np.ndarray, l_total: int) -> tuple[float, np.ndarray]:
        diff = self._diff(out, labels)
        return float(np.sum(self.w * diff * diff)), ((2.0 / l_total) * self.w * diff).astype(out.dtype)

    def B(self, u: np.ndarray, scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        return (2.0 * scale) * (self.w if u.ndim == 2 else self.w[:, 0]) * u


def test_newton_iterates_equal_in_process_any_loss(client, problem):
    """In-process iterates with a loss whose ``B^i`` is not ``2I`` (``net.loss`` is used, not ``2I``)."""
    base, X, y, theta = problem
    net = Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(4, h=3, p=1, r=2), FullLayer(3)])
    net.loss = WeightedSquaredLoss([1.0, 0.25, 3.0])
    kw = dict(C=C, GNsize=40, seed=7, batch_size=64, CGmax=20)
    th0, h0 = newton(net, theta, X, y, iter_max=1, **kw)
    th1, h1 = newton_distributed(net, theta, split_columns(X, y, 3), client=client, iter_max=1, **kw)
    # the first iterate: f, g and each G v agree to 1e-15 or so; CG's 6 steps amplify that ~1000x
    assert h1.cg_iters == h0.cg_iters and rel(th1, th0) < 1e-11
    th0, h0 = newton(net, theta, X, y, iter_max=3, **kw)
    th1, h1 = newton_distributed(net, theta, split_columns(X, y, 3), client=client, iter_max=3, **kw)
    assert h1.cg_iters == h0.cg_iters and h1.step == h0.step
    assert rel(np.array(h1.f), np.array(h0.f)) < 1e-10 and rel(th1, th0) < 1e-10
    th2, _ = newton(base, theta, X, y, iter_max=3, **kw)             # the loss changed the steps
    assert rel(th2, th0) > 1e-6


@pytest.fixture(scope="module")
def process_client():
    """Two single-threaded worker processes, as ``dask worker ADDRESS --nworkers 2 --nthreads 1``."""
    c, cluster = connect(workers=2, processes=True)
    yield c
    c.close()
    cluster.close()


def test_process_workers_one_task_per_worker_and_in_process_iterates(process_client, problem):
    """Worker processes: kernel threads = the worker's 1 thread; one task per worker for f+g and for
    each ``G v`` (equal to in-process to 1e-12); Newton's iterates equal the in-process ones up to
    CG's amplification of the summation-order rounding."""
    from distributed import get_task_stream

    c = process_client
    net, X, y, theta = problem
    threads_before = get_num_threads()
    kw = dict(C=C, GNsize=40, seed=7, batch_size=64, CGmax=20)
    th0, h0 = newton(net, theta, X, y, iter_max=1, **kw)
    th1, h1 = newton_distributed(net, theta, split_columns(X, y, 4), client=c, iter_max=1, **kw)
    assert h1.cg_iters == h0.cg_iters and rel(th1, th0) < 1e-11
    th0, h0 = newton(net, theta, X, y, iter_max=3, **kw)
    th1, h1 = newton_distributed(net, theta, split_columns(X, y, 4), client=c, iter_max=3, **kw)
    assert h1.cg_iters == h0.cg_iters and rel(np.array(h1.f), np.array(h0.f)) < 1e-10
    assert rel(th1, th0) < 1e-10
    assert set(c.run(get_num_threads).values()) == {1}             # the workers' --nthreads
    assert get_num_threads() == threads_before                     # this process untouched
    with DistributedObjective(net, split_columns(X, y, 4), client=c, C=C, batch_size=64) as o:
        holders = {w for ws in c.who_has(o.parts).values() for w in ws}
        assert sorted(k for g in o.groups for k in g) == [0, 1, 2, 3] and len(o.groups) == len(holders)
        G = o.gauss_newton(theta, np.arange(0, X.shape[1], 3))
        v = np.random.default_rng(3).standard_normal(net.n_params)
        G @ v                                                      # warm up
        with get_task_stream(c) as ts:
            Gv = G @ v
            o.objective(theta)
        names = sorted(t["key"].split("-")[0] for t in ts.data)
        assert names == sorted(["_gn_group_product"] * len(G._ops) + ["_objective_group"] * len(o.groups))
        assert rel(Gv, GaussNewton(net, theta, X[:, ::3]) @ v) < RTOL
        G.release()


def test_dask_array_and_file_partitions(client, problem, tmp_path):
    import dask.array as da
    import scipy.io

    net, X, y, theta = problem
    f0, g0 = net.objective(theta, X, y, C)
    Xd = da.from_array(X, chunks=(X.shape[0], 120))
    with DistributedObjective(net, Xd, y, client=client, C=C) as o:
        assert o.sizes == [120, 120, 61]
        f, g = o.objective(theta)
        assert rel(f, f0) < RTOL and rel(g, g0) < RTOL
    # files: a simpleNN .mat (Z is l x (d a b), X = vec per column), an .npz, a pair of .npy
    a, b = 100, 200
    Zm = np.concatenate([X[0::2, :a].T, X[1::2, :a].T], axis=1)  # channel 1 pixels, then channel 2
    scipy.io.savemat(tmp_path / "p0.mat", {"Z": Zm, "y": y[:a, None]})
    np.savez(tmp_path / "p1.npz", X=X[:, a:b], y=y[a:b])
    np.save(tmp_path / "X2.npy", X[:, b:])
    np.save(tmp_path / "y2.npy", y[b:])
    files = [tmp_path / "p0.mat", str(tmp_path / "p1.npz"), (tmp_path / "X2.npy", tmp_path / "y2.npy")]
    with DistributedObjective(net, files, client=client, C=C) as o:
        assert o.sizes == [a, b - a, X.shape[1] - b]
        f, g = o.objective(theta)
        assert rel(f, f0) < RTOL and rel(g, g0) < RTOL


def test_malformed_partition_is_named(client, problem):
    net, X, y, _ = problem
    parts = split_columns(X, y, 3)
    bad = [parts[0], (parts[1][0][:-1], parts[1][1]), parts[2]]
    with pytest.raises(ShapeError, match=r"partition 1 \(in-memory arrays\).*\(128, l_k\)"):
        DistributedObjective(net, bad, client=client, C=C)
    bad = [parts[0], parts[1], (parts[2][0], parts[2][1][:-3])]
    with pytest.raises(ShapeError, match="partition 2"):
        DistributedObjective(net, bad, client=client, C=C)
    bad = [(parts[0][0], parts[0][1] + 5), parts[1]]
    with pytest.raises(LabelError, match="partition 0"):
        DistributedObjective(net, bad, client=client, C=C)
    with pytest.raises(ConfigError):
        newton_distributed(net, net.init_params(0), parts, C=C)      # no client, scheduler or workers


def test_killed_worker_is_survived(problem):
    """Process workers: kill the one holding partition 0 while an evaluation runs; then the one
    holding a Gauss-Newton operator between two products."""
    net, X, y, theta = problem
    rng = np.random.default_rng(2)
    Xb = np.tile(X, 4) + 0.01 * rng.standard_normal((X.shape[0], 4 * X.shape[1]))
    yb = np.tile(y, 4)
    f0, g0 = net.objective(theta, Xb, yb, C)
    c, cluster = connect(workers=2, processes=True)
    try:
        with DistributedObjective(net, split_columns(Xb, yb, 4), client=c, C=C, batch_size=32) as o:
            o.objective(theta)                                     # warm up
            holders = c.who_has(o.parts)
            victim = holders[o.parts[0].key][0]
            pid = c.run(os.getpid, workers=[victim])[victim]
            evs = o.evaluate(theta, keep=True)                      # submitted, running
            os.kill(pid, signal.SIGKILL)
            assert not all(e.done() for e in evs)                   # killed during the evaluation
            f = o.f_from(theta, evs)
            g = o.gradient_from(theta, evs)
            assert rel(f, f0) < RTOL and rel(g, g0) < RTOL
            # partition 0 was recomputed on a live worker
            deadline = time.time() + 30
            while victim in c.scheduler_info()["workers"] and time.time() < deadline:
                time.sleep(0.1)
            assert victim not in c.who_has(o.parts)[o.parts[0].key]
            f, g = o.objective(theta)
            assert rel(f, f0) < RTOL and rel(g, g0) < RTOL
            # the Gauss-Newton state on a worker: rebuilt from the partitions' sources when it dies
            idx = np.arange(0, Xb.shape[1], 7)
            G = o.gauss_newton(theta, idx)
            v = rng.standard_normal(net.n_params)
            Gv0 = GaussNewton(net, theta, Xb[:, idx], batch_size=32) @ v
            assert rel(G @ v, Gv0) < RTOL
            victim = c.who_has(G._ops)[G._ops[0].key][0]
            os.kill(c.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
            assert rel(G @ v, Gv0) < RTOL and rel(G @ v, Gv0) < RTOL
            G.release()
    finally:
        c.close()
        cluster.close()


def test_owner_of_rejects_out_of_range():
    with pytest.raises(ShapeError):
        owner_of([5], [2, 3])


@pytest.mark.parametrize("idx", [np.array([True, False, True, False, False]), [0.9, 3.2], ["a", "b"]])
def test_owner_of_takes_integer_instance_numbers_only(idx):
    """A boolean mask was read as the instance numbers 0 and 1 (G_S of the wrong instances, |S| = l),
    fractional numbers were truncated, text gave Python's ValueError: each is an InputTypeError."""
    with pytest.raises(InputTypeError, match="instance indices must be integers"):
        owner_of(idx, [2, 3])


def test_gauss_newton_idx_mask_is_refused_and_released_operator_says_so(obj, problem):
    net, X, y, theta = problem
    mask = np.zeros(X.shape[1], dtype=bool)
    mask[[4, 200]] = True
    with pytest.raises(InputTypeError, match="np.flatnonzero"):
        obj.gauss_newton(theta, mask)
    G = obj.gauss_newton(theta, np.flatnonzero(mask))
    v = np.random.default_rng(5).standard_normal(net.n_params)
    assert rel(G @ v, GaussNewton(net, theta, X[:, [4, 200]]) @ v) < RTOL
    G.release()
    with pytest.raises(ConfigError, match="released"):                 # was IndexError from an empty sum
        G @ v


def test_complex_v_and_u_are_refused_on_the_client(obj, problem):
    """The client cast v and u to float64, dropping an imaginary part with only a ComplexWarning."""
    net, X, y, theta = problem
    v = np.ones(net.n_params) * (1 + 1j)
    with pytest.raises(InputTypeError, match="v must be a real numeric array"):
        obj.Jv(theta, v)
    G = obj.gauss_newton(theta, [3, 250])
    try:
        with pytest.raises(InputTypeError, match="v must be a real numeric array"):
            G @ v
    finally:
        G.release()
    with pytest.raises(InputTypeError, match="u must be a real numeric array"):
        obj.JTv(theta, np.ones((net.n_L, X.shape[1])) * 1j)


TINY_CONFIG = """% tiny: one conv layer, one full layer
L = 2;
LC = 1;
LF = 1;
wd_input = [6];
ht_input = [6];
ch_input = [1,3];
wd_pad_added = [1];
wd_filter = [3];
strides = [1];
wd_subimage_pool = [2];
full_neurons = [3];
"""


def test_train_cli_workers_takes_the_in_process_steps(tmp_path, capsys):
    """``sparsecnn train --workers 2`` (a LocalCluster of 2 processes) prints the in-process f and |g|."""
    import re

    import scipy.io

    from sparsecnn.cli import main

    rng = np.random.default_rng(0)
    l = 60
    y = rng.integers(0, 3, l)
    img = rng.uniform(0, 80, (l, 6, 6))
    for i in range(l):
        img[i, 2 * y[i]:2 * y[i] + 2, :] += 170
    scipy.io.savemat(tmp_path / "train.mat", {"Z": np.round(img.reshape(l, 36)), "y": y[:, None].astype(float)})
    (tmp_path / "tiny.config").write_text(TINY_CONFIG)
    argv = ["train", "--config", str(tmp_path / "tiny.config"), "--train", str(tmp_path / "train.mat"),
            "--iter-max", "3", "--GNsize", "20", "--quiet"]

    def summary(extra: list[str]) -> str:
        assert main(argv + extra) == 0
        lines = [ln for ln in capsys.readouterr().out.splitlines()
                 if not ln.startswith("iteration 1 took")]          # the time estimate differs
        return re.sub(r"in [0-9.]+ s", "", lines[0])

    assert summary(["--workers", "2"]) == summary([])
    assert main(argv + ["--solver", "sgd", "--workers", "2"]) == 1
    assert "--scheduler and --workers are for --solver newton" in capsys.readouterr().err
