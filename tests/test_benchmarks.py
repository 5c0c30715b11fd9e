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
    assert "float64: " in out and "GEMM floor" in out and "sparsecnn float32 matvec at " in out
    assert "im2col products (phi, phi_T)" in out and "GEMMs (S, S_T)" in out
    # the cross-entropy G v row agrees with torch.func's (diag(p) - p p^T)/l product, and is timed against the squared
    ce = [r for r in out.splitlines() if r.startswith("| sparsecnn matvec, cross-entropy")]
    assert len(ce) == 1 and float(ce[0].strip("| ").split("|")[-1]) < 1e-10, ce
    assert "cross-entropy loss against the squared loss, float64: " in out


def test_bench_planner_prints_every_policy():
    out = run("bench_planner.py", "--images", "16", "--repeats", "1")
    for policy in ("store-all", "slides", "min-memory"):
        assert policy in out


def test_bench_newton_runs_a_short_training(shared_data):
    out = run("bench_newton.py", "--images", "100", "--iter-max", "2", "--quiet", "--dtype", "float32",
              "--data", str(shared_data))
    assert "seed 111 (float32, batch 1024): test_acc" in out


def test_bench_simplenn_runs_the_driver_and_reads_its_output(tmp_path, shared_data):
    """A stand-in for octave-cli checks the driver it is given and answers as simpleNN's run would."""
    simplenn = tmp_path / "simpleNN"
    simplenn.mkdir()
    (simplenn / "cnn_train.m").write_text("% stand-in\n")
    fake = tmp_path / "octave-cli"
    fake.write_text(f"""#!{sys.executable}
import sys
if sys.argv[1:] == ["--version"]:
    print("GNU Octave, version 0.0 (stand-in)")
    sys.exit(0)
text = open(sys.argv[-1]).read()
ok = "cnn_train(y, Z, [], [], " in text and "-s 1 -C 0.01 -iter_max 3', 111)" in text and "{simplenn}" in text
if not ok:
    sys.exit(3)
print("1-iter f: 11.5 |g|: 35.2 alpha: 1 ratio: 0.99 lambda: 0.66 #CG: 2")
print("2-iter f: 9.0 |g|: 16.7 alpha: 1 ratio: 0.22 lambda: 1 #CG: 16")
print("3-iter f: 8.0 |g|: 6.7 alpha: 1 ratio: 0.72 lambda: 1 #CG: 5")
print("BENCH train_seconds 123.5")
print("BENCH test_accuracy 0.25")
""")
    fake.chmod(0o755)
    out = run("bench_simplenn.py", "--simplenn", str(simplenn), "--octave", str(fake), "--iter-max", "3",
              "--skip-sparsecnn", "--data", str(shared_data))
    assert "| simpleNN (GNU Octave, version 0.0 (stand-in)) | 123.5 s | 0.2500 | 23 | 1.00x |" in out
    assert "2-iter f: 9.0" in out


def test_bench_simplenn_says_what_is_missing(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "bench_simplenn.py"), "--simplenn", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and f"cnn_train.m not found in {tmp_path}" in done.stderr


def test_bench_scaling_prints_time_and_memory_per_l():
    out = run("bench_scaling.py", "--l", "8", "--l", "16", "--rows", "objective", "--plans", "default,min-memory")
    rows = [line for line in out.splitlines() if line.startswith("| objective |")]
    assert len(rows) == 4 and all(" MiB |" in line for line in rows)


def test_roofline_counts_the_flops_of_the_slides_products_and_prints_rates():
    """64.4 GFLOP for f and gradient on 2,000 mnist-demo images, from the shapes alone."""
    sys.path.insert(0, str(BENCH))
    try:
        from _roofline import pass_gemms, total_flops
    finally:
        sys.path.remove(str(BENCH))
    from sparsecnn import ConvLayer, FullLayer

    layers = [ConvLayer(32, h=5, p=2, r=2), ConvLayer(64, h=3, p=1, r=2), ConvLayer(64, h=3, p=1, r=2),
              FullLayer(10)]
    gemms = pass_gemms((28, 28, 1), layers)
    # conv1 forward by hand: 32 filters x 25 entries x 28*28 positions, 2 FLOPs each
    assert gemms[0].flops(1) == 2 * 32 * 25 * 784
    # window by window, conv3 computes 6x6 of its 7x7 positions; store-all all 49
    conv3 = [g for g in gemms if g.label == "conv3 W phi"][0]
    all3 = [g for g in pass_gemms((28, 28, 1), layers, windowed=False) if g.label == "conv3 W phi"][0]
    assert (conv3.N, all3.N) == (36, 49)
    assert round(total_flops(gemms, 2000) / 1e9, 1) == 64.4
    out = run("_roofline.py", "--cols", "2", "--repeats", "1", "--square", "32", "--images", "10",
              "--dtype", "float64")
    assert "| float64 | conv2 dS phi^T | 64 x 392 x 288 |" in out and "floor" in out


def test_bench_oracle_checks_the_pytorch_mnist_example():
    pytest.importorskip("torch")
    out = run("bench_oracle.py", "--images", "2", "--repeats", "1")
    assert "PyTorch MNIST example network (1,199,882 parameters, float64)" in out
    assert "| check (per-entry bounds) |" in out and "PASSED" in out and "FAILED" not in out


def test_bench_distributed_starts_scheduler_and_worker_processes_and_prints_its_tables():
    pytest.importorskip("distributed")
    out = run("bench_distributed.py", "--workers", "1", "--images", "24", "--repeat", "1", "--iter-max", "1")
    rows = [ln for ln in out.splitlines() if ln.startswith("| 1 |")]
    assert len(rows) == 2, out                                   # the timing table and the breakdown
    f_in, f_dask = rows[0].split("|")[5].split("/")
    assert abs(float(f_in) - float(f_dask)) <= 1e-5 * abs(float(f_in))   # same iterate, 6 digits printed
    assert "round trip" not in out and "call G v" in out and "pickle theta" in out


def test_bench_layers_takes_each_conv_layer_apart_in_both_dtypes():
    out = run("bench_layers.py", "--batch", "8", "--repeats", "1", "--rounds", "2")
    for dtype in ("float64", "float32"):
        for m in (1, 2, 3):
            assert f"| {dtype} | conv {m} |" in out
        assert f"| {dtype} | whole `objective` |" in out
    assert "float32 time over float64 time, by part" in out and "| conv 3 |" in out


@pytest.mark.parametrize("option", ["--rounds", "--repeats", "--batch"])
def test_bench_layers_refuses_a_count_below_one(option):
    done = subprocess.run([sys.executable, str(BENCH / "bench_layers.py"), option, "0"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and f"{option}: must be an integer >= 1, got '0'" in done.stderr
