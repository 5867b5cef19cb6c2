"""Write idx files and small fake MNIST-style data sets for the tests.

Import it from a test as ``from idxdata import make_dataset_dir, write_idx``.
The idx type codes are spelled out here, not taken from fastsoftmax.idx, so
that the tests check the reader against the format rather than against itself.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastsoftmax.io.datasets import FILES

# numpy kind + item size -> idx type code
TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed idx encoding of array (whose dtype must have a type code)."""
    array = np.asarray(array)
    code = TYPE_CODES[f"{array.dtype.kind}{array.dtype.itemsize}"]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write array as an idx file, gzip-compressed if path ends in .gz; return the path."""
    path = Path(path)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)
    return path


def make_dataset_dir(
    directory: str | Path,
    n_train: int = 60,
    n_test: int = 20,
    *,
    image_shape: tuple[int, int] = (4, 4),
    n_classes: int = 10,
    compress: bool | Sequence[bool] = True,
    seed: int = 0,
) -> Path:
    """Write the four standard files of a random data set into directory; return it.

    compress: gzip every file (True), none (False), or one bool per file in
    the order of fastsoftmax.datasets.FILES. Labels are random in
    [0, n_classes) with every class present when n >= n_classes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(compress, bool):
        compress = [compress] * len(FILES)
    rng = np.random.default_rng(seed)
    arrays = []
    for n in (n_train, n_test):
        arrays.append(rng.integers(0, 256, (n, *image_shape), dtype=np.uint8))
        arrays.append(rng.permutation(np.arange(n) % n_classes).astype(np.uint8))
    for stem, gz, array in zip(FILES, compress, arrays):
        write_idx(directory / (f"{stem}.gz" if gz else stem), array)
    return directory
