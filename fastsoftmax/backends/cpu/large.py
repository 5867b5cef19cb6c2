"""The CPU backend's large-shape path (many classes): the two matmuls on NumPy's sgemm, the rest fused in Numba.

The register-tiled kernels of fused.py read X once and never write logits, but
past a few dozen classes their ~85 GFLOP/s fall behind the machine's sgemm
(OpenBLAS, which NumPy ships: ~200 GFLOP/s on the 2-core EPYC). Here, as in
the CUDA twin (backends/cuda/large.py) and the Liger-Kernel pattern, rows go
in chunks of at most ``chunk_rows(k, d)``: per chunk, sgemm writes the logits z = x @ W^T,
one fused Numba pass (_softmax_rows_gradient) turns them in place into
g = softmax(x_scale * z + b) - onehot(y) with the chunk's loss, argmax hits and
bias-gradient sums, and sgemm adds g^T x to the weight gradient. The (n, k)
logits of the whole input never exist at once: the extra memory is
O(chunk x (k + d) + k x d), whatever n is; uint8 X is converted a chunk at a
time (rows.gather_rows), never as a whole.

Threads: sgemm runs on OpenBLAS's own pool (one thread per core by default,
OPENBLAS_NUM_THREADS); the Numba passes here are serial, on the calling
thread. Measured: with Numba's OpenMP pool in parallel passes between the
sgemm calls, the two pools spun against each other on the 2 cores and a
chunk took up to 10x longer; the passes are a few % of the work (k exps a
row against 4 k d FLOP), so one thread does them. Determinism: every sum runs
in a fixed order (chunks in order; a chunk's parts added in part order, their
bounds depending on the row count alone, as in fused.py), and OpenBLAS's
sgemm with a fixed thread count gives the same bits for the same shapes,
which is what this path relies on: same input, same thread count, same bits.
"""

from __future__ import annotations

import numpy as np

from .jit import JIT, njit
from .rows import (
    gather_rows,
    learning_rate,
    n_parts,
    part_bounds,
    row_softmax,
    unweighted,
)

# Elements of a chunk's logits (rows x k) or converted rows (rows x d): 4 MB in
# float32, so a chunk's logits stay in the 2 cores' caches between the sgemm
# that writes them and the pass that reads them (512 rows at k = 1000, d = 2048,
# still enough rows for sgemm's full rate).
CHUNK_ELEMENTS = 1 << 20


def chunk_rows(k: int, d: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(k, d))


@njit(**JIT)
def _softmax_rows(z, b, x_scale):
    """z[i] = softmax(x_scale * z[i] + b) in place."""
    n = z.shape[0]
    for q in range(n_parts(n)):
        lo, hi = part_bounds(n, q)
        for i in range(lo, hi):
            row_softmax(z, i, b, x_scale)


@njit(**JIT)
def _softmax_rows_gradient(z, b, x_scale, labels, weights, part_db, part_loss, part_hits):
    """Logits z (rows, k) of a chunk into g = w (softmax(x_scale * z + b) - onehot(labels)), in place,
    w the row's weight (1 where weights is empty); per part: the sums of g (part_db), of the rows'
    weighted losses and of their argmax hits."""
    n = z.shape[0]
    for q in range(n_parts(n)):
        lo, hi = part_bounds(n, q)
        db = part_db[q]
        db[:] = 0
        loss = 0.0
        hits = 0
        for i in range(lo, hi):
            g, label = z[i], labels[i]
            w = weights[i] if weights.shape[0] else z.dtype.type(1)
            logit = g[label] * x_scale + b[label]
            lse, top = row_softmax(z, i, b, x_scale)
            loss += w * (lse - logit)
            hits += top == label
            g[label] -= 1
            for j in range(g.shape[0]):
                g[j] *= w
                db[j] += g[j]
        part_loss[q], part_hits[q] = loss, hits


@njit(**JIT)
def _add_parts(part_db, part_loss, part_hits, parts, db, stats):
    """db += the parts' bias sums, stats += (loss sum, hits), added in part order."""
    for q in range(parts):
        for j in range(db.shape[0]):
            db[j] += part_db[q, j]
        stats[0] += part_loss[q]
        stats[1] += part_hits[q]


@njit(**JIT)
def sgd_step(coef, b, dsum, dbsum, coef_scale, inv_n, rate, weight_decay):
    """coef -= rate * (coef_scale * dsum + weight_decay * coef), b -= rate * dbsum * inv_n: the
    fused path's rule (fused._class_mean), a class per task."""
    for j in range(coef.shape[0]):
        w, g = coef[j], dsum[j]
        for p in range(w.shape[0]):
            w[p] -= rate * (g[p] * coef_scale + weight_decay * w[p])
        b[j] -= rate * (dbsum[j] * inv_n)


class ChunkRows:
    """Rows lo..lo+count of a batch in the compute dtype t: a view of X where it is already of t and
    in order, else gathered and converted into one buffer of up to `chunk` rows, made on first need."""

    def __init__(self, t, chunk):
        self.t, self.chunk, self.x = t, chunk, None

    def __call__(self, X, rows, lo, count):
        """X[rows[lo + i]] (or X[lo + i] where rows is None) for i < count."""
        if rows is None and X.dtype == self.t:
            return X[lo : lo + count]
        if self.x is None:
            self.x = np.empty((self.chunk, X.shape[1]), self.t)
        out = self.x[:count]
        if rows is None:
            gather_rows(X, np.arange(lo, lo + count), 0, out)
        else:
            gather_rows(X, rows, lo, out)
        return out


class Gradient:
    """The unscaled gradient sums of a batch of up to max_rows rows, and their buffers:
    dsum = sum of g x^T (k, d), dbsum = sum of g (k,), stats = (loss sum, hits)."""

    def __init__(self, coef, max_rows):
        k, d = coef.shape
        t = coef.dtype
        self.chunk = max(1, min(chunk_rows(k, d), max_rows))
        self.rows_of = ChunkRows(t, self.chunk)
        self.logits = np.empty((self.chunk, k), t)
        parts = n_parts(self.chunk)
        self.part_db, self.part_loss = np.empty((parts, k), t), np.empty(parts)
        self.part_hits = np.empty(parts, np.int64)
        self.dsum, self.dbsum, self.stats = np.empty((k, d), t), np.empty(k, t), np.empty(2)
        self.scratch = None  # a second (k, d) for batches of several chunks

    def __call__(self, X, rows, nrows, y, sw, coef, b, x_scale):
        """The sums over rows 0..nrows-1 of the batch (X[rows[i]], or X[i] where rows is None), each
        row's terms times its weight in sw (None: 1): per chunk, its rows in the compute dtype, their
        logits by sgemm, the fused pass, the products."""
        self.dbsum[:] = 0
        self.stats[:] = 0
        for lo in range(0, nrows, self.chunk):
            count = min(self.chunk, nrows - lo)
            x = self.rows_of(X, rows, lo, count)
            z = self.logits[:count]
            np.matmul(x, coef.T, out=z)
            at = slice(lo, lo + count) if rows is None else rows[lo : lo + count]
            self.finish(z, b, x_scale, y[at], unweighted(z.dtype) if sw is None else sw[at])
            self.add_products(z, x, lo == 0)

    def finish(self, z, b, x_scale, labels, weights):
        """A chunk's logits z into g = w (softmax(x_scale * z + b) - onehot(labels)), in place; its bias
        gradient, loss and hits added to dbsum and stats."""
        _softmax_rows_gradient(z, b, x_scale, labels, weights, self.part_db, self.part_loss, self.part_hits)
        _add_parts(self.part_db, self.part_loss, self.part_hits, n_parts(z.shape[0]), self.dbsum, self.stats)

    def add_products(self, g, x, first):
        """dsum (+)= g.T @ x: the chunk's gradient sums, set by the batch's first chunk."""
        if first:
            np.matmul(g.T, x, out=self.dsum)
            return
        if self.scratch is None:
            self.scratch = np.empty_like(self.dsum)
        np.matmul(g.T, x, out=self.scratch)
        self.dsum += self.scratch


def _by_chunks(X, coef, finish):
    """The (n, k) matrix whose rows are finish(z) of the chunks' logits z = x @ coef.T, computed by
    sgemm straight into it, chunk by chunk (uint8 X converted a chunk at a time)."""
    n, d = X.shape
    k, t = coef.shape[0], coef.dtype
    out = np.empty((n, k), t)
    chunk = min(chunk_rows(k, d), n)
    rows_of = ChunkRows(t, chunk)
    for lo in range(0, n, chunk):
        count = min(chunk, n - lo)
        z = out[lo : lo + count]
        np.matmul(rows_of(X, None, lo, count), coef.T, out=z)
        finish(z)
    return out


def linear_softmax(X, coef, b, x_scale):
    scale = coef.dtype.type(x_scale)
    return _by_chunks(X, coef, lambda z: _softmax_rows(z, b, scale))


def linear_logits(X, coef, b, x_scale):
    """Backend.linear_logits, on any shape: x_scale * X @ coef.T + b by chunks of rows."""
    scale = coef.dtype.type(x_scale)

    def affine(z):
        z *= scale
        z += b

    return _by_chunks(X, coef, affine)


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    n = X.shape[0]
    t = coef.dtype.type
    sums = Gradient(coef, n)
    sums(X, None, n, y, sample_weight, coef, b, t(x_scale))
    dcoef = sums.dsum
    dcoef *= t(x_scale / n)  # as fused._class_mean: the sum times x_scale / n rounded once
    return (np.asarray(sums.stats[0] / n, coef.dtype), np.asarray(int(sums.stats[1])), dcoef,
            sums.dbsum / t(n))


def batches(X, y, sw, rows, coef, b, batch_size, x_scale, sums):
    """The batches rows[s * batch_size : (s + 1) * batch_size] in order: (s, the batch's row count),
    each once sums (a Gradient) holds the batch's sums, for the caller to step."""
    for s, first in enumerate(range(0, rows.shape[0], batch_size)):
        batch = rows[first : first + batch_size]
        sums(X, batch, batch.shape[0], y, sw, coef, b, coef.dtype.type(x_scale))
        yield s, batch.shape[0]


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight):
    """Backend.train_epoch on this path: per batch, Gradient's sums, then sgd_step."""
    t = coef.dtype.type
    sums = Gradient(coef, min(batch_size, rows.shape[0]))
    loss_sum, correct = 0.0, 0
    for step, m in batches(X, y, sample_weight, rows, coef, b, batch_size, x_scale, sums):
        rate = t(learning_rate(kind, lr, total_steps, start_step + step))
        sgd_step(coef, b, sums.dsum, sums.dbsum, t(x_scale / m), t(1) / t(m), rate, t(weight_decay))
        loss_sum += sums.stats[0]
        correct += int(sums.stats[1])
    return np.asarray(loss_sum), np.asarray(correct)
