"""Read .npz files that may be hostile: every array's header before its data.

``np.load`` reads an array whole before anyone can look at its shape, so a
small crafted (or compressed) file can claim gigabytes. Here each member's
``.npy`` header (shape, dtype) is read and checked against a size limit first;
only then is its data read, into an array of exactly that size.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile

import numpy as np
from numpy.lib import format as npy


class NpzError(ValueError):
    """A file that is not an .npz file holding the arrays asked for, within their limits."""


def read_npz(path, limits: dict[str, int], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays named in `limits` (name -> most bytes of data), checked before they are read.

    Names in `optional` may be missing (and are then absent from the result).
    Raises FileNotFoundError, IsADirectoryError, the OSError of a file that cannot be opened (no
    permission), or NpzError naming the first problem of its bytes: not a zip file, a missing
    array, an object (pickled) array, an array over its limit.
    """
    mode = os.stat(path).st_mode  # FileNotFoundError for a missing file
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder")
    if not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer forever
        raise NpzError("it is not a regular file")
    with open(path, "rb") as file:  # opened outside the try: a file we may not read is no bad .npz
        return _read_members(file, limits, optional)


def _read_members(file, limits, optional):
    """read_npz's arrays from the open file, each header checked before its data is read."""
    try:
        with zipfile.ZipFile(file) as z:
            members = set(z.namelist())
            arrays = {}
            for name, limit in limits.items():
                member = f"{name}.npy"
                if member not in members:
                    if name in optional:
                        continue
                    raise NpzError(f"it has no {name!r} array")
                with z.open(member) as fp:
                    shape, dtype = _header(fp, name)
                size = math.prod(shape) * dtype.itemsize
                if size > limit:
                    raise NpzError(f"its {name!r} array claims shape {shape} of {dtype}, {size:,} bytes, "
                                   f"more than the {limit:,} it may hold")
                with z.open(member) as fp:
                    arrays[name] = npy.read_array(fp, allow_pickle=False)
            return arrays
    except NpzError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError,
            NotImplementedError, RuntimeError) as e:  # zipfile and numpy's own complaints about the bytes
        raise NpzError(f"{type(e).__name__}: {e}") from None


def _header(fp, name):
    try:
        version = npy.read_magic(fp)
        read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read is None:
            raise NpzError(f"its {name!r} array has .npy version {version}, not 1.0 or 2.0")
        shape, _, dtype = read(fp)
    except NpzError:
        raise
    except Exception as e:  # noqa: BLE001 - crafted headers reach many parsers (ast, dtype, zlib): all mean "bad"
        raise NpzError(f"its {name!r} array has a malformed header ({e})") from None
    if dtype.hasobject:
        raise NpzError(f"its {name!r} array holds Python objects, which are never loaded")
    return shape, dtype
