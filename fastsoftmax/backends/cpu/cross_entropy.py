"""The CPU backend's linear cross-entropy: a classifier head's loss and all three gradients, by chunks of rows.

For a layer's input X (n, d), its weight (k, d) as nn.Linear holds it and its
bias, each row's loss is the cross-entropy of softmax(x @ weight.T + bias)
against its label with label smoothing e (reference.kernels.linear_cross_entropy),
and, given a scale s_i per row, the gradients of sum_i s_i loss_i in X, weight
and bias: with g_i = s_i (softmax_i - q_i), q_i the smoothed one-hot target,
dX = G weight, dweight = G^T X, dbias = sum_i g_i. The PyTorch and JAX faces
(fastsoftmax/torch.py, fastsoftmax/jax.py) call it through fastsoftmax.ops.

Per chunk of rows: sgemm writes the chunk's logits, one Numba pass (_rows)
turns them in place into g with each row's loss, then sgemm writes the chunk's
rows of dX and adds g^T x into dweight in place (BLAS's beta = 1, so no (k, d)
temporary; SciPy's BLAS, which takes beta, on dweight's own memory seen in
Fortran order). NumPy ships a second OpenBLAS, whose threads, spinning after
a product, fight SciPy's on the 2 cores when the products are short: below
NARROW_CLASSES all three products go through SciPy (a 10-class head took 35x
longer split between the two), above it the logits and dX go through NumPy,
whose build ran the (rows, k) @ (k, d) product of dX at 131 GFLOP/s against
SciPy's 94 (96 rows, k = 131072, d = 2048; 172 against 165 at k = 32768). The chunk is sized so that its logits take at
most LOGIT_BYTES, whatever k is: the extra memory is O(chunk k) beyond the
inputs and the gradients, never n k (the (1024, 2048, 131072) head of the
issue's benchmark holds 96 rows of logits, 48 MB, where eager PyTorch holds
several n x k arrays). Each chunk reads weight twice and updates dweight once,
so fewer rows per chunk cost memory traffic: CHUNK_MIN_ROWS keeps the
products at sgemm's rate. The pass runs a row per task: at k = 131072 its
exps took ~1.8 ms a row on one thread, a fifth of the products' time.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from numba import prange

from .jit import JIT, PRANGE, njit

LOGIT_BYTES = 48 << 20  # a chunk's logits: 96 rows at k = 131072 in float32
CACHE_ELEMENTS = 1 << 20  # a chunk of X (rows x d) that stays in cache between the products that read it
CHUNK_MIN_ROWS = 16
# Below this many classes dweight is summed as (d, k) and transposed at the end: OpenBLAS's product with
# k rows of output runs ~2.5x slower than with k columns (784 x 10: 6.3 ms against 2.5 ms for 8192 rows).
NARROW_CLASSES = 64


def chunk_rows(n: int, d: int, k: int, itemsize: int) -> int:
    by_logits = max(CHUNK_MIN_ROWS, LOGIT_BYTES // (k * itemsize))
    return max(1, min(n, by_logits, max(CHUNK_MIN_ROWS, CACHE_ELEMENTS // d)))


@njit(parallel=PRANGE, **JIT)
def _rows(z, b, y, smoothing, scale, losses):
    """z (rows, k), a chunk's logits without the bias: losses[i] = row i's smoothed cross-entropy and, where
    scale is not empty, z[i] = scale[i] (softmax(z[i] + b) - q_i) in place (q_i: 1 - smoothing on y[i], plus
    smoothing / k everywhere). A row per task; the exps in z's dtype, their sums in float64 (a row of 10^5
    float32 values would add up to float32's rounding)."""
    n, k = z.shape
    on, off = 1.0 - smoothing, smoothing / k
    for i in prange(n):
        row = z[i]
        top, total = row[0] + b[0], 0.0
        for j in range(k):
            v = row[j] + b[j]
            row[j] = v
            total += v
            top = max(top, v)
        s = 0.0
        for j in range(k):
            s += np.exp(row[j] - top)
        lse = top + np.log(s)
        label = y[i]
        losses[i] = lse - on * row[label] - off * total
        if scale.shape[0]:
            w, shift = scale[i], z.dtype.type(lse)
            for j in range(k):
                row[j] = w * (np.exp(row[j] - shift) - off)
            row[label] -= w * on


def linear_cross_entropy(X, coef, b, y, smoothing, scale, input_grad):
    """Backend.linear_cross_entropy: (losses, dX or None, dcoef or None, db or None)."""
    (n, d), (k, t) = X.shape, (coef.shape[0], coef.dtype)
    chunk = chunk_rows(n, d, k, t.itemsize)
    losses, logits = np.empty(n, t), np.empty((chunk, k), t)
    grads = scale is not None
    gemm, narrow = blas.get_blas_funcs("gemm", dtype=t), k < NARROW_CLASSES
    if grads:
        dX = np.empty((n, d), t) if input_grad else None
        dcoef, db = np.zeros((d, k) if narrow else (k, d), t), np.zeros(k, t)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x, z = X[lo:hi], logits[: hi - lo]
        if narrow:
            gemm(1.0, coef.T, x.T, c=z.T, trans_a=True, overwrite_c=True)  # z = x @ coef.T
        else:
            np.matmul(x, coef.T, out=z)
        _rows(z, b, y[lo:hi], smoothing, scale[lo:hi] if grads else losses[:0], losses[lo:hi])
        if not grads:
            continue
        if input_grad and narrow:
            gemm(1.0, coef.T, z.T, c=dX[lo:hi].T, overwrite_c=True)  # dX[lo:hi] = z @ coef
        elif input_grad:
            np.matmul(z, coef, out=dX[lo:hi])
        if narrow:
            gemm(1.0, z.T, x.T, beta=1.0, c=dcoef.T, trans_b=True, overwrite_c=True)  # dcoef += x.T @ z
        else:
            gemm(1.0, x.T, z.T, beta=1.0, c=dcoef.T, trans_b=True, overwrite_c=True)  # dcoef += z.T @ x
        db += z.sum(axis=0)
    if not grads:
        return losses, None, None, None
    return losses, dX, np.ascontiguousarray(dcoef.T) if narrow else dcoef, db
