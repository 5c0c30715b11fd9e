"""Golden files: the schema, both layouts, PyTorch agreeing with them, and clear errors on bad files."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsecnn import ConvLayer, DataFormatError, FullLayer, Network
from sparsecnn.model_io import network_to_dict
from sparsecnn.oracle.golden import (
    GOLDEN_SCHEMA,
    GOLDEN_VERSION,
    Golden,
    check_golden,
    golden_checksums,
    load_network_file,
    make_golden,
    read_golden,
    write_golden,
)
from sparsecnn.oracle.layouts import layer_offsets


def small_net() -> Network:
    return Network((6, 8, 2), [ConvLayer(3, h=3, p=1, r=2), ConvLayer(4, h=2, activation="tanh"),
                               FullLayer(5)])


@pytest.fixture(scope="module")
def golden() -> Golden:
    return make_golden(small_net(), instances=3, seed=7, C=4.0)


@pytest.fixture
def case(tmp_path: Path, golden: Golden) -> Path:
    path = tmp_path / "case.npz"
    write_golden(path, golden)
    return path


def save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------ schema
def test_schema_arrays_names_shapes_and_dtypes(case: Path, golden: Golden) -> None:
    net = golden.net
    n, n_L, l = net.n_params, net.n_L, 3
    with np.load(case, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    assert str(arrays["schema"]) == GOLDEN_SCHEMA and int(arrays["schema_version"]) == GOLDEN_VERSION
    for k, a in arrays.items():
        assert a.dtype.kind in "fiU", (k, a.dtype)             # numbers and text only, nothing pickled
    expected = {"X": (96, l), "y": (l,), "theta": (n,), "output": (n_L, l), "f": (), "grad": (n,), "v": (n,),
                "u": (n_L, l), "Jv": (n_L, l), "JTu": (n,), "Gv": (n,), "C": (), "layer_offsets": (4,),
                "winners/1": (3 * 3 * 4, l), "torch/x": (l, 2, 6, 8), "torch/output": (l, n_L),
                "torch/u": (l, n_L), "torch/Jv": (l, n_L), "torch/winners/1": (l, 3, 3, 4),
                "torch/grad/0.weight": (3, 2, 3, 3), "torch/JTu/3.weight": (4, 3, 2, 2),
                "torch/Gv/6.weight": (5, 4 * 2 * 3), "torch/theta/6.bias": (5,), "torch/v/0.bias": (3,)}
    for k, shape in expected.items():
        assert arrays[k].shape == shape, k
    assert arrays["y"].dtype == np.int64 and arrays["winners/1"].dtype == np.int64
    assert float(arrays["C"]) == 4.0
    desc = json.loads(str(arrays["network"]))
    assert desc["input_shape"] == [6, 8, 2] and desc["torch_input_shape"] == [2, 6, 8]
    assert [p["name"] for p in desc["torch_parameters"]] == ["0.weight", "0.bias", "3.weight", "3.bias",
                                                             "6.weight", "6.bias"]
    info = json.loads(str(arrays["info"]))
    assert info["seed"] == 7 and set(info["max_pool_ties"]["1"]) == {"windows", "tied", "matter"}
    # the layout documented in NOTATION.md: x[i, c, r, q] = X[c + d*(r + a*q), i]
    i, c, r, q, a, d = 2, 1, 4, 5, 6, 2
    assert arrays["torch/x"][i, c, r, q] == arrays["X"][c + d * (r + a * q), i]
    # theta[off + o + rows*j] = W^m[o, j]; conv weight[o, c, r, q] = W^m[o, r + h*q + h*h*c]
    off = arrays["layer_offsets"]
    o, c, r, q, h, rows = 2, 1, 0, 1, 2, 4
    j = r + h * q + h * h * c
    assert arrays["torch/theta/3.weight"][o, c, r, q] == arrays["theta"][off[1] + o + rows * j]


def test_round_trip(case: Path, golden: Golden) -> None:
    back = read_golden(case)
    assert back.net.summary() == golden.net.summary() and back.C == golden.C and back.f == golden.f
    for k in ("X", "y", "theta", "output", "grad", "v", "u", "Jv", "JTu", "Gv"):
        np.testing.assert_array_equal(getattr(back, k), getattr(golden, k))
    np.testing.assert_array_equal(back.winners[1], golden.winners[1])


def test_values_are_sparsecnns(golden: Golden) -> None:
    net = golden.net
    f, g = net.objective(golden.theta, golden.X, golden.y, golden.C)
    assert golden.f == f
    np.testing.assert_array_equal(golden.grad, g)
    np.testing.assert_allclose(golden.u.ravel() @ golden.Jv.ravel(), golden.v @ golden.JTu, rtol=1e-12)
    np.testing.assert_allclose(golden.Gv, (2 / golden.l) * net.JTv(golden.theta, golden.X, golden.Jv),
                               rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------- PyTorch agrees
def test_pytorch_reproduces_the_golden_file_in_its_own_layout(case: Path, tmp_path: Path) -> None:
    """Someone with PyTorch reads torch/x, torch/theta, torch/v, torch/u, computes everything, saves it
    under torch/ names, and check-golden passes; winners agree with PyTorch's return_indices."""
    torch = pytest.importorskip("torch")
    from sparsecnn import to_torch

    with np.load(case, allow_pickle=False) as archive:
        arr = {k: archive[k] for k in archive.files}
    golden = read_golden(case)
    model = to_torch(golden.net, np.zeros(golden.net.n_params))
    names = [k for k, _ in model.named_parameters()]
    params = {k: torch.as_tensor(arr[f"torch/theta/{k}"]) for k in names}
    x = torch.as_tensor(arr["torch/x"])
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(params[k])

    def fn(p):
        return torch.func.functional_call(model, p, (x,))

    out = fn(params)
    l = out.shape[0]
    Y = torch.nn.functional.one_hot(torch.as_tensor(arr["y"]), out.shape[1]).double()
    p_req = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    f = ((fn(p_req) - Y) ** 2).sum() / l + sum((v * v).sum() for v in p_req.values()) / (2 * float(arr["C"]))
    grads = torch.autograd.grad(f, list(p_req.values()))
    vt = {k: torch.as_tensor(arr[f"torch/v/{k}"]) for k in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # torch's forward AD loads torch.jit.script code
        _, jv = torch.func.jvp(fn, (params,), (vt,))
    _, pull = torch.func.vjp(fn, params)
    jtu = pull(torch.as_tensor(arr["torch/u"]))[0]
    gv = pull((2.0 / l) * jv)[0]
    results = {"f": np.array(float(f.detach())), "torch/output": out.detach().numpy(), "torch/Jv": jv.numpy()}
    for k, g in zip(names, grads, strict=True):
        results[f"torch/grad/{k}"] = g.numpy()
        results[f"torch/JTu/{k}"] = jtu[k].numpy()
        results[f"torch/Gv/{k}"] = gv[k].numpy()
    report = check_golden(case, save(tmp_path / "torch_results.npz", **results))
    assert report.passed, report
    assert {r.product for r in report.rows} == {"output", "f", "grad", "Jv", "JTu", "Gv"}
    # PyTorch's max-pool indices on sigma(S^1) are the file's torch/winners/1
    a1 = model[1](model[0](x))
    _, idx = torch.nn.functional.max_pool2d(a1, 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), arr["torch/winners/1"])


# ---------------------------------------------------------- check-golden
def test_results_in_sparsecnn_layout_float32(case: Path, golden: Golden, tmp_path: Path) -> None:
    res = save(tmp_path / "r.npz", **{k: np.asarray(getattr(golden, k), dtype=np.float32)
                                     for k in ("output", "grad", "Jv", "JTu", "Gv")}, f=np.float32(golden.f))
    report = check_golden(case, res)
    assert report.passed, report
    assert all(r.eps == float(np.finfo(np.float32).eps) for r in report.rows)
    assert "rel [eps32]" in report.table()


def test_flat_torch_vector_is_accepted(case: Path, golden: Golden, tmp_path: Path) -> None:
    flat = np.concatenate([golden.grad[p.theta_index].ravel() for p in golden.params])
    report = check_golden(case, save(tmp_path / "r.npz", **{"torch/grad": flat}))
    assert report.passed and [r.product for r in report.rows] == ["grad"] * 6


def test_a_wrong_entry_is_found_and_named_in_both_layouts(case: Path, golden: Golden, tmp_path: Path) -> None:
    arrays = {f"torch/grad/{p.name}": golden.grad[p.theta_index].copy() for p in golden.params}
    arrays["torch/grad/3.weight"][2, 1, 0, 1] += 0.5
    report = check_golden(case, save(tmp_path / "r.npz", **arrays))
    assert not report.passed
    assert report.first_failing_layer() == 2
    assert [(r.name, r.m) for r in report.failures()] == [("W^2", 2)]
    worst = report.failures()[0].worst[0]
    assert worst.torch_index == "3.weight[2, 1, 0, 1]"
    j = 0 + 2 * 1 + 4 * 1                                     # r + h*q + h*h*c
    k = int(layer_offsets(golden.net)[1]) + 2 + 4 * j        # off_2 + o + rows*j
    assert worst.ours_index == f"theta[{k}] = W^2[2, {j}]"
    assert worst.theirs - worst.ours == pytest.approx(0.5)
    assert "FAILED" in str(report) and "3.weight[2, 1, 0, 1]" in str(report)


def test_golden_file_checks_against_itself(case: Path) -> None:
    report = check_golden(case, case)
    assert report.passed and all(r.abs_err == 0 for r in report.rows)
    assert any(r.product == "grad[torch]" for r in report.rows)


# ----------------------------------------------------------------- errors
def sealed(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with their checksums recomputed, so the checks behind them are reached."""
    return {**arrays, "sha256": np.array(json.dumps(golden_checksums(arrays)))}


def test_bad_golden_files_raise_data_format_error(tmp_path: Path, case: Path) -> None:
    with pytest.raises(DataFormatError, match="not found"):
        read_golden(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataFormatError, match="not a zip archive"):
        read_golden(tmp_path / "text.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match="single .npy"):
        read_golden(tmp_path / "one.npy")
    with pytest.raises(DataFormatError, match="pickled"):
        read_golden(save(tmp_path / "obj.npz", schema=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(DataFormatError, match="not a sparsecnn golden file"):
        read_golden(save(tmp_path / "foreign.npz", a=np.zeros(2)))
    with np.load(case, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    with pytest.raises(DataFormatError, match="version"):
        read_golden(save(tmp_path / "v7.npz", **sealed({**arrays, "schema_version": np.array(7)})))
    with pytest.raises(DataFormatError, match="JSON"):
        read_golden(save(tmp_path / "json.npz", **sealed({**arrays, "network": np.array("{not json")})))
    with pytest.raises(DataFormatError, match="'grad' must have shape"):
        read_golden(save(tmp_path / "shape.npz", **sealed({**arrays, "grad": arrays["grad"][:-1]})))
    bad = {**arrays, "torch/grad/0.bias": arrays["torch/grad/0.bias"] + 1}
    with pytest.raises(DataFormatError, match="disagrees"):
        read_golden(save(tmp_path / "inconsistent.npz", **sealed(bad)))
    with pytest.raises(DataFormatError, match="'torch/grad/0.bias' does not match the SHA-256"):
        read_golden(save(tmp_path / "unsealed.npz", **bad))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(case.read_bytes()[:2000])
    with pytest.raises(DataFormatError):
        read_golden(truncated)
    assert zipfile.is_zipfile(case)


def test_bad_results_files_raise_data_format_error(tmp_path: Path, case: Path, golden: Golden) -> None:
    with pytest.raises(DataFormatError, match="unknown arrays \\['gradient'\\]"):
        check_golden(case, save(tmp_path / "a.npz", gradient=golden.grad))
    with pytest.raises(DataFormatError, match="'Jv' must have shape \\(5, 3\\)"):
        check_golden(case, save(tmp_path / "b.npz", Jv=golden.Jv.T))
    with pytest.raises(DataFormatError, match="missing \\['6.bias'\\]"):
        check_golden(case, save(tmp_path / "c.npz", **{f"torch/grad/{p.name}": golden.grad[p.theta_index]
                                                       for p in golden.params if p.name != "6.bias"}))
    with pytest.raises(DataFormatError, match="not both"):
        check_golden(case, save(tmp_path / "d.npz", **{"torch/grad": golden.grad,
                                                       "torch/grad/0.bias": np.zeros(3)}))
    with pytest.raises(DataFormatError, match="no results"):
        check_golden(case, save(tmp_path / "e.npz", X=golden.X))
    with pytest.raises(DataFormatError, match="float array"):
        check_golden(case, save(tmp_path / "f.npz", grad=np.array(["x"] * golden.net.n_params)))


# ------------------------------------------------------------ network files
def test_network_from_json_or_simplenn_config(tmp_path: Path) -> None:
    net = small_net()
    (tmp_path / "net.json").write_text(json.dumps(network_to_dict(net)))
    assert load_network_file(tmp_path / "net.json").summary() == net.summary()
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(DataFormatError, match="JSON"):
        load_network_file(tmp_path / "bad.json")
    (tmp_path / "small.config").write_text(
        "L = 2;\nLC = 1;\nLF = 1;\nwd_input = [5];\nht_input = [4];\nch_input = [1,2];\n"
        "wd_pad_added = [1];\nwd_filter = [3];\nstrides = [1];\nwd_subimage_pool = [2];\nfull_neurons = [3];\n")
    net2 = load_network_file(tmp_path / "small.config")
    assert net2.input_shape == (4, 5, 1) and net2.n_L == 3
