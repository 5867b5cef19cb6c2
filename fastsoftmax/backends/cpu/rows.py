"""What the CPU kernels share: rows split into parts, rows gathered into tiles, the argmax, the
float32 exp, a tile's softmax, the learning rate of a step and the epoch's order of rows.

Rows are split into parts whose bounds depend on the row count alone
(``n_parts``, ``part_bounds``); the parts run in parallel and their partial sums
are added in part order, so a result depends on the input alone, never on the
thread count or scheduling.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import types
from numba.extending import overload

from ...reference import schedules
from ...reference.permutation import halves, permute, round_keys
from .jit import CACHE, INNER, JIT, njit, prefetch

# Rows per register tile: 8 rows x 2 classes = 16 vector accumulators and 10
# loads per 16 FMAs, so the inner loops are FMA-bound and fit the 32 AVX-512
# registers; each pass over a weight row serves 8 rows. Measured against 4
# rows: a 60000-row epoch takes 15.5 ms rather than 17.5 ms on the 2-core Xeon.
# Not a knob: fused.py's tile_logits and tile_rank_update are written out for
# exactly 8 rows (their tiles come from its tile_buffers).
TILE = 8
# 64 rows keep a part's work (~2 MFLOP) far above the ~1.5 us cost of a
# parallel launch, and give a 256-row minibatch 4 parts (measured faster on 2
# cores than 2 or 8); 16 parts bound the partial-gradient buffers at 16 * k * d.
ROWS_PER_PART = 64
MAX_PARTS = 16


@functools.cache
def unweighted(dtype):
    """The empty sample weights that stand for every row weighing 1 (one compiled kernel serves both)."""
    return np.empty(0, dtype)


@njit(**JIT)
def n_parts(n_rows):
    """How many parts n_rows rows split into: the one count every kernel and buffer uses."""
    return max(1, min(MAX_PARTS, (n_rows + ROWS_PER_PART - 1) // ROWS_PER_PART))


@njit(**INNER)
def part_bounds(n, q):
    """Rows lo..hi-1 of part q of n rows: they depend on n alone, never on the threads."""
    parts = n_parts(n)
    return n * q // parts, n * (q + 1) // parts


# The schedule's own float64 formula, compiled without fastmath so that it
# rounds as the plain Python function does: the reference's rates to the last
# bit, rounded once to the compute dtype by the caller.
learning_rate = njit(cache=CACHE, nogil=True, error_model="numpy")(schedules.learning_rate)


@njit(**INNER)
def load_tile(X, rows, lo, hi, xf):
    """xf[r] = X[rows[lo + r]] in xf's dtype, rows past hi - lo zeroed; prefetches the next
    tile. Returns the tile's row count, min(TILE, hi - lo)."""
    line = max(1, 64 // X.itemsize)
    for r in range(TILE, 2 * TILE):
        if lo + r < hi:
            x = X[rows[lo + r]]
            for p in range(0, x.shape[0], line):
                prefetch(x, p)
    for r in range(TILE):
        if lo + r < hi:
            x = X[rows[lo + r]]
            for p in range(xf.shape[1]):
                xf[r, p] = x[p]
        else:
            xf[r, :] = 0
    return min(TILE, hi - lo)


@njit(**JIT)
def gather_rows(X, rows, lo, out):
    """out[i] = X[rows[lo + i]] in out's dtype (uint8 pixels read as bytes, once)."""
    for i in range(out.shape[0]):
        x, o = X[rows[lo + i]], out[i]
        for p in range(o.shape[0]):
            o[p] = x[p]


@njit(**INNER)
def argmax(z, i, k):
    """(index of the first maximum of z[i, :k], as np.argmax; the maximum).

    Indexes z[i, j] itself: taking the row view z[i, :k] per call made
    counting a minibatch's hits 2.4x slower.
    """
    top, best = 0, z[i, 0]
    for j in range(1, k):
        v = z[i, j]
        better = v > best
        top = j if better else top
        best = v if better else best
    return top, best


def exp(x):
    """exp(x) for x <= 0: the float32 polynomial below, math.exp otherwise (see the overload)."""
    return math.exp(x)


@njit(**INNER)
def _expf(x):
    """exp(x) for float32 x <= 0, within 2 ulp: Cephes' expf (Moshier), without libm.

    Plain arithmetic that LLVM vectorises, where a call to libm's expf is one
    value at a time: the softmax of a 60000-row epoch takes ~1 ms less. Below
    -87 it returns ~1e-38 rather than a denormal; the softmax adds it to 1.
    """
    x = np.float32(-87.0) if x < np.float32(-87.0) else x  # noqa: FURB136 - max() would turn NaN into -87
    i = np.int32(x * np.float32(1.44269504088896341) - np.float32(0.5))  # round(x / ln 2), x <= 0
    n = np.float32(i)
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)  # x - n ln 2, in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1)
    return p * np.int32((i + 127) << 23).view(np.float32)  # * 2**n, built in the exponent bits


@overload(exp, jit_options=JIT)
def _exp_overload(x):
    if x == types.float32:
        return lambda x: _expf(x)
    return lambda x: math.exp(x)  # float64 keeps libm's exactly rounded exp


@njit(**INNER)
def row_softmax(Z, i, b, x_scale):
    """Z[i] = softmax(x_scale * Z[i] + b) in place, max-subtracted; returns (the log-sum-exp, the argmax)."""
    z, k = Z[i], Z.shape[1]
    for j in range(k):
        z[j] = z[j] * x_scale + b[j]
    top, m = argmax(Z, i, k)
    s = z.dtype.type(0)
    for j in range(k):
        e = exp(z[j] - m)
        z[j] = e
        s += e
    inv = z.dtype.type(1) / s
    for j in range(k):
        z[j] *= inv
    return m + math.log(s), top


@njit(**INNER)
def hessian_row(Z, U, i, b, vb, x_scale, w, softmax):
    """Z[i] = w p * (u - p . u) in place, p = softmax(x_scale * Z[i] + b) (softmax False: p = Z[i], given)
    and u = x_scale * U[i] + vb: the logits' Hessian of row i's weighted loss times the direction's logits
    u (a Hessian-vector product's row)."""
    if softmax:
        row_softmax(Z, i, b, x_scale)
    p, u, k = Z[i], U[i], Z.shape[1]
    pu = p.dtype.type(0)
    for j in range(k):
        pu += p[j] * (u[j] * x_scale + vb[j])
    for j in range(k):
        p[j] = w * p[j] * (u[j] * x_scale + vb[j] - pu)


@njit(**INNER)
def tile_softmax(z, k, m, lse, top):
    """z[r, :k] = softmax(z[r, :k]) in place for the first m rows of a tile;
    lse[r] gets the row's log-sum-exp and top[r] its argmax. Columns past k
    (a gradient tile's pad) are set to 0.

    Max-subtracted, so logits of magnitude ~1e4 stay finite. A pass at a time
    over the whole tile, not a row at a time: one vectorised exp loop over
    m * z.shape[1] values, and the rows' divisions overlap.
    """
    kp = z.shape[1]
    for r in range(m):
        top[r], lse[r] = argmax(z, r, k)
        for j in range(kp):
            z[r, j] -= lse[r]
    flat = z[:m].reshape(m * kp)
    for i in range(flat.shape[0]):
        flat[i] = exp(flat[i])
    for r in range(m):
        s = z.dtype.type(0)
        for j in range(k):
            s += z[r, j]
        inv = z.dtype.type(1) / s
        for j in range(k):
            z[r, j] *= inv
        for j in range(k, kp):
            z[r, j] = 0
        lse[r] += math.log(s)


@njit(**JIT)
def _permutation(n, half, mask, k0, k1, k2, k3, order):
    """order[i] = the row that position i of the epoch visits (reference/permutation.py); ~7 ns a row."""
    for i in range(order.shape[0]):
        order[i] = permute(np.uint64(i), n, half, mask, k0, k1, k2, k3)


def shuffle(n, seed, epoch):
    """Backend.shuffle: the int64 rows 0..n-1 in epoch `epoch`'s order."""
    order = np.empty(n, np.int64)
    _permutation(*(np.uint64(v) for v in (n, *halves(n), *round_keys(seed, epoch))), order)
    return order
