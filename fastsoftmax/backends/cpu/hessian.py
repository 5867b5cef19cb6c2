"""The CPU backend's Hessian-vector product of the cross-entropy, for second-order solvers (solvers/newton.py).

The Hessian of the mean loss in (W, b) times a direction (V, vb) needs, per
row, the softmax p of the logits at W and the direction's logits u = x_scale
x @ V + vb: r = w (p * u - p (p . u)) (rows.hessian_row), and the product is
x_scale X^T r / n with the bias's part sum(r) / n. This is the path from
BLAS_MIN_CLASSES classes on (below, fused.py's register tiles compute the
same product). Rows go in chunks, as in large.py: one gemm computes both
logits at once, x @ [coef; vcoef]^T (2k columns), so each chunk of X is read
from memory once (with P, the softmax at W given, the gemm computes the
direction's alone); a Numba pass turns them into r in place, and a second
gemm adds r^T x while the chunk is still in cache. Extra memory O(chunk (k +
d) + k d) beyond a given P, never n k; uint8 X is converted a chunk at a
time. Sums run in a fixed order (chunks in order, parts in part order), as
in large.py. The CUDA twin is backends/cuda/hessian.py; a CSR X runs on
sparse.py's twin of this.
"""

from __future__ import annotations

import numpy as np

from .jit import JIT, njit
from .large import ChunkRows, chunk_rows
from .rows import hessian_row, n_parts, part_bounds, unweighted


@njit(**JIT)
def _hessian_rows(zu, k, b, vb, x_scale, weights, softmax, part_db):
    """zu (rows, 2k) = [logits at W (softmax False: their softmax, given), the direction's logits],
    unscaled: its first k columns become r in place (rows.hessian_row, w the row's weight, 1 where
    weights is empty); part q's sums of r into part_db[q]."""
    n = zu.shape[0]
    Z, U = zu[:, :k], zu[:, k:]
    for q in range(n_parts(n)):
        lo, hi = part_bounds(n, q)
        db = part_db[q]
        db[:] = 0
        for i in range(lo, hi):
            hessian_row(Z, U, i, b, vb, x_scale, weights[i] if weights.shape[0] else zu.dtype.type(1), softmax)
            for j in range(k):
                db[j] += Z[i, j]


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    """Backend.linear_softmax_hessian_product on a dense X: (hcoef (k, d), hb (k,)) by chunks of rows; with
    P (the softmax at W, given), the gemm computes the direction's logits alone."""
    (n, d), (k, t) = X.shape, (coef.shape[0], coef.dtype)
    both = np.concatenate([coef, vcoef]) if P is None else vcoef  # (2k, d): both logits from one gemm
    chunk = min(chunk_rows(2 * k, d), n)
    rows_of, zu = ChunkRows(t, chunk), np.empty((chunk, 2 * k), t)
    part_db = np.empty((n_parts(chunk), k), t)
    hcoef, hb, product = np.zeros((k, d), t), np.zeros(k, t), np.empty((k, d), t)
    weights = unweighted(t) if sample_weight is None else sample_weight
    for lo in range(0, n, chunk):
        count = min(chunk, n - lo)
        x, z = rows_of(X, None, lo, count), zu[:count]
        if P is None:
            np.matmul(x, both.T, out=z)
        else:
            z[:, :k] = P[lo : lo + count]
            np.matmul(x, both.T, out=z[:, k:])
        _hessian_rows(z, k, b, vb, t.type(x_scale), weights[lo : lo + count] if weights.shape[0] else weights,
                      P is None, part_db)
        for q in range(n_parts(count)):  # in part order
            hb += part_db[q]
        np.matmul(z[:, :k].T, x, out=product)
        hcoef += product
    hcoef *= t.type(x_scale / n)
    return hcoef, hb / t.type(n)
