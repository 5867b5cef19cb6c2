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

__all__ = ["IdxError", "read_idx"]

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


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file, gzip-compressed or raw (told apart by its first bytes).

    Returns a new writeable, C-contiguous, native-endian array with the file's
    element type and shape. Raises IdxError (a ValueError) naming the file and
    the problem if the file is malformed or its data and header disagree.
    """

    def error(problem: str) -> IdxError:
        return IdxError(f"{os.fspath(path)}: {problem}; delete it and download it again")

    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_GZIP_MAGIC):
        try:
            data = _gunzip(data)
        except zlib.error as exc:
            raise error(f"corrupt gzip data ({exc})") from None
    if not data:
        raise error("file is empty")
    if len(data) < 4:
        raise error(f"header is truncated ({len(data)} bytes)")
    zeros, code, ndim = data[:2], data[2], data[3]
    if zeros != b"\0\0":
        raise error(f"not an idx file (magic number {data[:4].hex()} does not start with 0000)")
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise error(f"unknown idx type code 0x{code:02X} (known: {known})")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise error(f"header is truncated (expected {offset} bytes for {ndim} dimensions, found {len(data)})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = DTYPES[code]
    expected, found = math.prod(shape) * dtype.itemsize, len(data) - offset
    if found != expected:
        problem = "file is truncated" if found < expected else "file has trailing bytes"
        raise error(f"{problem} (expected {expected} bytes of data for shape {shape}, found {found})")
    # astype copies, which makes the array writeable and native-endian and lets
    # the file's bytes go; the copy costs ~3% of decompressing the data.
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _gunzip(data: bytes) -> bytes:
    """Decompress every gzip member in data; junk after a member raises zlib.error.

    zlib is ~7% faster than the gzip module; zlib.decompress alone would stop
    at the end of the first member and silently drop the rest.
    """
    members = []
    while data:
        stream = zlib.decompressobj(wbits=31)  # 31: expect a gzip header and trailer
        members.append(stream.decompress(data))
        if not stream.eof:
            raise zlib.error("gzip stream is truncated")
        data = stream.unused_data
    return b"".join(members)  # no copy for the usual single member
