"""The operator builders P_pad, P_phi, P_pool, organised by the slides' equations.

- ``vec(pad(Z)) = P_pad vec(Z)``                       (tests named ``test_pad_*``)
- ``vec(phi(pad(Z))) = P_phi vec(pad(Z))``            (``test_phi_*``)
- ``S = W phi(pad(Z)) + b 1^T``                        (``test_conv_S_*``)
- ``vec(Z^{m+1}) = P_pool vec(sigma(S))``             (``test_pool_*``)
- equation (7): ``P_pool^T`` is the reverse mapping    (``test_eq7_*``)
- equations (5) and (6) on the slides' example         (``test_slides_example_*``, ``test_eq5_eq6_*``)

Every builder is checked against the loop reference of ``tests/reference.py``
(applied to random vectors and, for small sizes, ``toarray()`` entry by entry)
and by a dot test ``<P x, y> = <x, P^T y>``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import (
    P_pad_ref,
    P_phi_ref,
    P_pool_blocks_ref,
    P_pool_ref,
    conv_forward_ref,
    conv_size_ref,
    mat_ref,
    maxpool_ref,
    pad_ref,
    pad_T_ref,
    phi_ref,
    phi_T_ref,
    pool_size_ref,
    pool_T_ref,
    vec_ref,
)

from sparsecnn import (
    ArchitectureError,
    InputTypeError,
    P_pad,
    P_phi,
    P_pool,
    ShapeError,
    mat,
    max_pool_winners,
    vec,
)

HYP = settings(max_examples=80, deadline=None)
DOT_RTOL = 1e-12

# The slides' image B ("Notes on RELU Activation + Max Pooling VI"), rows x columns.
B = np.array([[3, 2, 3, 6],
              [4, 5, 4, 9],
              [2, 1, 2, 6],
              [3, 4, 3, 2]], dtype=float)


# ============================================================================ helpers
def image_to_Z(images: np.ndarray) -> np.ndarray:
    """Stack ``images[c]`` (``a x b``, rows x columns) as ``Z`` (``d x ab``, pixel (r,q) in column r + a*q)."""
    d, a, b = images.shape
    Z = np.zeros((d, a * b))
    for c in range(d):
        for q in range(b):
            for r in range(a):
                Z[c, r + a * q] = images[c, r, q]
    return Z


def assert_dot_test(P: sp.csr_array, x: np.ndarray, y: np.ndarray) -> None:
    """``<P x, y> = <x, P^T y>`` to DOT_RTOL relative to the size of the terms."""
    Px = P @ x
    PTy = P.T @ y
    lhs, rhs = float(Px @ y), float(x @ PTy)
    scale = max(float(np.abs(Px) @ np.abs(y)), float(np.abs(x) @ np.abs(PTy)), np.finfo(float).tiny)
    assert abs(lhs - rhs) <= DOT_RTOL * scale, (lhs, rhs)
    assert Px.shape == (P.shape[0],) and PTy.shape == (P.shape[1],)


def assert_selection_rows(P: sp.csr_array) -> None:
    """0/1 entries and exactly one 1 in every row."""
    P = sp.csr_array(P)
    assert np.all(P.data == 1.0)
    np.testing.assert_array_equal(np.diff(P.indptr), np.ones(P.shape[0], dtype=int))
    np.testing.assert_array_equal(P.sum(axis=1), np.ones(P.shape[0]))


def assert_same_csr(P: sp.csr_array, Q: sp.csr_array) -> None:
    """Identical matrices, structure included."""
    assert P.shape == Q.shape
    np.testing.assert_array_equal(P.indptr, Q.indptr)
    np.testing.assert_array_equal(P.indices, Q.indices)
    np.testing.assert_array_equal(P.data, Q.data)


@st.composite
def conv_cases(draw):
    """An image ``a x b x d``, padding ``p``, filter ``h <= min(a_pad, b_pad)``, stride ``s``."""
    a = draw(st.integers(1, 8))
    b = draw(st.integers(1, 8))
    d = draw(st.integers(1, 3))
    p = draw(st.integers(0, 2))
    h = draw(st.integers(1, min(a + 2 * p, b + 2 * p, 5)))
    s = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    return a, b, d, p, h, s, seed


@st.composite
def pool_cases(draw):
    """An image ``a x b x d`` with ``l`` instances and a pool window ``r <= min(a, b)``."""
    a = draw(st.integers(1, 9))
    b = draw(st.integers(1, 9))
    d = draw(st.integers(1, 3))
    r = draw(st.integers(1, min(a, b, 4)))
    l = draw(st.integers(1, 3))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return a, b, d, r, l, ties, seed


def pool_data(a, b, d, l, ties, seed) -> np.ndarray:
    """Batch ``V`` of shape ``(d a b, l)``; with ``ties`` small integers so that windows tie often."""
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(-1, 2, size=(d * a * b, l)).astype(float)
    return rng.standard_normal((d * a * b, l))


# ============================================================================ P_pad
@HYP
@given(conv_cases())
def test_pad_shape_entries_and_reference(case):
    a, b, d, p, _, _, seed = case
    rng = np.random.default_rng(seed)
    a_pad, b_pad = a + 2 * p, b + 2 * p
    P = P_pad(a, b, d, p)
    assert isinstance(P, sp.csr_array)
    assert P.shape == (d * a_pad * b_pad, d * a * b)
    assert P.dtype == np.float64
    assert np.all(P.data == 1.0) and P.nnz == d * a * b
    np.testing.assert_array_equal(P.sum(axis=0), np.ones(d * a * b))          # one 1 per column
    assert P.sum(axis=1).max() == 1.0                                          # at most one per row
    Z = rng.standard_normal((d, a * b))
    np.testing.assert_array_equal(P @ vec(Z), vec_ref(pad_ref(Z, a, b, p)))
    G = rng.standard_normal((d, a_pad * b_pad))
    np.testing.assert_array_equal(P.T @ vec(G), vec_ref(pad_T_ref(G, a, b, p)))


@HYP
@given(conv_cases())
def test_pad_dot_test(case):
    a, b, d, p, _, _, seed = case
    rng = np.random.default_rng(seed)
    P = P_pad(a, b, d, p)
    assert_dot_test(P, rng.standard_normal(P.shape[1]), rng.standard_normal(P.shape[0]))


@pytest.mark.parametrize("a,b,d,p", [(1, 1, 1, 1), (2, 3, 1, 1), (3, 2, 2, 2), (4, 1, 3, 1), (2, 5, 2, 0)])
def test_pad_toarray_equals_reference(a, b, d, p):
    np.testing.assert_array_equal(P_pad(a, b, d, p).toarray(), P_pad_ref(a, b, d, p))


def test_pad_by_hand_docstring_example():
    np.testing.assert_array_equal(P_pad(1, 1, 1, 1).toarray().ravel(), [0, 0, 0, 0, 1, 0, 0, 0, 0])
    # 2x3 image, p = 1: pixel (0,0) of Z goes to pixel (1,1) of the 4x5 padded image: 1 + 4*1 = 5
    P = P_pad(2, 3, 1, 1)
    assert P.toarray()[:, 0].nonzero()[0].tolist() == [5]
    assert P.toarray()[:, 2 + 0].nonzero()[0].tolist() == [1 + 4 * 2]      # pixel (0,1) -> (1,2)


def test_pad_zero_padding_is_identity():
    P = P_pad(3, 5, 2, 0)
    np.testing.assert_array_equal(P.toarray(), np.eye(30))


# ============================================================================ P_phi
@HYP
@given(conv_cases())
def test_phi_shape_entries_and_reference(case):
    a, b, d, p, h, s, seed = case
    rng = np.random.default_rng(seed)
    a_pad, b_pad = a + 2 * p, b + 2 * p
    a_conv, b_conv = conv_size_ref(a_pad, h, s), conv_size_ref(b_pad, h, s)
    P = P_phi(a_pad, b_pad, d, h, s)
    assert isinstance(P, sp.csr_array)
    assert P.shape == (h * h * d * a_conv * b_conv, d * a_pad * b_pad)
    assert P.dtype == np.float64
    assert_selection_rows(P)
    Zpad = rng.standard_normal((d, a_pad * b_pad))
    Phi = phi_ref(Zpad, a_pad, b_pad, h, s)
    np.testing.assert_array_equal(P @ vec(Zpad), vec_ref(Phi))
    np.testing.assert_array_equal(mat(P @ vec(Zpad), h * h * d, a_conv * b_conv), Phi)
    G = rng.standard_normal(Phi.shape)
    np.testing.assert_allclose(P.T @ vec(G), vec_ref(phi_T_ref(G, a_pad, b_pad, d, h, s)),
                               rtol=1e-13, atol=1e-13)


@HYP
@given(conv_cases())
def test_phi_dot_test(case):
    a, b, d, p, h, s, seed = case
    rng = np.random.default_rng(seed)
    P = P_phi(a + 2 * p, b + 2 * p, d, h, s)
    assert_dot_test(P, rng.standard_normal(P.shape[1]), rng.standard_normal(P.shape[0]))


@HYP
@given(conv_cases(), st.integers(1, 3))
def test_phi_of_pad_batch_equals_reference_per_instance(case, l):
    a, b, d, p, h, s, seed = case
    rng = np.random.default_rng(seed)
    Zs = rng.standard_normal((l, d, a * b))
    V = np.stack([vec_ref(Z) for Z in Zs], axis=1)           # column i is vec(Z^i)
    out = P_phi(a + 2 * p, b + 2 * p, d, h, s) @ (P_pad(a, b, d, p) @ V)
    for i in range(l):
        expected = phi_ref(pad_ref(Zs[i], a, b, p), a + 2 * p, b + 2 * p, h, s)
        np.testing.assert_array_equal(out[:, i], vec_ref(expected))


@pytest.mark.parametrize("a,b,d,h,s", [
    (3, 3, 1, 2, 1),
    (3, 4, 1, 2, 2),     # rectangular, stride 2
    (4, 3, 2, 2, 1),
    (5, 4, 2, 3, 2),     # a - h = 2 divisible by 2, b - h = 1 not
    (7, 5, 1, 3, 3),     # (7-3) % 3 = 1, (5-3) % 3 = 2
    (6, 6, 2, 1, 4),     # h = 1, stride larger than h
    (4, 4, 3, 4, 1),     # filter as large as the image
    (2, 6, 1, 2, 3),
])
def test_phi_toarray_equals_reference(a, b, d, h, s):
    np.testing.assert_array_equal(P_phi(a, b, d, h, s).toarray(), P_phi_ref(a, b, d, h, s))


def test_phi_by_hand_3x3_image_h2():
    M = np.array([[1., 2., 3.],
                  [4., 5., 6.],
                  [7., 8., 9.]])
    # rows: filter (r,q) = (0,0), (1,0), (0,1), (1,1); columns: positions (0,0), (1,0), (0,1), (1,1)
    expected = np.array([[1., 4., 2., 5.],
                         [4., 7., 5., 8.],
                         [2., 5., 3., 6.],
                         [5., 8., 6., 9.]])
    Z = image_to_Z(M[None])
    np.testing.assert_array_equal(mat(P_phi(3, 3, 1, 2) @ vec(Z), 4, 4), expected)


def test_phi_by_hand_two_channels_and_rectangular_stride2():
    M = np.array([[1., 2., 3., 4.],
                  [5., 6., 7., 8.],
                  [9., 10., 11., 12.]])                   # a = 3, b = 4; h = 2, s = 2 -> 1 x 2 positions
    expected = np.array([[1., 3.],
                         [5., 7.],
                         [2., 4.],
                         [6., 8.],
                         [-1., -3.],
                         [-5., -7.],
                         [-2., -4.],
                         [-6., -8.]])                      # channel 1 = -channel 0, rows h*h*c + ...
    Z = image_to_Z(np.stack([M, -M]))
    np.testing.assert_array_equal(mat(P_phi(3, 4, 2, 2, 2) @ vec(Z), 8, 2), expected)


def test_phi_stride_not_dividing_leaves_last_pixels_unused():
    a, b, h, s = 7, 5, 3, 3                                # a_conv = 2 (rows 0..5), b_conv = 1 (cols 0..2)
    P = P_phi(a, b, 1, h, s)
    assert P.shape == (9 * 2 * 1, 35)
    used = np.asarray(P.sum(axis=0)).ravel() > 0
    for q in range(b):
        for r in range(a):
            assert used[r + a * q] == (r <= 5 and q <= 2), (r, q)


# ============================================================================ S = W phi(pad(Z)) + b 1^T
@HYP
@given(conv_cases(), st.integers(1, 3))
def test_conv_S_equals_loop_reference(case, d_out):
    a, b, d, p, h, s, seed = case
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((d, a * b))
    W = rng.standard_normal((d_out, h * h * d))
    bias = rng.standard_normal(d_out)
    a_conv, b_conv = conv_size_ref(a + 2 * p, h, s), conv_size_ref(b + 2 * p, h, s)
    Phi = mat(P_phi(a + 2 * p, b + 2 * p, d, h, s) @ (P_pad(a, b, d, p) @ vec(Z)), h * h * d, a_conv * b_conv)
    S = W @ Phi + bias[:, None] @ np.ones((1, a_conv * b_conv))
    np.testing.assert_allclose(S, conv_forward_ref(Z, a, b, W, bias, h, s, p), rtol=1e-12, atol=1e-12)


# ============================================================================ P_pool
@HYP
@given(pool_cases())
def test_pool_single_instance_shape_entries_and_reference(case):
    a, b, d, r, _, ties, seed = case
    v = pool_data(a, b, d, 1, ties, seed)[:, 0]
    a_out, b_out = pool_size_ref(a, r), pool_size_ref(b, r)
    pooled, winners = maxpool_ref(mat_ref(v, d, a * b), a, b, r)
    P = P_pool(a, b, d, r, data=v)
    assert isinstance(P, sp.csr_array)
    assert P.shape == (d * a_out * b_out, d * a * b)
    assert_selection_rows(P)
    np.testing.assert_array_equal(P.indices, winners)                          # includes the tie rule
    np.testing.assert_array_equal(max_pool_winners(v, a, b, d, r), winners)
    np.testing.assert_array_equal(P @ v, vec_ref(pooled))
    np.testing.assert_array_equal(P.toarray(), P_pool_ref(winners, d * a * b))
    g = np.random.default_rng(seed + 1).standard_normal(P.shape[0])
    np.testing.assert_array_equal(P.T @ g, pool_T_ref(g, winners, d * a * b))


@HYP
@given(pool_cases(), st.sampled_from(["blocks", "instances-last"]))
def test_pool_dot_test_both_layouts(case, layout):
    a, b, d, r, l, ties, seed = case
    V = pool_data(a, b, d, l, ties, seed)
    P = P_pool(a, b, d, r, data=V, layout=layout)
    rng = np.random.default_rng(seed + 2)
    assert_dot_test(P, rng.standard_normal(P.shape[1]), rng.standard_normal(P.shape[0]))


@HYP
@given(pool_cases())
def test_pool_blocks_layout_is_block_diagonal_of_instances(case):
    a, b, d, r, l, ties, seed = case
    V = pool_data(a, b, d, l, ties, seed)
    n_in = d * a * b
    P = P_pool(a, b, d, r, data=V, layout="blocks")
    n_out = d * pool_size_ref(a, r) * pool_size_ref(b, r)
    assert P.shape == (l * n_out, l * n_in)
    assert_selection_rows(P)
    blocks = sp.block_diag([P_pool(a, b, d, r, data=V[:, i]) for i in range(l)], format="csr")
    np.testing.assert_array_equal(P.toarray(), blocks.toarray())
    ref_winners = np.stack([maxpool_ref(mat_ref(V[:, i], d, n_in // d), a, b, r)[1] for i in range(l)], axis=1)
    np.testing.assert_array_equal(P.toarray(), P_pool_blocks_ref(ref_winners, n_in))
    # acts on [vec(S^1); ...; vec(S^l)] = V.ravel(order="F")
    pooled = (P @ V.ravel(order="F")).reshape(n_out, l, order="F")
    for i in range(l):
        np.testing.assert_array_equal(pooled[:, i], vec_ref(maxpool_ref(mat_ref(V[:, i], d, a * b), a, b, r)[0]))


@HYP
@given(pool_cases())
def test_pool_instances_last_is_blocks_up_to_row_and_column_permutation(case):
    a, b, d, r, l, ties, seed = case
    V = pool_data(a, b, d, l, ties, seed)
    n_in = d * a * b
    n_out = d * pool_size_ref(a, r) * pool_size_ref(b, r)
    Pb = P_pool(a, b, d, r, data=V, layout="blocks")
    Pi = P_pool(a, b, d, r, data=V, layout="instances-last")
    assert Pi.shape == Pb.shape
    assert_selection_rows(Pi)
    # blocks row i*n_out + o  <->  instances-last row o*l + i (likewise columns with n_in)
    row_of_block = np.array([o * l + i for i in range(l) for o in range(n_out)])
    col_of_block = np.array([w * l + i for i in range(l) for w in range(n_in)])
    np.testing.assert_array_equal(Pi.toarray()[np.ix_(row_of_block, col_of_block)], Pb.toarray())
    # and it acts on V.ravel() of the batch matrix, giving the pooled batch matrix
    pooled = (Pi @ V.ravel()).reshape(n_out, l)
    for i in range(l):
        np.testing.assert_array_equal(pooled[:, i], vec_ref(maxpool_ref(mat_ref(V[:, i], d, a * b), a, b, r)[0]))


@HYP
@given(pool_cases(), st.sampled_from(["blocks", "instances-last"]))
def test_pool_winners_from_outside_rebuild_the_identical_matrix(case, layout):
    a, b, d, r, l, ties, seed = case
    V = pool_data(a, b, d, l, ties, seed)
    from_data = P_pool(a, b, d, r, data=V, layout=layout)
    assert_same_csr(P_pool(a, b, d, r, winners=max_pool_winners(V, a, b, d, r), layout=layout), from_data)
    # winners computed elsewhere (the loop reference, int64) give the same matrix
    ref_winners = np.stack([maxpool_ref(mat_ref(V[:, i], d, a * b), a, b, r)[1] for i in range(l)], axis=1)
    assert_same_csr(P_pool(a, b, d, r, winners=ref_winners, layout=layout), from_data)
    # and a single instance from a 1-D winner vector
    single = P_pool(a, b, d, r, winners=ref_winners[:, 0].astype(np.uint16))
    assert_same_csr(single, P_pool(a, b, d, r, data=V[:, 0]))


def test_pool_winners_are_int32_positions_in_vec():
    v = vec(image_to_Z(B[None]))
    w = max_pool_winners(v, 4, 4, 1, 2)
    assert w.dtype == np.int32 and w.tolist() == [5, 7, 13, 14]
    W2 = max_pool_winners(np.stack([v, -v], axis=1), 4, 4, 1, 2)
    assert W2.shape == (4, 2) and W2[:, 0].tolist() == [5, 7, 13, 14]
    # -B: the largest is the smallest of B: 2 at (0,1) -> 4; 1 at (2,1) -> 6; 3 at (0,2) -> 8;
    # last window: 2 at (2,2) and (3,3) tie, column-major first is (2,2) -> 10 (not 15)
    assert W2[:, 1].tolist() == [4, 6, 8, 10]


def test_pool_floor_drops_partial_windows():
    a, b, d, r = 5, 7, 2, 2                                   # a_out = 2, b_out = 3
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((d, a * b))
    Z[:, [4 + a * q for q in range(b)]] = 100.0               # image row 4: outside every window
    Z[:, [r_ + a * 6 for r_ in range(a)]] = 100.0             # image column 6: outside every window
    P = P_pool(a, b, d, r, data=vec(Z))
    assert P.shape == (d * 2 * 3, d * a * b)
    assert np.all(P @ vec(Z) < 100.0)
    np.testing.assert_array_equal(P.toarray(), P_pool_ref(maxpool_ref(Z, a, b, r)[1], d * a * b))


def test_pool_r1_is_identity():
    v = np.random.default_rng(0).standard_normal(2 * 3 * 4)
    np.testing.assert_array_equal(P_pool(3, 4, 2, 1, data=v).toarray(), np.eye(24))


# ---------------------------------------------------------------------------- tie-breaking
def test_pool_tie_goes_to_first_in_column_major_not_row_major():
    # window [[1, 5], [5, 0]]: column-major first 5 is (1,0) -> vec 1; row-major first would be (0,1) -> vec 2
    M = np.array([[1., 5.], [5., 0.]])
    v = vec(image_to_Z(M[None]))
    assert max_pool_winners(v, 2, 2, 1, 2).tolist() == [1]
    assert P_pool(2, 2, 1, 2, data=v).toarray().tolist() == [[0., 1., 0., 0.]]


def test_pool_tie_rule_in_a_3x3_window_with_channels_and_offset_windows():
    # a = b = 6, r = 3, d = 2. Window (r_out=1, q_out=1) of channel 1 holds the max 7 at window
    # positions (2,0) and (0,1) (rows 5, 3; columns 3, 4) and (1,2); column-major first is (2,0).
    a = b = 6
    images = np.zeros((2, a, b))
    images[1, 5, 3] = 7.0          # window row 2, window column 0: column-major index 2
    images[1, 3, 4] = 7.0          # window row 0, window column 1: column-major index 3, row-major index 1
    images[1, 4, 5] = 7.0          # window row 1, window column 2
    Z = image_to_Z(images)
    w = max_pool_winners(vec(Z), a, b, 2, 3)
    d, a_out = 2, 2
    o = 1 + d * (1 + a_out * 1)
    assert w[o] == 1 + d * (5 + a * 3)
    # all-zero windows: the first entry of the window (its top-left pixel)
    assert w[0] == 0 + d * (0 + a * 0)
    assert w[0 + d * (1 + a_out * 1)] == 0 + d * (3 + a * 3)


def test_pool_all_equal_window_picks_top_left_in_every_window():
    a, b, d, r = 4, 6, 2, 2
    v = np.ones(d * a * b)
    w = max_pool_winners(v, a, b, d, r)
    a_out, b_out = 2, 3
    for q_out in range(b_out):
        for r_out in range(a_out):
            for c in range(d):
                assert w[c + d * (r_out + a_out * q_out)] == c + d * (r_out * r + a * (q_out * r))


# ---------------------------------------------------------------------------- invalid winners
def _good_winners():
    return max_pool_winners(vec(image_to_Z(B[None])), 4, 4, 1, 2)       # [5, 7, 13, 14]


def test_pool_winner_outside_its_window_names_the_window():
    w = _good_winners().copy()
    w[1] = 5                                     # the winner of window 0, not of window 1
    with pytest.raises(ShapeError, match=r"winner \[1, 0\] = 5 is not inside window 1 "
                                         r"\(channel 0, rows 2\.\.3, columns 0\.\.1\)"):
        P_pool(4, 4, 1, 2, winners=w)


@pytest.mark.parametrize("bad", [-1, 16, 1000])
def test_pool_winner_outside_the_image_is_rejected(bad):
    w = _good_winners().copy()
    w[3] = bad
    with pytest.raises(ShapeError, match=r"not inside window 3"):
        P_pool(4, 4, 1, 2, winners=w)


def test_pool_winner_in_the_wrong_channel_is_rejected():
    d = 2
    v = np.random.default_rng(1).standard_normal(d * 16)
    w = max_pool_winners(v, 4, 4, d, 2).copy()
    w[0] = w[1]                                  # window 0 is channel 0; w[1] is in channel 1
    with pytest.raises(ShapeError, match=r"not inside window 0 \(channel 0,"):
        P_pool(4, 4, d, 2, winners=w)


def test_pool_winner_wrong_in_second_instance_names_instance():
    w = np.stack([_good_winners(), _good_winners()], axis=1)
    w[2, 1] = 0
    with pytest.raises(ShapeError, match=r"winner \[2, 1\] = 0 is not inside window 2"):
        P_pool(4, 4, 1, 2, winners=w, layout="instances-last")


@pytest.mark.parametrize("w", [np.array([5, 7, 13]), np.array([5, 7, 13, 14, 0]), np.zeros((4, 1, 1), int)])
def test_pool_winners_wrong_shape(w):
    with pytest.raises(ShapeError, match=r"pooling winners must have d\*a_out\*b_out = 4 rows, got shape"):
        P_pool(4, 4, 1, 2, winners=w)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, bool])
def test_pool_winners_must_be_integers(dtype):
    with pytest.raises(InputTypeError, match=r"pooling winners must be integers, got dtype"):
        P_pool(4, 4, 1, 2, winners=_good_winners().astype(dtype))


def test_pool_needs_exactly_one_of_data_and_winners():
    with pytest.raises(InputTypeError, match="exactly one of data= or winners="):
        P_pool(4, 4, 1, 2)
    with pytest.raises(InputTypeError, match="exactly one of data= or winners="):
        P_pool(4, 4, 1, 2, data=np.zeros(16), winners=_good_winners())


def test_pool_unknown_layout_is_rejected():
    with pytest.raises(InputTypeError, match=r"layout must be one of .*'rows-first'"):
        P_pool(4, 4, 1, 2, data=np.zeros(16), layout="rows-first")


@pytest.mark.parametrize("data", [np.zeros(15), np.zeros((17, 2)), np.zeros((4, 4))])
def test_pool_data_of_wrong_size_is_rejected(data):
    with pytest.raises(ShapeError, match=r"d\*a\*b = 16 rows, got shape"):
        P_pool(4, 4, 1, 2, data=data)


# ============================================================================ argument checks
@pytest.mark.parametrize("call,name", [
    (lambda: P_pad(2.0, 3, 1, 1), "a"),
    (lambda: P_pad(2, True, 1, 1), "b"),
    (lambda: P_pad(2, 3, "1", 1), "d"),
    (lambda: P_pad(2, 3, 1, 0.5), "p"),
    (lambda: P_phi(4, 4, 1, 2.0), "h"),
    (lambda: P_phi(4, 4, 1, 2, 1.5), "s"),
    (lambda: P_pool(4, 4, 1, 2.0, data=np.zeros(16)), "r"),
    (lambda: P_pool(4, 4, 1.0, 2, winners=np.zeros(4, int)), "d"),
])
def test_builders_reject_non_integer_arguments(call, name):
    with pytest.raises(InputTypeError, match=rf"^{name} must be an integer, got"):
        call()


@pytest.mark.parametrize("call,message", [
    (lambda: P_pad(0, 3, 1, 1), "a must be >= 1, got 0"),
    (lambda: P_pad(3, -2, 1, 1), "b must be >= 1, got -2"),
    (lambda: P_pad(3, 3, 0, 1), "d must be >= 1, got 0"),
    (lambda: P_pad(3, 3, 1, -1), "p must be >= 0, got -1"),
    (lambda: P_phi(4, 4, 1, 0), "h must be >= 1, got 0"),
    (lambda: P_phi(4, 4, 1, 2, 0), "s must be >= 1, got 0"),
    (lambda: P_phi(4, 4, -1, 2), "d must be >= 1, got -1"),
    (lambda: P_pool(4, 4, 1, 0, data=np.zeros(16)), "r must be >= 1, got 0"),
    (lambda: P_pool(4, 4, 1, -2, winners=np.zeros(4, int)), "r must be >= 1, got -2"),
])
def test_builders_reject_negative_or_zero_arguments(call, message):
    with pytest.raises(ArchitectureError, match=f"^{message}$"):
        call()


@pytest.mark.parametrize("a,b,h", [(3, 4, 5), (4, 3, 4), (2, 9, 3)])
def test_phi_filter_larger_than_image_names_h_and_image_size(a, b, h):
    with pytest.raises(ArchitectureError, match=rf"h = {h} .* a x b = {a} x {b}"):
        P_phi(a, b, 1, h)


@pytest.mark.parametrize("a,b,r", [(3, 5, 4), (5, 3, 4), (2, 2, 3)])
def test_pool_window_larger_than_image_names_r_and_image_size(a, b, r):
    pattern = rf"pool window r = {r} .* a x b = {a} x {b}"
    with pytest.raises(ArchitectureError, match=pattern):
        P_pool(a, b, 1, r, data=np.zeros(a * b))
    with pytest.raises(ArchitectureError, match=pattern):
        P_pool(a, b, 1, r, winners=np.zeros(0, int))
    with pytest.raises(ArchitectureError, match=pattern):
        max_pool_winners(np.zeros(a * b), a, b, 1, r)


def test_error_classes_are_also_builtin_errors():
    with pytest.raises(ValueError):
        P_phi(3, 3, 1, 4)
    with pytest.raises(TypeError):
        P_pad(2.0, 2, 1, 1)


# ============================================================================ caching and read-only
def test_pad_and_phi_are_cached_by_arguments():
    assert P_pad(3, 4, 2, 1) is P_pad(3, 4, 2, 1)
    assert P_pad(np.int64(3), np.int32(4), 2, 1) is P_pad(3, 4, 2, 1)
    assert P_pad(3, 4, 2, 1) is not P_pad(4, 3, 2, 1)
    assert P_phi(5, 4, 2, 3, 2) is P_phi(5, 4, 2, 3, 2)
    assert P_phi(5, 4, 2, 3) is P_phi(5, 4, 2, 3, 1)
    assert P_phi(5, 4, 2, 3, 1) is not P_phi(5, 4, 2, 3, 2)


@pytest.mark.parametrize("build", [lambda: P_pad(3, 4, 2, 1), lambda: P_phi(5, 4, 2, 3, 2)])
def test_cached_operators_are_read_only(build):
    P = build()
    for arr in (P.data, P.indices, P.indptr):
        assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        P.data[0] = 2.0
    with pytest.raises(ValueError, match="read-only"):
        P.data[:] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        P.indices[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        P.indptr[-1] = 0
    # the next caller still gets a correct 0/1 matrix
    Q = build()
    assert Q is P and np.all(Q.data == 1.0)
    # products with the read-only operator and its transpose still work
    x = np.ones(P.shape[1])
    assert (P @ x).sum() == P.nnz
    assert (P.T @ np.ones(P.shape[0])).sum() == P.nnz


# ============================================================================ equation (7)
@HYP
@given(pool_cases())
def test_eq7_pool_transpose_is_reverse_mapping(case):
    """``dxi/dvec(Z^{m+1})^T P_pool``: a large zero vector with the values put at the winners."""
    a, b, d, r, _, ties, seed = case
    v = pool_data(a, b, d, 1, ties, seed)[:, 0]
    P = P_pool(a, b, d, r, data=v)
    winners = max_pool_winners(v, a, b, d, r)
    g = np.random.default_rng(seed + 3).uniform(1.0, 2.0, P.shape[0])     # nonzero everywhere
    row = g @ P                                                             # row vector times P_pool
    assert row.shape == (d * a * b,)
    np.testing.assert_array_equal(np.flatnonzero(row), np.sort(winners))
    np.testing.assert_array_equal(row[winners], g)
    np.testing.assert_array_equal(P.T @ g, row)


# ============================================================================ the slides' example
def _slides_pool():
    S = B                                            # S^{m,i} is the image itself
    s = vec(image_to_Z(S[None]))
    Zs = np.maximum(s, 0.0)                          # sigma = ReLU (S > 0, so sigma(S) = S)
    P = P_pool(4, 4, 1, 2, data=Zs)
    return s, Zs, P


def test_slides_example_B_pools_to_5_9_4_6():
    _, Zs, P = _slides_pool()
    Znext = P @ Zs
    np.testing.assert_array_equal(mat(Znext, 2, 2), [[5., 9.], [4., 6.]])   # d = 1: a_out x b_out = 2 x 2


def test_slides_example_P_pool_vec_image_is_5_4_9_6():
    _, Zs, P = _slides_pool()
    np.testing.assert_array_equal(P @ Zs, [5., 4., 9., 6.])


def test_slides_example_P_pool_matrix_written_out():
    _, _, P = _slides_pool()                         # the page "VII" whose matrix the PDF lost
    expected = np.zeros((4, 16))
    expected[0, 5] = expected[1, 7] = expected[2, 13] = expected[3, 14] = 1.0
    np.testing.assert_array_equal(P.toarray(), expected)


def _eq5(v, P, s):
    """(5): ``(v^T P_pool) ⊙ vec(I[S])^T``."""
    return (v @ P) * (s > 0)


def _eq6(v, P, Znext):
    """(6): ``(v^T ⊙ vec(I[Z^{m+1}])^T) P_pool``."""
    return (v * (Znext > 0)) @ P


def test_slides_example_eq5_equals_eq6():
    s, Zs, P = _slides_pool()
    v = np.random.default_rng(7).uniform(0.5, 10.0, 4)
    v1, v2, v3, v4 = v
    assert len(set(v.tolist())) == 4
    expected = np.array([0, 0, 0, 0, 0, v1, 0, v2, 0, 0, 0, 0, 0, v3, v4, 0])
    np.testing.assert_array_equal(_eq5(v, P, s), expected)
    np.testing.assert_array_equal(_eq6(v, P, P @ Zs), expected)


def test_slides_example_eq5_equals_eq6_with_negative_S():
    S = np.array([[3, 2, 3, -6],
                  [4, 5, -4, 9],
                  [-2, -1, 2, 6],
                  [-3, -4, -3, -2]], dtype=float)
    # window 1 (rows 2-3, columns 0-1) is all negative: sigma(S) = 0 there, its winner is the first
    # entry in column-major order, (2,0) -> vec 2, where I[S] = 0; the other windows keep their maxima.
    s = vec(image_to_Z(S[None]))
    Zs = np.maximum(s, 0.0)
    P = P_pool(4, 4, 1, 2, data=Zs)
    Znext = P @ Zs
    np.testing.assert_array_equal(Znext, [5., 0., 9., 6.])
    assert max_pool_winners(Zs, 4, 4, 1, 2).tolist() == [5, 2, 13, 14]
    v = np.random.default_rng(8).uniform(-10.0, 10.0, 4)
    v1, _, v3, v4 = v
    expected = np.array([0, 0, 0, 0, 0, v1, 0, 0, 0, 0, 0, 0, 0, v3, v4, 0])
    np.testing.assert_array_equal(_eq5(v, P, s), expected)
    np.testing.assert_array_equal(_eq6(v, P, Znext), expected)
    # without the indicator, (7) alone would have put v2 at the negative entry
    assert (v @ P)[2] == v[1]


@HYP
@given(pool_cases())
def test_eq5_eq6_agree_for_relu_max_pooling(case):
    a, b, d, r, _, ties, seed = case
    rng = np.random.default_rng(seed)
    s = pool_data(a, b, d, 1, ties, seed)[:, 0]                 # S with negative, zero and positive entries
    Zs = np.maximum(s, 0.0)
    P = P_pool(a, b, d, r, data=Zs)
    Znext = P @ Zs
    v = rng.standard_normal(P.shape[0])
    np.testing.assert_array_equal(_eq5(v, P, s), _eq6(v, P, Znext))


def test_literal_and_fast_max_pool_winners_agree_with_ties():
    """operators.max_pool_winners (argmax over each window, as defined) and the fast backend's
    kernels.pooling.max_pool_winners (pairwise comparisons, threads) give the same winners."""
    from sparsecnn.kernels.pooling import max_pool_winners as fast

    rng = np.random.default_rng(0)
    for a, b, d, r in [(1, 1, 1, 1), (4, 4, 1, 2), (7, 5, 3, 2), (6, 9, 2, 3), (8, 8, 2, 4)]:
        for V in (rng.standard_normal((d * a * b, 3)), rng.integers(0, 2, (d * a * b, 3)).astype(float),
                  np.zeros((d * a * b, 2))):
            np.testing.assert_array_equal(max_pool_winners(V, a, b, d, r), fast(V, a, b, d, r))
