"""PyTorch interop: layouts written out index by index, round trips, and what from_torch rejects."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sparsecnn import ConfigError, ConvLayer, FullLayer, InputTypeError, Network, ShapeError, vec
from sparsecnn.interop import (
    TorchNotAvailableError,
    X_from_torch,
    X_to_torch,
    flatten_permutation,
    from_torch,
    to_torch,
    torch_pool_indices_to_winners,
)

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover
    torch = None
    nn = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _avg_pool_supported() -> bool:
    try:
        ConvLayer(1, h=1, r=2, pool="avg")
    except ConfigError:
        return False
    return True


# ===================================================== layouts (no torch needed)
def test_X_from_torch_index_formula():
    """X[c + d*(r + a*q), i] = x[i, c, r, q], entry by entry, on a rectangular image."""
    l, d, a, b = 3, 2, 4, 5
    x = np.random.default_rng(0).standard_normal((l, d, a, b))
    X = X_from_torch(x)
    assert X.shape == (d * a * b, l) and X.dtype == np.float64
    for i in range(l):
        for c in range(d):
            for r in range(a):
                for q in range(b):
                    assert X[c + d * (r + a * q), i] == x[i, c, r, q]


def test_X_from_torch_column_is_vec_of_Z1():
    """Column i is vec(Z^{1,i}) with Z^{1,i} the d x ab matrix whose column r + a*q is pixel (r, q)."""
    l, d, a, b = 2, 3, 2, 4
    x = np.random.default_rng(1).standard_normal((l, d, a, b))
    for i in range(l):
        Z = np.empty((d, a * b))
        for r in range(a):
            for q in range(b):
                Z[:, r + a * q] = x[i, :, r, q]
        np.testing.assert_array_equal(X_from_torch(x)[:, i], vec(Z))


def test_flatten_permutation_formula():
    a, b, d = 3, 4, 2
    perm = flatten_permutation(a, b, d)
    assert sorted(perm.tolist()) == list(range(a * b * d))
    for c in range(d):
        for r in range(a):
            for q in range(b):
                assert perm[c + d * (r + a * q)] == c * a * b + r * b + q


@pytest.mark.parametrize("x, error, message", [
    (np.zeros((2, 3, 4)), ShapeError, r"x must have shape \(l, channels, height, width\), got shape \(2, 3, 4\)"),
    ("image", InputTypeError, r"x must be a tensor"),
    (np.zeros((1, 1, 2, 2), dtype=complex), InputTypeError, r"real numeric tensor, got dtype complex128"),
])
def test_X_from_torch_rejects(x, error, message):
    with pytest.raises(error, match=message):
        X_from_torch(x)


# --------------------------------------------- pooling indices (numpy indices)
POOL_NET = Network((6, 7, 1), [ConvLayer(2, h=1, r=1), ConvLayer(3, h=2, r=2), FullLayer(2)])


def test_pool_indices_to_winners_formula():
    """indices[i, c, r_out, q_out] = r*b_conv + q  ->  winners[c + d*(r_out + a_out*q_out), i] = c + d*(r + a_conv*q)."""
    ly = POOL_NET.conv[1]                                    # a_conv x b_conv = 5 x 6, r = 2 -> 2 x 3
    assert (ly.a_conv, ly.b_conv, ly.a_out, ly.b_out, ly.d_out) == (5, 6, 2, 3, 3)
    rng = np.random.default_rng(2)
    l, d = 2, 3
    idx = np.empty((l, d, 2, 3), dtype=np.int64)
    for i in range(l):
        for c in range(d):
            for ro in range(2):
                for qo in range(3):
                    r, q = 2 * ro + rng.integers(2), 2 * qo + rng.integers(2)
                    idx[i, c, ro, qo] = r * 6 + q
    w = torch_pool_indices_to_winners(idx, POOL_NET, 2)
    assert w.shape == (d * 2 * 3, l)
    for i in range(l):
        for c in range(d):
            for ro in range(2):
                for qo in range(3):
                    r, q = divmod(int(idx[i, c, ro, qo]), 6)
                    assert w[c + d * (ro + 2 * qo), i] == c + d * (r + 5 * q)


@pytest.mark.parametrize("m, indices, error, message", [
    (0, np.zeros((1, 3, 2, 3), dtype=int), ConfigError, r"m must be a convolutional layer 1..L\^C = 1..2, got 0"),
    (3, np.zeros((1, 3, 2, 3), dtype=int), ConfigError, r"1..L\^C = 1..2, got 3"),
    (1, np.zeros((1, 2, 6, 7), dtype=int), ConfigError, r"conv layer 1 has no max pooling \(r = 1"),
    (2, np.zeros((1, 3, 3, 2), dtype=int), ShapeError, r"\(l, d\^3, a\^3, b\^3\) = \(l, 3, 2, 3\), got \(1, 3, 3, 2\)"),
    (2, np.full((1, 3, 2, 3), 30), ShapeError, r"must lie in 0..a_conv\*b_conv-1 = 0..29"),
    (2, np.zeros((1, 3, 2, 3)), InputTypeError, r"indices must be integers, got dtype float64"),
])
def test_pool_indices_to_winners_rejects(m, indices, error, message):
    with pytest.raises(error, match=message):
        torch_pool_indices_to_winners(indices, POOL_NET, m)


def test_pool_indices_outside_their_window_rejected():
    idx = np.zeros((1, 3, 2, 3), dtype=np.int64)               # every window claims pixel (0, 0)
    with pytest.raises(ShapeError, match=r"is not inside window"):
        torch_pool_indices_to_winners(idx, POOL_NET, 2)


@pytest.mark.skipif(not _avg_pool_supported(), reason="average pooling not available")
def test_pool_indices_rejected_for_average_pooling():
    net = Network((4, 4, 1), [ConvLayer(1, h=1, r=2, pool="avg"), FullLayer(1)])
    with pytest.raises(ConfigError, match=r"no max pooling .*'avg'"):
        torch_pool_indices_to_winners(np.zeros((1, 1, 2, 2), dtype=int), net, 1)


# ------------------------------------------------------------- without torch
def test_import_sparsecnn_does_not_need_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import sparsecnn, sparsecnn.interop\n"
            "from sparsecnn.interop import to_torch, TorchNotAvailableError\n"
            "net = sparsecnn.Network((2, 2, 1), [sparsecnn.FullLayer(2)])\n"
            "try:\n"
            "    to_torch(net, net.init_params(0))\n"
            "except ImportError as e:\n"
            "    assert isinstance(e, TorchNotAvailableError), type(e)\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install torch==2.13.0" in out.stdout


@pytest.mark.parametrize("call", ["to_torch", "from_torch", "X_to_torch"])
def test_missing_torch_error_says_how_to_install(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "torch", None)
    net = Network((2, 2, 1), [FullLayer(2)])
    calls = {
        "to_torch": lambda: to_torch(net, net.init_params(0)),
        "from_torch": lambda: from_torch(object(), (1, 2, 2)),
        "X_to_torch": lambda: X_to_torch(net, np.zeros((4, 1))),
    }
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0") as info:
        calls[call]()
    assert isinstance(info.value, TorchNotAvailableError)


# ============================================================== with torch
@needs_torch
def test_X_to_torch_index_formula_and_round_trip():
    a, b, d, l = 3, 5, 2, 4
    net = Network((a, b, d), [FullLayer(2)])
    X = np.random.default_rng(3).standard_normal((d * a * b, l))
    for arg in (net, (a, b, d)):
        x = X_to_torch(arg, X)
        assert tuple(x.shape) == (l, d, a, b) and x.dtype == torch.float64
        for i in range(l):
            for c in range(d):
                for r in range(a):
                    for q in range(b):
                        assert x[i, c, r, q].item() == X[c + d * (r + a * q), i]
        np.testing.assert_array_equal(X_from_torch(x), X)
    x = torch.randn(l, d, a, b, dtype=torch.float64)
    assert torch.equal(X_to_torch(net, X_from_torch(x)), x)


@needs_torch
def test_X_to_torch_options_and_errors():
    net = Network((3, 4, 5), [FullLayer(2)])
    assert X_to_torch(net, np.zeros(60), dtype=torch.float32).shape == (1, 5, 3, 4)
    assert X_to_torch(net, np.zeros((60, 2)), dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ShapeError, match=r"X must have d\*a\*b = 60 rows, got 59"):
        X_to_torch(net, np.zeros((59, 2)))
    with pytest.raises(InputTypeError, match=r"input_shape \(a, b, d\)"):
        X_to_torch((3, 4), np.zeros((12, 1)))
    with pytest.raises(ConfigError, match=r"d must be a positive integer, got 0"):
        X_to_torch((3, 4, 0), np.zeros((12, 1)))


@needs_torch
def test_flatten_permutation_matches_torch_flatten():
    a, b, d = 3, 4, 2
    x = torch.randn(1, d, a, b, dtype=torch.float64)
    flat = torch.flatten(x, 1)[0].numpy()
    np.testing.assert_array_equal(flat[flatten_permutation(a, b, d)], X_from_torch(x)[:, 0])


MIXED = ((10, 9, 2), [ConvLayer(3, h=3, p=1, s=2, r=2, activation="tanh"), ConvLayer(2, h=1, activation="leaky_relu"),
                     FullLayer(5, "sigmoid"), FullLayer(4), FullLayer(3)])


@needs_torch
def test_to_torch_modules_and_parameter_layout():
    net = Network(*MIXED)
    theta = np.random.default_rng(4).standard_normal(net.n_params)
    model = to_torch(net, theta)
    kinds = [type(mod).__name__ for mod in model]
    assert kinds == ["Conv2d", "Tanh", "MaxPool2d", "Conv2d", "LeakyReLU", "Flatten",
                     "Linear", "Sigmoid", "Linear", "ReLU", "Linear", "Identity"]
    assert model[4].negative_slope == 0.01 and model[2].kernel_size == 2 and model[2].stride == 2
    assert model[0].stride == (2, 2) and model[0].padding == (1, 1) and model[0].kernel_size == (3, 3)
    W, b = net.unpack(theta)
    for conv, m in ((model[0], 1), (model[3], 2)):
        w = conv.weight.detach().numpy()
        o_n, c_n, h, _ = w.shape
        for o in range(o_n):
            for c in range(c_n):
                for r in range(h):
                    for q in range(h):
                        assert w[o, c, r, q] == W[m - 1][o, r + h * q + h * h * c]
        np.testing.assert_array_equal(conv.bias.detach().numpy(), b[m - 1])
    # the first Linear: columns permuted from vec(Z^3) (c + d*(r + a*q)) to torch's flatten order
    ly = net.conv[-1]
    a, bb, d = ly.a_out, ly.b_out, ly.d_out
    assert (a, bb, d) == (2, 2, 2)
    assert not np.array_equal(flatten_permutation(a, bb, d), np.arange(8))
    lin = model[6].weight.detach().numpy()
    for k in range(lin.shape[0]):
        for c in range(d):
            for r in range(a):
                for q in range(bb):
                    assert lin[k, c * a * bb + r * bb + q] == W[2][k, c + d * (r + a * q)]
    np.testing.assert_array_equal(model[8].weight.detach().numpy(), W[3])
    np.testing.assert_array_equal(model[10].weight.detach().numpy(), W[4])
    np.testing.assert_array_equal(model[10].bias.detach().numpy(), b[4])


@needs_torch
def test_to_torch_first_linear_permutation_with_a_real_permutation():
    """A 3 x 4 x 2 image entering the first Linear directly: the permutation is not the identity."""
    net = Network((3, 4, 2), [FullLayer(3), FullLayer(2)])
    theta = np.random.default_rng(5).standard_normal(net.n_params)
    model = to_torch(net, theta)
    W = net.unpack(theta)[0][0]
    lin = model[1].weight.detach().numpy()
    assert not np.array_equal(lin, W)
    np.testing.assert_array_equal(lin[:, flatten_permutation(3, 4, 2)], W)
    X = np.random.default_rng(6).standard_normal((24, 5))
    np.testing.assert_allclose(model(X_to_torch(net, X)).detach().numpy().T, net.output(theta, X),
                               rtol=1e-13, atol=1e-14)


@needs_torch
def test_to_torch_output_and_dtype():
    net = Network(*MIXED)
    theta = net.init_params(seed=7)
    X = np.random.default_rng(7).standard_normal((net.n_input, 6))
    out = to_torch(net, theta)(X_to_torch(net, X)).detach().numpy().T
    np.testing.assert_allclose(out, net.output(theta, X), rtol=1e-12, atol=1e-14)
    model32 = to_torch(net, theta, dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in model32.parameters())
    out32 = model32(X_to_torch(net, X, dtype=torch.float32)).detach().numpy().T
    np.testing.assert_allclose(out32, net.output(theta, X), rtol=1e-4, atol=1e-5)


@needs_torch
def test_from_torch_hand_written_model():
    """Nested Sequential, Identity modules, a Conv2d without activation, pooling right after a Conv2d,
    padding='valid', stride=None pooling; float32 parameters are read exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Identity(),
        nn.Conv2d(4, 5, (2, 2), stride=(1, 1), padding="valid"),           # no activation: identity
        nn.Conv2d(5, 2, 1), nn.MaxPool2d(kernel_size=(2, 2), stride=None),   # pool without activation
        nn.Flatten(),
        nn.Linear(2 * 1 * 2, 6), nn.LeakyReLU(), nn.Identity(),
        nn.Linear(6, 3),
    ).to(torch.float64)
    net, theta = from_torch(model, (3, 8, 10))
    assert net.input_shape == (8, 10, 3)
    assert [ly.spec for ly in net.conv] == [ConvLayer(4, h=3, p=1, r=2), ConvLayer(5, h=2, activation="identity"),
                                            ConvLayer(2, h=1, r=2, activation="identity")]
    assert [ly.spec for ly in net.full] == [FullLayer(6, "leaky_relu"), FullLayer(3)]
    x = torch.randn(4, 3, 8, 10, dtype=torch.float64)
    np.testing.assert_allclose(net.output(theta, X_from_torch(x)), model(x).detach().numpy().T,
                               rtol=1e-12, atol=1e-14)
    # back to PyTorch: the same parameters, bit for bit
    params = list(to_torch(net, theta).parameters())
    assert len(params) == len(list(model.parameters()))
    for p, q in zip(params, model.parameters(), strict=True):
        assert torch.equal(p, q)
    # float32 model: theta holds the float32 values exactly, to_torch(float32) gives them back
    model32 = model.to(torch.float32)
    net32, theta32 = from_torch(model32, (3, 8, 10))
    assert theta32.dtype == np.float64
    for p, q in zip(to_torch(net32, theta32, dtype=torch.float32).parameters(), model32.parameters(), strict=True):
        assert torch.equal(p, q)


@needs_torch
def test_from_torch_default_activations_give_default_full_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    net, _ = from_torch(model, (1, 2, 2))
    assert [ly.spec for ly in net.full] == [FullLayer(3), FullLayer(2)]
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2), nn.Tanh()).double()
    net, _ = from_torch(model, (1, 2, 2))
    assert [ly.spec for ly in net.full] == [FullLayer(3, "identity"), FullLayer(2, "tanh")]


@needs_torch
@pytest.mark.skipif(not _avg_pool_supported(), reason="average pooling not available")
def test_from_torch_average_pooling():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 2)).double()
    net, theta = from_torch(model, (1, 6, 10))
    assert net.conv[0].spec == ConvLayer(2, h=3, r=2, activation="sigmoid", pool="avg")
    x = torch.randn(3, 1, 6, 10, dtype=torch.float64)
    np.testing.assert_allclose(net.output(theta, X_from_torch(x)), model(x).detach().numpy().T, rtol=1e-12)
    assert isinstance(to_torch(net, theta)[2], nn.AvgPool2d)


@needs_torch
def test_item1_padding_same_with_an_odd_kernel_is_read_as_p_equal_h_minus_1_over_2():
    """``Conv2d(..., padding="same")`` (stride 1, odd ``h``) pads ``(h - 1)/2`` on every side: ``P_pad`` with that ``p``."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 3, 5, padding="same")
            self.w2 = nn.Parameter(torch.randn(2, 3, 3, 3))
            self.fc = nn.Linear(2 * 3 * 3, 4)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(torch.tanh(F.conv2d(x, self.w2, padding="same")), 2)   # bias-free, functional
            return self.fc(torch.flatten(x, 1))

    F = torch.nn.functional
    model = Net().double().eval()
    net, theta = from_torch(model, (1, 12, 12))
    assert [(ly.spec.h, ly.spec.p) for ly in net.conv] == [(5, 2), (3, 1)]
    x = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    np.testing.assert_allclose(net.output(theta, X_from_torch(x)), model(x).detach().numpy().T, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------- rejections
# Each model is rejected while it is read, at the module named, before any size is checked.
REJECTIONS = {
    "dilation": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), r"dilation = \(2, 2\) \(only 1\)"),
    "groups": (lambda: nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), r"groups = 2 \(only 1\)"),
    "padding_mode_reflect": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
                             r"padding_mode = 'reflect' \(only 'zeros'\)"),
    "padding_same_even_kernel": (lambda: nn.Sequential(nn.Conv2d(1, 2, 4, padding="same")),
                                 r"padding = 'same' with an even kernel h = 4: PyTorch then pads 1 before and 2 after"),
    "non_square_kernel": (lambda: nn.Sequential(nn.Conv2d(1, 2, (3, 2))), r"kernel_size = \(3, 2\) is not square"),
    "unequal_stride": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, stride=(1, 2))),
                       r"stride = \(1, 2\) differs between directions"),
    "unequal_padding": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=(1, 0))),
                        r"padding = \(1, 0\) differs between directions"),
    "batchnorm": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)),
                  r"node _1 \[module 1 \(BatchNorm2d\)\], no source line \(called by nn.Sequential\): "
                  r"module BatchNorm2d is not supported"),
    "dropout_in_training_mode": (lambda: nn.Sequential(nn.Flatten(), nn.Dropout(), nn.Linear(36, 2)),
                                 r"Dropout\(p=0.5\) in training mode .* call model.eval\(\) first"),
    "relu6": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU6()), r"module ReLU6 is not supported"),
    "leaky_slope": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.2)), r"negative_slope = 0.2 \(only 0.01\)"),
    "maxpool_kernel_ne_stride": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(3, stride=2)),
                                 r"kernel_size = 3 differs from stride = 2"),
    "maxpool_ceil_mode": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2, ceil_mode=True)),
                          r"ceil_mode=True"),
    "maxpool_padding": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2, padding=1)), r"padding = 1 \(only 0\)"),
    "maxpool_dilation": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2, dilation=2)), r"dilation = 2 \(only 1\)"),
    "maxpool_return_indices": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2, return_indices=True)),
                               r"return_indices=True"),
    "maxpool_non_square": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d((2, 3))), r"kernel_size = \(2, 3\) is not square"),
    "avgpool_ceil_mode": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.AvgPool2d(2, ceil_mode=True)), r"ceil_mode=True"),
    "avgpool_divisor": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.AvgPool2d(2, divisor_override=3)),
                        r"divisor_override = 3"),
    "avgpool_kernel_ne_stride": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.AvgPool2d(2, stride=1)),
                                 r"kernel_size = 2 differs from stride = 1"),
    "adaptive_pool": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.AdaptiveAvgPool2d(1)),
                      r"module AdaptiveAvgPool2d is not supported"),
    "pool_first": (lambda: nn.Sequential(nn.MaxPool2d(2)), r"pooling must follow a Conv2d"),
    "activation_after_avg_pool": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.AvgPool2d(2), nn.ReLU()),
                                  r"an activation after average pooling: .* apply the activation before"),
    "two_activations": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Tanh()),
                        r"a second activation after 'relu'"),
    "two_pools": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.MaxPool2d(2), nn.MaxPool2d(1)),
                  r"a second pooling in one layer"),
    "activation_first": (lambda: nn.Sequential(nn.ReLU()), r"an activation must follow a Conv2d or a Linear"),
    "activation_after_flatten": (lambda: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.ReLU()),
                                 r"an activation must follow a Conv2d or a Linear"),
    "conv_after_flatten": (lambda: nn.Sequential(nn.Flatten(), nn.Conv2d(1, 2, 1)), r"a Conv2d after the image was flattened"),
    "linear_before_flatten": (lambda: nn.Sequential(nn.Linear(6, 2)), r"a Linear before the image is flattened"),
    "two_flattens": (lambda: nn.Sequential(nn.Flatten(), nn.Flatten(), nn.Linear(36, 2)), r"a second flatten"),
    "flatten_start_dim": (lambda: nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(36, 2)),
                          r"start_dim = 2, end_dim = -1 \(only 1 and -1"),
}


@needs_torch
@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_from_torch_rejects(case):
    build, message = REJECTIONS[case]
    with pytest.raises(ConfigError, match=message) as info:
        from_torch(build(), (1, 6, 6))
    assert "supported: Conv2d" in str(info.value)


@needs_torch
def test_from_torch_rejects_models_it_cannot_read():
    with pytest.raises(ConfigError, match=r"model must be a torch.nn.Module, got list; supported: Conv2d"):
        from_torch([nn.Linear(4, 2)], (1, 2, 2))
    with pytest.raises(ConfigError, match=r"call torch.nn.functional.linear\].*a Linear before the image is flattened"):
        from_torch(nn.Linear(4, 2), (1, 2, 2))
    with pytest.raises(ConfigError, match=r"model must end with a Linear"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 1)), (1, 2, 2))
    with pytest.raises(ConfigError, match=r"input_shape must be \(channels, height, width\)"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (2, 2))
    with pytest.raises(ConfigError, match=r"input_shape must be \(channels, height, width\) of positive integers"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (0, 2, 2))


@needs_torch
def test_from_torch_checks_sizes_against_the_input_shape():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match=r"module 0 \(Conv2d\)\].*: in_channels = 3, but .* conv layer 1 has d\^1 = 1"):
        from_torch(model, (1, 4, 4))
    with pytest.raises(ConfigError, match=r"module 2 \(Linear\)\].*: in_features = 8, but full layer 2 receives n_2 = 18"):
        from_torch(model, (3, 5, 5))
    with pytest.raises(ConfigError, match=r"filter width h = 3 .* 2 x 2"):
        from_torch(model, (3, 2, 2))
