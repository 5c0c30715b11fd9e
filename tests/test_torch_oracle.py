"""sparsecnn against PyTorch CPU float64: output, objective and full gradient.

Architectures are drawn by hypothesis (image height and width independently,
channels, 0-3 conv layers with filter sizes, strides, paddings, pool sizes and
activations, 1-3 full layers), with random continuous inputs and random
biases.  The objective on the PyTorch side is written out from NOTATION.md,
``theta^T theta/(2C) + (1/l) sum_i ||z^{L+1,i} - y^i||^2``, and PyTorch's
gradients are brought back to the order of ``theta`` through ``from_torch``.

Max-pooling ties: the winners PyTorch chose (``return_indices=True``) are
converted with ``torch_pool_indices_to_winners`` and given to sparsecnn, so
``P_pool`` is the same matrix on both sides; the test first checks that any
window where the two picks differ is a genuine tie.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy.io import loadmat  # noqa: E402

from sparsecnn import ConfigError, ConvLayer, FullLayer, Network, P_pool  # noqa: E402
from sparsecnn.interop import (  # noqa: E402
    X_from_torch,
    X_to_torch,
    from_torch,
    to_torch,
    torch_pool_indices_to_winners,
)

ACTIVATIONS = ["relu", "identity", "tanh", "sigmoid", "leaky_relu"]
TOL = 1e-10


def _avg_pool_supported() -> bool:
    try:
        ConvLayer(1, h=1, r=2, pool="avg")
    except ConfigError:
        return False
    return True


POOLS = ["max", "avg"] if _avg_pool_supported() else ["max"]


def rel(a, b) -> float:
    """Relative error ``max|a - b| / max|b|`` (``max|a - b|`` where ``b`` vanishes)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return err / scale if scale > 0 else err


# ------------------------------------------------------------ PyTorch side
def torch_objective(model, x, y, n_L, C):
    """f and the gradient of every parameter, PyTorch float64, the objective of NOTATION.md."""
    model.zero_grad()
    out = model(x)
    l = out.shape[0]
    Y = torch.zeros(l, n_L, dtype=torch.float64)
    Y[torch.arange(l), torch.as_tensor(y)] = 1.0
    f = ((out - Y) ** 2).sum() / l
    if np.isfinite(C):
        f = f + sum((p * p).sum() for p in model.parameters()) / (2.0 * C)
    f.backward()
    return out.detach().numpy().T, float(f.detach()), model


def torch_gradient_as_theta(model, input_shape):
    """PyTorch's gradients in the order of theta: the gradients as the parameters of a copy, via from_torch."""
    grads = copy.deepcopy(model)
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads.parameters(), strict=True):
            g.copy_(p.grad)
    return from_torch(grads, input_shape)[1]


def torch_max_pool_winners(model, net, x):
    """{m: winners} for every max-pooling conv layer, from running ``model`` with return_indices."""
    winners = {}
    m = 0
    with torch.no_grad():
        for mod in model:
            if isinstance(mod, torch.nn.Conv2d):
                m += 1
            if isinstance(mod, torch.nn.MaxPool2d):
                _, idx = F.max_pool2d(x, mod.kernel_size, return_indices=True)
                winners[m] = torch_pool_indices_to_winners(idx, net, m)
            x = mod(x)
    return winners


def use_winners(net, winners):
    """Make layer m of ``net`` pool with the given winners instead of its own argmax."""
    for m, w in winners.items():
        net.conv[m - 1].winners = lambda A, w=w: w


def compare(net, theta, X, y, C, every_entry_point=True):
    """Relative errors of (output, f, gradient) against PyTorch, with PyTorch's pooling winners.

    The largest error over ``net.forward`` + ``net.backward`` and, with
    ``every_entry_point``, ``net.objective`` and ``net.output``.
    """
    a, b, d = net.input_shape
    model = to_torch(net, theta)
    x = X_to_torch(net, X)
    winners = torch_max_pool_winners(model, net, x)
    use_winners(net, winners)
    cache = net.forward(theta, X, winners=winners)
    # Where PyTorch's argmax differs from sparsecnn's own the values tie: pooling
    # with either set of winners gives the same Z^{m+1}.
    for m, w in winners.items():
        ly = net.conv[m - 1]
        A = ly.sigma.sigma(cache.kept[f"S{m}"])
        own = type(ly).winners(ly, A)
        assert rel(ly.pool(A, own), ly.pool(A, w)) <= 1e-12
    out_t, f_t, model = torch_objective(model, x, y, net.n_L, C)
    g_t = torch_gradient_as_theta(model, (d, a, b))
    f, g = net.backward(cache, y, C)
    errors = [rel(cache.output, out_t), rel(f, f_t), rel(g, g_t)]
    if every_entry_point:
        f2, g2 = net.objective(theta, X, y, C, winners=winners)
        errors = [max(errors[0], rel(net.output(theta, X), out_t)),
                  max(errors[1], rel(f2, f_t)), max(errors[2], rel(g2, g_t))]
    return tuple(errors)


# --------------------------------------------------------- architectures
@st.composite
def architectures(draw):
    a, b, d = draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(st.integers(1, 3))
    layers = []
    ca, cb = a, b
    for _ in range(draw(st.integers(0, 3))):
        p = draw(st.integers(0, 2))
        h = draw(st.integers(1, min(ca + 2 * p, cb + 2 * p, 5)))
        s = draw(st.integers(1, 3))
        a_conv, b_conv = (ca + 2 * p - h) // s + 1, (cb + 2 * p - h) // s + 1
        r = draw(st.integers(1, min(a_conv, b_conv, 3)))
        kw = {}
        if r > 1 and draw(st.sampled_from(POOLS)) != "max":
            kw["pool"] = "avg"
        layers.append(ConvLayer(draw(st.integers(1, 4)), h=h, s=s, p=p, r=r,
                                activation=draw(st.sampled_from(ACTIVATIONS)), **kw))
        ca, cb = a_conv // r, b_conv // r
    for _ in range(draw(st.integers(1, 3))):
        layers.append(FullLayer(draw(st.integers(1, 6)), draw(st.sampled_from([None, *ACTIVATIONS]))))
    l = draw(st.integers(1, 5))
    C = draw(st.sampled_from([np.inf, 0.3, 5.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    return (a, b, d), layers, l, C, seed


def random_problem(net, l, seed, bias_scale=0.5):
    rng = np.random.default_rng(seed)
    Ws, _ = net.unpack(net.init_params(seed=seed))
    theta = net.pack(Ws, [bias_scale * rng.standard_normal(W.shape[0]) for W in Ws])
    X = rng.standard_normal((net.n_input, l))
    y = rng.integers(0, net.n_L, size=l)
    return theta, X, y


SATURATION = {"tanh": 5.0, "sigmoid": 10.0}
"""Largest |S^m| (|s^m|) kept for tanh and sigmoid.  Beyond it ``1 - tanh(S)^2``,
``sigma(S)(1 - sigma(S))`` and ``z - y`` lose digits to cancellation (``1 - tanh(9)^2``
is 6e-8), so a one-ulp difference between NumPy's and PyTorch's ``tanh`` alone
gives relative errors of 1e-9 and more: ill-conditioning, not a wrong formula."""


def saturated(net, theta, X) -> bool:
    cache = net.forward(theta, X)
    return any(np.abs(cache.kept[f"S{ly.m}"]).max() > SATURATION[ly.sigma.name]
               for ly in net.layers if ly.sigma.name in SATURATION)


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_random_architectures_match_torch_float64(arch):
    shape, layers, l, C, seed = arch
    # both orders of activation and max pooling (Network(activate_order=...)) against PyTorch
    net = Network(shape, layers, activate_order=("slides", "pool-first")[seed % 2])
    theta, X, y = random_problem(net, l, seed)
    assume(not saturated(net, theta, X))
    e_out, e_f, e_g = compare(net, theta, X, y, C)
    assert e_out <= TOL, f"output: relative error {e_out:.3g}"
    assert e_f <= TOL, f"f: relative error {e_f:.3g}"
    assert e_g <= TOL, f"gradient: relative error {e_g:.3g}"


def test_saturated_tanh_is_ill_conditioned_not_wrong():
    """Why :data:`SATURATION` exists: at tanh(s) = 1 - 2e-8 the gradient is 2(z - 1)(1 - z^2) x, both
    factors cancellation-prone, so one ulp of tanh moves it by 1e-8 relative.  sparsecnn agrees with
    the formula from its own tanh; the filter recognises the case."""
    net = Network((1, 1, 1), [FullLayer(1, "tanh")])
    theta, X, y = np.array([1.0, 0.0]), np.array([[9.3]]), [0]
    f, g = net.objective(theta, X, y)
    z = np.tanh(9.3)
    np.testing.assert_allclose(g, [2 * (z - 1) * (1 - z * z) * 9.3, 2 * (z - 1) * (1 - z * z)], rtol=1e-14)
    assert saturated(net, theta, X)


# --------------------------------------------------------------- mnist demo
def mnist_demo_network() -> Network:
    return Network((28, 28, 1), [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2),
                                 ConvLayer(64, h=3, p=1, r=2), FullLayer(10)])


def test_mnist_demo_network_matches_torch(shared_data):
    data = loadmat(shared_data / "mnist-demo.mat")
    l = 64
    images = data["Z"][:l].reshape(l, 28, 28)                # each image row by row
    X = images.transpose(0, 2, 1).reshape(l, 784).T / 255.0   # vec(Z^{1,i}): the transposed image, column-major
    y = data["y"][:l, 0].astype(int)
    # one pixel by hand: row 10, column 17 of image 3 is X[10 + 28*17, 3]
    assert X[10 + 28 * 17, 3] == data["Z"][3, 10 * 28 + 17] / 255.0
    net = mnist_demo_network()
    assert net.n_params == 32 * 26 + 64 * 289 + 64 * 577 + 10 * 577
    theta, _, _ = random_problem(net, l, seed=2024, bias_scale=0.1)
    e_out, e_f, e_g = compare(net, theta, X, y, C=0.01 * l, every_entry_point=False)
    assert max(e_out, e_f, e_g) <= TOL, (e_out, e_f, e_g)


# --------------------------------------------------------------------- ties
@pytest.mark.parametrize("r", [2, 3])
def test_pool_indices_rebuild_P_pool_like_torch_with_ties(r):
    """Integer images in {0, 1, 2} with constant regions: many tied windows.  P_pool rebuilt from
    PyTorch's indices gives PyTorch's pooled values and, through P_pool^T, PyTorch's backward."""
    a_conv, b_conv, d, l = 7, 11, 3, 4                       # rectangular, partial windows dropped
    net = Network((a_conv, b_conv, 2), [ConvLayer(d, h=1, r=r), FullLayer(2)])
    ly = net.conv[0]
    rng = np.random.default_rng(r)
    V = rng.integers(0, 3, size=(l, d, a_conv, b_conv)).astype(np.float64)
    V[0] = 1.0                                                 # instance 0 constant
    V[1, :, : 2 * r, : 2 * r] = 2.0                            # a constant region
    v = torch.tensor(V, requires_grad=True)
    out, idx = F.max_pool2d(v, r, return_indices=True)
    G = torch.tensor(rng.standard_normal(out.shape))
    out.backward(G)

    winners = torch_pool_indices_to_winners(idx, net, 1)
    assert winners.shape == (d * (a_conv // r) * (b_conv // r), l)
    A = X_from_torch(V)
    # batch form used by the network, and the slides' single-instance P_pool^{m,i}
    np.testing.assert_array_equal(ly.pool(A, winners), X_from_torch(out))
    np.testing.assert_array_equal(ly.pool_T(X_from_torch(G), winners), X_from_torch(v.grad))
    for i in range(l):
        P = P_pool(a_conv, b_conv, d, r, winners=winners[:, i])
        np.testing.assert_array_equal(P @ A[:, i], X_from_torch(out)[:, i])
        np.testing.assert_array_equal(P.T @ X_from_torch(G)[:, i], X_from_torch(v.grad)[:, i])
    # single instance indices (d, a_out, b_out) give that instance's column
    np.testing.assert_array_equal(torch_pool_indices_to_winners(idx[2], net, 1), winners[:, 2])
    # sparsecnn's own tie rule (first in column-major order) differs from PyTorch's (row-major)
    own = ly.winners(A)
    assert not np.array_equal(own, winners)
    np.testing.assert_array_equal(ly.pool(A, own), X_from_torch(out))          # same values ...
    assert not np.array_equal(ly.pool_T(X_from_torch(G), own), X_from_torch(v.grad))   # ... other routing


def test_pool_indices_torch_example():
    """The window [[1, 5], [5, 1]]: PyTorch picks row 0, column 1; sparsecnn row 1, column 0."""
    net = Network((2, 2, 1), [ConvLayer(1, h=1, r=2), FullLayer(1)])
    v = torch.tensor([[[[1.0, 5.0], [5.0, 1.0]]]], dtype=torch.float64)
    _, idx = F.max_pool2d(v, 2, return_indices=True)
    assert int(idx) == 1
    np.testing.assert_array_equal(torch_pool_indices_to_winners(idx, net, 1), [[2]])   # (r, q) = (0, 1)
    np.testing.assert_array_equal(net.conv[0].winners(X_from_torch(v)), [[1]])          # (r, q) = (1, 0)


def test_gradient_with_ties_matches_torch_only_with_torch_winners():
    """Integer images and filters make many windows of S^1 tie between different sub-images, so
    dxi/dW^1 = dxi/dS^1 phi^T depends on the winners: equal to PyTorch's with PyTorch's winners."""
    net = Network((7, 9, 1), [ConvLayer(2, h=2, r=2), ConvLayer(2, h=1, r=2, activation="identity"),
                              FullLayer(3)])
    rng = np.random.default_rng(0)
    Ws, _ = net.unpack(net.init_params(seed=0))
    Ws[0] = rng.integers(1, 3, size=Ws[0].shape).astype(float)
    Ws[1] = np.ones_like(Ws[1])
    bs = [np.full(W.shape[0], 0.5) for W in Ws]
    theta = net.pack(Ws, bs)
    X = rng.integers(0, 3, size=(net.n_input, 4)).astype(float)
    y = np.array([0, 1, 2, 0])
    # with sparsecnn's own winners the gradient differs from PyTorch's
    a, b, d = net.input_shape
    _, _, model = torch_objective(to_torch(net, theta), X_to_torch(net, X), y, net.n_L, 1.0)
    g_torch = torch_gradient_as_theta(model, (d, a, b))
    assert rel(net.objective(theta, X, y, 1.0)[1], g_torch) > 1e-3
    # with PyTorch's winners everything agrees
    e_out, e_f, e_g = compare(net, theta, X, y, 1.0)
    assert max(e_out, e_f, e_g) <= TOL, (e_out, e_f, e_g)


# ---------------------------------------------------------- the converters
@settings(max_examples=25, deadline=None)
@given(architectures())
def test_from_torch_of_to_torch_is_exact(arch):
    shape, layers, l, C, seed = arch
    net = Network(shape, layers)
    theta, X, _ = random_problem(net, l, seed)
    model = to_torch(net, theta)
    a, b, d = net.input_shape
    net2, theta2 = from_torch(model, (d, a, b))
    np.testing.assert_array_equal(theta2, theta)
    assert net2.input_shape == net.input_shape
    assert [ly.spec for ly in net2.conv] == [ly.spec for ly in net.conv]
    assert [(ly.n_out, ly.sigma.name) for ly in net2.full] == [(ly.n_out, ly.sigma.name) for ly in net.full]
    model2 = to_torch(net2, theta2)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    np.testing.assert_array_equal(model2(X_to_torch(net, X)).detach().numpy(),
                                  model(X_to_torch(net, X)).detach().numpy())
