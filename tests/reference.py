"""A dense, loop-based reference for the slides' operators, written without sparsecnn.

Everything here is explicit Python loops over channels and pixels, so that it
can be read against NOTATION.md line by line and compared entry by entry with
the sparse operators of the library.  Nothing in this module imports or calls
``sparsecnn``.

Conventions (NOTATION.md):

- an image with ``d`` channels, height ``a`` and width ``b`` is a matrix ``Z``
  of shape ``d x ab``; pixel ``(r, q)`` (image row ``r``, image column ``q``)
  is column ``r + a*q``;
- ``vec`` is column-major: entry ``(c, j)`` of ``Z`` is at ``c + d*j``;
- a column of ``phi(Z)`` holds channel ``c`` at filter row ``r``, filter column
  ``q`` in row ``r + h*q + h*h*c``; filter positions (columns of ``phi``) run
  ``j = r_out + a_conv*q_out``;
- max pooling with window and stride ``r``, ``a_out = floor(a / r)``; output
  entry ``o = c + d*(r_out + a_out*q_out)``; a tie goes to the first entry of
  the window in column-major order (rows fastest).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "vec_ref", "mat_ref", "conv_size_ref", "pool_size_ref",
    "pad_ref", "pad_T_ref", "phi_ref", "phi_T_ref",
    "maxpool_ref", "pool_T_ref", "conv_forward_ref",
    "P_pad_ref", "P_phi_ref", "P_pool_ref", "P_pool_blocks_ref",
]


# --------------------------------------------------------------------------- vec / mat
def vec_ref(Z: np.ndarray) -> np.ndarray:
    """``vec(Z)``: entry ``(c, j)`` of the ``d x n`` matrix ``Z`` goes to ``c + d*j``."""
    d, n = Z.shape
    v = np.zeros(d * n, dtype=np.float64)
    for j in range(n):
        for c in range(d):
            v[c + d * j] = Z[c, j]
    return v


def mat_ref(v: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`vec_ref`."""
    assert v.shape == (rows * cols,)
    Z = np.zeros((rows, cols), dtype=np.float64)
    for j in range(cols):
        for c in range(rows):
            Z[c, j] = v[c + rows * j]
    return Z


# --------------------------------------------------------------------------- sizes
def conv_size_ref(a: int, h: int, s: int) -> int:
    """Number of filter positions along a side: ``floor((a - h)/s) + 1``, counted by hand."""
    n = 0
    start = 0
    while start + h <= a:
        n += 1
        start += s
    return n


def pool_size_ref(a: int, r: int) -> int:
    """Number of whole pool windows along a side: ``floor(a / r)``, counted by hand."""
    n = 0
    while (n + 1) * r <= a:
        n += 1
    return n


# --------------------------------------------------------------------------- padding
def pad_ref(Z: np.ndarray, a: int, b: int, p: int) -> np.ndarray:
    """``pad(Z)``: ``p`` zeros on each side; returns ``d x a_pad b_pad``."""
    d = Z.shape[0]
    assert Z.shape == (d, a * b)
    a_pad, b_pad = a + 2 * p, b + 2 * p
    out = np.zeros((d, a_pad * b_pad), dtype=np.float64)
    for c in range(d):
        for q in range(b):
            for r in range(a):
                out[c, (r + p) + a_pad * (q + p)] = Z[c, r + a * q]
    return out


def pad_T_ref(G: np.ndarray, a: int, b: int, p: int) -> np.ndarray:
    """Adjoint of :func:`pad_ref`: drop the border of a ``d x a_pad b_pad`` matrix."""
    d = G.shape[0]
    a_pad, b_pad = a + 2 * p, b + 2 * p
    assert G.shape == (d, a_pad * b_pad)
    out = np.zeros((d, a * b), dtype=np.float64)
    for c in range(d):
        for q in range(b):
            for r in range(a):
                out[c, r + a * q] = G[c, (r + p) + a_pad * (q + p)]
    return out


# --------------------------------------------------------------------------- phi (im2col)
def phi_ref(Z: np.ndarray, a: int, b: int, h: int, s: int = 1) -> np.ndarray:
    """``phi(Z)`` of a ``d x ab`` image: shape ``h h d x a_conv b_conv``."""
    d = Z.shape[0]
    assert Z.shape == (d, a * b)
    a_conv, b_conv = conv_size_ref(a, h, s), conv_size_ref(b, h, s)
    out = np.zeros((h * h * d, a_conv * b_conv), dtype=np.float64)
    for q_out in range(b_conv):
        for r_out in range(a_conv):
            j = r_out + a_conv * q_out
            for c in range(d):
                for q in range(h):
                    for r in range(h):
                        pixel_row = r_out * s + r
                        pixel_col = q_out * s + q
                        out[r + h * q + h * h * c, j] = Z[c, pixel_row + a * pixel_col]
    return out


def phi_T_ref(G: np.ndarray, a: int, b: int, d: int, h: int, s: int = 1) -> np.ndarray:
    """Adjoint of :func:`phi_ref` (col2im): add every entry back to the pixel it came from."""
    a_conv, b_conv = conv_size_ref(a, h, s), conv_size_ref(b, h, s)
    assert G.shape == (h * h * d, a_conv * b_conv)
    out = np.zeros((d, a * b), dtype=np.float64)
    for q_out in range(b_conv):
        for r_out in range(a_conv):
            j = r_out + a_conv * q_out
            for c in range(d):
                for q in range(h):
                    for r in range(h):
                        pixel_row = r_out * s + r
                        pixel_col = q_out * s + q
                        out[c, pixel_row + a * pixel_col] += G[r + h * q + h * h * c, j]
    return out


# --------------------------------------------------------------------------- max pooling
def maxpool_ref(Z: np.ndarray, a: int, b: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling with ``r x r`` windows and stride ``r`` of a ``d x ab`` image.

    Returns
    -------
    pooled : ndarray, shape ``(d, a_out b_out)``
    winners : int64 ndarray, shape ``(d a_out b_out,)``
        ``winners[o]`` with ``o = c + d*(r_out + a_out*q_out)`` is the position
        in ``vec(Z)`` of the entry that won window ``o``.  The window is scanned
        in column-major order (rows fastest) and only a strictly larger value
        replaces the current winner, so a tie goes to the first entry in that order.
    """
    d = Z.shape[0]
    assert Z.shape == (d, a * b)
    a_out, b_out = pool_size_ref(a, r), pool_size_ref(b, r)
    pooled = np.zeros((d, a_out * b_out), dtype=np.float64)
    winners = np.zeros(d * a_out * b_out, dtype=np.int64)
    for q_out in range(b_out):
        for r_out in range(a_out):
            for c in range(d):
                best_value = None
                best_pos = -1
                for dq in range(r):          # window columns: slow
                    for dr in range(r):      # window rows: fast (column-major)
                        row, col = r_out * r + dr, q_out * r + dq
                        value = Z[c, row + a * col]
                        if best_value is None or value > best_value:
                            best_value = value
                            best_pos = c + d * (row + a * col)
                o = c + d * (r_out + a_out * q_out)
                pooled[c, r_out + a_out * q_out] = best_value
                winners[o] = best_pos
    return pooled, winners


def pool_T_ref(g: np.ndarray, winners: np.ndarray, n_in: int) -> np.ndarray:
    """Equation (7), the reverse mapping: a zero vector of length ``n_in`` with
    ``g[o]`` put at position ``winners[o]``."""
    out = np.zeros(n_in, dtype=np.float64)
    for o in range(len(winners)):
        out[winners[o]] += g[o]
    return out


# --------------------------------------------------------------------------- conv layer
def conv_forward_ref(Z: np.ndarray, a: int, b: int, W: np.ndarray, bias: np.ndarray,
                     h: int, s: int = 1, p: int = 0) -> np.ndarray:
    """``S = W phi(pad(Z)) + b 1^T`` by loops; ``W`` is ``d_out x h h d``.

    Returns ``S`` of shape ``d_out x a_conv b_conv`` (``a_conv`` from the padded height).
    """
    Phi = phi_ref(pad_ref(Z, a, b, p), a + 2 * p, b + 2 * p, h, s)
    d_out, hhd = W.shape
    assert hhd == Phi.shape[0]
    n_pos = Phi.shape[1]
    S = np.zeros((d_out, n_pos), dtype=np.float64)
    for o in range(d_out):
        for j in range(n_pos):
            total = 0.0
            for k in range(hhd):
                total += W[o, k] * Phi[k, j]
            S[o, j] = total + bias[o]
    return S


# --------------------------------------------------------------------------- dense matrices
def P_pad_ref(a: int, b: int, d: int, p: int) -> np.ndarray:
    """Dense ``P_pad``, shape ``(d a_pad b_pad, d a b)``, one 1 per column."""
    a_pad, b_pad = a + 2 * p, b + 2 * p
    P = np.zeros((d * a_pad * b_pad, d * a * b))
    for q in range(b):
        for r in range(a):
            for c in range(d):
                P[c + d * ((r + p) + a_pad * (q + p)), c + d * (r + a * q)] = 1.0
    return P


def P_phi_ref(a: int, b: int, d: int, h: int, s: int = 1) -> np.ndarray:
    """Dense ``P_phi``, shape ``(h h d a_conv b_conv, d a b)``, one 1 per row."""
    a_conv, b_conv = conv_size_ref(a, h, s), conv_size_ref(b, h, s)
    hhd = h * h * d
    P = np.zeros((hhd * a_conv * b_conv, d * a * b))
    for q_out in range(b_conv):
        for r_out in range(a_conv):
            j = r_out + a_conv * q_out
            for c in range(d):
                for q in range(h):
                    for r in range(h):
                        row = (r + h * q + h * h * c) + hhd * j
                        col = c + d * ((r_out * s + r) + a * (q_out * s + q))
                        P[row, col] = 1.0
    return P


def P_pool_ref(winners: np.ndarray, n_in: int) -> np.ndarray:
    """Dense ``P_pool`` of one instance: row ``o`` has its 1 in column ``winners[o]``."""
    P = np.zeros((len(winners), n_in))
    for o in range(len(winners)):
        P[o, winners[o]] = 1.0
    return P


def P_pool_blocks_ref(winners: np.ndarray, n_in: int) -> np.ndarray:
    """Dense ``diag(P_pool^1, ..., P_pool^l)`` for winners of shape ``(n_out, l)``."""
    n_out, l = winners.shape
    P = np.zeros((n_out * l, n_in * l))
    for i in range(l):
        for o in range(n_out):
            P[i * n_out + o, i * n_in + winners[o, i]] = 1.0
    return P
