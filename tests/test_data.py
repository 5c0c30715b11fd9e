"""Data loading: simpleNN's .mat files, preprocessing helpers, the bundled digits."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sparsecnn import DataFormatError, InputTypeError, Network, ShapeError
from sparsecnn.data import (
    center,
    load_digits_data,
    load_simplenn_mat,
    scale,
    scale_255,
    scale_minmax,
    scale_pixels,
)
from sparsecnn.notation import mat


# ------------------------------------------------------------------ the packaged files
def test_shared_training_file(shared_data: Path) -> None:
    X, y = load_simplenn_mat(shared_data / "mnist-demo.mat")
    Z = scipy.io.loadmat(shared_data / "mnist-demo.mat")["Z"]
    assert X.shape == (784, 2000) and X.dtype == np.float64
    assert y.shape == (2000,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert X.min() == 0 and X.max() == 255                   # pixel values unchanged
    # rows of Z hold the image row by row, so Z^{1,1} is the transposed image
    image = Z[0].reshape(28, 28)
    assert np.array_equal(mat(X[:, 0], 28, 28), image.T)
    assert np.array_equal(X, Z.T)


def test_shared_test_file(shared_data: Path) -> None:
    X, y = load_simplenn_mat(shared_data / "mnist-demo.t.mat", shape=(28, 28, 1))
    assert X.shape == (784, 1000) and y.shape == (1000,)
    assert set(np.unique(y)) <= set(range(10))


def test_shared_data_fits_shared_network(shared_data: Path) -> None:
    net = Network.from_simplenn_config(shared_data / "mnist-demo-layer4.config")
    X, y = load_simplenn_mat(shared_data / "mnist-demo.t.mat")
    Xs, mean = center(scale(X[:, :8], 1 / 255))
    f, g = net.objective(net.init_params(seed=0), Xs, y[:8])
    assert np.isfinite(f) and g.shape == (net.n_params,)


# ------------------------------------------------------------------ written files
def save(tmp_path: Path, name: str = "data.mat", **variables: object) -> Path:
    path = tmp_path / name
    scipy.io.savemat(path, variables)
    return path


def test_channels_and_rectangular_images(tmp_path: Path) -> None:
    a, b, d, l = 2, 3, 2, 4
    Z = np.arange(l * d * a * b, dtype=float).reshape(l, d * a * b)
    path = save(tmp_path, Z=Z, y=np.arange(l)[:, None])
    X, y = load_simplenn_mat(path, shape=(a, b, d))
    assert X.shape == (d * a * b, l)
    for i in range(l):
        for c in range(d):
            for j in range(a * b):                    # simpleNN: channel blocks of a*b pixels
                assert X[c + d * j, i] == Z[i, c * a * b + j]
    assert np.array_equal(y, np.arange(l))


def test_row_vector_labels_and_integer_types(tmp_path: Path) -> None:
    Z = np.arange(8, dtype=np.uint8).reshape(2, 4)
    path = save(tmp_path, Z=Z, y=np.array([[7, 0]], dtype=np.int32))
    X, y = load_simplenn_mat(path)
    assert X.dtype == np.float64 and np.array_equal(X, Z.T.astype(float))
    assert y.dtype == np.int64 and list(y) == [7, 0]


def test_sparse_Z_is_read(tmp_path: Path) -> None:
    import scipy.sparse as sp

    Z = sp.csr_matrix(np.eye(2, 4))
    X, _ = load_simplenn_mat(save(tmp_path, Z=Z, y=np.array([[0], [1]])))
    assert np.array_equal(X, np.eye(2, 4).T)


def test_other_variables_ignored(tmp_path: Path) -> None:
    path = save(tmp_path, Z=np.zeros((3, 4)), y=np.zeros((3, 1)), other=np.ones(5))
    X, y = load_simplenn_mat(path)
    assert X.shape == (4, 3) and y.shape == (3,)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file"):
        load_simplenn_mat(tmp_path / "absent.mat")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a regular file"):
        load_simplenn_mat(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n" * 20, b"\x00\x01" * 300])
def test_not_a_mat_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.mat"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match="junk.mat"):
        load_simplenn_mat(path)


class _Bomb:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_rejected_without_unpickling(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "data.mat"
    path.write_bytes(pickle.dumps({"Z": _Bomb(marker), "y": [1]}, protocol=protocol))
    with pytest.raises(DataFormatError, match="pickle"):
        load_simplenn_mat(path)
    assert not marker.exists()


def test_pickle_protocol_0_rejected_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "data.mat"
    path.write_bytes(pickle.dumps(_Bomb(marker), protocol=0))
    with pytest.raises(DataFormatError):
        load_simplenn_mat(path)
    assert not marker.exists()


def test_npz_rejected(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, Z=np.zeros((2, 4)), y=np.zeros(2))
    with pytest.raises(DataFormatError, match="NumPy"):
        load_simplenn_mat(path)


def test_v73_hdf5_rejected(tmp_path: Path) -> None:
    # A v7.3 MAT file: a 128-byte MATLAB header with version 0x0200, then HDF5 from byte 512.
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    path = tmp_path / "v73.mat"
    path.write_bytes(header.ljust(512, b"\x00") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(DataFormatError, match="v7.3"):
        load_simplenn_mat(path)


def test_plain_hdf5_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    with pytest.raises(DataFormatError, match="HDF5"):
        load_simplenn_mat(path)


def test_v4_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "v4.mat"
    scipy.io.savemat(path, {"Z": np.ones((2, 9)), "y": np.array([[1.0], [2.0]])}, format="4")
    X, y = load_simplenn_mat(path)
    assert X.shape == (9, 2) and list(y) == [1, 2]


@pytest.mark.parametrize("variables, missing", [
    ({"y": np.zeros((2, 1))}, "missing variable Z"),
    ({"Z": np.zeros((2, 4))}, "missing variable y"),
    ({"X": np.zeros((2, 4)), "labels": np.zeros((2, 1))}, "missing variables Z, y"),
])
def test_missing_variables(tmp_path: Path, variables: dict[str, object], missing: str) -> None:
    with pytest.raises(DataFormatError, match=missing) as info:
        load_simplenn_mat(save(tmp_path, **variables))
    for name in variables:
        assert name in str(info.value)             # names what the file has


@pytest.mark.parametrize("Z, y, shape, what", [
    (np.zeros((2, 5)), np.zeros((2, 1)), None, "5 columns, which is not a square"),
    (np.zeros((2, 4)), np.zeros((2, 1)), (2, 3, 1), "d\\*a\\*b = 1\\*2\\*3 = 6 columns"),
    (np.zeros((2, 4)), np.zeros((3, 1)), None, "y must be l x 1 with l = 2"),
    (np.zeros((2, 4)), np.zeros((2, 2)), None, "y must be l x 1"),
    (np.zeros((2, 4)), np.array([[0.0], [1.5]]), None, "integer labels, got 1.5 at position 1"),
    (np.zeros((2, 4)), np.array([[0.0], [np.nan]]), None, "integer labels, got nan"),
    (np.zeros((2, 4)), np.array([[0.0], [-1.0]]), None, "labels >= 0, got -1.0"),
    (np.array([[0.0, 1, 2, np.inf]] * 2), np.zeros((2, 1)), None, "Z must be finite, got inf at row 0, column 3"),
    (np.array(["abcd", "efgh"]), np.zeros((2, 1)), None, "Z must be a numeric matrix"),
    (np.zeros((2, 4)) + 1j, np.zeros((2, 1)), None, "Z must be real"),
])
def test_bad_contents(tmp_path: Path, Z: np.ndarray, y: np.ndarray, shape: tuple[int, int, int] | None,
                      what: str) -> None:
    path = save(tmp_path, Z=Z, y=y)
    with pytest.raises(DataFormatError, match=what) as info:
        load_simplenn_mat(path, shape=shape)
    assert str(path) in str(info.value)


def test_cell_array_rejected(tmp_path: Path) -> None:
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = np.zeros(4), np.ones(4)
    with pytest.raises(DataFormatError, match="Z must be a numeric matrix"):
        load_simplenn_mat(save(tmp_path, Z=cells, y=np.zeros((2, 1))))


def test_bad_shape_argument(tmp_path: Path) -> None:
    path = save(tmp_path, Z=np.zeros((2, 4)), y=np.zeros((2, 1)))
    with pytest.raises(TypeError, match="shape"):
        load_simplenn_mat(path, shape=(2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="b must be a positive integer"):
        load_simplenn_mat(path, shape=(2, 0, 1))


# ------------------------------------------------------------------ helpers
def test_scale_and_center() -> None:
    X = np.array([[0.0, 255.0, 51.0], [255.0, 255.0, 255.0]])
    Xs = scale(X, 1 / 255)
    assert np.allclose(Xs, [[0, 1, 0.2], [1, 1, 1]])
    assert np.array_equal(X[0], [0.0, 255.0, 51.0])           # input untouched
    Xc, mean = center(Xs)
    assert np.allclose(mean, [0.4, 1.0]) and np.allclose(Xc.mean(axis=1), 0)
    Xt, same = center(np.array([[1.0], [1.0]]), mean)
    assert same is not None and np.allclose(Xt, [[0.6], [0.0]])


def test_scale_minmax_is_simplenns_max_min_normalization(shared_data: Path) -> None:
    """simpleNN's example_mnist.m: Z = (Z - min(Z, [], 2)) ./ (max(Z, [], 2) - min(Z, [], 2)), per row of Z."""
    Z = scipy.io.loadmat(shared_data / "mnist-demo.mat")["Z"].astype(np.float64)
    lo, hi = Z.min(axis=1, keepdims=True), Z.max(axis=1, keepdims=True)
    simplenn = (Z - lo) / (hi - lo)                              # one image per row, as simpleNN has it
    X, _ = load_simplenn_mat(shared_data / "mnist-demo.mat")
    assert np.array_equal(scale_minmax(X), simplenn.T)          # X = Z^T for d = 1
    assert np.array_equal(scale_pixels(X, "minmax"), simplenn.T)
    # the two scalings differ on this data: some images peak at 254, not 255
    peak = X.max(axis=0)
    assert (peak < 255).any() and not np.array_equal(scale_255(X), scale_minmax(X))
    assert np.allclose(scale_255(X)[:, peak == 255], scale_minmax(X)[:, peak == 255], rtol=0, atol=1e-15)
    assert np.allclose(scale_pixels(X, "255"), X / 255, rtol=0, atol=1e-15)


def test_scale_minmax_channels_share_one_range() -> None:
    X = np.array([[0., 5.], [2., 5.], [4., 9.], [8., 6.]])      # d a b = 4 entries (all channels) per image
    assert np.allclose(scale_minmax(X), [[0, 0], [0.25, 0], [0.5, 1], [1, 0.25]])


def test_scale_minmax_constant_image_is_an_error() -> None:
    X = np.array([[0., 3., 3.], [255., 3., 3.]])
    with pytest.raises(DataFormatError) as info:
        scale_minmax(X)
    message = str(info.value)
    assert "image 1 (column 1 of X) is constant" in message and "pixels are 3" in message
    assert "2 such images" in message and "--scale 255" in message
    assert np.isfinite(scale_255(X)).all()                     # the other scaling is defined
    with pytest.raises(ShapeError):
        scale_minmax(np.zeros(3))
    with pytest.raises(InputTypeError, match="minmax"):
        scale_pixels(X, "max")


def test_center_checks() -> None:
    with pytest.raises(ValueError, match="mean must have d\\*a\\*b = 2 entries"):
        center(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="l = 0"):
        center(np.zeros((2, 0)))
    with pytest.raises(TypeError, match="factor"):
        scale(np.zeros((2, 3)), "1/255")  # type: ignore[arg-type]


def test_digits() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    X_train, y_train, X_test, y_test = load_digits_data()
    assert X_train.shape == (64, 1347) and X_test.shape == (64, 450)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    assert y_train.dtype == np.int64 and set(np.unique(y_train)) == set(range(10))
    images = load_digits().images
    assert np.array_equal(mat(X_train[:, 5], 8, 8), images[5])           # upright image, vec order
    assert np.array_equal(mat(X_test[:, 0], 8, 8), images[1347])
    again = load_digits_data()
    assert all(np.array_equal(p, q) for p, q in zip(again, (X_train, y_train, X_test, y_test), strict=True))
    assert load_digits_data(n_test=97)[2].shape == (64, 97)
    with pytest.raises(TypeError, match="n_test"):
        load_digits_data(n_test=0)


def test_digits_without_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install 'sparsecnn\[demo\]'"):
        load_digits_data()
