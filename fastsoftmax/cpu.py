"""Numba CPU kernels: the backend for NumPy arrays (contract in backend.py).

The weights are held transposed, ``coef`` (k, d) C-contiguous, so that each
class's logit is a contiguous dot product over the d features of one row, and
each gradient row is a contiguous axpy: both are inner loops LLVM turns into
SIMD code. X stays in its own dtype (uint8 pixels are read as bytes), and
``x_scale`` is applied once per logit rather than once per pixel.

Rows are split into at most MAX_PARTS contiguous parts that run in parallel;
the parts' partial sums are added in part order, so a result depends on the
input alone, never on the thread count or on scheduling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Reassociation lets LLVM vectorise the dot-product sums; no 'nnan'/'ninf', so
# a NaN or inf in the input still shows in the output rather than vanishing.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
_JIT = dict(cache=True, fastmath=_FASTMATH, nogil=True)

# 64 rows keep a part's work (~1 MFLOP) far above the cost of a parallel
# launch; 16 parts bound the partial-gradient buffers at 16 * k * d values.
ROWS_PER_PART = 64
MAX_PARTS = 16


def n_parts(n_rows: int) -> int:
    return max(1, min(MAX_PARTS, math.ceil(n_rows / ROWS_PER_PART)))


@njit(inline="always", **_JIT)
def _row_logits(x, coef, b, x_scale, z):
    """z = x_scale * coef @ x + b for one row x of d features."""
    k, d = coef.shape
    for j in range(k):
        s = coef.dtype.type(0)
        for p in range(d):
            s += x[p] * coef[j, p]
        z[j] = s * x_scale + b[j]


@njit(inline="always", **_JIT)
def _argmax(z):
    """Index of the first maximum, as np.argmax."""
    top = 0
    for j in range(1, z.shape[0]):
        if z[j] > z[top]:
            top = j
    return top


@njit(inline="always", **_JIT)
def _log_sum_exp(z):
    """(log(sum(exp(z))), argmax z): max-subtracted, so |z| ~ 1e4 stays finite."""
    top = _argmax(z)
    m = z[top]
    s = z.dtype.type(0)
    for j in range(z.shape[0]):
        s += math.exp(z[j] - m)
    return m + math.log(s), top


@njit(inline="always", **_JIT)
def _part_bounds(n, parts, q):
    return n * q // parts, n * (q + 1) // parts


@njit(parallel=True, **_JIT)
def _linear_softmax(X, coef, b, x_scale, P):
    n = X.shape[0]
    parts = min(MAX_PARTS, max(1, (n + ROWS_PER_PART - 1) // ROWS_PER_PART))
    for q in prange(parts):
        lo, hi = _part_bounds(n, parts, q)
        for i in range(lo, hi):
            z = P[i]
            _row_logits(X[i], coef, b, x_scale, z)
            lse, _ = _log_sum_exp(z)
            for j in range(z.shape[0]):
                z[j] = math.exp(z[j] - lse)


@njit(parallel=True, **_JIT)
def _softmax_cross_entropy(logits, y, dlogits, part_loss):
    n, k = logits.shape
    parts = part_loss.shape[0]
    for q in prange(parts):
        lo, hi = _part_bounds(n, parts, q)
        loss = 0.0
        for i in range(lo, hi):
            z = logits[i]
            lse, _ = _log_sum_exp(z)
            loss += lse - z[y[i]]
            for j in range(k):
                dlogits[i, j] = math.exp(z[j] - lse) / n
            dlogits[i, y[i]] -= 1.0 / n
        part_loss[q] = loss


@njit(parallel=True, **_JIT)
def _count_correct(scores, y, part_hits):
    n = scores.shape[0]
    parts = part_hits.shape[0]
    for q in prange(parts):
        lo, hi = _part_bounds(n, parts, q)
        hits = 0
        for i in range(lo, hi):
            hits += _argmax(scores[i]) == y[i]
        part_hits[q] = hits


@njit(inline="always", **_JIT)
def _part_gradients(X, rows, y, coef, b, x_scale, dcoef, db):
    """Unscaled gradient sums of the rows X[rows]; returns (loss sum, argmax hits).

    Per row: g = softmax(z) - onehot(y); dcoef += g x^T, db += g. The caller
    multiplies by x_scale / n (dcoef) and 1 / n (db) when it adds the parts.
    """
    k, d = coef.shape
    dcoef[:] = 0
    db[:] = 0
    z = np.empty(k, coef.dtype)
    loss = 0.0
    hits = 0
    for i in rows:
        x = X[i]
        _row_logits(x, coef, b, x_scale, z)
        lse, top = _log_sum_exp(z)
        loss += lse - z[y[i]]
        hits += top == y[i]
        for j in range(k):
            g = math.exp(z[j] - lse) - (j == y[i])
            db[j] += g
            for p in range(d):
                dcoef[j, p] += g * x[p]
    return loss, hits


@njit(parallel=True, **_JIT)
def _batch_gradients(X, rows, y, coef, b, x_scale, part_dcoef, part_db, part_loss, part_hits):
    n = rows.shape[0]
    parts = part_loss.shape[0]
    for q in prange(parts):
        lo, hi = _part_bounds(n, parts, q)
        part_loss[q], part_hits[q] = _part_gradients(
            X, rows[lo:hi], y, coef, b, x_scale, part_dcoef[q], part_db[q]
        )


@njit(**_JIT)
def _sum_parts(part_dcoef, part_db, parts, coef_scale, b_scale, dcoef, db):
    """Add the first `parts` partial sums in part order, then scale them."""
    dcoef[:] = part_dcoef[0]
    db[:] = part_db[0]
    for q in range(1, parts):
        dcoef += part_dcoef[q]
        db += part_db[q]
    dcoef *= coef_scale
    db *= b_scale


# parallel=True here too: a cached function that calls a parallel one must
# itself start Numba's thread pool, or the call crashes on a cache load.
@njit(parallel=True, **_JIT)
def _train_epoch(X, y, order, coef, b, lrs, batch_size, x_scale, weight_decay, part_dcoef, part_db):
    n = order.shape[0]
    dcoef = np.empty_like(coef)
    db = np.empty_like(b)
    loss_sum = 0.0
    correct = 0
    for step in range((n + batch_size - 1) // batch_size):
        rows = order[step * batch_size : min(n, (step + 1) * batch_size)]
        m = rows.shape[0]
        parts = min(MAX_PARTS, max(1, (m + ROWS_PER_PART - 1) // ROWS_PER_PART))
        part_loss = np.empty(parts)
        part_hits = np.empty(parts, np.int64)
        _batch_gradients(X, rows, y, coef, b, x_scale, part_dcoef, part_db, part_loss, part_hits)
        _sum_parts(part_dcoef, part_db, parts, x_scale / m, 1.0 / m, dcoef, db)
        lr = lrs[step]
        coef -= lr * (dcoef + weight_decay * coef)
        b -= lr * db
        loss_sum += part_loss.sum()
        correct += part_hits.sum()
    return loss_sum, correct


def _part_buffers(n, coef):
    parts = n_parts(n)
    k, d = coef.shape
    return np.empty((parts, k, d), coef.dtype), np.empty((parts, k), coef.dtype)


# ---- the backend contract (see backend.py) ----


def linear_softmax(X, coef, b, x_scale):
    P = np.empty((X.shape[0], coef.shape[0]), coef.dtype)
    _linear_softmax(X, coef, b, coef.dtype.type(x_scale), P)
    return P


def softmax_cross_entropy(logits, y):
    dlogits = np.empty_like(logits)
    part_loss = np.empty(n_parts(logits.shape[0]))
    _softmax_cross_entropy(logits, y, dlogits, part_loss)
    return np.asarray(part_loss.sum() / logits.shape[0], logits.dtype), dlogits


def linear_softmax_cross_entropy(X, coef, b, y, x_scale):
    n = X.shape[0]
    part_dcoef, part_db = _part_buffers(n, coef)
    part_loss = np.empty(part_db.shape[0])
    part_hits = np.empty(part_db.shape[0], np.int64)
    x_scale = coef.dtype.type(x_scale)
    rows = np.arange(n)
    _batch_gradients(X, rows, y, coef, b, x_scale, part_dcoef, part_db, part_loss, part_hits)
    dcoef, db = np.empty_like(coef), np.empty_like(b)
    _sum_parts(part_dcoef, part_db, part_db.shape[0], x_scale / n, 1.0 / n, dcoef, db)
    loss = np.asarray(part_loss.sum() / n, coef.dtype)
    return loss, np.asarray(part_hits.sum()), dcoef, db


def count_correct(scores, y):
    part_hits = np.empty(n_parts(scores.shape[0]), np.int64)
    _count_correct(scores, y, part_hits)
    return np.asarray(part_hits.sum())


def train_epoch(X, y, order, coef, b, lrs, batch_size, x_scale, weight_decay):
    part_dcoef, part_db = _part_buffers(min(batch_size, X.shape[0]), coef)
    loss_sum, correct = _train_epoch(
        X, y, order, coef, b, np.asarray(lrs, coef.dtype), batch_size,
        coef.dtype.type(x_scale), coef.dtype.type(weight_decay), part_dcoef, part_db,
    )
    return np.asarray(loss_sum), np.asarray(correct)
