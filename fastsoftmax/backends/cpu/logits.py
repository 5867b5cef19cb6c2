"""The CPU kernels that start from given logits (or scores): the cross-entropy with its gradient,
and the count of rows whose argmax is their label."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import INNER, JIT, PRANGE, call, entry, njit
from .rows import TILE, argmax, n_parts, part_bounds, tile_softmax

# Up to this many rows, count_correct runs on one thread: an argmax is ~5 ns a
# row, and a parallel launch costs more than 2048 rows (a minibatch: 3x faster).
SERIAL_ROWS = 2048


@njit(**INNER)
def _cross_entropy_part(q, logits, y, dlogits, part_loss):
    """Part q of the rows: dlogits = (softmax(logits) - onehot(y)) / n, part_loss[q] = the rows' loss sum."""
    n, k = logits.shape
    lo, hi = part_bounds(n, q)
    lse = np.empty(TILE, logits.dtype)
    top = np.empty(TILE, np.int64)
    loss = 0.0
    for t in range(lo, hi, TILE):
        m = min(TILE, hi - t)
        g = dlogits[t : t + m]
        for r in range(m):
            for j in range(k):
                g[r, j] = logits[t + r, j]
        tile_softmax(g, k, m, lse, top)
        for r in range(m):
            label = y[t + r]
            loss += lse[r] - logits[t + r, label]
            g[r, label] -= 1
            for j in range(k):
                g[r, j] /= n
    part_loss[q] = loss


@njit(**JIT)
def _count_rows_correct(scores, y, lo, hi):
    """How many of the rows lo..hi-1 have their argmax at y."""
    hits = 0
    for i in range(lo, hi):
        hits += argmax(scores, i, scores.shape[1])[0] == y[i]
    return hits


@njit(parallel=PRANGE, **JIT)
def _softmax_cross_entropy(part, logits, y, dlogits, part_loss):
    for q in prange(n_parts(logits.shape[0])):
        call(part, (np.int64(q), logits, y, dlogits, part_loss))


@njit(parallel=PRANGE, **JIT)
def _count_correct(scores, y, part_hits):
    n = scores.shape[0]
    for q in prange(n_parts(n)):  # a small loop body: compiled in place
        lo, hi = part_bounds(n, np.int64(q))
        part_hits[q] = _count_rows_correct(scores, y, lo, hi)


def softmax_cross_entropy(logits, y):
    dlogits = np.empty_like(logits)
    part_loss = np.empty(n_parts(logits.shape[0]))
    args = (logits, y, dlogits, part_loss)
    _softmax_cross_entropy(entry(_cross_entropy_part, (0, *args), (logits, y)), *args)
    return np.asarray(part_loss.sum() / logits.shape[0], logits.dtype), dlogits


def count_correct(scores, y):
    n = scores.shape[0]
    if n <= SERIAL_ROWS:
        return np.asarray(_count_rows_correct(scores, y, 0, n))
    part_hits = np.empty(n_parts(n), np.int64)
    _count_correct(scores, y, part_hits)
    return np.asarray(part_hits.sum())
