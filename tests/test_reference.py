"""Checks of the loop reference (tests/reference.py) itself, before it judges the library.

The reference is checked against examples worked out by hand (the slides'
max-pooling example, small im2col and padding examples written out literally)
and against PyTorch, which shares none of its code.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import (
    P_pad_ref,
    P_phi_ref,
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

# The slides' image B ("Notes on RELU Activation + Max Pooling VI"), as rows.
B = np.array([[3, 2, 3, 6],
              [4, 5, 4, 9],
              [2, 1, 2, 6],
              [3, 4, 3, 2]], dtype=float)


def image_to_Z(images: list[np.ndarray]) -> np.ndarray:
    """Channels ``images[c]`` (each ``a x b``, rows x columns) as ``Z``: pixel (r, q) in column r + a*q."""
    a, b = images[0].shape
    Z = np.zeros((len(images), a * b))
    for c, M in enumerate(images):
        for q in range(b):
            for r in range(a):
                Z[c, r + a * q] = M[r, q]
    return Z


# ----------------------------------------------------------------------------- vec / mat / sizes
def test_vec_ref_is_column_major_by_hand():
    Z = np.array([[1., 2., 3.], [4., 5., 6.]])
    np.testing.assert_array_equal(vec_ref(Z), [1, 4, 2, 5, 3, 6])
    np.testing.assert_array_equal(mat_ref(vec_ref(Z), 2, 3), Z)


def test_vec_of_image_B_is_its_columns_stacked():
    Z = image_to_Z([B])
    np.testing.assert_array_equal(vec_ref(Z), [3, 4, 2, 3, 2, 5, 1, 4, 3, 4, 2, 3, 6, 9, 6, 2])


@pytest.mark.parametrize("a,h,s,expected", [(5, 3, 1, 3), (7, 3, 3, 2), (4, 4, 2, 1), (6, 1, 4, 2), (9, 2, 3, 3)])
def test_conv_size_ref_by_hand(a, h, s, expected):
    assert conv_size_ref(a, h, s) == expected == (a - h) // s + 1


@pytest.mark.parametrize("a,r,expected", [(4, 2, 2), (5, 2, 2), (7, 3, 2), (3, 3, 1), (2, 3, 0)])
def test_pool_size_ref_is_floor(a, r, expected):
    assert pool_size_ref(a, r) == expected


# ----------------------------------------------------------------------------- the slides' example
def test_slides_image_B_pools_to_5_9_4_6():
    pooled, winners = maxpool_ref(image_to_Z([B]), 4, 4, 2)
    np.testing.assert_array_equal(mat_ref(pooled[0], 2, 2), [[5, 9], [4, 6]])
    np.testing.assert_array_equal(vec_ref(pooled), [5, 4, 9, 6])
    # winners in vec(B): 5 at (1,1) -> 1+4*1 = 5; 4 at (3,1) -> 7; 9 at (1,3) -> 13; 6 at (2,3) -> 14
    np.testing.assert_array_equal(winners, [5, 7, 13, 14])


def test_slides_pool_matrix_written_out():
    _, winners = maxpool_ref(image_to_Z([B]), 4, 4, 2)
    expected = np.zeros((4, 16))
    expected[0, 5] = expected[1, 7] = expected[2, 13] = expected[3, 14] = 1
    np.testing.assert_array_equal(P_pool_ref(winners, 16), expected)
    v = np.array([11., 13., 17., 19.])
    np.testing.assert_array_equal(pool_T_ref(v, winners, 16),
                                  [0, 0, 0, 0, 0, 11, 0, 13, 0, 0, 0, 0, 0, 17, 19, 0])


def test_maxpool_ref_tie_goes_to_first_in_column_major_order():
    # window [[1, 5], [5, 0]]: column-major order is 1, 5(row 1), 5(col 1), 0 -> winner is (1, 0) -> vec 1;
    # row-major would pick (0, 1) -> vec 2.
    M = np.array([[1., 5.], [5., 0.]])
    pooled, winners = maxpool_ref(image_to_Z([M]), 2, 2, 2)
    assert pooled[0, 0] == 5
    assert winners.tolist() == [1]
    _, winners = maxpool_ref(image_to_Z([np.zeros((3, 3))]), 3, 3, 3)
    assert winners.tolist() == [0]


def test_maxpool_ref_floor_drops_partial_windows_and_orders_channels_fastest():
    M0 = np.arange(15.).reshape(3, 5)        # a = 3, b = 5, r = 2 -> a_out = 1, b_out = 2
    M1 = -M0
    pooled, winners = maxpool_ref(image_to_Z([M0, M1]), 3, 5, 2)
    # channel 0: windows rows 0-1 x cols 0-1 -> max 6 at (1,1); cols 2-3 -> 8 at (1,3)
    # channel 1: -0 at (0,0) and -2 at (0,2)
    np.testing.assert_array_equal(pooled, [[6, 8], [0, -2]])
    d, a = 2, 3
    assert winners.tolist() == [0 + d * (1 + a * 1), 1 + d * (0 + a * 0),
                                0 + d * (1 + a * 3), 1 + d * (0 + a * 2)]


# ----------------------------------------------------------------------------- phi by hand
def test_phi_ref_3x3_image_h2_by_hand():
    M = np.array([[1., 2., 3.],
                  [4., 5., 6.],
                  [7., 8., 9.]])
    # columns: positions (0,0), (1,0), (0,1), (1,1); rows: filter (0,0), (1,0), (0,1), (1,1)
    expected = np.array([[1., 4., 2., 5.],
                         [4., 7., 5., 8.],
                         [2., 5., 3., 6.],
                         [5., 8., 6., 9.]])
    np.testing.assert_array_equal(phi_ref(image_to_Z([M]), 3, 3, 2), expected)


def test_phi_ref_two_channels_channel_is_slowest_row_index():
    M = np.array([[1., 2., 3.],
                  [4., 5., 6.],
                  [7., 8., 9.]])
    expected = np.array([[1., 4., 2., 5.],
                         [4., 7., 5., 8.],
                         [2., 5., 3., 6.],
                         [5., 8., 6., 9.],
                         [10., 40., 20., 50.],
                         [40., 70., 50., 80.],
                         [20., 50., 30., 60.],
                         [50., 80., 60., 90.]])
    np.testing.assert_array_equal(phi_ref(image_to_Z([M, 10 * M]), 3, 3, 2), expected)


def test_phi_ref_rectangular_stride2_by_hand():
    M = np.array([[1., 2., 3., 4.],
                  [5., 6., 7., 8.],
                  [9., 10., 11., 12.]])      # a = 3, b = 4, h = 2, s = 2: a_conv = 1, b_conv = 2
    expected = np.array([[1., 3.],
                         [5., 7.],
                         [2., 4.],
                         [6., 8.]])
    np.testing.assert_array_equal(phi_ref(image_to_Z([M]), 3, 4, 2, 2), expected)


def test_pad_ref_by_hand():
    M = np.array([[1., 2., 3.],
                  [4., 5., 6.]])
    expected = np.array([[0, 0, 0, 0, 0],
                         [0, 1, 2, 3, 0],
                         [0, 4, 5, 6, 0],
                         [0, 0, 0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(pad_ref(image_to_Z([M]), 2, 3, 1), image_to_Z([expected]))
    np.testing.assert_array_equal(pad_T_ref(image_to_Z([expected]), 2, 3, 1), image_to_Z([M]))


# ----------------------------------------------------------------------------- internal consistency
@pytest.mark.parametrize("a,b,d,h,s,p", [(3, 4, 2, 2, 1, 1), (5, 3, 1, 3, 2, 0), (4, 6, 3, 2, 3, 2)])
def test_reference_matrices_agree_with_reference_loops(a, b, d, h, s, p):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((d, a * b))
    a_pad, b_pad = a + 2 * p, b + 2 * p
    Zpad = pad_ref(Z, a, b, p)
    np.testing.assert_array_equal(P_pad_ref(a, b, d, p) @ vec_ref(Z), vec_ref(Zpad))
    np.testing.assert_array_equal(P_phi_ref(a_pad, b_pad, d, h, s) @ vec_ref(Zpad),
                                  vec_ref(phi_ref(Zpad, a_pad, b_pad, h, s)))
    # adjoints: <P x, y> = <x, P^T y> with the loop adjoints
    G = rng.standard_normal(Zpad.shape)
    assert np.isclose(np.sum(Zpad * G), np.sum(Z * pad_T_ref(G, a, b, p)), rtol=1e-13)
    Phi = phi_ref(Zpad, a_pad, b_pad, h, s)
    H = rng.standard_normal(Phi.shape)
    assert np.isclose(np.sum(Phi * H), np.sum(Zpad * phi_T_ref(H, a_pad, b_pad, d, h, s)), rtol=1e-13)
    np.testing.assert_array_equal(P_phi_ref(a_pad, b_pad, d, h, s).T @ vec_ref(H),
                                  vec_ref(phi_T_ref(H, a_pad, b_pad, d, h, s)))


# ----------------------------------------------------------------------------- against PyTorch
@pytest.mark.parametrize("a,b,d,d_out,h,s,p", [(5, 7, 2, 3, 3, 1, 1), (6, 5, 1, 2, 2, 2, 0),
                                               (7, 6, 3, 2, 3, 3, 2), (4, 4, 2, 1, 4, 1, 0)])
def test_conv_forward_ref_matches_torch_conv2d(a, b, d, d_out, h, s, p):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(a * 100 + b)
    images = rng.standard_normal((d, a, b))          # [c, row, col]
    w = rng.standard_normal((d_out, d, h, h))        # torch weight [o, c, r, q]
    bias = rng.standard_normal(d_out)
    W = np.zeros((d_out, h * h * d))
    for o in range(d_out):
        for c in range(d):
            for q in range(h):
                for r in range(h):
                    W[o, r + h * q + h * h * c] = w[o, c, r, q]
    S = conv_forward_ref(image_to_Z(list(images)), a, b, W, bias, h, s, p)
    out = torch.nn.functional.conv2d(torch.from_numpy(images[None]), torch.from_numpy(w),
                                     torch.from_numpy(bias), stride=s, padding=p)[0].numpy()
    a_conv, b_conv = out.shape[1:]
    assert S.shape == (d_out, a_conv * b_conv)
    np.testing.assert_allclose(S, image_to_Z(list(out)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a,b,d,r", [(4, 4, 1, 2), (5, 7, 2, 2), (7, 5, 3, 3), (6, 6, 1, 1)])
def test_maxpool_ref_matches_torch_max_pool2d(a, b, d, r):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(a * 10 + b)
    images = rng.standard_normal((d, a, b))
    pooled, winners = maxpool_ref(image_to_Z(list(images)), a, b, r)
    out, idx = torch.nn.functional.max_pool2d(torch.from_numpy(images[None]), r, stride=r,
                                              return_indices=True)
    out, idx = out[0].numpy(), idx[0].numpy()
    np.testing.assert_array_equal(pooled, image_to_Z(list(out)))
    a_out, b_out = out.shape[1:]
    for c in range(d):
        for q_out in range(b_out):
            for r_out in range(a_out):
                row, col = divmod(int(idx[c, r_out, q_out]), b)   # torch: row-major in the image
                assert winners[c + d * (r_out + a_out * q_out)] == c + d * (row + a * col)
