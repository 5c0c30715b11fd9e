"""What machine the kernels run on, and the sizes chosen from it.

The fast kernels split a conv layer's filter positions over threads and
work on blocks sized to stay in cache.  Those sizes are read off the machine
(cores this process may run on, cache sizes as the operating system reports
them) instead of being fixed for the machine they were tuned on, and
``sparsecnn info`` prints what was chosen and why, with the BLAS library and
the kernel it runs.

Examples
--------
>>> m = Machine(cores=2, cores_source="sched_getaffinity", l1d=48 * 1024, l2=2 * 1024**2, l3=None)
>>> c = choose(m)
>>> c.threads, c.block_bytes, c.fused_block_bytes
(2, 262144, 1048576)
>>> choose(Machine(cores=8, cores_source="cpu_count", l1d=None, l2=None, l3=None)).block_bytes
262144
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info

__all__ = ["Machine", "Choices", "detect", "choose", "chosen", "blas_info", "report", "add_parser", "DEFAULT_L2",
           "MAX_THREADS_PER_CPU"]

DEFAULT_L2 = 2 * 1024**2
"""L2 size assumed where the operating system does not report one (bytes)."""

_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class Machine:
    """The facts the kernels' sizes are chosen from.

    Attributes
    ----------
    cores : int
        CPUs this process may run on.
    cores_source : str
        Where ``cores`` came from (``sched_getaffinity`` or ``cpu_count``).
    l1d, l2, l3 : int or None
        Data cache sizes in bytes per core (``l3`` shared), ``None`` where unknown.

    Examples
    --------
    >>> Machine(cores=2, cores_source="sched_getaffinity", l1d=None, l2=2**21, l3=None).l2 // 1024
    2048
    """

    cores: int
    cores_source: str
    l1d: int | None
    l2: int | None
    l3: int | None


@dataclass(frozen=True)
class Choices:
    """Kernel threads and block sizes, each with the reason it was chosen.

    Examples
    --------
    >>> c = choose(Machine(cores=4, cores_source="test", l1d=None, l2=2**20, l3=None), env={})
    >>> c.threads, c.threads_why
    (4, '4 CPUs available (test)')
    """

    threads: int
    threads_why: str
    block_bytes: int
    block_why: str
    fused_block_bytes: int
    fused_why: str
    compiled: bool
    compiled_why: str


def _size(text: str) -> int | None:
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}
    try:
        if text and text[-1] in scale:
            return int(text[:-1]) * scale[text[-1]]
        return int(text)
    except ValueError:
        return None


def _caches() -> dict[int, int]:
    """``{level: bytes}`` of the data and unified caches of CPU 0 (Linux's sysfs, then sysconf)."""
    found: dict[int, int] = {}
    try:
        for index in sorted(_CACHE_DIR.glob("index*")):
            if (index / "type").read_text().strip() == "Instruction":
                continue
            size = _size((index / "size").read_text())
            if size:
                found[int((index / "level").read_text())] = size
    except (OSError, ValueError):
        found = {}
    if not found and hasattr(os, "sysconf"):
        for level, name in ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE"),
                            (3, "SC_LEVEL3_CACHE_SIZE")):
            try:
                value = os.sysconf(name)
            except (ValueError, OSError):
                continue
            if value > 0:
                found[level] = value
    return found


def detect() -> Machine:
    """Read the machine: the CPUs this process may use and its cache sizes.

    Examples
    --------
    >>> m = detect()
    >>> m.cores >= 1 and m.cores_source in ("sched_getaffinity", "cpu_count")
    True
    """
    try:
        cores, source = len(os.sched_getaffinity(0)), "sched_getaffinity"
    except AttributeError:
        cores, source = os.cpu_count() or 1, "cpu_count"
    caches = _caches()
    return Machine(cores=max(1, cores), cores_source=source, l1d=caches.get(1), l2=caches.get(2),
                   l3=caches.get(3))


MAX_THREADS_PER_CPU = 4
"""``SPARSECNN_NUM_THREADS`` above this many threads per CPU is clipped (with a warning)."""


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def choose(machine: Machine, env: dict[str, str] | None = None) -> Choices:
    """Threads and block sizes for ``machine``.

    - threads: ``SPARSECNN_NUM_THREADS`` where set, else one per CPU this
      process may run on; a value that is not a whole number >= 1 is ignored
      and one above :data:`MAX_THREADS_PER_CPU` per CPU is clipped, each with
      a ``RuntimeWarning`` naming the variable;
    - the block of a GEMM's output kept in cache while the bias is added or
      the block is scattered: an eighth of L2 (room for the block, its inputs
      and BLAS's own packing), between 64 KiB and 1 MiB;
    - the block of windows of a window-by-window layer (``S``, or ``dxi/dS``,
      of those windows): half of L2, between 256 KiB and 4 MiB;
    - the elementwise steps of those blocks as loops compiled by numba
      (:mod:`sparsecnn.kernels.compiled`) where numba is installed, else numpy's
      passes.

    Examples
    --------
    >>> m = Machine(cores=8, cores_source="test", l1d=None, l2=512 * 1024, l3=None)
    >>> c = choose(m, env={"SPARSECNN_NUM_THREADS": "2"})
    >>> c.threads, c.block_bytes // 1024, c.fused_block_bytes // 1024
    (2, 64, 256)
    """
    env = dict(os.environ) if env is None else env
    raw = env.get("SPARSECNN_NUM_THREADS")
    threads, why = machine.cores, f"{machine.cores} CPUs available ({machine.cores_source})"
    if raw is not None and raw.strip():
        most = MAX_THREADS_PER_CPU * machine.cores
        if not (raw.strip().isdigit() and int(raw) >= 1):
            why = f"SPARSECNN_NUM_THREADS={raw.strip()!r} ignored (not a whole number >= 1); {why}"
            warnings.warn(f"SPARSECNN_NUM_THREADS must be a whole number of threads >= 1, got {raw!r}: "
                          f"ignored, the kernels use {threads} (one per CPU)", RuntimeWarning, stacklevel=2)
        elif int(raw) > most:
            threads, why = most, f"SPARSECNN_NUM_THREADS={raw.strip()} clipped to {MAX_THREADS_PER_CPU} per CPU"
            warnings.warn(f"SPARSECNN_NUM_THREADS={raw.strip()} is more than {MAX_THREADS_PER_CPU} threads per "
                          f"CPU ({machine.cores} available): the kernels use {most}", RuntimeWarning, stacklevel=2)
        else:
            threads, why = int(raw), f"SPARSECNN_NUM_THREADS={raw.strip()}"
    l2, l2_why = (machine.l2, "L2") if machine.l2 else (DEFAULT_L2, "L2 not reported, assumed")
    block = _clip(l2 // 8, 64 * 1024, 1024**2)
    fused = _clip(l2 // 2, 256 * 1024, 4 * 1024**2)
    return Choices(threads=threads, threads_why=why,
                   block_bytes=block, block_why=f"{l2_why} {l2 // 1024} KiB / 8, within [64 KiB, 1 MiB]",
                   fused_block_bytes=fused,
                   fused_why=f"{l2_why} {l2 // 1024} KiB / 2, within [256 KiB, 4 MiB]",
                   **_numba())


def _numba() -> dict[str, Any]:
    """Whether numba is installed (looked up, not imported: importing it takes a third of a second)."""
    if importlib.util.find_spec("numba") is None:
        return {"compiled": False,
                "compiled_why": "numpy passes: numba is not installed (pip install 'sparsecnn[fast]')"}
    try:
        version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return {"compiled": True, "compiled_why": f"loops compiled by numba {version}"}


@cache
def chosen() -> Choices:
    """The choices for this process's machine (read once)."""
    return choose(detect())


def blas_info() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries numpy and scipy run, as threadpoolctl reports them.

    Examples
    --------
    >>> any(info.get("user_api") == "blas" for info in blas_info())
    True
    """
    return [dict(info) for info in threadpool_info()]


def _kib(n: int | None) -> str:
    return "unknown" if n is None else f"{n // 1024:,} KiB"


def report(machine: Machine | None = None, choices: Choices | None = None) -> str:
    """What ``sparsecnn info`` prints: the machine, the BLAS in use, and the choices with reasons.

    Examples
    --------
    >>> m = Machine(cores=2, cores_source="test", l1d=48 * 1024, l2=2**21, l3=None)
    >>> print(report(m, choose(m, env={})).splitlines()[1])
    caches: L1d 48 KiB, L2 2,048 KiB, L3 unknown
    """
    if machine is None:
        machine, choices = detect(), choices or chosen()     # this process's: warned about once
    choices = choices or choose(machine)
    lines = [f"CPUs available: {machine.cores} ({machine.cores_source})",
             f"caches: L1d {_kib(machine.l1d)}, L2 {_kib(machine.l2)}, L3 {_kib(machine.l3)}"]
    for info in blas_info():
        lines.append(f"{info.get('user_api', '?')}: {info.get('internal_api', '?')} "
                     f"{info.get('version', '?')}, kernel {info.get('architecture', 'unknown')}, "
                     f"{info.get('num_threads', '?')} threads ({Path(str(info.get('filepath', '?'))).name})")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
           if k in os.environ}
    if env:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    lines += [f"kernel threads: {choices.threads} ({choices.threads_why})",
              f"GEMM output block: {_kib(choices.block_bytes)} ({choices.block_why})",
              f"window block: {_kib(choices.fused_block_bytes)} ({choices.fused_why})",
              f"window block's bias, maxima and P_pool^T: {choices.compiled_why}"]
    return "\n".join(lines)


def _run_info(args: argparse.Namespace) -> int:
    print(report())
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``sparsecnn info``: the machine, the BLAS in use, and the kernels' choices.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="sparsecnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["info"]).func is _run_info
    True
    """
    p = subparsers.add_parser("info", help="the machine, the BLAS in use and the kernel sizes chosen from them",
                              description=report.__doc__)
    p.set_defaults(func=_run_info)
