"""sparsecnn.datasets: simpleNN's mnist-demo files inside the package, in wheels and sdists."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sparsecnn import datasets
from sparsecnn.data import load_simplenn_mat
from sparsecnn.exceptions import DataFormatError

ROOT = Path(__file__).resolve().parents[1]

# sha256 of simpleNN's own files (its MATLAB/data and MATLAB/config folders and its COPYRIGHT),
# taken from the originals when they were copied in: the packaged copies must be byte for byte.
SIMPLENN_SHA256 = {
    "COPYRIGHT.simpleNN": "92a0da97ef5729655bbfab56c6120f21fb631e5b4ccfdf01e3b5db26955afcb7",
    "mnist-demo-layer4.config": "cf59556cee9ee901355f9df57d1a1b19b9291bd7e6a005a2ba143a1d08ac40f1",
    "mnist-demo.mat": "1dc9fb4c1dcf7604ca7454f9d53f837af674fde152e766a1d6a10d40eb522c82",
    "mnist-demo.t.mat": "acad30c07868bf62427fc0ee5074b8eec22be1b2b836289cd056e6d91570a4b1",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ the files
def test_packaged_files_are_simplenns_byte_for_byte() -> None:
    for name, digest in SIMPLENN_SHA256.items():
        assert sha256(datasets.path(name).read_bytes()) == digest, name
    assert sorted(p.name for p in datasets.DIRECTORY.iterdir() if p.suffix != ".py" and p.is_file()) \
        == sorted(SIMPLENN_SHA256)
    assert "Copyright (c) 2007-2019 The simpleNN Project" in datasets.path("COPYRIGHT.simpleNN").read_text()


def test_path_by_name_and_by_file_name() -> None:
    for name, file in datasets.NAMES.items():
        assert datasets.path(name) == datasets.path(file) == datasets.DIRECTORY / file
        assert datasets.path(name).is_file()


@pytest.mark.parametrize("typo, suggestion", [("mnist-dmeo", "mnist-demo"), ("mnist_demo.t", "mnist-demo.t"),
                                              ("mnist-demo-layer3", "mnist-demo-layer4")])
def test_a_typo_lists_the_packaged_names(typo: str, suggestion: str) -> None:
    with pytest.raises(DataFormatError) as info:
        datasets.path(typo)
    message = str(info.value)
    assert repr(typo) in message and f"did you mean {suggestion!r}" in message
    for name in datasets.NAMES:
        assert name in message
    with pytest.raises(DataFormatError, match="packaged names are"):
        datasets.path(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ mnist_demo()
def test_mnist_demo_is_load_simplenn_mat_of_the_packaged_files() -> None:
    X, y, X_test, y_test = datasets.mnist_demo()
    for (A, b), file in [((X, y), "mnist-demo.mat"), ((X_test, y_test), "mnist-demo.t.mat")]:
        A_ref, b_ref = load_simplenn_mat(datasets.DIRECTORY / file)
        assert np.array_equal(A, A_ref) and np.array_equal(b, b_ref)
        raw = scipy.io.loadmat(datasets.DIRECTORY / file)          # Z: l x 784, one image per row
        assert np.array_equal(A, raw["Z"].T.astype(np.float64))     # X = Z^T for d = 1: raw pixels
        assert np.array_equal(b, raw["y"].ravel())
    assert X.shape == (784, 2000) and X_test.shape == (784, 1000)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 255 and set(y.tolist()) == set(range(10))


# ------------------------------------------------------------------ resolve (the CLI's file arguments)
def test_resolve_packaged_names_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert datasets.resolve("mnist-demo", "data") == datasets.path("mnist-demo")
    assert datasets.resolve("mnist-demo.t", "data") == datasets.path("mnist-demo.t")
    assert datasets.resolve("mnist-demo-layer4", "config") == datasets.path("mnist-demo-layer4")
    (tmp_path / "mnist-demo").write_text("a local file of that name wins")
    assert datasets.resolve("mnist-demo", "data") == Path("mnist-demo")
    assert datasets.resolve(tmp_path / "mnist-demo") == tmp_path / "mnist-demo"


def test_resolve_refuses_the_wrong_kind_and_unknown_names(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataFormatError, match="'mnist-demo' is packaged data .* not a configuration"):
        datasets.resolve("mnist-demo", "config")
    with pytest.raises(DataFormatError, match="'mnist-demo-layer4' is a packaged configuration .* not data"):
        datasets.resolve("mnist-demo-layer4", "data")
    with pytest.raises(DataFormatError) as info:
        datasets.resolve("mnist-demo.tt", "data")
    assert "mnist-demo.tt: no such file, and not a packaged name" in str(info.value)
    assert all(name in str(info.value) for name in datasets.NAMES)


# ------------------------------------------------------------------ wheel and sdist
def _copy_source(dest: Path) -> Path:
    """The repository's sources (what a clone holds), without build leftovers."""
    skip = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".venv",
                                  ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "site",
                                  ".ipynb_checkpoints")
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


def test_sdist_and_wheel_hold_the_data(tmp_path: Path) -> None:
    """``python -m build`` makes the sdist, then the wheel from the unpacked sdist, as pip does."""
    src = _copy_source(tmp_path / "src")
    out = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = out.glob("sparsecnn-*.tar.gz")
    (wheel,) = out.glob("sparsecnn-*.whl")
    expected = {name: datasets.DIRECTORY.joinpath(name).read_bytes() for name in SIMPLENN_SHA256}

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name, data in expected.items():
            member = f"sparsecnn/datasets/{name}"
            assert member in names, sorted(n for n in names if "datasets" in n)
            assert zf.read(member) == data
        assert "sparsecnn/datasets/__init__.py" in names
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1]: m for m in tf.getmembers() if "/" in m.name}
        for name, data in expected.items():
            member = members[f"sparsecnn/datasets/{name}"]
            fh = tf.extractfile(member)
            assert fh is not None and fh.read() == data


# ------------------------------------------------------------------ the repository stands on its own
SKIPPED_DIRS = {".git", "build", "dist", "site", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache",
                ".ruff_cache", ".hypothesis", ".ipynb_checkpoints"}


def test_nothing_refers_to_the_folder_beside_the_repository() -> None:
    """A clone has nothing beside it: no file may point at the folder beside it (.ci comments may)."""
    needle = "../" + "shared"
    offenders = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            rel = here.joinpath(name).relative_to(ROOT).as_posix()
            if name.endswith((".mat", ".pyc", ".png", ".npz")):
                continue
            text = here.joinpath(name).read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), start=1):
                if needle in line and not (rel.startswith(".ci/") and line.lstrip().startswith("#")):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
