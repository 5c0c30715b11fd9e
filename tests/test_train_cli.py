"""``sparsecnn train`` / ``sparsecnn predict`` and model files (save, load, corrupt files)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.cli import main
from sparsecnn.data import load_simplenn_mat
from sparsecnn.exceptions import DataFormatError
from sparsecnn.model_io import load_model, network_from_dict, network_to_dict, save_model

CONFIG = """% tiny: one conv layer, one full layer
L = 2;
LC = 1;
LF = 1;
wd_input = [6];
ht_input = [6];
ch_input = [1,3];
wd_pad_added = [1];
wd_filter = [3];
strides = [1];
wd_subimage_pool = [2];
full_neurons = [3];
"""


def write_data(path: Path, l: int, seed: int) -> None:
    """simpleNN layout: Z is l x 36 (rows of the image one after the other), values 0..255."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, l)
    img = rng.uniform(0, 80, (l, 6, 6))
    for i in range(l):
        img[i, 2 * y[i]:2 * y[i] + 2, :] += 170                    # a bright band of rows per class
    scipy.io.savemat(path, {"Z": np.round(img.reshape(l, 36)), "y": y[:, None].astype(float)})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "tiny.config").write_text(CONFIG)
    write_data(tmp_path / "train.mat", 60, 0)
    write_data(tmp_path / "test.mat", 30, 1)
    return {"config": tmp_path / "tiny.config", "train": tmp_path / "train.mat",
            "test": tmp_path / "test.mat", "dir": tmp_path}


def base(files: dict[str, Path]) -> list[str]:
    return ["train", "--config", str(files["config"]), "--train", str(files["train"])]


def test_train_newton_save_predict_plot(files, capsys):
    model = files["dir"] / "model.npz"
    plot = files["dir"] / "curves.png"
    argv = base(files) + ["--test", str(files["test"]), "--solver", "newton", "--iter-max", "5",
                          "--GNsize", "20", "--save", str(model), "--plot", str(plot), "--seed", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert last.startswith("test_acc: ")
    acc = float(last.split()[1])
    assert acc >= 0.9
    assert "#CG" in err and "val_acc" in err                           # the progress bar
    assert plot.stat().st_size > 0
    assert [p.name for p in files["dir"].iterdir() if p.name.endswith(".tmp")] == []
    loaded = load_model(model)
    assert loaded.mean is not None and loaded.mean.shape == (36,)
    assert loaded.meta["solver"] == "newton" and loaded.scale == pytest.approx(1 / 255)
    assert main(["predict", "--model", str(model), "--data", str(files["test"])]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == f"accuracy: {acc:g}"


@pytest.mark.parametrize("solver, extra", [("sgd", ["--lr", "0.05", "--momentum", "0.9"]), ("adam", [])])
def test_train_sgd_adam(files, capsys, solver, extra):
    argv = base(files) + ["--test", str(files["test"]), "--solver", solver, "--epoch-max", "2",
                          "--bsize", "16", "--quiet", *extra]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith("test_acc: ")
    assert err == ""


def test_train_float32_takes_the_float64_steps_to_single_precision(files, capsys):
    finals = {}
    for name, extra in [("float64", ["--dtype", "float64"]), ("float32", ["--dtype", "float32"]),
                        ("G v float32", ["--gn-dtype", "float32"])]:
        assert main(base(files) + ["--iter-max", "3", "--GNsize", "20", "--quiet", *extra]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        finals[name] = float(line.split(", f ")[1].split(",")[0])
    assert finals["float32"] == pytest.approx(finals["float64"], rel=1e-3)
    assert finals["G v float32"] == pytest.approx(finals["float64"], rel=1e-3)
    assert main(base(files) + ["--solver", "sgd", "--gn-dtype", "float32", "--quiet"]) == 1
    assert "--gn-dtype is for --solver newton" in capsys.readouterr().err


def test_train_without_test_prints_no_accuracy(files, capsys):
    assert main(base(files) + ["--iter-max", "1", "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert "test_acc" not in out and "newton: 1 iterations" in out


@pytest.mark.parametrize("argv_extra", [["--C", "-1"], ["--GNsize", "0"], ["--solver", "lbfgs"],
                                        ["--iter-max", "two"], ["--xi", "nan"], ["--dtype", "float16"],
                                        ["--gn-dtype", "half"]])
def test_bad_arguments_exit_2(files, capsys, argv_extra):
    with pytest.raises(SystemExit) as exc:
        main(base(files) + argv_extra)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_missing_files_give_clear_errors(files, capsys):
    assert main(["train", "--config", str(files["dir"] / "nope.config"), "--train", str(files["train"])]) == 1
    assert "sparsecnn train: error:" in capsys.readouterr().err
    assert main(base(files)[:3] + ["--train", str(files["dir"] / "nope.mat"), "--quiet"]) == 1
    assert "nope.mat" in capsys.readouterr().err
    assert main(["predict", "--model", str(files["dir"] / "none.npz"), "--data", str(files["test"])]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_predict_rejects_corrupt_and_foreign_models(files, capsys):
    d = files["dir"]
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(d / "foreign.npz", a=np.arange(3))
    with open(d / "pickled.npz", "wb") as fh:
        pickle.dump({"theta": [1, 2]}, fh)
    np.save(d / "array.npy", np.arange(3))
    for name in ("garbage.npz", "foreign.npz", "pickled.npz", "array.npy"):
        assert main(["predict", "--model", str(d / name), "--data", str(files["test"])]) == 2
        err = capsys.readouterr().err
        assert "sparsecnn predict: error:" in err and name in err


# ---------------------------------------------------------------- model_io
def small() -> tuple[Network, np.ndarray]:
    net = Network((6, 6, 2), [ConvLayer(3, h=3, s=2, p=1, r=1, activation="tanh", pool="avg"),
                              FullLayer(4, activation="sigmoid"), FullLayer(2)])
    return net, net.init_params(seed=0)


def test_network_dict_round_trip():
    net, _ = small()
    again = network_from_dict(json.loads(json.dumps(network_to_dict(net))))
    assert repr(again) == repr(net)
    with pytest.raises(DataFormatError, match="invalid network description"):
        network_from_dict({"input_shape": [6, 6], "layers": []})
    with pytest.raises(DataFormatError, match="kind"):
        network_from_dict({"input_shape": [6, 6, 1], "layers": [{"kind": "pool"}]})


def test_save_load_round_trip_and_atomic_overwrite(tmp_path):
    net, theta = small()
    path = tmp_path / "m.model"                                          # written exactly as named
    save_model(path, net, theta)
    save_model(path, net, 2 * theta, meta={"note": "second"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model"]
    m = load_model(path)
    assert np.array_equal(m.theta, 2 * theta) and m.mean is None and m.meta == {"note": "second"}
    X = np.random.default_rng(0).standard_normal((72, 3))
    assert np.array_equal(m.net.output(m.theta, X), net.output(2 * theta, X))


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    net, theta = small()
    path = tmp_path / "m.npz"
    save_model(path, net, theta)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, net, 3 * theta)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_load_rejects_tampered_models(tmp_path):
    from sparsecnn.model_io import model_checksums

    net, theta = small()
    good = {"format": np.array("sparsecnn-model"), "version": np.array(2),
            "network": np.array(json.dumps(network_to_dict(net))), "theta": theta,
            "mean": np.zeros(0), "meta": np.array("{}")}

    def sealed(arrays):                  # the checksums recomputed, so the checks behind them are reached
        try:
            sums = model_checksums(json.loads(str(arrays["network"])), arrays["theta"], arrays["mean"],
                                   json.loads(str(arrays["meta"])))
        except (ValueError, TypeError):
            sums = {}
        return {**arrays, "sha256": np.array(json.dumps(sums))}

    cases = {
        "theta": ({"theta": theta[:-1]}, "theta must be"),
        "nan": ({"theta": np.full_like(theta, np.nan)}, "NaN"),
        "version": ({"version": np.array(7)}, "version"),
        "json": ({"network": np.array("{not json")}, "corrupt JSON"),
        "mean": ({"mean": np.zeros(5)}, "mean must be"),
        "format": ({"format": np.array("other")}, "not a sparsecnn model"),
        "objects": ({"meta": np.array([{"a": 1}], dtype=object)}, "model file"),
    }
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **sealed({**good, **change}))
        with pytest.raises(DataFormatError, match=message):
            load_model(path)
    np.savez(tmp_path / "unsealed.npz", **{**sealed(good), "theta": 2 * theta})
    with pytest.raises(DataFormatError, match="theta does not match the SHA-256"):
        load_model(tmp_path / "unsealed.npz")
    np.savez(tmp_path / "ok.npz", **sealed(good))
    assert np.array_equal(load_model(tmp_path / "ok.npz").theta, theta)


# ---------------------------------------------------------------- packaged names (sparsecnn.datasets)
def test_packaged_names_work_from_any_folder(tmp_path, monkeypatch, capsys):
    """The README's command, from an empty folder: the files come from inside the package."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--config", "mnist-demo-layer4", "--train", "mnist-demo", "--test", "mnist-demo.t",
            "--iter-max", "1", "--CGmax", "2", "--quiet", "--save", "m.npz"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("newton: 1 iterations") and out[-1].startswith("test_acc: ")
    acc = float(out[-1].split()[1])
    assert main(["predict", "--model", "m.npz", "--data", "mnist-demo.t", "--bsize", "100"]) == 0
    assert capsys.readouterr().out.strip() == f"accuracy: {acc:g}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


@pytest.mark.parametrize("option, value, message", [
    ("--train", "mnist-dmeo", "mnist-dmeo: no such file, and not a packaged name (did you mean 'mnist-demo'?)"),
    ("--config", "mnist-demo-layer3", "not a packaged name (did you mean 'mnist-demo-layer4'?)"),
    ("--config", "mnist-demo", "'mnist-demo' is packaged data (mnist-demo.mat), not a configuration"),
    ("--train", "mnist-demo-layer4", "'mnist-demo-layer4' is a packaged configuration"),
    ("--val", "mnist-demo.tt", "mnist-demo.tt: no such file"),
])
def test_unknown_packaged_name_lists_the_names(files, tmp_path, monkeypatch, capsys, option, value, message):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--config", "mnist-demo-layer4", "--train", "mnist-demo", "--iter-max", "1", "--quiet"]
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("sparsecnn train: error: ") and message in err
    if "no such file" in message:
        for name in ("mnist-demo-layer4", "mnist-demo", "mnist-demo.t"):
            assert name in err


# ---------------------------------------------------------------- --val, --log, --scale (simpleNN's options)
NEWTON_LINE = re.compile(r"(\d+)-iter f: \S+ \|g\|: \S+ alpha: \S+ ratio: \S+ lambda: \S+ #CG: \d+ "
                         r"actred: \S+ prered: \S+ val_acc: (\S+)")


def test_val_keeps_saves_and_prints_the_best_iteration(files, capsys):
    d = files["dir"]
    write_data(d / "val.mat", 30, 2)
    argv = base(files) + ["--val", str(d / "val.mat"), "--iter-max", "6", "--GNsize", "10",
                          "--save", str(d / "best.npz"), "--log", str(d / "train.log"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    log = (d / "train.log").read_text().splitlines()
    assert log[2].startswith("iteration 1 took ")              # the estimate, after the first iteration
    del log[2]
    rows = [NEWTON_LINE.fullmatch(line) for line in log[1:7]]
    assert all(rows), log
    accs = [float(m.group(2)) for m in rows if m]
    k = accs.index(max(accs)) + 1
    assert k < 6                                  # on this data the best model is not the last one
    best_line = f"best val_acc: {max(accs):g} at iteration {k} of 6 (the model kept)"
    assert best_line in out.splitlines() and log[-1] == best_line
    assert log[0].startswith("initial f: ") and log[7].startswith("total_#CG: ")
    model = load_model(d / "best.npz")
    assert model.meta["best_iteration"] == k and model.meta["scaling"] == "255"
    # independently: the run stopped at iteration k saves the same theta
    stop = base(files) + ["--iter-max", str(k), "--GNsize", "10", "--save", str(d / "k.npz"), "--quiet"]
    assert main(stop) == 0
    assert np.array_equal(load_model(d / "k.npz").theta, model.theta)
    assert main(["predict", "--model", str(d / "best.npz"), "--data", str(d / "val.mat")]) == 0
    assert f"accuracy: {max(accs):g}" in capsys.readouterr().out


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_val_for_sgd_and_adam_counts_epochs(files, capsys, solver):
    d = files["dir"]
    argv = base(files) + ["--val", str(files["test"]), "--solver", solver, "--epoch-max", "3", "--bsize", "16",
                          "--log", str(d / "e.log")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = (d / "e.log").read_text().splitlines()
    assert lines.pop(1).startswith("epoch 1 took ")                     # the estimate, after the first epoch
    epochs = [re.fullmatch(r"(\d)-epoch f: \S+ \|g\|: \S+ lr: \S+ val_acc: (\S+)", line) for line in lines[:3]]
    assert all(epochs), lines
    accs = [float(m.group(2)) for m in epochs if m]
    assert lines[3] == f"best val_acc: {max(accs):g} at epoch {accs.index(max(accs)) + 1} of 3 (the model kept)"
    for line in lines:                                                    # the same lines on the terminal
        assert line in out.splitlines()
    assert "epoch" in err                                                # the progress bar


def test_log_file_holds_what_the_terminal_shows(files, capsys):
    d = files["dir"]
    argv = base(files) + ["--test", str(files["test"]), "--iter-max", "3", "--GNsize", "20",
                          "--log", str(d / "run.log")]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    log = (d / "run.log").read_text().splitlines()
    assert [line for line in out if not line.startswith("newton: ")] == log
    assert [NEWTON_LINE.fullmatch(line) is not None for line in log] == [False, True, False, True, True, False,
                                                                          False]
    assert log[2].startswith("iteration 1 took ") and "3 iterations will take roughly" in log[2]
    assert log[-1].startswith("test_acc: ")


@pytest.mark.parametrize("solver, total, unit", [("newton", "--iter-max", "iteration"),
                                                 ("sgd", "--epoch-max", "epoch")])
def test_train_estimates_the_whole_run_after_the_first_iteration_even_when_quiet(files, capsys, solver, total,
                                                                                unit):
    argv = base(files) + ["--solver", solver, total, "4", "--GNsize", "20", "--quiet"]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{unit} 1 took ")]
    assert len(lines) == 1
    took = float(lines[0].split()[3])
    words = lines[0].split("roughly ")[1].split()
    estimate = float(words[0]) * {"s": 1, "min": 60, "h": 3600}[words[1]]
    assert estimate == pytest.approx(4 * took, abs=0.5 + 0.05 * 4 * took)   # 4 times the first, as rounded


def test_val_without_labels_is_an_error(files, capsys):
    d = files["dir"]
    scipy.io.savemat(d / "nolabels.mat", {"Z": np.zeros((5, 36))})
    assert main(base(files) + ["--val", str(d / "nolabels.mat"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--val" in err and "no labels y" in err and "validation accuracy" in err


def test_val_with_another_image_size_is_an_error(files, capsys):
    d = files["dir"]
    scipy.io.savemat(d / "big.mat", {"Z": np.zeros((5, 49)), "y": np.zeros((5, 1))})
    assert main(base(files) + ["--val", str(d / "big.mat"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--val" in err and "got 49" in err and "6 x 6 x 1: Z needs 36 columns" in err


def test_scale_minmax_trains_and_predict_applies_it(files, capsys):
    d = files["dir"]
    argv = base(files) + ["--test", str(files["test"]), "--iter-max", "3", "--GNsize", "20", "--scale", "minmax",
                          "--save", str(d / "mm.npz"), "--quiet"]
    assert main(argv) == 0
    acc = capsys.readouterr().out.strip().splitlines()[-1]
    model = load_model(d / "mm.npz")
    assert model.meta["scaling"] == "minmax" and "scale" not in model.meta
    assert main(["predict", "--model", str(d / "mm.npz"), "--data", str(files["test"])]) == 0
    assert capsys.readouterr().out.strip() == acc.replace("test_acc", "accuracy")
    # the training mean is that of the min-max scaled images: (x - min_i) / (max_i - min_i)
    Z = scipy.io.loadmat(files["train"])["Z"]
    scaled = (Z - Z.min(axis=1, keepdims=True)) / (Z.max(axis=1, keepdims=True) - Z.min(axis=1, keepdims=True))
    assert np.allclose(model.mean, scaled.mean(axis=0), rtol=0, atol=1e-14)   # X = Z^T for d = 1


def test_scale_minmax_with_a_constant_image_is_an_error(files, capsys):
    d = files["dir"]
    Z = np.full((4, 36), 7.0)
    Z[0, 0] = 200.0
    scipy.io.savemat(d / "flat.mat", {"Z": Z, "y": np.zeros((4, 1))})
    argv = ["train", "--config", str(files["config"]), "--train", str(d / "flat.mat"), "--scale", "minmax",
            "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--train " in err and "image 1 (column 1 of X) is constant" in err and "--scale 255" in err
    assert main(argv[:-3] + ["--iter-max", "1", "--quiet"]) == 0             # --scale 255 is defined there


def test_predict_writes_labels_and_batches(files, capsys):
    d = files["dir"]
    assert main(base(files) + ["--iter-max", "2", "--GNsize", "20", "--save", str(d / "m.npz"), "--quiet"]) == 0
    capsys.readouterr()
    accs = []
    for bsize in ("1", "7", "1000"):
        out_file = d / f"labels{bsize}.txt"
        assert main(["predict", "--model", str(d / "m.npz"), "--data", str(files["test"]), "--bsize", bsize,
                     "--output", str(out_file)]) == 0
        accs.append(capsys.readouterr().out.splitlines()[0])
        labels = np.array([int(v) for v in out_file.read_text().split()])
        model = load_model(d / "m.npz")
        X, y = load_simplenn_mat(files["test"], shape=(6, 6, 1))
        assert np.array_equal(labels, model.net.predict(model.theta, model.preprocess(X)))
        assert accs[-1] == f"accuracy: {np.mean(labels == y):g}"
    assert len(set(accs)) == 1
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(d / "m.npz"), "--data", str(files["test"]), "--bsize", "0"])
