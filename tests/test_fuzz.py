"""Fuzzing the loaders: configuration, ``.mat``, model and golden files (issue 17).

Hypothesis mutates valid files -- truncation, byte flips, dtype and shape changes,
huge dimensions, NaN and Inf, object (pickled) arrays, edited JSON, missing and extra
entries, with or without the checksums recomputed -- and each loader
(:meth:`sparsecnn.Network.from_simplenn_config`,
:func:`sparsecnn.data.load_simplenn_mat`, :func:`sparsecnn.model_io.load_model`,
:func:`sparsecnn.oracle.read_golden` followed by ``check_golden`` of the file against
itself) must either return something that passes its own validation or raise one
of sparsecnn's exceptions (:class:`sparsecnn.exceptions.SparseCNNError`).  Nothing else:

- no other exception type (a ``ValueError``, ``MemoryError``, ``RecursionError``, ...);
- no allocation over a set limit: the loaders run in a separate process
  (``tests/fuzz_worker.py``) whose address space is capped with
  ``resource.setrlimit(RLIMIT_AS)`` at what it uses after importing sparsecnn plus
  ``HEADROOM`` (1 GiB), with sparsecnn's own limit (the size limits (:func:`sparsecnn.config.set_limits`)) at
  ``LIMIT`` (256 MB); the pytest process itself is not limited;
- no file written: the folder of the fuzzed file and the worker's working folder
  hold the same files after each load as before.

The CI-sized run (about 300 examples, derandomized) is part of the suite.  A longer,
randomized run::

    SPARSECNN_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -p no:randomly

(``SPARSECNN_FUZZ_EXAMPLES`` is the number of examples per test).
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsecnn import ConvLayer, FullLayer, Network
from sparsecnn.model_io import model_checksums, save_model
from sparsecnn.oracle.golden import golden_checksums, make_golden, write_golden

HEADROOM = 2**30
LIMIT = 256 * 10**6
LONG = int(os.environ.get("SPARSECNN_FUZZ_EXAMPLES", "0"))


def examples(ci: int) -> Any:
    """Hypothesis settings: ``ci`` derandomized examples, or ``SPARSECNN_FUZZ_EXAMPLES`` random ones."""
    return settings(max_examples=LONG or ci, deadline=None, derandomize=not LONG, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


CONFIG = ("% a small network\nL = 2;\nLC = 1;\nLF = 1;\nwd_input = [6];\nht_input = [6];\nch_input = [1,2];\n"
          "wd_pad_added = [1];\nwd_filter = [3];\nstrides = [1];\nwd_subimage_pool = [2];\nfull_neurons = [3];\n")


def small_net() -> Network:
    return Network((4, 4, 1), [ConvLayer(2, h=3, p=1, r=2), FullLayer(3)])


# ---------------------------------------------------------------- the worker
class Worker:
    """The loader process; restarted after it dies."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                              os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fuzz_worker.py")),
                                      str(HEADROOM), str(LIMIT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=self.cwd, env=env)
        ready = self._read(120.0)
        assert ready.get("ready"), ready

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return {"outcome": "bad", "type": "Timeout", "message": f"no answer within {timeout} s (a hang)"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "bad", "type": "Crash", "message": f"the worker died (exit status {code})"}
        answer: dict[str, Any] = json.loads(line)
        return answer

    def load(self, kind: str, path: Path) -> dict[str, Any]:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        return self._read(60.0)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    with tempfile.TemporaryDirectory(prefix="fuzz-cwd-") as cwd:
        w = Worker(Path(cwd))
        w.start()
        try:
            yield w
        finally:
            w.stop()
        assert os.listdir(cwd) == [], "a loader wrote into its working folder"


def check_load(worker: Worker, kind: str, data: bytes, suffix: str) -> dict[str, Any]:
    """Write ``data`` to a fresh folder, load it in the worker, and assert the contract."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        path = Path(folder) / f"case{suffix}"
        path.write_bytes(data)
        answer = worker.load(kind, path)
        assert os.listdir(folder) == [path.name], f"a file was written: {os.listdir(folder)}"
        assert path.read_bytes() == data, "the input was modified"
    assert answer["outcome"] in ("loaded", "refused"), (
        f"{kind} loader: {answer.get('type')}: {answer.get('message')}\n{answer.get('traceback', '')}")
    assert os.listdir(worker.cwd) == []
    return answer


# ------------------------------------------------------------ base files
def npz_bytes(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


class Files(dict):  # type: ignore[type-arg]
    """The valid starting files by kind (a short repr in hypothesis' reports)."""

    def __repr__(self) -> str:
        return f"<valid {', '.join(self)} files>"


@pytest.fixture(scope="module")
def base() -> dict[str, bytes]:
    net = small_net()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        save_model(Path(folder) / "m.npz", net, net.init_params(seed=0), mean=rng.random(16),
                   meta={"scale": 1 / 255, "solver": "newton"})
        write_golden(Path(folder) / "g.npz", make_golden(net, instances=2, seed=0))
        scipy.io.savemat(Path(folder) / "d.mat", {"Z": rng.integers(0, 256, (5, 16)).astype(np.uint8),
                                                  "y": rng.integers(0, 3, (5, 1)).astype(np.float64)})
        return Files(model=(Path(folder) / "m.npz").read_bytes(), golden=(Path(folder) / "g.npz").read_bytes(),
                     mat=(Path(folder) / "d.mat").read_bytes(), config=CONFIG.encode())


# ------------------------------------------------------------ strategies
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.integers(-(2**70), 2**70),
    st.sampled_from([10**9, 10**13, 6000, 0, -1, 2**63, 1.5, 1e308, float("nan"), float("inf"), -0.0]),
    st.text(max_size=8), st.sampled_from(["relu", "tanh", "conv", "full", "max", "avg", "eq5", "1e999"]),
)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=6), inner,
                                                                             max_size=4)), max_leaves=8)


def mutate_json(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """Replace one node of ``value`` (chosen by hypothesis) with a new JSON value."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate_json(data, value[key], depth + 1)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        k = data.draw(st.integers(0, len(value) - 1))
        return [*value[:k], mutate_json(data, value[k], depth + 1), *value[k + 1:]]
    choice = data.draw(st.integers(0, 3))
    if choice == 0:
        return data.draw(json_value)
    if choice == 1 and isinstance(value, dict):
        key = data.draw(st.sampled_from(sorted(value))) if value else "x"
        return {k: v for k, v in value.items() if k != key}
    if choice == 2:
        return data.draw(st.sampled_from(["[" * 5000 + "]" * 5000, [[[[[[[]]]]]]], 10**13, [6000, 6000, 1]]))
    return value


DTYPES = ["f2", "f4", "f8", "i1", "i4", "i8", "u1", "u8", "c16", "?", "U3", "S3", "M8[s]", "O"]


def unchecked_cast(arr: np.ndarray, dtype: str) -> np.ndarray:
    """``arr.astype(dtype)`` without warnings: NaN to integers and overflow are the point here."""
    with np.errstate(all="ignore"):
        return arr.astype(dtype, casting="unsafe")


def npy_member(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def huge_member(dtype: str, shape: tuple[int, ...], tail: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\x00" * tail


def mutate_array(data: st.DataObject, arr: np.ndarray) -> bytes:
    op = data.draw(st.sampled_from(["dtype", "shape", "nonfinite", "huge", "object", "values", "empty"]))
    if op == "dtype":
        dt = data.draw(st.sampled_from(DTYPES))
        try:
            new = unchecked_cast(arr, dt)
        except (TypeError, ValueError):
            new = np.zeros(arr.shape, dtype=dt)
        return npy_member(new)
    if op == "shape":
        flat = arr.reshape(-1)
        form = data.draw(st.sampled_from(["column", "row", "shorter", "longer", "scalar", "3d"]))
        new = {"column": flat[:, None], "row": flat[None, :], "shorter": flat[:-1], "scalar": flat[:1].reshape(()),
               "longer": np.concatenate([flat, flat[:1]]) if flat.size else np.zeros(2),
               "3d": flat.reshape(1, 1, -1)}[form] if flat.size else np.zeros((2, 1))
        return npy_member(np.asarray(new))
    if op == "nonfinite":
        new = arr.copy() if arr.dtype.kind in "fc" else (
            arr.astype(np.float64) if arr.dtype.kind in "iub" else np.zeros(arr.shape))
        if new.size:
            new.reshape(-1)[data.draw(st.integers(0, new.size - 1))] = data.draw(
                st.sampled_from([np.nan, np.inf, -np.inf]))
        return npy_member(new)
    if op == "huge":
        shape = data.draw(st.sampled_from([(2**40,), (10**6, 10**6), (2**62, 4), (0, 2**62), (3, 2**31)]))
        return huge_member(data.draw(st.sampled_from(["<f8", "<i8", "<U10", "|u1"])), shape,
                           data.draw(st.integers(0, 64)))
    if op == "object":
        return npy_member(np.array([{"a": 1}, None], dtype=object))
    if op == "values":
        new = np.array(arr)
        if new.size and new.dtype.kind in "iuf":
            k = data.draw(st.integers(0, new.size - 1))
            new.reshape(-1)[k] = data.draw(st.sampled_from([-1, 0, 1, 3, 127, 255, 10**6, -(10**6)]))
        return npy_member(new)
    return npy_member(np.zeros((0,) * max(arr.ndim, 1), dtype=arr.dtype if arr.dtype.kind != "O" else "f8"))


def reseal(kind: str, arrays_bytes: dict[str, bytes]) -> dict[str, bytes]:
    """Recompute the checksums when the mutated arrays still parse, so deeper checks are reached."""
    try:
        arrays = {k: np.lib.format.read_array(io.BytesIO(v), allow_pickle=False) for k, v in arrays_bytes.items()
                  if k != "sha256"}
        arrays = {k: v.real if v.dtype.kind == "c" and k in ("theta", "mean") else v for k, v in arrays.items()}
        if kind == "golden":
            sums: Any = golden_checksums(arrays)
        else:
            sums = model_checksums(json.loads(str(arrays["network"])), np.asarray(arrays["theta"], dtype=float),
                                   np.asarray(arrays["mean"], dtype=float), json.loads(str(arrays["meta"])))
    except Exception:  # noqa: BLE001 - an array that does not parse cannot be resealed: keep the old sums
        return arrays_bytes
    return {**arrays_bytes, "sha256": npy_member(np.array(json.dumps(sums)))}


def zip_of(members: dict[str, bytes], compress: bool) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, blob in members.items():
            zf.writestr(name + ".npy", blob)
    return buf.getvalue()


def mutate_npz(data: st.DataObject, kind: str, original: bytes) -> bytes:
    arrays = read_arrays(original)
    members = {k: npy_member(v) for k, v in arrays.items()}
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(arrays)))
        action = data.draw(st.sampled_from(["array", "array", "json", "delete", "add"]))
        if action == "json" and arrays[key].dtype.kind == "U" and arrays[key].shape == ():
            try:
                value = json.loads(str(arrays[key]))
                text = json.dumps(mutate_json(data, value))
            except (ValueError, RecursionError):
                text = data.draw(st.text(max_size=20))
            members[key] = npy_member(np.array(text))
        elif action == "delete":
            members.pop(key, None)
        elif action == "add":
            members[data.draw(st.sampled_from(["extra", "winners/9", "torch/grad", "X"]))] = mutate_array(
                data, arrays[key])
        else:
            members[key] = mutate_array(data, arrays[key])
    if data.draw(st.booleans()):
        members = reseal(kind, members)
    blob = zip_of(members, compress=data.draw(st.booleans()))
    return mutate_bytes(data, blob) if data.draw(st.integers(0, 4)) == 0 else blob


def mutate_bytes(data: st.DataObject, blob: bytes) -> bytes:
    if not blob:
        return blob
    if data.draw(st.booleans()):
        return blob[: data.draw(st.integers(0, len(blob) - 1))]
    out = bytearray(blob)
    for pos, bit in data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)),
                                       min_size=1, max_size=6)):
        out[pos] ^= bit
    return bytes(out)


config_value = st.one_of(
    st.integers(-3, 12).map(str), st.integers(-(10**15), 10**15).map(str),
    st.sampled_from(["[1000000000]", "[10000000000000]", "[]", "[1,,2]", "[1;2]", "nan", "inf", "1e400",
                     "[1e300]", "0.5", "[6 6]", "[1,32,64,64]", "'a'", "__import__('os')", "[" * 50]),
    st.lists(st.integers(-2, 10**6), max_size=5).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    st.text(max_size=12),
)


def mutate_config(data: st.DataObject, text: str) -> bytes:
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["value", "value", "value", "delete", "duplicate", "insert", "bytes"]))
        k = data.draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == "value" and lines and "=" in lines[k]:
            lines[k] = lines[k].split("=")[0] + "= " + data.draw(config_value) + ";"
        elif op == "delete" and lines:
            del lines[k]
        elif op == "duplicate" and lines:
            lines.insert(k, lines[k])
        elif op == "insert":
            lines.insert(k, data.draw(st.text(max_size=30)))
        elif op == "bytes":
            return mutate_bytes(data, "\n".join(lines).encode())
    return "\n".join(lines).encode()


mat_array = st.one_of(
    st.builds(lambda rows, cols, dt, fill: unchecked_cast(np.full((rows, cols), fill), dt),
              st.integers(0, 6), st.sampled_from([0, 1, 4, 15, 16, 17]),
              st.sampled_from(["f8", "f4", "i4", "u1", "i8", "c16", "?", "u8"]),
              st.sampled_from([0, 1, 2, -1, 255, 1e30, -1e30, 0.5, np.nan, np.inf, 2**63 - 1])),
    st.just(np.array([[None, 1]], dtype=object)),
    st.just(np.array(["ab", "cd"])),
    st.just(np.zeros((2, 2, 2))),
)


LABEL_VALUES = [1e30, 2**64 - 1, 2**63, 2**63 - 1, -1, 3, 0.5, -0.0, np.nan, np.inf, 1 + 2j]
LABEL_DTYPES = ["f8", "u8", "i8", "c16", "f4", "object"]


def labels_with(value: Any, dtype: str) -> np.ndarray:
    """Five labels, the third ``value``, stored as ``dtype`` (converted without checks, as a user's tool might)."""
    arr = np.array([[0], [1], [value], [2], [0]], dtype=complex if isinstance(value, complex) else object)
    if dtype == "object":
        return arr
    if isinstance(value, complex) and dtype != "c16":
        arr = arr.real
    try:
        with np.errstate(all="ignore"):
            return arr.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return unchecked_cast(np.array([[0], [1], [float(np.real(value))], [2], [0]]), dtype)


mat_labels = st.builds(labels_with, st.sampled_from(LABEL_VALUES), st.sampled_from(LABEL_DTYPES))


def mutate_mat(data: st.DataObject, original: bytes) -> bytes:
    scenario = data.draw(st.sampled_from(["bytes", "labels", "Z", "y", "missing"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    contents: dict[str, Any] = {"Z": rng.integers(0, 256, (5, 16)), "y": rng.integers(0, 3, (5, 1))}
    if scenario == "bytes":
        form = data.draw(st.sampled_from(["original", "compressed", "v4", "sparse", "complex"]))
        if form != "original":
            buf = io.BytesIO()
            extra = {"sparse": {"Z": scipy.sparse.csc_matrix(contents["Z"].astype(float))},
                     "complex": {"Z": contents["Z"] + 1j}}.get(form, {})
            scipy.io.savemat(buf, {**contents, **extra}, do_compression=form == "compressed",
                             format="4" if form == "v4" else "5")
            original = buf.getvalue()
        return mutate_bytes(data, original)
    if scenario == "labels":
        contents["y"] = data.draw(mat_labels)
    elif scenario in ("Z", "y"):
        contents[scenario] = data.draw(mat_array)
    else:
        del contents[data.draw(st.sampled_from(["Z", "y"]))]
    buf = io.BytesIO()
    try:
        scipy.io.savemat(buf, contents, do_compression=data.draw(st.booleans()),
                         format=data.draw(st.sampled_from(["5", "4"])))
    except Exception:  # noqa: BLE001 - scipy cannot write it (e.g. v4 with objects): fuzz the bytes instead
        return mutate_bytes(data, original)
    return buf.getvalue()


# ------------------------------------------------------------------ the tests
@examples(100)
@given(data=st.data())
def test_fuzz_config_loader(worker: Worker, base: dict[str, bytes], data: st.DataObject) -> None:
    check_load(worker, "config", mutate_config(data, base["config"].decode()), ".config")


@examples(60)
@given(data=st.data())
def test_fuzz_mat_loader(worker: Worker, base: dict[str, bytes], data: st.DataObject) -> None:
    check_load(worker, "mat", mutate_mat(data, base["mat"]), ".mat")


@examples(90)
@given(data=st.data())
def test_fuzz_model_loader(worker: Worker, base: dict[str, bytes], data: st.DataObject) -> None:
    check_load(worker, "model", mutate_npz(data, "model", base["model"]), ".npz")


@examples(60)
@given(data=st.data())
def test_fuzz_golden_loader(worker: Worker, base: dict[str, bytes], data: st.DataObject) -> None:
    check_load(worker, "golden", mutate_npz(data, "golden", base["golden"]), ".npz")


@pytest.mark.parametrize("value", LABEL_VALUES, ids=repr)
def test_mat_label_edge_values(worker: Worker, value: Any) -> None:
    """Every edge label in every dtype, deterministically (random sampling hits few of the 66)."""
    for dtype in LABEL_DTYPES:
        buf = io.BytesIO()
        y = labels_with(value, dtype)
        try:
            scipy.io.savemat(buf, {"Z": np.zeros((5, 16)), "y": y})
        except Exception:  # noqa: BLE001 - scipy cannot write this combination
            continue
        check_load(worker, "mat", buf.getvalue(), ".mat")


@pytest.mark.parametrize("kind, suffix", [("config", ".config"), ("mat", ".mat"), ("model", ".npz"),
                                          ("golden", ".npz")])
def test_unmutated_files_load(worker: Worker, base: dict[str, bytes], kind: str, suffix: str) -> None:
    """The starting points are valid: the fuzz tests start from files that load."""
    assert check_load(worker, kind, base[kind], suffix)["outcome"] == "loaded"


def test_worker_reports_foreign_exceptions_and_memory_cap(worker: Worker, tmp_path: Path) -> None:
    """The harness can fail: an allocation over the cap is reported as a MemoryError, not hidden."""
    assert worker.proc is not None
    path = tmp_path / "x.config"
    path.write_text(CONFIG)
    answer = worker.load("no such loader", path)
    assert answer["outcome"] == "bad" and answer["type"] == "ValueError"
    answer = worker.load("allocate", Path(str(2 * HEADROOM)))
    assert answer["outcome"] == "bad" and answer["type"] == "MemoryError"
    assert worker.load("allocate", Path(str(10**6)))["outcome"] == "loaded"
