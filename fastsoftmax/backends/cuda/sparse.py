"""The CUDA backend's sparse path: the kernels for a CSR X (arrays.CSR of CuPy arrays), never densified.

The twin of backends/cpu/sparse.py (same functions); the CUDA sources are
kernels/sparse.cu, whose header says what each launch does.

Layout: a row's logits are a sum over its non-zeros of value * W[feature, :],
so the kernels hold the weights as V (d, k) row-major (a sweep's m models side
by side, (d, m k)): a feature's weights are one run of memory, which a warp's
lanes read and update coalesced. The contract hands coef (k, d), so every
call transposes it once, O(d k) against the call's O(nnz k), and an epoch
writes V back into coef, in place, at its end (O(d k) again).

Memory: linear_softmax and linear_logits write only the (n, k) result they
return. A gradient goes through chunks of at most chunk_rows(k) rows: O(chunk
k) for the chunk's g = w (softmax - onehot), O(d k) for the gradient itself.
An SGD step holds its batch's g, O(batch k); a batch larger than a chunk goes
by chunks too, into a deferred step's dV (O(chunk k + d k)).

The SGD step touches only the features its batch has. Weight decay, which
shrinks every weight each step, is applied lazily: W = s V per model, with a
float64 scale s that the host keeps. Every learning rate is known on the host
(schedules.learning_rate), so before the epoch's first launch _plan works out
each step's numbers: the decay is s *= 1 - rate * weight_decay, the forward
multiplies a row's sums by x_scale * s, and the batch's gradient goes into V
divided by s. Where s would fall below RESCALE (which includes a step whose
1 - rate * weight_decay is tiny or <= 0, one that all but zeroes W), V is
multiplied by it at once (one O(d k) pass, rare) and s = 1. The bias is not
decayed. So a step costs O(nnz of the batch x k), never O(d k): three
launches (sparse_rows_gradient, sparse_scatter, add_column_sums), plus the
fold's multiply where one falls, plus sparse_apply for a batch of several
chunks. The plan crosses to the device in one copy an epoch; after it the
epoch is launches only, without a synchronisation, and the loss sums and
hits stay on the device.

Reproducibility: unlike the dense paths, the scatter adds with atomicAdd (rows
sharing a feature add at once), so on a GPU the last bits of W may differ
from run to run; the loss, the hits and the bias are summed in a fixed order.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import ROWS_PER_WARP_BLOCK, THREADS, template_id
from ...reference.schedules import learning_rate
from . import compile as nvrtc
from .hessian import HessianRows
from .rows import rows_grid

# Elements of a chunk's g (rows x k): 16 MB in fp32, as large.py's chunks.
CHUNK_ELEMENTS = 1 << 22
# V is folded into W = s V when the lazy decay's scale s falls below this: V's
# entries (W / s) stay far inside float32's range (the CPU twin's threshold).
RESCALE = 1e-6


def chunk_rows(width: int) -> int:
    return max(1, CHUNK_ELEMENTS // width)


def _kernel(name: str, *params):
    return nvrtc.kernel("sparse", template_id(name, *params))


def _transposed(coef):
    """V (d, k) C-contiguous from coef (k, d): one O(d k) copy per call."""
    return cp.ascontiguousarray(coef.T)


def _logits(X, coef):
    """The unscaled (n, k) logits X @ coef.T, without the bias."""
    n, k = X.shape[0], coef.shape[0]
    z = cp.empty((n, k), coef.dtype)
    _kernel("sparse_logits", coef.dtype, X.indices.dtype)(
        (rows_grid(n),), (THREADS,), (X.data, X.indices, X.indptr, np.int64(n), _transposed(coef), np.int32(k), z)
    )
    return z


def linear_softmax(X, coef, b, x_scale):
    """Backend.linear_softmax: the logits, then large.py's softmax_rows in place (x_scale and b as it reads them)."""
    t, (n, k) = coef.dtype, (X.shape[0], coef.shape[0])
    z = _logits(X, coef)
    nvrtc.kernel("softmax_rows", template_id("softmax_rows", t))(
        (rows_grid(n),), (THREADS,), (z, b, t.type(x_scale), np.int32(k), np.int32(n))
    )
    return z


def linear_logits(X, coef, b, x_scale):
    z = _logits(X, coef)
    z *= coef.dtype.type(x_scale)
    z += b
    return z


class Chunks:
    """kernels/sparse.cu's launches over chunks of rows, for `groups` models of k classes stacked in
    V (d, groups k), and their buffers: a chunk's g (chunk, groups k), each warp's (loss, hits) sums
    per model, and the per-model loss and hit accumulators (loss, hits) that every chunk adds to."""

    def __init__(self, X, t, k: int, groups: int, max_rows: int):
        self.k, self.groups, self.width = k, groups, k * groups
        self.chunk = max(1, min(chunk_rows(self.width), max_rows))
        self.g = cp.empty((self.chunk, self.width), t)
        self.part = cp.empty((rows_grid(self.chunk) * ROWS_PER_WARP_BLOCK, groups, 2), t)
        self.loss, self.hits = cp.zeros(groups, t), cp.zeros(groups, cp.int64)
        i = X.indices.dtype
        names = ("sparse_rows_gradient", "sparse_scatter", "sparse_apply")
        self.kernels = {name: _kernel(name, t, i) for name in names}
        self.sums = _kernel("add_column_sums", t)

    def __call__(self, X, rows, first, count, y, sample_weight, V, b, plan, target_V, target_b, between=None):
        """Rows first..first+count of the order `rows` (None: X's own rows) at the weights (plan's scale times)
        V and b: their gradient scattered into target_V and their column sums into target_b, each times
        plan's coefficient; between() runs after the logits are taken and before the scatter."""
        grid, k, groups = rows_grid(count), np.int32(self.k), np.int32(self.groups)
        chunk = (X.data, X.indices, X.indptr, nvrtc.pointer(rows), np.int64(first), np.int32(count))
        self.kernels["sparse_rows_gradient"](
            (grid,), (THREADS,), (*chunk, y, nvrtc.pointer(sample_weight), V, b, plan, k, groups, self.g, self.part)
        )
        if between is not None:
            between()
        self.kernels["sparse_scatter"]((grid,), (THREADS,), (*chunk, self.g, plan, k, groups, target_V))
        self.sums(
            (min(-(-(self.width + self.groups) // THREADS), nvrtc.max_blocks()),),
            (THREADS,),
            (self.g, np.int32(count), plan, k, groups, self.part, np.int32(grid * ROWS_PER_WARP_BLOCK), target_b,
             self.loss, self.hits),
        )

    def apply(self, X, rows, first, count, dV, V, db, b):
        """The deferred step of a batch of several chunks: V += dV on the batch's features, b += db, both zeroed."""
        self.kernels["sparse_apply"](
            (rows_grid(count),),
            (THREADS,),
            (X.indices, X.indptr, nvrtc.pointer(rows), np.int64(first), np.int32(count), np.int32(self.width), dV, V,
             db, b),
        )


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    """Backend.linear_softmax_cross_entropy by chunks of rows: dV (d, k) and db gather x_scale / n and 1 / n
    times each chunk's scatter and column sums, so they are the gradient at the end; O(chunk k + d k)."""
    (n, d), k, t = X.shape, coef.shape[0], coef.dtype
    plan = cp.asarray(np.array([x_scale, x_scale / n, 1.0 / n], t))
    dV, db = cp.zeros((d, k), t), cp.zeros(k, t)
    chunks = Chunks(X, t, k, 1, n)
    V = _transposed(coef)
    for first in range(0, n, chunks.chunk):
        chunks(X, None, first, min(chunks.chunk, n - first), y, sample_weight, V, b, plan, dV, db)
    return chunks.loss.reshape(()) / t.type(n), chunks.hits.reshape(()), cp.ascontiguousarray(dV.T), db


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    """Backend.linear_softmax_hessian_product on a CSR X by chunks of rows (hessian.py's formula): a chunk's
    logits at W and along the direction side by side from its non-zeros (sparse_logits at [V | the
    direction's], (d, 2k); the direction's alone where P, the softmax at W, is given),
    hessian.HessianRows' r, scattered into hV times x_scale / n (sparse_scatter) and summed by columns for
    the bias; O(chunk k + d k) beyond X."""
    (n, d), k, t = X.shape, coef.shape[0], coef.dtype
    width = 2 * k if P is None else k
    both = _transposed(cp.concatenate([coef, vcoef]) if P is None else vcoef)  # (d, width)
    chunk = min(chunk_rows(2 * k), n)
    zu, rows = cp.empty((chunk, width), t), HessianRows(t, k, chunk)
    plan = cp.asarray(np.array([x_scale, x_scale / n, 1.0 / n], t))  # sparse_scatter's c is plan[1]
    hV, hb = cp.zeros((d, k), t), cp.zeros(k, t)
    logits, scatter = (_kernel(name, t, X.indices.dtype) for name in ("sparse_logits", "sparse_scatter"))
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        z, grid = zu[:count], rows_grid(count)
        logits((grid,), (THREADS,), (X.data, X.indices, X.indptr[first : first + count + 1], np.int64(count), both,
                                     np.int32(width), z))
        if P is None:
            r = rows(z, b, vb, x_scale, sample_weight, first)
        else:
            r = rows.given(P[first : first + count], z, vb, x_scale, sample_weight, first)
        scatter((grid,), (THREADS,), (X.data, X.indices, X.indptr, nvrtc.NULL, np.int64(first), np.int32(count), r,
                                      plan, np.int32(k), np.int32(1), hV))
        hb += r.sum(axis=0)
    return cp.ascontiguousarray(hV.T), hb / t.type(n)


def _plan(t, m, n, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step):
    """An epoch's steps as the kernels take them (the module docstring's lazy decay), worked out on the host:
    plan (steps, m, 3) in t, each step's folds [(model, factor)] and each model's scale s at the end."""
    steps = -(-n // batch_size)
    plan, folds, s = np.empty((steps, m, 3)), [[] for _ in range(steps)], np.ones(m)
    for step in range(steps):
        rows_in = min(batch_size, n - step * batch_size)
        for i in range(m):
            rate = float(t.type(learning_rate(kind, lrs[i], total_steps, start_step + step)))  # as the dense steps
            plan[step, i, 0] = x_scale * s[i]  # the forward runs at the weights before the step
            s[i] *= 1.0 - rate * weight_decays[i]
            if not s[i] >= RESCALE:
                folds[step].append((i, s[i]))
                s[i] = 1.0
            plan[step, i, 1] = -rate * x_scale / (rows_in * s[i])
            plan[step, i, 2] = -rate / rows_in
    return plan.astype(t), folds, s


def _fold(V, k, folds, t):
    """V's models multiplied by their scales (W = s V -> V), in place: O(d k) each."""
    for i, factor in folds:
        V[:, i * k : (i + 1) * k] *= t.type(factor)


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    """Backend.train_epoch_many on a CSR X: the m models (coef (m, k, d)) trained side by side as
    V (d, m k), so each batch's rows are read once for all of them; coef written back at the end."""
    (m, k, d), t, n = coef.shape, coef.dtype, rows.shape[0]
    plan, folds, scale = _plan(t, m, n, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step)
    plan = cp.asarray(plan)  # the epoch's one host-to-device copy
    V = cp.ascontiguousarray(coef.transpose(2, 0, 1)).reshape(d, m * k)  # O(d m k), once an epoch
    bias = b.reshape(m * k)  # a view: the contract's b is C-contiguous
    chunks = Chunks(X, t, k, m, min(batch_size, n))
    deferred = None  # (dV, db) for batches of several chunks
    for step, first in enumerate(range(0, n, batch_size)):
        nrows = min(batch_size, n - first)
        if nrows <= chunks.chunk:
            chunks(X, rows, first, nrows, y, sample_weight, V, bias, plan[step], V, bias,
                   between=lambda step=step: _fold(V, k, folds[step], t))
            continue
        if deferred is None:
            deferred = cp.zeros_like(V), cp.zeros_like(bias)
        for lo in range(first, first + nrows, chunks.chunk):
            count = min(chunks.chunk, first + nrows - lo)
            chunks(X, rows, lo, count, y, sample_weight, V, bias, plan[step], *deferred)
        _fold(V, k, folds[step], t)
        chunks.apply(X, rows, first, nrows, deferred[0], V, deferred[1], bias)
    coef[...] = V.reshape(d, m, k).transpose(1, 2, 0)  # O(d m k), once an epoch
    for i in range(m):
        if scale[i] != 1.0:
            coef[i] *= t.type(scale[i])
    return chunks.loss, chunks.hits


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight, workspace):
    """Backend.train_epoch on a CSR X: a sweep of one. workspace is not used: an epoch's buffers are
    O(batch k) and CuPy's memory pool gives them back to the next epoch."""
    loss, correct = train_epoch_many(X, y, rows, coef[None], b[None], batch_size, x_scale, (weight_decay,), kind,
                                     (lr,), total_steps, start_step, sample_weight)
    return loss.reshape(()), correct.reshape(())
