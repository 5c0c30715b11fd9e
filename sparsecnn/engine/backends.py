"""Backends: who computes each step of the engine's loops.

The engine (:mod:`sparsecnn.engine.passes`) walks the layers and, at every
step, asks its backend for one equation.  Two backends give the same numbers
(to rounding) through the same interface:

``ReferenceBackend`` (``backend="reference"``)
    Every step is a function of :mod:`sparsecnn.equations`: the literal
    products ``P_phi @ (P_pad @ Z)``, ``W @ phi + b 1^T``,
    ``P_pool @ vec(sigma(S))`` and their transposes through the ``csr_array``
    operators themselves.  No thread pool, no work arrays, no private scipy.
    The place to read the slides in code, and the oracle's side.
``FastBackend`` (``backend="fast"``, the default)
    The same steps, fused and blocked: the row-gather form of the selection
    products, im2col and GEMM a block of filter positions at a time on two
    threads (:mod:`sparsecnn.kernels.conv`), and the window-by-window kernels
    that never hold ``phi`` or ``S`` whole (:mod:`sparsecnn.kernels.windowed`),
    called through the layer's methods (``ly.conv_forward(...)`` is
    ``kernels.conv.conv_forward(ly, ...)``), so that a profiler can wrap them per layer.

The interface (all arrays one column per instance):

=====================================  ===========================================================
``pad(ly, Z)``, ``phi(ly, Z)``          ``P_pad vec(Z)``, ``P_phi P_pad vec(Z)``
``S(ly, W, b, phi)``                    ``vec(W phi + b 1^T)``
``conv_forward(ly, Z, W, b, ...)``      ``(phi, S)`` (``phi`` only when kept)
``winners(ly, A)``                      max-pool winners of ``vec(sigma(S))`` (positions)
``pool(ly, A, winners)``                ``P_pool A``
``activate_pool(ly, S, order, w)``      ``(P_pool vec(sigma(S)), winners)``
``eq7(ly, v, winners)``                 ``P_pool^T v``: equation (7)
``conv_backward(ly, W, phi, dS, ...)``  ``dxi/dW = dS phi^T``, ``dxi/db = dS 1``, ``P_pad^T P_phi^T vec(W^T dS)``
``conv_R(ly, W, V, v_b, phi, RZ)``      ``R(S) = V phi + W phi(pad(R(Z))) + v_b 1^T``
``s(fl, W, b, z)``, ``s_T(fl, W, z, ds)``  full layers: ``W z + b``; equations (1)-(3)
``windowed`` and ``conv_pool_*``        the fast backend's window-by-window layers
=====================================  ===========================================================

Examples
--------
>>> import numpy as np
>>> from sparsecnn import ConvLayer, FullLayer, Network
>>> net = Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
>>> ly, rng = net.conv[0], np.random.default_rng(0)
>>> Z, W, b = rng.standard_normal((36, 4)), rng.standard_normal((2, 9)), rng.standard_normal(2)
>>> ref, fast = get_backend("reference"), get_backend("fast")
>>> np.allclose(ref.conv_forward(ly, Z, W, b)[1], fast.conv_forward(ly, Z, W, b)[1], rtol=1e-13)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import equations as eq
from ..exceptions import ConfigError
from ..kernels import select
from ..layers import ConvLayer, ConvShape, FullLayer, FullShape  # noqa: F401 - FullLayer, FullShape: the examples
from ..operators import P_pool, max_pool_winners

__all__ = ["Backend", "ReferenceBackend", "FastBackend", "BACKENDS", "get_backend"]

BACKENDS = ("fast", "reference")
"""The backends ``Network(backend=...)`` accepts."""


def _example(seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """A conv layer (``6 x 6 x 1``, ``h = 3``, ``p = 1``, ``r = 2``, ReLU) and a batch ``Z``, ``W``, ``b``
    of four instances: the setting of the examples below."""
    rng = np.random.default_rng(seed)
    ly = ConvShape(1, 6, 6, 1, ConvLayer(2, h=3, p=1, r=2))
    return ly, rng.standard_normal((36, 4)), rng.standard_normal((2, 9)), rng.standard_normal(2)


class Backend:
    """What the engine's loops call (see the module docstring); each method is one step of the slides.

    :class:`ReferenceBackend` and :class:`FastBackend` implement every method;
    arrays hold one column per instance, ``ly`` is the layer
    (:class:`~sparsecnn.layers.ConvShape` or :class:`~sparsecnn.layers.FullShape`).
    The examples run both backends on one conv layer (``_example()``: ``6 x 6 x 1``
    images, ``3 x 3`` filters, padding 1, ``2 x 2`` max pooling, four instances).

    Examples
    --------
    >>> [b.name for b in (ReferenceBackend(), FastBackend())], FastBackend().windowed
    (['reference', 'fast'], True)
    """

    name: str = ""
    windowed: bool = False
    """Whether the backend has the window-by-window conv+pool kernels (``conv_pool_*``)."""

    def pad(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        """``vec(pad(Z)) = P_pad vec(Z)`` (``Z`` itself when ``p = 0``).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> np.array_equal(ReferenceBackend().pad(ly, Z), FastBackend().pad(ly, Z)), ly.P_pad.shape
        (True, (64, 36))
        """
        raise NotImplementedError

    def phi(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        """``vec(phi(pad(Z))) = P_phi P_pad vec(Z)``, shape ``(h h d a_conv b_conv, l)``.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> np.array_equal(ReferenceBackend().phi(ly, Z), FastBackend().phi(ly, Z))
        True
        """
        raise NotImplementedError

    def S(self, ly: Any, W: np.ndarray, b: np.ndarray, Phi: np.ndarray, out: np.ndarray | None = None
          ) -> np.ndarray:
        """``vec(S) = vec(W phi(pad(Z)) + b 1^T)`` from ``vec(phi(pad(Z)))``, shape ``(d^{m+1} a_conv b_conv, l)``.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Phi = ly.phi(Z)
        >>> np.allclose(ReferenceBackend().S(ly, W, b, Phi), FastBackend().S(ly, W, b, Phi), rtol=1e-13)
        True
        """
        raise NotImplementedError

    def conv_forward(self, ly: Any, Z: np.ndarray, W: np.ndarray, b: np.ndarray, *, keep_phi: bool = True,
                     out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None
                     ) -> tuple[np.ndarray | None, np.ndarray]:
        """``(vec(phi(pad(Z))), vec(S))``; ``phi`` is ``None`` unless ``keep_phi`` (``out_*``: work arrays).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Phi, S = ReferenceBackend().conv_forward(ly, Z, W, b)
        >>> none, S2 = FastBackend().conv_forward(ly, Z, W, b, keep_phi=False)
        >>> none is None, Phi.shape, np.allclose(S, S2, rtol=1e-13)
        (True, (324, 4), True)
        """
        raise NotImplementedError

    def winners(self, ly: Any, A: np.ndarray) -> np.ndarray:
        """The max-pooling winners of ``A = vec(sigma(S))``: positions in ``vec(sigma(S))``.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> A = np.maximum(ly.conv_forward(Z, W, b)[1], 0)
        >>> np.array_equal(ReferenceBackend().winners(ly, A), FastBackend().winners(ly, A))
        True
        """
        raise NotImplementedError

    def pool(self, ly: Any, A: np.ndarray, winners: np.ndarray | None) -> np.ndarray:
        """``P_pool A`` with ``P_pool`` from ``winners`` (max pooling) or constant (average; ``None``).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> A = np.maximum(ly.conv_forward(Z, W, b)[1], 0)
        >>> w = ly.winners(A)
        >>> np.array_equal(ReferenceBackend().pool(ly, A, w), FastBackend().pool(ly, A, w))
        True
        """
        raise NotImplementedError

    def activate_pool(self, ly: Any, S: np.ndarray, order: str, winners: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(vec(Z^{m+1}), winners) = (P_pool vec(sigma(S)), ...)``; ``winners`` given: ``P_pool`` from them.

        ``order`` is :attr:`sparsecnn.Network.activate_order` (the reference
        backend always takes the slides' order: ``sigma`` first).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> S = ly.conv_forward(Z, W, b)[1]
        >>> Zr, wr = ReferenceBackend().activate_pool(ly, S, "slides")
        >>> Zf, wf = FastBackend().activate_pool(ly, S, "slides")
        >>> np.array_equal(Zr, Zf), np.array_equal(wr, wf)
        (True, True)
        """
        raise NotImplementedError

    def eq7(self, ly: Any, v: np.ndarray, winners: np.ndarray | None, out: np.ndarray | None = None
            ) -> np.ndarray:
        """Equation (7): ``P_pool^T v`` (``v`` itself without pooling).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> w = ly.winners(np.maximum(ly.conv_forward(Z, W, b)[1], 0))
        >>> v = np.ones((ly.n_out, 4))
        >>> np.array_equal(ReferenceBackend().eq7(ly, v, w), FastBackend().eq7(ly, v, w))
        True
        """
        raise NotImplementedError

    def conv_backward(self, ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                      need_dZ: bool = True, out: np.ndarray | None = None, Z: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(dxi/dW, dxi/db, vec(dxi/dZ))``: ``dS phi^T``, ``dS 1`` summed over instances, and
        ``P_pad^T P_phi^T vec(W^T dS)`` (``None`` unless ``need_dZ``); ``phi`` rebuilt from ``Z`` if ``None``.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> dS = np.ones((ly.n_S, 4))
        >>> ref = ReferenceBackend().conv_backward(ly, W, None, dS, Z=Z)
        >>> fast = FastBackend().conv_backward(ly, W, ly.phi(Z), dS)
        >>> all(np.allclose(x, y, rtol=1e-13) for x, y in zip(ref, fast))
        True
        """
        raise NotImplementedError

    def conv_R(self, ly: Any, W: np.ndarray, V: np.ndarray, v_b: np.ndarray, Phi: np.ndarray,
               RZ: np.ndarray | None, work: Any = None) -> np.ndarray:
        """``R(S) = V phi(pad(Z)) + W phi(pad(R(Z))) + v_b 1^T`` (``RZ = None``: ``R(Z) = 0``).

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Phi, RZ = ly.phi(Z), np.ones_like(Z)
        >>> np.allclose(ReferenceBackend().conv_R(ly, W, W, b, Phi, RZ), FastBackend().conv_R(ly, W, W, b, Phi, RZ))
        True
        """
        raise NotImplementedError

    def s(self, fl: Any, W: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Full layer: ``s = W z + b 1^T``.

        Examples
        --------
        >>> W, b, z = np.array([[1., 2.]]), np.array([1.]), np.array([[1.], [1.]])
        >>> ReferenceBackend().s(None, W, b, z), FastBackend().s(FullShape(1, 2, FullLayer(1), True), W, b, z)
        (array([[4.]]), array([[4.]]))
        """
        raise NotImplementedError

    def s_T(self, fl: Any, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full layer, equations (1)-(3): ``(dxi/ds z^T, dxi/ds 1, W^T dxi/ds)``.

        Examples
        --------
        >>> W, z, ds = np.array([[1., 2.]]), np.array([[3.], [4.]]), np.array([[1.]])
        >>> ReferenceBackend().s_T(None, W, z, ds)
        (array([[3., 4.]]), array([1.]), array([[1.],
               [2.]]))
        """
        raise NotImplementedError


class ReferenceBackend(Backend):
    """Every step a function of :mod:`sparsecnn.equations` on the layer's ``csr_array`` operators.

    Examples
    --------
    ``S^m = W^m phi(pad(Z^m)) + b^m 1^T`` for a batch, literally:

    >>> import numpy as np
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).conv[0]
    >>> Z, W, b = np.ones((16, 2)), np.ones((2, 9)), np.array([0., 1.])
    >>> Phi, S = ReferenceBackend().conv_forward(ly, Z, W, b)
    >>> np.array_equal(Phi, ly.P_phi @ (ly.P_pad @ Z)), S[:2, 0]       # corner: 4 of the 9 entries inside
    (True, array([4., 5.]))
    """

    name = "reference"
    windowed = False

    @staticmethod
    def P_pool(ly: Any, winners: np.ndarray | None) -> sp.csr_array | None:
        """``P_pool^m`` of the batch: ``None`` for ``r = 1``; average pooling's constant matrix; max
        pooling's built from the winners (positions), acting on ``vec(sigma(S)).ravel()``.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> w = ly.winners(np.maximum(ly.conv_forward(Z, W, b)[1], 0))
        >>> ReferenceBackend.P_pool(ly, w).shape            # (d a_out b_out l, d a_conv b_conv l)
        (72, 288)
        """
        if not ly.pools:
            return None
        if not ly.max_pools:
            return ly.P_avg
        return P_pool(ly.a_conv, ly.b_conv, ly.d_out, ly.spec.r, winners=winners, layout="instances-last")

    def pad(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        return Z if ly.P_pad is None else np.asarray(ly.P_pad @ Z)

    def phi(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        return eq.conv_phi(Z, ly.P_phi, ly.P_pad)

    def S(self, ly: Any, W: np.ndarray, b: np.ndarray, Phi: np.ndarray, out: np.ndarray | None = None
          ) -> np.ndarray:
        return eq.conv_S(W, Phi, b)

    def conv_forward(self, ly: Any, Z: np.ndarray, W: np.ndarray, b: np.ndarray, *, keep_phi: bool = True,
                     out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None
                     ) -> tuple[np.ndarray | None, np.ndarray]:
        Phi = self.phi(ly, Z)
        return (Phi if keep_phi else None), eq.conv_S(W, Phi, b)

    def winners(self, ly: Any, A: np.ndarray) -> np.ndarray:
        return max_pool_winners(A, ly.a_conv, ly.b_conv, ly.d_out, ly.spec.r)

    def pool(self, ly: Any, A: np.ndarray, winners: np.ndarray | None) -> np.ndarray:
        return eq.pool_Z(self.P_pool(ly, winners), A, "identity")

    def activate_pool(self, ly: Any, S: np.ndarray, order: str, winners: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        if ly.max_pools and winners is None:
            winners = self.winners(ly, ly.sigma.sigma(S))
        return eq.pool_Z(self.P_pool(ly, winners), S, ly.sigma.name), (winners if ly.max_pools else None)

    def eq7(self, ly: Any, v: np.ndarray, winners: np.ndarray | None, out: np.ndarray | None = None
            ) -> np.ndarray:
        P = self.P_pool(ly, winners)
        return v if P is None else eq.eq7(v, P)

    def conv_backward(self, ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                      need_dZ: bool = True, out: np.ndarray | None = None, Z: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if Phi is None:
            if Z is None:
                raise ConfigError(f"conv layer {ly.m}: the backward pass needs phi(pad(Z^{ly.m})) or Z^{ly.m}")
            Phi = self.phi(ly, Z)
        dZ = eq.conv_dZ(W, dS, ly.P_phi, ly.P_pad) if need_dZ else None
        return eq.conv_dW(dS, Phi, ly.d_out), eq.conv_db(dS, ly.d_out), dZ

    def conv_R(self, ly: Any, W: np.ndarray, V: np.ndarray, v_b: np.ndarray, Phi: np.ndarray,
               RZ: np.ndarray | None, work: Any = None) -> np.ndarray:
        RS = eq.conv_S(V, Phi, v_b)                                            # V phi + v_b 1^T
        if RZ is not None:
            RS = RS + eq.conv_S(W, self.phi(ly, RZ), np.zeros(ly.d_out))      # + W phi(pad(R(Z)))
        return RS

    def s(self, fl: Any, W: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
        return W @ z + b.reshape(-1, 1)                                        # s = W z + b

    def s_T(self, fl: Any, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return eq.eq1(ds, z), eq.eq2(ds), eq.eq3(W, ds)                        # (1), (2), (3)


class FastBackend(Backend):
    """The blocked, threaded and window-by-window kernels (:mod:`sparsecnn.kernels`).

    Examples
    --------
    >>> import numpy as np
    >>> from sparsecnn import ConvLayer, FullLayer, Network
    >>> ly = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]).conv[0]
    >>> FastBackend().windowed, ly.windowed              # this layer can run window by window
    (True, True)
    """

    name = "fast"
    windowed = True

    def pad(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        return Z if ly.P_pad is None else select(ly.P_pad, Z)

    def phi(self, ly: Any, Z: np.ndarray) -> np.ndarray:
        return ly.phi(Z)

    def S(self, ly: Any, W: np.ndarray, b: np.ndarray, Phi: np.ndarray, out: np.ndarray | None = None
          ) -> np.ndarray:
        return ly.S(W, b, Phi, out=out)

    def conv_forward(self, ly: Any, Z: np.ndarray, W: np.ndarray, b: np.ndarray, *, keep_phi: bool = True,
                     out_phi: np.ndarray | None = None, out_S: np.ndarray | None = None
                     ) -> tuple[np.ndarray | None, np.ndarray]:
        return ly.conv_forward(Z, W, b, out_phi=out_phi, out_S=out_S, keep_phi=keep_phi)

    def winners(self, ly: Any, A: np.ndarray) -> np.ndarray:
        w = ly.winners(A)
        assert w is not None
        return w

    def pool(self, ly: Any, A: np.ndarray, winners: np.ndarray | None) -> np.ndarray:
        return ly.pool(A, winners)

    def activate_pool(self, ly: Any, S: np.ndarray, order: str, winners: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        if winners is None or not ly.max_pools:
            return ly.activate_pool(S, order=order)
        return ly.pool(ly.sigma.sigma(S), winners), winners

    def eq7(self, ly: Any, v: np.ndarray, winners: np.ndarray | None, out: np.ndarray | None = None
            ) -> np.ndarray:
        return ly.pool_T(v, winners, out=out)

    def conv_backward(self, ly: Any, W: np.ndarray, Phi: np.ndarray | None, dS: np.ndarray, *,
                      need_dZ: bool = True, out: np.ndarray | None = None, Z: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return ly.conv_backward(W, Phi, dS, need_dZ=need_dZ, out=out, Z=Z)

    def conv_R(self, ly: Any, W: np.ndarray, V: np.ndarray, v_b: np.ndarray, Phi: np.ndarray,
               RZ: np.ndarray | None, work: Any = None) -> np.ndarray:
        l = Phi.shape[1]
        out = work.get(f"RS{ly.m}", (ly.n_S, l), Phi.dtype) if work is not None else None
        RS = ly.S(V, v_b, Phi, out=out)                                        # V^m phi + v_b^m 1^T
        if RZ is not None:                                                     # + W^m P_phi P_pad R(Z^m)
            tmp = work.get("WRphi", RS.shape, RS.dtype) if work is not None else None
            _, WR = ly.conv_forward(RZ, W, np.zeros(ly.d_out, dtype=RS.dtype), out_S=tmp, keep_phi=False)
            RS += WR
        return RS

    def s(self, fl: Any, W: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
        return fl.s(W, b, z)

    def s_T(self, fl: Any, W: np.ndarray, z: np.ndarray, ds: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return fl.s_T(W, z, ds)

    # the window-by-window layers (max pooling with sigma' readable from Z^{m+1})
    def conv_pool_forward(self, ly: Any, Z: np.ndarray, W: np.ndarray, b: np.ndarray, *, order: str,
                          out: np.ndarray | None = None, out_offsets: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
        """``(vec(Z^{m+1}), winners as offsets)``, a block of pooling windows at a time.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Zn, k = FastBackend().conv_pool_forward(ly, Z, W, b, order="slides")
        >>> np.array_equal(Zn, ReferenceBackend().activate_pool(ly, ly.conv_forward(Z, W, b)[1], "slides")[0])
        True
        """
        return ly.conv_pool_forward(Z, W, b, order=order, out=out, out_offsets=out_offsets)

    def conv_pool_backward(self, ly: Any, W: np.ndarray, Z: np.ndarray, dZnext: np.ndarray, Znext: np.ndarray,
                           offsets: np.ndarray, *, need_dZ: bool = True, out: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Equation (6) and the conv layer's backward step, a block of windows at a time.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Zn, k = FastBackend().conv_pool_forward(ly, Z, W, b, order="slides")
        >>> dW, db, dZ = FastBackend().conv_pool_backward(ly, W, Z, np.ones_like(Zn), Zn, k)
        >>> dW.shape, db.shape, dZ.shape
        ((2, 9), (2,), (36, 4))
        """
        return ly.conv_pool_backward(W, Z, dZnext, Znext, offsets, need_dZ=need_dZ, out=out)

    def conv_pool_R(self, ly: Any, Z: np.ndarray, RZ: np.ndarray | None, W: np.ndarray, V: np.ndarray,
                    v_b: np.ndarray, Znext: np.ndarray, offsets: np.ndarray, out: np.ndarray | None = None
                    ) -> np.ndarray:
        """``R(Z^{m+1})``, the R-operator of :meth:`conv_pool_forward`, a block of windows at a time.

        Examples
        --------
        >>> ly, Z, W, b = _example()
        >>> Zn, k = FastBackend().conv_pool_forward(ly, Z, W, b, order="slides")
        >>> FastBackend().conv_pool_R(ly, Z, None, W, W, b, Zn, k).shape
        (18, 4)
        """
        return ly.conv_pool_R(Z, RZ, W, V, v_b, Znext, offsets, out=out)


_INSTANCES: dict[str, Backend] = {"fast": FastBackend(), "reference": ReferenceBackend()}


def get_backend(name: object) -> Backend:
    """The backend called ``name`` (``"fast"`` or ``"reference"``), or a :class:`ConfigError` naming them.

    Examples
    --------
    >>> get_backend("reference").name
    'reference'
    >>> get_backend("slow")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.ConfigError: backend must be one of ('fast', 'reference'), got 'slow'
    """
    if not isinstance(name, str) or name not in _INSTANCES:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {name!r}")
    return _INSTANCES[name]
