"""Audit of "bad input gets a clear error": ``sparsecnn train`` and ``predict`` as a careless user runs them.

Each test reproduces what the command did before its fix:

- a truncated ``.mat`` file was reported as "the file has images Z but no labels y";
- labels out of ``0..n_L-1`` (1-based labels from MATLAB) gave a message naming neither the
  option nor the file;
- ``--momentum 5`` was accepted (the ``demo`` refuses momentum outside ``[0, 1)``);
- a run that diverged printed numpy's overflow warnings, with source lines, before its error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sparsecnn.cli import main
from sparsecnn.model_io import load_model, save_model

CONFIG = ("L = 2;\nLC = 1;\nLF = 1;\nwd_input = [6];\nht_input = [6];\nch_input = [1,2];\nwd_pad_added = [1];\n"
          "wd_filter = [3];\nstrides = [1];\nwd_subimage_pool = [2];\nfull_neurons = [3];\n")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "net.config").write_text(CONFIG)
    Z, y = rng.integers(0, 256, (30, 36)).astype(float), rng.integers(0, 3, (30, 1))
    scipy.io.savemat(tmp_path / "train.mat", {"Z": Z, "y": y})
    scipy.io.savemat(tmp_path / "one_based.mat", {"Z": Z, "y": np.arange(30)[:, None] % 3 + 1})
    scipy.io.savemat(tmp_path / "huge_pixels.mat", {"Z": Z * 1e300, "y": y})
    data = (tmp_path / "train.mat").read_bytes()
    (tmp_path / "truncated.mat").write_bytes(data[:len(data) // 2])
    return tmp_path


def train(folder: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(folder / "net.config"), "--iter-max", "1", "--quiet", *extra]


def test_truncated_mat_file_is_called_corrupt_not_unlabelled(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train(folder, "--train", str(folder / "truncated.mat"))) == 1
    err = capsys.readouterr().err
    assert "corrupt MAT file" in err, err
    assert "no labels" not in err and "Z needs" not in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("option", ["--train", "--test", "--val"])
def test_one_based_labels_name_the_option_the_file_and_the_cause(folder: Path, option: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    files = {"--train": "train.mat", "--test": "train.mat", "--val": "train.mat", option: "one_based.mat"}
    argv = train(folder, *[a for o, f in files.items() for a in (o, str(folder / f))])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sparsecnn train: error: {option} {folder / 'one_based.mat'}: y must hold labels in "
                          "0..n_L-1 = 0..2, got 3 at position 2; the labels run from 1 to 3 = n_L: 1-based"), err


def test_predict_names_data_with_labels_beyond_n_L(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train(folder, "--train", str(folder / "train.mat"), "--save", str(folder / "m.npz"))) == 0
    scipy.io.savemat(folder / "ten.mat", {"Z": np.ones((2, 36)), "y": np.array([[0], [9]])})
    capsys.readouterr()
    assert main(["predict", "--model", str(folder / "m.npz"), "--data", str(folder / "ten.mat")]) == 1
    err = capsys.readouterr().err
    assert f"--data {folder / 'ten.mat'}: y must hold labels in 0..n_L-1 = 0..2, got 9 at position 1" in err, err
    assert "the network's last layer has n_L = 3 outputs" in err


@pytest.mark.parametrize("momentum", ["1", "5", "-0.1"])
def test_sgd_momentum_outside_0_1_is_refused(folder: Path, momentum: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(train(folder, "--train", str(folder / "train.mat"), "--solver", "sgd", "--momentum", momentum))
    assert stop.value.code == 2
    assert f"argument --momentum: must be a finite number >= 0 and < 1, got '{momentum}'" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--train", "huge_pixels.mat"], "newton diverged at the initial theta"),
    (["--train", "train.mat", "--C", "1e-300"], "newton diverged at iteration 1"),
    (["--train", "train.mat", "--solver", "adam", "--lr", "1e300", "--epoch-max", "3"], "adam diverged"),
])
def test_divergence_is_one_line_without_numpy_warnings(folder: Path, extra: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    extra = [str(folder / e) if e.endswith(".mat") else e for e in extra]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(train(folder, *extra)) == 1
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    assert err.startswith("sparsecnn train: error: " + message) and err.count("\n") == 1, err


@pytest.mark.parametrize("output, message", [
    ("{folder}", "--output {folder}: is a folder; give a file name"),
    ("{folder}/absent/labels.txt", "--output {folder}/absent/labels.txt: the folder {folder}/absent does not exist"),
])
def test_predict_checks_output_before_any_work(folder: Path, output: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--output`` naming a folder failed after predicting, as "[Errno 21] Is a directory", exit 1."""
    assert main(train(folder, "--train", str(folder / "train.mat"), "--save", str(folder / "m.npz"))) == 0
    capsys.readouterr()
    argv = ["predict", "--model", str(folder / "m.npz"), "--data", str(folder / "train.mat"),
            "--output", output.format(folder=folder)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"sparsecnn predict: error: {message.format(folder=folder)}\n"
    assert "accuracy" not in captured.out


def test_predict_refuses_outputs_that_overflow(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finite model whose weights overflow the products (as a run that was diverging leaves) gave
    ``accuracy: 0.2...`` and labels argmax'ed from Inf and NaN, exit 0."""
    assert main(train(folder, "--train", str(folder / "train.mat"), "--save", str(folder / "m.npz"))) == 0
    model = load_model(folder / "m.npz")
    save_model(folder / "huge.npz", model.net, model.theta * 1e160, mean=model.mean, meta=model.meta)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        status = main(["predict", "--model", str(folder / "huge.npz"), "--data", str(folder / "train.mat"),
                       "--output", str(folder / "labels.txt")])
    captured = capsys.readouterr()
    assert status == 1 and "accuracy" not in captured.out
    assert not (folder / "labels.txt").exists()
    assert captured.err.startswith(f"sparsecnn predict: error: --data {folder / 'train.mat'}: the network's output "
                                   "z^{L+1} is not finite for instance 0 (row 0 of Z; 30 instances in all)"), captured.err
    assert "max |theta| = " in captured.err


@pytest.mark.parametrize("extra, message", [
    (["--save", "{folder}/train.mat"], "--save {folder}/train.mat is the --train file {folder}/train.mat"),
    (["--log", "{folder}/net.config"], "--log {folder}/net.config is the --config file {folder}/net.config"),
    (["--test", "{folder}/one_based.mat", "--save", "{folder}/one_based.mat"],
     "--save {folder}/one_based.mat is the --test file"),
    (["--save", "{folder}/run.out", "--log", "{folder}/run.out"], "--save and --log both name {folder}/run.out"),
])
def test_train_refuses_outputs_that_would_replace_its_inputs(folder: Path, extra: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--save`` naming the ``--train`` file replaced the training data with the model, exit 0."""
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    argv = train(folder, "--train", str(folder / "train.mat"), *[e.format(folder=folder) for e in extra])
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("sparsecnn train: error: " + message.format(folder=folder))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("output, option", [("train.mat", "--data"), ("m.npz", "--model")])
def test_predict_refuses_an_output_that_would_replace_its_inputs(folder: Path, output: str, option: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``predict --output`` naming the data (or the model) replaced it with the labels."""
    assert main(train(folder, "--train", str(folder / "train.mat"), "--save", str(folder / "m.npz"))) == 0
    capsys.readouterr()
    before = (folder / output).read_bytes()
    assert main(["predict", "--model", str(folder / "m.npz"), "--data", str(folder / "train.mat"),
                 "--output", str(folder / output)]) == 2
    assert f"--output {folder / output} is the {option} file" in capsys.readouterr().err
    assert (folder / output).read_bytes() == before
