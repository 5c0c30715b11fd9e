"""Audit of "bad input gets a clear error": MAT v4 files (scipy's other ``.mat`` reader).

:func:`sparsecnn.data.load_simplenn_mat` checked the structure of MAT v5/v7 files before
scipy read them, but a MAT v4 file (a zero among its first four bytes) went straight to
scipy, which allocates what a header claims: 20 bytes claiming a ``10^6 x 10^6`` ``Z`` made it
try 8 TB (a bare ``MemoryError``), and a v4 sparse ``Z`` whose last row claims ``10^6 x 10^6``
made ``toarray`` raise ``MemoryError`` out of the loader, a traceback from ``sparsecnn train``.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from sparsecnn.cli import main
from sparsecnn.config import size_limits
from sparsecnn.data import load_simplenn_mat
from sparsecnn.exceptions import DataFormatError, SizeLimitError

CONFIG = ("L = 1;\nLC = 0;\nLF = 1;\nwd_input = [2];\nht_input = [2];\nch_input = [1];\nwd_pad_added = [];\n"
          "wd_filter = [];\nstrides = [];\nwd_subimage_pool = [];\nfull_neurons = [3];\n")


def v4_header(name: str, mrows: int, ncols: int, mopt: int = 0, imagf: int = 0) -> bytes:
    """A MAT v4 variable header (little-endian int32 MOPT, mrows, ncols, imagf, namlen) and its name."""
    return struct.pack("<5i", mopt, mrows, ncols, imagf, len(name) + 1) + name.encode() + b"\x00"


def v4_file(**variables: object) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, format="4")
    return buf.getvalue()


def refuse_loadmat(monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy must not even be asked to read the file."""
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("scipy.io.loadmat was called on a file the checks should have refused")
    monkeypatch.setattr(scipy.io, "loadmat", never)


def test_mat_v4_file_still_loads_as_before(tmp_path: Path) -> None:
    Z = np.arange(12.0).reshape(3, 4)
    (tmp_path / "v4.mat").write_bytes(v4_file(Z=Z, y=np.array([[2], [0], [1]])))
    scipy.io.savemat(tmp_path / "v5.mat", {"Z": Z, "y": np.array([[2], [0], [1]])})
    X4, y4 = load_simplenn_mat(tmp_path / "v4.mat", shape=(2, 2, 1))
    X5, y5 = load_simplenn_mat(tmp_path / "v5.mat", shape=(2, 2, 1))
    np.testing.assert_array_equal(X4, Z.T)
    np.testing.assert_array_equal(X4, X5)
    np.testing.assert_array_equal(y4, y5)


def test_mat_v4_sparse_Z_still_loads(tmp_path: Path) -> None:
    Z = np.array([[0.0, 3.0, 0.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    (tmp_path / "sparse.mat").write_bytes(v4_file(Z=scipy.sparse.csc_matrix(Z), y=np.array([[1], [0]])))
    X, y = load_simplenn_mat(tmp_path / "sparse.mat", shape=(2, 2, 1))
    np.testing.assert_array_equal(X, Z.T)
    np.testing.assert_array_equal(y, [1, 0])


def test_mat_v4_header_claiming_10_12_entries_is_refused_before_scipy_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.mat"
    path.write_bytes(v4_header("Z", 10**6, 10**6) + bytes(64))
    refuse_loadmat(monkeypatch)
    with pytest.raises(SizeLimitError, match=r"huge\.mat: Z \(1000000 x 1000000\) as float64 would need 8 TB"):
        load_simplenn_mat(path, shape=(2, 2, 1))


def test_mat_v4_header_within_the_limit_but_beyond_the_file_is_corrupt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cut.mat"
    path.write_bytes(v4_header("Z", 1000, 4) + bytes(800))
    refuse_loadmat(monkeypatch)
    with pytest.raises(DataFormatError, match=r"cut\.mat: corrupt MAT v4 file: Z \(1000 x 4\) needs 32,000 bytes, "
                                              r"800 are left"):
        load_simplenn_mat(path, shape=(2, 2, 1))


def test_mat_v4_size_limit_is_the_configured_one(tmp_path: Path) -> None:
    """``Z`` stored as uint8 (400 bytes in the file) needs 3,200 bytes as float64."""
    path = tmp_path / "v4.mat"
    path.write_bytes(v4_file(Z=np.ones((100, 4), dtype=np.uint8), y=np.zeros((100, 1), dtype=np.uint8)))
    assert path.stat().st_size < 2000
    with size_limits(max_bytes=2000), pytest.raises(SizeLimitError, match=r"Z \(100 x 4\) as float64 would need"):
        load_simplenn_mat(path, shape=(2, 2, 1))


@pytest.mark.parametrize("mopt, what", [(9, "MOPT = 9"), (3000, "MOPT = 3000"), (100, "MOPT = 100")])
def test_mat_v4_unknown_type_codes_are_named(tmp_path: Path, mopt: int, what: str) -> None:
    path = tmp_path / "bad.mat"
    path.write_bytes(v4_header("Z", 1, 4, mopt=mopt) + bytes(32))
    with pytest.raises(DataFormatError, match=what):
        load_simplenn_mat(path, shape=(2, 2, 1))


def test_mat_v4_name_longer_than_the_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "name.mat"
    path.write_bytes(struct.pack("<5i", 0, 1, 1, 0, 2**31 - 1) + b"Z\x00")
    with pytest.raises(DataFormatError, match=r"declares a name of 2,147,483,647 bytes"):
        load_simplenn_mat(path, shape=(1, 1, 1))


def sparse_v4_with_dims(rows: float, cols: float) -> bytes:
    """A v4 file whose sparse ``Z`` (3 nonzeros) declares ``rows x cols`` in its last row."""
    data = bytearray(v4_file(Z=scipy.sparse.csc_matrix(np.eye(3, 4)), y=np.array([[0], [1], [0]])))
    mopt, mrows, ncols, _, namlen = struct.unpack_from("<5i", data, 0)
    assert (mopt % 10, mrows, ncols) == (2, 4, 3)            # sparse, (3 + 1) x 3 doubles
    start = 20 + namlen
    res = np.frombuffer(bytes(data), "<f8", mrows * ncols, start).reshape((mrows, ncols), order="F").copy()
    res[-1, :2] = rows, cols
    data[start:start + res.nbytes] = res.tobytes(order="F")
    return bytes(data)


def test_mat_v4_sparse_Z_declaring_10_12_entries_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sparse_huge.mat"
    path.write_bytes(sparse_v4_with_dims(1e6, 1e6))
    refuse_loadmat(monkeypatch)
    with pytest.raises(SizeLimitError, match=r"Z \(1000000 x 1000000\) as a dense float64 matrix would need 8 TB"):
        load_simplenn_mat(path, shape=(2, 2, 1))


@pytest.mark.parametrize("rows, cols", [(np.nan, 4.0), (3.5, 4.0), (2.0, 4.0), (3.0, -4.0)])
def test_mat_v4_sparse_Z_with_impossible_dimensions_is_corrupt(tmp_path: Path, rows: float, cols: float) -> None:
    path = tmp_path / "sparse_bad.mat"
    path.write_bytes(sparse_v4_with_dims(rows, cols))
    with pytest.raises(DataFormatError, match=r"sparse_bad\.mat: corrupt MAT v4 file: Z"):
        load_simplenn_mat(path, shape=(2, 2, 1))


def test_train_on_a_huge_v4_header_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "net.config").write_text(CONFIG)
    (tmp_path / "huge.mat").write_bytes(sparse_v4_with_dims(1e6, 1e6))
    status = main(["train", "--config", str(tmp_path / "net.config"), "--train", str(tmp_path / "huge.mat"),
                   "--iter-max", "1", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err and "MemoryError" not in err
    assert err.count("\n") == 1 and "would need 8 TB" in err, err
