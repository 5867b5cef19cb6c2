"""The CUDA backend's wide-W kernel: one SGD epoch of m models of k classes at once (CuPy arrays).

The GPU twin of cpu_sweep.py, on cuda.py's large-shape path: the m models
stacked as one (m k, d) matrix, a batch's logits for all of them are one cuBLAS
product (cupy.matmul), softmax_rows_gradient (kernels/softmax_rows.cu) turns
each model's k columns of a row into its softmax minus the one-hot label with
its loss and hits, a second product gives every model's weight gradient, and
sgd_step_many (kernels/sweep.cu) steps every model with its own rate and decay.

A step is the same launches whatever m is: the gather of the batch's rows
(and its conversion from uint8), two products, softmax_rows_gradient, the two
column sums (bias gradients, each warp's loss and hits), sgd_step_many; m only
widens them. tests/test_sweep.py counts the kernel launches in emulation.

Expected, NOT measured (no GPU has run it): at Fashion-MNIST's shape (batch
256, d = 784, 16 models of 10 classes) each product is 64 MFLOP, ~2 us at
cuBLAS's rate, so a step is launch bound, ~8 launches of a few us: about
20-40 us a step whether m is 1 or 16, against ~3 us a step for one model's
persistent sgd_epoch kernel, which keeps W in shared memory: 16 models' W
(500 KB in fp32) does not fit there.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from .cuda import THREADS, _kernel, _LargeGradient, _max_blocks
from .kernels.geometry import template_id


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step):
    """backend.SweepBackend.train_epoch_many: per batch, _LargeGradient's sums for the m models side by
    side, then one sgd_step_many for all of them."""
    m, k, d = coef.shape
    n, t = rows.shape[0], coef.dtype
    wall, ball = coef.reshape(m * k, d), b.reshape(m * k)
    sums = _LargeGradient(X, wall, min(batch_size, n), groups=m)
    step_kernel = _kernel("sweep", template_id("sgd_step_many", t))
    grid = min(-(-(m * k * d + m * k + m) // THREADS), _max_blocks())
    loss, correct = cp.zeros(m, t), cp.zeros(m, cp.int64)
    for step, first in enumerate(range(0, n, batch_size)):
        nrows = min(batch_size, n - first)
        sums(X, rows, first, nrows, y, wall, ball, x_scale)
        step_kernel(
            (grid,),
            (THREADS,),
            (wall, ball, sums.dcoef, sums.db, sums.stats, lrs, weight_decays, np.int32(kind), np.int64(total_steps),
             np.int64(start_step + step), np.int32(m), np.int32(k), np.int32(d), np.int32(nrows), t.type(x_scale),
             loss, correct),
            shared_mem=2 * m * t.itemsize,
        )
    return loss, correct
