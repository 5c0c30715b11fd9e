"""vec, mat, vec_batch, mat_batch: column-major order, batch layout, round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import mat_ref, vec_ref

from sparsecnn import ShapeError, mat, mat_batch, vec, vec_batch

FAST = settings(max_examples=60, deadline=None)


def _rng_matrix(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- column-major order
def test_vec_puts_entry_c_j_at_c_plus_d_j_by_hand():
    Z = np.array([[1., 2., 3.],
                  [4., 5., 6.]])              # d = 2, ab = 3
    np.testing.assert_array_equal(vec(Z), [1., 4., 2., 5., 3., 6.])
    np.testing.assert_array_equal(mat(np.array([1., 4., 2., 5., 3., 6.]), 2, 3), Z)


@FAST
@given(d=st.integers(1, 5), n=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_vec_entry_c_j_is_at_c_plus_d_j(d, n, seed):
    Z = _rng_matrix(seed, d, n)
    v = vec(Z)
    assert v.shape == (d * n,)
    for j in range(n):
        for c in range(d):
            assert v[c + d * j] == Z[c, j]
    np.testing.assert_array_equal(v, vec_ref(Z))


def test_vec_of_pixel_r_q_follows_rows_fastest():
    # pixel (r, q) of an a x b image is column r + a*q; with d channels vec position c + d*(r + a*q)
    a, b, d = 3, 2, 2
    Z = np.zeros((d, a * b))
    Z[1, 2 + a * 1] = 7.0                     # channel 1, image row 2, image column 1
    assert np.flatnonzero(vec(Z)).tolist() == [1 + d * (2 + a * 1)]


def test_vec_of_fortran_and_noncontiguous_inputs():
    Z = np.asfortranarray(np.arange(12.).reshape(3, 4))
    np.testing.assert_array_equal(vec(Z), vec_ref(np.ascontiguousarray(Z)))
    big = np.arange(40.).reshape(5, 8)
    view = big[::2, 1::3]
    np.testing.assert_array_equal(vec(view), vec_ref(np.array(view)))


# ----------------------------------------------------------------------------- round trips
@FAST
@given(d=st.integers(1, 5), n=st.integers(1, 7), seed=st.integers(0, 2**32 - 1))
def test_mat_vec_round_trip(d, n, seed):
    Z = _rng_matrix(seed, d, n)
    np.testing.assert_array_equal(mat(vec(Z), d, n), Z)
    v = np.random.default_rng(seed + 1).standard_normal(d * n)
    np.testing.assert_array_equal(vec(mat(v, d, n)), v)
    np.testing.assert_array_equal(mat(v, d, n), mat_ref(v, d, n))


@FAST
@given(l=st.integers(1, 4), d=st.integers(1, 4), ab=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_vec_batch_column_i_is_vec_of_instance_i(l, d, ab, seed):
    Zs = np.random.default_rng(seed).standard_normal((l, d, ab))
    V = vec_batch(Zs)
    assert V.shape == (d * ab, l)
    for i in range(l):
        np.testing.assert_array_equal(V[:, i], vec_ref(Zs[i]))
    back = mat_batch(V, d, ab)
    assert back.shape == (l, d, ab)
    np.testing.assert_array_equal(back, Zs)
    for i in range(l):
        np.testing.assert_array_equal(back[i], mat(V[:, i], d, ab))


def test_vec_batch_by_hand():
    Zs = np.arange(8.).reshape(2, 2, 2)      # instance 0: [[0,1],[2,3]], instance 1: [[4,5],[6,7]]
    np.testing.assert_array_equal(vec_batch(Zs), [[0., 4.], [2., 6.], [1., 5.], [3., 7.]])


def test_vec_batch_result_is_c_contiguous_and_independent_of_input():
    Zs = np.random.default_rng(0).standard_normal((3, 2, 5))
    V = vec_batch(Zs)
    assert V.flags.c_contiguous
    before = V.copy()
    Zs[:] = 0.0
    np.testing.assert_array_equal(V, before)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("Z", [np.arange(3.), np.zeros((2, 2, 2)), np.float64(1.0)])
def test_vec_rejects_non_matrix_with_shape_error(Z):
    with pytest.raises(ShapeError, match=r"vec expects a matrix Z of 2 dimensions, got \d"):
        vec(Z)


def test_mat_rejects_wrong_length_naming_rows_times_cols():
    with pytest.raises(ShapeError, match=r"rows\*cols = 6 entries, got shape \(5,\)"):
        mat(np.arange(5.), 2, 3)


def test_mat_rejects_a_matrix_even_of_the_right_size():
    with pytest.raises(ShapeError, match=r"rows\*cols = 6 entries, got shape \(6, 1\)"):
        mat(np.arange(6.).reshape(6, 1), 2, 3)


@pytest.mark.parametrize("rows,cols", [(-1, -4), (-2, -2), (-1, 4)])
def test_mat_rejects_negative_sizes_with_shape_error(rows, cols):
    with pytest.raises(ShapeError, match="mat expects"):
        mat(np.arange(4.), rows, cols)


@pytest.mark.parametrize("Zs", [np.zeros((2, 3)), np.zeros((1, 2, 3, 4))])
def test_vec_batch_rejects_non_stack(Zs):
    with pytest.raises(ShapeError, match=r"vec_batch expects a stack of shape \(l, d, ab\), got"):
        vec_batch(Zs)


def test_mat_batch_rejects_wrong_number_of_rows():
    with pytest.raises(ShapeError, match=r"d\*ab = 6 rows, got shape \(5, 2\)"):
        mat_batch(np.zeros((5, 2)), 2, 3)
    with pytest.raises(ShapeError, match=r"d\*ab = 6 rows, got shape \(6,\)"):
        mat_batch(np.zeros(6), 2, 3)


def test_mat_batch_rejects_negative_sizes():
    with pytest.raises(ShapeError, match="mat_batch expects"):
        mat_batch(np.zeros((4, 2)), -1, -4)


def test_shape_error_is_also_value_error():
    with pytest.raises(ValueError):
        mat(np.arange(5.), 2, 3)
