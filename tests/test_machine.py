"""The machine the kernels run on, and the threads and block sizes chosen from it (issue: speed on a user's machine)."""

from __future__ import annotations

import os

import pytest

from sparsecnn import machine
from sparsecnn.machine import Machine, choose, detect, report


def test_detect_reads_the_cpus_this_process_may_use():
    m = detect()
    assert m.cores == len(os.sched_getaffinity(0))
    assert m.cores_source == "sched_getaffinity"
    assert m.l2 is None or m.l2 >= 64 * 1024


@pytest.mark.parametrize(("l2", "block", "fused"), [
    (2 * 1024**2, 256 * 1024, 1024**2),       # 2 MiB L2: an eighth and a half
    (512 * 1024, 64 * 1024, 256 * 1024),      # 512 KiB: 64 KiB and 256 KiB
    (256 * 1024, 64 * 1024, 256 * 1024),      # clipped from below
    (32 * 1024**2, 1024**2, 4 * 1024**2),     # clipped from above
])
def test_block_sizes_follow_the_L2_size(l2, block, fused):
    c = choose(Machine(cores=4, cores_source="test", l1d=None, l2=l2, l3=None), env={})
    assert (c.block_bytes, c.fused_block_bytes) == (block, fused)
    assert f"{l2 // 1024} KiB" in c.block_why


def test_unknown_L2_is_said_and_a_default_assumed():
    c = choose(Machine(cores=1, cores_source="test", l1d=None, l2=None, l3=None), env={})
    assert c.block_bytes == machine.DEFAULT_L2 // 8 and "not reported" in c.block_why


def test_threads_follow_the_cpus_unless_SPARSECNN_NUM_THREADS_says_otherwise():
    m = Machine(cores=6, cores_source="test", l1d=None, l2=None, l3=None)
    assert choose(m, env={}).threads == 6
    c = choose(m, env={"SPARSECNN_NUM_THREADS": "3"})
    assert c.threads == 3 and "SPARSECNN_NUM_THREADS=3" in c.threads_why
    with pytest.warns(RuntimeWarning, match="SPARSECNN_NUM_THREADS must be a whole number"):
        c = choose(m, env={"SPARSECNN_NUM_THREADS": "zero"})
    assert c.threads == 6 and "'zero' ignored" in c.threads_why


@pytest.mark.parametrize("raw", ["abc", "-3", "0", "2.5", " 1e3 "])
def test_an_unusable_SPARSECNN_NUM_THREADS_is_ignored_with_a_warning_naming_it(raw):
    m = Machine(cores=2, cores_source="test", l1d=None, l2=None, l3=None)
    with pytest.warns(RuntimeWarning, match="SPARSECNN_NUM_THREADS") as caught:
        c = choose(m, env={"SPARSECNN_NUM_THREADS": raw})
    assert c.threads == 2 and repr(raw) in str(caught[0].message) and "ignored" in c.threads_why


def test_SPARSECNN_NUM_THREADS_beyond_four_per_CPU_is_clipped_with_a_warning():
    m = Machine(cores=2, cores_source="test", l1d=None, l2=None, l3=None)
    with pytest.warns(RuntimeWarning, match="more than 4 threads per CPU"):
        c = choose(m, env={"SPARSECNN_NUM_THREADS": "100000"})
    assert c.threads == 8 and "clipped" in c.threads_why
    assert choose(m, env={"SPARSECNN_NUM_THREADS": "8"}).threads == 8      # at the limit: taken as given


def test_sizes_read_as_the_kernel_writes_them():
    assert machine._size("48K") == 48 * 1024 and machine._size("2048K") == 2 * 1024**2
    assert machine._size("1M") == 1024**2 and machine._size("?") is None


def test_report_names_the_blas_its_kernel_and_every_choice():
    text = report()
    assert "CPUs available:" in text and "caches: L1d" in text
    assert "kernel threads:" in text and "GEMM output block:" in text and "window block:" in text
    assert "blas:" in text and "kernel " in text


def test_sparsecnn_info_prints_the_report(capsys):
    from sparsecnn.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == report().strip()


def test_the_kernels_use_what_was_chosen(monkeypatch):
    from sparsecnn.kernels import conv, threads, windowed

    c = machine.chosen()
    assert (conv._BLOCK_BYTES, windowed._FUSED_BLOCK_BYTES) == (c.block_bytes, c.fused_block_bytes)
    assert threads._num_threads == c.threads or "SPARSECNN_NUM_THREADS" in os.environ


def test_SPARSECNN_NUM_THREADS_reaches_a_new_process():
    import subprocess
    import sys

    code = "from sparsecnn import kernels; print(kernels.get_num_threads())"
    env = {**os.environ, "SPARSECNN_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_report_says_whether_the_window_loops_are_compiled(monkeypatch):
    """numba looked up, not imported: installed, the loops are compiled; missing, numpy's passes and the extra's name."""
    m = machine.Machine(cores=2, cores_source="test", l1d=None, l2=2**21, l3=None)
    monkeypatch.setattr(machine.importlib.util, "find_spec", lambda name: None)
    missing = choose(m, env={})
    assert not missing.compiled and "sparsecnn[fast]" in missing.compiled_why
    assert "numpy passes" in report(m, missing)
    monkeypatch.setattr(machine.importlib.util, "find_spec", lambda name: object())
    found = choose(m, env={})
    assert found.compiled and "numba" in found.compiled_why and "compiled" in report(m, found)
