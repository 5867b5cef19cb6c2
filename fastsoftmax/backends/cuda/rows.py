"""What the CUDA paths share about X's rows: their alignment, the grid of the kernels that give
each row a warp, a chunk of them in the compute dtype, and the epoch's order of rows, written on
the device."""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import ROWS_PER_WARP_BLOCK, THREADS
from ...reference.permutation import halves, round_keys
from . import compile as nvrtc


def pad4(d: int) -> int:
    return -(-d // 4) * 4


def rows_aligned(a, values: int) -> bool:
    """Every row of the C-contiguous a starts on a `values`-element vector boundary."""
    width = values * a.itemsize
    return a.shape[1] % values == 0 and a.data.ptr % width == 0


def vec16(a) -> np.int32:
    """1 when every row of a starts 16-byte aligned, so rows copy in 16-byte chunks."""
    return np.int32(a.shape[1] * a.itemsize % 16 == 0 and a.data.ptr % 16 == 0)


def rows_grid(rows: int) -> int:
    """Blocks for a kernel that gives each of `rows` rows a warp (softmax_rows.cu, sparse.cu)."""
    return max(1, min(-(-rows // ROWS_PER_WARP_BLOCK), nvrtc.max_blocks()))


def rows_of(X, rows, first: int, count: int, buffer):
    """Rows first..first+count of the batch (rows[first + i] of X, or first + i when rows is None) in the
    compute dtype: a view of X where it already is, else converted into buffer[:count]."""
    src = X[first : first + count] if rows is None else X[rows[first : first + count]]
    if buffer is None:
        return src
    out = buffer[:count]
    out[...] = src
    return out


def shuffle(n, seed, epoch):
    """Backend.shuffle: the int64 rows 0..n-1 in epoch `epoch`'s order (kernels/shuffle.cu)."""
    order = cp.empty(n, cp.int64)
    half, mask = halves(n)
    nvrtc.kernel("shuffle", "shuffle_rows")(
        (min(-(-n // THREADS), nvrtc.max_blocks()),),
        (THREADS,),
        (order, np.uint64(n), np.uint32(half), np.uint64(mask), *(np.uint64(k) for k in round_keys(seed, epoch))),
    )
    return order
