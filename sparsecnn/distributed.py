"""``f``, its gradient, ``J v``, ``J^T u``, ``G v`` and Newton training over instance partitions on Dask.

Every quantity of the objective is a sum over instances,

``f(theta) = theta^T theta/(2C) + (1/l) sum_k sum_{i in P_k} xi_i``,
``grad f = theta/C + (1/l) sum_k sum_{i in P_k} (J^i)^T 2(z^{L+1,i} - y^i)``,
``G_S v = (1/|S|) sum_k sum_{i in S ∩ P_k} (J^i)^T 2 J^i v``,

so the instances are split into partitions ``P_1, P_2, ...`` held by the workers of a
`Dask distributed <https://distributed.dask.org>`_ cluster; each worker computes its
partitions' sums with the in-process code (:meth:`sparsecnn.Network.objective`,
:func:`sparsecnn.second_order.net_Jv`, :func:`~sparsecnn.second_order.net_JTv`,
:class:`~sparsecnn.second_order.GaussNewton`), scaled by the *global* ``l`` (or ``|S|``), and
the client adds them up.  Global instance ``i`` is column ``i`` of the partitions laid side by
side, in their order; :func:`newton_distributed` draws its Gauss-Newton subsample over these
global indices with the same random stream as :func:`sparsecnn.optim.newton`, so with the same
seed both take the same steps up to rounding.

The partitions (:class:`DistributedObjective`'s ``data``) are any of

- a list of ``(X_k, y_k)`` pairs of arrays (``X_k`` of shape ``(d^1 a^1 b^1, l_k)``): each pair
  travels inside the task that loads it, so the scheduler can recompute it if its worker dies;
  convenient on one machine and for tests;
- a ``dask.array`` ``X`` of shape ``(d^1 a^1 b^1, l)`` chunked along its columns (one partition
  per column chunk), with ``y`` a NumPy or Dask array of length ``l``;
- a list of files, one per partition, read by the workers: a simpleNN ``.mat`` file (``Z`` and
  ``y``, see :func:`sparsecnn.load_simplenn_mat`), an ``.npz`` file with arrays ``X`` and ``y``,
  or a pair ``(X.npy, y.npy)``.  ``transform`` (a picklable ``X -> X``, e.g. scaling and
  centring) is applied to each partition after reading.

The network is sent to the workers once (a task's result, copied to every worker) and the
partitions are loaded by tasks on the workers; both stay there as Dask futures, with the Gauss-Newton operators' forward passes of
``S`` (one :class:`~sparsecnn.second_order.GaussNewton` per partition, built once per Newton
iteration).  Every call then sends only vectors and makes **one task per worker** (the
partitions grouped by the worker holding them): ``theta`` or ``v`` goes inside the task message
(up to :data:`EMBED_BYTES`), the worker sums over its partitions and returns one number, one
vector, or both; the client adds the workers' results.  A ``G v`` is one round trip.  A
partition lost with its worker is recomputed from its source on another worker (Dask's
lineage), and the Gauss-Newton state from it, so a killed worker costs time, not the result.
On a worker process of its own, sparsecnn's kernel threads are set to the worker's
``--nthreads`` (Dask's nanny already sets BLAS to one thread), unless ``SPARSECNN_NUM_THREADS``
is set.  Nothing here is imported by ``import sparsecnn``: Dask is needed only
when this module is used (``pip install "sparsecnn[dask]"``).

Examples
--------
The partition bookkeeping needs no cluster:

>>> import numpy as np
>>> owner_of([0, 5, 2, 6], [3, 4])
[(0, array([0, 2]), array([0, 2])), (1, array([1, 3]), array([2, 3]))]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from . import data as data_io
from . import engine, second_order
from . import objective as objective_
from .engine import Keep
from .exceptions import ConfigError, DataFormatError, InputTypeError, ShapeError, SparseCNNError
from .kernels import threads
from .network import Network
from .optim._common import positive_int
from .optim.newton_cg import newton_loop
from .second_order import JACOBIAN_MODES

__all__ = ["DistributedObjective", "DistributedGaussNewton", "newton_distributed", "connect",
           "owner_of", "split_columns", "EMBED_BYTES"]

EMBED_BYTES = 1 << 22
"""Vectors (``theta``, ``v``) up to this size (4 MiB, ``n`` = 524,288) travel inside the task messages;
larger ones are scattered to the workers first (one more round trip, no copy in the task graph)."""


# ------------------------------------------------------------- bookkeeping
def owner_of(idx: Sequence[int] | np.ndarray, sizes: Sequence[int]
             ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Map global instance indices to partitions.

    Parameters
    ----------
    idx : sequence of int
        Global indices (columns of the partitions laid side by side).
    sizes : sequence of int
        ``l_k`` of each partition.

    Returns
    -------
    list of (k, positions, local)
        For each partition ``k`` that owns some of ``idx``: the positions in ``idx`` of those
        indices (increasing) and their column numbers inside partition ``k``.

    Examples
    --------
    >>> owner_of(np.array([4, 1]), [2, 3])
    [(0, array([1]), array([1])), (1, array([0]), array([2]))]
    """
    arr = np.asarray(idx)
    if arr.dtype == bool:
        raise InputTypeError("instance indices must be integers, got a boolean mask "
                             "(pass np.flatnonzero(mask) for the instances it selects)")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputTypeError(f"instance indices must be integers, got dtype {arr.dtype}")
    idx = arr.astype(np.int64).reshape(-1)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
    if idx.size and (idx.min() < 0 or idx.max() >= offsets[-1]):
        raise ShapeError(f"instance indices must lie in 0..{offsets[-1] - 1}")
    part = np.searchsorted(offsets, idx, side="right") - 1
    out = []
    for k in range(len(sizes)):
        pos = np.flatnonzero(part == k)
        if pos.size:
            out.append((k, pos, idx[pos] - offsets[k]))
    return out


def split_columns(X: np.ndarray, y: np.ndarray, n_parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``(X, y)`` into ``n_parts`` partitions of consecutive columns (sizes differ by at most 1).

    Examples
    --------
    >>> parts = split_columns(np.zeros((2, 5)), np.arange(5), 2)
    >>> [p[0].shape for p in parts], parts[1][1]
    ([(2, 2), (2, 3)], array([2, 3, 4]))
    """
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 1:
        raise InputTypeError(f"n_parts must be a positive integer, got {n_parts!r}")
    l = X.shape[1]
    bounds = np.linspace(0, l, int(n_parts) + 1).round().astype(int)
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return [(np.ascontiguousarray(X[:, a:b]), np.asarray(y)[a:b]) for a, b in pairs if b > a]


# ----------------------------------------------- what runs on the workers
@dataclass
class _Part:
    """One partition on a worker: ``X_k``, its labels and where it came from."""

    k: int
    desc: str
    X: np.ndarray
    labels: np.ndarray


def _read_source(source: Any, shape: tuple[int, int, int]) -> tuple[Any, Any]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z or "y" not in z:
                    raise DataFormatError(f"{path}: an .npz partition must hold arrays X and y")
                return z["X"], z["y"]
        return data_io.load_simplenn_mat(path, shape=shape)
    X, y = source
    if isinstance(X, (str, os.PathLike)):
        X = np.load(os.fspath(X), allow_pickle=False)
    if isinstance(y, (str, os.PathLike)):
        y = np.load(os.fspath(y), allow_pickle=False)
    return X, y


def _load_partition(k: int, desc: str, source: Any, net: Network, transform: Any) -> _Part:
    """Read and check partition ``k``; errors name the partition."""
    try:
        a, b, d = net.input_shape
        X, y = _read_source(source, (a, b, d))
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != net.n_input:
            raise ShapeError(f"X_k has shape {X.shape}; the network needs (d^1 a^1 b^1, l_k) = "
                             f"({net.n_input}, l_k), one instance per column")
        if transform is not None:
            X = transform(X)
        X = net.check_X(X)
        labels = net.check_y(y, X.shape[1])
    except SparseCNNError as exc:
        raise type(exc)(f"partition {k} ({desc}): {exc}") from None
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"partition {k} ({desc}): {exc}") from None
    return _Part(k, desc, np.ascontiguousarray(X), labels)


def _the_network(net: Network) -> Network:
    """The network, held on the workers as a recomputable task result."""
    return net


def _size(part: _Part) -> int:
    return int(part.X.shape[1])


@dataclass
class _PartEval:
    """``sum_i xi_i`` over a partition and, if kept, its forward caches and ``(2/l) (z - y)``."""

    loss: float
    batches: list[tuple[dict[str, np.ndarray], np.ndarray]] | None


def _evaluate_part(net: Network, theta: np.ndarray, part: _Part, l: int, batch_size: int,
                   keep: bool) -> _PartEval:
    Ws, bs = net.unpack(theta)
    loss = 0.0
    batches: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    lk = part.X.shape[1]
    for sl in engine.batches(lk, batch_size):
        out, kept = engine.forward(net, net.backend, _keep_of(net, keep), Ws, bs,
                                   np.ascontiguousarray(part.X[:, sl]))
        fb, dZ = net.loss.batch(out, part.labels[sl], l)       # dZ = (2/l)(z - y), global l
        loss += fb
        if keep:
            batches.append((kept, dZ))
    return _PartEval(loss, batches if keep else None)


def _keep_of(net: Network, keep: bool) -> Keep:
    """Everything (for the gradient) or nothing but the output."""
    return Keep.everything(net, net.pool_backward) if keep else Keep.nothing(net)


def _loss_of(ev: _PartEval) -> float:
    return ev.loss


def _grad_of(net: Network, theta: np.ndarray, ev: _PartEval) -> np.ndarray:
    """``(1/l) sum_{i in P_k} (J^i)^T 2(z - y)`` from the kept caches."""
    assert ev.batches is not None
    Ws, _ = net.unpack(theta)
    g = np.zeros(net.n_params)
    keep = _keep_of(net, True)
    for kept, dZ in ev.batches:
        g += net.pack(*engine.backward(net, net.backend, keep, Ws, None, kept["Z1"], kept, dZ))
    return g


def _objective_part(net: Network, theta: np.ndarray, part: _Part, l: int, batch_size: int
                    ) -> tuple[float, np.ndarray]:
    """``(1/l) sum_{i in P_k} xi_i`` and its gradient, by :meth:`Network.objective` (``C = inf``)."""
    f_k, g_k = net.objective(theta, part.X, part.labels, np.inf, batch_size=batch_size)
    w = part.X.shape[1] / l                                   # (1/l_k) -> (1/l)
    return w * f_k, w * g_k


def _Jv_part(net: Network, theta: np.ndarray, part: _Part, v: np.ndarray, batch_size: int) -> np.ndarray:
    return second_order.net_Jv(net, theta, part.X, v, batch_size=batch_size)


def _JTv_part(net: Network, theta: np.ndarray, part: _Part, u: np.ndarray, batch_size: int) -> np.ndarray:
    return second_order.net_JTv(net, theta, part.X, u, batch_size=batch_size)


def _worker_threads(client_pid: int) -> None:
    """On a worker process of its own: sparsecnn's kernel threads = the worker's Dask threads.

    Dask's nanny sets ``OMP_NUM_THREADS=1`` (and the BLAS variables) in the worker processes, since
    Dask's own threads are the parallelism; sparsecnn's kernel pool would otherwise start
    one thread per CPU in every worker, so two workers on two cores would run four threads.  Each
    task here runs alone on its worker (one task per worker and call), so it may use all the worker's
    ``--nthreads``.  Not done in the client's own process (a threaded ``LocalCluster``) nor when
    ``SPARSECNN_NUM_THREADS`` is set; done again by the first task on a restarted worker.
    """
    global _threads_done
    if _threads_done or os.getpid() == client_pid:
        return
    _threads_done = True
    if os.environ.get("SPARSECNN_NUM_THREADS"):
        return
    try:
        from distributed import get_worker

        n = int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):  # pragma: no cover - not on a worker
        return
    threads.set_num_threads(max(1, n))


_threads_done = False


def _objective_group(client_pid: int, net: Network, theta: np.ndarray, l: int, batch_size: int,
                     *parts: _Part) -> tuple[float, np.ndarray]:
    """``(1/l) sum_{i in P_k} xi_i`` and its gradient summed over one worker's partitions."""
    _worker_threads(client_pid)
    f, g = 0.0, np.zeros(net.n_params)
    for part in parts:
        f_k, g_k = _objective_part(net, theta, part, l, batch_size)
        f += f_k
        g += g_k
    return f, g


def _loss_group(client_pid: int, net: Network, theta: np.ndarray, batch_size: int, *parts: _Part) -> float:
    """``sum_{i in P_k} xi_i`` over one worker's partitions (forward passes only, as :meth:`Network.output`)."""
    _worker_threads(client_pid)
    total = 0.0
    for part in parts:
        out = net.output(theta, part.X, batch_size=batch_size)
        total += float(net.loss.xi(out, part.labels).sum())
    return total


def _gn_group(client_pid: int, net: Network, theta: np.ndarray, locals_: list[np.ndarray | None],
              jacobian: str, batch_size: int, *parts: _Part) -> list[second_order.GaussNewton]:
    """One :class:`GaussNewton` per partition of a worker (its forward pass of ``S ∩ P_k``, kept)."""
    _worker_threads(client_pid)
    return [second_order.GaussNewton(net, theta, part.X if local is None else part.X[:, local],
                                     jacobian=jacobian, batch_size=batch_size)
            for part, local in zip(parts, locals_, strict=True)]


def _gn_group_product(client_pid: int, Gs: list[second_order.GaussNewton], v: np.ndarray, size: int
                      ) -> np.ndarray:
    """``(1/|S|) sum_{i in S ∩ P_k} (J^i)^T B^i J^i v`` summed over one worker's partitions.

    Each ``G_k`` computes ``(1/|S ∩ P_k|) J^T B J v`` by its own product (whatever ``net.loss`` is),
    rescaled to the global ``|S|``.
    """
    _worker_threads(client_pid)
    total = np.zeros(v.shape[0])
    for G in Gs:
        total += G.matvec(v) * (G.l / size)
    return total


# ------------------------------------------------------------ the client
def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError('sparsecnn.distributed needs Dask: pip install "sparsecnn[dask]"') from exc
    return distributed


def connect(scheduler: str | None = None, workers: int | None = None, *, processes: bool = True,
            threads_per_worker: int = 1) -> tuple[Any, Any]:
    """A Dask ``Client``: to the scheduler at ``scheduler``, or to a new ``LocalCluster`` of ``workers``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    workers : int, optional
        Start a ``LocalCluster`` with this many workers (when ``scheduler`` is not given).
    processes : bool
        Workers as processes (default) or threads of this process.
    threads_per_worker : int

    Returns
    -------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        The cluster started here (close it after the client), ``None`` with ``scheduler``.

    Examples
    --------
    >>> client, cluster = connect(workers=2, processes=False)
    >>> len(client.scheduler_info()["workers"])
    2
    >>> client.close(); cluster.close()
    >>> connect()
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: workers must be a positive integer, got None
    """
    distributed = _import_distributed()
    if scheduler is not None:
        if workers is not None:
            raise ConfigError("give either a scheduler address or a number of workers, not both")
        return distributed.Client(scheduler), None
    if workers is None or isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=threads_per_worker,
                                       processes=processes, dashboard_address=":0")
    return distributed.Client(cluster), cluster


def _sources(data: Any, y: Any) -> Iterator[tuple[str, Any]]:
    """``(description, source)`` per partition; a dask.array gives delayed sources."""
    if hasattr(data, "chunks") and hasattr(data, "to_delayed"):        # dask.array
        X = data.rechunk({0: -1})
        if y is None:
            raise InputTypeError("with a dask.array X, give the labels y (length l)")
        cols = X.chunks[1]
        if hasattr(y, "to_delayed"):
            ys = list(y.rechunk((cols,)).to_delayed().ravel())
        else:
            y = np.asarray(y)
            if y.shape != (X.shape[1],):
                raise ShapeError(f"y must have l = {X.shape[1]} entries, got shape {y.shape}")
            bounds = np.concatenate([[0], np.cumsum(cols)])
            ys = [y[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        for k, (xd, yk) in enumerate(zip(X.to_delayed().ravel(), ys, strict=True)):
            yield f"column chunk {k} of the dask.array", (xd, yk)
        return
    if y is not None:
        raise InputTypeError("y is only for a dask.array X; partitions carry their own labels")
    if isinstance(data, (str, os.PathLike, np.ndarray)) or not isinstance(data, Sequence):
        raise InputTypeError("data must be a list of (X_k, y_k) pairs, a list of files or a dask.array, "
                             f"got {type(data).__name__}")
    for k, src in enumerate(data):
        if isinstance(src, (str, os.PathLike)):
            yield f"file {os.fspath(src)}", src
        elif isinstance(src, (tuple, list)) and len(src) == 2:
            if all(isinstance(s, (str, os.PathLike)) for s in src):
                yield f"files {os.fspath(src[0])}, {os.fspath(src[1])}", tuple(src)
            else:
                yield "in-memory arrays", (np.asarray(src[0]), np.asarray(src[1]))
        else:
            raise InputTypeError(f"partition {k}: expected (X_k, y_k), a file or a pair of .npy files, "
                                 f"got {type(src).__name__}")


class DistributedObjective:
    """``f``, ``grad f``, ``J v``, ``J^T u`` and Gauss-Newton operators over partitions on a Dask cluster.

    Parameters
    ----------
    net : Network
    data : list of (X_k, y_k), list of files, or dask.array
        The partitions (see the module docstring); loaded and checked on the workers now, and kept
        there.
    y : array, optional
        Labels, only with a ``dask.array`` ``X``.
    client : distributed.Client
        Connected to the cluster (see :func:`connect`).
    C : float, default inf
        Regularisation constant of ``f`` (already multiplied by ``l``).
    batch_size : int
        Instances per forward pass on a worker.
    transform : callable, optional
        Picklable ``X_k -> X_k`` applied on the workers after reading each partition.

    Attributes
    ----------
    sizes : list of int
        ``l_k`` per partition.
    l : int
        ``sum_k l_k``.

    Raises
    ------
    ShapeError, LabelError, DataFormatError, ...
        When a partition is malformed; the message starts ``partition k (...)``.

    Examples
    --------
    Two partitions of 5 instances give the in-process ``f`` and gradient:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
    >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
    >>> theta = net.init_params(seed=0)
    >>> obj.sizes, obj.l
    ([5, 5], 10)
    >>> f, grad = obj.objective(theta)
    >>> f0, grad0 = net.objective(theta, X, y, 10.0)
    >>> bool(np.isclose(f, f0)), bool(np.allclose(grad, grad0))
    (True, True)
    >>> obj.close(); client.close(); cluster.close()
    """

    def __init__(self, net: Network, data: Any, y: Any = None, *, client: Any, C: float = np.inf,
                 batch_size: int = 1024, transform: Any = None) -> None:
        if client is None:
            raise ConfigError("a distributed.Client is needed (see sparsecnn.distributed.connect)")
        self.net = net
        self.client = client
        self.C = net.check_C(C)
        self.batch_size = positive_int("batch_size", batch_size)
        # the network as a task's result, not scattered: a task can be recomputed after its holders
        # died (a scattered object cannot); then a copy on every worker
        self._net = client.submit(_the_network, net, pure=False)
        client.replicate([self._net])
        self.parts: list[Any] = []
        self.descs: list[str] = []
        for k, (desc, src) in enumerate(_sources(data, y)):
            if isinstance(src, tuple) and hasattr(src[0], "dask"):            # dask.delayed chunk
                import dask

                fut = client.compute(dask.delayed(_load_partition, pure=True)(k, desc, src, net, transform))
            else:
                fut = client.submit(_load_partition, k, desc, src, self._net, transform, pure=False)
            self.parts.append(fut)
            self.descs.append(desc)
        if not self.parts:
            raise ShapeError("no partitions: the data set is empty")
        self.sizes: list[int] = client.gather([client.submit(_size, p) for p in self.parts])
        self.l = int(sum(self.sizes))
        if self.l == 0:
            raise ShapeError("the partitions hold no instances (l = 0)")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._theta: tuple[np.ndarray, Any] | None = None
        self._pid = os.getpid()
        self.groups: list[list[int]] = []
        self.regroup()

    def __repr__(self) -> str:
        return f"DistributedObjective({self.net!r}, {len(self.parts)} partitions, l={self.l})"

    def close(self) -> None:
        """Release the partitions held by the workers.

        Also what leaving a ``with DistributedObjective(...)`` block does.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> obj.close()
        >>> obj.parts
        []
        >>> client.close(); cluster.close()
        """
        for f in [*self.parts, self._net]:
            f.release()
        if self._theta is not None and not isinstance(self._theta[1], np.ndarray):
            self._theta[1].release()
        self.parts, self._theta = [], None

    def __enter__(self) -> DistributedObjective:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- helpers
    def _send(self, a: np.ndarray) -> Any:
        """A vector for the tasks: itself (it travels inside each worker's task message, no extra
        round trip) up to :data:`EMBED_BYTES`, else scattered once to every worker."""
        a = np.ascontiguousarray(a, dtype=np.float64)
        if a.nbytes <= EMBED_BYTES:
            return a
        return self.client.scatter(a, broadcast=True, hash=False)

    def _send_theta(self, theta: np.ndarray) -> Any:
        """``theta`` for the tasks; a scattered one is reused while ``theta`` is unchanged."""
        last = self._theta
        if last is not None and last[0].shape == theta.shape and np.array_equal(last[0], theta):
            return last[1]
        sent = self._send(theta)
        if last is not None and not isinstance(last[1], np.ndarray):
            last[1].release()
        self._theta = (np.array(theta, dtype=np.float64), sent)
        return sent

    def _sum(self, futures: list[Any]) -> Any:
        results = self.client.gather(futures)
        total = results[0]
        for r in results[1:]:
            total = total + r
        return total

    def regroup(self) -> list[list[int]]:
        """Group the partitions by the worker that holds them (one task per worker and call).

        Called at construction and by every :meth:`gauss_newton` (once per Newton iteration), so
        the groups follow partitions that Dask recomputed elsewhere after a worker died; stale
        groups cost time, never correctness (a task runs wherever its partitions are).

        Returns
        -------
        list of list of int
            Partition numbers per worker, in increasing order.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 3), client=client, C=10.0)
        >>> obj.regroup()                                    # one worker holds all three
        [[0, 1, 2]]
        >>> obj.close(); client.close(); cluster.close()
        """
        who = self.client.who_has(self.parts)
        groups: dict[str, list[int]] = {}
        for k, p in enumerate(self.parts):
            holders = sorted(who.get(p.key) or ())
            groups.setdefault(holders[0] if holders else f"unknown {k}", []).append(k)
        self.groups = sorted(groups.values())
        return self.groups

    # ------------------------------------------------------------ public API
    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``f(theta)`` and ``grad f(theta)`` (each partition by :meth:`Network.objective`).

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``

        Returns
        -------
        f : float
        grad : ndarray, shape ``(n,)``

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> f, grad = obj.objective(theta)
        >>> grad.shape, bool(np.isclose(f, net.objective(theta, X, y, 10.0)[0]))
        ((77,), True)
        >>> obj.close(); client.close(); cluster.close()
        """
        theta = self.net.check_theta(theta)
        th = self._send_theta(theta)
        futs = [self.client.submit(_objective_group, self._pid, self._net, th, self.l, self.batch_size,
                                   *(self.parts[k] for k in ks), pure=False) for ks in self.groups]
        results = self.client.gather(futs)
        f = float(theta @ theta) / (2.0 * self.C) + sum(r[0] for r in results)
        g = theta / self.C
        for r in results:
            g = g + r[1]
        return f, g

    def f(self, theta: np.ndarray) -> float:
        """``f(theta)`` alone (forward passes only).

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``

        Returns
        -------
        float

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> bool(np.isclose(obj.f(theta), net.objective(theta, X, y, 10.0)[0]))
        True
        >>> obj.close(); client.close(); cluster.close()
        """
        theta = self.net.check_theta(theta)
        th = self._send_theta(theta)
        xi = self.client.gather([self.client.submit(_loss_group, self._pid, self._net, th, self.batch_size,
                                                    *(self.parts[k] for k in ks), pure=False)
                                 for ks in self.groups])
        return objective_.value(theta, self.C, float(sum(xi)), self.l)

    def evaluate(self, theta: np.ndarray, keep: bool = True) -> list[Any]:
        """Forward passes on the workers; returns futures of the per-partition evaluations.

        With ``keep`` the forward caches stay on the workers so that :meth:`gradient_from`
        needs only the backward passes (as :func:`sparsecnn.optim.newton` with ``reuse_forward``).

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        keep : bool
            Keep the forward caches (and ``(2/l)(z^{L+1,i} - y^i)``) for a gradient.

        Returns
        -------
        list of distributed.Future
            One per partition; pass them to :meth:`f_from` and :meth:`gradient_from`.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> evs = obj.evaluate(theta, keep=True)
        >>> len(evs)
        2
        >>> f, grad = obj.f_from(theta, evs), obj.gradient_from(theta, evs)
        >>> f0, grad0 = net.objective(theta, X, y, 10.0)
        >>> bool(np.isclose(f, f0)), bool(np.allclose(grad, grad0))
        (True, True)
        >>> obj.close(); client.close(); cluster.close()
        """
        theta = self.net.check_theta(theta)
        th = self._send_theta(theta)
        return [self.client.submit(_evaluate_part, self._net, th, p, self.l, self.batch_size, keep,
                                   pure=False) for p in self.parts]

    def f_from(self, theta: np.ndarray, evs: list[Any]) -> float:
        """``f(theta)`` from the futures of :meth:`evaluate`.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
            The ``theta`` the futures were computed at (for the ``theta^T theta/(2C)`` term).
        evs : list of distributed.Future

        Returns
        -------
        float

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> f = obj.f_from(theta, obj.evaluate(theta, keep=False))
        >>> bool(np.isclose(f, net.objective(theta, X, y, 10.0)[0]))
        True
        >>> obj.close(); client.close(); cluster.close()
        """
        losses = self.client.gather([self.client.submit(_loss_of, e, pure=False) for e in evs])
        return float(theta @ theta) / (2.0 * self.C) + float(sum(losses)) / self.l

    def gradient_from(self, theta: np.ndarray, evs: list[Any]) -> np.ndarray:
        """``grad f(theta)`` from the futures of :meth:`evaluate` with ``keep=True``.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        evs : list of distributed.Future

        Returns
        -------
        ndarray, shape ``(n,)``

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> grad = obj.gradient_from(theta, obj.evaluate(theta, keep=True))
        >>> bool(np.allclose(grad, net.objective(theta, X, y, 10.0)[1]))
        True
        >>> obj.close(); client.close(); cluster.close()
        """
        th = self._send_theta(theta)
        return theta / self.C + self._sum([self.client.submit(_grad_of, self._net, th, e, pure=False)
                                           for e in evs])

    def Jv(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``J^i v`` for every instance, shape ``(n_L, l)``, columns in global order.

        Parameters
        ----------
        theta, v : ndarray, shape ``(n,)``

        Returns
        -------
        ndarray, shape ``(n_L, l)``

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> from sparsecnn.second_order import net_Jv
        >>> v = rng.standard_normal(net.n_params)
        >>> Jv = obj.Jv(theta, v)
        >>> Jv.shape, bool(np.allclose(Jv, net_Jv(net, theta, X, v)))
        ((3, 10), True)
        >>> obj.close(); client.close(); cluster.close()
        """
        theta = self.net.check_theta(theta)
        th, vv = self._send_theta(theta), self._send(second_order.real_array("v", v).reshape(-1))
        futs = [self.client.submit(_Jv_part, self._net, th, p, vv, self.batch_size, pure=False)
                for p in self.parts]
        return np.concatenate(self.client.gather(futs), axis=1)

    def JTv(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``sum_i (J^i)^T u_i`` for ``u`` of shape ``(n_L, l)``; returns shape ``(n,)``.

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        u : ndarray, shape ``(n_L, l)``
            Column ``i`` for global instance ``i``.

        Returns
        -------
        ndarray, shape ``(n,)``

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> from sparsecnn.second_order import net_JTv
        >>> u = rng.standard_normal((3, 10))
        >>> bool(np.allclose(obj.JTv(theta, u), net_JTv(net, theta, X, u)))
        True
        >>> obj.close(); client.close(); cluster.close()
        """
        theta = self.net.check_theta(theta)
        u = second_order.real_array("u", u)
        if u.shape != (self.net.n_L, self.l):
            raise ShapeError(f"u must have shape (n_L, l) = ({self.net.n_L}, {self.l}), got {u.shape}")
        th = self._send_theta(theta)
        futs = [self.client.submit(_JTv_part, self._net, th, p,
                                   np.ascontiguousarray(u[:, self.offsets[k]:self.offsets[k + 1]]),
                                   self.batch_size, pure=False)
                for k, p in enumerate(self.parts)]
        return self._sum(futs)

    def gauss_newton(self, theta: np.ndarray, idx: Sequence[int] | np.ndarray | None = None, *,
                     jacobian: str = "recompute") -> DistributedGaussNewton:
        """``G_S = (1/|S|) sum_{i in S} (J^i)^T B^i J^i`` (``B^i`` of ``net.loss``) for global indices ``S = idx``
        (default: all).

        Parameters
        ----------
        theta : ndarray, shape ``(n,)``
        idx : sequence of int, optional
            Global instance indices ``S``.
        jacobian : {"recompute", "store"}

        Returns
        -------
        DistributedGaussNewton
            An ``n x n`` ``LinearOperator``.

        Examples
        --------
        ``S = {0, 3, 7}`` spans both partitions:

        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> from sparsecnn.second_order import gauss_newton
        >>> G = obj.gauss_newton(theta, [0, 3, 7])
        >>> v = rng.standard_normal(net.n_params)
        >>> bool(np.allclose(G.matvec(v), gauss_newton(net, theta, X[:, [0, 3, 7]]).matvec(v)))
        True
        >>> G.release()
        >>> obj.close(); client.close(); cluster.close()
        """
        return DistributedGaussNewton(self, theta, idx, jacobian=jacobian)


class DistributedGaussNewton(LinearOperator):
    """``G_S v`` summed over the partitions; each worker keeps its partitions' forward passes of ``S``.

    Built with one task per worker; each product is one more task per worker (one round trip),
    which returns the worker's ``(1/|S|) sum (J^i)^T B^i J^i v`` over its partitions.

    Parameters
    ----------
    obj : DistributedObjective
    theta : ndarray, shape ``(n,)``
    idx : sequence of int, optional
        Global instance indices of ``S``; all instances by default.
    jacobian : {"recompute", "store"}
        As for :class:`sparsecnn.second_order.GaussNewton`.

    Attributes
    ----------
    size : int
        ``|S|``.
    n_matvec : int
        Products computed so far.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
    >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
    >>> theta = net.init_params(seed=0)
    >>> G = DistributedGaussNewton(obj, theta)                        # S = all 10 instances
    >>> G.shape, G.size
    ((77, 77), 10)
    >>> v = rng.standard_normal(net.n_params)
    >>> Gv = G @ v
    >>> G.n_matvec, bool(v @ Gv >= 0)                                  # G is positive semi-definite
    (1, True)
    >>> G.release()
    >>> obj.close(); client.close(); cluster.close()
    """

    def __init__(self, obj: DistributedObjective, theta: np.ndarray,
                 idx: Sequence[int] | np.ndarray | None = None, *, jacobian: str = "recompute") -> None:
        if jacobian not in JACOBIAN_MODES:
            raise ConfigError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
        n = obj.net.n_params
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))
        self.obj = obj
        theta = obj.net.check_theta(theta)
        th = obj._send_theta(theta)
        client = obj.client
        local_of: dict[int, np.ndarray | None]
        if idx is None:
            local_of = {k: None for k in range(len(obj.parts)) if obj.sizes[k] > 0}
            self.size = obj.l
        else:
            owners = owner_of(idx, obj.sizes)                             # checks the indices
            local_of = {k: local for k, _, local in owners}
            self.size = int(sum(pos.size for _, pos, _ in owners))
        if self.size == 0:
            raise ShapeError("the Gauss-Newton set S is empty")
        # one task per worker: its partitions' forward passes of S, kept there as GaussNewton objects
        self._ops = []
        for ks in obj.regroup():
            mine = [k for k in ks if k in local_of]
            if mine:
                self._ops.append(client.submit(_gn_group, obj._pid, obj._net, th, [local_of[k] for k in mine],
                                               jacobian, obj.batch_size, *(obj.parts[k] for k in mine),
                                               pure=False))
        self.n_matvec = 0

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        """One round trip: each worker returns ``(1/|S|) sum_{i in S ∩ its partitions} (J^i)^T B^i J^i v``."""
        if not self._ops:
            raise ConfigError("this Gauss-Newton operator was released: build another with obj.gauss_newton")
        self.n_matvec += 1
        vv = self.obj._send(second_order.real_array("v", v).reshape(-1))
        return self.obj._sum([self.obj.client.submit(_gn_group_product, self.obj._pid, G, vv, self.size,
                                                     pure=False) for G in self._ops])

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:
        return self._matvec(v)

    def _adjoint(self) -> DistributedGaussNewton:
        return self

    def release(self) -> None:
        """Free the workers' forward caches of ``S``.

        The operator cannot compute products afterwards.

        Examples
        --------
        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> client, cluster = connect(workers=1, processes=False)          # a worker thread in this process
        >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((36, 10)); y = rng.integers(0, 3, 10)   # (d^1 a^1 b^1, l), (l,)
        >>> obj = DistributedObjective(net, split_columns(X, y, 2), client=client, C=10.0)
        >>> theta = net.init_params(seed=0)
        >>> G = obj.gauss_newton(theta, [1, 2])
        >>> G.size, G.matvec(np.ones(net.n_params)).shape
        (2, (77,))
        >>> G.release()                               # the workers drop the forward passes of S
        >>> obj.close(); client.close(); cluster.close()
        """
        for f in self._ops:
            f.release()
        self._ops = []


# -------------------------------------------------------------- training
@dataclass
class _NewtonOnCluster:
    """The :class:`sparsecnn.optim.newton.NewtonProblem` of a :class:`DistributedObjective`."""

    obj: DistributedObjective
    jacobian: str

    @property
    def l(self) -> int:
        return int(self.obj.l)

    def objective(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        return self.obj.objective(theta)

    def f(self, theta: np.ndarray) -> float:
        return self.obj.f(theta)

    def gauss_newton(self, theta: np.ndarray, idx: np.ndarray) -> DistributedGaussNewton:
        return self.obj.gauss_newton(theta, idx, jacobian=self.jacobian)


def newton_distributed(net: Network, theta: np.ndarray, data: Any, y: Any = None, *, C: float,
                       client: Any = None, scheduler: str | None = None, workers: int | None = None,
                       iter_max: int = 100, GNsize: int | None = None, xi: float = 0.1, CGmax: int = 250,
                       lam: float = 1.0, drop: float = 2 / 3, boost: float = 3 / 2, eta: float = 1e-4,
                       batch_size: int = 1024, jacobian: str = "recompute", seed: int | None = None,
                       validation: tuple[np.ndarray, np.ndarray] | None = None, keep_best: bool = False,
                       trial_gradient: bool = True, max_ls_steps: int = 60, transform: Any = None,
                       callback: Any = None) -> tuple[np.ndarray, Any]:
    """:func:`sparsecnn.optim.newton` with ``f``, ``grad f`` and ``G_S v`` computed on a Dask cluster.

    The iteration is :func:`sparsecnn.optim.newton`'s, step for step: the subsample ``S`` of
    iteration ``k`` is drawn by :func:`sparsecnn.optim.newton.subsample_chunks` over the global
    indices ``0..l-1`` (partitions laid side by side) from ``numpy.random.default_rng(seed)``, so the
    same seed gives the same ``S`` as an in-process run on ``X = [X_1 X_2 ...]``, and the same
    iterates up to rounding.

    Parameters
    ----------
    net, theta, C, iter_max, GNsize, xi, CGmax, lam, drop, boost, eta, batch_size, jacobian, seed,
    validation, keep_best, trial_gradient, max_ls_steps, callback
        As for :func:`sparsecnn.optim.newton` (``validation`` is evaluated in this process).
    data, y, transform
        The partitions, as for :class:`DistributedObjective`; or ``X`` (an ndarray of shape
        ``(d^1 a^1 b^1, l)``) and its labels ``y``, split by :func:`split_columns` into one
        partition per worker of the cluster.
    client : distributed.Client, optional
        Use this client; otherwise one is made by :func:`connect` from ``scheduler`` or ``workers``
        (and closed at the end).
    scheduler : str, optional
        Address of a running Dask scheduler.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes for the run.

    Returns
    -------
    theta : ndarray, shape ``(n,)``
    history : sparsecnn.optim.History
        ``timing`` has the phases of :func:`sparsecnn.optim.newton`.

    Examples
    --------
    Two iterations on a one-thread cluster take the steps of the in-process method:

    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> from sparsecnn.optim import newton
    >>> client, cluster = connect(workers=1, processes=False)
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((36, 20)); y = rng.integers(0, 3, 20)
    >>> theta0 = net.init_params(seed=0)
    >>> theta, hist = newton_distributed(net, theta0, split_columns(X, y, 2), C=20.0, client=client,
    ...                                  iter_max=2, GNsize=5, seed=0)
    >>> theta_ref, hist_ref = newton(net, theta0, X, y, C=20.0, iter_max=2, GNsize=5, seed=0)
    >>> len(hist), hist.cg_iters == hist_ref.cg_iters, bool(np.allclose(theta, theta_ref))
    (2, True, True)
    >>> client.close(); cluster.close()
    """
    own = None
    if client is None:
        if scheduler is None and workers is None:
            raise ConfigError("give a client, a scheduler address or a number of workers")
        client, own = connect(scheduler, workers)
    elif scheduler is not None or workers is not None:
        raise ConfigError("give either a client or a scheduler/workers, not both")
    try:
        theta = net.check_theta(theta).copy()
        C = net.check_C(C)
        if jacobian not in JACOBIAN_MODES:
            raise ConfigError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
        if isinstance(data, np.ndarray):                       # one X: a partition per worker
            X = net.check_X(data)
            labels = net.check_y(y, X.shape[1])
            n_workers = len(client.scheduler_info()["workers"])
            data, y = split_columns(X, labels, max(1, n_workers)), None
        obj = DistributedObjective(net, data, y, client=client, C=C, batch_size=batch_size,
                                   transform=transform)
        try:
            return newton_loop(_NewtonOnCluster(obj, jacobian), net, theta, C=C, iter_max=iter_max,
                               GNsize=GNsize, xi=xi, CGmax=CGmax, lam=lam, drop=drop, boost=boost, eta=eta,
                               seed=seed, validation=validation, keep_best=keep_best,
                               trial_gradient=trial_gradient, max_ls_steps=max_ls_steps, callback=callback,
                               batch_size=batch_size)
        finally:
            obj.close()
    finally:
        if own is not None:
            client.close()
            own.close()
