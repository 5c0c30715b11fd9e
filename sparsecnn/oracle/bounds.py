"""Rounding-error bounds for every entry the oracle compares: the tolerances with power.

A product computed in floating point with unit roundoff ``u`` satisfies, entry by
entry, ``|fl(A B) - A B| <= gamma_K |A| |B|`` with ``gamma_K = K u / (1 - K u)``
and ``K`` the length of the sums (Higham, *Accuracy and Stability of Numerical
Algorithms*, section 3.5).  When ``A`` and ``B`` themselves carry errors bounded
by ``E_A`` and ``E_B`` (entrywise), the error of the computed product is at most
``gamma_K A' B' + E_A B' + |A| E_B``, where ``A' = |A| + E_A`` and ``B' = |B| + E_B``
bound the operands the model actually multiplies.  To first order in ``u`` this is
``gamma_K |A| |B| + E_A |B| + |A| E_B``; the rest (``E_A E_B`` and the rounding of
the model's own operands) is what keeps the bound a bound where an operand's error
is as large as the operand itself -- a ReLU input that the two sides see with
different signs, a value that cancels to nearly 0.  This module
carries such a bound ``E`` alongside every quantity of the layers the oracle
reads -- ``S^m``, ``sigma(S^m)``, ``Z^{m+1}``, the backward pass's
``dxi/dS^m`` and ``dxi/dZ^m``, the R-operator's ``R(S^m)`` and ``R(Z^{m+1})``
-- so that each compared entry gets its own tolerance:

- convolution ``S = W phi(pad(Z)) + b 1^T``: ``K = h^2 d + 1``,
  ``E_S = conv(gamma_K Z' + E_Z, |W|) + gamma_K |b|``; a full layer likewise
  with ``K = n_m + 1``;
- activation: ``E_{sigma(S)} = L_sigma E_S + c_sigma u |sigma(S)|``, ``L_sigma``
  the largest slope of ``sigma`` within ``E_S`` of ``S`` (so a ReLU input within
  its error of 0 counts with slope 1), ``c_sigma`` = 4 for ``tanh`` and
  ``sigmoid`` (library elementwise functions are accurate to a few ulps), 1 for
  ``leaky_relu`` (its slope 0.01 is rounded), 0 otherwise;
- ``sigma'(S)`` as the backward pass forms it: for ReLU 0 or 1, wrong entirely
  where ``|S| <= E_S`` (the two sides may see different signs); ``1 - y^2`` for
  tanh (error ``(2|y| + E_y) E_y + 2u(1 + y'^2)``), ``y(1 - y)`` for sigmoid
  (``(|1 - 2y| + E_y) E_y + 3u y'(1 + y')``); the product ``dZ sigma'(S)`` then has
  error ``|sigma'| E_dZ + dZ' E_sigma'``;
- max pooling moves entries (no rounding; the model's winners are used on both
  sides), average pooling sums ``r^2`` entries;
- backward: ``dxi/dW^m = dxi/dS^m phi^T`` has ``K = l a_conv b_conv`` (``K = l``
  for a full layer) and ``E = (gamma_K dS' + E_dS) phi'^T + |dS| E_phi^T``;
  ``dxi/dZ^m`` has ``K = h^2 d^{m+1}`` (``n_{m+1}``).

``u`` is the unit roundoff of the model plus that of float64 (the reference's
own rounding): ``(eps_model + eps64) / 2``.  A result below the model's smallest
normal number ``eta`` carries an absolute, not a relative, error of up to ``eta``
(it may be flushed to 0, or come out of a vectorised ``exp`` with a few bits
left; a float32 softmax entry ``exp(-130)`` is 0): each sum of ``K`` products
gets ``K eta`` more, and each elementwise step ``eta``.  The bounds are worst case: they
hold for any order of summation, but not for algorithms that transform the
operands (Winograd or FFT convolution), which :func:`sparsecnn.check` can widen
by its ``tol_factor``.  Everything here runs in PyTorch float64 on absolute values;
no sparsecnn engine code is involved.

Examples
--------
>>> gamma(10, 2.0 ** -23) == 10 * 2.0 ** -23 / (1 - 10 * 2.0 ** -23)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..network import Network

__all__ = ["gamma", "ErrorBounds"]


def gamma(K: int, u: float) -> float:
    """``gamma_K = K u / (1 - K u)``, the relative error bound of a sum of ``K`` products.

    Examples
    --------
    >>> round(gamma(1000, 2.0 ** -52) / 2.0 ** -52)
    1000
    """
    Ku = K * u
    return Ku / (1.0 - Ku) if Ku < 0.5 else 2.0 * Ku


_C_SIGMA = {"relu": 0.0, "identity": 0.0, "leaky_relu": 1.0, "tanh": 4.0, "sigmoid": 4.0}


class ErrorBounds:
    """Values and entrywise error bounds of the forward, backward and R-operator passes, in PyTorch layout.

    Parameters
    ----------
    net : Network
        The network the model was read as.
    weights, biases : list of torch.Tensor
        Per layer, PyTorch's weight (OIHW or ``(n_out, n_in)``) and bias (zeros where
        the model has none), float64.
    x : torch.Tensor, shape ``(l, d^1, a^1, b^1)``
        The instances the model saw, float64.
    winners : dict of int to torch.Tensor
        ``{m: indices}`` of ``max_pool2d(..., return_indices=True)`` for each max-pooling layer.
    u : float
        Unit of the bounds: the model's unit roundoff plus float64's.
    observed : dict of int to torch.Tensor, optional
        ``{m: |Z^{m+1} of the model - Z^{m+1} of the reference|}``.  Given, the forward
        error bound after layer ``m`` is replaced by this measured difference plus the
        reference's own bound (``u_ref / u`` of the a priori one): the backward pass
        and the R-operator then start from the model's actual forward errors instead of
        their worst case (the forward rows themselves use the a priori bounds).
    u_ref : float
        The reference's unit roundoff (float64's), used with ``observed``.
    eta : float
        The model's underflow unit, its smallest normal number (``2^-126`` in float32): a
        product or an ``exp`` whose true value is below it may come out as 0 (flushed) or
        as a subnormal number with few correct bits, an absolute error up to ``eta`` that no
        relative bound covers.  Every sum of ``K`` products gets ``K eta`` more, every
        elementwise product, activation and softmax entry ``eta`` (0: no underflow bound).

    Examples
    --------
    >>> import torch
    >>> from sparsecnn import FullLayer, Network
    >>> net = Network((1, 1, 2), [FullLayer(1)])
    >>> w, b = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    >>> x = torch.tensor([[[[3.0]], [[2.0]]]], dtype=torch.float64)      # z = 3 - 2 = 1
    >>> eb = ErrorBounds(net, [w], [b], x, {}, u=1e-3)
    >>> out, E = eb.output
    >>> float(out[0, 0]), round(float(E[0, 0]) / gamma(3, 1e-3), 12)    # gamma_3 (|3| + |2|)
    (1.0, 5.0)
    """

    def __init__(self, net: Network, weights: list[Any], biases: list[Any], x: Any,
                 winners: Mapping[int, Any], u: float, observed: Mapping[int, Any] | None = None,
                 u_ref: float = 0.0, eta: float = 0.0) -> None:
        self.net, self.W, self.b, self.u = net, weights, biases, float(u)
        self.eta = float(eta)
        self.Wabs = [W.abs() for W in weights]
        self.winners = dict(winners)
        self.l = int(x.shape[0])
        self.kept: list[dict[str, Any]] = []
        Z, E = x, x.new_zeros(x.shape)
        self.Z: list[tuple[Any, Any]] = [(Z, E)]          # Z^{m}, m = 1..L+1, with bounds
        for ly in net.layers:
            Z, E = self._forward_layer(ly, Z, E)
            if observed is not None and ly.m in observed:
                # a posteriori: the model's own forward error is known exactly; the reference's is bounded
                E = observed[ly.m].reshape(E.shape) + E * (u_ref / self.u)
            self.Z.append((Z, E))

    # ------------------------------------------------------------ pieces
    def _torch(self) -> Any:
        import torch

        return torch

    def _sigma(self, name: str, S: Any, ES: Any) -> tuple[Any, Any, Any, Any]:
        """``sigma(S)``, its bound, ``sigma'(S)`` as a backward pass forms it, and that one's bound."""
        torch = self._torch()
        u = self.u
        if name == "identity":
            return S, ES, torch.ones_like(S), torch.zeros_like(S)
        if name in ("relu", "leaky_relu"):
            slope = 0.0 if name == "relu" else 0.01
            A = torch.where(S > 0, S, slope * S)
            lip = torch.where(S > -ES, 1.0, slope)
            EA = lip * ES + _C_SIGMA[name] * u * A.abs() + (self.eta if slope else 0.0)
            d = torch.where(S > 0, 1.0, slope)
            Ed = (1.0 - slope) * (S.abs() <= ES).to(S.dtype) + (u * slope if slope else 0.0)
            return A, EA, d, Ed
        # the largest slope within E_S of S, at |S| - E_S; written without cancellation, since
        # 1 - tanh(x)^2 and sigma(x)(1 - sigma(x)) are exactly 0 in floating point for large x
        near = (S.abs() - ES).clamp(min=0.0)
        if name == "tanh":
            A = torch.tanh(S)
            e = torch.exp(-2.0 * near)
            EA = 4.0 * e / (1.0 + e) ** 2 * ES + _C_SIGMA[name] * u * A.abs() + self.eta          # sech^2(near)
            return A, EA, 1.0 - A * A, (2.0 * A.abs() + EA) * EA + 2.0 * u * (1.0 + (A.abs() + EA) ** 2)
        if name == "sigmoid":
            A = torch.sigmoid(S)
            EA = torch.sigmoid(near) * torch.sigmoid(-near) * ES + _C_SIGMA[name] * u * A.abs() + self.eta
            Au = A.abs() + EA
            return A, EA, A * (1.0 - A), ((1.0 - 2.0 * A).abs() + EA) * EA + 3.0 * u * Au * (1.0 + Au)
        raise ValueError(f"no error bound for activation {name!r}")  # pragma: no cover

    def _pool(self, m: int, ly: Any, A: Any, EA: Any) -> tuple[Any, Any]:
        torch = self._torch()
        F = torch.nn.functional
        r = ly.spec.r
        if r == 1:
            return A, EA
        if ly.spec.pool == "avg":
            return F.avg_pool2d(A, r), F.avg_pool2d(EA, r) + gamma(r * r + 1, self.u) * F.avg_pool2d(A.abs() + EA, r) \
                + (r * r + 1) * self.eta
        idx = self.winners[m]
        flat = idx.flatten(2)
        return (A.flatten(2).gather(2, flat).view(idx.shape), EA.flatten(2).gather(2, flat).view(idx.shape))

    def _unpool(self, m: int, ly: Any, G: Any, EG: Any, shape: Any) -> tuple[Any, Any]:
        torch = self._torch()
        F = torch.nn.functional
        r = ly.spec.r
        if r == 1:
            return G, EG
        l, d, a, b = shape
        if ly.spec.pool == "avg":
            up = torch.zeros(shape, dtype=G.dtype)
            eup = torch.zeros(shape, dtype=G.dtype)
            ao, bo = G.shape[2] * r, G.shape[3] * r
            up[:, :, :ao, :bo] = F.interpolate(G, scale_factor=r, mode="nearest") / (r * r)
            eup[:, :, :ao, :bo] = F.interpolate(EG, scale_factor=r, mode="nearest") / (r * r)
            return up, eup + self.u * (up.abs() + eup) + self.eta
        idx = self.winners[m].flatten(2)
        out = torch.zeros((l, d, a * b), dtype=G.dtype).scatter_(2, idx, G.flatten(2))
        eout = torch.zeros((l, d, a * b), dtype=G.dtype).scatter_(2, idx, EG.flatten(2))
        return out.view(shape), eout.view(shape)

    def _forward_layer(self, ly: Any, Z: Any, EZ: Any) -> tuple[Any, Any]:
        torch = self._torch()
        F = torch.nn.functional
        m = ly.m
        W, b = self.W[m - 1], self.b[m - 1]
        if m <= self.net.LC:
            sp = ly.spec
            K = sp.h * sp.h * Z.shape[1] + 1
            g = gamma(K, self.u)
            S = F.conv2d(Z, W, b, sp.s, sp.p)
            ES = F.conv2d(g * (Z.abs() + EZ) + EZ, self.Wabs[m - 1], None, sp.s, sp.p) \
                + g * b.abs()[None, :, None, None] + K * self.eta
        else:
            if Z.ndim == 4:
                Z, EZ = Z.reshape(Z.shape[0], -1), EZ.reshape(EZ.shape[0], -1)
            g = gamma(Z.shape[1] + 1, self.u)
            S = Z @ W.T + b
            ES = (g * (Z.abs() + EZ) + EZ) @ self.Wabs[m - 1].T + g * b.abs() + (Z.shape[1] + 1) * self.eta
        A, EA, d, Ed = self._sigma(ly.sigma.name, S, ES)
        # "Zabs" bounds |Z| of the model's operand, |Z| + E_Z: its rounding and the second-order E_dS E_Z
        self.kept.append({"Z": Z, "EZ": EZ, "Zabs": Z.abs() + EZ, "S": S, "ES": ES, "A": A, "d": d, "Ed": Ed})
        return self._pool(m, ly, A, EA) if m <= self.net.LC else (A, EA)

    def _times_d(self, G: Any, EG: Any, k: Mapping[str, Any]) -> tuple[Any, Any]:
        """``G sigma'(S)`` and its bound: ``|G_m d_m - G d| <= |d| E_G + (|G| + E_G) E_d``, plus the rounding.

        Not only to first order: where the two sides see ``S`` with different signs (a ReLU
        input within its error of 0), ``E_d`` is 1 and ``E_G E_d`` is as large as ``E_G``.
        """
        out = G * k["d"]
        E = k["d"].abs() * EG + (G.abs() + EG) * k["Ed"]
        return out, E + self.u * (out.abs() + E) + self.eta

    # ------------------------------------------------------------ results
    @property
    def output(self) -> tuple[Any, Any]:
        """``z^{L+1}`` as the model returns it, ``(l, n_L)``, and its bound."""
        return self.Z[-1]

    def objective(self, Y: Any, C: float, params: list[Any], loss: str = "squared") -> tuple[float, Any, Any]:
        """Bound of ``f``, and ``(1/l) dxi/dz^{L+1}`` with its bound (to start the backward pass).

        ``(2/l)(z - y)`` for the squared loss; ``(1/l)(p - y)``, ``p = softmax(z)``, for
        cross-entropy (:meth:`_cross_entropy`).

        Parameters
        ----------
        Y : torch.Tensor, shape ``(l, n_L)``
            One-hot labels.
        C : float
            Regularisation (``inf``: none).
        params : list of torch.Tensor
            The parameters (for the ``theta^T theta / (2C)`` term).
        loss : {"squared", "cross-entropy"}

        Returns
        -------
        Ef : float
        dZ, EdZ : torch.Tensor, shape ``(l, n_L)``

        Examples
        --------
        >>> import torch
        >>> from sparsecnn import FullLayer, Network
        >>> w, b = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        >>> x = torch.tensor([[[[3.0]], [[2.0]]]], dtype=torch.float64)
        >>> eb = ErrorBounds(Network((1, 1, 2), [FullLayer(1)]), [w], [b], x, {}, u=1e-3)
        >>> Ef, dZ, EdZ = eb.objective(torch.zeros(1, 1, dtype=torch.float64), float("inf"), [w, b])
        >>> float(dZ[0, 0]), Ef > 0, float(EdZ[0, 0]) > 0                  # dZ = 2 (z - y) / l = 2
        (2.0, True, True)
        """
        u, l = self.u, self.l
        out, Eout = self.output
        if loss == "cross-entropy":
            return self._cross_entropy(Y, C, params)
        d = out - Y
        Ed = Eout + u * (d.abs() + Eout)
        Ef = float(((2.0 * d.abs() + Ed) * Ed).sum() + gamma(d.numel(), u) * ((d.abs() + Ed) ** 2).sum()) / l
        if C != float("inf"):
            reg = sum(float((p * p).sum()) for p in params) / (2.0 * C)
            Ef += gamma(sum(int(p.numel()) for p in params) + 2, u) * reg
        dZ = (2.0 / l) * d
        return Ef + u * abs(Ef), dZ, (2.0 / l) * Ed + 2.0 * u * (dZ.abs() + (2.0 / l) * Ed) + self.eta

    def _reg(self, C: float, params: list[Any]) -> float:
        if C == float("inf"):
            return 0.0
        reg = sum(float((p * p).sum()) for p in params) / (2.0 * C)
        return gamma(sum(int(p.numel()) for p in params) + 2, self.u) * reg

    def softmax(self) -> tuple[Any, Any]:
        """``p = softmax(z^{L+1})`` per instance, ``(l, n_L)``, and its bound.

        ``log p_k = z_k - logsumexp(z)``, and an error ``|e_j| <= E_j`` in ``z`` moves
        ``logsumexp`` by at most ``sum_j p_j expm1(E_j)`` (``log sum_j p_j exp(e_j)``,
        bounded above by ``log(1 + x) <= x`` and below by Jensen), so
        ``|dp_k| <= p_k expm1(E_k + sum_j p_j expm1(E_j) + rel_k)`` -- to first order
        ``p_k (E_k + sum_j p_j E_j)``, the derivative ``p_k (delta_kj - p_j)`` --
        where ``rel_k``, the rounding of ``z - max z``, ``exp``, the sum of ``n_L``
        terms, ``log`` and the division, is at most
        ``gamma_{2 n_L + 16} (1 + |z_k - max z| + log sum exp(z - max z))``; plus ``eta``,
        for a ``p_k`` that underflows.

        Examples
        --------
        >>> import torch
        >>> from sparsecnn import FullLayer, Network
        >>> w, b = torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        >>> x = torch.tensor([[[[0.0]]]], dtype=torch.float64)                # z = (0, 0): p = (1/2, 1/2)
        >>> p, Ep = ErrorBounds(Network((1, 1, 1), [FullLayer(2)]), [w], [b], x, {}, u=1e-8).softmax()
        >>> p.tolist(), bool((Ep > 0).all()), bool((Ep < 1e-6).all())
        ([[0.5, 0.5]], True, True)
        """
        torch = self._torch()
        out, Eout = self.output
        shifted = out - out.max(dim=1, keepdim=True).values
        lse = torch.logsumexp(shifted, dim=1, keepdim=True)
        p = torch.exp(shifted - lse)
        rel = gamma(2 * out.shape[1] + 16, self.u) * (1.0 + shifted.abs() + lse)
        Ep = p * torch.expm1(Eout + (p * torch.expm1(Eout)).sum(dim=1, keepdim=True) + rel) + self.eta
        return p, Ep

    def _cross_entropy(self, Y: Any, C: float, params: list[Any]) -> tuple[float, Any, Any]:
        """``f``'s bound and ``(1/l)(p - y)`` with its bound, for ``xi_i = logsumexp(z^i) - z^i_{y_i}``.

        ``|d xi_i| <= sum_j p_ij expm1(E_ij) + E_{i y_i}`` (see :meth:`softmax`), plus the rounding of
        log-sum-exp and of the pick, ``gamma_{2 n_L + 16} (1 + |logsumexp| + |max z| + |z_y|)``,
        and the mean over ``l`` instances, ``gamma_l (1/l) sum_i |xi_i|``.
        """
        torch = self._torch()
        u, l = self.u, self.l
        out, Eout = self.output
        p, Ep = self.softmax()
        lse = torch.logsumexp(out, dim=1)
        z_y = (out * Y).sum(dim=1)
        xi = lse - z_y
        Exi = (p * torch.expm1(Eout)).sum(dim=1) + (Eout * Y).sum(dim=1) \
            + gamma(2 * out.shape[1] + 16, u) * (1.0 + lse.abs() + out.max(dim=1).values.abs() + z_y.abs())
        Ef = float(Exi.sum() + gamma(l, u) * xi.abs().sum()) / l + self._reg(C, params)
        dZ = (p - Y) / l
        return Ef + u * abs(Ef), dZ, Ep / l + 2.0 * u * (dZ.abs() + Ep / l) + self.eta

    def B_start(self, w: Any, Ew: Any, loss: str = "squared") -> tuple[Any, Any]:
        """``(1/l) B^i w_i`` per row of ``w`` ``(l, n_L)`` (``w = J v``) and its bound: where ``G v``'s backward starts.

        ``(2/l) w`` for the squared loss; ``(1/l)(p ⊙ w - p (p^T w))`` for cross-entropy,
        with ``E = (1/l)(E_pw + E_p (|p^T w| + E_s) + p E_s + gamma_{n_L + 3} (p' w' + p' (p'^T w')))``,
        ``E_pw = E_p w' + p E_w`` (the error of ``p ⊙ w``), ``E_s = 1^T E_pw`` (of ``p^T w``) and
        ``p' = p + E_p``, ``w' = |w| + E_w`` bounding the model's operands.

        Examples
        --------
        >>> import torch
        >>> from sparsecnn import FullLayer, Network
        >>> w, b = torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
        >>> x = torch.tensor([[[[0.0]]]], dtype=torch.float64)
        >>> eb = ErrorBounds(Network((1, 1, 1), [FullLayer(2)]), [w], [b], x, {}, u=1e-8)
        >>> s, E = eb.B_start(torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.zeros(1, 2), "cross-entropy")
        >>> s.tolist()                                                    # (diag(p) - p p^T) e_1, p = (1/2, 1/2)
        [[0.25, -0.25]]
        """
        u, l = self.u, self.l
        if loss != "cross-entropy":
            start = (2.0 / l) * w
            return start, (2.0 / l) * Ew + 2.0 * u * (start.abs() + (2.0 / l) * Ew) + self.eta
        p, Ep = self.softmax()
        pw = (p * w).sum(dim=1, keepdim=True)
        start = (p * w - p * pw) / l
        wu, pu = w.abs() + Ew, p + Ep                      # bound the model's |w| and p
        Epw = Ep * wu + p * Ew                             # |p_m w_m - p w|, entrywise
        Es = Epw.sum(dim=1, keepdim=True)                  # ... of p^T w
        E = (Epw + Ep * (pw.abs() + Es) + p * Es
             + gamma(w.shape[1] + 3, u) * (pu * wu + pu * (pu * wu).sum(dim=1, keepdim=True))) / l
        return start, E + u * (start.abs() + E) + (w.shape[1] + 3) * self.eta

    def backward(self, dZ: Any, EdZ: Any) -> list[tuple[Any, Any, Any, Any]]:
        """``(dW, E_dW, db, E_db)`` per layer (PyTorch layout) of ``J^T dZ``, with bounds, from ``dZ`` ``(l, n_L)``.

        Parameters
        ----------
        dZ, EdZ : torch.Tensor, shape ``(l, n_L)``
            The vector the backward pass starts from, and its error bound.

        Returns
        -------
        list of tuple
            Per layer ``m = 1..L``: ``dxi/dW^m`` and its bound (PyTorch's weight shape),
            ``dxi/db^m`` and its bound.

        Examples
        --------
        ``dW = dZ^T z`` is a sum of ``l = 1`` product: ``u |dZ| |z|`` for the product ``dS = dZ sigma'(s)``
        before it, and ``gamma_1 (1 + u) |dZ| |z|`` for rounding the model's ``dS`` (within ``u |dZ|`` of
        ``dZ``) times ``z``:

        >>> import torch
        >>> from sparsecnn import FullLayer, Network
        >>> w, b = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        >>> x = torch.tensor([[[[3.0]], [[2.0]]]], dtype=torch.float64)
        >>> eb = ErrorBounds(Network((1, 1, 2), [FullLayer(1)]), [w], [b], x, {}, u=1e-3)
        >>> ((dW, EdW, db, Edb),) = eb.backward(torch.ones(1, 1, dtype=torch.float64),
        ...                                     torch.zeros(1, 1, dtype=torch.float64))
        >>> dW.tolist(), bool(torch.allclose(EdW, (gamma(1, 1e-3) * (1 + 1e-3) + 1e-3) * dW))
        ([[3.0, 2.0]], True)
        """
        torch = self._torch()
        grad = torch.nn.grad
        u = self.u
        out: list[tuple[Any, Any, Any, Any]] = [None] * self.net.L  # type: ignore[list-item]
        G, EG = dZ, EdZ
        for ly in reversed(self.net.layers):
            m = ly.m
            k = self.kept[m - 1]
            W = self.W[m - 1]
            Z, EZ = k["Z"], k["EZ"]
            if m > self.net.LC:
                if G.ndim != 2:
                    G, EG = G.reshape(G.shape[0], -1), EG.reshape(EG.shape[0], -1)
                dS, EdS = self._times_d(G, EG, k)
                g = gamma(self.l, u)
                dW = dS.T @ Z
                dSabs = dS.abs()
                dSup = dSabs + EdS                           # bounds the model's |dS|
                EdW = (g * dSup + EdS).T @ k["Zabs"] + dSabs.T @ EZ + self.l * self.eta
                db = dS.sum(0)
                Edb = g * dSup.sum(0) + EdS.sum(0) + self.l * self.eta
                gz = gamma(W.shape[0], u)
                G, EG = dS @ W, (gz * dSup + EdS) @ self.Wabs[m - 1] + W.shape[0] * self.eta
                if m == self.net.LC + 1 and self.net.LC:
                    shape = self.Z[m - 1][0].shape
                    G, EG = G.reshape(shape), EG.reshape(shape)
            else:
                sp: Any = ly.spec
                if G.ndim != 4:
                    shape = self.Z[m][0].shape
                    G, EG = G.reshape(shape), EG.reshape(shape)
                dA, EdA = self._unpool(m, ly, G, EG, k["S"].shape)
                dS, EdS = self._times_d(dA, EdA, k)
                K = self.l * dS.shape[2] * dS.shape[3]
                g = gamma(K, u)
                dW = grad.conv2d_weight(Z, W.shape, dS, sp.s, sp.p)
                dSabs = dS.abs()
                dSup = dSabs + EdS                           # bounds the model's |dS|
                EdW = grad.conv2d_weight(k["Zabs"], W.shape, g * dSup + EdS, sp.s, sp.p) \
                    + grad.conv2d_weight(EZ, W.shape, dSabs, sp.s, sp.p) + K * self.eta
                db = dS.sum((0, 2, 3))
                Edb = g * dSup.sum((0, 2, 3)) + EdS.sum((0, 2, 3)) + K * self.eta
                if m > 1:
                    gz = gamma(sp.h * sp.h * W.shape[0], u)
                    G = grad.conv2d_input(Z.shape, W, dS, sp.s, sp.p)
                    EG = grad.conv2d_input(Z.shape, self.Wabs[m - 1], gz * dSup + EdS, sp.s, sp.p) \
                        + sp.h * sp.h * W.shape[0] * self.eta
            out[m - 1] = (dW, EdW, db, Edb)
        return out

    def R_forward(self, V: list[Any], Vb: list[Any], only: int | None = None) -> tuple[Any, Any]:
        """``J v`` (``(l, n_L)``) with its bound, ``v`` given per layer as PyTorch-layout tensors.

        With ``only = m``, ``v`` is taken to be zero outside layer ``m`` (``J v^[m]``): the
        layers before ``m`` are skipped and the later ones add no ``V`` term.

        Parameters
        ----------
        V, Vb : list of torch.Tensor
            ``v``'s part for each ``W^m`` (PyTorch's weight shape) and ``b^m``.
        only : int, optional

        Returns
        -------
        Jv, EJv : torch.Tensor, shape ``(l, n_L)``

        Examples
        --------
        ``J v = V z`` for ``V = [1, 0]``: bound ``E = gamma_3 |V| |z|`` plus ``u (|J v| + E)`` for the product with ``sigma'``:

        >>> import torch
        >>> from sparsecnn import FullLayer, Network
        >>> w, b = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        >>> x = torch.tensor([[[[3.0]], [[2.0]]]], dtype=torch.float64)
        >>> eb = ErrorBounds(Network((1, 1, 2), [FullLayer(1)]), [w], [b], x, {}, u=1e-3)
        >>> Jv, EJv = eb.R_forward([torch.tensor([[1.0, 0.0]], dtype=torch.float64)],
        ...                        [torch.zeros(1, dtype=torch.float64)])
        >>> E = gamma(3, 1e-3) * 3
        >>> float(Jv[0, 0]), bool(abs(float(EJv[0, 0]) - (E + 1e-3 * (3 + E))) < 1e-15)
        (3.0, True)
        """
        torch = self._torch()
        F = torch.nn.functional
        u = self.u
        RZ: Any = None
        ERZ: Any = None
        for ly in self.net.layers:
            m = ly.m
            if only is not None and m < only:
                continue
            with_v = only is None or m == only
            k = self.kept[m - 1]
            W, VW, vb = self.W[m - 1], V[m - 1], Vb[m - 1]
            Z, EZ = k["Z"], k["EZ"]
            RS: Any = None
            ERS: Any = None
            if m <= self.net.LC:
                sp: Any = ly.spec
                K = sp.h * sp.h * Z.shape[1] + 1
                g = gamma(K, u)
                if with_v:
                    RS = F.conv2d(Z, VW, vb, sp.s, sp.p)
                    ERS = F.conv2d(g * k["Zabs"] + EZ, VW.abs(), None, sp.s, sp.p) \
                        + g * vb.abs()[None, :, None, None] + K * self.eta
                if RZ is not None:
                    t = F.conv2d(RZ, W, None, sp.s, sp.p)
                    et = F.conv2d(g * (RZ.abs() + ERZ) + ERZ, self.Wabs[m - 1], None, sp.s, sp.p) + K * self.eta
                    RS, ERS = (t, et) if RS is None else (RS + t, ERS + et)
            else:
                if RZ is not None and ERZ is not None and RZ.ndim == 4:
                    RZ, ERZ = RZ.reshape(RZ.shape[0], -1), ERZ.reshape(ERZ.shape[0], -1)
                K = Z.shape[1] + 1
                g = gamma(K, u)
                if with_v:
                    RS = Z @ VW.T + vb
                    ERS = (g * k["Zabs"] + EZ) @ VW.abs().T + g * vb.abs() + K * self.eta
                if RZ is not None:
                    t = RZ @ W.T
                    et = (g * (RZ.abs() + ERZ) + ERZ) @ self.Wabs[m - 1].T + K * self.eta
                    RS, ERS = (t, et) if RS is None else (RS + t, ERS + et)
            RA, ERA = self._times_d(RS, ERS, k)
            RZ, ERZ = self._pool(m, ly, RA, ERA) if m <= self.net.LC else (RA, ERA)
        assert RZ is not None and ERZ is not None
        return RZ, ERZ
