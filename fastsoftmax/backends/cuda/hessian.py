"""The CUDA backend's Hessian-vector product of the cross-entropy, for second-order solvers (solvers/newton.py).

The twin of backends/cpu/hessian.py, whose docstring has the formula. Rows go
in chunks of at most large.chunk_rows(2k, d): per chunk, one cuBLAS product
x @ [coef; vcoef]^T writes the logits at W and along the direction side by
side (X read once), kernels/softmax_rows.cu's hessian_rows turns each row into
r = w (p * u - p (p . u)) (one warp a row), and cuBLAS adds r^T x; CuPy sums r's
columns for the bias. Extra memory O(chunk (k + d) + k d), never n k; sums in
a fixed order (chunks in order, reductions of fixed shapes). A CSR X runs on
sparse.py's twin of this.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import THREADS, template_id
from . import compile as nvrtc
from .large import chunk_rows
from .rows import rows_grid, rows_of


class HessianRows:
    """The rows r of a Hessian product for chunks of up to `chunk` rows, into r (chunk, k): from [z | u]
    by kernels/softmax_rows.cu's hessian_rows, or, where the softmax P at W is given, from P and u by
    CuPy's elementwise and row sums."""

    def __init__(self, t, k: int, chunk: int):
        self.t, self.k = t, k
        self.r = cp.empty((chunk, k), t)
        self.kernel = nvrtc.kernel("softmax_rows", template_id("hessian_rows", t))

    def __call__(self, zu, b, vb, x_scale, sample_weight, first: int):
        """r[:count] of the chunk's [z | u] (count, 2k), whose rows are X's first..first+count."""
        count = zu.shape[0]
        self.kernel((rows_grid(count),), (THREADS,), (zu, b, vb, self.t.type(x_scale), np.int32(self.k),
                                                       np.int32(count), nvrtc.pointer(sample_weight),
                                                       np.int64(first), self.r))
        return self.r[:count]

    def given(self, p, u, vb, x_scale, sample_weight, first: int):
        """r[:count] of the chunk's softmax p (count, k) at W and its unscaled direction logits u."""
        v = u * self.t.type(x_scale) + vb
        r = self.r[: p.shape[0]]
        cp.multiply(p, v - (p * v).sum(axis=1, keepdims=True), out=r)
        if sample_weight is not None:
            r *= sample_weight[first : first + p.shape[0], None]
        return r


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    """Backend.linear_softmax_hessian_product on a dense X: (hcoef (k, d), hb (k,)) by chunks of rows; with
    P (the softmax at W, given), the product computes the direction's logits alone."""
    (n, d), (k, t) = X.shape, (coef.shape[0], coef.dtype)
    both = cp.concatenate([coef, vcoef]) if P is None else vcoef  # (2k, d): both logits from one product
    chunk = min(chunk_rows(2 * k, d), n)
    zu, buffer = cp.empty((chunk, 2 * k), t), None if X.dtype == t else cp.empty((chunk, d), t)
    rows = HessianRows(t, k, chunk)
    hcoef, hb = cp.zeros((k, d), t), cp.zeros(k, t)
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        x, z = rows_of(X, None, first, count, buffer), zu[:count]
        if P is None:
            cp.matmul(x, both.T, out=z)
            r = rows(z, b, vb, x_scale, sample_weight, first)
        else:
            r = rows.given(P[first : first + count], cp.matmul(x, both.T), vb, x_scale, sample_weight, first)
        hcoef += cp.matmul(r.T, x)
        hb += r.sum(axis=0)
    hcoef *= t.type(x_scale / n)
    return hcoef, hb / t.type(n)
