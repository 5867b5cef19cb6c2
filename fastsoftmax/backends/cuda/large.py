"""The CUDA backend's large-shape path, where W does not fit in a block's shared memory.

fused.py keeps W (k x d) in shared memory, so it stops at about 58 000
weights (linear_softmax, fp32) or 28 000 (training, which also holds dW).
Beyond that the matmuls go to cuBLAS (cupy.matmul), which tiles W through
shared memory itself, and what is fused is the rest: one pass over each chunk
of logits (kernels/softmax_rows.cu) takes x_scale, the bias, the softmax, the
loss, the argmax and g = w (softmax - onehot) (w the row's sample weight, 1
without weights), in place, and one launch takes the
SGD step (sgd_step_many, kernels/sweep.cu: the same step for a sweep's m
models, sweep.py, and for one model here). Rows go in chunks of at most
chunk_rows(k, d), so the extra memory is O(chunk x k + chunk x d + k x d),
never n x k (uint8 X is converted a chunk at a time). The CPU twin is
backends/cpu/large.py.

Expected cost at k = 1000, d = 2048, fp32, on an H100 (NOT measured: no GPU
has run it): per row the two GEMMs (logits, then dW = G^T X) are 2 x 2kd =
8.2 MFLOP, 0.16 us at cuBLAS's ~50 TFLOP/s FP32; the chunk pass moves ~24 KB
per row (the GEMM writes 4 KB of logits, softmax_rows reads them twice and
writes G, the dW GEMM and db read G) plus 16 KB of fp32 X (read by both
GEMMs), ~13 ns at ~3 TB/s. So ~0.18 us a row, ~11 ms an epoch of 60 000
rows: GEMM bound, as PyTorch's cuBLAS + cross_entropy step is, which also
writes and reads the (batch, k) logits and log-probabilities several times.
At batch 256 a step is ~45 us of GEMM against ~8 launches (the gather, the
two GEMMs, softmax_rows, two sums, the step).
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import ROWS_PER_WARP_BLOCK, THREADS, template_id
from . import compile as nvrtc
from .rows import rows_grid, rows_of

# Elements of a chunk's logits (rows x k) or converted X (rows x d): 16 MB in
# fp32, enough rows (2048 at k = 1000, d = 2048) for cuBLAS to fill an H100.
CHUNK_ELEMENTS = 1 << 22


def chunk_rows(k: int, d: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(k, d))


def _by_chunks(X, coef, finish):
    """The (n, k) matrix whose rows are finish(z, count) of the chunks' logits z = x @ coef.T, computed by
    cuBLAS straight into it, chunk by chunk (uint8 X converted a chunk at a time)."""
    n, d = X.shape
    k, t = coef.shape[0], coef.dtype
    out = cp.empty((n, k), t)
    chunk = min(chunk_rows(k, d), n)
    buffer = None if X.dtype == t else cp.empty((chunk, d), t)
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        z = out[first : first + count]
        cp.matmul(rows_of(X, None, first, count, buffer), coef.T, out=z)
        finish(z, count)
    return out


def linear_softmax(X, coef, b, x_scale):
    t, k = coef.dtype, coef.shape[0]
    kernel = nvrtc.kernel("softmax_rows", template_id("softmax_rows", t))

    def softmax(z, count):
        kernel((rows_grid(count),), (THREADS,), (z, b, t.type(x_scale), np.int32(k), np.int32(count)))

    return _by_chunks(X, coef, softmax)


def linear_logits(X, coef, b, x_scale):
    """Backend.linear_logits, on any shape: x_scale * X @ coef.T + b by chunks of rows."""
    scale = coef.dtype.type(x_scale)

    def affine(z, count):
        z *= scale
        z += b

    return _by_chunks(X, coef, affine)


class Gradient:
    """The unscaled gradient sums of a batch of up to `max_rows` rows on the
    large-shape path, and its buffers: dcoef = sum of g x^T (k, d), db = sum
    of g (k), stats = (loss sum, argmax hits), g = w (softmax - onehot) and the
    loss sum sum(w loss) for the rows' sample weights w (1 without weights;
    the hits are not weighted). Every sum runs in a fixed order
    (chunks in order, cuBLAS and CuPy reductions of fixed shapes), so a batch
    always gives the same bits. groups > 1: coef stacks that many models of
    k / groups classes (a sweep, sweep.py), each with its own softmax;
    stats then holds each model's (loss sum, hits) in turn."""

    def __init__(self, X, coef, max_rows: int, groups: int = 1):
        k, d = coef.shape
        t = coef.dtype
        self.k, self.t, self.groups = k, t, groups
        self.chunk = max(1, min(chunk_rows(k, d), max_rows))
        self.logits = cp.empty((self.chunk, k), t)
        self.x = None if X.dtype == t else cp.empty((self.chunk, d), t)
        # each warp's (loss, hits) per model
        self.part = cp.empty((rows_grid(self.chunk) * ROWS_PER_WARP_BLOCK, 2 * groups), t)
        self.dcoef, self.db, self.stats = cp.empty((k, d), t), cp.empty(k, t), cp.empty(2 * groups, t)
        self.kernel = nvrtc.kernel("softmax_rows", template_id("softmax_rows_gradient", t))

    def __call__(self, X, rows, first, nrows, y, sample_weight, coef, b, x_scale):
        """Sums over rows first..first+nrows of the batch (rows[first + i] of X, or first + i when rows is None);
        sample_weight None or indexed by X's row, as y."""
        for i, lo in enumerate(range(first, first + nrows, self.chunk)):
            count = min(self.chunk, first + nrows - lo)
            x = rows_of(X, rows, lo, count, self.x)
            z = self.logits[:count]
            cp.matmul(x, coef.T, out=z)
            grid = rows_grid(count)
            self.kernel(
                (grid,),
                (THREADS,),
                (z, b, self.t.type(x_scale), np.int32(self.k // self.groups), np.int32(self.groups), np.int32(count),
                 nvrtc.pointer(rows), np.int64(lo), y, nvrtc.pointer(sample_weight), self.part),
            )
            part = self.part[: grid * ROWS_PER_WARP_BLOCK]
            if i == 0:
                cp.matmul(z.T, x, out=self.dcoef)
                cp.sum(z, axis=0, out=self.db)
                cp.sum(part, axis=0, out=self.stats)
            else:
                self.dcoef += cp.matmul(z.T, x)
                self.db += z.sum(axis=0)
                self.stats += part.sum(axis=0)


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    n = X.shape[0]
    t = coef.dtype.type
    sums = Gradient(X, coef, n)
    sums(X, None, 0, n, y, sample_weight, coef, b, x_scale)
    inv_n = t(1) / t(n)
    dcoef = sums.dcoef * t(x_scale) * inv_n  # as reduce_partials: x_scale * sum * (1 / n)
    return sums.stats[0] * inv_n, sums.stats[1].astype(cp.int64), dcoef, sums.db * inv_n


class Step:
    """Step s of an epoch for m models stacked as (m k, d), from a batch's sums (kernels/sweep.cu's
    sgd_step_many): model i by reduce_partials' rule at the rate schedules.learning_rate(kind,
    lrs[i], total_steps, start_step + s) and decay weight_decays[i] (host sequences of m floats);
    each model's batch loss sum and hits are added to loss[i] and correct[i]."""

    def __init__(self, coef, m, lrs, weight_decays, kind, total_steps, start_step):
        t = coef.dtype
        self.m, self.k, self.d = m, coef.shape[0] // m, coef.shape[1]
        self.kind, self.total_steps, self.start_step = kind, total_steps, start_step
        self.lrs, self.weight_decays = cp.asarray(lrs, dtype=cp.float64), cp.asarray(weight_decays, dtype=cp.float64)
        self.kernel = nvrtc.kernel("sweep", template_id("sgd_step_many", t))
        self.grid = min(-(-(coef.size + m * self.k + m) // THREADS), nvrtc.max_blocks())
        self.loss, self.correct = cp.zeros(m, t), cp.zeros(m, cp.int64)

    def __call__(self, coef, b, sums, s, nrows, x_scale):
        t = coef.dtype.type
        self.kernel(
            (self.grid,),
            (THREADS,),
            (coef, b, sums.dcoef, sums.db, sums.stats, self.lrs, self.weight_decays, np.int32(self.kind),
             np.int64(self.total_steps), np.int64(self.start_step + s), np.int32(self.m), np.int32(self.k),
             np.int32(self.d), np.int32(nrows), t(x_scale), self.loss, self.correct),
            shared_mem=2 * self.m * coef.itemsize,
        )


def train_epochs(X, y, rows, coef, b, batch_size, x_scale, sample_weight, step):
    """The batches of X[rows] in order, for the models stacked in coef (m k, d) and b (m k,): per batch,
    Gradient's sums for all of them, then one launch of step (a Step) for all of them."""
    n = rows.shape[0]
    sums = Gradient(X, coef, min(batch_size, n), groups=step.m)
    for s, first in enumerate(range(0, n, batch_size)):
        nrows = min(batch_size, n - first)
        sums(X, rows, first, nrows, y, sample_weight, coef, b, x_scale)
        step(coef, b, sums, s, nrows, x_scale)
    return step.loss, step.correct


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight):
    """Backend.train_epoch on this path: the step of one model, coef -= rate * (dcoef + weight_decay * coef),
    b -= rate * db, the rate of step start_step + s computed on the device in float64 and rounded once."""
    step = Step(coef, 1, [lr], [weight_decay], kind, total_steps, start_step)
    loss, correct = train_epochs(X, y, rows, coef, b, batch_size, x_scale, sample_weight, step)
    return loss.reshape(()), correct.reshape(())
