"""Second-order products: ``J v``, ``J^T u`` and the Gauss-Newton matrix ``G``.

For instance ``i`` let ``J^i = dz^{L+1,i}/dtheta^T`` (``n_L x n``).  This module
computes, through the same sparse operators as the gradient,

- ``J v`` by an R-operator forward pass (``R(.)`` is the directional derivative
  along ``v``; ``v`` holds ``vec(V^m)`` and ``v_b^m`` in the order of ``theta``)::

      R(Z^1)       = 0
      R(phi^m)     = P_phi P_pad R(Z^m)
      R(S^m)       = V^m phi(pad(Z^m)) + W^m R(phi^m) + v_b^m 1^T
      R(sigma^m)   = sigma'(S^m) ⊙ R(S^m)
      R(Z^{m+1})   = P_pool^{m,i} R(sigma^m)          (winners of the forward pass)

  and for full layers ``R(s^m) = V^m z^m + W^m R(z^m) + v_b^m``,
  ``R(z^{m+1}) = sigma'(s^m) ⊙ R(s^m)``; ``J^i v = R(z^{L+1,i})``;
- ``J^T u = sum_i (J^i)^T u_i`` by the backward pass of the gradient, started
  from ``dz^{L+1} = u``;
- ``G v = (1/l) sum_i (J^i)^T B^i J^i v`` with ``B^i = 2I`` (squared loss) or
  ``B^i = diag(p^i) - p^i (p^i)^T``, ``p^i = softmax(z^{L+1,i})`` (cross-entropy),
  as a :class:`scipy.sparse.linalg.LinearOperator` that runs the forward pass
  once and reuses it for every product.

simpleNN's alternative (its ``-Jacobian 1``, the default on CPUs) is offered as
``jacobian="store"``: ``dz^{L+1,i}/dvec(S^{m,i})^T`` (``n_L x d^{m+1} a_conv b_conv``)
is computed once for every instance by ``n_L`` backward passes, each batched over
the instances, and then ``J^i v = sum_m (dz^{L+1,i}/dvec(S^{m,i})^T)
vec(V^m phi(pad(Z^{m,i})) + v_b^m 1^T)`` and ``J^T u`` follows from the same
matrices.  It trades memory (see :func:`jacobian_bytes_per_instance`) for the
R-operator's and backward pass's operator products.

Examples
--------
>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(4)])
>>> theta = net.init_params(seed=0)
>>> X = np.random.default_rng(1).standard_normal((36, 5))
>>> v = np.random.default_rng(2).standard_normal(net.n_params)
>>> u = np.random.default_rng(3).standard_normal((4, 5))
>>> Jv = net_Jv(net, theta, X, v)
>>> Jv.shape
(4, 5)
>>> bool(np.isclose(np.sum(u * Jv), net_JTv(net, theta, X, u) @ v))
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse.linalg import LinearOperator

from . import engine
from ._checks import check_finite, real_numeric
from .engine import Keep, Store
from .exceptions import ConfigError, ShapeError
from .kernels import Workspace, blas_serial
from .layers import ConvShape, FullShape
from .planner import Plan

if TYPE_CHECKING:  # pragma: no cover
    from .network import Network

__all__ = [
    "JACOBIAN_MODES",
    "GaussNewton",
    "net_Jv",
    "net_JTv",
    "gauss_newton",
    "jacobian_bytes_per_instance",
    "forward_bytes_per_instance",
    "windowed_plan",
]

JACOBIAN_MODES = ("recompute", "store")
"""``"recompute"``: ``J v`` by the R-operator and ``J^T u`` by the backward pass at every
product; ``"store"``: keep ``dz^{L+1}/dS^m`` per instance (simpleNN's ``-Jacobian 1``)."""

DEFAULT_GN_BATCH = 1024
"""Instances per forward pass when building a :class:`GaussNewton` operator."""


# ------------------------------------------------------------------ helpers
def real_array(name: str, a: object) -> np.ndarray:
    """``a`` as a float64 array, or an :class:`InputTypeError` for complex or non-numeric input.

    Casting would drop an imaginary part (a wrong product) or fail with NumPy's own message.

    Examples
    --------
    >>> real_array("v", [1, 2])
    array([1., 2.])
    >>> real_array("v", np.array([1j]))
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: v must be a real numeric array, got dtype complex128
    """
    return np.asarray(real_numeric(name, a), dtype=np.float64)


def _conv_W_grad(ly: ConvShape, Phi: np.ndarray, dS: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_i dS^i phi(pad(Z^{m,i}))^T`` and ``sum_i dS^i 1`` for a batch.

    ``Phi`` is ``vec(phi(pad(Z^m)))`` (``h h d^m x a_conv b_conv``, one column per
    instance) and ``dS`` is ``vec(dS^m)`` (``d^{m+1} x a_conv b_conv``): in both,
    ``vec`` runs over the rows of one filter position, then over the positions.
    """
    l = dS.shape[1]
    dS3 = dS.reshape(ly.n_pos, ly.d_out, l)
    Phi3 = Phi.reshape(ly.n_pos, ly.hhd, l)
    dW = np.tensordot(dS3, Phi3, axes=([0, 2], [0, 2]))
    return dW, dS3.sum(axis=(0, 2))


def _dz_dS(net: Network, keep: Keep, Ws: Sequence[np.ndarray], kept: dict[str, np.ndarray], l: int
           ) -> list[np.ndarray]:
    """``dz^{L+1,i}/dvec(S^{m,i})^T`` for every layer, from ``n_L`` backward passes.

    Returns a list indexed by ``m - 1`` of arrays of shape ``(n_L, n_S^m, l)``:
    entry ``[k, j, i]`` is ``dz^{L+1,i}_k / dvec(S^{m,i})_j`` (``s^m`` for full layers).
    ``kept`` is what a keep-everything forward pass kept.
    """
    be = net.backend
    st = Store(net, be, keep, list(Ws), None, None, kept)
    n_L = net.n_L
    out: list[np.ndarray] = []
    sizes = [ly.n_S for ly in net.conv] + [fl.n_out for fl in net.full]
    dtype = kept["Z1"].dtype
    for n_S in sizes:
        out.append(np.empty((n_L, n_S, l), dtype=dtype))
    layers: list[ConvShape | FullShape] = [*net.conv, *net.full]
    dsig = {ly.m: ly.sigma.dsigma(kept[f"S{ly.m}"]) for ly in layers}     # sigma'(S^m), once
    winners = {ly.m: st.winners(ly.m) for ly in net.conv}
    for k in range(n_L):                                           # one backward pass per output
        dZ = np.zeros((n_L, l), dtype=dtype)
        dZ[k] = 1.0
        for fl in reversed(net.full):
            m = fl.m
            ds = dZ * dsig[m]                                      # (4)
            out[m - 1][k] = ds
            dZ = Ws[m - 1].T @ ds                                  # (3)
        for ly in reversed(net.conv):
            m = ly.m
            dS = be.eq7(ly, dZ, winners[m]) * dsig[m]              # (7), (5)
            out[m - 1][k] = dS
            if m > 1:
                dZn = be.conv_backward(ly, Ws[m - 1], kept[f"phi{m}"], dS)[2]  # P_pad^T P_phi^T vec(W^T dS)
                assert dZn is not None
                dZ = dZn
    return out


# ------------------------------------------------------------- byte counts
def jacobian_bytes_per_instance(net: Network) -> int:
    """Bytes per instance of ``dz^{L+1}/dS^m`` for all ``m`` (``jacobian="store"``), float64.

    ``8 n_L (sum_{m conv} d^{m+1} a^m_conv b^m_conv + sum_{m full} n_{m+1})``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> jacobian_bytes_per_instance(Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)]))
    264
    """
    total = sum(ly.n_S for ly in net.conv) + sum(fl.n_out for fl in net.full)
    return 8 * int(net.n_L) * int(total)


def forward_bytes_per_instance(net: Network) -> int:
    """Bytes per instance the forward pass keeps for ``J v`` and ``J^T u`` with
    ``jacobian="recompute"`` (float64 arrays).

    Where :func:`windowed_plan` applies: ``Z^1`` and what its plan keeps
    (``Z^m`` and the winners as offsets).  Otherwise everything (max-pool
    winners counted as int32): ``Z^m``, ``phi(pad(Z^m))``, ``S^m`` and winners
    for conv layers, ``z^m`` and ``s^m`` for full layers, and ``z^{L+1}``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> forward_bytes_per_instance(Network((4, 4, 1), [ConvLayer(2, h=3), FullLayer(3)]))
    592
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> forward_bytes_per_instance(net) == 8 * 16 + windowed_plan(net).bytes_per_instance
    True
    """
    plan = windowed_plan(net)
    if plan is not None:
        return 8 * net.n_input + plan.bytes_per_instance
    total = 0
    for ly in net.conv:
        total += 8 * (ly.n_in + ly.hhd * ly.n_pos + ly.n_S)
        if ly.max_pools:
            total += 4 * ly.n_out
    for fl in net.full:
        total += 8 * (fl.n_in + fl.n_out)
    return total + 8 * int(net.n_L)


# ------------------------------------------------------------ the operator
@dataclass
class _Batch:
    sl: slice
    kept: dict[str, np.ndarray]
    X: np.ndarray
    dzdS: list[np.ndarray] | None = None


def windowed_plan(net: Network) -> Plan | None:
    """The plan under which every convolutional layer runs window by window, or ``None``.

    ``net.plan("slides")`` (``Z^m`` and the winners kept) when each
    convolutional layer is followed by max pooling with ``sigma'`` readable
    from ``Z^{m+1}`` (:func:`sparsecnn.planner.execute.fused`) and each full
    layer's ``sigma'`` is too; then :class:`GaussNewton` keeps only that and
    runs ``J v`` and ``J^T u`` window by window
    (:meth:`~sparsecnn.layers.ConvShape.conv_pool_R`,
    :meth:`~sparsecnn.layers.ConvShape.conv_pool_backward`).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> windowed_plan(Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)])).retained
    ('pool1', 'Z2', 'Z3')
    >>> windowed_plan(Network((6, 6, 1), [ConvLayer(2, h=3, r=2, pool="avg"), FullLayer(3)])) is None
    True
    """
    plan = net.plan("slides")
    keep = set(plan.retained)
    if len(Keep.from_plan(net, plan, windowed=True).windowed) != net.LC:
        return None
    for fl in net.full:
        if f"Z{fl.m}" not in keep and fl.m > 1:
            return None
        if fl.sigma.name != "identity" and (fl.sigma.dsigma_from_output is None or f"Z{fl.m + 1}" not in keep):
            return None
    return plan


class GaussNewton(LinearOperator):
    """``G = (1/l) sum_i (J^i)^T B^i J^i`` (``B^i`` of ``net.loss``), as a symmetric ``n x n`` operator.

    The forward pass over ``X`` runs once, here; every product reuses it.  ``theta`` and
    ``X`` are copied, so changing the caller's arrays afterwards does not change ``G``.

    Parameters
    ----------
    net : Network
    theta : ndarray, shape ``(n,)``
    X : ndarray, shape ``(d^1 a^1 b^1, l)``
        The instances of ``G`` (for Newton's method, the subsample).
    jacobian : {"recompute", "store"}
        ``"recompute"``: each product is one R-operator forward pass and one backward pass;
        ``"store"``: ``dz^{L+1}/dS^m`` is kept per instance (``n_L`` backward passes now).
    batch_size : int
        Instances per forward pass (bounds the temporaries, not what is kept).
    dtype : {"float64", "float32"}, optional
        The float type of the products (default: the network's).  ``v``,
        ``G v`` and the sums over batches are float64 either way.

    Attributes
    ----------
    output : ndarray, shape ``(n_L, l)``
        ``z^{L+1}`` at ``theta``.
    bytes_per_instance : int
        Bytes kept per instance: the forward cache, plus ``dz^{L+1}/dS^m`` when stored.
    jacobian_bytes_per_instance : int
        The part of :attr:`bytes_per_instance` that ``jacobian="store"`` adds (0 otherwise).
    n_matvec : int
        Products computed so far.
    plan : Plan or None
        With ``jacobian="recompute"``, :func:`windowed_plan`'s plan where it
        applies: the forward pass keeps ``Z^m`` and the winners, and both
        products run window by window; ``None``: everything is kept.

    Examples
    --------
    >>> import numpy as np
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((6, 6, 1), [ConvLayer(2, h=3, r=2), FullLayer(3)])
    >>> theta = net.init_params(seed=0)
    >>> X = np.random.default_rng(0).standard_normal((36, 4))
    >>> G = GaussNewton(net, theta, X)
    >>> G.shape == (net.n_params, net.n_params)
    True
    >>> v = np.ones(net.n_params)
    >>> bool(v @ (G @ v) >= 0)
    True
    """

    net: Network
    theta: np.ndarray
    jacobian: str
    l: int
    Ws: list[np.ndarray]
    bs: list[np.ndarray]
    output: np.ndarray
    bytes_per_instance: int
    jacobian_bytes_per_instance: int
    n_matvec: int
    compute_dtype: np.dtype
    plan: Plan | None
    keep: Keep
    _work: Workspace | None

    def __init__(self, net: Network, theta: np.ndarray, X: np.ndarray, *,
                 jacobian: str = "recompute", batch_size: int = DEFAULT_GN_BATCH,
                 dtype: object = None) -> None:
        if jacobian not in JACOBIAN_MODES:
            raise ConfigError(f"jacobian must be one of {JACOBIAN_MODES}, got {jacobian!r}")
        batch_size = net.check_batch_size(batch_size)
        self.net = net
        self.theta = net.check_theta(theta).copy()       # W^m are views of it: the caller's theta may change
        X = net.check_X(X)
        self.jacobian = jacobian
        self.l = int(X.shape[1])
        n = int(net.n_params)
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))
        self.compute_dtype = net.resolve_dtype(dtype)
        self.Ws, self.bs = net.params(self.theta, self.compute_dtype)
        self.output = np.empty((net.n_L, self.l))
        self._batches: list[_Batch] = []
        be = net.backend
        self._work = Workspace() if be.windowed else None
        self.plan = windowed_plan(net) if jacobian == "recompute" and be.windowed else None
        self.keep = net.keep(self.plan, None)
        with blas_serial():
            for sl in engine.batches(self.l, int(batch_size)):
                Xb = np.array(X[:, sl], dtype=self.compute_dtype, order="C")   # a copy: kept as Z^1
                out, kept = engine.forward(net, be, self.keep, self.Ws, self.bs, Xb)
                self.output[:, sl] = out
                batch = _Batch(sl, kept, Xb)
                if jacobian == "store":
                    batch.dzdS = _dz_dS(net, self.keep, self.Ws, kept, out.shape[1])
                self._batches.append(batch)
        forward = sum(int(v.nbytes) for b in self._batches for v in b.kept.values())
        if self.plan is not None:                                  # Z^1 is kept apart from the plan's
            forward += sum(int(b.X.nbytes) for b in self._batches)
        jac = sum(int(D.nbytes) for b in self._batches for D in (b.dzdS or []))
        self.jacobian_bytes_per_instance = jac // max(self.l, 1)
        self.bytes_per_instance = (forward + jac) // max(self.l, 1)
        self.n_matvec = 0

    # products ------------------------------------------------------------
    def _check_v(self, v: np.ndarray) -> np.ndarray:
        v = real_array("v", v).reshape(-1)
        if v.size != self.shape[1]:
            raise ShapeError(f"v must have n = {self.shape[1]} entries, got {v.size}")
        return check_finite("v", v)

    def Jv(self, v: np.ndarray) -> np.ndarray:
        """``J^i v`` for every instance, shape ``(n_L, l)``.

        ``v`` has shape ``(n,)``, in the order of ``theta``.  One R-operator
        forward pass over the kept forward pass (or, with ``jacobian="store"``,
        products with the stored ``dz^{L+1}/dS^m``).

        Examples
        --------
        Column ``i`` is the directional derivative of ``z^{L+1,i}`` along ``v``:

        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> theta, X, v = net.init_params(seed=0), rng.random((16, 2)), rng.standard_normal(net.n_params)
        >>> G = GaussNewton(net, theta, X)
        >>> eps = 1e-6
        >>> fd = (net.output(theta + eps * v, X) - net.output(theta - eps * v, X)) / (2 * eps)
        >>> bool(np.allclose(G.Jv(v), fd, atol=1e-6))
        True
        >>> np.allclose(GaussNewton(net, theta, X, jacobian="store").Jv(v), G.Jv(v))
        True
        """
        v = self._check_v(v)
        Vs, vbs = self.net.params(v, self.compute_dtype)          # V^m, v_b^m as W^m, b^m in theta
        out = np.empty((self.net.n_L, self.l))
        with blas_serial():
            for b in self._batches:
                if b.dzdS is None:
                    out[:, b.sl] = engine.R_forward(self.net, self.net.backend, self.keep, self.Ws, b.kept,
                                                    Vs, vbs, X=b.X, work=self._work)
                else:
                    out[:, b.sl] = self._Jv_stored(b, Vs, vbs)
        return out

    def JTv(self, u: np.ndarray) -> np.ndarray:
        """``sum_i (J^i)^T u_i`` for ``u`` of shape ``(n_L, l)``; returns shape ``(n,)``.

        The gradient's backward pass started from ``dz^{L+1} = u`` (or, with
        ``jacobian="store"``, products with the stored ``dz^{L+1}/dS^m``).

        Examples
        --------
        ``JTv`` is the adjoint of :meth:`Jv`, and ``G v = (2/l) J^T J v``:

        >>> from sparsecnn import ConvLayer, FullLayer, Network
        >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
        >>> rng = np.random.default_rng(0)
        >>> theta, X = net.init_params(seed=0), rng.random((16, 2))
        >>> u, v = rng.standard_normal((3, 2)), rng.standard_normal(net.n_params)
        >>> G = GaussNewton(net, theta, X)
        >>> bool(np.isclose(G.JTv(u) @ v, np.sum(u * G.Jv(v))))
        True
        >>> np.allclose(G @ v, G.JTv(2 / 2 * G.Jv(v)))
        True
        """
        u = real_array("u", u)
        if u.shape != (self.net.n_L, self.l):
            raise ShapeError(f"u must have shape (n_L, l) = ({self.net.n_L}, {self.l}), got {u.shape}")
        check_finite("u", u)
        total = np.zeros(self.shape[0])
        with blas_serial():
            for b in self._batches:
                ub = np.ascontiguousarray(u[:, b.sl], dtype=self.compute_dtype)
                if b.dzdS is None:
                    dWs, dbs = engine.backward(self.net, self.net.backend, self.keep, self.Ws, self.bs, b.X,
                                               b.kept, ub, work=self._work)
                else:
                    dWs, dbs = self._JTv_stored(b, ub)
                total += self.net.pack(dWs, dbs)
        return total

    def _Jv_stored(self, b: _Batch, Vs: Sequence[np.ndarray], vbs: Sequence[np.ndarray]) -> np.ndarray:
        assert b.dzdS is not None
        out = np.zeros((self.net.n_L, b.sl.stop - b.sl.start))
        for ly in self.net.conv:
            P = self.net.backend.S(ly, Vs[ly.m - 1], vbs[ly.m - 1], b.kept[f"phi{ly.m}"])  # vec(V phi + v_b 1^T)
            out += np.einsum("kji,ji->ki", b.dzdS[ly.m - 1], P)
        for fl in self.net.full:
            P = Vs[fl.m - 1] @ b.kept[f"Z{fl.m}"] + vbs[fl.m - 1][:, None]
            out += np.einsum("kji,ji->ki", b.dzdS[fl.m - 1], P)
        return out

    def _JTv_stored(self, b: _Batch, u: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        assert b.dzdS is not None
        dWs: list[np.ndarray] = []
        dbs: list[np.ndarray] = []
        for ly in self.net.conv:
            dS = np.einsum("kji,ki->ji", b.dzdS[ly.m - 1], u)            # u_i^T dz/dvec(S^m)
            dW, db = _conv_W_grad(ly, b.kept[f"phi{ly.m}"], dS)
            dWs.append(dW)
            dbs.append(db)
        for fl in self.net.full:
            ds = np.einsum("kji,ki->ji", b.dzdS[fl.m - 1], u)
            dWs.append(ds @ b.kept[f"Z{fl.m}"].T)
            dbs.append(ds.sum(axis=1))
        return dWs, dbs

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        """``G v = (1/l) J^T B J v`` (``B = 2I`` for the squared loss, ``diag(p) - p p^T`` for cross-entropy)."""
        if self.l == 0:                                # J v and J^T u of no instances are fine; 1/l is not
            raise ShapeError("X has l = 0 columns: G v = (1/l) sum_i (J^i)^T B^i J^i v needs at least one instance")
        self.n_matvec += 1
        Jv = self.Jv(v)
        if not np.isfinite(Jv).all():                  # J v overflowed: so does G v (CG reports it)
            # worded as numpy's own overflow warnings, which the command line leaves to its divergence check
            warnings.warn(f"overflow encountered in J v (max |v| {np.abs(v).max():.3g}, max |theta| "
                          f"{np.abs(self.theta).max():.3g}): G v is returned as NaN", RuntimeWarning, stacklevel=2)
            return np.full(self.shape[0], np.nan)
        return self.JTv(self.net.loss.B(Jv, 1.0 / self.l, out=self.output))     # (1/l) J^T B J v

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:
        return self._matvec(v)

    def _adjoint(self) -> GaussNewton:
        return self


# --------------------------------------------------------- functional API
def net_Jv(net: Network, theta: np.ndarray, X: np.ndarray, v: np.ndarray, *,
           batch_size: int = DEFAULT_GN_BATCH, dtype: object = None) -> np.ndarray:
    """``J^i v`` for every column of ``X``, shape ``(n_L, l)`` (see :meth:`Network.Jv`).

    ``theta`` and ``v`` have shape ``(n,)``, ``X`` shape ``(d^1 a^1 b^1, l)``.

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> theta, X = net.init_params(seed=0), np.ones((16, 2))
    >>> net_Jv(net, theta, X, np.zeros(net.n_params))
    array([[0., 0.],
           [0., 0.],
           [0., 0.]])
    """
    return GaussNewton(net, theta, X, batch_size=batch_size, dtype=dtype).Jv(v)


def net_JTv(net: Network, theta: np.ndarray, X: np.ndarray, u: np.ndarray, *,
            batch_size: int = DEFAULT_GN_BATCH, dtype: object = None) -> np.ndarray:
    """``sum_i (J^i)^T u_i``, shape ``(n,)``, for ``u`` of shape ``(n_L, l)`` (see :meth:`Network.JTv`).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> theta, X = net.init_params(seed=0), np.ones((16, 2))
    >>> net_JTv(net, theta, X, np.ones((3, 2))).shape == (net.n_params,)
    True
    """
    return GaussNewton(net, theta, X, batch_size=batch_size, dtype=dtype).JTv(u)


def gauss_newton(net: Network, theta: np.ndarray, X: np.ndarray, *, jacobian: str = "recompute",
                 batch_size: int = DEFAULT_GN_BATCH, dtype: object = None) -> GaussNewton:
    """The Gauss-Newton operator ``G`` (``n x n``) of the instances in ``X`` (see :class:`GaussNewton`).

    Examples
    --------
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    >>> G = gauss_newton(net, net.init_params(seed=0), np.ones((16, 2)))
    >>> G.shape == (net.n_params, net.n_params), G.l
    (True, 2)
    """
    return GaussNewton(net, theta, X, jacobian=jacobian, batch_size=batch_size, dtype=dtype)
