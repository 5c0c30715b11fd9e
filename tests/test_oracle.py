"""The oracle: ``sparsecnn.check`` finds planted bugs where they are and passes correct models.

Planted bugs are PyTorch modules that ``from_torch`` reads (subclasses of the
supported ones) whose forward pass is right but whose backward pass, through a
custom ``autograd.Function``, is not:

- a ReLU whose backward lets negative inputs through (layer 2 of 3);
- a Conv2d whose weight gradient comes back with each filter transposed;
- a MaxPool2d whose backward routes the gradient to the first entry of every
  window instead of its maximum.

In each case the report fails, the first failing block in backward order is in
the planted layer, and the blocks of the layers after it (which the backward
pass reaches first) pass.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sparsecnn  # noqa: E402
from sparsecnn import ConvLayer, FullLayer, Network, SparseCNNError, to_torch  # noqa: E402
from sparsecnn.engine import winner_positions  # noqa: E402
from sparsecnn.interop import X_from_torch, from_torch, torch_pool_indices_to_winners  # noqa: E402
from sparsecnn.oracle import CheckReport, OracleMismatch, check  # noqa: E402
from sparsecnn.oracle.check import reference_forward, reference_products  # noqa: E402
from sparsecnn.oracle.golden import winners_to_torch  # noqa: E402
from sparsecnn.oracle.layouts import (  # noqa: E402
    ParameterIndex,
    theta_to_torch,
    torch_flat_to_theta,
    torch_module_descriptions,
    torch_parameters,
    torch_to_theta,
)
from sparsecnn.second_order import GaussNewton  # noqa: E402


# ------------------------------------------------------------ planted bugs
class _LeakyBackwardReLU(torch.autograd.Function):
    """ReLU forward; backward passes the gradient through negative inputs too (the bug).
    Its forward-mode derivative is right, so J v is right and J^T u is not."""

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        return g                                   # should be g * (x > 0)

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * (x > 0)


class LeakyBackwardReLU(nn.ReLU):
    def forward(self, x):
        return _LeakyBackwardReLU.apply(x)


class _TransposedFilterConv(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b, stride, padding):
        return F.conv2d(x, w, b, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, _, stride, padding = inputs
        ctx.save_for_backward(x, w)
        ctx.stride, ctx.padding = stride, padding

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = torch.nn.grad.conv2d_input(x.shape, w, g, ctx.stride, ctx.padding)
        gw = torch.nn.grad.conv2d_weight(x, w.shape, g, ctx.stride, ctx.padding)
        return gx, gw.transpose(2, 3), g.sum(dim=(0, 2, 3)), None, None   # gw transposed: the bug


class TransposedFilterConv(nn.Conv2d):
    def forward(self, x):
        return _TransposedFilterConv.apply(x, self.weight, self.bias, self.stride, self.padding)


class _FirstEntryMaxPool(torch.autograd.Function):
    """Max pooling forward; backward sends each window's gradient to its top-left entry."""

    @staticmethod
    def forward(x, r):
        return F.max_pool2d(x, r)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.shape, ctx.r = inputs[0].shape, inputs[1]

    @staticmethod
    def backward(ctx, g):
        out = g.new_zeros(ctx.shape)
        r = ctx.r
        a_out, b_out = g.shape[2], g.shape[3]
        out[:, :, 0:a_out * r:r, 0:b_out * r:r] = g      # should go to the argmax
        return out, None


class FirstEntryMaxPool(nn.MaxPool2d):
    def forward(self, x):
        return _FirstEntryMaxPool.apply(x, self.kernel_size)


def three_layer_model(conv2=None, act2=None, pool1=None, dtype=torch.float64, seed=0):
    """conv 1 (ReLU, 2x2 max pool) -> conv 2 (ReLU) -> Linear: the planted modules go in by argument."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool1 or nn.MaxPool2d(2),
        conv2 or nn.Conv2d(3, 4, 3, padding=1), act2 or nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.to(dtype)


def data(l=6, shape=(2, 8, 8), seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(l, *shape, generator=g, dtype=dtype), np.arange(l) % 5


def assert_first_failure_in(report: CheckReport, product: str, layer: int) -> None:
    rows = [r for r in report.rows if r.product == product and r.m is not None]
    assert [r.m for r in rows] == sorted((r.m for r in rows), reverse=True), "rows not in backward order"
    first = next(r for r in rows if not r.passed)
    assert first.m == layer, report
    assert all(r.passed for r in rows if r.m > layer), report
    assert report.first_failing_layer(product) == layer


# ------------------------------------------------------------- bugs found
def test_relu_with_wrong_backward_is_found_in_layer_2():
    x, y = data()
    model = three_layer_model(act2=LeakyBackwardReLU())
    report = check(model, x, y, products=("grad", "Jv", "JTv", "Gv"))
    assert not report.passed
    assert report.row("output", "z^{L+1}").passed and report.row("f", "f").passed   # forward is right
    assert_first_failure_in(report, "grad", 2)
    assert_first_failure_in(report, "JTv", 2)
    assert_first_failure_in(report, "Gv", 2)
    assert report.row("Jv", "J v").passed                 # forward-mode derivative is right
    first = report.first_failure()
    assert (first.product, first.name, first.m, first.torch_name) == ("grad", "W^2", 2, "3.weight")
    text = str(report)
    assert "FAILED" in text and "first failure in backward order: grad W^2 (layer 2, torch 3.weight)" in text
    assert "worst entries of grad W^2 (3.weight)" in text


def test_transposed_filter_gradient_is_found_in_its_layer():
    x, y = data()
    model = three_layer_model(conv2=TransposedFilterConv(3, 4, 3, padding=1))
    report = check(model, x, y)
    assert not report.passed
    assert_first_failure_in(report, "grad", 2)
    assert [r.name for r in report.failures()] == ["W^2"]  # b^2 and the layer below are right
    # the worst entries are named in both layouts and hold the values of both sides
    row = report.row("grad", "W^2")
    net, theta = from_torch(model, (2, 8, 8))
    ref, _ = reference_products(net, theta, X_from_torch(x), y, np.inf, products=["grad"])
    out = model(x)
    Y = F.one_hot(torch.as_tensor(y), 5).to(out.dtype)
    loss = ((out - Y) ** 2).sum() / len(y)
    grads = dict(zip([k for k, _ in model.named_parameters()],
                     torch.autograd.grad(loss, list(model.parameters())), strict=True))
    for w in row.worst:
        k = int(re.match(r"theta\[(\d+)\] = W\^2\[(\d+), (\d+)\]", w.ours_index).group(1))
        assert w.ours == ref["grad"][k]
        name, idx = re.fullmatch(r"(\S+)\[([\d, ]+)\]", w.torch_index).groups()
        assert name == "3.weight"
        assert w.theirs == float(grads[name][tuple(int(i) for i in idx.split(","))])
        o, j = map(int, re.search(r"W\^2\[(\d+), (\d+)\]", w.ours_index).groups())
        c, q, r = j // 9, (j % 9) // 3, j % 3                   # j = r + h*q + h*h*c
        assert tuple(int(i) for i in idx.split(",")) == (o, c, r, q)


def test_wrong_pooling_gradient_is_found_in_its_layer():
    x, y = data()
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), FirstEntryMaxPool(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).double()
    report = check(model, x, y, products="grad,JTv")
    assert not report.passed
    assert report.row("output", "z^{L+1}").passed
    assert_first_failure_in(report, "grad", 2)
    assert_first_failure_in(report, "JTv", 2)
    assert not report.row("grad", "W^1").passed           # the wrong dS^2 reaches layer 1


def test_planted_bug_in_a_float32_model_is_found():
    x, y = data(dtype=torch.float32)
    model = three_layer_model(act2=LeakyBackwardReLU(), dtype=torch.float32)
    report = check(model, x, y)
    assert_first_failure_in(report, "grad", 2)
    assert report.row("grad", "W^2").rel_err_eps > 1e4


def test_raise_on_fail_raises_oracle_mismatch_with_the_table():
    x, y = data()
    model = three_layer_model(act2=LeakyBackwardReLU())
    with pytest.raises(OracleMismatch) as info:
        check(model, x, y, raise_on_fail=True)
    err = info.value
    assert isinstance(err, SparseCNNError) and isinstance(err, AssertionError)
    assert err.report.first_failing_layer() == 2
    assert err.report.table() in str(err)
    assert "FAIL" in str(err)


def test_old_style_autograd_function_falls_back_to_autograd():
    """An autograd.Function without setup_context cannot enter torch.func: J^T u falls back to
    torch.autograd.grad and J v to double backward; the report says so."""
    class _Old(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x > 0)

    class OldReLU(nn.ReLU):
        def forward(self, x):
            return _Old.apply(x)

    x, y = data()
    report = check(three_layer_model(act2=OldReLU()), x, y, products="grad,Jv,JTv,Gv")
    assert report.passed, report
    text = str(report)
    assert "double backward" in text and "torch.autograd.grad" in text


# ------------------------------------------------------------ correct models
def test_correct_model_passes_and_the_report_reads_well():
    x, y = data()
    model = three_layer_model()
    report = check(model, x, y, products=["grad", "Jv", "JTv", "Gv"], C=3.0)
    assert report.passed, report
    assert report.failures() == [] and report.first_failure() is None
    assert [(r.product, r.name) for r in report.rows][:7] == [
        ("forward", "Z^2"), ("forward", "Z^3"), ("forward", "Z^4"),
        ("output", "z^{L+1}"), ("f", "f"), ("grad", "W^3"), ("grad", "b^3")]
    table = report.table()
    assert table.splitlines()[0].split()[:4] == ["product", "block", "layer", "torch"]
    assert "rel [eps64]" in table
    text = str(report)
    assert text.rstrip().endswith("rows within tolerance") and "PASSED" in text
    assert "u = rng.standard_normal((n_L, l))" in text and "C = 3" in text
    assert "max pooling: P_pool built from the model's winners" in text
    # the inputs are kept to reproduce the check: v in theta's order, u as (n_L, l)
    net, theta = from_torch(model, (2, 8, 8))
    np.testing.assert_array_equal(report.inputs["theta"], theta)
    assert report.inputs["v"].shape == (net.n_params,) and report.inputs["u"].shape == (5, 6)
    ref, _ = reference_products(net, theta, report.inputs["X"], y, 3.0, v=report.inputs["v"],
                                u=report.inputs["u"], winners={1: report.inputs["winners/1"]})
    assert report.row("Jv", "J v").worst[0].ours in ref["Jv"]


def test_float32_model_errors_in_eps32_units():
    net = Network((8, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(4, h=3, p=1), FullLayer(5)])
    theta = net.init_params(seed=3)
    model = to_torch(net, theta, dtype=torch.float32)
    x, y = data()
    report = check(model, x, y, products="grad,Jv,JTv,Gv")
    assert report.passed, report
    eps32 = float(np.finfo(np.float32).eps)
    for r in report.rows:
        assert r.eps == eps32 and r.rtol == pytest.approx(1e4 * eps32)
        assert r.rel_err_eps == pytest.approx(r.rel_err / eps32)
        assert r.rel_err_eps < 100            # a few eps32, far from the 1e4 eps32 tolerance
    assert "rel [eps32]" in report.table()
    # the same model in float64 is judged at 1e-9
    report64 = check(to_torch(net, theta), x, y)
    assert report64.passed and report64.rows[0].rtol == 1e-9


def test_x_in_sparsecnn_layout_gives_the_same_report():
    x, y = data()
    model = three_layer_model()
    r1 = check(model, x, y, products="grad,JTv", seed=4)
    r2 = check(model, X=X_from_torch(x), y=y, input_shape=(2, 8, 8), products="grad,JTv", seed=4)
    assert [(r.product, r.name, r.abs_err) for r in r1.rows] == [(r.product, r.name, r.abs_err) for r in r2.rows]


def test_bad_arguments_are_refused():
    x, y = data()
    model = three_layer_model()
    with pytest.raises(SparseCNNError, match="either as x"):
        check(model, x, y, X=X_from_torch(x))
    with pytest.raises(SparseCNNError, match="input_shape"):
        check(model, X=X_from_torch(x), y=y)
    with pytest.raises(SparseCNNError, match="unknown product"):
        check(model, x, y, products="grad,hessian")
    with pytest.raises(SparseCNNError, match="labels"):
        check(model, x, np.full(len(y), 7))
    with pytest.raises(SparseCNNError, match="shape"):
        check(model, x[0], y)


# --------------------------------------------------------------------- ties
def tie_problem():
    """Integer images and filters: many windows of S^1 tie between different entries."""
    net = Network((7, 9, 1), [ConvLayer(2, h=2, r=2), ConvLayer(2, h=1, r=2, activation="identity"),
                              FullLayer(3)])
    rng = np.random.default_rng(0)
    Ws, _ = net.unpack(net.init_params(seed=0))
    Ws[0] = rng.integers(1, 3, size=Ws[0].shape).astype(float)
    Ws[1] = np.ones_like(Ws[1])
    theta = net.pack(Ws, [np.full(W.shape[0], 0.5) for W in Ws])
    X = rng.integers(0, 3, size=(net.n_input, 4)).astype(float)
    return net, theta, X, np.array([0, 1, 2, 0])


def test_ties_with_model_winners_pass_and_are_reported():
    net, theta, X, y = tie_problem()
    model = to_torch(net, theta)
    report = check(model, X=X, y=y, input_shape=(1, 7, 9), products="grad,Jv,JTv,Gv")
    assert report.passed, report
    assert report.ties_present
    t1 = report.ties[0]
    assert t1.m == 1 and t1.differ > 0 and t1.exact == t1.differ and t1.near == 0
    assert "ties present" in str(report)


def test_ties_with_sparsecnn_winners_differ_and_the_report_says_why():
    net, theta, X, y = tie_problem()
    report = check(to_torch(net, theta), X=X, y=y, input_shape=(1, 7, 9), use_model_winners=False)
    assert not report.passed                               # other routing of the gradient
    assert report.row("output", "z^{L+1}").passed          # same pooled values
    assert report.ties_present
    assert "rerun with use_model_winners=True" in str(report)


def test_float32_near_ties_use_the_models_winners():
    """Rounded to float32 the model may see another maximum than the float64 reference; with its
    winners P_pool is still the same on both sides."""
    net, theta, X, y = tie_problem()
    X = X + 1e-9 * np.random.default_rng(1).standard_normal(X.shape)   # ties broken below float32 precision
    model = to_torch(net, theta, dtype=torch.float32)
    report = check(model, X=X, y=y, input_shape=(1, 7, 9))
    assert report.passed, report
    assert report.ties_present


# ---------------------------------------------------- the reference itself
def test_reference_forward_is_the_engines_store_all_forward_on_both_backends():
    net, theta, X, _ = tie_problem()
    Ws, bs = net.unpack(theta)
    out2, kept2 = reference_forward(net, Ws, bs, X)
    for backend, tol in (("reference", 0.0), ("fast", 1e-12)):
        cache = net.replace(backend=backend, activate_order="slides").forward(theta, X)
        np.testing.assert_allclose(cache.output, out2, rtol=tol, atol=tol)
        assert sorted(cache.kept) == sorted(kept2)
        for k, v in cache.kept.items():
            if k.startswith("pool"):                                   # kept as offsets; positions given back
                v = winner_positions(net.layers[int(k[4:]) - 1], v)
                np.testing.assert_array_equal(v, kept2[k])
            else:
                np.testing.assert_allclose(v, kept2[k], rtol=tol, atol=tol)


def test_reference_products_match_the_public_api():
    net = Network((6, 6, 2), [ConvLayer(3, h=3, p=1, r=2, activation="tanh"), FullLayer(4, "sigmoid"),
                              FullLayer(3)])
    theta = net.init_params(seed=1)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((72, 5)), rng.integers(0, 3, 5)
    v, u = rng.standard_normal(net.n_params), rng.standard_normal((3, 5))
    ref, _ = reference_products(net, theta, X, y, 2.0, v=v, u=u)
    f, g = net.objective(theta, X, y, 2.0)
    G = GaussNewton(net, theta, X)
    np.testing.assert_allclose(ref["f"], f, rtol=1e-14)
    np.testing.assert_allclose(ref["grad"], g, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ref["Jv"], G.Jv(v), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ref["JTv"], G.JTv(u), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ref["Gv"], G @ v, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------- layouts
def test_layouts_agree_with_to_torch_and_from_torch():
    net = Network((5, 7, 2), [ConvLayer(3, h=3, p=1, s=1, r=2), ConvLayer(2, h=2, r=1), FullLayer(4),
                              FullLayer(3)])
    theta = np.arange(net.n_params, dtype=np.float64)      # each entry holds its own position
    model = to_torch(net, theta)
    params = torch_parameters(net)
    assert [p.name for p in params] == list(model.state_dict())
    for p in params:
        np.testing.assert_array_equal(model.state_dict()[p.name].numpy(), p.theta_index)
    assert torch_module_descriptions(net) == [str(mod) for mod in model]
    arrays = theta_to_torch(params, theta)
    np.testing.assert_array_equal(torch_to_theta(params, arrays, net.n_params), theta)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    np.testing.assert_array_equal(torch_flat_to_theta(params, flat), theta)
    np.testing.assert_array_equal(from_torch(model, (2, 5, 7))[1], theta)
    where = ParameterIndex(net)
    rng = np.random.default_rng(0)
    state = model.state_dict()
    for k in rng.integers(0, net.n_params, 40):
        name, idx = re.fullmatch(r"(\S+)\[([\d, ]+)\]", where.torch(int(k))).groups()
        assert state[name][tuple(int(i) for i in idx.split(","))] == k
        sym, o, j = re.fullmatch(r"([Wb])\^\d+\[(\d+)(?:, (\d+))?\]", where.ours(int(k))).groups()
        Ws, bs = net.unpack(theta)
        m = where.layer(int(k))
        assert (Ws[m - 1][int(o), int(j)] if sym == "W" else bs[m - 1][int(o)]) == k


def test_winners_round_trip_between_layouts():
    net = Network((7, 9, 2), [ConvLayer(3, h=2, r=3), FullLayer(2)])
    rng = np.random.default_rng(0)
    idx = torch.as_tensor(rng.integers(0, 3, size=(4, 3, 2, 2)))
    # any index inside its own window: row 3*r_out + dr, column 3*q_out + dq
    r_out, q_out = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    dr, dq = rng.integers(0, 3, (4, 3, 2, 2)), rng.integers(0, 3, (4, 3, 2, 2))
    idx = torch.as_tensor((3 * r_out + dr) * net.conv[0].b_conv + 3 * q_out + dq)
    winners = torch_pool_indices_to_winners(idx, net, 1)
    np.testing.assert_array_equal(winners_to_torch(winners, net, 1), idx.numpy())


# ------------------------------------------------------- random architectures
ACTS = ["relu", "identity", "tanh", "sigmoid", "leaky_relu"]


@st.composite
def architectures(draw):
    a, b, d = draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(1, 3))
    layers = []
    ca, cb = a, b
    for _ in range(draw(st.integers(0, 2))):
        p = draw(st.integers(0, 1))
        h = draw(st.integers(1, min(ca + 2 * p, cb + 2 * p, 3)))
        s = draw(st.integers(1, 2))
        a_conv, b_conv = (ca + 2 * p - h) // s + 1, (cb + 2 * p - h) // s + 1
        r = draw(st.integers(1, min(a_conv, b_conv, 2)))
        pool = draw(st.sampled_from(["max", "avg"])) if r > 1 else "max"
        layers.append(ConvLayer(draw(st.integers(1, 3)), h=h, s=s, p=p, r=r,
                                activation=draw(st.sampled_from(ACTS)), pool=pool))
        ca, cb = a_conv // r, b_conv // r
    for _ in range(draw(st.integers(1, 2))):
        layers.append(FullLayer(draw(st.integers(1, 5)), draw(st.sampled_from([None, *ACTS]))))
    return (a, b, d), layers, draw(st.integers(1, 4)), draw(st.sampled_from([np.inf, 0.5])), \
        draw(st.integers(0, 2**31)), draw(st.sampled_from(["float64", "float32"]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_correct_models_on_random_architectures_pass(arch):
    shape, layers, l, C, seed, dtype = arch
    net = Network(shape, layers)
    rng = np.random.default_rng(seed)
    Ws, _ = net.unpack(net.init_params(seed=seed))
    theta = net.pack(Ws, [0.3 * rng.standard_normal(W.shape[0]) for W in Ws])
    X = rng.standard_normal((net.n_input, l))
    _, kept = reference_forward(net, Ws, net.unpack(theta)[1], X)
    # saturated tanh/sigmoid lose digits to cancellation in any float64 code (see test_torch_oracle)
    assume(all(np.abs(kept[f"S{ly.m}"]).max() < 5 for ly in net.layers if ly.sigma.name in ("tanh", "sigmoid")))
    model = to_torch(net, theta, dtype=getattr(torch, dtype))
    a, b, d = shape
    report = check(model, X=X, input_shape=(d, a, b), C=C, seed=seed, products="grad,Jv,JTv,Gv")
    assert report.passed, report


def test_check_is_exported():
    assert sparsecnn.oracle.check is check
    assert getattr(sparsecnn, "check", check) is check


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_correct_models_pass_even_with_saturated_units(arch):
    """Inputs 8x larger saturate tanh and sigmoid: 1 - tanh(S)^2 and sigma(S)(1 - sigma(S)) lose digits to
    cancellation in any code.  The per-entry bounds account for it (no filtering of saturated draws)."""
    shape, layers, l, C, seed, dtype = arch
    net = Network(shape, layers)
    rng = np.random.default_rng(seed)
    Ws, _ = net.unpack(net.init_params(seed=seed))
    theta = net.pack(Ws, [0.3 * rng.standard_normal(W.shape[0]) for W in Ws])
    X = 8.0 * rng.standard_normal((net.n_input, l))
    model = to_torch(net, theta, dtype=getattr(torch, dtype))
    a, b, d = shape
    report = check(model, X=X, input_shape=(d, a, b), C=C, seed=seed, products="grad,Jv,JTv,Gv")
    assert report.passed, report


def test_saturated_sigmoid_forward_bound_keeps_the_propagated_error_of_S():
    """sigma(-44) = 5.5e-20: the slope sigma(s)(1 - sigma(s)) computed as written is 0 in float64
    (1 - sigma(44) rounds to 0), which left only 4u|sigma(S)| as the tolerance and failed a correct
    model; the bound must carry E_S through the slope sigma(s) sigma(-s)."""
    shape = (4, 2, 1)
    layers = [ConvLayer(d_out=1, h=3, s=1, p=1, r=1, activation="sigmoid"), FullLayer(n_out=4)]
    net = Network(shape, layers)
    rng = np.random.default_rng(25069)
    Ws, _ = net.unpack(net.init_params(seed=25069))
    theta = net.pack(Ws, [0.3 * rng.standard_normal(W.shape[0]) for W in Ws])
    X = 8.0 * rng.standard_normal((net.n_input, 2))
    model = to_torch(net, theta, dtype=torch.float64)
    report = check(model, X=X, input_shape=(1, 4, 2), seed=25069, products="grad,Jv,JTv,Gv")
    assert report.passed, report.verdict()
