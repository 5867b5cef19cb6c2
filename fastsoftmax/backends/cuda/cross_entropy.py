"""The CUDA backend's linear cross-entropy: a classifier head's loss and all three gradients, by chunks of rows.

The twin of backends/cpu/cross_entropy.py, whose docstring has the formulas.
Per chunk: cuBLAS writes the logits x @ weight.T, kernels/softmax_rows.cu's
cross_entropy_rows turns each row (one warp) into its loss and, given the rows'
scales, g = s (softmax - q) in place; cuBLAS then writes the chunk's rows of dX
(g @ weight) and adds g^T x into dweight in place (cublas.gemm with beta = 1:
no (k, d) temporary). A chunk's logits take at most LOGIT_BYTES, so the extra
memory is O(chunk k) beyond the results, never n k. Everything runs on the
current stream (the caller's: fastsoftmax/torch.py makes it PyTorch's).

Expected cost at (1024, 2048, 131072) fp32 on an H100 (NOT measured: no GPU
has run it): the three products are 1.65 TFLOP, ~33 ms at cuBLAS's ~50
TFLOP/s; the row pass reads and writes 0.5 GB of logits, ~0.3 ms at 3 TB/s.
"""

from __future__ import annotations

import cupy as cp
import numpy as np
from cupy import cublas

from ...kernels.geometry import THREADS, template_id
from . import compile as nvrtc
from .rows import rows_grid

LOGIT_BYTES = 256 << 20  # a chunk's logits: 512 rows at k = 131072 in fp32, enough rows to fill an H100


def chunk_rows(n: int, k: int, itemsize: int) -> int:
    return max(1, min(n, LOGIT_BYTES // (k * itemsize)))


def linear_cross_entropy(X, coef, b, y, smoothing, scale, input_grad):
    """Backend.linear_cross_entropy: (losses, dX or None, dcoef or None, db or None)."""
    (n, d), (k, t) = X.shape, (coef.shape[0], coef.dtype)
    chunk = chunk_rows(n, k, t.itemsize)
    losses, logits = cp.empty(n, t), cp.empty((chunk, k), t)
    rows = nvrtc.kernel("softmax_rows", template_id("cross_entropy_rows", t))
    grads = scale is not None
    if grads:
        dX = cp.empty((n, d), t) if input_grad else None
        dcoef, db = cp.zeros((k, d), t), cp.zeros(k, t)
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        x, z = X[first : first + count], logits[:count]
        cp.matmul(x, coef.T, out=z)
        rows((rows_grid(count),), (THREADS,), (z, b, np.int32(k), np.int32(count), y, np.int64(first),
                                               t.type(smoothing), nvrtc.pointer(scale), losses))
        if not grads:
            continue
        if input_grad:
            cp.matmul(z, coef, out=dX[first : first + count])
        cublas.gemm("T", "N", z, x, out=dcoef, beta=1.0)  # dcoef += z.T @ x, in place
        db += z.sum(axis=0)
    if not grads:
        return losses, None, None, None
    return losses, dX, dcoef, db
