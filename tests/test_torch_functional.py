"""PyTorch models as people write them: ``from_torch`` and ``check`` read any fx-traceable module.

Every supported operation is written as a module, a ``torch.nn.functional``
call and a tensor method; each variant must give the same network and ``theta``
as the equivalent ``nn.Sequential`` and the same output as the model (float64,
1e-12).  Then the oracle's localisation (forward rows, ``J v^[m]`` rows,
``Gv:JT`` rows) and its per-entry tolerances are tested with planted bugs, and
bad models are refused with errors that name the fx node and its source line.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sparsecnn import ConfigError, ConvLayer, FullLayer  # noqa: E402
from sparsecnn.interop import X_from_torch, from_torch, read_torch  # noqa: E402
from sparsecnn.oracle import check, default_rtol  # noqa: E402


def _init(model, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.to(dtype).eval()


def _x(l=5, shape=(2, 8, 8), seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(l, *shape, generator=g, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------ the forms
class Functional(nn.Module):
    """conv 1 (act, 2x2 pool), conv 2 (act), flatten, fc 1 (act), fc 2; each step in a form chosen by name."""

    def __init__(self, act="relu", pool="F.max_pool2d", pool_first=False, flatten="torch.flatten",
                 dropout="nn.Dropout", conv_bias=True, fc_bias=True, functional_conv=False):
        super().__init__()
        self.act, self.pool, self.pool_first, self.flatten = act, pool, pool_first, flatten
        self.dropout, self.functional_conv = dropout, functional_conv
        if functional_conv:
            self.w1 = nn.Parameter(torch.empty(3, 2, 3, 3))
            self.b1 = nn.Parameter(torch.empty(3)) if conv_bias else None
        else:
            self.conv1 = nn.Conv2d(2, 3, 3, padding=1, bias=conv_bias)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 6, bias=fc_bias)
        self.fc2 = nn.Linear(6, 5)
        self.drop = nn.Dropout(0.3) if dropout == "nn.Dropout" else nn.Dropout2d(0.3) \
            if dropout == "nn.Dropout2d" else nn.Identity()
        self.maxpool = nn.MaxPool2d(2)
        self.avgpool = nn.AvgPool2d(2)
        self.relu_module = nn.ReLU()

    def _act(self, x):
        if self.act == "relu":
            return F.relu(x)
        if self.act == "torch.relu":
            return torch.relu(x)
        if self.act == "x.relu()":
            return x.relu()
        if self.act == "nn.ReLU":
            return self.relu_module(x)
        if self.act == "tanh":
            return torch.tanh(x)
        if self.act == "x.sigmoid()":
            return x.sigmoid()
        if self.act == "leaky":
            return F.leaky_relu(x, 0.01)
        raise AssertionError(self.act)

    def _pool(self, x):
        if self.pool == "F.max_pool2d":
            return F.max_pool2d(x, 2)
        if self.pool == "nn.MaxPool2d":
            return self.maxpool(x)
        if self.pool == "F.avg_pool2d":
            return F.avg_pool2d(x, 2)
        if self.pool == "nn.AvgPool2d":
            return self.avgpool(x)
        raise AssertionError(self.pool)

    def forward(self, x):
        if self.functional_conv:
            x = F.conv2d(x, self.w1, self.b1, padding=1)
        else:
            x = self.conv1(x)
        x = self._act(self._pool(x)) if self.pool_first else self._pool(self._act(x))
        x = self._act(self.conv2(x))
        if self.dropout == "F.dropout":
            x = F.dropout(x, 0.3, training=self.training)
        else:
            x = self.drop(x)
        if self.flatten == "torch.flatten":
            x = torch.flatten(x, 1)
        elif self.flatten == "view(size(0), -1)":
            x = x.view(x.size(0), -1)
        elif self.flatten == "view(-1, n)":
            x = x.view(-1, 4 * 4 * 4)
        elif self.flatten == "reshape(shape[0], -1)":
            x = x.reshape(x.shape[0], -1)
        elif self.flatten == "x.flatten(1)":
            x = x.flatten(1)
        x = self._act(self.fc1(x))
        return self.fc2(x)


FORMS = [
    {},
    {"act": "torch.relu", "pool": "nn.MaxPool2d", "flatten": "view(size(0), -1)", "dropout": "F.dropout"},
    {"act": "x.relu()", "pool_first": True, "flatten": "view(-1, n)", "dropout": "nn.Dropout2d"},
    {"act": "nn.ReLU", "flatten": "reshape(shape[0], -1)", "dropout": "identity", "conv_bias": False},
    {"act": "tanh", "pool_first": True, "flatten": "x.flatten(1)", "fc_bias": False, "functional_conv": True},
    {"act": "x.sigmoid()", "pool": "F.avg_pool2d", "functional_conv": True, "conv_bias": False},
    {"act": "leaky", "pool": "nn.AvgPool2d", "pool_first": False},
    {"act": "leaky", "pool": "F.max_pool2d", "pool_first": True},
]

ACT_NAME = {"relu": "relu", "torch.relu": "relu", "x.relu()": "relu", "nn.ReLU": "relu", "tanh": "tanh",
            "x.sigmoid()": "sigmoid", "leaky": "leaky_relu"}


def _sequential_twin(model: Functional) -> nn.Sequential:
    """The same network as an nn.Sequential with the same parameters (bias 0 where the model has none)."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
           "leaky_relu": lambda: nn.LeakyReLU(0.01)}[ACT_NAME[model.act]]
    pool = nn.AvgPool2d(2) if "avg" in model.pool.lower() else nn.MaxPool2d(2)
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), act(), pool, nn.Conv2d(3, 4, 3, padding=1), act(),
                        nn.Flatten(), nn.Linear(64, 6), act(), nn.Linear(6, 5)).double()
    with torch.no_grad():
        w1 = model.w1 if model.functional_conv else model.conv1.weight
        b1 = model.b1 if model.functional_conv else model.conv1.bias
        seq[0].weight.copy_(w1)
        seq[0].bias.copy_(b1 if b1 is not None else torch.zeros(3))
        seq[3].weight.copy_(model.conv2.weight)
        seq[3].bias.copy_(model.conv2.bias)
        seq[6].weight.copy_(model.fc1.weight)
        seq[6].bias.copy_(model.fc1.bias if model.fc1.bias is not None else torch.zeros(6))
        seq[8].weight.copy_(model.fc2.weight)
        seq[8].bias.copy_(model.fc2.bias)
    return seq


@pytest.mark.parametrize("form", range(len(FORMS)))
def test_every_form_reads_as_its_sequential_twin_and_checks(form):
    model = _init(Functional(**FORMS[form]))
    net, theta = from_torch(model, (2, 8, 8))
    net2, theta2 = from_torch(_sequential_twin(model), (2, 8, 8))
    assert [ly.spec for ly in net.conv] == [ly.spec for ly in net2.conv]
    assert [(ly.n_out, ly.sigma.name) for ly in net.full] == [(ly.n_out, ly.sigma.name) for ly in net2.full]
    np.testing.assert_array_equal(theta, theta2)
    x = _x()
    with torch.no_grad():
        out = model(x).numpy().T
    np.testing.assert_allclose(net.output(theta, X_from_torch(x)), out, rtol=1e-12, atol=1e-13)
    report = check(model, x, np.arange(5) % 5, products="grad,Jv,JTv,Gv")
    assert report.passed, report


def test_pooling_before_the_activation_is_the_same_layer():
    """max pooling then a non-decreasing activation is sigma then max pooling: one ConvLayer."""
    a = from_torch(_init(Functional(pool_first=True)), (2, 8, 8))
    b = from_torch(_init(Functional(pool_first=False)), (2, 8, 8))
    assert a[0].conv[0].spec == b[0].conv[0].spec == ConvLayer(3, h=3, p=1, r=2)
    np.testing.assert_array_equal(a[1], b[1])


def test_bias_free_layers_are_held_at_zero_and_not_compared():
    model = _init(Functional(conv_bias=False, fc_bias=False))
    reading = read_torch(model, (2, 8, 8))
    assert reading.parameter_names[0] == ("conv1.weight", None)
    assert reading.has_bias == [False, True, False, True]
    net, theta = reading.net, reading.theta
    _, bs = net.unpack(theta)
    assert not bs[0].any() and not bs[2].any()
    report = check(model, _x(), products="grad,Jv,JTv,Gv")
    assert report.passed, report
    names = {(r.product, r.name) for r in report.rows}
    assert ("grad", "W^1") in names and ("grad", "b^1") not in names and ("Gv", "b^3") not in names
    assert ("grad", "b^2") in names
    v = report.inputs["v"]
    _, vb = net.unpack(v)
    assert not vb[0].any() and not vb[2].any() and vb[1].any()
    assert "layers without bias: [1, 3]" in str(report)


def test_sequential_without_bias_reads_too():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Flatten(), nn.Linear(32, 3, bias=False)).double()
    net, theta = from_torch(model, (1, 6, 6))
    assert net.n_params == 2 * 9 + 2 + 3 * 32 + 3
    assert check(model, _x(shape=(1, 6, 6))).passed


# ------------------------------------------------------------- refusals
class _DropoutModel(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.fc = nn.Linear(16, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = torch.flatten(x, 1)
        if self.how == "module":
            x = self.drop(x)
        elif self.how == "functional":
            x = F.dropout(x, 0.5, training=self.training)
        else:
            x = F.dropout(x, 0.5)           # training=True by default: active whatever the mode
        return self.fc(x)


@pytest.mark.parametrize("how, message", [
    ("module", r"Dropout\(p=0.5\) in training mode drops entries at random; call model.eval\(\) first"),
    ("functional", r"dropout with training=True .* pass training=self.training and call model.eval\(\)"),
])
def test_dropout_in_training_mode_is_refused(how, message):
    model = _DropoutModel(how).double()
    with pytest.raises(ConfigError, match=message):
        from_torch(model, (1, 4, 4))
    with pytest.raises(ConfigError, match=message):
        check(model, _x(shape=(1, 4, 4)))
    model.eval()
    assert check(model, _x(shape=(1, 4, 4))).passed


def test_functional_dropout_without_training_flag_is_refused_even_in_eval_mode():
    with pytest.raises(ConfigError, match=r"training=self.training"):
        from_torch(_DropoutModel("always").double().eval(), (1, 4, 4))


class _LogSoftmax(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.fc = nn.Linear(16, 3)
        self.lsm = nn.LogSoftmax(dim=1)

    def forward(self, x):
        x = self.fc(torch.flatten(x, 1))
        if self.how == "F":
            return F.log_softmax(x, dim=1)
        if self.how == "method":
            return x.softmax(1)
        return self.lsm(x)


@pytest.mark.parametrize("how", ["F", "method", "module"])
def test_final_log_softmax_in_any_form_is_read_as_the_cross_entropy_loss(how):
    model = _LogSoftmax(how).double()
    net, theta = from_torch(model, (1, 4, 4))
    assert net.loss.name == "cross-entropy" and net.n_L == 3 and len(net.layers) == 1
    with pytest.raises(ConfigError, match="belongs to the cross-entropy loss"):
        from_torch(model, (1, 4, 4), loss="squared")


class _Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.abs(x)
        return self.fc(torch.flatten(x, 1))


def test_unsupported_node_is_named_with_its_source_line():
    with pytest.raises(ConfigError) as info:
        from_torch(_Unsupported(), (1, 4, 4))
    msg = str(info.value)
    assert re.search(r"model node abs\w* \[call torch\.abs\] at test_torch_functional\.py:\d+: "
                     r"x = torch\.abs\(x\)", msg), msg
    assert "function torch.abs is not supported; supported: Conv2d / F.conv2d" in msg
    assert "x.view(x.size(0), -1)" in msg and "treat_as" in msg


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.conv(x) + x                 # a skip connection
        return self.fc(torch.flatten(x, 1))


def test_skip_connection_is_refused():
    with pytest.raises(ConfigError, match=r"no branches, skip connections or sums of tensors"):
        from_torch(_Branchy(), (1, 4, 4))


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.fc(torch.flatten(x, 1))


def test_fx_trace_failure_is_wrapped_with_what_to_do():
    with pytest.raises(ConfigError) as info:
        from_torch(_DataDependent(), (1, 4, 4))
    msg = str(info.value)
    assert "torch.fx could not trace _DataDependent.forward: TraceError: symbolically traced variables " \
           "cannot be used as inputs to control flow" in msg
    assert "move data-dependent control flow" in msg and "treat_as" in msg
    assert isinstance(info.value.__cause__, Exception)


class _TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        z = self.fc(torch.flatten(x, 1))
        return z, z


class _FlatOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(x, 1)).view(-1)        # (l n_L,) instead of (l, n_L)


def test_output_not_l_by_nL_is_refused():
    with pytest.raises(ConfigError, match=r"must return the tensor z\^\{L\+1\} of shape \(l, n_L\)"):
        from_torch(_TwoOutputs(), (1, 4, 4))
    with pytest.raises(ConfigError, match=r"reshapes \(2, 3\) to \(6,\); only flattening each image"):
        from_torch(_FlatOutput(), (1, 4, 4))


def test_average_pooling_before_a_nonlinear_activation_is_refused():
    class AvgFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(F.avg_pool2d(self.conv(x), 2)), 1))

    with pytest.raises(ConfigError, match=r"an activation after average pooling.*apply the activation before"):
        from_torch(AvgFirst(), (1, 4, 4))


# ---------------------------------------------------------- planted bugs
class _WrongBackwardReLU(torch.autograd.Function):
    """ReLU; backward lets the gradient through negative inputs (jvp right)."""

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        return g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * (x > 0)


class _WrongJvpReLU(_WrongBackwardReLU):
    """ReLU; backward right, forward-mode derivative lets negative inputs through."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0)

    @staticmethod
    def jvp(ctx, t):
        return t


class _ScaledBackwardReLU(_WrongBackwardReLU):
    """ReLU; backward 0.1% too large in channel 0 (jvp right)."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        scale = torch.ones_like(g)
        scale[:, 0] = 1.001
        return g * (x > 0) * scale


def _relu_with(fn):
    class Planted(nn.ReLU):
        def forward(self, x):
            return fn.apply(x)

    return Planted()


class TransposedConv(nn.Conv2d):
    """Forward computes with each filter transposed (a forward bug)."""

    def forward(self, x):
        return F.conv2d(x, self.weight.transpose(2, 3), self.bias, self.stride, self.padding)


class PlantedNet(nn.Module):
    """Functional style: conv 1 -> F.relu -> F.max_pool2d -> conv 2 -> act2 -> pool -> view -> fc."""

    def __init__(self, act2=None, conv2=None):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = conv2 or nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = act2 or nn.ReLU()
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(self.act2(self.conv2(x)), 2)
        return self.fc(x.view(x.size(0), -1))


def _planted(dtype=torch.float64, seed=0, **kw):
    return _init(PlantedNet(**kw), seed=seed, dtype=dtype)


def _x16(dtype=torch.float64, seed=1):
    return _x(l=8, shape=(2, 16, 16), seed=seed, dtype=dtype)


def test_issue14_item6_wrong_backward_relu_after_conv2_is_found_at_layer_2():
    model = _planted(act2=_relu_with(_WrongBackwardReLU))
    assert "act2" in read_torch(model, (2, 16, 16)).layers[1].nodes          # one node: its own backward
    report = check(model, _x16(), products="grad,Jv,JTv,Gv")
    assert not report.passed
    assert all(r.passed for r in report.rows if r.product in ("forward", "output", "f", "Jv"))
    assert report.first_failing_layer() == 2
    assert report.first_failing_layer("grad") == 2 and report.first_failing_layer("JTv") == 2
    assert report.first_failing_layer("Gv") == 2 and report.first_failing_layer("Jv") is None
    assert report.row("Gv:JT", "W^3").passed and not report.row("Gv:JT", "W^2").passed


def test_issue14_item6_float32_functional_model_passes_at_float32_tolerance():
    report = check(_planted(dtype=torch.float32), _x16(dtype=torch.float32), products="grad,Jv,JTv,Gv")
    assert report.passed, report
    assert all(r.entry_tol is not None for r in report.rows)          # per-entry tolerances throughout
    assert all(r.err_over_tol <= 1 for r in report.rows)


def test_forward_bug_is_reported_at_its_own_layer():
    """Conv layer 2 computes with transposed filters: Z^2 passes, Z^3 fails, and that is where the error starts."""
    model = _planted(conv2=TransposedConv(4, 6, 3, padding=1))
    report = check(model, _x16(), products="grad,Gv")
    assert report.row("forward", "Z^2").passed
    assert not report.row("forward", "Z^3").passed and not report.row("forward", "Z^4").passed
    assert report.first_failing_layer() == 2
    assert report.first_failing_layer("forward") == 2
    assert report.first_failing_layer("grad") == 2 and report.first_failing_layer("Gv") == 2
    row = report.row("forward", "Z^3")
    assert row.torch_name == "max_pool2d_1"             # the model's tensor compared with Z^3
    assert re.fullmatch(r"max_pool2d_1\[\d+, \d+, \d+, \d+\]", row.worst[0].torch_index)


def test_wrong_forward_derivative_localises_in_the_Jv_rows():
    model = _planted(act2=_relu_with(_WrongJvpReLU))
    report = check(model, _x16(), products="grad,Jv,Gv")
    assert report.row("grad", "W^2").passed and report.row("forward", "Z^3").passed
    assert report.row("Jv", "J v^[3]").passed and not report.row("Jv", "J v^[2]").passed
    assert not report.row("Jv", "J v^[1]").passed
    assert report.first_failing_layer("Jv") == 2
    assert report.first_failing_layer("Gv") == 2
    assert all(r.passed for r in report.rows if r.product == "Gv:JT")   # the backward half is right


def test_float32_backward_wrong_by_a_tenth_of_a_percent_is_caught():
    """The per-entry bounds catch a 0.1% error in float32 that the blanket rule of 1e4 eps32 of the
    block's largest entry lets through."""
    x = _x16(dtype=torch.float32)
    model = _planted(dtype=torch.float32, act2=_relu_with(_ScaledBackwardReLU))
    report = check(model, x, products="grad,JTv")
    assert not report.passed
    assert report.first_failing_layer("grad") == 2 and report.first_failing_layer("JTv") == 2
    assert report.row("grad", "W^3").passed and report.row("JTv", "W^3").passed
    blanket = check(model, x, products="grad,JTv", rtol=default_rtol(float(np.finfo(np.float32).eps)))
    assert blanket.passed, blanket
    correct = check(_planted(dtype=torch.float32), x, products="grad,JTv")
    assert correct.passed, correct


# -------------------------------------------------------------- treat_as
class _MyReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return torch.where(x > 0, x, torch.zeros_like(x))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0)

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * (x > 0)


class MyReLU(nn.Module):
    """Not a subclass of nn.ReLU: declared with treat_as."""

    def forward(self, x):
        return _MyReLUFn.apply(x)


class MyBadReLU(nn.Module):
    def forward(self, x):
        return _WrongBackwardReLU.apply(x)


def test_treat_as_declares_a_custom_module():
    with pytest.raises(ConfigError):
        check(_planted(act2=MyReLU()), _x16())
    report = check(_planted(act2=MyReLU()), _x16(), products="grad,Jv,Gv", treat_as={MyReLU: "relu"})
    assert report.passed, report
    bad = check(_planted(act2=MyBadReLU()), _x16(), treat_as={MyBadReLU: "relu"})
    assert not bad.passed and bad.first_failing_layer() == 2
    with pytest.raises(ConfigError, match=r"treat_as\[MyReLU\] = 'softplus': must be one of relu"):
        check(_planted(act2=MyReLU()), _x16(), treat_as={MyReLU: "softplus"})


# ------------------------------------------------------- random models
@st.composite
def functional_models(draw):
    form = dict(draw(st.sampled_from(FORMS)))
    return form, draw(st.integers(0, 2**16)), draw(st.sampled_from(["float32", "float64"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(functional_models())
def test_correct_functional_models_pass_on_random_draws(case):
    form, seed, dtype = case
    dt = getattr(torch, dtype)
    model = _init(Functional(**form), seed=seed, dtype=dt)
    report = check(model, _x(seed=seed, dtype=dt), products="grad,Jv,JTv,Gv", seed=seed)
    assert report.passed, report


def test_full_layers_only_and_a_linear_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    net, _ = from_torch(model, (1, 4, 4))
    assert [type(s).__name__ for s in [FullLayer(4, "tanh")]] == ["FullLayer"]
    assert net.full[0].sigma.name == "tanh"
    assert check(model, _x(shape=(1, 4, 4)), products="grad,Gv").passed
