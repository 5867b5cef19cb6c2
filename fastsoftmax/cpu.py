"""Numba CPU kernels: the backend for NumPy arrays (the contract: backend.Backend).

The weights are held transposed, ``coef`` (k, d) C-contiguous, so that a
class's logit is a contiguous dot product over the d features of a row and a
gradient row is a contiguous axpy: inner loops LLVM turns into SIMD code.

Register tiles: rows go through the kernels TILE at a time. A tile's rows are
first converted to the compute dtype into a small buffer (uint8 pixels are
read as bytes, once), then each pass over a weight row serves all TILE rows:
the forward pass computes a TILE x 2 block of logits per pass over two weight
rows, the backward pass adds a TILE-row rank update to two gradient rows per
pass. ``x_scale`` is applied once per logit and once per gradient sum, never
per pixel.

Rows are split into parts whose bounds depend on the row count alone
(``n_parts``); the parts run in parallel and their partial sums are added in
part order, so a result depends on the input alone, never on the thread count
or scheduling. One pass over a part's rows (``_rows_part``: the softmax, and
for a gradient its partial sums) and one reduction (``_class_mean``) serve
linear_softmax, the one-call gradient and every step of the training epoch.

Compile time: Numba compiles a function per signature on its first call, then
loads it from its cache (jitcache.py). A parallel loop compiles at four levels
(its body, two wrappers, the function that holds it), and a function called
from another is optimised and compiled to machine code again inside each
level that calls it: with the parts called directly, a first fit compiled the
tile code six times over, 11.6 s on the 2-core EPYC. Here the parallel loops
call their kernels through the kernels' addresses (``_entry``, ``_call``): a
loop compiles small and a kernel once per signature, and one loop
(``_batches``) and one kernel (``_rows_part``) serve the forward pass, the
gradient and the epoch. A first fit's kernels now compile in ~4 s; the
table, function by function, is in the closing note of issue 17.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir
from numba import prange, typeof, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .jitcache import CACHE, njit
from .permutation import halves, permute, round_keys
from .schedules import CONSTANT, learning_rate

# Reassociation lets LLVM vectorise the dot-product sums; no 'nnan'/'ninf', so
# a NaN or inf in the input still shows in the output rather than vanishing.
# error_model "numpy": a division by zero gives inf, as in NumPy, rather than a
# check and a Python exception per division (0.5 s less to compile; the
# softmax denominators are >= 1 anyway).
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
# cache: in jitcache's directory (False where none can be written); njit is jitcache's.
_JIT = {"cache": CACHE, "fastmath": _FASTMATH, "nogil": True, "error_model": "numpy"}
# The functions called from jitted code alone compile without the wrappers a call from Python or
# from C needs (their unboxing code is as large as a small kernel: 12% of a first fit's compile).
_INNER = {**_JIT, "no_cpython_wrapper": True, "no_cfunc_wrapper": True}
# The parallel loops are the prange loops alone: no array expression becomes one of its own.
_PRANGE = {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False, "setitem": False,
           "numpy": False, "stencil": False, "fusion": False}

# Rows per register tile: 8 rows x 2 classes = 16 vector accumulators and 10
# loads per 16 FMAs, so the inner loops are FMA-bound and fit the 32 AVX-512
# registers; each pass over a weight row serves 8 rows. Measured against 4
# rows: a 60000-row epoch takes 15.5 ms rather than 17.5 ms on the 2-core Xeon.
# Not a knob: _tile_logits and _tile_rank_update are written out for exactly
# 8 rows (their tiles come from _tile_buffers).
TILE = 8
# 64 rows keep a part's work (~2 MFLOP) far above the ~1.5 us cost of a
# parallel launch, and give a 256-row minibatch 4 parts (measured faster on 2
# cores than 2 or 8); 16 parts bound the partial-gradient buffers at 16 * k * d.
ROWS_PER_PART = 64
MAX_PARTS = 16
# Up to this many rows, count_correct runs on one thread: an argmax is ~5 ns a
# row, and a parallel launch costs more than 2048 rows (a minibatch: 3x faster).
SERIAL_ROWS = 2048


@njit(**_JIT)
def n_parts(n_rows):
    """How many parts n_rows rows split into: the one count every kernel and buffer uses."""
    return max(1, min(MAX_PARTS, (n_rows + ROWS_PER_PART - 1) // ROWS_PER_PART))


# The schedule's own float64 formula (schedules.py), compiled without fastmath
# so that it rounds as the plain Python function does: the reference's rates to
# the last bit, rounded once to the compute dtype in _batches.
_learning_rate = njit(cache=CACHE, nogil=True, error_model="numpy")(learning_rate)


@intrinsic
def _prefetch(typingctx, arr, index):
    """Ask for the cache line holding arr[index] (llvm.prefetch: a read, into L2).

    Minibatch rows come in shuffled order, which the hardware prefetcher cannot
    guess: fetching the next tile's rows while this one computes hides most of
    the memory latency (~1 ms of a 60000-row epoch on the 2-core Xeon; into L2
    measured a little faster than into L1).
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@intrinsic
def _call(typingctx, address, args):
    """Call the compiled kernel whose native entry point is at address (an int from _entry, which
    compiled it for exactly the types of the tuple args) with args; it returns nothing.

    The call Numba makes for a first-class function value, without the value: a parallel loop
    calling its kernel so leaves the kernel's code out of its own compilation (the module
    docstring), and an int crosses from Python in nanoseconds where a function value takes
    ~10 us to unbox on every call. The kernels raise nothing (no checks inside, NumPy's error
    model), so the status of the call is not looked at.
    """
    if not (isinstance(address, types.Integer) and isinstance(args, types.BaseTuple)):
        return None

    def codegen(context, builder, sig, llargs):
        argtypes = tuple(args.types)
        pointer = context.call_conv.get_function_type(types.none, argtypes).as_pointer()
        kernel = builder.inttoptr(llargs[0], pointer)
        values = [builder.extract_value(llargs[1], i) for i in range(len(argtypes))]
        context.call_conv.call_function(builder, kernel, types.none, argtypes, values)
        return context.get_dummy_value()

    return types.none(address, args), codegen


@njit(**_INNER)
def _load_tile(X, rows, lo, hi, xf):
    """xf[r] = X[rows[lo + r]] in xf's dtype, rows past hi - lo zeroed; prefetches the next
    tile. Returns the tile's row count, min(TILE, hi - lo)."""
    line = max(1, 64 // X.itemsize)
    for r in range(TILE, 2 * TILE):
        if lo + r < hi:
            x = X[rows[lo + r]]
            for p in range(0, x.shape[0], line):
                _prefetch(x, p)
    for r in range(TILE):
        if lo + r < hi:
            x = X[rows[lo + r]]
            for p in range(xf.shape[1]):
                xf[r, p] = x[p]
        else:
            xf[r, :] = 0
    return min(TILE, hi - lo)


@njit(**_INNER)
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


@njit(**_INNER)
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


@njit(**_INNER)
def _argmax(z, i, k):
    """(index of the first maximum of z[i, :k], as np.argmax; the maximum).

    Indexes z[i, j] itself: taking the row view z[i, :k] per call made
    counting a minibatch's hits 2.4x slower.
    """
    top, best = 0, z[i, 0]
    for j in range(1, k):
        v = z[i, j]
        better = v > best
        top = j if better else top
        best = v if better else best
    return top, best


def _exp(x):
    """exp(x) for x <= 0: the float32 polynomial below, math.exp otherwise (see the overload)."""
    return math.exp(x)


@njit(**_INNER)
def _expf(x):
    """exp(x) for float32 x <= 0, within 2 ulp: Cephes' expf (Moshier), without libm.

    Plain arithmetic that LLVM vectorises, where a call to libm's expf is one
    value at a time: the softmax of a 60000-row epoch takes ~1 ms less. Below
    -87 it returns ~1e-38 rather than a denormal; the softmax adds it to 1.
    """
    x = np.float32(-87.0) if x < np.float32(-87.0) else x  # noqa: FURB136 - max() would turn NaN into -87
    i = np.int32(x * np.float32(1.44269504088896341) - np.float32(0.5))  # round(x / ln 2), x <= 0
    n = np.float32(i)
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)  # x - n ln 2, in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1)
    return p * np.int32((i + 127) << 23).view(np.float32)  # * 2**n, built in the exponent bits


@overload(_exp, jit_options=_JIT)
def _exp_overload(x):
    if x == types.float32:
        return lambda x: _expf(x)
    return lambda x: math.exp(x)  # float64 keeps libm's exactly rounded exp


@njit(**_INNER)
def _tile_softmax(z, k, m, lse, top):
    """z[r, :k] = softmax(z[r, :k]) in place for the first m rows of a tile;
    lse[r] gets the row's log-sum-exp and top[r] its argmax. Columns past k
    (a gradient tile's pad) are set to 0.

    Max-subtracted, so logits of magnitude ~1e4 stay finite. A pass at a time
    over the whole tile, not a row at a time: one vectorised exp loop over
    m * z.shape[1] values, and the rows' divisions overlap.
    """
    kp = z.shape[1]
    for r in range(m):
        top[r], lse[r] = _argmax(z, r, k)
        for j in range(kp):
            z[r, j] -= lse[r]
    flat = z[:m].reshape(m * kp)
    for i in range(flat.shape[0]):
        flat[i] = _exp(flat[i])
    for r in range(m):
        s = z.dtype.type(0)
        for j in range(k):
            s += z[r, j]
        inv = z.dtype.type(1) / s
        for j in range(k):
            z[r, j] *= inv
        for j in range(k, kp):
            z[r, j] = 0
        lse[r] += math.log(s)


@njit(**_INNER)
def _part_bounds(n, q):
    """Rows lo..hi-1 of part q of n rows: they depend on n alone, never on the threads."""
    parts = n_parts(n)
    return n * q // parts, n * (q + 1) // parts


@njit(**_INNER)
def _tile_buffers(coef, columns):
    """A tile's buffers: its rows in the compute dtype (TILE, d), its logits
    (TILE, columns), zeroed, and its rows' log-sum-exp and argmax."""
    return (np.empty((TILE, coef.shape[1]), coef.dtype), np.zeros((TILE, columns), coef.dtype),
            np.empty(TILE, coef.dtype), np.empty(TILE, np.int64))


# ---- the part kernels: each computes part q of its rows, called by a parallel loop through its address ----


@njit(**_INNER)
def _rows_part(q, X, rows, y, coef, b, x_scale, P, part_dcoef, part_db, part_loss, part_hits):
    """Part q of the rows X[rows]: per tile, the logits x_scale * coef @ x + b and their softmax; then,
    where P has rows (linear_softmax), the softmax into P[rows]; else (a gradient) the unscaled
    gradient sums of the part into part_dcoef[q], part_db[q], part_loss[q] (the loss sum) and
    part_hits[q] (the argmax hits).

    Per row: g = softmax(z) - onehot(y); dcoef += g x^T, db += g. dcoef has k
    rounded up to even rows (the pad row stays 0). The caller multiplies by
    x_scale / n (dcoef) and 1 / n (db) when it adds the parts. One kernel for
    both, as the forward pass is the gradient's first half: it compiles once.
    """
    lo, hi = _part_bounds(rows.shape[0], q)
    k = coef.shape[0]
    xf, g, lse, top = _tile_buffers(coef, k + k % 2)
    forward = P.shape[0] > 0
    if not forward:
        part_dcoef[q] = 0
        part_db[q] = 0
    loss = 0.0
    hits = 0
    for t in range(lo, hi, TILE):
        m = _load_tile(X, rows, t, hi, xf)
        _tile_logits(xf, coef, b, x_scale, g)
        if not forward:
            for r in range(m):
                loss -= g[r, y[rows[t + r]]]
        _tile_softmax(g, k, m, lse, top)
        if forward:
            for r in range(m):  # loops, not slice copies: those compile string-formatting code
                for j in range(k):
                    P[rows[t + r], j] = g[r, j]
            continue
        for r in range(m):
            label = y[rows[t + r]]
            loss += lse[r]
            hits += top[r] == label
            g[r, label] -= 1
            for j in range(k):
                part_db[q, j] += g[r, j]
        g[m:] = 0  # a last, short tile: its pad rows add nothing
        _tile_rank_update(g, xf, part_dcoef[q])
    if not forward:
        part_loss[q], part_hits[q] = loss, hits


@njit(**_INNER)
def _class_mean(j, part_dcoef, part_db, parts, n, coef_scale, step, rate, weight_decay, dcoef, db, coef, b):
    """Class j's mean gradient over n rows from the first `parts` partial sums, added in part order.
    step False: into dcoef[j], db[j]. step True: dcoef is scratch, and coef[j], b[j] take the SGD
    step in place, coef -= rate * (dcoef + weight_decay * coef), b -= rate * db
    (kernels/linear_softmax_cross_entropy.cu's reduce_partials, on the GPU)."""
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


@njit(**_INNER)
def _cross_entropy_part(q, logits, y, dlogits, part_loss):
    """Part q of the rows: dlogits = (softmax(logits) - onehot(y)) / n, part_loss[q] = the rows' loss sum."""
    n, k = logits.shape
    lo, hi = _part_bounds(n, q)
    lse = np.empty(TILE, logits.dtype)
    top = np.empty(TILE, np.int64)
    loss = 0.0
    for t in range(lo, hi, TILE):
        m = min(TILE, hi - t)
        g = dlogits[t : t + m]
        for r in range(m):
            for j in range(k):
                g[r, j] = logits[t + r, j]
        _tile_softmax(g, k, m, lse, top)
        for r in range(m):
            label = y[t + r]
            loss += lse[r] - logits[t + r, label]
            g[r, label] -= 1
            for j in range(k):
                g[r, j] /= n
    part_loss[q] = loss


@njit(**_JIT)
def _count_rows_correct(scores, y, lo, hi):
    """How many of the rows lo..hi-1 have their argmax at y."""
    hits = 0
    for i in range(lo, hi):
        hits += _argmax(scores, i, scores.shape[1])[0] == y[i]
    return hits


# ---- the parallel loops: a prange over the parts (or classes), calling a kernel through its address ----


@njit(parallel=_PRANGE, **_JIT)
def _batches(part, reduce, X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
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
            _call(part, (np.int64(q), X, batch, y, coef, b, x_scale, P, part_dcoef, part_db, part_loss, part_hits))
        if reduce == 0:
            continue
        rate = coef.dtype.type(_learning_rate(kind, lr, total_steps, start_step + s))
        coef_scale = dcoef.dtype.type(x_scale / m)  # float32 stays float32: no per-element casts
        for j in prange(dcoef.shape[0]):
            _call(reduce, (np.int64(j), part_dcoef, part_db, parts, m, coef_scale, step, rate, weight_decay, dcoef, db,
                           coef, b))
        for q in range(parts):
            loss_sum += part_loss[q]
            correct += part_hits[q]
    return loss_sum, correct


@njit(parallel=_PRANGE, **_JIT)
def _softmax_cross_entropy(part, logits, y, dlogits, part_loss):
    for q in prange(n_parts(logits.shape[0])):
        _call(part, (np.int64(q), logits, y, dlogits, part_loss))


@njit(parallel=_PRANGE, **_JIT)
def _count_correct(scores, y, part_hits):
    n = scores.shape[0]
    for q in prange(n_parts(n)):  # a small loop body: compiled in place
        lo, hi = _part_bounds(n, np.int64(q))
        part_hits[q] = _count_rows_correct(scores, y, lo, hi)


@njit(**_JIT)
def _permutation(n, half, mask, k0, k1, k2, k3, order):
    """order[i] = the row that position i of the epoch visits (fastsoftmax/permutation.py); ~7 ns a row."""
    for i in range(order.shape[0]):
        order[i] = permute(np.uint64(i), n, half, mask, k0, k1, k2, k3)


# ---- the kernels' addresses, and the buffers of a call ----

_ENTRIES = {}  # (kernel, the kinds of the caller's arrays) -> the address of the kernel's native entry point


def _kind(a):
    """What Numba's type of an array depends on (numba.typeof): its dtype, dimensions, layout and writeability."""
    flags = a.flags
    return a.dtype, a.ndim, "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A", flags.writeable


def _entry(kernel, args, given):
    """The address of kernel's native entry point for the types of args (q first), compiled on first
    need, for _call. Memoised by the kinds of `given`, the caller's arrays among args: the other
    arguments are made here, of types that follow from theirs."""
    key = (kernel, *map(_kind, given))
    address = _ENTRIES.get(key)
    if address is None:
        signature = tuple(map(typeof, args))
        kernel.compile(signature)
        compiled = kernel.overloads[signature]
        address = _ENTRIES[key] = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    return address


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


def _gradient(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step, step,
              dcoef, db):
    """_batches over X[rows] with a gradient's kernels: (loss sum, hits, each part's loss sum, hits)."""
    t = coef.dtype.type
    no_rows = _empty(coef.dtype, coef.shape[0])[0]
    buffers = _part_buffers(min(batch_size, rows.shape[0]), coef)
    part = _entry(_rows_part, (0, X, rows, y, coef, b, t(0), no_rows, *buffers), (X, rows, y, coef, b))
    reduce = _entry(_class_mean, (0, buffers[0], buffers[1], 0, 0, t(0), True, t(0), t(0), dcoef, db, coef, b),
                    (dcoef, db, coef, b))
    loss_sum, correct = _batches(part, reduce, X, y, rows, coef, b, batch_size, t(x_scale), t(weight_decay), kind,
                                 float(lr), total_steps, start_step, step, no_rows, dcoef, db, *buffers)
    return loss_sum, correct, buffers[2], buffers[3]


# ---- the backend contract (backend.Backend) ----
#
# By shape: the register-tiled kernels above, or, from cpu_blas.BLAS_MIN_CLASSES
# classes (a measured crossover), cpu_blas's path: sgemm for the two matmuls and
# a fused Numba pass over each chunk of logits. Imported here, below the
# kernels it reuses (cpu_blas imports them from this module).

from . import cpu_blas


def linear_softmax(X, coef, b, x_scale):
    if cpu_blas.use_blas(*coef.shape):
        return cpu_blas.linear_softmax(X, coef, b, x_scale)
    n, t = X.shape[0], coef.dtype
    P, rows, x_scale, zero = np.empty((n, coef.shape[0]), t), np.arange(n), t.type(x_scale), t.type(0)
    _, dcoef, db, *sums = _empty(t, coef.shape[0])  # a forward pass: no labels, no gradient
    part = _entry(_rows_part, (0, X, rows, _NO_LABELS, coef, b, x_scale, P, *sums), (X, coef, b))
    _batches(part, 0, X, _NO_LABELS, rows, coef, b, max(n, 1), x_scale, zero, CONSTANT, 0.0, 1, 0, False, P, dcoef,
             db, *sums)
    return P


def softmax_cross_entropy(logits, y):
    dlogits = np.empty_like(logits)
    part_loss = np.empty(n_parts(logits.shape[0]))
    args = (logits, y, dlogits, part_loss)
    _softmax_cross_entropy(_entry(_cross_entropy_part, (0, *args), (logits, y)), *args)
    return np.asarray(part_loss.sum() / logits.shape[0], logits.dtype), dlogits


def linear_softmax_cross_entropy(X, coef, b, y, x_scale):
    if cpu_blas.use_blas(*coef.shape):
        return cpu_blas.linear_softmax_cross_entropy(X, coef, b, y, x_scale)
    n = X.shape[0]
    if not (coef.flags.writeable and b.flags.writeable):  # _class_mean's code (an SGD step) writes them: Numba
        coef, b = coef.copy(), b.copy()                 # types it for writable weights, whether it steps or not
    dcoef, db = np.empty_like(coef), np.empty_like(b)
    *_, part_loss, part_hits = _gradient(X, y, np.arange(n), coef, b, max(n, 1), x_scale, 0, CONSTANT, 0.0, 1, 0, False,
                                         dcoef, db)
    return np.asarray(part_loss.sum() / n, coef.dtype), np.asarray(part_hits.sum()), dcoef, db


def count_correct(scores, y):
    n = scores.shape[0]
    if n <= SERIAL_ROWS:
        return np.asarray(_count_rows_correct(scores, y, 0, n))
    part_hits = np.empty(n_parts(n), np.int64)
    _count_correct(scores, y, part_hits)
    return np.asarray(part_hits.sum())


def shuffle(n, seed, epoch):
    order = np.empty(n, np.int64)
    _permutation(*(np.uint64(v) for v in (n, *halves(n), *round_keys(seed, epoch))), order)
    return order


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
    if cpu_blas.use_blas(*coef.shape):
        return cpu_blas.train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                    start_step)
    loss_sum, correct, *_ = _gradient(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                      start_step, True, np.empty_like(coef), np.empty_like(b))
    return np.asarray(loss_sum), np.asarray(correct)
