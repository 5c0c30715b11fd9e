"""Audit of ``from_torch`` and ``check`` with PyTorch models as people write them (issue 14).

Each test cites the item of issue 14 it holds the code to.  The numbers a model
should give are computed here independently of sparsecnn's layouts: PyTorch's
own autograd in float64, and a parameter map written out from NOTATION.md
(``W^m[o, r + h*q + h*h*c] = weight[o, c, r, q]``; the first full layer's column
``c + d*(r + a*q)`` is PyTorch's flatten index ``c*a*b + r*b + q``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from sparsecnn import ConfigError  # noqa: E402
from sparsecnn.interop import X_from_torch, from_torch, read_torch  # noqa: E402
from sparsecnn.oracle import check  # noqa: E402


def _x(l=5, shape=(1, 8, 8), seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(l, *shape, generator=g, dtype=torch.float64).to(dtype)


def _theta_from_model(model, reading):
    """``theta`` from the model's parameters by NOTATION.md's formulas (no sparsecnn layout code)."""
    named = dict(model.named_parameters())
    net = reading.net
    parts = []
    for tl in reading.layers:
        w = named[tl.weight_name].detach().to(torch.float64)
        if tl.kind == "conv":
            W = w.permute(0, 1, 3, 2).reshape(w.shape[0], -1).numpy()      # column r + h*q + h*h*c
        else:
            W = w.numpy()
            if tl.m == net.LC + 1:
                a, b, d = ((net.conv[-1].a_out, net.conv[-1].b_out, net.conv[-1].d_out) if net.LC
                           else net.input_shape)
                perm = [c * a * b + r * b + q for q in range(b) for r in range(a) for c in range(d)]
                W = W[:, perm]
        b_m = named[tl.bias_name].detach().to(torch.float64).numpy() if tl.bias_name else np.zeros(W.shape[0])
        parts += [W.reshape(-1, order="F"), b_m]
    return np.concatenate(parts)


# ------------------------------------------------- item 1: models people write
class _FrozenFirstLayer(nn.Module):
    """Fine-tuning: the first convolution's parameters do not require gradients."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)
        for p in self.conv1.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_issue14_item1_frozen_parameters_are_checked_not_a_raw_runtime_error(dtype):
    torch.manual_seed(0)
    model = _FrozenFirstLayer().to(dtype).eval()
    x, y = _x(dtype=dtype), np.array([0, 1, 2, 3, 4])
    report = check(model, x, y, products="grad,Jv,JTv,Gv")
    assert report.passed, report.verdict()
    # the gradient of the frozen layer is compared too, against PyTorch's float64 autograd
    reading = read_torch(model, (1, 8, 8))
    m64 = _FrozenFirstLayer().double()
    m64.load_state_dict(model.state_dict())
    ps = [p.detach().requires_grad_(True) for p in m64.parameters()]
    out = torch.func.functional_call(m64, dict(zip(dict(m64.named_parameters()), ps, strict=True)), (x.double(),))
    grads = torch.autograd.grad(F.nll_loss(out, torch.as_tensor(y)), ps)
    with torch.no_grad():
        for p, g in zip(m64.parameters(), grads, strict=True):
            p.copy_(g)
    g_ind = _theta_from_model(m64, reading)
    _, g_ours = reading.net.objective(reading.theta, X_from_torch(x.double()), y)
    assert np.allclose(g_ours, g_ind, rtol=1e-10, atol=1e-12)
    assert all(not p.requires_grad for p in model.conv1.parameters())       # the model is left as it was


def test_issue14_item1_uninitialized_lazy_layer_gets_a_config_error_naming_it():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(ConfigError, match=r"3\.weight.*(uninitiali[sz]ed|lazy).*run the model once"):
        from_torch(model, (1, 6, 6))
    with pytest.raises(ConfigError, match=r"3\.weight"):
        check(model, _x(shape=(1, 6, 6)), np.array([0, 1, 2, 0, 1]))
    model(torch.zeros(1, 1, 6, 6))                          # materialised: read as an ordinary Linear
    net, _ = from_torch(model, (1, 6, 6))
    assert net.n_L == 3


# ------------------------------------- item 5: tolerances hold for correct float32 models
def _cancelling_model(sign, perm):
    """flatten, z = relu(1 + 2^-24 + 2^-40 - 1 - 2^-24) (4 inputs, weights 1), out = +-64 z.

    In float64 ``z`` is 2^-40; float32 rounds ``1 + 2^-24 + 2^-40`` to ``1 + 2^-23``, so in most orders of
    summation the model's ``z`` is of order 2^-24, some 65,000 times too large: the model's forward error
    dwarfs ``z`` itself.  Everything here is PyTorch's own float32 arithmetic, so the model is correct.
    """
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False), nn.ReLU(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        model[1].weight.fill_(1.0)
        model[3].weight.fill_(64.0 * sign)
    values = np.array([1.0, 2.0 ** -24 + 2.0 ** -40, -1.0, -(2.0 ** -24)])[list(perm)]
    return model.float().eval(), torch.tensor(values).reshape(1, 4, 1, 1)


def test_issue14_item5_float32_model_whose_forward_error_exceeds_the_value_still_passes():
    # dW^2 = dS^2 z: the model's error is dS e_z + e_dS e_z + its rounding of dS_m z_m; the first-order
    # bound |dS| E_z + (gamma |dS| + E_dS)|z| misses the last two when |z| << E_z (it failed 4 of these 48)
    import itertools

    dwarfed = 0
    for sign in (1.0, -1.0):
        for perm in itertools.permutations(range(4)):
            model, x = _cancelling_model(sign, perm)
            report = check(model, x, np.array([0]), products="grad,JTv")
            dwarfed += report.row("forward", "Z^2").rel_err > 1e3       # the model's z is 2^-24-ish, not 2^-40
            assert report.passed, (sign, perm, report.table())
    assert dwarfed >= 8                                                # the case this test is about did occur


# ------------------------------------------------------------- bad input
class _EndsInConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)

    def forward(self, x):
        return F.max_pool2d(self.conv(x), 2)


def test_issue14_bad_input_output_not_l_by_nL_names_the_last_node_and_its_line():
    with pytest.raises(ConfigError, match=r"model node max_pool2d \[call torch\.nn\.functional\.max_pool2d\] at "
                                          r"test_audit_oracle_models\.py:\d+: return F\.max_pool2d\(self\.conv\(x\), 2\) "
                                          r"is the model's last operation: model must end with a Linear.*\(l, n_L\)"):
        from_torch(_EndsInConv(), (1, 6, 6))
    with pytest.raises(ConfigError, match=r"the model has no operation: model must end with a Linear"):
        from_torch(nn.Sequential(), (1, 2, 2))


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_issue14_bad_input_no_instances_is_a_shape_error_not_a_raw_value_error():
    from sparsecnn import ShapeError

    with pytest.raises(ShapeError, match=r"l = 0"):
        check(_tiny(), torch.zeros(0, 1, 6, 6), np.zeros(0, dtype=int))
    with pytest.raises(ShapeError, match=r"l = 0"):
        X_from_torch(torch.zeros(0, 1, 6, 6))


def test_issue14_bad_input_treat_as_must_be_a_mapping():
    from sparsecnn import InputTypeError

    with pytest.raises(InputTypeError, match=r"treat_as must be a dict.*\{MyModule: 'relu'\}.*got list"):
        check(_tiny(), _x(l=3, shape=(1, 6, 6)), [0, 1, 2], treat_as=[nn.ReLU])


def test_issue14_bad_input_parameters_without_data_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3, device="meta"))
    with pytest.raises(ConfigError, match=r"1\.weight.*meta"):
        check(model, _x(l=3, shape=(1, 6, 6)), [0, 1, 2])


def test_issue14_item1_bfloat16_model_is_checked_at_its_own_precision():
    model = _tiny().to(torch.bfloat16).eval()
    x = _x(l=4, shape=(1, 6, 6))
    report = check(model, x, [0, 1, 2, 0], products="grad,Jv,JTv,Gv")
    assert report.passed, report.table()
    assert "bfloat16" in report.title
    # the reference saw x rounded to bfloat16, as the model did
    assert np.array_equal(report.inputs["X"], X_from_torch(x.to(torch.bfloat16).double()))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"seed": -1}, "InputTypeError", r"seed must be a non-negative integer"),
    ({"atol": "x"}, "InputTypeError", r"atol must be a number, got 'x'"),
    ({"rtol": "x"}, "InputTypeError", r"rtol must be a number, got 'x'"),
    ({"rtol": float("inf")}, "ConfigError", r"rtol must be a finite number >= 0, got inf"),
    ({"atol": -1e-3}, "ConfigError", r"atol must be a finite number >= 0, got -0.001"),
    ({"tol_factor": float("inf")}, "ConfigError", r"tol_factor must be a finite number > 0, got inf"),
    ({"products": 3}, "InputTypeError", r"products must be a comma-separated string or a list"),
    ({"input_shape": (1, 6)}, "ConfigError", r"input_shape must be \(channels, height, width\), three positive"),
    ({"input_shape": "1,6,6"}, "ConfigError", r"input_shape must be \(channels, height, width\)"),
    ({"input_shape": (1.0, 6, 6)}, "ConfigError", r"input_shape must be \(channels, height, width\)"),
])
def test_issue14_bad_input_check_arguments_get_sparsecnn_errors(kwargs, error, message):
    import sparsecnn.exceptions as exc

    X = np.random.default_rng(0).standard_normal((36, 3))              # (d a b, l) for (1, 6, 6)
    with pytest.raises(getattr(exc, error), match=message):
        check(_tiny(), X=X, y=[0, 1, 2], **{"input_shape": (1, 6, 6), **kwargs})


# ------------------------------- items 5 and 6: planted bugs are found at their layer
def _planted(kind, bug):
    """An autograd.Function computing ReLU, 2x2 max pooling or the identity, with 1% too much at every 7th
    entry of its backward (``bug="bwd"``) or of its forward-mode derivative (``bug="jvp"``)."""

    def wrong(t, what):
        if bug == what:
            t = t.clone()
            t.view(-1)[::7] *= 1.01
        return t

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.clamp(min=0) if kind == "relu" else F.max_pool2d(x, 2) if kind == "pool" else x.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            if kind == "pool":
                _, idx = F.max_pool2d(x, 2, return_indices=True)
                return wrong(F.max_unpool2d(g, idx, 2, output_size=x.shape[2:]), "bwd")
            return wrong(g * (x > 0) if kind == "relu" else g.clone(), "bwd")

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            if kind == "pool":
                _, idx = F.max_pool2d(x, 2, return_indices=True)
                return wrong(t.flatten(2).gather(2, idx.flatten(2)).view(idx.shape), "jvp")
            return wrong(t * (x > 0) if kind == "relu" else t.clone(), "jvp")

    return Fn


class _ReLU(nn.ReLU):
    def __init__(self, bug=None):
        super().__init__()
        self.fn = _planted("relu", bug)

    def forward(self, x):
        return self.fn.apply(x)


class _Pool(nn.MaxPool2d):
    def __init__(self, bug=None):
        super().__init__(2)
        self.fn = _planted("pool", bug)

    def forward(self, x):
        return self.fn.apply(x)


class _Dropout(nn.Dropout):
    def __init__(self, bug=None):
        super().__init__(0.3)
        self.fn = _planted("identity", bug)

    def forward(self, x):
        return self.fn.apply(x)


class _BuggyNet(nn.Module):
    """Layer 1: conv, ReLU, pool; layer 2: conv, pool, ReLU, dropout; layer 3: Linear, ReLU, dropout; layer 4."""

    def __init__(self, where=None, bug=None):
        super().__init__()
        b = {where: bug}
        self.c1, self.r1, self.p1 = nn.Conv2d(2, 4, 3, padding=1), _ReLU(b.get("r1")), _Pool(b.get("p1"))
        self.c2, self.p2, self.r2 = nn.Conv2d(4, 5, 3, padding=1), _Pool(b.get("p2")), _ReLU(b.get("r2"))
        self.d2 = _Dropout(b.get("d2"))
        self.f1, self.r3, self.d3 = nn.Linear(5 * 2 * 2, 7), _ReLU(b.get("r3")), _Dropout(b.get("d3"))
        self.f2 = nn.Linear(7, 4)

    def forward(self, x):
        x = self.p1(self.r1(self.c1(x)))
        x = self.d2(self.r2(self.p2(self.c2(x))))
        x = self.d3(self.r3(self.f1(torch.flatten(x, 1))))
        return F.log_softmax(self.f2(x), dim=1)


def test_issue14_item6_the_same_model_without_a_bug_passes_in_float32():
    x, y = _x(l=6, shape=(2, 8, 8), dtype=torch.float32), np.array([0, 1, 2, 3, 0, 1])
    torch.manual_seed(0)
    report = check(_BuggyNet().float().eval(), x, y, products="grad,Jv,JTv,Gv")
    assert report.passed, report.table()


@pytest.mark.parametrize("where, bug, m", [("r1", "bwd", 1), ("p1", "jvp", 1), ("p2", "bwd", 2), ("d2", "bwd", 2),
                                           ("r2", "jvp", 2), ("d3", "bwd", 3)])
def test_issue14_items5_6_planted_bugs_in_relu_pool_dropout_subclasses_are_found_at_their_layer(where, bug, m):
    x, y = _x(l=6, shape=(2, 8, 8), dtype=torch.float32), np.array([0, 1, 2, 3, 0, 1])
    torch.manual_seed(0)
    report = check(_BuggyNet(where, bug).float().eval(), x, y, products="grad,Jv,JTv,Gv")
    found = {p: report.first_failing_layer(p) for p in (None, "grad", "Jv", "JTv", "Gv")}
    # a wrong backward leaves J v right; a wrong forward-mode derivative leaves the gradient and J^T u right
    assert found == ({None: m, "grad": m, "Jv": None, "JTv": m, "Gv": m} if bug == "bwd"
                     else {None: m, "grad": None, "Jv": m, "JTv": None, "Gv": m}), report.table()


def test_issue14_bad_input_pruned_or_parametrized_weights_get_a_config_error_naming_the_node():
    import torch.nn.utils.prune as prune
    from torch.nn.utils.parametrizations import weight_norm

    pruned = _tiny()
    prune.l1_unstructured(pruned[3], name="weight", amount=0.5)
    with pytest.raises(ConfigError, match=r"model node _3 \[module 3 \(Linear\)\].*weight is not an nn\.Parameter.*"
                                          r"prune\.remove\(module, 'weight'\)"):
        check(pruned, _x(l=3, shape=(1, 6, 6)), [0, 1, 2])
    normed = _tiny()
    weight_norm(normed[0])
    with pytest.raises(ConfigError, match=r"model node _0 \[module 0 \(ParametrizedConv2d\)\].*weight is not an "
                                          r"nn\.Parameter.*remove_parametrizations"):
        from_torch(normed, (1, 6, 6))
    prune.remove(pruned[3], "weight")                       # permanent: an ordinary Linear with zeros
    assert check(pruned, _x(l=3, shape=(1, 6, 6)), [0, 1, 2]).passed


# ----------------------------------- item 2: a final softmax, when p_y underflows
class _SoftmaxNet(nn.Module):
    def __init__(self, final="softmax"):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.final = final
        with torch.no_grad():                                   # z = (50 x_0, -50 x_0)
            self.fc.weight.copy_(torch.tensor([[50.0, 0.0], [-50.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        z = self.fc(torch.flatten(x, 1))
        return F.softmax(z, dim=1) if self.final == "softmax" else F.log_softmax(z, dim=1)


def test_issue14_item2_softmax_whose_p_y_underflows_is_explained_not_blamed_on_a_layer():
    x = torch.tensor([[[[1.0]], [[0.0]]], [[[0.01]], [[0.0]]]])     # logits gap 100 and 1
    y = np.array([1, 0])                                            # instance 0: p_y = exp(-100)
    # float32: exp(-100) = 3.7e-44 is subnormal, and -1/(l p_y), the derivative of -log p_y, overflows
    # (and log p_y, with a few significant bits left, is off by 1e-2): neither f nor the gradient is comparable
    report = check(_SoftmaxNet().float().eval(), x, y, products="grad,Gv")
    assert not report.passed
    for product in ("f", "grad"):
        note = report.row(product, "(all)").note
        assert re.search(r"p_y = 3\.\d+e-44 for instance 0, below float32's smallest normal number.*not a wrong "
                         r"layer.*log_softmax", note), note
    assert report.first_failing_layer() is None                     # no layer is wrong
    assert all(r.passed for r in report.rows if r.product not in ("f", "grad"))
    # the same model in float64, and the stable log_softmax form in float32, pass
    assert check(_SoftmaxNet().double().eval(), x, y, products="grad,Gv").passed
    assert check(_SoftmaxNet("log_softmax").float().eval(), x, y, products="grad,Gv").passed


def test_issue14_item5_float32_softmax_probability_underflowing_to_zero_is_within_the_bound():
    # p_1 = exp(-130) / 2 is 0 in float32, so the model's G v is exactly 0 where the reference's is ~1e-57:
    # an underflow (absolute error, below float32's smallest subnormal), not a relative rounding error
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.LogSoftmax(dim=1))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], [-130.0, 0.0], [0.0, 0.0]]))
        model[1].bias.zero_()
    x = torch.tensor([[[[1.0]], [[0.5]]]])
    report = check(model.float().eval(), x, np.array([0]), products="grad,Jv,JTv,Gv")
    assert report.passed, report.table()
    assert check(model.double().eval(), x, np.array([0]), products="grad,Jv,JTv,Gv").passed


def test_issue14_item2_softmax_with_a_zero_probability_off_the_label_is_explained():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.Softmax(dim=1))
    with torch.no_grad():                                    # p_1 = exp(-130)/2: 0 in float32, p_y = 1/2
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], [-130.0, 0.0], [0.0, 0.0]]))
        model[1].bias.zero_()
    x, y = torch.tensor([[[[1.0]], [[0.5]]]]), np.array([0])
    report = check(model.float().eval(), x, y, products="grad,Gv")
    note = report.row("grad", "(all)").note
    assert re.search(r"p\[0, 1\] = 0 in float32.*0/0 = NaN.*not a wrong layer", note), note
    assert report.first_failing_layer() is None
    assert all(r.passed for r in report.rows if r.product != "grad"), report.table()
    assert check(model.double().eval(), x, y, products="grad,Gv").passed


def test_issue14_item5_float32_products_in_the_subnormal_range_are_within_the_bound():
    # G v's last-layer blocks are start_k z_j with start_k ~ p_k ~ 1e-44: subnormal in float32, so each
    # product's rounding is absolute (up to 2^-150), not relative; one sum of l = 2 such products per entry
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.LogSoftmax(dim=1))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], [-101.0, 0.0], [0.0, 0.0]]))
        model[1].bias.zero_()
    x = torch.tensor([[[[1.0]], [[7.3]]], [[[1.0]], [[-5.1]]]])
    report = check(model.float().eval(), x, np.array([0, 2]), products="grad,Jv,JTv,Gv")
    assert report.passed, report.table()


def test_issue14_item5_float32_model_with_subnormals_flushed_to_zero_passes():
    # with flush-to-zero (torch.set_flush_denormal(True), or a BLAS that sets it), a result below float32's
    # smallest normal number becomes 0: an absolute error up to 2^-126, more than half a subnormal
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.LogSoftmax(dim=1))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, 0.0], [-92.0, 0.0], [0.0, 0.0]]))     # p_1 ~ 5e-41
        model[1].bias.zero_()
    x = torch.tensor([[[[1.0]], [[7.3]]], [[[1.0]], [[-5.1]]]])
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal numbers to zero")
    try:
        report = check(model.float().eval(), x, np.array([0, 2]), products="grad,Jv,JTv,Gv")
    finally:
        torch.set_flush_denormal(False)
    assert report.passed, report.table()
