"""The CUDA backend's fused path, where W fits in a block's shared memory: X read once, no logits written.

linear_softmax (kernels/linear_softmax.cu) keeps W in shared memory; the
training kernels (kernels/linear_softmax_cross_entropy.cu) keep W and dW there,
so they stop at about 58 000 weights (linear_softmax, fp32) or 28 000
(training): past that, large.py's path runs (the choice is __init__.py's).

Sample weights (the contract's sample_weight) multiply each row's loss and
g = softmax - onehot inside the kernels, read by X's row number as the
labels are; without weights the kernels get a null pointer and multiply by 1.

Nothing here waits for the GPU: results come back as (0-d) CuPy arrays. A
training epoch is two launches: one writes the epoch's order of rows
(rows.shuffle, from the seed: no permutation crosses from the host), and one
persistent kernel (sgd_epoch) takes every SGD step of the epoch, its blocks
meeting at grid barriers instead of at launch boundaries.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import FORWARD_ROWS_PER_BLOCK, PART_EXTRA, THREADS, TRAIN_GROUP_SIZES, template_id
from . import compile as nvrtc
from .rows import pad4, rows_aligned, vec16


def forward_smem(coef) -> int:
    """linear_softmax's shared memory: W (k x pad4(d))."""
    k, d = coef.shape
    return k * pad4(d) * coef.itemsize


def gradient_smem(g: int, k: int, d: int, tsize: int, xsize: int) -> int:
    """The training kernel's shared memory with lane groups of g: W and dW, a tile of X and per-row values."""
    dp, tile = pad4(d), THREADS // g
    return (2 * k * dp + tile * (k + PART_EXTRA)) * tsize + tile * dp * xsize


def forward_fits(coef) -> bool:
    """True where linear_softmax's kernel holds W in shared memory."""
    return forward_smem(coef) <= nvrtc.shared_memory_limit()


def gradient_fits(X, coef) -> bool:
    """True where the training kernels fit in shared memory (with their largest lane group)."""
    k, d = coef.shape
    return gradient_smem(TRAIN_GROUP_SIZES[-1], k, d, coef.itemsize, X.itemsize) <= nvrtc.shared_memory_limit()


def linear_softmax(X, coef, b, x_scale):
    n, d = X.shape
    k = coef.shape[0]
    t = coef.dtype
    v = 4 if rows_aligned(X, 4) else 1
    P = cp.empty((n, k), t)
    grid = min(-(-n // FORWARD_ROWS_PER_BLOCK), nvrtc.max_blocks())
    nvrtc.kernel("linear_softmax", template_id("linear_softmax", t, X.dtype, k, v))(
        (grid,),
        (THREADS,),
        (X, coef, b, t.type(x_scale), np.int64(n), np.int32(d), vec16(coef), P),
        shared_mem=forward_smem(coef),
    )
    return P


class GradientPass:
    """The training kernel's launch for batches of `rows` rows on at most
    `blocks` blocks: lane group size G, grid and shared memory. A pure function
    of the shapes and the device, so the same batch always splits into the
    same partial sums (reproducibility).
    """

    def __init__(self, rows: int, X, coef, blocks: int):
        k, d = coef.shape
        self.k, self.d, self.t = k, d, coef.dtype

        def smem(g):
            return gradient_smem(g, k, d, coef.itemsize, X.itemsize)

        fits = [g for g in TRAIN_GROUP_SIZES if smem(g) <= nvrtc.shared_memory_limit()]  # callers checked gradient_fits
        # The smallest group (fewest shuffles per row) that still gives every
        # block a tile; for a minibatch that is the largest group.
        self.g = next((g for g in fits if -(-rows // (THREADS // g)) >= blocks), fits[-1])
        self.smem = smem(self.g)
        self.grid = min(-(-rows // (THREADS // self.g)), blocks)
        self.part_size = k * d + k + PART_EXTRA

    def kernel(self, name: str, X):
        return nvrtc.kernel("linear_softmax_cross_entropy", template_id(name, self.t, X.dtype, self.k, self.g))

    def gradient(self, X, rows, first, nrows, y, sample_weight, coef, b, x_scale, part):
        """Partial sums of rows first..first+nrows of the batch (rows[first + i] of X, or first + i for NULL),
        each row's terms times its sample weight (none: 1)."""
        self.kernel("linear_softmax_cross_entropy", X)(
            (self.grid,),
            (THREADS,),
            (X, rows, np.int64(first), np.int32(nrows), y, nvrtc.pointer(sample_weight), coef, b, self.t.type(x_scale),
             np.int32(self.d), vec16(X), vec16(coef), part),
            shared_mem=self.smem,
        )

    def reduce(self, part, nrows, x_scale, w, b, loss, correct):
        """The mean gradient into w, b and the mean loss, from the partial sums added in block order."""
        t = self.t.type
        nvrtc.kernel("linear_softmax_cross_entropy", template_id("reduce_partials", self.t))(
            (-(-self.part_size // THREADS),),
            (THREADS,),
            (part, np.int32(self.grid), np.int32(self.k), np.int32(self.d), np.int32(nrows), t(x_scale), w, b,
             loss, correct),
        )


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    n = X.shape[0]
    grads = GradientPass(n, X, coef, nvrtc.max_blocks())
    part = cp.empty((grads.grid, grads.part_size), coef.dtype)
    dcoef, db = cp.empty_like(coef), cp.empty_like(b)
    loss, correct = cp.empty((), coef.dtype), cp.empty((), cp.int64)
    grads.gradient(X, nvrtc.NULL, 0, n, y, sample_weight, coef, b, x_scale, part)
    grads.reduce(part, n, x_scale, dcoef, db, loss, correct)
    return loss, correct, dcoef, db


class Epoch:
    """sgd_epoch's launch for one run's shapes: one cooperative launch an epoch,
    whose blocks (one per SM, so all are resident) step through every batch
    together (kernels/linear_softmax_cross_entropy.cu). Holds the buffers the
    kernel writes, the partial sums and the grid barrier's words (which the
    barrier leaves as it found them), so they belong to the run that made it:
    for the next epoch of a run the host launches and nothing else.
    """

    def __init__(self, X, coef, n, batch_size):
        self.grads = GradientPass(min(batch_size, n), X, coef, nvrtc.device_attribute("MultiProcessorCount"))
        self.kernel = self.grads.kernel("sgd_epoch", X)
        self.part = cp.empty((self.grads.grid, self.grads.part_size), coef.dtype)
        self.barrier = cp.zeros(2, cp.uint32)

    def __call__(self, X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                 sample_weight):
        t = coef.dtype.type
        loss, hits = cp.empty((), coef.dtype), cp.empty((), cp.int64)
        self.kernel(
            (self.grads.grid,),
            (THREADS,),
            (X, y, nvrtc.pointer(sample_weight), rows, np.int64(rows.shape[0]), np.int32(batch_size), coef, b,
             t(x_scale), np.int32(self.grads.d), vec16(X), vec16(coef), t(weight_decay), np.int32(kind),
             np.float64(lr), np.int64(total_steps), np.int64(start_step), self.part, loss, hits, self.barrier),
            shared_mem=self.grads.smem,
            enable_cooperative_groups=True,
        )
        return loss, hits


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight, workspace):
    """Backend.train_epoch in one launch. workspace (a dict of the run's, or None: this call's alone)
    keeps the launch and its buffers from epoch to epoch, keyed by the shapes they fit."""
    key = ("sgd_epoch", cp.cuda.runtime.getDevice(), rows.shape[0], batch_size, X.dtype.str, coef.shape,
           coef.dtype.str)
    epoch = None if workspace is None else workspace.get(key)
    if epoch is None:
        epoch = Epoch(X, coef, rows.shape[0], batch_size)
        if workspace is not None:
            workspace[key] = epoch
    return epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                 sample_weight)
