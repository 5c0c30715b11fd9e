r"""The slides' equations, one function each, as literal ``scipy.sparse`` products.

Every function here is the formula of the slides written out with the
operators of :mod:`sparsecnn.operators` (``P_pad``, ``P_phi``, ``P_pool``) and
plain matrix products; nothing is fused, blocked or threaded.  They are what the
reference backend (:class:`sparsecnn.engine.ReferenceBackend`) calls, and what
the fast backend (:mod:`sparsecnn.kernels`) computes in a fused form.

Batches: every vector is given with one column per instance (``vec(Z^{m,i})``
in column ``i``, as ``X`` holds the data).  Gradients with respect to
``W^m`` and ``b^m`` are summed over the columns (the backward pass adds the
instances up).  A data-dependent ``P_pool`` for a batch is the matrix that
acts on ``V.ravel()`` for the batch matrix ``V`` (``layout="instances-last"``
in :func:`sparsecnn.operators.P_pool`); for one instance (1-D vectors) it is the
slides' ``P_pool^{m,i}`` itself.  Average pooling's ``P_pool`` is the same for
every instance and acts column by column.

- :func:`eq1`: (1) :math:`\partial \xi_i / \partial \mathrm{vec}(W^m)^T = \mathrm{vec}(\partial \xi_i / \partial s^{m,i} (z^{m,i})^T)^T`
- :func:`eq2`: (2) :math:`\partial \xi_i / \partial (b^m)^T = \partial \xi_i / \partial (s^{m,i})^T`
- :func:`eq3`: (3) :math:`\partial \xi_i / \partial (z^{m,i})^T = ((W^m)^T \partial \xi_i / \partial s^{m,i})^T`
- :func:`eq4`: (4) :math:`\partial \xi_i / \partial (s^{m,i})^T = \partial \xi_i / \partial (z^{m+1,i})^T \odot I[s^{m,i}]^T`
- :func:`eq5`: (5) :math:`\partial \xi_i / \partial \mathrm{vec}(S^{m,i})^T = (\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T P_{\mathrm{pool}}^{m,i}) \odot \mathrm{vec}(I[S^{m,i}])^T`
- :func:`eq6`: (6) :math:`\partial \xi_i / \partial \mathrm{vec}(S^{m,i})^T = (\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T \odot \mathrm{vec}(I[Z^{m+1,i}])^T) P_{\mathrm{pool}}^{m,i}`
- :func:`eq7`: (7) :math:`\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T \, P_{\mathrm{pool}}^{m,i}`
- :func:`conv_phi`: :math:`\mathrm{vec}(\phi(\mathrm{pad}(Z^{m,i}))) = P_\phi P_{\mathrm{pad}} \mathrm{vec}(Z^{m,i})`
- :func:`conv_S`: :math:`S^{m,i} = W^m \phi(\mathrm{pad}(Z^{m,i})) + b^m \mathbb{1}^T_{a_{conv} b_{conv}}`
- :func:`pool_Z`: :math:`\mathrm{vec}(Z^{m+1,i}) = P_{\mathrm{pool}}^{m,i} \mathrm{vec}(\sigma(S^{m,i}))`
- :func:`conv_dW`: :math:`\partial \xi_i / \partial W^m = \partial \xi_i / \partial S^{m,i} \, \phi(\mathrm{pad}(Z^{m,i}))^T`
- :func:`conv_db`: :math:`\partial \xi_i / \partial b^m = \partial \xi_i / \partial S^{m,i} \mathbb{1}_{a_{conv} b_{conv}}`
- :func:`conv_dZ`: :math:`\mathrm{vec}(\partial \xi_i / \partial Z^{m,i}) = P_{\mathrm{pad}}^T P_\phi^T \mathrm{vec}((W^m)^T \partial \xi_i / \partial S^{m,i})`

Examples
--------
The slides' max-pooling example ("Notes on RELU Activation + Max Pooling VI-X"):
the 4 x 4 image, its ``P_pool``, and ``v = [1, 2, 3, 4]``; equations (5), (6)
and (7) give the same vector.

>>> import numpy as np
>>> from sparsecnn.operators import P_pool
>>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
>>> vec_S = image.reshape(-1, order="F")
>>> P = P_pool(4, 4, 1, 2, data=vec_S)
>>> v = np.array([1., 2., 3., 4.])
>>> eq7(v, P)
array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
>>> bool(np.array_equal(eq5(v, P, vec_S), eq7(v, P)) and np.array_equal(eq6(v, P, P @ vec_S), eq7(v, P)))
True
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .activations import get_activation

__all__ = [
    "eq1", "eq2", "eq3", "eq4", "eq5", "eq6", "eq7",
    "conv_phi", "conv_S", "pool_Z", "conv_dW", "conv_db", "conv_dZ",
]


def _times(P: sp.sparray | sp.spmatrix, V: np.ndarray) -> np.ndarray:
    """``P V`` for one instance (1-D ``V``), for a batch with a shared ``P`` (column by column),
    or for a batch with a per-instance ``P`` acting on ``V.ravel()`` (instances last)."""
    if V.ndim == 1 or P.shape[1] == V.shape[0]:
        return np.asarray(P @ V)
    return np.asarray(P @ V.ravel()).reshape(-1, V.shape[1])


def _T_times(v: np.ndarray, P: sp.sparray | sp.spmatrix) -> np.ndarray:
    """``v^T P`` as a column: ``v @ P`` for one instance, per column of a batch otherwise."""
    if v.ndim == 1:
        return np.asarray(v @ P)
    if P.shape[0] == v.shape[0]:
        return np.asarray(v.T @ P).T
    return np.asarray(v.ravel() @ P).reshape(-1, v.shape[1])


# ----------------------------------------------------------- full layers (1)-(4)
def eq1(dxi_ds: np.ndarray, z: np.ndarray) -> np.ndarray:
    r"""Equation (1): :math:`\partial \xi_i / \partial \mathrm{vec}(W^m)^T = \mathrm{vec}(\partial \xi_i / \partial s^{m,i} (z^{m,i})^T)^T`.

    Parameters
    ----------
    dxi_ds : ndarray, shape ``(n_{m+1}, l)``
        ``dxi_i/ds^{m,i}`` in column ``i``.
    z : ndarray, shape ``(n_m, l)``
        ``z^{m,i}`` in column ``i``.

    Returns
    -------
    ndarray, shape ``(n_{m+1}, n_m)``
        ``sum_i dxi_i/ds^{m,i} (z^{m,i})^T`` (the matrix whose ``vec`` is the gradient).

    Examples
    --------
    >>> eq1(np.array([[1.], [2.]]), np.array([[3.], [4.], [5.]]))
    array([[ 3.,  4.,  5.],
           [ 6.,  8., 10.]])
    """
    return dxi_ds @ z.T


def eq2(dxi_ds: np.ndarray) -> np.ndarray:
    r"""Equation (2): :math:`\partial \xi_i / \partial (b^m)^T = \partial \xi_i / \partial (s^{m,i})^T`, summed over ``i``.

    Parameters
    ----------
    dxi_ds : ndarray, shape ``(n_{m+1}, l)``

    Returns
    -------
    ndarray, shape ``(n_{m+1},)``: the row sums.

    Examples
    --------
    >>> eq2(np.array([[1., 2.], [3., 4.]]))
    array([3., 7.])
    """
    return dxi_ds.sum(axis=1)


def eq3(W: np.ndarray, dxi_ds: np.ndarray) -> np.ndarray:
    r"""Equation (3): :math:`\partial \xi_i / \partial (z^{m,i})^T = ((W^m)^T \partial \xi_i / \partial s^{m,i})^T`.

    Parameters
    ----------
    W : ndarray, shape ``(n_{m+1}, n_m)``
    dxi_ds : ndarray, shape ``(n_{m+1}, l)``

    Returns
    -------
    ndarray, shape ``(n_m, l)``: ``(W^m)^T dxi/ds^{m,i}`` in column ``i``.

    Examples
    --------
    >>> eq3(np.array([[1., 2.], [3., 4.]]), np.array([[1.], [1.]]))
    array([[4.],
           [6.]])
    """
    return W.T @ dxi_ds


def eq4(dxi_dz: np.ndarray, s: np.ndarray, activation: str = "relu") -> np.ndarray:
    r"""Equation (4): :math:`\partial \xi_i / \partial (s^{m,i})^T = \partial \xi_i / \partial (z^{m+1,i})^T \odot I[s^{m,i}]^T`.

    ``I[s]`` is ``sigma'(s)`` of ReLU; other activations use their own ``sigma'``.

    Parameters
    ----------
    dxi_dz : ndarray, shape ``(n_{m+1}, l)``
        ``dxi/dz^{m+1,i}`` in column ``i``.
    s : ndarray, shape ``(n_{m+1}, l)``
        ``s^{m,i}`` in column ``i``.
    activation : str, default "relu"

    Examples
    --------
    >>> eq4(np.array([1., 2., 3.]), np.array([-1., 0., 5.]))
    array([0., 0., 3.])
    """
    return dxi_dz * get_activation(activation).dsigma(s)


# ---------------------------------------------------------- pooling (5)-(7)
def eq7(v: np.ndarray, P_pool: sp.sparray | sp.spmatrix) -> np.ndarray:
    r"""Equation (7): :math:`\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T \, P_{\mathrm{pool}}^{m,i}`.

    The reverse mapping of pooling: a large zero vector with the entries of
    ``v`` put at the positions max pooling selected.  Returned as a column
    (the transpose of the slides' row vector).

    Parameters
    ----------
    v : ndarray, shape ``(d^{m+1} a^{m+1} b^{m+1},)`` or ``(d^{m+1} a^{m+1} b^{m+1}, l)``
        ``vec(dxi/dZ^{m+1,i})``.
    P_pool : sparse, shape ``(d^{m+1} a^{m+1} b^{m+1}, d^{m+1} a_conv b_conv)``
        Or, for a batch with per-instance winners, the instances-last matrix
        of shape ``(d^{m+1} a^{m+1} b^{m+1} l, d^{m+1} a_conv b_conv l)``.

    Returns
    -------
    ndarray, shape ``(d^{m+1} a_conv b_conv,)`` or ``(d^{m+1} a_conv b_conv, l)``

    Examples
    --------
    >>> from sparsecnn.operators import P_pool
    >>> P = P_pool(4, 4, 1, 2, winners=np.array([5, 7, 13, 14]))   # the slides' 4 x 4 example
    >>> eq7(np.array([1., 2., 3., 4.]), P)
    array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
    """
    return _T_times(v, P_pool)


def eq5(v: np.ndarray, P_pool: sp.sparray | sp.spmatrix, vec_S: np.ndarray,
        activation: str = "relu") -> np.ndarray:
    r"""Equation (5): :math:`\partial \xi_i / \partial \mathrm{vec}(S^{m,i})^T = (\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T P_{\mathrm{pool}}^{m,i}) \odot \mathrm{vec}(I[S^{m,i}])^T`.

    Parameters
    ----------
    v : ndarray
        ``vec(dxi/dZ^{m+1,i})`` (see :func:`eq7`).
    P_pool : sparse
        As for :func:`eq7`.
    vec_S : ndarray, shape ``(d^{m+1} a_conv b_conv,)`` or ``(..., l)``
        ``vec(S^{m,i})``.
    activation : str, default "relu"
        ``I[S]`` is ReLU's ``sigma'(S)``; another activation uses its ``sigma'``.

    Examples
    --------
    >>> from sparsecnn.operators import P_pool
    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> vec_S = image.reshape(-1, order="F")
    >>> eq5(np.array([1., 2., 3., 4.]), P_pool(4, 4, 1, 2, data=vec_S), vec_S)
    array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
    """
    return eq7(v, P_pool) * get_activation(activation).dsigma(vec_S)


def eq6(v: np.ndarray, P_pool: sp.sparray | sp.spmatrix, vec_Z_next: np.ndarray,
        activation: str = "relu") -> np.ndarray:
    r"""Equation (6): :math:`\partial \xi_i / \partial \mathrm{vec}(S^{m,i})^T = (\partial \xi_i / \partial \mathrm{vec}(Z^{m+1,i})^T \odot \mathrm{vec}(I[Z^{m+1,i}])^T) P_{\mathrm{pool}}^{m,i}`.

    Needs ``Z^{m+1}`` only, not ``S^m``: ``sigma'`` is read from the pooled
    output (for ReLU ``I[Z^{m+1}]``; for tanh, sigmoid, leaky ReLU and the
    identity their ``sigma'`` as a function of ``sigma``).

    Parameters
    ----------
    v : ndarray
        ``vec(dxi/dZ^{m+1,i})`` (see :func:`eq7`).
    P_pool : sparse
        As for :func:`eq7`.
    vec_Z_next : ndarray, the shape of ``v``
        ``vec(Z^{m+1,i})``.
    activation : str, default "relu"

    Examples
    --------
    >>> from sparsecnn.operators import P_pool
    >>> P = P_pool(4, 4, 1, 2, winners=np.array([5, 7, 13, 14]))
    >>> eq6(np.array([1., 2., 3., 4.]), P, np.array([5., 4., 9., 6.]))
    array([0., 0., 0., 0., 0., 1., 0., 2., 0., 0., 0., 0., 0., 3., 4., 0.])
    """
    return eq7(get_activation(activation).backprop_from_output(v, vec_Z_next), P_pool)


# ------------------------------------------------------------ conv layers
def conv_phi(Z: np.ndarray, P_phi: sp.sparray | sp.spmatrix,
             P_pad: sp.sparray | sp.spmatrix | None = None) -> np.ndarray:
    r""":math:`\mathrm{vec}(\phi(\mathrm{pad}(Z^{m,i}))) = P_\phi P_{\mathrm{pad}} \mathrm{vec}(Z^{m,i})`.

    Parameters
    ----------
    Z : ndarray, shape ``(d a b, l)`` or ``(d a b,)``
    P_phi : sparse, shape ``(h h d a_conv b_conv, d a_pad b_pad)``
    P_pad : sparse, shape ``(d a_pad b_pad, d a b)``, or None for ``p = 0``

    Returns
    -------
    ndarray, shape ``(h h d a_conv b_conv, l)``

    Examples
    --------
    >>> from sparsecnn.operators import P_pad, P_phi
    >>> Z = np.arange(4.0)                                 # a 2 x 2 image, vec order
    >>> conv_phi(Z, P_phi(4, 4, 1, 3), P_pad(2, 2, 1, 1))[:9].reshape(3, 3, order="F")
    array([[0., 0., 0.],
           [0., 0., 2.],
           [0., 1., 3.]])
    """
    padded = Z if P_pad is None else P_pad @ Z
    return np.asarray(P_phi @ padded)


def _mat(V: np.ndarray, rows: int) -> np.ndarray:
    """``mat`` of every column of ``V``: a stack of shape ``(l, rows, cols)`` (column-major, as ``vec``)."""
    l = V.shape[1]
    return V.T.reshape(l, -1, rows).transpose(0, 2, 1)


def _vec(M: np.ndarray) -> np.ndarray:
    """``vec`` of every matrix of a stack ``(l, rows, cols)``: one column per instance."""
    return M.transpose(0, 2, 1).reshape(M.shape[0], -1).T


def conv_S(W: np.ndarray, phi: np.ndarray, b: np.ndarray) -> np.ndarray:
    r""":math:`S^{m,i} = W^m \phi(\mathrm{pad}(Z^{m,i})) + b^m \mathbb{1}^T_{a_{conv} b_{conv}}`, as ``vec(S^{m,i})``.

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    phi : ndarray, shape ``(h h d^m a_conv b_conv, l)``
        ``vec(phi(pad(Z^{m,i})))`` in column ``i`` (:func:`conv_phi`).
    b : ndarray, shape ``(d^{m+1},)``

    Returns
    -------
    ndarray, shape ``(d^{m+1} a_conv b_conv, l)``: ``vec(S^{m,i})`` in column ``i``.

    Examples
    --------
    >>> phi = np.array([[1.], [2.], [3.], [4.]])             # h h d = 2, a_conv b_conv = 2
    >>> conv_S(np.array([[1., 1.]]), phi, np.array([10.])).ravel()   # mat(phi) = [[1, 3], [2, 4]]
    array([13., 17.])
    """
    phi_i = _mat(phi, W.shape[1])                                      # mat(vec(phi)): h h d x a_conv b_conv
    ones = np.ones((1, phi_i.shape[2]), dtype=phi.dtype)
    return _vec(W @ phi_i + b.reshape(-1, 1) @ ones)                   # vec(W phi + b 1^T)


def pool_Z(P_pool: sp.sparray | sp.spmatrix | None, vec_S: np.ndarray,
           activation: str = "relu") -> np.ndarray:
    r""":math:`\mathrm{vec}(Z^{m+1,i}) = P_{\mathrm{pool}}^{m,i} \mathrm{vec}(\sigma(S^{m,i}))`.

    Parameters
    ----------
    P_pool : sparse or None
        As for :func:`eq7`; ``None`` means no pooling (``r = 1``, ``P_pool = I``).
    vec_S : ndarray, shape ``(d^{m+1} a_conv b_conv, l)`` or ``(d^{m+1} a_conv b_conv,)``
    activation : str, default "relu"

    Examples
    --------
    >>> from sparsecnn.operators import P_pool
    >>> image = np.array([[3, 2, 3, 6], [4, 5, 4, 9], [2, 1, 2, 6], [3, 4, 3, 2.]])
    >>> vec_S = image.reshape(-1, order="F")
    >>> pool_Z(P_pool(4, 4, 1, 2, data=vec_S), vec_S)        # vec([[5, 9], [4, 6]])
    array([5., 4., 9., 6.])
    """
    A = get_activation(activation).sigma(vec_S)                        # sigma(S)
    return A if P_pool is None else _times(P_pool, A)


def conv_dW(dxi_dS: np.ndarray, phi: np.ndarray, d_out: int) -> np.ndarray:
    r""":math:`\partial \xi_i / \partial W^m = \partial \xi_i / \partial S^{m,i} \, \phi(\mathrm{pad}(Z^{m,i}))^T`, summed over ``i``.

    Parameters
    ----------
    dxi_dS : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
        ``vec(dxi/dS^{m,i})`` in column ``i``.
    phi : ndarray, shape ``(h h d^m a_conv b_conv, l)``
        ``vec(phi(pad(Z^{m,i})))`` in column ``i``.
    d_out : int
        ``d^{m+1}``, the rows of ``dxi/dS^{m,i}``.

    Returns
    -------
    ndarray, shape ``(d^{m+1}, h h d^m)``

    Examples
    --------
    >>> conv_dW(np.array([[1.], [1.]]), np.array([[1.], [2.], [3.], [4.]]), 1)   # [1 1] mat(phi)^T
    array([[4., 6.]])
    """
    dS_i = _mat(dxi_dS, d_out)                                         # d^{m+1} x a_conv b_conv
    phi_i = _mat(phi, phi.shape[0] // dS_i.shape[2])                   # h h d x a_conv b_conv
    return (dS_i @ phi_i.transpose(0, 2, 1)).sum(axis=0)              # sum_i dS_i phi_i^T


def conv_db(dxi_dS: np.ndarray, d_out: int) -> np.ndarray:
    r""":math:`\partial \xi_i / \partial b^m = \partial \xi_i / \partial S^{m,i} \mathbb{1}_{a_{conv} b_{conv}}`, summed over ``i``.

    Parameters
    ----------
    dxi_dS : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
    d_out : int
        ``d^{m+1}``, the rows of ``dxi/dS^{m,i}``.

    Returns
    -------
    ndarray, shape ``(d^{m+1},)``

    Examples
    --------
    >>> conv_db(np.array([[1.], [2.], [3.], [4.]]), 2)        # mat = [[1, 3], [2, 4]]
    array([4., 6.])
    """
    dS_i = _mat(dxi_dS, d_out)
    ones = np.ones(dS_i.shape[2], dtype=dxi_dS.dtype)
    return (dS_i @ ones).sum(axis=0)                                   # sum_i dS_i 1


def conv_dZ(W: np.ndarray, dxi_dS: np.ndarray, P_phi: sp.sparray | sp.spmatrix,
            P_pad: sp.sparray | sp.spmatrix | None = None) -> np.ndarray:
    r""":math:`\mathrm{vec}(\partial \xi_i / \partial Z^{m,i}) = P_{\mathrm{pad}}^T P_\phi^T \mathrm{vec}((W^m)^T \partial \xi_i / \partial S^{m,i})`.

    Parameters
    ----------
    W : ndarray, shape ``(d^{m+1}, h h d^m)``
    dxi_dS : ndarray, shape ``(d^{m+1} a_conv b_conv, l)``
    P_phi, P_pad : sparse
        The layer's operators (``P_pad`` is None for ``p = 0``).

    Returns
    -------
    ndarray, shape ``(d^m a^m b^m, l)``

    Examples
    --------
    The adjoint of ``Z -> W phi(pad(Z))``: ``<dS, conv_S(W, conv_phi(Z), 0)> = <conv_dZ(W, dS), Z>``.

    >>> from sparsecnn.operators import P_pad, P_phi
    >>> rng = np.random.default_rng(0)
    >>> Pf, Pp, W = P_phi(4, 4, 1, 3), P_pad(2, 2, 1, 1), rng.standard_normal((2, 9))
    >>> Z, dS = rng.standard_normal((4, 3)), rng.standard_normal((8, 3))
    >>> left = np.sum(dS * conv_S(W, conv_phi(Z, Pf, Pp), np.zeros(2)))
    >>> bool(np.isclose(left, np.sum(conv_dZ(W, dS, Pf, Pp) * Z)))
    True
    """
    dphi = _vec(W.T @ _mat(dxi_dS, W.shape[0]))                       # vec(W^T dS)
    dpad = np.asarray(P_phi.T @ dphi)                                  # P_phi^T
    return dpad if P_pad is None else np.asarray(P_pad.T @ dpad)       # P_pad^T
