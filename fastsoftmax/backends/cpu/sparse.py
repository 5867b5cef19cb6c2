"""The CPU backend's sparse path: the kernels for a CSR X (arrays.CSR), which is never densified.

A row's logits are a sum over its non-zeros of value * W[feature, :], so the
kernels hold W as Wt (d, k), C-contiguous (a feature's k weights in one run of
memory), where the contract hands coef (k, d): one transposed copy per call
(O(d k), against the call's O(nnz k)), written back after an epoch. The cost
of a pass is O(nnz k); the extra memory O(parts d k) for a gradient, O(batch
k) for an epoch, never O(n k) beyond the (n, k) result a forward pass returns.

The SGD epoch steps only the columns a batch has. Weight decay, which shrinks
every weight each step, is applied lazily: W = s V with a scale s (float64),
so the decay of a step is s *= 1 - rate * weight_decay, and the batch's
gradient goes into V's rows divided by s. V is folded back (V *= s, s = 1)
when s falls below RESCALE, and at the end of the epoch. One kernel serves a
model and a sweep of m models on the same batches (train_epoch is m = 1).

Gradient parts: rows split into at most MAX_PARTS parts (bounds from the row
count alone, as rows.part_bounds), each adding into its own Wt-shaped sums,
added in part order: the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import JIT, PRANGE, njit
from .rows import hessian_row, learning_rate, row_softmax, unweighted

# A gradient's rows split into at most this many parts, each with its own (d, k) sums: 4 d k values
# at most (the 2-core machine runs 2 at a time; more parts would add memory, not speed).
MAX_PARTS = 4
ROWS_PER_PART = 256
# V is folded into W = s V when the lazy decay's scale s falls below this: far above float32's smallest
# normal values, so V's entries (W / s) stay well inside float32's range.
RESCALE = 1e-6


@njit(**JIT)
def _row_sums(data, indices, indptr, i, Wt, z):
    """z[:] = sum over row i's non-zeros of value * Wt[column]: its logits before scale and bias."""
    z[:] = 0
    for e in range(indptr[i], indptr[i + 1]):
        v, w = data[e], Wt[indices[e]]
        for j in range(z.shape[0]):
            z[j] += v * w[j]


@njit(parallel=PRANGE, **JIT)
def _forward(data, indices, indptr, Wt, b, x_scale, softmax, out):
    """out[i] = softmax(x_scale * x_i @ Wt + b) (softmax True) or the logits themselves, a row per task."""
    for i in prange(out.shape[0]):
        _row_sums(data, indices, indptr, i, Wt, out[i])
        if softmax:
            row_softmax(out, i, b, x_scale)
        else:
            for j in range(out.shape[1]):
                out[i, j] = out[i, j] * x_scale + b[j]


def _transposed(coef):
    return np.ascontiguousarray(coef.T)


def linear_softmax(X, coef, b, x_scale):
    out = np.empty((X.shape[0], coef.shape[0]), coef.dtype)
    _forward(X.data, X.indices, X.indptr, _transposed(coef), b, coef.dtype.type(x_scale), True, out)
    return out


def linear_logits(X, coef, b, x_scale):
    out = np.empty((X.shape[0], coef.shape[0]), coef.dtype)
    _forward(X.data, X.indices, X.indptr, _transposed(coef), b, coef.dtype.type(x_scale), False, out)
    return out


@njit(**JIT)
def _gradient_row(data, indices, indptr, i, label, w, Wt, b, x_scale, g):
    """g = w (softmax(x_scale * x_i @ Wt + b) - onehot(label)) for row i; returns (w * its loss, its argmax hit)."""
    _row_sums(data, indices, indptr, i, Wt, g)
    logit = g[label] * x_scale + b[label]
    lse, top = row_softmax(g.reshape(1, g.shape[0]), 0, b, x_scale)
    g[label] -= 1
    for j in range(g.shape[0]):
        g[j] *= w
    return w * (lse - logit), top == label


@njit(**JIT)
def _scatter(data, indices, indptr, i, c, g, Vt):
    """Vt[column] += c * value * g for each non-zero of row i: its share of the weight gradient."""
    for e in range(indptr[i], indptr[i + 1]):
        v, row = c * data[e], Vt[indices[e]]
        for j in range(g.shape[0]):
            row[j] += v * g[j]


@njit(parallel=PRANGE, **JIT)
def _gradient_parts(data, indices, indptr, y, sw, Wt, b, x_scale, parts, dWt, db, loss, hits):
    """Part q's unscaled sums of g x^T into dWt[q] (d, k), of g into db[q], its loss and hits."""
    n, k = indptr.shape[0] - 1, Wt.shape[1]
    for q in prange(parts):
        lo, hi = n * q // parts, n * (q + 1) // parts
        dWt[q] = 0
        db[q] = 0
        g = np.empty(k, Wt.dtype)
        part_loss, part_hits = 0.0, 0
        for i in range(lo, hi):
            w = sw[i] if sw.shape[0] else Wt.dtype.type(1)
            row_loss, hit = _gradient_row(data, indices, indptr, i, y[i], w, Wt, b, x_scale, g)
            part_loss += row_loss
            part_hits += hit
            _scatter(data, indices, indptr, i, Wt.dtype.type(1), g, dWt[q])
            for j in range(k):
                db[q, j] += g[j]
        loss[q], hits[q] = part_loss, part_hits


class _Parts:
    """A pass's per-part sums: dWt (parts, d, k) and db (parts, k), for rows split into at most MAX_PARTS."""

    def __init__(self, n, coef):
        t = coef.dtype
        self.n, self.t, self.count = n, t, max(1, min(MAX_PARTS, n // ROWS_PER_PART))
        self.dWt, self.db = np.empty((self.count, *coef.shape[::-1]), t), np.empty((self.count, coef.shape[0]), t)

    def mean(self, x_scale):
        """(x_scale sum(dWt) / n as (k, d), sum(db) / n), the parts added in part order."""
        for q in range(1, self.count):
            self.dWt[0] += self.dWt[q]
            self.db[0] += self.db[q]
        return (self.dWt[0] * self.t.type(x_scale / self.n)).T.copy(), self.db[0] / self.t.type(self.n)


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    n, t = X.shape[0], coef.dtype
    parts = _Parts(n, coef)
    loss, hits = np.empty(parts.count), np.empty(parts.count, np.int64)
    sw = unweighted(t) if sample_weight is None else sample_weight
    _gradient_parts(X.data, X.indices, X.indptr, y, sw, _transposed(coef), b, t.type(x_scale), parts.count,
                    parts.dWt, parts.db, loss, hits)
    return (np.asarray(loss.sum() / n, t), np.asarray(hits.sum()), *parts.mean(x_scale))


@njit(parallel=PRANGE, **JIT)
def _hessian_parts(data, indices, indptr, sw, Wt, Vt, b, vb, x_scale, parts, hWt, hb):
    """Part q's unscaled sums of r x^T into hWt[q] (d, k) and of r into hb[q], r = rows.hessian_row's."""
    n, k = indptr.shape[0] - 1, Wt.shape[1]
    for q in prange(parts):
        lo, hi = n * q // parts, n * (q + 1) // parts
        hWt[q] = 0
        hb[q] = 0
        zu = np.empty((2, k), Wt.dtype)  # the row's logits at W, then the direction's
        for i in range(lo, hi):
            _row_sums(data, indices, indptr, i, Wt, zu[0])
            _row_sums(data, indices, indptr, i, Vt, zu[1])
            hessian_row(zu[0:1], zu[1:2], 0, b, vb, x_scale, sw[i] if sw.shape[0] else Wt.dtype.type(1), True)
            _scatter(data, indices, indptr, i, Wt.dtype.type(1), zu[0], hWt[q])
            for j in range(k):
                hb[q, j] += zu[0, j]


@njit(parallel=PRANGE, **JIT)
def _direction_rows(data, indices, indptr, sw, Vt, vb, x_scale, P, R):
    """R[i] = rows.hessian_row's r of row i from the softmax at W, P[i] (given), ROWS_PER_PART rows a task."""
    n, k = R.shape
    for block in prange((n + ROWS_PER_PART - 1) // ROWS_PER_PART):
        u = np.empty((1, k), R.dtype)  # the row's direction logits
        for i in range(block * ROWS_PER_PART, min(n, (block + 1) * ROWS_PER_PART)):
            R[i] = P[i]
            _row_sums(data, indices, indptr, i, Vt, u[0])
            hessian_row(R[i : i + 1], u, 0, vb, vb, x_scale, sw[i] if sw.shape[0] else R.dtype.type(1), False)


@njit(parallel=PRANGE, **JIT)
def _feature_sums(tdata, tindices, tindptr, R, out):
    """out[j] = sum over feature j's non-zeros (a CSC's: tindices are their rows) of value * R[row]: X^T R,
    a feature per task, each written once."""
    k = R.shape[1]
    for j in prange(out.shape[0]):
        o = out[j]
        o[:] = 0
        for e in range(tindptr[j], tindptr[j + 1]):
            v, r = tdata[e], R[tindices[e]]
            for c in range(k):
                o[c] += v * r[c]


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    """Backend.linear_softmax_hessian_product on a CSR X: O(nnz k) a product. With P (the softmax at W,
    given) the rows' r go into an (n, k) buffer, as P itself, and X^T r runs over X's columns (a CSC copy
    of X, O(nnz), made per call: ~3 ms at 400k non-zeros), each feature's sums written once; without,
    parts of rows scatter into O(parts d k) sums."""
    t = coef.dtype
    sw = unweighted(t) if sample_weight is None else sample_weight
    if P is not None:
        import scipy.sparse

        R, n, d = np.empty_like(P), *X.shape
        _direction_rows(X.data, X.indices, X.indptr, sw, _transposed(vcoef), vb, t.type(x_scale), P, R)
        columns = scipy.sparse.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape).tocsc()
        hWt = np.empty((d, coef.shape[0]), t)
        _feature_sums(columns.data, columns.indices, columns.indptr, R, hWt)
        hWt *= t.type(x_scale / n)
        return hWt.T, R.sum(axis=0) / t.type(n)
    parts = _Parts(X.shape[0], coef)
    _hessian_parts(X.data, X.indices, X.indptr, sw, _transposed(coef), _transposed(vcoef), b, vb, t.type(x_scale),
                   parts.count, parts.dWt, parts.db)
    return parts.mean(x_scale)


@njit(parallel=PRANGE, **JIT)
def _batch_gradients(data, indices, indptr, y, sw, batch, Vt, b, scales, G, loss, hits):
    """Every model's g of every row of the batch, G[i, r] (model i, row r), at W = scales[i] Vt[i]:
    a row per task; its weighted loss into loss[i, r], its argmax hit into hits[i, r]."""
    m = Vt.shape[0]
    for r in prange(batch.shape[0]):
        row = batch[r]
        w = sw[row] if sw.shape[0] else Vt.dtype.type(1)
        for i in range(m):
            loss[i, r], hits[i, r] = _gradient_row(data, indices, indptr, row, y[row], w, Vt[i], b[i], scales[i],
                                                   G[i, r])


@njit(**JIT)
def _sgd_epoch(data, indices, indptr, y, sw, rows, Vt, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps,
               start_step, G, loss, hits, loss_sum, correct):
    """The epoch of m models (Vt (m, d, k), b (m, k)) over the batches of rows, each batch's rows'
    gradients for every model first (in parallel), then each model's lazy step (the module docstring).
    Adds each model's weighted loss sum and hits to loss_sum[i], correct[i]; Vt holds W at the end."""
    m, n = Vt.shape[0], rows.shape[0]
    t = Vt.dtype.type
    s = np.ones(m)  # W_i = s[i] * Vt[i]
    scales = np.empty(m, Vt.dtype)
    for step in range((n + batch_size - 1) // batch_size):
        batch = rows[step * batch_size : min(n, (step + 1) * batch_size)]
        rows_in = batch.shape[0]
        for i in range(m):
            scales[i] = t(x_scale * s[i])
        _batch_gradients(data, indices, indptr, y, sw, batch, Vt, b, scales, G, loss, hits)
        for i in range(m):
            rate = t(learning_rate(kind, lrs[i], total_steps, start_step + step))
            decay = 1.0 - rate * weight_decays[i]
            if decay < RESCALE:  # a step that (nearly) zeroes W: fold it in at once
                Vt[i] *= t(s[i] * decay)
                s[i] = 1.0
            else:
                s[i] *= decay
            c = t(-rate * x_scale / (rows_in * s[i]))
            for r in range(rows_in):
                _scatter(data, indices, indptr, batch[r], c, G[i, r], Vt[i])
                for j in range(b.shape[1]):
                    b[i, j] -= rate * G[i, r, j] / t(rows_in)
                loss_sum[i] += loss[i, r]
                correct[i] += hits[i, r]
            if s[i] < RESCALE:
                Vt[i] *= t(s[i])
                s[i] = 1.0
    for i in range(m):
        if s[i] != 1.0:
            Vt[i] *= t(s[i])


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    """Backend.train_epoch_many on a CSR X: coef (m, k, d) trained as Vt (m, d, k), written back."""
    m, k, _ = coef.shape
    t = coef.dtype
    Vt = np.ascontiguousarray(coef.transpose(0, 2, 1))
    batch = min(batch_size, rows.shape[0])
    G, loss, hits = np.empty((m, batch, k), t), np.empty((m, batch)), np.empty((m, batch), np.int64)
    loss_sum, correct = np.zeros(m), np.zeros(m, np.int64)
    sw = unweighted(t) if sample_weight is None else sample_weight
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging model: the SGD loop finds it after the epoch
        _sgd_epoch(X.data, X.indices, X.indptr, y, sw, rows, Vt, b, batch_size, float(x_scale),
                   np.asarray(weight_decays, np.float64), kind, np.asarray(lrs, np.float64), total_steps, start_step,
                   G, loss, hits, loss_sum, correct)
    coef[...] = Vt.transpose(0, 2, 1)
    return loss_sum, correct


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight):
    """Backend.train_epoch on a CSR X: the epoch of a sweep of one."""
    loss, correct = train_epoch_many(X, y, rows, coef[None], b[None], batch_size, x_scale, (weight_decay,), kind,
                                     (lr,), total_steps, start_step, sample_weight)
    return loss.reshape(()), correct.reshape(())
