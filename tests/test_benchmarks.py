"""The benchmark scripts run and print their tables (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_core_prints_the_function_gradient_Gv_and_profile_tables():
    pytest.importorskip("torch")
    out = run("bench_core.py", "--images", "24", "--batch", "16", "--repeats", "1", "--gv-images", "4",
              "--profile-batch", "8", "--pause", "0")
    assert "| sparsecnn net.objective" in out and "| torch " in out and "| sparsecnn plan=min-memory" in out
    assert "G v on 4 images" in out and "torch.func" in out
    assert "im2col products (phi, phi_T)" in out and "GEMMs (S, S_T)" in out


def test_bench_planner_prints_every_policy():
    out = run("bench_planner.py", "--images", "16", "--repeats", "1")
    for policy in ("store-all", "slides", "min-memory"):
        assert policy in out


def test_bench_newton_runs_a_short_training(shared_data):
    out = run("bench_newton.py", "--images", "100", "--iter-max", "2", "--quiet", "--dtype", "float32",
              "--data", str(shared_data))
    assert "seed 111 (float32, batch 1024): test_acc" in out
