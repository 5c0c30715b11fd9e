"""Network: gradients by equation, the API around them, parameters and bad input.

The gradient tests are organised by the slides' equations: (1)-(4) for full
layers, ``dxi/dvec(W^m) = vec(dxi/dS^m phi(pad(Z^m))^T)`` and
``dxi/db^m = dxi/dS^m 1`` for conv layers (with the input gradient through
``P_phi^T`` and ``P_pad^T``), and (5)/(6) for ReLU + max pooling.  Every
finite-difference check goes through ``tests/gradcheck.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from gradcheck import check_gradient, coordinates_of_layers

from sparsecnn import (
    ArchitectureError,
    ConfigError,
    ConvLayer,
    FullLayer,
    InputTypeError,
    LabelError,
    Network,
    NonFiniteError,
    ShapeError,
)

ACTIVATIONS = ["relu", "identity", "tanh", "sigmoid", "leaky_relu"]


def problem(net: Network, l: int, seed: int, C: float = 2.0):
    """Random ``theta`` (He weights, random biases), ``X`` and labels ``y``."""
    rng = np.random.default_rng(seed)
    Ws, _ = net.unpack(net.init_params(seed=seed))
    bs = [0.3 * rng.standard_normal(W.shape[0]) for W in Ws]
    theta = net.pack(Ws, bs)
    X = rng.standard_normal((net.n_input, l))
    y = rng.integers(0, net.n_L, size=l)
    return theta, X, y


def fd_check(net: Network, l: int = 4, seed: int = 0, C: float = 2.0, k: int = 3, **objective_kw):
    theta, X, y = problem(net, l, seed)
    coords = coordinates_of_layers(net, range(1, net.L + 1), k=k, seed=seed)
    return check_gradient(lambda t: net.objective(t, X, y, C, **objective_kw), theta,
                          directions=3, coordinates=coords, seed=seed)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.abs(b).max() if b.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


# ====================================================== full layers: (1)-(4)
def test_eq1_eq2_single_full_layer_closed_form():
    """For L = 1: dxi/dW = 2(z - y) z^T and dxi/db = 2(z - y), averaged, plus theta/C."""
    net = Network((3, 2, 2), [FullLayer(4)])
    theta, X, y = problem(net, l=5, seed=1)
    C = 3.0
    W, b = (M.copy() for M in (net.unpack(theta)[0][0], net.unpack(theta)[1][0]))
    Y = np.zeros((4, 5))
    Y[y, np.arange(5)] = 1.0
    out = W @ X + b[:, None]                          # identity activation in the last layer
    ds = 2.0 * (out - Y) / 5                           # dxi/ds^L = dxi/dz^{L+1}, (4) with I = 1
    f, g = net.objective(theta, X, y, C)
    assert f == pytest.approx(theta @ theta / (2 * C) + ((out - Y) ** 2).sum() / 5, rel=1e-14)
    gW, gb = net.unpack(g)
    np.testing.assert_allclose(gW[0], ds @ X.T + W / C, rtol=1e-13)       # (1)
    np.testing.assert_allclose(gb[0], ds.sum(axis=1) + b / C, rtol=1e-13)  # (2)


def test_eq1_eq2_full_layers_finite_differences():
    """Coordinates of W^m (1) and b^m (2) in both layers of a two-layer MLP."""
    fd_check(Network((2, 3, 2), [FullLayer(5), FullLayer(3)]), l=6, seed=2)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_eq3_eq4_hidden_full_layers_finite_differences(activation):
    """dxi/dz^m = W^T dxi/ds^m (3) and dxi/ds^m = dxi/dz^{m+1} ⊙ sigma'(s^m) (4) through two hidden layers."""
    net = Network((3, 3, 1), [FullLayer(6, activation), FullLayer(5, activation), FullLayer(3)])
    checks = fd_check(net, l=5, seed=3, k=4)
    assert len(checks) == 3 + 3 * 5


def test_eq4_last_layer_activation_other_than_identity():
    net = Network((2, 2, 1), [FullLayer(4, "tanh"), FullLayer(3, "sigmoid")])
    fd_check(net, l=4, seed=4)


# ============================================================ conv layers
CONV_CASES = {
    "padding_pool": ((6, 6, 1), [ConvLayer(3, h=3, p=1, r=2), FullLayer(4)]),
    "stride2_r1": ((9, 9, 2), [ConvLayer(3, h=3, s=2), FullLayer(3)]),
    "rectangular_pad2_stride2_pool": ((7, 10, 2), [ConvLayer(3, h=3, p=2, s=2, r=2), FullLayer(3)]),
    "r3_partial_windows_dropped": ((8, 11, 3), [ConvLayer(2, h=2, r=3, activation="leaky_relu"), FullLayer(2)]),
    "two_conv_tanh_then_relu_pool": ((6, 9, 1), [ConvLayer(2, h=2, activation="tanh"),
                                                 ConvLayer(3, h=3, p=1, s=2, r=2),
                                                 FullLayer(5, "sigmoid"), FullLayer(3)]),
    "three_conv_rectangular": ((12, 10, 2), [ConvLayer(4, h=3, p=1, r=2),
                                             ConvLayer(3, h=3, s=2, p=1, activation="sigmoid"),
                                             ConvLayer(2, h=2, activation="identity"),
                                             FullLayer(4), FullLayer(3)]),
    "h1_pad_only_border": ((4, 5, 2), [ConvLayer(2, h=1, p=2, r=2, activation="tanh"), FullLayer(2)]),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_dW_eq_dS_phiT_db_eq_dS_1_finite_differences(case):
    """dxi/dvec(W^m) = vec(dxi/dS^m phi(pad(Z^m))^T), dxi/db^m = dxi/dS^m 1 and, for m > 1,
    dxi/dvec(Z^m) = P_pad^T P_phi^T vec(dxi/dphi): random directions and coordinates of every layer."""
    shape, layers = CONV_CASES[case]
    fd_check(Network(shape, layers), l=3, seed=5)


def test_conv_gradient_without_regularisation():
    """C = inf: the loss part alone (no theta/C term to hide an error behind)."""
    shape, layers = CONV_CASES["rectangular_pad2_stride2_pool"]
    fd_check(Network(shape, layers), l=3, seed=6, C=np.inf)


# ===================================================== (5) and (6): ReLU + max pooling
RELU_POOL = ((9, 8, 2), [ConvLayer(4, h=3, p=1, r=2), ConvLayer(3, h=2, p=1, s=1, r=2), FullLayer(3)])


@pytest.mark.parametrize("mode", ["eq5", "eq6", "auto"])
def test_eq5_eq6_finite_differences(mode):
    shape, layers = RELU_POOL
    fd_check(Network(shape, layers), l=4, seed=7, pool_backward=mode)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq6_equals_eq5_for_relu_maxpool(seed):
    shape, layers = RELU_POOL
    net = Network(shape, layers)
    theta, X, y = problem(net, l=6, seed=seed)
    f5, g5 = net.objective(theta, X, y, 1.5, pool_backward="eq5")
    f6, g6 = net.objective(theta, X, y, 1.5, pool_backward="eq6")
    assert f5 == f6
    assert rel(g6, g5) <= 1e-14
    # the same through the constructor's setting
    _, g6c = Network(shape, layers, pool_backward="eq6").objective(theta, X, y, 1.5)
    _, g5c = Network(shape, layers, pool_backward="eq5").objective(theta, X, y, 1.5)
    assert rel(g6c, g6) <= 1e-14 and rel(g5c, g5) <= 1e-14


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu", "identity"])
def test_eq6_equals_eq5_where_sigma_prime_follows_from_Z(activation):
    net = Network((8, 7, 1), [ConvLayer(3, h=3, p=1, r=2, activation=activation), FullLayer(3)])
    theta, X, y = problem(net, l=4, seed=8)
    _, g5 = net.objective(theta, X, y, pool_backward="eq5")
    _, g6 = net.objective(theta, X, y, pool_backward="eq6")
    assert rel(g6, g5) <= 1e-13


def test_eq6_needs_only_Z_not_S():
    """(6) forms dxi/dvec(S^m) from Z^{m+1}: the backward pass works with S^m dropped; (5) reads S^m."""
    shape, layers = RELU_POOL
    net = Network(shape, layers)
    theta, X, y = problem(net, l=3, seed=9)
    f_ref, g_ref = net.objective(theta, X, y, 2.0)
    cache = net.forward(theta, X)
    for m in range(1, net.LC + 1):
        del cache.kept[f"S{m}"]
    f6, g6 = net.backward(cache, y, 2.0, pool_backward="eq6")
    assert f6 == pytest.approx(f_ref, rel=1e-15) and rel(g6, g_ref) <= 1e-14
    with pytest.raises(KeyError):
        net.backward(cache, y, 2.0, pool_backward="eq5")


# ======================================================= objective and API
def test_objective_matches_notation_formula():
    """f = theta^T theta/(2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2 with one-hot y."""
    shape, layers = CONV_CASES["three_conv_rectangular"]
    net = Network(shape, layers)
    theta, X, y = problem(net, l=5, seed=10)
    Z = net.output(theta, X)
    Y = np.eye(net.n_L)[:, y]
    for C in (0.7, np.inf):
        f, _ = net.objective(theta, X, y, C)
        expected = (theta @ theta / (2 * C) if np.isfinite(C) else 0.0) + ((Z - Y) ** 2).sum() / 5
        assert f == pytest.approx(expected, rel=1e-14)


def test_objective_independent_of_batch_size():
    shape, layers = CONV_CASES["three_conv_rectangular"]
    net = Network(shape, layers)
    theta, X, y = problem(net, l=7, seed=11)
    f_ref, g_ref = net.objective(theta, X, y, 4.0, batch_size=7)
    out_ref = net.output(theta, X, batch_size=7)
    for bs in (1, 2, 3, 6, 1000):
        f, g = net.objective(theta, X, y, 4.0, batch_size=bs)
        assert f == pytest.approx(f_ref, rel=1e-14)
        assert rel(g, g_ref) <= 1e-13
        np.testing.assert_allclose(net.output(theta, X, batch_size=bs), out_ref, rtol=1e-14, atol=1e-15)


def test_forward_then_backward_equals_objective():
    shape, layers = RELU_POOL
    net = Network(shape, layers)
    theta, X, y = problem(net, l=5, seed=12)
    cache = net.forward(theta, X)
    assert cache.l == 5 and cache.output.shape == (net.n_L, 5)
    np.testing.assert_array_equal(cache.output, net.output(theta, X))
    f, g = net.backward(cache, y, 0.5)
    f_ref, g_ref = net.objective(theta, X, y, 0.5)
    assert f == pytest.approx(f_ref, rel=1e-15) and rel(g, g_ref) <= 1e-15
    # the cache is not consumed: other labels, same forward pass
    y2 = (y + 1) % net.n_L
    f2, g2 = net.backward(cache, y2, 0.5)
    f2_ref, g2_ref = net.objective(theta, X, y2, 0.5)
    assert f2 == pytest.approx(f2_ref, rel=1e-15) and rel(g2, g2_ref) <= 1e-15
    assert f2 != pytest.approx(f, rel=1e-6)


def test_predict_is_argmax_of_output():
    shape, layers = CONV_CASES["two_conv_tanh_then_relu_pool"]
    net = Network(shape, layers)
    theta, X, _ = problem(net, l=20, seed=13)
    out = net.output(theta, X)
    pred = net.predict(theta, X)
    assert pred.shape == (20,)
    np.testing.assert_array_equal(pred, out.argmax(axis=0))
    assert len(set(pred.tolist())) > 1            # not a constant answer


def test_predict_ties_go_to_smallest_label():
    net = Network((2, 2, 1), [FullLayer(4)])
    W = [np.zeros((4, 4))]
    b = [np.array([0.0, 2.0, 1.0, 2.0])]
    pred = net.predict(net.pack(W, b), np.random.default_rng(0).standard_normal((4, 3)))
    np.testing.assert_array_equal(pred, [1, 1, 1])


# =================================================================== theta
def theta_by_hand(Ws, bs):
    """theta = [vec([W^1 b^1]); ...; vec([W^L b^L])], column-major, written out entry by entry."""
    out = []
    for W, b in zip(Ws, bs, strict=True):
        rows, cols = W.shape
        for j in range(cols + 1):
            for i in range(rows):
                out.append(W[i, j] if j < cols else b[i])
    return np.array(out)


def test_pack_unpack_round_trip_and_theta_order():
    shape, layers = CONV_CASES["three_conv_rectangular"]
    net = Network(shape, layers)
    rng = np.random.default_rng(14)
    Ws = [rng.standard_normal(ly.W_shape) for ly in net.layers]
    bs = [rng.standard_normal(ly.W_shape[0]) for ly in net.layers]
    theta = net.pack(Ws, bs)
    assert theta.shape == (net.n_params,)
    assert net.n_params == sum(r * (c + 1) for r, c in (ly.W_shape for ly in net.layers))
    np.testing.assert_array_equal(theta, theta_by_hand(Ws, bs))
    W2, b2 = net.unpack(theta)
    for m in range(net.L):
        np.testing.assert_array_equal(W2[m], Ws[m])
        np.testing.assert_array_equal(b2[m], bs[m])
    np.testing.assert_array_equal(net.pack(W2, b2), theta)


def test_W_shapes_follow_the_slides():
    """Conv: W^m is d^{m+1} x h h d^m; full: n_{m+1} x n_m."""
    net = Network((10, 12, 3), [ConvLayer(5, h=3, p=1, r=2), ConvLayer(4, h=2, s=2), FullLayer(7), FullLayer(2)])
    W, b = net.unpack(np.zeros(net.n_params))
    # conv 1: 10x12 -> pool 5x6; conv 2: h=2 s=2 -> 2x3 with 4 channels -> n = 24
    assert [w.shape for w in W] == [(5, 27), (4, 20), (7, 24), (2, 7)]
    assert [v.shape for v in b] == [(5,), (4,), (7,), (2,)]


def test_pack_rejects_wrong_shapes():
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(ShapeError, match=r"W\^1 must have shape \(3, 4\), got \(4, 3\)"):
        net.pack([np.zeros((4, 3))], [np.zeros(3)])
    with pytest.raises(ShapeError, match=r"b\^1 must have 3 entries, got 2"):
        net.pack([np.zeros((3, 4))], [np.zeros(2)])


# ============================================================= init_params
def test_init_params_zero_biases_and_he_std():
    net = Network((16, 16, 3), [ConvLayer(64, h=5, p=2, r=2), ConvLayer(32, h=3, p=1, r=2),
                                FullLayer(200), FullLayer(10)])
    Ws, bs = net.unpack(net.init_params(seed=15))
    fan_in = [5 * 5 * 3, 3 * 3 * 64, 32 * 4 * 4, 200]
    for W, b, fan in zip(Ws, bs, fan_in, strict=True):
        assert not b.any()
        sigma = np.sqrt(2.0 / fan)
        N = W.size
        # the sample std of N normals has standard deviation sigma/sqrt(2N); allow 6 of those
        assert abs(W.std() / sigma - 1.0) <= 6.0 / np.sqrt(2 * N)
        assert abs(W.mean()) <= 6.0 * sigma / np.sqrt(N)


def test_init_params_reproducible_by_seed():
    shape, layers = CONV_CASES["padding_pool"]
    net = Network(shape, layers)
    np.testing.assert_array_equal(net.init_params(seed=3), net.init_params(seed=3))
    assert not np.array_equal(net.init_params(seed=3), net.init_params(seed=4))
    assert not np.array_equal(net.init_params(), net.init_params())


# ========================================================= shape inference
def test_filter_larger_than_padded_image():
    with pytest.raises(ArchitectureError, match=r"conv layer 1: filter width h = 8 .* 7 x 7"):
        Network((5, 5, 1), [ConvLayer(2, h=8, p=1), FullLayer(2)])


def test_filter_larger_than_padded_image_in_one_direction_of_a_later_layer():
    # layer 1: 10 x 7 -> conv 8 x 5 -> pool 4 x 2; layer 2 with h = 3 does not fit the width 2
    with pytest.raises(ArchitectureError, match=r"conv layer 2: filter width h = 3 .* 4 x 2"):
        Network((10, 7, 1), [ConvLayer(2, h=3, r=2), ConvLayer(2, h=3), FullLayer(2)])


def test_pool_window_larger_than_conv_output():
    with pytest.raises(ArchitectureError, match=r"conv layer 1: pool window r = 5 .* 4 x 4"):
        Network((6, 6, 1), [ConvLayer(2, h=3, r=5), FullLayer(2)])
    with pytest.raises(ArchitectureError, match=r"pool window r = 3 .* 4 x 2"):
        Network((6, 4, 1), [ConvLayer(2, h=3, r=3), FullLayer(2)])


def test_architecture_error_is_a_config_and_value_error():
    assert issubclass(ArchitectureError, ConfigError) and issubclass(ArchitectureError, ValueError)


def test_conv_after_full_layer_rejected():
    with pytest.raises(ConfigError, match="cannot follow a FullLayer"):
        Network((4, 4, 1), [FullLayer(3), ConvLayer(2, h=1), FullLayer(2)])


# =============================================================== bad input
MNIST_NET = ((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2),
                           ConvLayer(64, h=3, p=1, r=2), FullLayer(10)])


@pytest.fixture(scope="module")
def mnist_net():
    net = Network(*MNIST_NET)
    return net, np.zeros(net.n_params)


def calls(net, theta, X, y=None):
    """Every public entry point that takes X."""
    y = np.zeros(np.shape(X)[-1] if np.ndim(X) == 2 else 1, dtype=int) if y is None else y
    return {
        "objective": lambda: net.objective(theta, X, y, 1.0),
        "output": lambda: net.output(theta, X),
        "predict": lambda: net.predict(theta, X),
        "forward": lambda: net.forward(theta, X),
    }


@pytest.mark.parametrize("method", ["objective", "output", "predict", "forward"])
def test_bad_X_wrong_number_of_rows(mnist_net, method):
    net, theta = mnist_net
    with pytest.raises(ShapeError, match=r"^X must have d\*a\*b = 784 rows, got 783$"):
        calls(net, theta, np.zeros((783, 2)))[method]()


def test_bad_X_three_dimensional(mnist_net):
    net, theta = mnist_net
    with pytest.raises(ShapeError, match=r"X must be a matrix of shape \(d\*a\*b = 784, l\), got shape \(2, 28, 28\)"):
        net.output(theta, np.zeros((2, 28, 28)))


@pytest.mark.parametrize("method", ["objective", "output", "predict", "forward"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_X_not_finite(mnist_net, method, bad):
    net, theta = mnist_net
    X = np.zeros((784, 3))
    X[100, 2] = bad
    with pytest.raises(NonFiniteError, match=rf"X must be finite, got {bad} at entry \(100, 2\)"):
        calls(net, theta, X)[method]()


@pytest.mark.parametrize("method", ["objective", "output", "predict", "forward"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_theta_not_finite(mnist_net, method, bad):
    net, theta = mnist_net
    theta = theta.copy()
    theta[5] = bad
    with pytest.raises(NonFiniteError, match=rf"theta must be finite, got {bad} at entry 5"):
        calls(net, theta, np.zeros((784, 1)))[method]()


@pytest.mark.parametrize("method", ["objective", "output", "predict", "forward"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_bad_theta_wrong_length(mnist_net, method, delta):
    net, theta = mnist_net
    n = net.n_params
    t = np.zeros(n + delta)
    with pytest.raises(ShapeError, match=rf"theta must be a vector of n = {n} entries, got shape \({n + delta},\)"):
        calls(net, t, np.zeros((784, 1)))[method]()


def test_bad_theta_matrix_instead_of_vector():
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(ShapeError, match=r"n = 15 entries, got shape \(15, 1\)"):
        net.output(np.zeros((15, 1)), np.zeros((4, 1)))


@pytest.mark.parametrize("labels, message", [
    ([0, 10, 3], r"labels in 0..n_L-1 = 0..9, got 10 at position 1"),
    ([0, 1, -1], r"labels in 0..n_L-1 = 0..9, got -1 at position 2"),
    ([0.0, 1.5, 2.0], r"non-integer"),
    ([0.0, np.nan, 2.0], r"non-integer"),
])
def test_bad_labels(labels, message):
    net = Network((2, 2, 1), [FullLayer(10)])
    with pytest.raises(LabelError, match=message):
        net.objective(np.zeros(net.n_params), np.zeros((4, 3)), np.array(labels), 1.0)


def test_integer_valued_float_labels_accepted():
    net = Network((2, 2, 1), [FullLayer(10)])
    theta, X = np.zeros(net.n_params), np.ones((4, 3))
    assert net.objective(theta, X, np.array([1.0, 9.0, 0.0]))[0] == net.objective(theta, X, [1, 9, 0])[0]


def test_bad_labels_wrong_count():
    net = Network((2, 2, 1), [FullLayer(10)])
    with pytest.raises(ShapeError, match=r"one label per column of X, l = 3, got shape \(2,\)"):
        net.objective(np.zeros(net.n_params), np.zeros((4, 3)), [0, 1], 1.0)


@pytest.mark.parametrize("X, message", [
    ("not an array", r"X must be a numeric array, got str"),
    (np.zeros((4, 2), dtype=complex), r"X must be real, got dtype complex128"),
    (sp.csr_matrix(np.zeros((4, 2))), r"X must be a dense numeric array, got csr_matrix"),
    (sp.csr_array(np.zeros((4, 2))), r"X must be a dense numeric array, got csr_array"),
    (np.array([["a", "b"]] * 4), r"X must be a numeric array, got dtype <U1"),
    (None, r"X must be a numeric array, got NoneType"),
])
def test_bad_X_type(X, message):
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match=message):
        net.output(np.zeros(net.n_params), X)
    assert issubclass(InputTypeError, TypeError)


@pytest.mark.parametrize("theta, message", [
    ("zeros", r"theta must be a numeric vector, got str"),
    (np.zeros(15, dtype=complex), r"theta must be a real numeric vector, got dtype complex128"),
    (sp.csr_array(np.zeros((1, 15))), r"theta must be a real numeric vector, got dtype object"),
])
def test_bad_theta_type(theta, message):
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match=message):
        net.output(theta, np.zeros((4, 1)))


def test_bad_labels_type():
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match=r"y must be a vector of integer labels, got str"):
        net.objective(np.zeros(15), np.zeros((4, 3)), "012", 1.0)


@pytest.mark.parametrize("C, error, message", [
    (0.0, ConfigError, r"C must be > 0, got 0.0"),
    (-1.0, ConfigError, r"C must be > 0, got -1.0"),
    ("1", InputTypeError, r"C must be a positive number, got '1'"),
])
def test_bad_C(C, error, message):
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(error, match=message):
        net.objective(np.zeros(15), np.zeros((4, 1)), [0], C)


@pytest.mark.parametrize("batch_size", [0, -2, 1.5, True])
def test_bad_batch_size(batch_size):
    net = Network((2, 2, 1), [FullLayer(3)])
    with pytest.raises(InputTypeError, match=r"batch_size must be a positive integer"):
        net.objective(np.zeros(15), np.zeros((4, 1)), [0], 1.0, batch_size=batch_size)
