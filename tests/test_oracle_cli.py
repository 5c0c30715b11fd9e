"""``sparsecnn check``, ``sparsecnn golden`` and ``sparsecnn check-golden``: output and exit status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sparsecnn.cli import main

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class _Leaky(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.clamp(min=0)

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g                       # the bug: negative inputs pass the gradient


    class LeakyReLU(nn.ReLU):
        def forward(self, x):
            return _Leaky.apply(x)


    def good():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(2 * 3 * 3, 4))


    def bad():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(3, 2, 3, padding=1), LeakyReLU(),
                             nn.Flatten(), nn.Linear(2 * 3 * 3, 4))


    def mnist():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(2 * 14 * 14, 10))


    class MyReLU(nn.Module):               # not a subclass of nn.ReLU: declared with --treat-as
        def __init__(self, fn=None):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return x.clamp(min=0) if self.fn is None else self.fn.apply(x)


    def custom():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), MyReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(3, 2, 3, padding=1), MyReLU(),
                             nn.Flatten(), nn.Linear(2 * 3 * 3, 4))


    def custom_bad():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), MyReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(3, 2, 3, padding=1), MyReLU(_Leaky),
                             nn.Flatten(), nn.Linear(2 * 3 * 3, 4))


    def not_a_model():
        return 42
''')


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("torch")
    path = tmp_path / "oracle_cli_models.py"
    path.write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


CONFIG = ("L = 3;\nLC = 2;\nLF = 1;\nwd_input = [8];\nht_input = [6];\nch_input = [2,3,4];\n"
          "wd_pad_added = [1,0];\nwd_filter = [3,2];\nstrides = [1,1];\nwd_subimage_pool = [2,1];\n"
          "full_neurons = [5];\n")


@pytest.fixture
def case(tmp_path: Path) -> Path:
    (tmp_path / "small.config").write_text(CONFIG)
    out = tmp_path / "case.npz"
    assert main(["golden", "--config", str(tmp_path / "small.config"), "--out", str(out),
                 "--instances", "3", "--seed", "5", "--C", "2"]) == 0
    return out


# ------------------------------------------------------------------- check
def test_check_passes_a_correct_model(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--model", "oracle_cli_models:good", "--input-shape", "1,6,6", "--instances", "3",
                 "--products", "grad,Jv,JTv,Gv"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED" in out and "rel [eps32]" in out
    assert "command line: --model oracle_cli_models:good; data: 3 random instances" in out
    lines = [ln.split() for ln in out.splitlines()]
    assert ["Gv", "b^1", "1", "0.bias"] == next(ln[:4] for ln in lines if ln[:2] == ["Gv", "b^1"])


def test_check_fails_a_planted_bug_and_names_the_layer(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--model", f"{models}:bad", "--input-shape", "1,6,6", "--instances", "4"])
    out = capsys.readouterr().out
    assert code == 1
    assert "first failure in backward order: grad W^2 (layer 2, torch 3.weight)" in out
    assert "worst entries of grad W^2 (3.weight)" in out
    rows = {tuple(ln.split()[:2]): ln.split()[-1] for ln in out.splitlines() if ln.startswith("grad ")}
    assert rows[("grad", "W^3")] == "ok" and rows[("grad", "b^3")] == "ok" and rows[("grad", "W^2")] == "FAIL"


def test_check_on_simplenn_data(models: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--model", "oracle_cli_models:mnist", "--data", str(shared_data / "mnist-demo.mat"),
                 "--instances", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "mnist-demo.mat (first 5 instances" in out and "(1, 28, 28), l = 5" in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "oracle_cli_models:good"], "--input-shape C,H,W is needed"),
    (["--model", "oracle_cli_models:nope", "--input-shape", "1,6,6"], "has no function 'nope'"),
    (["--model", "no_such_module_xyz:f", "--input-shape", "1,6,6"], "importing no_such_module_xyz failed"),
    (["--model", "oracle_cli_models:not_a_model", "--input-shape", "1,6,6"], "not a torch.nn.Module"),
    (["--model", "oracle_cli_models", "--input-shape", "1,6,6"], "MODULE:FUNCTION"),
    (["--model", "oracle_cli_models:good", "--input-shape", "1,5,5"], "in_features"),
])
def test_check_errors_exit_2(models: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsecnn check: error:") and message in err


def test_check_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["check", "--model", "m:f", "--input-shape", "1,2"],
                 ["check", "--model", "m:f", "--products", "grad,hessian"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "channels,height,width" in err and "unknown product 'hessian'" in err


# ------------------------------------------------------- golden, check-golden
def test_golden_and_check_golden(capsys: pytest.CaptureFixture[str], case: Path, tmp_path: Path) -> None:
    out = capsys.readouterr().out
    assert f"wrote {case}" in out and "f = " in out
    with np.load(case, allow_pickle=False) as archive:
        grad, Jv = archive["grad"], archive["Jv"]
        assert float(archive["C"]) == 2.0 and archive["X"].shape == (96, 3)
    np.savez(tmp_path / "good.npz", grad=grad, Jv=Jv)
    assert main(["check-golden", str(case), str(tmp_path / "good.npz")]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "results: " in out and "Jv, grad (sparsecnn layout)" in out
    bad = grad.copy()
    bad[3] *= 1.01
    np.savez(tmp_path / "bad.npz", grad=bad)
    assert main(["check-golden", str(case), str(tmp_path / "bad.npz"), "--worst", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "theta[3] = W^1[0, 1]" in out and "0.weight[0, 0, 1, 0]" in out


def test_golden_errors_exit_2(tmp_path: Path, case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert main(["check-golden", str(tmp_path / "junk.npz"), str(case)]) == 2
    assert "not a golden file (not a zip archive" in capsys.readouterr().err
    np.savez(tmp_path / "typo.npz", gard=np.zeros(3))
    assert main(["check-golden", str(case), str(tmp_path / "typo.npz")]) == 2
    assert "unknown arrays ['gard']" in capsys.readouterr().err
    assert main(["golden", "--config", str(tmp_path / "none.config"), "--out", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith("sparsecnn golden: error:")


def test_check_golden_exit_status_as_a_process(case: Path, tmp_path: Path) -> None:
    with np.load(case, allow_pickle=False) as archive:
        np.savez(tmp_path / "r.npz", f=archive["f"] + 1.0)
    proc = subprocess.run([sys.executable, "-m", "sparsecnn.cli", "check-golden", str(case),
                           str(tmp_path / "r.npz")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stdout and "first failure in backward order: f f" in proc.stdout


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "check" in out and "golden" in out and "check-golden" in out


def test_golden_out_checked_before_computing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net.json").write_text('{"input_shape": [6, 6, 1], "layers": [{"kind": "full", "n_out": 3}]}')
    for out, message in ((tmp_path / "missing" / "case.npz", "does not exist"), (tmp_path, "is a folder")):
        assert main(["golden", "--config", str(tmp_path / "net.json"), "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err and captured.err.count("\n") == 1


def test_check_golden_float16_results_exit_2(case: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with np.load(case, allow_pickle=False) as archive:
        np.savez(tmp_path / "r.npz", f=archive["f"].astype(np.float16), grad=archive["grad"])
    assert main(["check-golden", str(case), str(tmp_path / "r.npz")]) == 2
    err = capsys.readouterr().err
    assert "float16 results cannot be checked" in err and err.count("\n") == 1


def test_golden_refuses_a_case_that_overflows_instead_of_writing_inf(tmp_path, capsys):
    """issue 14, bad input: ``--C 1e-320`` makes theta'theta/(2C) infinite; no golden file with f = inf."""
    (tmp_path / "small.config").write_text(CONFIG)
    out = tmp_path / "g.npz"
    code = main(["golden", "--config", str(tmp_path / "small.config"), "--out", str(out), "--C", "1e-320"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "golden case's f is not finite" in err and "C = 1e-320" in err and "RuntimeWarning" not in err


@pytest.mark.parametrize("option, value", [("--rtol", "inf"), ("--atol", "inf"), ("--rtol", "nan")])
def test_check_golden_refuses_a_tolerance_that_passes_anything(tmp_path, option, value):
    """issue 14, item 5: an infinite tolerance reported every row PASSED."""
    from sparsecnn import ConvLayer, FullLayer, Network
    from sparsecnn.exceptions import ConfigError
    from sparsecnn.oracle.golden import check_golden, make_golden

    golden = make_golden(Network((6, 6, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)]), instances=2)
    results = tmp_path / "results.npz"
    wrong = golden.Gv.copy()
    wrong[-1] += 1.0
    np.savez(results, Gv=wrong)
    with pytest.raises(ConfigError, match=f"{option[2:]} must be a finite number >= 0, got {value}"):
        check_golden(golden, results, **{option[2:]: float(value)})


def test_check_treat_as_declares_a_custom_module_on_the_command_line(models: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """issue 14, item 5: ``--treat-as MyReLU=relu``, as ``check(..., treat_as={MyReLU: "relu"})``."""
    base = ["check", "--input-shape", "1,6,6", "--instances", "4", "--products", "grad,Gv"]
    assert main([*base, "--model", "oracle_cli_models:custom"]) == 2          # undeclared: refused
    assert "model node clamp [method .clamp()] at oracle_cli_models.py" in capsys.readouterr().err
    assert main([*base, "--model", "oracle_cli_models:custom", "--treat-as", "MyReLU=relu"]) == 0
    assert "PASSED" in capsys.readouterr().out
    code = main([*base, "--model", "oracle_cli_models:custom_bad", "--treat-as", "MyReLU=relu"])
    out = capsys.readouterr().out
    assert code == 1 and "first failure in backward order: grad W^2 (layer 2" in out
    assert main([*base, "--model", "oracle_cli_models:custom", "--treat-as", "MyTanh=tanh"]) == 2
    assert "the model has no module of class MyTanh (its classes: Conv2d, Flatten" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--model", "oracle_cli_models:custom", "--treat-as", "MyReLU=softplus"])
    assert "must be CLASS=OPERATION with OPERATION one of relu" in capsys.readouterr().err
