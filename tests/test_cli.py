"""The command line: ``sparsecnn demo`` in-process and as a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from sparsecnn.cli import main
from sparsecnn.demo import run_demo, run_mnist_demo
from sparsecnn.exceptions import ConfigError, InputTypeError

pytest.importorskip("sklearn")

ROW = re.compile(r"^\s*(\d+)\s+([0-9.eE+-]+)\s+([0-9.]+)\s+([0-9.]+)\s*$")
# Newton: iter, f, #CG (blank in row 0), train_acc, seconds
NEWTON_ROW = re.compile(r"^\s*(\d+)\s+([0-9.eE+-]+)\s+(\d+)?\s+([0-9.]+)\s+([0-9.]+)\s*$")


def table(output: str) -> list[tuple[int, float, float]]:
    """(epoch, f, train_acc) rows of the demo's table."""
    rows = []
    for line in output.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((int(m.group(1)), float(m.group(2)), float(m.group(3))))
    return rows


def check_output(output: str, epochs: int, every_epoch: bool = False) -> float:
    rows = table(output)
    assert [r[0] for r in rows] == list(range(epochs + 1)), output
    losses = [r[1] for r in rows]
    assert losses[-1] < losses[0], f"the loss did not fall: {losses}"
    if every_epoch:
        assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), f"not falling each epoch: {losses}"
    last = output.rstrip().splitlines()[-1]
    m = re.fullmatch(r"test_acc: (0\.\d+|1\.0+)", last)
    assert m, f"last line is {last!r}"
    return float(m.group(1))


def test_demo_newton_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--iters", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "Newton, 4 iterations" in out and "#CG" in out
    rows = [NEWTON_ROW.match(line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    assert [int(m.group(1)) for m in rows] == [0, 1, 2, 3, 4], out
    assert rows[0].group(3) is None and all(int(m.group(3)) >= 1 for m in rows[1:])
    losses = [float(m.group(2)) for m in rows]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses   # line search: f falls
    last = out.rstrip().splitlines()[-1]
    assert re.fullmatch(r"test_acc: 0\.\d{4}", last), last


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--solver", "sgd", "--epochs", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "f(theta)" in out and "conv" in out
    acc = check_output(out, 3)
    assert acc > 0.5


def test_demo_full_batch_plain_gradient_descent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--solver", "sgd", "--epochs", "3", "--batch-size", "0", "--momentum", "0",
                 "--lr", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "batch 1347" in out
    check_output(out, 3, every_epoch=True)


def test_demo_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"test_acc: 0\.\d{4}\n", out), out


def test_demo_is_reproducible(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--epochs", "1", "--seed", "3", "--quiet"])
    first = capsys.readouterr().out
    main(["demo", "--epochs", "1", "--seed", "3", "--quiet"])
    assert capsys.readouterr().out == first


def test_demo_defaults_reach_090() -> None:
    """What the README reports: the default run reaches a test accuracy >= 0.9."""
    from sparsecnn.demo import run_demo

    result = run_demo()
    assert result.test_acc >= 0.9
    assert result.losses[-1] < 0.15 * result.losses[0]


def test_demo_subprocess() -> None:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecnn.cli", "demo", "--solver", "sgd", "--epochs", "2"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    check_output(proc.stdout, 2)


@pytest.mark.parametrize("argv, what", [
    (["demo", "--lr", "-1"], "--lr"),
    (["demo", "--lr", "abc"], "--lr"),
    (["demo", "--epochs", "-2"], "--epochs"),
    (["demo", "--momentum", "1"], "--momentum"),
    (["demo", "--batch-size", "x"], "--batch-size"),
    (["demo", "--C", "0"], "--C"),
    (["demo", "--seed", "-1"], "--seed"),           # was numpy's ValueError traceback
    (["demo", "--iters", "0"], "--iters"),          # was InputTypeError traceback from newton
    (["demo", "--lr", "inf"], "--lr"),              # was accepted, then a NonFiniteError traceback
    (["demo", "--solver", "lbfgs"], "--solver"),
    (["nonsense"], "invalid choice"),
    ([], "COMMAND"),
])
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], what: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert what in capsys.readouterr().err


def test_help_mentions_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_demo_without_sklearn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert main(["demo", "--epochs", "1"]) == 1
    assert "pip install 'sparsecnn[demo]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--C", "1e-300", "--iters", "1"], "newton diverged at iteration 1"),
    (["demo", "--solver", "sgd", "--lr", "1e10", "--epochs", "1"], "sgd diverged in epoch 1 (step "),
])
def test_demo_divergence_exits_1_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                message: str) -> None:
    """A diverging demo ended in a traceback (DivergenceError; NonFiniteError in the next SGD step)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*argv, "--quiet"]) == 1
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    captured = capsys.readouterr()
    assert "test_acc" not in captured.out
    assert captured.err.startswith("sparsecnn demo: error: " + message), captured.err
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": -1, "solver": "sgd"}, ConfigError, "batch_size must be an integer >= 0, got -1"),
    ({"epochs": 1.5, "solver": "sgd"}, InputTypeError, "epochs must be an integer >= 0, got 1.5"),
    ({"iters": 0}, ConfigError, "iters must be an integer >= 1, got 0"),
    ({"lr": float("nan"), "solver": "sgd"}, ConfigError, "lr must be a finite number > 0, got nan"),
    ({"momentum": 1.0, "solver": "sgd"}, ConfigError, r"momentum must be a number in \[0, 1\), got 1.0"),
    ({"C": -2.0}, ConfigError, r"C must be a number > 0 \(inf: no regularisation\), got -2.0"),
    ({"seed": -1}, ConfigError, "seed must be an integer >= 0, got -1"),
    ({"solver": "lbfgs"}, ConfigError, "solver must be one of"),
])
def test_run_demo_refuses_bad_arguments_before_training(kwargs: dict, error: type, message: str) -> None:
    """``run_demo(batch_size=-1)`` trained nothing (an empty range of steps) and reported a test accuracy."""
    with pytest.raises(error, match=message):
        run_demo(**kwargs)


def test_run_mnist_demo_refuses_a_negative_seed() -> None:
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -5"):
        run_mnist_demo(iters=1, seed=-5, n_train=10)


# ------------------------------------------------------------------ README and CI
ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # our own README
    out = capsys.readouterr().out
    assert out.split() == ["[[5.", "9.]", "[4.", "6.]]", "[0.", "0.", "0.", "0.", "0.", "1.", "0.", "2.",
                           "0.", "0.", "0.", "0.", "0.", "3.", "4.", "0.]"]
    grad = namespace["grad"]
    assert getattr(grad, "shape", None) == (690,)


def test_readme_commands_are_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert commands == [
        "python -m venv .venv && . .venv/bin/activate && pip install -e '.[demo]' && sparsecnn demo",
        "python -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]'" in ci and "python -m pytest" in ci
    assert not re.search(r"TODO|TBD|XXX|DEMO_TIME", readme)


# ------------------------------------------------------------------ demo --data mnist-demo
def test_demo_mnist_demo_trains_simplenns_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The packaged network and data, Newton with the progress bar, simpleNN's lines, test_acc last."""
    assert main(["demo", "--data", "mnist-demo", "--iters", "1"]) == 0
    out, err = capsys.readouterr()
    lines = out.rstrip().splitlines()
    assert "simpleNN's mnist-demo, 2000 training and 1000 test images of 28 x 28 x 1" in lines[0]
    assert "n = 62026 parameters; Newton, 1 iterations" in out
    f0 = float(next(line for line in lines if line.startswith("initial f: ")).split()[-1])
    row = re.search(r"^1-iter f: (\S+) \|g\|: \S+ alpha: \S+ ratio: \S+ lambda: \S+ #CG: (\d+) actred: (\S+) "
                    r"prered: \S+$", out, re.M)
    assert row, out
    assert float(row.group(1)) < f0 and float(row.group(3)) < 0 and int(row.group(2)) >= 1
    assert re.fullmatch(r"test_acc: 0\.\d{4}", lines[-1]), lines[-1]
    assert "newton" in err and "1/1" in err                             # the progress bar


def test_demo_mnist_demo_is_newton_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", "mnist-demo", "--solver", "sgd"]) == 2
    assert "--data mnist-demo trains by Newton" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--data", "mnist"])
    assert "invalid choice" in capsys.readouterr().err


def test_info_into_a_closed_pipe_ends_quietly_without_a_traceback():
    """``sparsecnn info | head -1``: the reader leaves before the report is written."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from sparsecnn.cli import main; sys.exit(main())",
                             "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()                              # nothing will read what info prints
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]
    assert proc.returncode == 141
