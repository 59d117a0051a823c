"""Reading the files of a dataset safely: IDX (raw or gzipped) and ``.npy``, headers before data.

:func:`open_idx` and :func:`open_npy` open one file and check its header (magic, dimensions,
the size it claims against what the file can hold) without reading the data, so every
mismatch is reported before anything large is allocated; :class:`OpenedFile` then reads the
data straight into their final uint8 array and checks the MD5. Only regular files are opened
(a named pipe or a device is refused at once, never waited on). Every problem is a
:class:`~fastmlp.errors.DataError` of one line naming the file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from ..files import open_regular_file

IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset: its name, what it holds and its canonical checksum."""

    filename: str          # without .gz
    kind: str              # "images" or "labels"
    count: int             # number of images or labels
    md5: str               # MD5 of the decompressed IDX content
    npy_names: tuple[str, ...]  # accepted .npy file names for the same array


# No deflate stream expands more than 1032-fold: a bound on what a .gz (of any number of
# members) can hold, to check a header's claim against before allocating.
MAX_DEFLATE_RATIO = 1032


def read_exactly(stream, out: memoryview) -> int:
    """Fill ``out`` from ``stream``; return the number of bytes read (short only at the end)."""
    out = out.cast("B")
    done = 0
    while done < len(out):
        # Bounded chunks: gzip's readinto builds a temporary as large as the request.
        n = stream.readinto(out[done:done + (1 << 20)])
        if not n:
            break
        done += n
    return done


def read_npy_header(stream) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data_offset)`` of the ``.npy`` data ``stream`` starts with.

    Reads only the header (``ValueError`` when it is not one), so a caller can check what the
    header claims against the file's size before allocating anything.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    return tuple(int(d) for d in shape), dtype, bool(fortran), stream.tell()


def _size_error(path: Path, got: int, claimed: int) -> DataError:
    if got < claimed:
        return DataError(f"{path}: truncated: {max(got, 0)} bytes of data, header says {claimed}")
    return DataError(f"{path}: too long: {got} bytes of data, header says {claimed}")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any failure to read ``path`` becomes one :class:`DataError` line naming it."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except MemoryError:
        raise DataError(f"{path}: not enough memory to read it") from None


def _idx_header(kind: str, count: int, rows: int, cols: int) -> bytes:
    dims = [count, rows, cols] if kind == "images" else [count]
    magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    return np.array([magic, *dims], dtype=">i4").tobytes()


@dataclass
class OpenedFile:
    """One of a dataset's files, open, with its header read and checked; the data not read yet.

    ``shape`` is the array's as returned: (count, rows*cols) or (count,). ``stored`` is the
    shape, order and dtype of the data in the file. ``header`` holds an IDX file's header bytes
    (part of its MD5); None for ``.npy``, whose MD5 is that of the equivalent IDX file.
    """

    path: Path
    fspec: FileSpec
    stream: BinaryIO
    shape: tuple[int, ...]
    header: bytes | None
    stored: tuple[tuple[int, ...], np.dtype, bool] | None = None  # .npy: shape, dtype, Fortran order
    closers: tuple = ()

    @property
    def count(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        for closer in (self.stream, *self.closers):
            closer.close()

    def read(self, rows: int = 28, cols: int = 28, verify: bool = True) -> tuple[np.ndarray, str]:
        """Read the data straight into their final array; returns ``(array, md5)``.

        The MD5 is that of the IDX content (header and data; for ``.npy``, of the equivalent
        IDX file), compared with the registered one when ``verify``; unverified, it still names
        the content (a run resumed on other data is told so).
        """
        stored_shape, dtype, fortran = self.stored or (self.shape, np.dtype(np.uint8), False)
        with _reading(self.path):
            array = np.empty(math.prod(stored_shape), dtype)
            got = read_exactly(self.stream, memoryview(array))
            if got < array.nbytes:
                raise _size_error(self.path, got, array.nbytes)
            if self.stream.read(1 << 16):
                raise DataError(f"{self.path}: too long: more than {array.nbytes} bytes of data, "
                                f"header says {array.nbytes}")
        if fortran:
            array = np.ascontiguousarray(array.reshape(stored_shape[::-1]).T)
        if array.dtype != np.uint8:  # .npy labels of another integer type
            if array.size and (array.min() < 0 or array.max() > 255):
                raise DataError(f"{self.path}: labels outside 0..255")
            array = array.astype(np.uint8)
        array = array.reshape(self.shape)
        array.flags.writeable = False  # the dataset is shared by every run in the process
        # computed even unverified (about 0.1 s for MNIST): a resumed run compares it with its checkpoint's
        digest = hashlib.md5(self.header or _idx_header(self.fspec.kind, self.count, rows, cols))
        digest.update(memoryview(array).cast("B"))
        md5 = digest.hexdigest()
        if verify and md5 != self.fspec.md5:
            what = "MD5" if self.header else "content MD5 (as IDX)"
            raise DataError(f"{self.path}: checksum mismatch: {what} {md5}, expected {self.fspec.md5} "
                            f"(corrupt file, or a different dataset: --no-verify accepts custom data)")
        return array, md5


@contextlib.contextmanager
def _open_raw(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """``(file, size)`` of the regular file ``path``; closed again if the block fails, else left open."""
    with _reading(path):
        raw = open_regular_file(path)
        try:
            yield raw, os.fstat(raw.fileno()).st_size
        except BaseException:
            raw.close()
            raise


def open_idx(path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True) -> OpenedFile:
    """Open one IDX file, gzipped (``.gz``) or raw, and check its header against ``fspec``.

    What the header claims is checked against what the file can hold before anything is
    allocated: a raw file's size; for ``.gz``, the most its compressed bytes can expand to
    (a gzip trailer's size field describes only the last of possibly several members).
    """
    with _open_raw(path) as (raw, size):
        if path.suffix == ".gz":
            stream, closers, available = gzip.GzipFile(fileobj=raw, mode="rb"), (raw,), size * MAX_DEFLATE_RATIO
        else:
            stream, closers, available = raw, (), size
        expected_magic = IMAGES_MAGIC if fspec.kind == "images" else LABELS_MAGIC
        header_len = 16 if fspec.kind == "images" else 8
        header = stream.read(header_len)
        if len(header) < header_len:
            raise DataError(f"{path}: truncated: {len(header)} bytes, shorter than the {header_len}-byte IDX header")
        fields = np.frombuffer(header, dtype=">i4")
        magic = int(fields[0])
        if magic != expected_magic:
            raise DataError(f"{path}: wrong IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
                            f"for {fspec.kind}")
        dims = [int(d) for d in fields[1:]]
        expected_dims = [fspec.count, rows, cols] if fspec.kind == "images" else [fspec.count]
        # Custom data (verify=False) may hold any number of images, but of the registered size.
        if dims != expected_dims and (verify or dims[1:] != expected_dims[1:]):
            raise DataError(f"{path}: dimensions {dims}, expected {expected_dims}")
        if any(d <= 0 for d in dims):
            raise DataError(f"{path}: invalid dimensions {dims}")
        payload = math.prod(dims)
        if available - header_len < payload:
            holds = (f"{size - header_len} bytes of data" if stream is raw
                     else f"{size} compressed bytes, at most {available} decompressed")
            raise DataError(f"{path}: truncated: header says {payload} bytes of data, the file holds {holds}")
        shape = (dims[0], dims[1] * dims[2]) if fspec.kind == "images" else (dims[0],)
        return OpenedFile(path, fspec, stream, shape, header, closers=closers)


def open_npy(path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True) -> OpenedFile:
    """Open one ``.npy`` array and check its header like the IDX file it stands for.

    Shape, dtype and count come from the header; the size they imply must be the file's,
    checked before anything is allocated.
    """
    with _open_raw(path) as (raw, size):
        try:
            stored_shape, dtype, fortran, offset = read_npy_header(raw)
        except ValueError as exc:
            raise DataError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
        shape = stored_shape
        if any(d < 0 for d in shape):
            raise DataError(f"{path}: not a readable .npy file (negative dimension in shape {shape})")
        if fspec.kind == "images":
            if len(shape) == 3 and shape[1:] == (rows, cols):
                shape = (shape[0], rows * cols)
            if len(shape) != 2 or shape[1] != rows * cols:
                raise DataError(f"{path}: images of shape {stored_shape}, expected (n, {rows}, {cols}) "
                                f"or (n, {rows * cols})")
        elif len(shape) != 1:
            raise DataError(f"{path}: labels of shape {stored_shape}, expected (n,)")
        integer_labels = fspec.kind == "labels" and dtype.kind in "iu"
        if dtype != np.uint8 and not integer_labels:
            raise DataError(f"{path}: dtype {dtype}, expected uint8")
        if verify and shape[0] != fspec.count:
            raise DataError(f"{path}: {shape[0]} rows, expected {fspec.count}")
        nbytes = math.prod(stored_shape) * dtype.itemsize
        if size - offset != nbytes:
            raise _size_error(path, size - offset, nbytes)
        return OpenedFile(path, fspec, raw, shape, None, stored=(stored_shape, dtype, fortran))


def read_idx(path: Path, fspec: FileSpec, rows: int = 28, cols: int = 28, verify: bool = True):
    """Read one IDX file, gzipped (``.gz``) or raw; returns ``(array, md5)``. See :func:`open_idx`."""
    opened = open_idx(path, fspec, rows, cols, verify)
    try:
        return opened.read(rows, cols, verify)
    finally:
        opened.close()


