"""Hardening (issue 17): no silent wrong result, no unbounded allocation, no traceback.

One section per item of the issue; each test is a reproduction that failed before the fix.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.cli import main
from sparsecnn.config import (
    network_bytes,
    parse_simplenn_config,
    read_simplenn_config,
    size_limits,
)
from sparsecnn.data import load_simplenn_mat
from sparsecnn.exceptions import (
    ConfigError,
    DataFormatError,
    DivergenceError,
    InputTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
    SizeLimitError,
)
from sparsecnn.model_io import load_model, model_checksums, network_to_dict, save_model
from sparsecnn.optim import adam, newton, sgd
from sparsecnn.oracle.check import default_rtol
from sparsecnn.oracle.golden import check_golden, golden_checksums, make_golden, read_golden, write_golden

CONFIG = ("L = 2;\nLC = 1;\nLF = 1;\nwd_input = [6];\nht_input = [6];\nch_input = [1,2];\nwd_pad_added = [1];\n"
          "wd_filter = [3];\nstrides = [1];\nwd_subimage_pool = [2];\nfull_neurons = [3];\n")


def small_net() -> Network:
    return Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def resealed_model(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model's arrays with checksums recomputed: what someone who edits the file carefully writes."""
    sums = model_checksums(json.loads(str(arrays["network"])), arrays["theta"], arrays["mean"],
                           json.loads(str(arrays["meta"])))
    return {**arrays, "sha256": np.array(json.dumps(sums))}


def resealed_golden(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**arrays, "sha256": np.array(json.dumps(golden_checksums(arrays)))}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.config").write_text(CONFIG)
    rng = np.random.default_rng(0)
    scipy.io.savemat(tmp_path / "train.mat", {"Z": rng.integers(0, 256, (30, 36)), "y": rng.integers(0, 3, (30, 1))})
    scipy.io.savemat(tmp_path / "empty.mat", {"Z": np.zeros((0, 36)), "y": np.zeros((0, 1))})
    return tmp_path


def train(folder: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(folder / "tiny.config"), "--train", str(folder / "train.mat"), "--quiet",
            *extra]


# ------------------------------------------------- 1. check-golden tolerance per row
@pytest.fixture(scope="module")
def golden_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("golden") / "case.npz"
    golden = make_golden(small_net(), instances=3, seed=0)
    write_golden(path, golden)
    return path, golden


def test_item1_float16_results_are_refused(golden_case, tmp_path: Path) -> None:
    path, golden = golden_case
    np.savez(tmp_path / "r.npz", f=np.float16(golden.f), grad=golden.grad * 1.05)
    with pytest.raises(DataFormatError, match="'f' is float16; float16 results cannot be checked"):
        check_golden(path, tmp_path / "r.npz")


def test_item1_each_row_takes_the_tolerance_of_its_own_dtype(golden_case, tmp_path: Path) -> None:
    """A float32 ``f`` no longer loosens a float64 gradient: 1e-5 relative error fails the float64 rows."""
    path, golden = golden_case
    np.savez(tmp_path / "r.npz", f=np.float32(golden.f), grad=golden.grad * (1 + 1e-5))
    report = check_golden(path, tmp_path / "r.npz")
    f_row = next(r for r in report.rows if r.product == "f")
    grad_rows = [r for r in report.rows if r.product == "grad"]
    assert f_row.passed and f_row.rtol == default_rtol(float(np.finfo(np.float32).eps))
    assert grad_rows and all(r.rtol == default_rtol(float(np.finfo(np.float64).eps)) for r in grad_rows)
    assert not any(r.passed for r in grad_rows if r.scale > 0)
    assert not report.passed
    # and a float32 gradient with the same error passes, judged in eps32
    np.savez(tmp_path / "r32.npz", f=golden.f, grad=(golden.grad * (1 + 1e-5)).astype(np.float32))
    assert check_golden(path, tmp_path / "r32.npz").passed


# ------------------------------------------------------------ 2. divergence
def data(l: int = 30, scale: float = 1.0) -> tuple[Network, np.ndarray, np.ndarray, np.ndarray]:
    net = Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])
    rng = np.random.default_rng(0)
    return net, net.init_params(seed=0), rng.standard_normal((16, l)) * scale, rng.integers(0, 3, l)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_item2_sgd_with_a_huge_learning_rate_stops_with_divergence_error() -> None:
    net, theta0, X, y = data()
    with pytest.raises(DivergenceError, match=r"sgd diverged at epoch 1 \(step 2\).*learning rate lr = 1e\+300") as info:
        sgd(net, theta0, X, y, C=0.3, lr=1e300, epoch_max=3, bsize=10)
    err = info.value
    assert err.iteration == 1 and np.isfinite(err.theta).all() and err.theta.shape == theta0.shape
    assert not np.array_equal(err.theta, theta0)          # the iterate after step 1, the last finite one


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("kwargs, cause", [
    ({"C": 1e-300}, "C = 1e-300"),
    ({"lam": 1e308}, "lambda = 1e\\+308"),
    ({"scale": 1e300}, "the input scale"),
])
def test_item2_newton_names_the_likely_cause(kwargs: dict, cause: str) -> None:
    net, theta0, X, y = data(scale=kwargs.pop("scale", 1.0))
    kwargs.setdefault("C", 0.3)
    with pytest.raises(DivergenceError, match=f"newton diverged at .*likely cause: {cause}") as info:
        newton(net, theta0, X, y, iter_max=3, **kwargs)
    assert "theta must be finite" not in str(info.value)
    assert np.isfinite(info.value.theta).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_item2_adam_on_huge_inputs() -> None:
    net, theta0, X, y = data(scale=1e300)
    with pytest.raises(DivergenceError, match="adam diverged at epoch 1 .*input scale") as info:
        adam(net, theta0, X, y, C=0.3, epoch_max=2)
    assert info.value.iteration == 1 and np.array_equal(info.value.theta, theta0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_item2_train_exits_non_zero_and_saves_the_last_finite_theta(folder: Path, capsys) -> None:
    model = folder / "m.npz"
    status = main(train(folder, "--solver", "sgd", "--lr", "1e300", "--epoch-max", "3", "--save", str(model)))
    err = capsys.readouterr().err
    assert status == 1 and "sgd diverged" in err and "saved to" in err
    loaded = load_model(model)
    assert np.isfinite(loaded.theta).all() and loaded.meta["diverged"] is True


# ---------------------------------------------------------- 3. zero instances
def test_item3_objective_and_optimisers_name_l() -> None:
    net, theta0, _, _ = data()
    X0, y0 = np.zeros((16, 0)), np.zeros(0, dtype=int)
    with pytest.raises(ShapeError, match="l = 0"):
        net.objective(theta0, X0, y0)
    for run in (lambda: newton(net, theta0, X0, y0, C=1.0), lambda: sgd(net, theta0, X0, y0, C=1.0),
                lambda: adam(net, theta0, X0, y0, C=1.0)):
        with pytest.raises(ShapeError, match="l = 0"):
            run()


def test_item3_predict_and_test_on_empty_data(folder: Path, capsys) -> None:
    save_model(folder / "m.npz", small_net(), small_net().init_params(seed=0))
    assert main(["predict", "--model", str(folder / "m.npz"), "--data", str(folder / "empty.mat")]) == 1
    err = capsys.readouterr().err
    assert "l = 0" in err and "nan" not in err
    assert main(train(folder, "--iter-max", "1", "--test", str(folder / "empty.mat"))) == 1
    out, err = capsys.readouterr()
    assert "l = 0" in err and "test_acc" not in out


# ------------------------------------------------------ 4. checksums, labels
def test_item4_changed_activation_is_detected(tmp_path: Path) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0))
    arrays = arrays_of(tmp_path / "m.npz")
    desc = json.loads(str(arrays["network"]))
    desc["layers"][0]["activation"] = "tanh"                  # same parameter count
    np.savez(tmp_path / "m.npz", **{**arrays, "network": np.array(json.dumps(desc))})
    with pytest.raises(DataFormatError, match="the network description does not match the SHA-256"):
        load_model(tmp_path / "m.npz")


def test_item4_every_model_entry_is_covered(tmp_path: Path) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0), mean=np.zeros(36), meta={"scale": 0.5})
    arrays = arrays_of(tmp_path / "m.npz")
    changes = {"theta": arrays["theta"] + 1e-12, "mean": arrays["mean"] + 1,
               "meta": np.array(json.dumps({"scale": 0.25}))}
    for key, value in changes.items():
        np.savez(tmp_path / f"{key}.npz", **{**arrays, key: value})
        with pytest.raises(DataFormatError, match=f"\\['{key}'\\] changed"):
            load_model(tmp_path / f"{key}.npz")


def test_item4_golden_network_tampering_and_labels(golden_case, tmp_path: Path) -> None:
    path, golden = golden_case
    arrays = arrays_of(path)
    desc = json.loads(str(arrays["network"]))
    desc["layers"][0]["activation"] = "tanh"
    np.savez(tmp_path / "net.npz", **{**arrays, "network": np.array(json.dumps(desc))})
    with pytest.raises(DataFormatError, match="'network' does not match the SHA-256"):
        read_golden(tmp_path / "net.npz")
    for bad in (3, -1):
        y = arrays["y"].copy()
        y[1] = bad
        np.savez(tmp_path / "y.npz", **resealed_golden({**arrays, "y": y}))
        with pytest.raises(DataFormatError, match=f"labels in 0..n_L-1 = 0..2, got {bad} at position 1"):
            read_golden(tmp_path / "y.npz")


# ---------------------------------------------------------- 5. size limits
def test_item5_huge_model_is_refused_before_building(tmp_path: Path) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0))
    arrays = arrays_of(tmp_path / "m.npz")
    desc = json.loads(str(arrays["network"]))
    desc["input_shape"] = [6000, 6000, 1]
    np.savez(tmp_path / "big.npz", **resealed_model({**arrays, "network": np.array(json.dumps(desc))}))
    assert (tmp_path / "big.npz").stat().st_size < 100_000
    start = time.perf_counter()
    with pytest.raises(SizeLimitError, match=r"would need about [\d.]+ GB to build \(P_phi of layer 1"):
        load_model(tmp_path / "big.npz")
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("key, value", [("wd_input", "[1000000000]"), ("full_neurons", "[10000000000000]"),
                                        ("ch_input", "[1,1e300]")])
def test_item5_huge_config_is_refused_before_building(tmp_path: Path, key: str, value: str) -> None:
    text = "\n".join(f"{key} = {value};" if line.startswith(key + " ") else line for line in CONFIG.splitlines())
    (tmp_path / "big.config").write_text(text)
    start = time.perf_counter()
    with pytest.raises(SizeLimitError, match="would need about .* to build"):
        Network.from_simplenn_config(tmp_path / "big.config")
    assert time.perf_counter() - start < 5.0


def test_item5_limits_are_configurable_and_estimates_count_theta() -> None:
    for net in (small_net(), Network((9, 7, 3), [ConvLayer(4, h=3, s=2, r=2), ConvLayer(2, h=2, p=1, r=1),
                                                 FullLayer(5), FullLayer(2)])):
        spec = [ConvLayer(**{k: v for k, v in d.items() if k != "kind"}) if d["kind"] == "conv"
                else FullLayer(**{k: v for k, v in d.items() if k != "kind"})
                for d in network_to_dict(net)["layers"]]
        assert network_bytes(net.input_shape, spec).n_params == net.n_params
    with size_limits(max_bytes=1000):
        with pytest.raises(SizeLimitError, match="the limit is 1 kB"):
            Network.from_config_dict(parse_simplenn_config(CONFIG))
    assert Network.from_config_dict(parse_simplenn_config(CONFIG)).n_params == 77


def test_item5_npz_member_declaring_a_huge_array(tmp_path: Path) -> None:
    """A member whose .npy header declares 10^12 floats is refused from its header, before allocation."""
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0))
    with zipfile.ZipFile(tmp_path / "m.npz") as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    members["theta.npy"] = npy.getvalue() + b"\0" * 80
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(DataFormatError, match=r"'theta' declares shape \(1000000000000,\)"):
        load_model(tmp_path / "huge.npz")


# ---------------------------------------------------------- 6. special files
def test_item6_dev_zero_and_folders_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_simplenn_config("/dev/zero")
    with pytest.raises(DataFormatError, match="not a regular file"):
        load_model("/dev/zero")
    with pytest.raises(DataFormatError, match="not a regular file"):
        read_golden("/tmp")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_item6_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def read_all() -> None:
        for reader in (read_simplenn_config, load_model, read_golden):
            try:
                reader(fifo)
            except (ConfigError, DataFormatError) as exc:
                errors.append(exc)

    worker = threading.Thread(target=read_all, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():               # unblock the reader, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO hangs")
    assert len(errors) == 3 and all("a FIFO" in str(e) for e in errors)


def test_item6_cli_config_dev_zero(folder: Path, capsys) -> None:
    assert main(["train", "--config", "/dev/zero", "--train", str(folder / "train.mat"), "--quiet"]) == 1
    assert "not a regular file" in capsys.readouterr().err


# -------------------------------------------------- 7. messages, not tracebacks
def test_item7_model_scale_not_a_number_and_deep_json(tmp_path: Path) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0), meta={"scale": 0.5})
    arrays = arrays_of(tmp_path / "m.npz")
    np.savez(tmp_path / "s.npz", **resealed_model({**arrays, "meta": np.array('{"scale": "big"}')}))
    with pytest.raises(DataFormatError, match=r"meta\['scale'\].*must be a finite number, got 'big'"):
        load_model(tmp_path / "s.npz")
    deep = "[" * 100_000 + "]" * 100_000
    np.savez(tmp_path / "d.npz", **{**arrays, "meta": np.array('{"a": ' + deep + "}")})
    with pytest.raises(DataFormatError, match="nested too deeply"):
        load_model(tmp_path / "d.npz")


def test_item7_predict_with_such_a_model_exits_2_with_one_line(tmp_path: Path, folder: Path, capsys) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0), meta={"scale": 0.5})
    arrays = arrays_of(tmp_path / "m.npz")
    np.savez(tmp_path / "s.npz", **resealed_model({**arrays, "meta": np.array('{"scale": "big"}')}))
    np.savez(tmp_path / "d.npz", **{**arrays, "meta": np.array('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")})
    for name, message in (("s.npz", "must be a finite number, got 'big'"), ("d.npz", "nested too deeply")):
        assert main(["predict", "--model", str(tmp_path / name), "--data", str(folder / "train.mat")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["--scheduler", "notanaddress"], "argument --scheduler: must be a scheduler address"),
])
def test_item7_bad_arguments_exit_2(folder: Path, capsys, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(train(folder, *extra))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err


def test_item7_plot_format_checked_before_any_work(folder: Path, capsys) -> None:
    status = main(train(folder, "--plot", str(folder / "p.xyz"), "--save", str(folder / "m.npz")))
    out, err = capsys.readouterr()
    assert status == 2 and "matplotlib cannot write '.xyz' files" in err
    assert err.count("\n") == 1 and out == ""                  # one line, nothing trained
    assert not (folder / "m.npz").exists()


# ------------------------------------------------------ 8. the right symbol
def test_item8_nan_mean_in_a_model_names_mean(tmp_path: Path) -> None:
    net = small_net()
    save_model(tmp_path / "m.npz", net, net.init_params(seed=0), mean=np.zeros(36))
    arrays = arrays_of(tmp_path / "m.npz")
    mean = arrays["mean"].copy()
    mean[3] = np.nan
    np.savez(tmp_path / "nan.npz", **resealed_model({**arrays, "mean": mean}))
    with pytest.raises(DataFormatError, match="mean .* holds NaN or Inf"):
        load_model(tmp_path / "nan.npz")
    with pytest.raises(DataFormatError, match="mean .* must be finite"):
        save_model(tmp_path / "x.npz", net, net.init_params(seed=0), mean=mean)


def test_item8_nan_v_and_u_are_named() -> None:
    net, theta, X, _ = data(l=2)
    v = np.ones(net.n_params)
    v[3] = np.nan
    with pytest.raises(NonFiniteError, match="^v must be finite, got nan at entry 3"):
        net.Jv(theta, X, v)
    with pytest.raises(NonFiniteError, match="^v must be finite"):
        net.gauss_newton(theta, X) @ v
    with pytest.raises(NonFiniteError, match="^u must be finite"):
        net.JTv(theta, X, np.full((3, 2), np.nan))


def test_item8_labels_reported_as_given() -> None:
    net = small_net()
    with pytest.raises(LabelError, match=r"got 1e\+30 at position 0"):
        net.check_y(np.array([1e30]), 1)
    with pytest.raises(LabelError, match="got 18446744073709551615 at position 0"):
        net.check_y(np.array([2**64 - 1], dtype=np.uint64), 1)
    with pytest.raises(LabelError, match="got -3 at position 1"):
        net.check_y(np.array([0, -3], dtype=np.int8), 2)
    with pytest.raises(InputTypeError, match="y must be a vector of integer labels, got dtype complex128"):
        net.check_y(np.array([1 + 0j]), 1)


# ------------------------------------------------- 9. output paths checked first
@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_item9_unwritable_outputs_are_found_before_training(folder: Path, capsys, option: str) -> None:
    for target, message in ((folder / "missing" / "out.png", "does not exist"), (folder, "is a folder")):
        status = main(train(folder, "--iter-max", "50", option, str(target)))
        out, err = capsys.readouterr()
        assert status == 2 and message in err and "iterations" not in out


# ------------------------------------------------------ 10. saves and permissions
def saved_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("write", ["model", "golden"])
def test_item10_umask_symlink_and_existing_mode(tmp_path: Path, write: str) -> None:
    net = small_net()

    def save(path: Path) -> None:
        if write == "model":
            save_model(path, net, net.init_params(seed=0))
        else:
            write_golden(path, make_golden(net, instances=2))

    old = os.umask(0o022)
    try:
        save(tmp_path / "new.npz")
        assert saved_mode(tmp_path / "new.npz") == 0o644
        os.umask(0o077)
        save(tmp_path / "new2.npz")
        assert saved_mode(tmp_path / "new2.npz") == 0o600
        (tmp_path / "kept.npz").write_bytes(b"")
        (tmp_path / "kept.npz").chmod(0o640)
        save(tmp_path / "kept.npz")
        assert saved_mode(tmp_path / "kept.npz") == 0o640
    finally:
        os.umask(old)
    real = tmp_path / "real.npz"
    real.write_bytes(b"")
    (tmp_path / "link.npz").symlink_to(real.name)
    save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink() and real.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_item10_stray_tmp_of_a_killed_save_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    stray = tmp_path / f".m.npz.{pid}.deadbeef.tmp"
    stray.write_bytes(b"half a file")
    other = tmp_path / f".m.npz.{os.getpid() + 10**7}.cafe.tmp"     # no such process either
    net = small_net()
    with pytest.warns(RuntimeWarning, match="removed a temporary file left by an interrupted save"):
        save_model(tmp_path / "m.npz", net, net.init_params(seed=0))
    assert not stray.exists() and not other.exists()
    assert load_model(tmp_path / "m.npz").theta.shape == (net.n_params,)


# ------------------------------------------------ found by tests/test_fuzz.py
def load_in_a_process(path: Path) -> subprocess.CompletedProcess[str]:
    """load_simplenn_mat in a child process: a regression would crash it, not pytest."""
    code = ("import sys\nfrom sparsecnn.data import load_simplenn_mat\nfrom sparsecnn.exceptions import SparseCNNError\n"
            "try:\n    load_simplenn_mat(sys.argv[1])\nexcept SparseCNNError as exc:\n    print(exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env=env)


def test_fuzz_finding_mat_flagged_complex_without_imaginary_part(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"Z": np.arange(80.0).reshape(5, 16), "y": np.zeros((5, 1))})
    data = bytearray((tmp_path / "d.mat").read_bytes())
    data[145] ^= 0x08                        # the complex bit of Z's array flags: scipy read past its buffer
    (tmp_path / "bad.mat").write_bytes(bytes(data))
    proc = load_in_a_process(tmp_path / "bad.mat")
    assert proc.returncode == 0 and "Z is marked complex but has no imaginary part" in proc.stdout


def test_fuzz_finding_mat_sparse_column_pointer_out_of_range(tmp_path: Path) -> None:
    Z = scipy.sparse.csc_matrix(np.arange(80.0).reshape(5, 16))
    scipy.io.savemat(tmp_path / "d.mat", {"Z": Z, "y": np.zeros((5, 1))})
    data = bytearray((tmp_path / "d.mat").read_bytes())
    jc = data.index(np.array([0, 4, 9], dtype="<i4").tobytes())    # Z's column pointers 0, 4, 9, ...
    data[jc + 5] ^= 1                        # jc[1] = 260: scipy indexed past the row indices
    (tmp_path / "bad.mat").write_bytes(bytes(data))
    proc = load_in_a_process(tmp_path / "bad.mat")
    assert proc.returncode == 0 and "row indices and column pointers do not fit" in proc.stdout


@pytest.mark.parametrize("label, dtype", [(1e30, np.float64), (2**63, np.uint64), (2**64 - 1, np.uint64)])
def test_fuzz_finding_mat_labels_beyond_int64(tmp_path: Path, label: float, dtype: type) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"Z": np.zeros((2, 4)), "y": np.array([[label], [0]], dtype=dtype)})
    with pytest.raises(DataFormatError, match="y must hold labels < 2\\^63"):
        load_simplenn_mat(tmp_path / "d.mat")
