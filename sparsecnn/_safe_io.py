"""Reading and writing sparsecnn's files safely.

- :func:`regular_file` accepts only an existing regular file (no FIFO, device
  or folder: ``/dev/zero`` would be read until memory runs out, a FIFO would hang).
- :func:`read_npz` reads every array of an ``.npz`` archive without pickle,
  after checking each member's header: its dtype (numbers or text only), and
  that the bytes its shape declares exist in the archive and fit the size limit
  of the size limits (:func:`sparsecnn.config.set_limits`), before anything is allocated.
- :func:`atomic_write` writes a file as ``numpy.savez`` would (through a
  symlink, with the permissions the user's umask gives a new file, or those of
  the file it replaces) but atomically: a temporary file in the same folder,
  then ``os.replace``.  A temporary file left by a save that was killed is
  removed (with a warning) by the next save to the same name.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
>>> atomic_write(path, lambda fh: np.savez(fh, x=np.arange(3)))
>>> read_npz(path, "test file")["x"]
array([0, 1, 2])
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from ._limits import check_bytes
from .exceptions import DataFormatError, InputTypeError

__all__ = ["file_name", "regular_file", "read_npz", "atomic_write", "unwritable", "READ_ERRORS"]

READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError,
    RuntimeError, OverflowError, struct.error, RecursionError)
"""What a corrupt archive can make ``zipfile`` and ``numpy.lib.format`` raise."""

_KINDS = "biufcU"


def file_name(path: object, what: str) -> str:
    """``os.fspath(path)`` as text, or an InputTypeError naming ``what`` (instead of os's TypeError).

    Examples
    --------
    >>> file_name(Path("m.npz"), "model file")
    'm.npz'
    >>> file_name(None, "model file")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.InputTypeError: the model file must be given as a path (str or os.PathLike), got NoneType
    """
    try:
        name = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        name = None
    if not isinstance(name, str):
        raise InputTypeError(f"the {what} must be given as a path (str or os.PathLike), got {type(path).__name__}")
    return name


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is an existing regular file (symlinks followed), else a DataFormatError.

    Examples
    --------
    >>> regular_file("/dev/zero", "configuration file")
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: /dev/zero: not a regular file (a character device); expected a configuration file
    """
    source = file_name(path, what)
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise DataFormatError(f"{source}: {what} not found") from None
    except OSError as exc:
        raise DataFormatError(f"{source}: cannot read the {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise DataFormatError(f"{source}: not a regular file ({kind}); expected a {what}")
    return Path(source)


def _member_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f".npy format version {version} is not supported")


def read_npz(path: str | os.PathLike[str], what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, checked before they are allocated.

    Parameters
    ----------
    path : str or path-like
    what : str
        The kind of file, for messages (``"model file"``).

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    DataFormatError
        Not a regular file, not a zip archive, a member that is not an ``.npy``
        array, holds Python objects or another unsupported dtype, or declares more
        bytes than it holds; a corrupt archive.
    SizeLimitError
        The arrays would need more than the limit of the size limits (:func:`sparsecnn.config.set_limits`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "obj.npz"
    >>> np.savez(path, x=np.array([None, 1], dtype=object))
    >>> read_npz(path, "model file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.DataFormatError: .../obj.npz: array 'x' has dtype object; a model file holds only numbers and text (no pickled Python objects)
    """
    source = file_name(path, what)
    regular_file(path, what)
    try:
        with open(source, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DataFormatError(f"{source}: cannot read the {what} ({exc.strerror or exc})") from None
    if not head.startswith(b"PK\x03\x04"):
        kind = "a single .npy array" if head.startswith(b"\x93NUMPY") else "not a zip archive"
        raise DataFormatError(f"{source}: not a {what} ({kind}; expected an .npz archive)")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            check_bytes(sum(i.file_size for i in infos), f"the {what}'s arrays", source)
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise DataFormatError(f"{source}: member {info.filename!r} is not an .npy array; "
                                          f"not a {what}")
                key = info.filename[:-4]
                if key in arrays:
                    raise DataFormatError(f"{source}: array {key!r} appears twice; not a {what}")
                with zf.open(info) as fh:
                    shape, _, dtype = _member_header(fh)
                    if dtype.hasobject or dtype.fields is not None or dtype.kind not in _KINDS:
                        extra = " (no pickled Python objects)" if dtype.hasobject else ""
                        raise DataFormatError(f"{source}: array {key!r} has dtype {dtype}; a {what} holds "
                                              f"only numbers and text{extra}")
                    count = 1
                    for s in shape:
                        count *= int(s)
                    needed = count * dtype.itemsize
                    if needed > info.file_size:
                        raise DataFormatError(
                            f"{source}: array {key!r} declares shape {tuple(shape)} of {dtype} "
                            f"({needed:,} bytes) but its member holds {info.file_size:,} bytes; corrupt {what}")
                with zf.open(info) as fh:
                    arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
    except DataFormatError:
        raise
    except READ_ERRORS as exc:
        raise DataFormatError(f"{source}: not a readable {what} ({type(exc).__name__}: {exc})") from None
    return arrays


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_strays(folder: Path, name: str) -> None:
    """Remove ``.{name}.{pid}.{token}.tmp`` files whose writing process is gone."""
    prefix = f".{name}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        parts = entry.name[len(prefix):-4].split(".")
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        if int(parts[0]) == os.getpid() or _pid_alive(int(parts[0])):
            continue
        try:
            os.unlink(entry.path)
        except OSError as exc:
            warnings.warn(f"{entry.path}: a temporary file left by an interrupted save could not be "
                          f"removed ({exc.strerror or exc})", RuntimeWarning, stacklevel=3)
        else:
            warnings.warn(f"{entry.path}: removed a temporary file left by an interrupted save",
                          RuntimeWarning, stacklevel=3)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically with ``write(fh)``.

    A symlink is written through (its target is replaced); a new file gets the
    permissions ``0o666`` less the umask, a replaced file keeps its own.

    Examples
    --------
    >>> import tempfile, pathlib, stat
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "real.bin").write_bytes(b"old"); (folder / "real.bin").chmod(0o644)
    3
    >>> (folder / "link.bin").symlink_to("real.bin")
    >>> atomic_write(folder / "link.bin", lambda fh: fh.write(b"new"))
    >>> (folder / "link.bin").is_symlink(), (folder / "real.bin").read_bytes()
    (True, b'new')
    >>> oct(stat.S_IMODE((folder / "real.bin").stat().st_mode))
    '0o644'
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise IsADirectoryError(21, "is a folder; expected a file name", os.fspath(path))
    _remove_strays(folder, target.name)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = None
    tmp = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)     # the umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.chmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def unwritable(path: str | os.PathLike[str], option: str) -> str | None:
    """Why a file could not be written at ``path`` (named ``option`` in the text), or None.

    Used by the command-line tools before any work starts.

    Examples
    --------
    >>> unwritable("/nonexistent/m.npz", "--save")
    '--save /nonexistent/m.npz: the folder /nonexistent does not exist'
    >>> unwritable("/", "--save")
    '--save /: is a folder; give a file name'
    """
    p = Path(path)
    if p.is_dir():
        return f"{option} {p}: is a folder; give a file name"
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        return f"{option} {p}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{option} {p}: the folder {folder} is not writable"
    if p.exists() and not os.access(p, os.W_OK):
        return f"{option} {p}: the file exists and is not writable"
    return None
