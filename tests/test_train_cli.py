"""``sparsecnn train`` / ``sparsecnn predict`` and model files (save, load, corrupt files)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.cli import main
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
    assert main(["predict", "--model", str(files["dir"] / "none.npz"), "--data", str(files["test"])]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_predict_rejects_corrupt_and_foreign_models(files, capsys):
    d = files["dir"]
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(d / "foreign.npz", a=np.arange(3))
    with open(d / "pickled.npz", "wb") as fh:
        pickle.dump({"theta": [1, 2]}, fh)
    np.save(d / "array.npy", np.arange(3))
    for name in ("garbage.npz", "foreign.npz", "pickled.npz", "array.npy"):
        assert main(["predict", "--model", str(d / name), "--data", str(files["test"])]) == 1
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
