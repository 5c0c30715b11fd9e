"""A structural check of MAT v5/v7 files before :func:`scipy.io.loadmat` reads them.

scipy's MAT v5 reader is compiled code that is not hardened against corrupt
input: a single flipped bit (the "complex" flag of a real matrix) makes it read
past its buffer and crash the interpreter.  :func:`check_mat_v5` walks the file's
data elements in Python first and refuses, with a
:class:`~sparsecnn.exceptions.DataFormatError`, anything but what simpleNN's data
are: numeric (or logical) matrices whose sub-elements fit in their element and
whose data hold exactly ``prod(dims)`` numbers (twice for complex ones), or sparse
matrices whose parts fit their dimensions.
Compressed elements (``miCOMPRESSED``) are inflated with a bounded output, at most
the size limit of the size limits (:func:`sparsecnn.config.set_limits`).

MAT v5 layout (MathWorks, "MAT-File Format"): a 128-byte header whose last two
bytes ``IM`` or ``MI`` give the byte order; then data elements, each an 8-byte tag
(``uint32`` type, ``uint32`` byte count) or a 4-byte "small element" tag (type and
count in one ``uint32``, up to 4 bytes of data), padded to 8 bytes.

Examples
--------
>>> import io, scipy.io
>>> buf = io.BytesIO(); scipy.io.savemat(buf, {"Z": np.ones((2, 4)), "y": np.array([[1], [0]])})
>>> check_mat_v5(buf.getvalue(), "ok.mat")
>>> bad = bytearray(buf.getvalue()); bad[145] ^= 0x08          # mark the real Z as complex
>>> check_mat_v5(bytes(bad), "bad.mat")
Traceback (most recent call last):
...
sparsecnn.exceptions.DataFormatError: bad.mat: corrupt MAT file: Z is marked complex but has no imaginary part
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ._limits import check_bytes, format_bytes, get_limits
from .exceptions import DataFormatError, SizeLimitError

__all__ = ["check_mat_v5", "is_mat_v5", "check_mat_v4", "is_mat_v4"]

MI_MATRIX = 14
MI_COMPRESSED = 15
# miTYPE -> bytes per number (numeric types only)
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1}
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_NUMERIC_CLASSES = set(range(6, 16))          # mxDOUBLE .. mxUINT64 (logical arrays are mxUINT8)
_CLASS_NAMES = {1: "a cell array", 2: "a struct", 3: "an object", 4: "text (char)", 5: "a sparse matrix",
                16: "a function handle", 17: "an opaque object"}


def is_mat_v4(data: bytes) -> bool:
    """Whether scipy would read ``data`` as a MAT v4 file (a zero among its first four bytes).

    Examples
    --------
    >>> is_mat_v4(b"\\x00\\x00\\x00\\x00"), is_mat_v4(b"MATLAB 5.0 MAT-file")
    (True, False)
    """
    return len(data) >= 4 and 0 in data[:4]


def is_mat_v5(data: bytes) -> bool:
    """Whether scipy would read ``data`` as a MAT v5/v7 file (not v4, not v7.3).

    Examples
    --------
    >>> is_mat_v5(b"MATLAB 5.0 MAT-file" + b" " * 105 + b"\\x00\\x01IM"), is_mat_v5(b"\\x00\\x00\\x00\\x00")
    (True, False)
    """
    return len(data) >= 128 and 0 not in data[:4] and data[126:128] in (b"IM", b"MI") and (
        data[125] if data[126:128] == b"IM" else data[124]) == 1


class _Reader:
    def __init__(self, data: bytes, order: str, where: str) -> None:
        self.data, self.order, self.where = data, order, where

    def fail(self, message: str) -> DataFormatError:
        return DataFormatError(f"{self.where}: corrupt MAT file: {message}")

    def tag(self, pos: int, end: int) -> tuple[int, int, int, int]:
        """(type, byte count, data start, next position) of the element at ``pos``."""
        if pos + 4 > end:
            raise self.fail(f"a data element tag is cut off at byte {pos}")
        (word,) = struct.unpack_from(self.order + "I", self.data, pos)
        if word >> 16:                                     # small data element
            mtype, nbytes = word & 0xFFFF, word >> 16
            if nbytes > 4 or pos + 8 > end:
                raise self.fail(f"a small data element at byte {pos} is malformed")
            return mtype, nbytes, pos + 4, pos + 8
        if pos + 8 > end:
            raise self.fail(f"a data element tag is cut off at byte {pos}")
        mtype, nbytes = struct.unpack_from(self.order + "II", self.data, pos)
        start = pos + 8
        if start + nbytes > end:
            raise self.fail(f"the element at byte {pos} declares {nbytes:,} bytes, more than the "
                            f"{max(end - start, 0):,} left")
        stop = start + nbytes
        return mtype, nbytes, start, stop if mtype == MI_COMPRESSED else stop + (-nbytes) % 8


def _check_matrix(r: _Reader, start: int, end: int, k: int, wanted: tuple[str, ...]) -> None:
    """The sub-elements of the miMATRIX element of variable ``k`` occupying ``data[start:end]``.

    Every variable's header (flags, dimensions, name) is checked; the data only of those
    named in ``wanted`` (the others are skipped by scipy): numeric or sparse, sizes as declared.
    """
    if start == end:                                          # an empty element: scipy reads []
        return
    mtype, nbytes, s, pos = r.tag(start, end)
    if mtype != 6 or nbytes != 8:
        raise r.fail(f"variable {k}: expected array flags (8 bytes of miUINT32), got type {mtype}, {nbytes} bytes")
    flags = r.data[s:s + 4]
    cls, bits = (flags[0], flags[1]) if r.order == "<" else (flags[3], flags[2])
    complex_ = bool(bits & 0x08)
    mtype, nbytes, s, pos = r.tag(pos, end)
    if mtype not in (5, 6) or nbytes % 4 or nbytes < 8:
        raise r.fail(f"variable {k}: expected dimensions (at least two int32), got type {mtype}, {nbytes} bytes")
    dims = struct.unpack_from(f"{r.order}{nbytes // 4}{'i' if mtype == 5 else 'I'}", r.data, s)
    if any(d < 0 for d in dims):
        raise r.fail(f"variable {k}: negative dimension in {dims}")
    count = 1
    for d in dims:
        count *= d
    mtype, nbytes, s, pos = r.tag(pos, end)
    if mtype not in (1, 16):
        raise r.fail(f"variable {k}: expected its name (miINT8), got type {mtype}")
    name = r.data[s:s + nbytes].decode("ascii", errors="replace")
    if name not in wanted:
        return
    check_bytes(8 * count * (2 if complex_ else 1), f"{name} ({' x '.join(map(str, dims))}) as float64", r.where)
    if cls == 5:                                            # sparse: ir, jc, pr (and pi)
        if len(dims) != 2:
            raise r.fail(f"{name}: a sparse matrix must have two dimensions, got {dims}")
        parts = []
        for part in ("row indices", "column pointers", "real part", "imaginary part")[:4 if complex_ else 3]:
            if pos >= end:
                raise r.fail(f"{name}: the sparse matrix lacks its {part}")
            mtype, nbytes, s, pos = r.tag(pos, end)
            dt = _MI_DTYPES.get(mtype)
            if dt is None or nbytes % np.dtype(dt).itemsize:
                raise r.fail(f"{name}: the sparse matrix's {part} has type {mtype} and {nbytes} bytes")
            parts.append(np.frombuffer(r.data, dtype=np.dtype(r.order + dt), offset=s,
                                       count=nbytes // np.dtype(dt).itemsize))
        ir, jc = parts[0], parts[1]
        if (jc.size != dims[1] + 1 or jc.dtype.kind not in "iu" or ir.dtype.kind not in "iu"
                or jc[0] != 0 or (np.diff(jc.astype(np.int64)) < 0).any() or int(jc[-1]) > ir.size
                or any(int(jc[-1]) > p.size for p in parts[2:])
                or (ir.size and (int(ir.min()) < 0 or int(ir.max()) >= dims[0]))):
            raise r.fail(f"{name}: the sparse matrix's row indices and column pointers do not fit its "
                         f"dimensions {dims}")
        return
    if cls not in _NUMERIC_CLASSES:
        what = _CLASS_NAMES.get(cls, f"MATLAB class {cls}")
        raise DataFormatError(f"{r.where}: {name} must be a numeric matrix, got {what}")
    for part in ("real", "imaginary") if complex_ else ("real",):
        if pos >= end:
            if part == "imaginary":
                raise r.fail(f"{name} is marked complex but has no imaginary part")
            raise r.fail(f"{name} has no data")
        mtype, nbytes, s, pos = r.tag(pos, end)
        size = _MI_SIZES.get(mtype)
        if size is None:
            raise r.fail(f"{name}: the {part} part has the non-numeric type {mtype}")
        if nbytes != count * size:
            raise r.fail(f"{name}: dimensions {dims} need {count * size:,} bytes of type {mtype} for the "
                         f"{part} part, the file has {nbytes:,}")
    if pos < end and any(r.data[pos:end]):
        raise r.fail(f"{name}: {end - pos} unexpected bytes after its data")


def check_mat_v5(data: bytes, where: str, wanted: tuple[str, ...] = ("Z", "y")) -> None:
    """Refuse a MAT v5/v7 file's bytes unless every variable's header is well formed and the
    variables ``wanted`` are well-formed numeric (dense or sparse) matrices.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        The file's name, for messages.
    wanted : tuple of str
        The variables that will be read.

    Raises
    ------
    DataFormatError
        A structural inconsistency (named), or a variable that is not a numeric matrix.
    SizeLimitError
        A compressed variable that inflates beyond the limit of the size limits (:func:`sparsecnn.config.set_limits`).
    """
    order = "<" if data[126:128] == b"IM" else ">"
    pos, k = 128, 0
    while pos < len(data):
        if len(data) - pos < 8 and not any(data[pos:]):      # zero padding at the end
            break
        k += 1
        r = _Reader(data, order, where)
        mtype, nbytes, start, pos = r.tag(pos, len(data))
        if mtype == MI_COMPRESSED:
            inflate = zlib.decompressobj()
            limit = get_limits()["max_bytes"]
            try:
                inner = inflate.decompress(data[start:start + nbytes], limit + 1)
            except zlib.error as exc:
                raise r.fail(f"variable {k}: its compressed data do not inflate ({exc})") from None
            if len(inner) > limit:
                raise SizeLimitError(f"{where}: variable {k} inflates to more than {format_bytes(limit)}, the "
                                     "limit (sparsecnn.config.set_limits(max_bytes=...) or the environment "
                                     "variable SPARSECNN_MAX_BYTES)")
            if not inflate.eof:
                raise r.fail(f"variable {k}: its compressed data are incomplete")
            ri = _Reader(inner, order, where)
            itype, inbytes, istart, _ = ri.tag(0, len(inner))
            if itype != MI_MATRIX:
                raise r.fail(f"variable {k}: the compressed element holds type {itype}, not a matrix")
            _check_matrix(ri, istart, istart + inbytes, k, wanted)
        elif mtype == MI_MATRIX:
            _check_matrix(r, start, start + nbytes, k, wanted)
        else:
            raise r.fail(f"top-level element {k} has type {mtype}, expected a matrix (14) or compressed (15)")



# MAT v4 precision code P of MOPT -> numpy type (MathWorks, "MAT-File Format", Level 4)
_V4_DTYPES = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}
_V4_CLASSES = {0: "a full matrix", 1: "text", 2: "a sparse matrix"}


def check_mat_v4(data: bytes, where: str, wanted: tuple[str, ...] = ("Z", "y")) -> None:
    """Refuse a MAT v4 file's bytes unless every variable's header is well formed and fits in the
    file, and the variables ``wanted`` fit the size limit as float64 matrices.

    A MAT v4 variable is a 20-byte header (``int32`` MOPT, ``mrows``, ``ncols``, ``imagf``,
    ``namlen``), its name, then ``mrows ncols`` numbers of the type MOPT names (twice for a
    complex full matrix).  scipy reads the numbers a header declares before comparing with the
    file, and a sparse matrix takes its dimensions from its last row, so a few bytes could make
    it allocate terabytes; this checks the header's claims against the file and the limit first.

    Parameters
    ----------
    data : bytes
        The whole file.
    where : str
        The file's name, for messages.
    wanted : tuple of str
        The variables that will be read.

    Raises
    ------
    DataFormatError
        A header that does not fit the file or names no MAT v4 type (named).
    SizeLimitError
        A variable in ``wanted`` that would need more float64 memory than the limit of the
        size limits (:func:`sparsecnn.config.set_limits`).

    Examples
    --------
    >>> import io, struct, scipy.io
    >>> buf = io.BytesIO(); scipy.io.savemat(buf, {"Z": np.ones((2, 4)), "y": np.array([[1], [0]])}, format="4")
    >>> check_mat_v4(buf.getvalue(), "ok.mat")
    >>> huge = struct.pack("<5i", 0, 10**6, 10**6, 0, 2) + b"Z\\x00"           # 10^12 doubles, no data
    >>> check_mat_v4(huge, "huge.mat")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsecnn.exceptions.SizeLimitError: huge.mat: Z (1000000 x 1000000) as float64 would need 8 TB; the limit is ...
    """
    def fail(message: str) -> DataFormatError:
        return DataFormatError(f"{where}: corrupt MAT v4 file: {message}")

    (first,) = struct.unpack_from("<i", data, 0) if len(data) >= 4 else (0,)
    order = ">" if first < 0 or first > 5000 else "<"           # as scipy guesses the byte order
    pos, k = 0, 0
    while pos < len(data):
        k += 1
        if pos + 20 > len(data):
            raise fail(f"the header of variable {k} is cut off at byte {pos}")
        mopt, mrows, ncols, imagf, namlen = struct.unpack_from(order + "5i", data, pos)
        M, rest = divmod(mopt, 1000)
        O, rest = divmod(rest, 100)
        P, T = divmod(rest, 10)
        if not 0 <= mopt <= 5000 or M not in (0, 1) or O != 0 or P not in _V4_DTYPES or T not in _V4_CLASSES:
            raise fail(f"variable {k} has the type code MOPT = {mopt}, which names no MAT v4 matrix")
        if mrows < 0 or ncols < 0:
            raise fail(f"variable {k} has negative dimensions {mrows} x {ncols}")
        if namlen < 1 or pos + 20 + namlen > len(data):
            raise fail(f"variable {k} declares a name of {namlen:,} bytes, "
                       f"{len(data) - pos - 20:,} are left")
        name = data[pos + 20:pos + 20 + namlen].rstrip(b"\x00").decode("latin-1")
        dtype = np.dtype(order + _V4_DTYPES[P])
        count = mrows * ncols
        parts = 2 if imagf == 1 and T != 2 else 1
        start = pos + 20 + namlen
        nbytes = count * dtype.itemsize * parts
        if name in wanted:
            check_bytes(8 * count * parts, f"{name} ({mrows} x {ncols}) as float64", where)
        if start + nbytes > len(data):
            raise fail(f"{name} ({mrows} x {ncols}) needs {nbytes:,} bytes, {len(data) - start:,} are left")
        if name in wanted and T == 2:
            _check_sparse_v4(np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(
                (mrows, ncols), order="F"), name, where)
        pos = start + nbytes


def _check_sparse_v4(res: np.ndarray, name: str, where: str) -> None:
    """A MAT v4 sparse matrix: rows ``(i, j, value[, imaginary])``, the last ``(rows, cols, 0)``."""
    if res.shape[0] < 1 or res.shape[1] not in (3, 4):
        raise DataFormatError(f"{where}: corrupt MAT v4 file: {name}, a sparse matrix, must be stored as "
                              f"(N + 1) x 3 or 4 numbers, got {res.shape[0]} x {res.shape[1]}")
    ij = res[:, :2].astype(np.float64)
    if not np.isfinite(ij).all() or (ij != np.round(ij)).any() or (ij < 0).any():
        raise DataFormatError(f"{where}: corrupt MAT v4 file: {name}: the sparse matrix's indices and "
                              "dimensions must be non-negative integers")
    rows, cols = ij[-1]
    check_bytes(int(8 * rows * cols), f"{name} ({rows:.0f} x {cols:.0f}) as a dense float64 matrix", where)
    if ((ij[:-1] < 1) | (ij[:-1] > ij[-1])).any():
        raise DataFormatError(f"{where}: corrupt MAT v4 file: {name}: a sparse matrix's (1-based) indices do "
                              f"not fit its dimensions {rows:.0f} x {cols:.0f}")
