"""The CPU backend's wide-W kernel: one SGD epoch of m models of k classes at once.

A learning-rate and weight-decay sweep trains m models on the same minibatches.
Stacked, their weights are one (k m, d) matrix, so a batch's logits for every
model are one sgemm, x @ W_all^T (rows x k m), and the weight gradients one
more, G^T x: large.py's path with k m classes, on its buffers (Gradient). What
changes is the fused pass between the two (_grouped_softmax_rows_gradient):
each row's k m logits are m softmaxes of k, one per model, each with its own
bias, loss, argmax hits and bias gradient; and the step, where model i takes
its own rate schedules.learning_rate(kind, lrs[i], ...) and decay
weight_decays[i] by large.py's rule (sgd_step). The models are stacked
class-major (row c m + i of W_all is model i's class c) for the epoch, so that
the pass runs every model at once in vector lanes.

Cost: the two sgemm calls are 4 k m d FLOP a row, the arithmetic's floor; the
rest is the batch's gather, a pass over its logits and one over the k m d
weights. Fashion-MNIST's 16 models of 10 classes (batch 256, 2-core EPYC,
NumPy's OpenBLAS): the two sgemm calls ~555 us a step, the rest ~85 us
(gather 16, pass 40, step 14, Python's calls the rest): 1.2x the floor.

Exactness: a model of the sweep matches the same model trained alone within
float rounding, not bitwise. Alone at k < BLAS_MIN_CLASSES (__init__.py) it
runs fused.py's register tiles, which add the products in another order; on
large.py's path it runs sgemm of other shapes, and OpenBLAS picks its kernels
(and with them the order of the sums) by shape and by a column's place in the
product: a column of x @ W^T does not keep its bits when W gains rows, nor do
copies of one model in the stack. What is exact: the sweep is deterministic
(for a fixed OpenBLAS thread count, as large.py), and no model's numbers
depend on the other models' values (checked in tests/test_sweep.py).
"""

from __future__ import annotations

import math

import numpy as np

from .jit import JIT, njit
from .large import Gradient, batches, sgd_step
from .rows import TILE, exp, learning_rate, load_tile


@njit(**JIT)
def _gather(X, rows, lo, hi, out):
    """out[i] = X[rows[lo + i]] in out's dtype for i < hi - lo, by rows.load_tile's tiles, each prefetching the
    next (the batch's rows come in shuffled order: measured 40 -> 16 us for 256 rows of 784 bytes, a
    tenth of the sweep's overhead over its sgemm calls); out holds whole tiles (rows past hi - lo zeroed)."""
    for t in range(lo, hi, TILE):
        load_tile(X, rows, t, hi, out[t - lo : t - lo + TILE])


@njit(**JIT)
def _grouped_softmax_rows_gradient(z, b, x_scale, labels, weights, peak, top, total, db, stats):
    """Logits z (rows, k m) of a chunk, class-major (column c m + i is model i's class c), into
    g = w (softmax(x_scale * z + b) - onehot(label)) per model, in place, w the row's weight (1
    where weights is empty); adds each model's sums of g to db (k m,), and its rows' weighted
    losses and argmax hits to stats[i] (rows in order).

    Class-major, so that every step of a row's m softmaxes is a loop over the m models, which
    LLVM vectorises (16 models: one AVX-512 vector): a model's max, argmax and sum of exps are
    k vector operations, where model-major logits (k = 10 contiguous values a model) leave
    loops too short to vectorise and took 3x longer. peak, top and total (m,) are scratch.
    """
    n = z.shape[0]
    k, m = b.shape
    bias = b.reshape(k * m)
    for r in range(n):
        g, label = z[r], labels[r]
        w = weights[r] if weights.shape[0] else z.dtype.type(1)
        for i in range(m):
            peak[i], top[i] = g[i] * x_scale + bias[i], 0
        for c in range(k):  # the logits, with each model's first maximum (np.argmax's, as rows.argmax)
            for i in range(m):
                v = g[c * m + i] * x_scale + bias[c * m + i]
                g[c * m + i] = v
                better = v > peak[i]
                top[i] = c if better else top[i]
                peak[i] = v if better else peak[i]
        for i in range(m):
            stats[i, 0] -= w * g[label * m + i]  # the loss is log-sum-exp minus the label's logit
            stats[i, 1] += top[i] == label
            total[i] = 0
        for c in range(k):  # max-subtracted: logits of magnitude 1e4 stay finite
            for i in range(m):
                e = exp(g[c * m + i] - peak[i])
                g[c * m + i] = e
                total[i] += e
        for i in range(m):
            stats[i, 0] += w * (peak[i] + math.log(total[i]))
            total[i] = w / total[i]
        for c in range(k):  # g = softmax - onehot, and the bias gradients' sums
            hot = w * g.dtype.type(c == label)
            for i in range(m):
                v = g[c * m + i] * total[i] - hot
                g[c * m + i] = v
                db[c * m + i] += v


@njit(**JIT)
def _grouped_sgd_step(coef, b, dsum, dbsum, coef_scale, inv_n, kind, lrs, weight_decays, total_steps, step):
    """Every model's step, class-major (coef (k, m, d), b (k, m)): model i by large.py's rule with
    its own rate (schedules.learning_rate of lrs[i], rounded once to the compute dtype) and decay."""
    t = coef.dtype.type
    k, m = b.shape
    for i in range(m):
        rate, decay = t(learning_rate(kind, lrs[i], total_steps, step)), t(weight_decays[i])
        for c in range(k):
            sgd_step(coef[c, i : i + 1], b[c, i : i + 1], dsum[c, i : i + 1], dbsum[c, i : i + 1], coef_scale, inv_n,
                      rate, decay)


class _GroupedGradient(Gradient):
    """large.Gradient's per-batch sums for m models stacked class-major, coef (k, m, d) passed as its
    (k m, d) view, on its buffers sized for k m classes; after a call dsum (k m, d), dbsum (k m,) and
    stats (m, 2) hold every model's."""

    def __init__(self, coef, max_rows):
        k, m, d = coef.shape
        super().__init__(coef.reshape(k * m, d), max_rows)
        self.x = np.empty((-(-self.chunk // TILE) * TILE, d), coef.dtype)  # the converted rows, in whole tiles
        self.peak, self.top, self.total = np.empty(m, coef.dtype), np.empty(m, np.int64), np.empty(m, coef.dtype)
        self.stats = np.empty((m, 2))
        self.rows_of = self.tiles

    def tiles(self, X, rows, lo, count):
        """The batch's rows X[rows[lo + i]], i < count, gathered a tile at a time (rows come shuffled)."""
        _gather(X, rows, lo, lo + count, self.x)
        return self.x[:count]

    def finish(self, z, b, x_scale, labels, weights):
        """Each model's k columns of the chunk's logits into its g, its sums into dbsum and stats[i]."""
        _grouped_softmax_rows_gradient(z, b, x_scale, labels, weights, self.peak, self.top, self.total, self.dbsum, self.stats)


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    """Backend.train_epoch_many: per batch, the grouped sums, then each model's step.
    The models train class-major (a copy of coef and b, written back at the end: 2 m k d values
    an epoch against 4 m k d FLOP a row)."""
    n = rows.shape[0]
    t = coef.dtype.type
    lrs, weight_decays = np.asarray(lrs, np.float64), np.asarray(weight_decays, np.float64)
    work, bias = np.ascontiguousarray(coef.transpose(1, 0, 2)), np.ascontiguousarray(b.T)
    sums = _GroupedGradient(work, min(batch_size, n))
    wall = work.reshape(-1, work.shape[2])  # the (k m, d) view the products take
    dsum, dbsum = sums.dsum.reshape(work.shape), sums.dbsum.reshape(bias.shape)
    loss_sum, correct = np.zeros(coef.shape[0]), np.zeros(coef.shape[0], np.int64)
    # A diverging model's inf weights make inf and NaN logits in its own columns: the caller
    # (the SGD loop, solvers/sgd.py) finds it after the epoch, so sgemm's overflow warnings say nothing more.
    with np.errstate(over="ignore", invalid="ignore"):
        for step, nb in batches(X, y, sample_weight, rows, wall, bias, batch_size, x_scale, sums):
            _grouped_sgd_step(work, bias, dsum, dbsum, t(x_scale / nb), t(1) / t(nb), kind, lrs, weight_decays,
                              total_steps, start_step + step)
            loss_sum += sums.stats[:, 0]
            correct += sums.stats[:, 1].astype(np.int64)
    coef[...] = work.transpose(1, 0, 2)
    b[...] = bias.T
    return loss_sum, correct
