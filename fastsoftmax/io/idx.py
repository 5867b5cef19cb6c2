"""Read idx files, the format of MNIST and Fashion-MNIST.

An idx file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), each dimension as a big-endian uint32, then the elements in C
order, big-endian. The files are usually gzip-compressed.
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np

__all__ = ["IdxError", "IdxRows", "read_idx", "read_idx_dask"]

# The type code (third byte of the magic number) -> element type as stored.
DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"  # a raw idx file starts with two zero bytes instead


class IdxError(ValueError):
    """A file that is not a well-formed idx file, plain or gzip-compressed."""


# The most data one file may hold, 1 GiB: 20 times Fashion-MNIST's training
# images. The header says how much a file holds before any of it is read, so a
# file claiming more is refused before anything is allocated for it.
MAX_BYTES = 2**30
_CHUNK = 1 << 20  # compressed bytes read at a time
# read_idx_dask's chunks: at most 64 MiB (a task's data, and its kernel's pass,
# stay small next to a worker's memory) and, where the file has the rows, at
# least 8 chunks, so that a few workers share even a small file.
CHUNK_BYTES = 2**26
MIN_CHUNKS = 8


def read_idx_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, element dtype as stored) from the header alone: reads a few bytes, inflates a few more.

    Raises IdxError for a malformed header, like read_idx.
    """
    with open(path, "rb") as f:
        return _header(_Stream(f), _error(path))


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an idx file, gzip-compressed or raw (told apart by its first bytes).

    Returns a new writeable, C-contiguous, native-endian array with the file's
    element type and shape. Raises IdxError (a ValueError) naming the file and
    the problem if the file is malformed, its data and header disagree, or the
    header claims more than max_bytes of data. Memory is bounded by the
    header's size: decompression stops there, so a small .gz file that would
    inflate to gigabytes is rejected after the header's worth.
    """
    error = _error(path)
    with open(path, "rb") as f:
        stream = _Stream(f)
        shape, dtype = _header(stream, error)
        expected = math.prod(shape) * dtype.itemsize
        if expected > max_bytes:
            raise error(f"header claims shape {shape} of {dtype.name}, {expected:,} bytes of data, "
                        f"more than the {max_bytes:,} an idx file may hold here")
        if not stream.gzip:  # a raw file's size says whether the data fits before reading it
            found = os.fstat(f.fileno()).st_size - stream.offset
            if found != expected:
                raise error(_mismatch(expected, found, shape))
        data = np.empty(expected, np.uint8)
        try:
            found = stream.readinto(memoryview(data))
            if found < expected:
                raise error(_mismatch(expected, found, shape))
            if stream.read(1):
                raise error(f"file has trailing bytes (expected {expected} bytes of data for shape {shape}, "
                            "found more)")
        except zlib.error as exc:
            raise error(f"corrupt gzip data ({exc})") from None
    array = data.view(dtype).reshape(shape)
    if not dtype.isnative:  # in place: no second copy of the data
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array


class IdxRows:
    """The data of a raw (uncompressed) idx file, memory-mapped at each access: an array-like for Dask.

    shape is the file's with images flattened to rows, (count, rows * columns);
    indexing returns native-endian arrays. It pickles as its path and offset,
    never as its data, so Dask tasks on other processes open the file
    themselves. The header and the file's length are checked here, before any
    data is read: any size is allowed, since nothing is allocated for it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        error = _error(path)
        with open(self.path, "rb") as f:
            stream = _Stream(f)
            if stream.gzip:
                raise IdxError(f"{self.path}: a compressed file cannot be memory-mapped; decompress it "
                               f"(gunzip -k {self.path}) to read it chunk by chunk")
            shape, self.stored = _header(stream, error)
            expected = math.prod(shape) * self.stored.itemsize
            found = os.fstat(f.fileno()).st_size - stream.offset
            if found != expected:
                raise error(_mismatch(expected, found, shape))
        self.offset, self.file_shape = stream.offset, shape
        self.shape = shape[:1] + ((math.prod(shape[1:]),) if len(shape) > 1 else ())
        self.dtype, self.ndim = self.stored.newbyteorder("="), len(self.shape)

    def __getitem__(self, index):
        if 0 in self.file_shape:  # numpy cannot map an empty file
            return np.empty(self.shape, self.dtype)[index]
        data = np.memmap(self.path, self.stored, "r", self.offset, self.shape)[index]
        return np.asarray(data).astype(self.dtype, copy=False)  # a view of the mapped pages for uint8


def is_compressed(path: str | os.PathLike) -> bool:
    """Whether an idx file is gzip-compressed (its first two bytes)."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def read_idx_dask(path: str | os.PathLike, max_bytes: int = MAX_BYTES):
    """A Dask array of an idx file's rows (images flattened to 2-D), chunked by rows.

    A raw file is memory-mapped chunk by chunk (IdxRows), so it may be larger
    than memory; a .gz file is read whole first (read_idx, up to max_bytes):
    decompress a large one. Chunks hold at most CHUNK_BYTES, and a file with
    the rows has at least MIN_CHUNKS. Needs Dask (``pip install fastsoftmax[dask]``).
    """
    try:
        import dask.array as da
        from dask.base import tokenize
    except ImportError:
        raise ImportError("reading idx files into Dask arrays needs Dask: install it with "
                          "`pip install fastsoftmax[dask]`") from None
    if is_compressed(path):
        data = read_idx(path, max_bytes)
        data = data.reshape(len(data), -1) if data.ndim > 1 else data
        name = None
    else:
        data = IdxRows(path)
        stat = os.stat(path)  # a file rewritten in place is another array to Dask
        name = "idx-" + tokenize(os.path.abspath(data.path), stat.st_size, stat.st_mtime_ns)
    row_bytes = max(1, math.prod(data.shape[1:]) * data.dtype.itemsize)
    rows = max(1, min(CHUNK_BYTES // row_bytes, -(-data.shape[0] // MIN_CHUNKS)))
    return da.from_array(data, chunks=(rows,) + data.shape[1:], name=name,
                         meta=np.empty((0,) * data.ndim, data.dtype))


def _error(path):
    def error(problem: str) -> IdxError:
        return IdxError(f"{os.fspath(path)}: {problem}; delete it and download it again")

    return error


def _mismatch(expected, found, shape):
    problem = "file is truncated" if found < expected else "file has trailing bytes"
    return f"{problem} (expected {expected} bytes of data for shape {shape}, found {found})"


def _header(stream, error):
    try:
        magic = stream.read(4)
        if not magic:
            raise error("file is empty")
        if len(magic) < 4:
            raise error(f"header is truncated ({len(magic)} bytes)")
        zeros, code, ndim = magic[:2], magic[2], magic[3]
        if zeros != b"\0\0":
            raise error(f"not an idx file (magic number {magic.hex()} does not start with 0000)")
        if code not in DTYPES:
            known = ", ".join(f"0x{c:02X}" for c in DTYPES)
            raise error(f"unknown idx type code 0x{code:02X} (known: {known})")
        dims = stream.read(4 * ndim)
    except zlib.error as exc:
        raise error(f"corrupt gzip data ({exc})") from None
    if len(dims) < 4 * ndim:
        raise error(f"header is truncated (expected {4 + 4 * ndim} bytes for {ndim} dimensions, "
                    f"found {4 + len(dims)})")
    return tuple(int(d) for d in np.frombuffer(dims, ">u4")), DTYPES[code]


class _Stream:
    """The bytes of an idx file, inflated on demand when it is gzip-compressed.

    Every gzip member is read in turn (zlib.decompress alone would stop at the
    end of the first and silently drop the rest); junk after a member raises
    zlib.error. read and readinto inflate no more than they are asked for.
    """

    def __init__(self, f):
        self.f = f
        self.input = f.read(2)
        self.gzip = self.input == _GZIP_MAGIC  # a raw idx file starts with two zero bytes instead
        self.member = None  # the zlib stream of the gzip member being read
        self.offset = 0  # bytes given out so far

    def read(self, n: int) -> bytes:
        buffer = bytearray(n)
        return bytes(buffer[: self.readinto(memoryview(buffer))])

    def readinto(self, out: memoryview) -> int:
        """Fill out; fewer bytes than its length only at the end of the data."""
        got = 0
        while got < len(out):
            chunk = self._next(len(out) - got)
            if not chunk:
                break
            out[got: got + len(chunk)] = chunk
            got += len(chunk)
        self.offset += got
        return got

    def _next(self, limit: int) -> bytes:
        """Up to `limit` more bytes; b"" at the end of the data."""
        if not self.gzip:
            data, self.input = self.input[:limit], self.input[limit:]
            return data or self.f.read(min(limit, _CHUNK * 64))
        while True:
            if self.member is None:
                self.input = self.input or self.f.read(_CHUNK)
                if not self.input:
                    return b""  # the end of the last member
                self.member = zlib.decompressobj(wbits=31)  # 31: expect a gzip header and trailer
            data = self.input or self.f.read(_CHUNK)
            chunk = self.member.decompress(data, limit)  # at most limit: never inflates past the need
            self.input = self.member.unconsumed_tail
            if self.member.eof:  # the rest is in unused_data (and, at once, in unconsumed_tail)
                self.input, self.member = self.member.unused_data, None
            if chunk:
                return chunk
            if not data and self.member is not None:
                raise zlib.error("gzip stream is truncated")
