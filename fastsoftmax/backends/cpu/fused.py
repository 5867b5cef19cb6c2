"""The CPU backend's register-tiled path (up to a few dozen classes): X read once, no logits written.

The weights are held transposed, ``coef`` (k, d) C-contiguous, so that a
class's logit is a contiguous dot product over the d features of a row and a
gradient row is a contiguous axpy: inner loops LLVM turns into SIMD code.

Register tiles: rows go through the kernels rows.TILE at a time. A tile's
rows are first converted to the compute dtype into a small buffer (uint8
pixels are read as bytes, once), then each pass over a weight row serves all
the tile's rows: the forward pass computes a TILE x 2 block of logits per pass
over two weight rows, the backward pass adds a TILE-row rank update to two
gradient rows per pass. ``x_scale`` is applied once per logit and once per
gradient sum, never per pixel.

Rows are split into parts (rows.n_parts), which run in parallel; their
partial sums are added in part order. One pass over a part's rows
(``_rows_part``: the softmax, and for a gradient its partial sums) and one
reduction (``_class_mean``) serve linear_softmax, the one-call gradient and
every step of the training epoch.

Compile time: Numba compiles a function per signature on its first call, then
loads it from its cache (jit.py). A parallel loop compiles at four levels
(its body, two wrappers, the function that holds it), and a function called
from another is optimised and compiled to machine code again inside each
level that calls it: with the parts called directly, a first fit compiled the
tile code six times over, 11.6 s on the 2-core EPYC. Here the parallel loops
call their kernels through the kernels' addresses (jit.entry, jit.call): a
loop compiles small and a kernel once per signature, and one loop
(``_batches``) and one kernel (``_rows_part``) serve the forward pass, the
gradient and the epoch. A first fit's kernels now compile in ~4 s; the
table, function by function, is in the closing note of issue 17.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ...reference.schedules import CONSTANT
from .jit import INNER, JIT, PRANGE, call, entry, njit
from .rows import (
    TILE,
    hessian_row,
    learning_rate,
    load_tile,
    n_parts,
    part_bounds,
    tile_softmax,
    unweighted,
)

# A step's reduction of the parts' sums runs in parallel from this many values (k d x parts); below it,
# on the calling thread (see _batches).
PARALLEL_REDUCE = 1 << 17


@njit(**INNER)
def _tile_logits(xf, coef, b, x_scale, z):
    """z[r, :k] = x_scale * coef @ xf[r] + b for the 8 rows of the tile; reads each weight once per tile."""
    k, d = coef.shape
    x0, x1, x2, x3, x4, x5, x6, x7 = xf[0], xf[1], xf[2], xf[3], xf[4], xf[5], xf[6], xf[7]
    for j in range(0, k, 2):
        i = min(j + 1, k - 1)  # odd k: the last pair repeats its class
        w, v = coef[j], coef[i]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = coef.dtype.type(0)
        t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = coef.dtype.type(0)
        for p in range(d):
            s0 += x0[p] * w[p]
            s1 += x1[p] * w[p]
            s2 += x2[p] * w[p]
            s3 += x3[p] * w[p]
            s4 += x4[p] * w[p]
            s5 += x5[p] * w[p]
            s6 += x6[p] * w[p]
            s7 += x7[p] * w[p]
            t0 += x0[p] * v[p]
            t1 += x1[p] * v[p]
            t2 += x2[p] * v[p]
            t3 += x3[p] * v[p]
            t4 += x4[p] * v[p]
            t5 += x5[p] * v[p]
            t6 += x6[p] * v[p]
            t7 += x7[p] * v[p]
        z[0, j], z[1, j], z[2, j], z[3, j], z[4, j], z[5, j], z[6, j], z[7, j] = s0, s1, s2, s3, s4, s5, s6, s7
        z[0, i], z[1, i], z[2, i], z[3, i], z[4, i], z[5, i], z[6, i], z[7, i] = t0, t1, t2, t3, t4, t5, t6, t7
    for r in range(TILE):
        for j in range(k):
            z[r, j] = z[r, j] * x_scale + b[j]


@njit(**INNER)
def _tile_rank_update(g, xf, dcoef):
    """dcoef[j] += sum_r g[r, j] * xf[r]: two gradient rows per pass, rows padded to even k.

    The pixels are loaded before the two stores, so LLVM need not reload them
    for the second row (it cannot prove the stores miss xf): 10 loads per 16
    FMAs keep the loop FMA-bound, ~40% faster than reloading.
    """
    d = xf.shape[1]
    x0, x1, x2, x3, x4, x5, x6, x7 = xf[0], xf[1], xf[2], xf[3], xf[4], xf[5], xf[6], xf[7]
    for j in range(0, dcoef.shape[0], 2):
        u, v = dcoef[j], dcoef[j + 1]
        a0, a1, a2, a3, a4, a5, a6, a7 = g[0, j], g[1, j], g[2, j], g[3, j], g[4, j], g[5, j], g[6, j], g[7, j]
        i = j + 1
        c0, c1, c2, c3, c4, c5, c6, c7 = g[0, i], g[1, i], g[2, i], g[3, i], g[4, i], g[5, i], g[6, i], g[7, i]
        for p in range(d):
            e0, e1, e2, e3, e4, e5, e6, e7 = x0[p], x1[p], x2[p], x3[p], x4[p], x5[p], x6[p], x7[p]
            du = (a0 * e0 + a1 * e1 + a2 * e2 + a3 * e3) + (a4 * e4 + a5 * e5 + a6 * e6 + a7 * e7)
            dv = (c0 * e0 + c1 * e1 + c2 * e2 + c3 * e3) + (c4 * e4 + c5 * e5 + c6 * e6 + c7 * e7)
            u[p] += du
            v[p] += dv


@njit(**INNER)
def _tile_buffers(coef, columns):
    """A tile's buffers: its rows in the compute dtype (TILE, d), its logits
    (TILE, columns), zeroed, and its rows' log-sum-exp and argmax."""
    return (np.empty((TILE, coef.shape[1]), coef.dtype), np.zeros((TILE, columns), coef.dtype),
            np.empty(TILE, coef.dtype), np.empty(TILE, np.int64))


@njit(**INNER)
def _rows_part(q, X, rows, y, sw, coef, b, x_scale, P, part_dcoef, part_db, part_loss, part_hits):
    """Part q of the rows X[rows]: per tile, the logits x_scale * coef @ x + b and their softmax; then,
    where P has rows (linear_softmax), the softmax into P[rows]; else (a gradient) the unscaled
    gradient sums of the part into part_dcoef[q], part_db[q], part_loss[q] (the loss sum) and
    part_hits[q] (the argmax hits).

    Per row, of weight w = sw[row] (1 where sw is empty): g = w (softmax(z) - onehot(y));
    dcoef += g x^T, db += g, loss += w (lse - z[y]). dcoef has k
    rounded up to even rows (the pad row stays 0). The caller multiplies by
    x_scale / n (dcoef) and 1 / n (db) when it adds the parts. One kernel for
    both, as the forward pass is the gradient's first half: it compiles once.
    """
    lo, hi = part_bounds(rows.shape[0], q)
    k = coef.shape[0]
    xf, g, lse, top = _tile_buffers(coef, k + k % 2)
    forward = P.shape[0] > 0
    weighted = sw.shape[0] > 0
    if not forward:
        part_dcoef[q] = 0
        part_db[q] = 0
    loss = 0.0
    hits = 0
    for t in range(lo, hi, TILE):
        m = load_tile(X, rows, t, hi, xf)
        _tile_logits(xf, coef, b, x_scale, g)
        if not forward:
            for r in range(m):
                loss -= (sw[rows[t + r]] if weighted else 1.0) * g[r, y[rows[t + r]]]
        tile_softmax(g, k, m, lse, top)
        if forward:
            for r in range(m):  # loops, not slice copies: those compile string-formatting code
                for j in range(k):
                    P[rows[t + r], j] = g[r, j]
            continue
        for r in range(m):
            label = y[rows[t + r]]
            w = sw[rows[t + r]] if weighted else coef.dtype.type(1)
            loss += w * lse[r]
            hits += top[r] == label
            g[r, label] -= 1
            for j in range(k):
                g[r, j] *= w
                part_db[q, j] += g[r, j]
        g[m:] = 0  # a last, short tile: its pad rows add nothing
        _tile_rank_update(g, xf, part_dcoef[q])
    if not forward:
        part_loss[q], part_hits[q] = loss, hits


@njit(**INNER)
def _hessian_part(q, X, rows, y, sw, both, bias, x_scale, P, part_dcoef, part_db, part_loss, part_hits):
    """Part q's unscaled sums of a Hessian-vector product (hessian.py has the formula), in _rows_part's
    signature so that _batches runs it: both = [coef; vcoef] (2k, d) and bias = [b; vb], so one
    _tile_logits pass over a tile gives the logits at W and along the direction; or, where P has rows
    (the softmax at W, given), both = vcoef and bias = vb alone. Per row, r = rows.hessian_row's, its
    rank update into part_dcoef[q] and its sum into part_db[q]. y unused."""
    lo, hi = part_bounds(rows.shape[0], q)
    given = P.shape[0] > 0
    k = both.shape[0] // (1 if given else 2)
    xf, zu, _, _ = _tile_buffers(both, 2 * k)
    r = np.zeros((TILE, k + k % 2), both.dtype)
    zero = np.zeros(k, both.dtype)  # the logits come scaled and biased: hessian_row adds nothing
    weighted = sw.shape[0] > 0
    part_dcoef[q] = 0
    part_db[q] = 0
    for t in range(lo, hi, TILE):
        m = load_tile(X, rows, t, hi, xf)
        _tile_logits(xf, both, bias, x_scale, zu[:, k:] if given else zu)
        for i in range(m):
            if given:
                for j in range(k):
                    zu[i, j] = P[rows[t + i], j]
            hessian_row(zu[:, :k], zu[:, k:], i, zero, zero, both.dtype.type(1),
                        sw[rows[t + i]] if weighted else both.dtype.type(1), not given)
            for j in range(k):
                r[i, j] = zu[i, j]
                part_db[q, j] += zu[i, j]
        r[m:] = 0  # a last, short tile: its pad rows add nothing
        _tile_rank_update(r, xf, part_dcoef[q])
    part_loss[q], part_hits[q] = 0.0, 0


@njit(**INNER)
def _class_mean(j, part_dcoef, part_db, parts, n, coef_scale, step, rate, weight_decay, dcoef, db, coef, b):
    """Class j's mean gradient over n rows from the first `parts` partial sums, added in part order.
    step False: into dcoef[j], db[j]. step True: dcoef is scratch, and coef[j], b[j] take the SGD
    step in place, coef -= rate * (dcoef + weight_decay * coef), b -= rate * db
    (reduce_element in kernels/linear_softmax_cross_entropy.cu, on the GPU)."""
    g = dcoef[j]
    for p in range(g.shape[0]):
        g[p] = part_dcoef[0, j, p]
    for r in range(1, parts):
        part = part_dcoef[r, j]
        for p in range(g.shape[0]):
            g[p] += part[p]
    for p in range(g.shape[0]):
        g[p] *= coef_scale
    s = part_db[0, j]
    for r in range(1, parts):
        s += part_db[r, j]
    mean_db = s / n
    if step:
        w = coef[j]
        for p in range(w.shape[0]):
            w[p] -= rate * (g[p] + weight_decay * w[p])
        b[j] -= rate * mean_db
    else:
        db[j] = mean_db


@njit(parallel=PRANGE, **JIT)
def _batches(part, reduce, X, y, sw, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
             step, P, dcoef, db, part_dcoef, part_db, part_loss, part_hits):
    """The batches rows[s * batch_size : (s + 1) * batch_size], in order: per batch, its parts in
    parallel (part: _rows_part's address), then, unless reduce is 0 (a forward pass into P), a
    class per task, its mean gradient from the parts' sums (reduce: _class_mean's; step True: the
    SGD step at step start_step + s's rate, else into dcoef, db). Returns the loss sum and the
    argmax hits of all the rows.

    One loop for an epoch (step True), a gradient (step False, one batch of all the rows) and
    linear_softmax (reduce 0, one batch), so that the three share its compiled code.
    """
    n = rows.shape[0]
    loss_sum = 0.0
    correct = 0
    for s in range((n + batch_size - 1) // batch_size):
        batch = rows[s * batch_size : min(n, (s + 1) * batch_size)]
        m = batch.shape[0]
        parts = n_parts(m)
        for q in prange(parts):
            call(part, (np.int64(q), X, batch, y, sw, coef, b, x_scale, P, part_dcoef, part_db, part_loss, part_hits))
        if reduce == 0:
            continue
        rate = coef.dtype.type(learning_rate(kind, lr, total_steps, start_step + s))
        coef_scale = dcoef.dtype.type(x_scale / m)  # float32 stays float32: no per-element casts
        if dcoef.size * parts >= PARALLEL_REDUCE:
            for j in prange(dcoef.shape[0]):
                call(reduce, (np.int64(j), part_dcoef, part_db, parts, m, coef_scale, step, rate, weight_decay,
                              dcoef, db, coef, b))
        else:  # too little to share: a parallel launch would cost more than it saves
            for j in range(dcoef.shape[0]):
                call(reduce, (np.int64(j), part_dcoef, part_db, parts, m, coef_scale, step, rate, weight_decay,
                              dcoef, db, coef, b))
        for q in range(parts):
            loss_sum += part_loss[q]
            correct += part_hits[q]
    return loss_sum, correct


_NO_LABELS = np.empty(0, np.int64)  # y of a forward pass



@functools.cache
def _empty(dtype, k):
    """Empty stand-ins: a forward pass's P (in a gradient), and a gradient's mean (dcoef, db) and
    partial sums (dcoef, db, loss, hits) (in a forward pass), never written."""
    return (np.empty((0, k), dtype), np.empty((0, 0), dtype), np.empty(0, dtype),
            np.empty((0, 0, 0), dtype), np.empty((0, 0), dtype), np.empty(0), np.empty(0, np.int64))


def _part_buffers(n, coef):
    """The partial sums of n rows: dcoef (k rounded up to even rows), db, loss, hits."""
    parts = n_parts(n)
    k, d = coef.shape
    return (np.empty((parts, k + k % 2, d), coef.dtype), np.empty((parts, k), coef.dtype),
            np.empty(parts), np.empty(parts, np.int64))


def _gradient(X, y, sw, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step, step,
              dcoef, db):
    """_batches over X[rows] with a gradient's kernels: (loss sum, hits, each part's loss sum, hits)."""
    t = coef.dtype.type
    no_rows = _empty(coef.dtype, coef.shape[0])[0]
    sw = unweighted(coef.dtype) if sw is None else sw
    buffers = _part_buffers(min(batch_size, rows.shape[0]), coef)
    part = entry(_rows_part, (0, X, rows, y, sw, coef, b, t(0), no_rows, *buffers), (X, rows, y, coef, b))
    reduce = entry(_class_mean, (0, buffers[0], buffers[1], 0, 0, t(0), True, t(0), t(0), dcoef, db, coef, b),
                   (dcoef, db, coef, b))
    loss_sum, correct = _batches(part, reduce, X, y, sw, rows, coef, b, batch_size, t(x_scale), t(weight_decay), kind,
                                 float(lr), total_steps, start_step, step, no_rows, dcoef, db, *buffers)
    return loss_sum, correct, buffers[2], buffers[3]


def linear_softmax(X, coef, b, x_scale):
    n, t = X.shape[0], coef.dtype
    P, rows, x_scale, zero = np.empty((n, coef.shape[0]), t), np.arange(n), t.type(x_scale), t.type(0)
    _, dcoef, db, *sums = _empty(t, coef.shape[0])  # a forward pass: no labels, no gradient
    sw = unweighted(t)
    part = entry(_rows_part, (0, X, rows, _NO_LABELS, sw, coef, b, x_scale, P, *sums), (X, coef, b))
    _batches(part, 0, X, _NO_LABELS, sw, rows, coef, b, max(n, 1), x_scale, zero, CONSTANT, 0.0, 1, 0, False, P, dcoef,
             db, *sums)
    return P


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    n = X.shape[0]
    if not (coef.flags.writeable and b.flags.writeable):  # _class_mean's code (an SGD step) writes them: Numba
        coef, b = coef.copy(), b.copy()                 # types it for writable weights, whether it steps or not
    dcoef, db = np.empty_like(coef), np.empty_like(b)
    *_, part_loss, part_hits = _gradient(X, y, sample_weight, np.arange(n), coef, b, max(n, 1), x_scale, 0, CONSTANT, 0.0, 1, 0, False,
                                         dcoef, db)
    return np.asarray(part_loss.sum() / n, coef.dtype), np.asarray(part_hits.sum()), dcoef, db


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight):
    loss_sum, correct, *_ = _gradient(X, y, sample_weight, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                      start_step, True, np.empty_like(coef), np.empty_like(b))
    return np.asarray(loss_sum), np.asarray(correct)


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    """Backend.linear_softmax_hessian_product on the register tiles: _hessian_part's sums by parts, their
    means by _class_mean (x_scale / n for the weights, 1 / n for the bias)."""
    n, t, k = X.shape[0], coef.dtype, coef.shape[0]
    if P is None:
        both, bias, P = np.concatenate([coef, vcoef]), np.concatenate([b, vb]), _empty(t, k)[0]
    else:  # the softmax at W given: the tiles compute the direction's logits alone
        both, bias = vcoef.copy(), vb.copy()  # writable, as _class_mean's types want them
    sw = unweighted(t) if sample_weight is None else sample_weight
    rows, buffers = np.arange(n), _part_buffers(n, coef)
    hcoef, hb, zero = np.empty_like(coef), np.empty_like(b), t.type(0)
    part = entry(_hessian_part, (0, X, rows, _NO_LABELS, sw, both, bias, zero, P, *buffers), (X, both, bias, P))
    reduce = entry(_class_mean, (0, buffers[0], buffers[1], 0, 0, zero, True, zero, zero, hcoef, hb, both, bias),
                   (hcoef, hb, both, bias))
    _batches(part, reduce, X, _NO_LABELS, sw, rows, both, bias, max(n, 1), t.type(x_scale), zero, CONSTANT, 0.0, 1, 0,
             False, P, hcoef, hb, *buffers)
    return hcoef, hb
