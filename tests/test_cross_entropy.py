"""The cross-entropy loss (issue 14, items 2-4): xi_i = -log softmax(z^{L+1,i})_{y_i}.

f = theta'theta/(2C) + (1/l) sum_i xi_i, backward started from (1/l)(p - onehot(y)),
G v = (1/l) sum_i J_i^T H_i J_i v with H_i = diag(p_i) - p_i p_i^T.  Checked by finite
differences, against PyTorch's F.cross_entropy / F.nll_loss, and against two independent
implementations of the Gauss-Newton matrix (curvlinops' GGNLinearOperator and BackPACK's
DiagGGNExact) for both losses on random architectures.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparsecnn import (
    ArchitectureError,
    ConfigError,
    ConvLayer,
    FullLayer,
    LabelError,
    Network,
    check,
    from_torch,
    to_torch,
)
from sparsecnn.cli import main
from sparsecnn.demo import run_demo
from sparsecnn.distributed import DistributedObjective, connect, split_columns
from sparsecnn.interop import X_from_torch, X_to_torch
from sparsecnn.model_io import load_model, network_from_dict, network_to_dict, save_model
from sparsecnn.objective import LOSSES, CrossEntropyLoss, get_loss, softmax
from sparsecnn.optim import adam, newton, sgd
from sparsecnn.oracle.golden import make_golden, read_golden, write_golden
from sparsecnn.oracle.layouts import theta_to_torch, torch_parameters, torch_to_theta
from sparsecnn.second_order import gauss_newton

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

ACTS = ["relu", "tanh", "sigmoid", "leaky_relu"]


def small_net(loss: str = "cross-entropy", **kw) -> Network:
    return Network((6, 6, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(2, h=2, r=1, activation="tanh"),
                               FullLayer(5, activation="sigmoid"), FullLayer(4)], loss=loss, **kw)


def data(net: Network, l: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (net.init_params(seed=seed) * 3.0, rng.standard_normal((net.n_input, l)), rng.integers(0, net.n_L, l))


# ----------------------------------------------------------------- xi, its derivative, H
def test_cross_entropy_xi_is_minus_log_softmax_equals_torch_cross_entropy():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((7, 9)) * 5, rng.integers(0, 7, 9)
    ours = CrossEntropyLoss().xi(z, y)
    theirs = F.cross_entropy(torch.from_numpy(z.T), torch.from_numpy(y), reduction="none").numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=1e-14)


def test_cross_entropy_xi_uses_log_sum_exp_so_large_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0], [1e4 - 1.0, 1e4, 800.0]])        # exp would overflow
    y = np.array([1, 0, 0])
    xi = CrossEntropyLoss().xi(z, y)
    expected = np.array([1.0 + np.log1p(np.exp(-1.0)), 2e4, 800.0 + np.log1p(np.exp(-800.0))])
    np.testing.assert_allclose(xi, expected, rtol=1e-15, atol=1e4 * 2**-52)    # rounding of 1e4-sized terms
    xi_sum, dZ = CrossEntropyLoss().batch(z, y, l_total=3)
    assert np.isfinite(xi_sum) and np.isfinite(dZ).all()
    np.testing.assert_allclose(xi_sum, expected.sum(), rtol=1e-15, atol=1e4 * 2**-51)


def test_cross_entropy_backward_starts_from_p_minus_onehot_over_l_finite_differences():
    """dxi/dz = p - onehot(y): the batch's dZ = (1/l)(p - y) against central differences of xi."""
    rng = np.random.default_rng(1)
    z, y, l_total = rng.standard_normal((5, 4)), rng.integers(0, 5, 4), 10
    ce = CrossEntropyLoss()
    _, dZ = ce.batch(z, y, l_total)
    p = softmax(z)
    Y = np.zeros_like(z)
    Y[y, np.arange(4)] = 1.0
    np.testing.assert_allclose(dZ, (p - Y) / l_total, rtol=1e-14, atol=1e-16)
    h = 1e-6
    fd = np.empty_like(z)
    for k in range(5):
        e = np.zeros_like(z)
        e[k] = h
        fd[k] = (ce.xi(z + e, y) - ce.xi(z - e, y)) / (2 * h)
    np.testing.assert_allclose(dZ * l_total, fd, atol=1e-9)


def test_cross_entropy_gauss_newton_H_is_diag_p_minus_ppT_finite_differences():
    """B = d^2 xi/dz^2 = diag(p) - p p^T: B u by the loss against differences of dxi/dz along u."""
    rng = np.random.default_rng(2)
    z, y, u = rng.standard_normal((6, 3)), rng.integers(0, 6, 3), rng.standard_normal((6, 3))
    ce = CrossEntropyLoss()
    Bu = ce.B(u, 0.5, out=z)
    for i in range(3):
        p = softmax(z[:, [i]]).ravel()
        np.testing.assert_allclose(Bu[:, i], 0.5 * (np.diag(p) - np.outer(p, p)) @ u[:, i], rtol=1e-13, atol=1e-15)
    h = 1e-6
    grad = lambda zz: ce.batch(zz, y, 1)[1]                                # noqa: E731 - dxi/dz per column
    fd = (grad(z + h * u) - grad(z - h * u)) / (2 * h)
    np.testing.assert_allclose(Bu, 0.5 * fd, atol=1e-9)
    with pytest.raises(ConfigError, match="needs z"):
        ce.B(u)


def test_cross_entropy_objective_gradient_finite_differences():
    """f = theta'theta/(2C) + (1/l) sum_i xi_i: the network's gradient against central differences
    (smooth activations and average pooling, so that no kink lies within h)."""
    net = Network((6, 6, 2), [ConvLayer(3, h=3, p=1, r=2, activation="tanh", pool="avg"),
                              FullLayer(5, activation="sigmoid"), FullLayer(4)], loss="cross-entropy")
    theta, X, y = data(net, 5)
    f, g = net.objective(theta, X, y, C=3.0)
    rng = np.random.default_rng(3)
    for _ in range(3):
        d = rng.standard_normal(net.n_params)
        h = 1e-5
        fd = (net.objective(theta + h * d, X, y, C=3.0)[0] - net.objective(theta - h * d, X, y, C=3.0)[0]) / (2 * h)
        assert abs(fd - g @ d) <= 1e-8 * max(1.0, abs(fd))
    assert f == pytest.approx(theta @ theta / 6.0 + CrossEntropyLoss().xi(net.output(theta, X), y).mean(), rel=1e-13)


def test_cross_entropy_gauss_newton_is_JT_H_J_over_l():
    """G v = (1/l) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i v, J_i from finite differences of z^{L+1,i}."""
    net = small_net()
    theta, X, y = data(net, 3)
    n, l = net.n_params, 3
    h = 1e-6
    J = np.empty((net.n_L, l, n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = h
        J[:, :, k] = (net.output(theta + e, X) - net.output(theta - e, X)) / (2 * h)
    z = net.output(theta, X)
    G = np.zeros((n, n))
    for i in range(l):
        p = softmax(z[:, [i]]).ravel()
        G += J[:, i].T @ (np.diag(p) - np.outer(p, p)) @ J[:, i] / l
    v = np.random.default_rng(4).standard_normal(n)
    for jac in ("recompute", "store"):
        np.testing.assert_allclose(gauss_newton(net, theta, X, jacobian=jac) @ v, G @ v, atol=1e-7)


def test_gauss_newton_H_is_positive_semidefinite_for_cross_entropy():
    net = small_net()
    theta, X, _ = data(net, 4)
    G = gauss_newton(net, theta, X)
    rng = np.random.default_rng(5)
    for _ in range(5):
        v = rng.standard_normal(net.n_params)
        assert v @ (G @ v) >= -1e-12


# ----------------------------------------------------------------- bad input
def test_cross_entropy_labels_out_of_range_raise_label_error():
    net = small_net()
    theta, X, _ = data(net, 3)
    with pytest.raises(LabelError, match="0..n_L-1 = 0..3"):
        net.objective(theta, X, np.array([0, 4, 1]))
    with pytest.raises(LabelError, match="cross-entropy"):
        CrossEntropyLoss().xi(np.zeros((3, 2)), np.array([0, -1]))
    with pytest.raises(LabelError):
        CrossEntropyLoss().batch(np.zeros((3, 2)), np.array([0, 3]), 2)


def test_unsupported_loss_name_is_a_config_error_listing_the_losses():
    with pytest.raises(ConfigError, match=r"loss must be one of \['cross-entropy', 'squared'\], got 'hinge'"):
        Network((4, 4, 1), [FullLayer(3)], loss="hinge")
    with pytest.raises(ConfigError, match="loss must be one of"):
        get_loss(None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(ConfigError, match="loss must be one of"):
        from_torch(model, (1, 4, 4), loss="nll")


# ----------------------------------------------------------------- everything runs with it
def test_cross_entropy_runs_through_Jv_JTv_newton_sgd_adam():
    net = small_net()
    theta, X, y = data(net, 6)
    f0 = net.objective(theta, X, y, C=10.0)[0]
    rng = np.random.default_rng(6)
    v, u = rng.standard_normal(net.n_params), rng.standard_normal((net.n_L, 6))
    assert np.isclose(np.sum(u * net.Jv(theta, X, v)), net.JTv(theta, X, u) @ v)
    th, _ = newton(net, theta, X, y, C=10.0, iter_max=3, seed=0)
    assert net.objective(th, X, y, C=10.0)[0] < f0
    for solver in (sgd, adam):
        th, _ = solver(net, theta, X, y, C=10.0, epoch_max=3, bsize=3, lr=1e-2, seed=0)
        assert np.isfinite(net.objective(th, X, y, C=10.0)[0])


def test_model_and_golden_files_record_the_loss(tmp_path):
    net = small_net()
    theta, X, y = data(net, 3)
    assert network_from_dict(network_to_dict(net)).loss.name == "cross-entropy"
    old = network_to_dict(net.replace(loss="squared"))
    del old["loss"]                                                       # a file written before the loss
    assert network_from_dict(old).loss.name == "squared"
    save_model(tmp_path / "m.npz", net, theta)
    model = load_model(tmp_path / "m.npz")
    assert model.net.loss.name == "cross-entropy"
    np.testing.assert_array_equal(model.net.predict(theta, X), np.argmax(net.output(theta, X), axis=0))
    golden = make_golden(net, instances=3, seed=1)
    write_golden(tmp_path / "g.npz", golden)
    back = read_golden(tmp_path / "g.npz")
    assert back.net.loss.name == "cross-entropy" and "softmax" in back.info["objective"]
    f_ce = net.objective(back.theta, back.X, back.y, back.C)[0]
    assert back.f == pytest.approx(f_ce, rel=1e-14)
    assert back.f != pytest.approx(net.replace(loss="squared").objective(back.theta, back.X, back.y, back.C)[0])


def test_train_command_takes_loss_cross_entropy(tmp_path, capsys):
    rc = main(["train", "--config", "mnist-demo-layer4", "--train", "mnist-demo", "--solver", "sgd",
               "--epoch-max", "1", "--bsize", "500", "--loss", "cross-entropy", "--quiet",
               "--save", str(tmp_path / "m.npz")])
    assert rc == 0
    assert load_model(tmp_path / "m.npz").net.loss.name == "cross-entropy"
    with pytest.raises(SystemExit):
        main(["train", "--config", "mnist-demo-layer4", "--train", "mnist-demo", "--loss", "hinge"])
    assert "invalid choice: 'hinge'" in capsys.readouterr().err


def test_demo_runs_with_loss_cross_entropy():
    pytest.importorskip("sklearn")

    out = io.StringIO()
    result = run_demo(iters=2, loss="cross-entropy", out=out)
    assert "cross-entropy loss" in out.getvalue()
    assert result.losses[-1] < result.losses[0] and result.test_acc > 0.3


# ----------------------------------------------------------------- PyTorch models ending in log_softmax
class FunctionalNet(nn.Module):
    def __init__(self, final: str = "log_softmax") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 2, 3, bias=False)
        self.drop = nn.Dropout(0.25)
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 4)
        self.final = final

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = torch.tanh(self.conv2(x))
        x = self.drop(x.view(x.size(0), -1))
        x = self.fc2(F.relu(self.fc1(x)))
        if self.final == "log_softmax":
            return F.log_softmax(x, dim=1)
        if self.final == "softmax":
            return x.softmax(dim=1)
        return x


@pytest.mark.parametrize("final", ["log_softmax", "softmax"])
def test_from_torch_reads_final_log_softmax_as_the_cross_entropy_loss(final):
    torch.manual_seed(0)
    model = FunctionalNet(final).double().eval()
    net, theta = from_torch(model, (1, 8, 8))
    assert net.loss.name == "cross-entropy" and net.n_L == 4
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 3])
    X = net.check_X(np.ascontiguousarray(X_from(x)))
    with torch.no_grad():
        out = model(x)
        nll = F.nll_loss(out if final == "log_softmax" else torch.log(out), y)
    f, _ = net.objective(theta, X, y.numpy())                             # C = inf
    assert f == pytest.approx(float(nll), rel=1e-13)


def X_from(x):
    return X_from_torch(x.numpy())


def test_from_torch_loss_cross_entropy_for_a_model_returning_logits_equals_F_cross_entropy():
    torch.manual_seed(1)
    model = FunctionalNet("logits").double().eval()
    assert from_torch(model, (1, 8, 8))[0].loss.name == "squared"
    net, theta = from_torch(model, (1, 8, 8), loss="cross-entropy")
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        expected = float(F.cross_entropy(model(x), y))
    assert net.objective(theta, X_from(x), y.numpy())[0] == pytest.approx(expected, rel=1e-13)


def test_log_softmax_with_loss_squared_is_refused_clearly():
    model = FunctionalNet().double().eval()
    with pytest.raises(ConfigError, match=r"ends in log_softmax.*loss='squared'"):
        from_torch(model, (1, 8, 8), loss="squared")
    with pytest.raises(ConfigError, match="ends in log_softmax"):
        check(model, np.zeros((2, 1, 8, 8)), loss="squared")


def test_log_softmax_not_last_or_over_another_dim_is_refused():
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.LogSoftmax(dim=1), nn.ReLU())
    with pytest.raises(ConfigError, match="must be the model's last operation"):
        from_torch(seq, (1, 4, 4))
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.LogSoftmax(dim=0))
    with pytest.raises(ConfigError, match="dim = 0"):
        from_torch(seq, (1, 4, 4))
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Softmax(dim=-1))
    assert from_torch(seq, (1, 4, 4))[0].loss.name == "cross-entropy"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_check_model_ending_in_log_softmax_passes_every_product(dtype):
    torch.manual_seed(2)
    model = FunctionalNet().to(dtype).eval()
    x = np.random.default_rng(0).standard_normal((6, 1, 8, 8))
    report = check(model, x, products="grad,Jv,JTv,Gv")
    assert report.passed, str(report)
    assert any("cross-entropy" in line for line in report.setting)
    f_row = next(r for r in report.rows if r.product == "f")
    assert f_row.passed


def test_check_cross_entropy_finds_a_planted_backward_bug_in_float32():
    """A ReLU whose backward is wrong by 0.1% at some entries, after conv 2, in a log_softmax model."""
    class BadReLUFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):
            ctx.save_for_backward(s)
            return s.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (s,) = ctx.saved_tensors
            out = g * (s > 0).to(g.dtype)
            out.view(-1)[::7] *= 1.001
            return out

    class BadReLU(nn.ReLU):
        def forward(self, s):
            return BadReLUFn.apply(s)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
            self.act = BadReLU()
            self.fc = nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            x = F.max_pool2d(torch.relu(self.c1(x)), 2)
            x = self.act(self.c2(x))
            return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)

    torch.manual_seed(3)
    model = Model().float().eval()
    x = np.random.default_rng(1).standard_normal((8, 1, 8, 8))
    report = check(model, x, products="grad")
    assert not report.passed
    assert report.first_failing_layer("grad") == 2


# ----------------------------------------------------------------- independent implementations
@st.composite
def architectures(draw):
    a, b, d = draw(st.integers(4, 8)), draw(st.integers(4, 8)), draw(st.integers(1, 2))
    layers: list[ConvLayer | FullLayer] = []
    for _ in range(draw(st.integers(0, 2))):
        layers.append(ConvLayer(draw(st.integers(1, 3)), h=draw(st.integers(1, 3)), s=draw(st.integers(1, 2)),
                                p=draw(st.integers(0, 1)), r=draw(st.integers(1, 2)),
                                activation=draw(st.sampled_from(ACTS)), pool=draw(st.sampled_from(["max", "avg"]))))
    for _ in range(draw(st.integers(0, 1))):
        layers.append(FullLayer(draw(st.integers(1, 5)), activation=draw(st.sampled_from(ACTS))))
    layers.append(FullLayer(draw(st.integers(2, 4))))
    try:
        net = Network((a, b, d), layers)
    except ArchitectureError:
        assume(False)
        raise
    assume(net.n_params <= 400)
    return net, draw(st.integers(1, 4)), draw(st.integers(0, 2**31 - 1))


def _independent(net: Network, theta: np.ndarray, X: np.ndarray, y: np.ndarray, V: np.ndarray):
    """f, gradient, G V (columns of V) and diag(G) from curvlinops and BackPACK, in theta's order.

    curvlinops' GGNLinearOperator and BackPACK's DiagGGNExact differentiate the loss *as given*:
    MSELoss(reduction="sum") is sum_i ||z_i - y_i||^2 (so divide by l for our (1/l) sum, B = 2I);
    CrossEntropyLoss() is the mean over the l instances, as ours.  Both use model.parameters()
    order, each tensor in PyTorch's row-major layout (W^m as OIHW / (out, in), then b^m).
    """
    from backpack import backpack, extend
    from backpack.extensions import DiagGGNExact
    from curvlinops import GGNLinearOperator

    l = X.shape[1]
    model = to_torch(net, theta)
    x = X_to_torch(net, X)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    if net.loss.name == "squared":
        target = F.one_hot(yt, net.n_L).to(torch.float64)
        loss_fn, scale = nn.MSELoss(reduction="sum"), 1.0 / l
    else:
        target, loss_fn, scale = yt, nn.CrossEntropyLoss(), 1.0
    params = torch_parameters(net)
    plist = [p for p in model.parameters()]
    G = GGNLinearOperator(model, loss_fn, plist, [(x, target)], check_deterministic=False)
    GV = []
    for k in range(V.shape[1]):
        vt = [torch.from_numpy(np.ascontiguousarray(a)) for a in theta_to_torch(params, V[:, k]).values()]
        out = G @ vt
        GV.append(scale * torch_to_theta(params, {p.name: o.detach().numpy() for p, o in zip(params, out, strict=True)},
                                         net.n_params))
    grad_list, loss = G.gradient_and_loss()
    grad = scale * torch_to_theta(params, {p.name: g.detach().numpy() for p, g in zip(params, grad_list, strict=True)},
                                  net.n_params)
    f = scale * float(loss)
    model = extend(model)
    lf = extend(loss_fn)
    model.zero_grad()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)         # BackPACK's AvgPool2d Jacobian builds a default-dtype module
    try:
        with backpack(DiagGGNExact()):
            lf(model(x), target).backward()
    finally:
        torch.set_default_dtype(default)
    diag = scale * torch_to_theta(params, {p.name: q.diag_ggn_exact.detach().numpy()
                                           for p, q in zip(params, model.parameters(), strict=True)}, net.n_params)
    return f, grad, np.column_stack(GV), diag


@pytest.mark.parametrize("loss", sorted(LOSSES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=architectures())
def test_f_gradient_Gv_and_diag_G_equal_curvlinops_and_backpack(loss, case):
    net, l, seed = case
    net = net.replace(loss=loss)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(net.n_params) * 0.7
    X, y = rng.standard_normal((net.n_input, l)), rng.integers(0, net.n_L, l)
    V = rng.standard_normal((net.n_params, 2))
    f_ind, g_ind, GV_ind, diag_ind = _independent(net, theta, X, y, V)
    f, g = net.objective(theta, X, y)                                     # C = inf
    G = gauss_newton(net, theta, X)
    GV = np.column_stack([G @ V[:, k] for k in range(V.shape[1])])
    diag = np.array([(G @ e)[k] for k, e in enumerate(np.eye(net.n_params))])

    def close(a, b):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b), initial=0.0) <= 1e-10 * max(1.0, float(np.max(np.abs(b), initial=0.0)))

    close(f, f_ind)
    close(g, g_ind)
    close(GV, GV_ind)
    close(diag, diag_ind)


def test_cross_entropy_on_dask_equals_in_process():
    """f, gradient and G v of the cross-entropy loss on a two-worker LocalCluster, as in process."""
    pytest.importorskip("distributed")
    net = small_net()
    theta, X, y = data(net, 41)
    client, cluster = connect(workers=2, processes=False)
    try:
        obj = DistributedObjective(net, split_columns(X, y, 3), client=client, C=5.0, batch_size=16)
        f0, g0 = net.objective(theta, X, y, 5.0)
        f, g = obj.objective(theta)
        assert f == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-11, atol=1e-14)
        v = np.random.default_rng(7).standard_normal(net.n_params)
        np.testing.assert_allclose(obj.gauss_newton(theta) @ v, gauss_newton(net, theta, X) @ v,
                                   rtol=1e-11, atol=1e-14)
        obj.close()
    finally:
        client.close()
        cluster.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=architectures(), dtype=st.sampled_from(["float32", "float64"]), final=st.booleans())
def test_check_cross_entropy_passes_correct_models_on_random_architectures(case, dtype, final):
    """A correct model, float32 or float64, returning logits (loss="cross-entropy") or ending in
    LogSoftmax, passes every product against its per-entry rounding-error bounds."""
    net, l, seed = case
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed=seed % 1000)
    X = rng.standard_normal((net.n_input, l))
    model = to_torch(net, theta, dtype=getattr(torch, dtype))
    if final:
        model = nn.Sequential(*model, nn.LogSoftmax(dim=1))
    a, b, d = net.input_shape
    report = check(model, X=X, input_shape=(d, a, b), seed=seed, products="grad,Jv,JTv,Gv",
                   loss=None if final else "cross-entropy")
    assert report.passed, report


def test_net_loss_compares_equal_to_its_name_as_the_issue_writes_it():
    """``from_torch(...)[0].loss == "cross-entropy"``: the loss object equals its name."""
    net = Network((4, 4, 1), [FullLayer(3)], loss="cross-entropy")
    assert net.loss == "cross-entropy" and net.loss != "squared"
    assert Network((4, 4, 1), [FullLayer(3)]).loss == "squared"
    assert repr(net.loss) == "Loss('cross-entropy')"
