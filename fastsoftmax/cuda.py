"""CUDA kernels through CuPy: the backend for CuPy arrays (contract in backend.py).

The CUDA C++ sources live in ``kernels/*.cu`` (shipped as the package
``fastsoftmax.kernels``). Each is compiled by NVRTC at first use, one template
instantiation at a time: the compute type (W's dtype), X's dtype and the
number of classes K are template parameters, so a row's K logits stay in
registers. CuPy caches the binaries on disk, so a later process only loads them.

Nothing here waits for the GPU: results come back as (0-d) CuPy arrays. A
training epoch is two launches: one writes the epoch's order of rows
(shuffle_rows, from the seed: no permutation crosses from the host), and one
persistent kernel (sgd_epoch) takes every SGD step of the epoch, its blocks
meeting at grid barriers instead of at launch boundaries.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import cupy as cp
import numpy as np

from .kernels import source
from .kernels.geometry import (
    FORWARD_ROWS_PER_BLOCK,
    PART_EXTRA,
    ROWS_PER_WARP_BLOCK,
    THREADS,
    TRAIN_GROUP_SIZES,
    template_id,
)
from .permutation import halves, round_keys
from .schedules import learning_rate

# Two resident blocks per SM: one stages its tile while the other computes.
BLOCKS_PER_SM = 2


def device_attribute(name: str) -> int:
    """The current GPU's cudaDevAttr<name>, e.g. device_attribute("MultiProcessorCount")."""
    return _attribute(name, cp.cuda.runtime.getDevice())


@functools.cache
def _attribute(name: str, device: int) -> int:
    return cp.cuda.runtime.deviceGetAttribute(getattr(cp.cuda.runtime, f"cudaDevAttr{name}"), device)


def _kernel(family: str, expr: str):
    return _compiled(family, expr, cp.cuda.runtime.getDevice())


@functools.cache
def _compiled(family: str, expr: str, device: int):
    kernel = cp.RawModule(code=source(family), options=("--std=c++17",), name_expressions=(expr,)).get_function(expr)
    # Past 48 KB a block's dynamic shared memory must be opted into, per kernel.
    kernel.max_dynamic_shared_size_bytes = _attribute("MaxSharedMemoryPerBlockOptin", device) - kernel.shared_size_bytes
    return kernel


def _shared_memory_limit() -> int:
    return device_attribute("MaxSharedMemoryPerBlockOptin")


def _max_blocks() -> int:
    return BLOCKS_PER_SM * device_attribute("MultiProcessorCount")


# A null pointer argument: CuPy passes an 8-byte integer scalar as it is.
NULL = np.uint64(0)


def _pad4(d: int) -> int:
    return -(-d // 4) * 4


def _rows_aligned(a, values: int) -> bool:
    """Every row of the C-contiguous a starts on a `values`-element vector boundary."""
    width = values * a.itemsize
    return a.shape[1] % values == 0 and a.data.ptr % width == 0


def _vec16(a) -> np.int32:
    """1 when every row of a starts 16-byte aligned, so rows copy in 16-byte chunks."""
    return np.int32(a.shape[1] * a.itemsize % 16 == 0 and a.data.ptr % 16 == 0)


# ---- the backend contract (see backend.py) ----


def linear_softmax(X, coef, b, x_scale):
    n, d = X.shape
    k = coef.shape[0]
    t = coef.dtype
    smem = _forward_smem(coef)
    if smem > _shared_memory_limit():
        return _large_linear_softmax(X, coef, b, x_scale)
    v = 4 if _rows_aligned(X, 4) else 1
    P = cp.empty((n, k), t)
    grid = min(-(-n // FORWARD_ROWS_PER_BLOCK), _max_blocks())
    _kernel("linear_softmax", template_id("linear_softmax", t, X.dtype, k, v))(
        (grid,),
        (THREADS,),
        (X, coef, b, t.type(x_scale), np.int64(n), np.int32(d), _vec16(coef), P),
        shared_mem=smem,
    )
    return P


class _GradientPass:
    """The training kernel's launch for batches of `rows` rows on at most
    `blocks` blocks: lane group size G, grid and shared memory. A pure function
    of the shapes and the device, so the same batch always splits into the
    same partial sums (reproducibility).
    """

    def __init__(self, rows: int, X, coef, blocks: int):
        k, d = coef.shape
        self.k, self.d, self.t = k, d, coef.dtype

        def smem(g):
            return _gradient_smem(g, k, d, coef.itemsize, X.itemsize)

        fits = [g for g in TRAIN_GROUP_SIZES if smem(g) <= _shared_memory_limit()]  # callers checked _gradient_fits
        # The smallest group (fewest shuffles per row) that still gives every
        # block a tile; for a minibatch that is the largest group.
        self.g = next((g for g in fits if -(-rows // (THREADS // g)) >= blocks), fits[-1])
        self.smem = smem(self.g)
        self.grid = min(-(-rows // (THREADS // self.g)), blocks)
        self.part_size = k * d + k + PART_EXTRA

    def kernel(self, name: str, X):
        return _kernel("linear_softmax_cross_entropy", template_id(name, self.t, X.dtype, self.k, self.g))

    def gradient(self, X, rows, first, nrows, y, coef, b, x_scale, part):
        """Partial sums of rows first..first+nrows of the batch (rows[first + i] of X, or first + i for NULL)."""
        self.kernel("linear_softmax_cross_entropy", X)(
            (self.grid,),
            (THREADS,),
            (
                X,
                rows,
                np.int64(first),
                np.int32(nrows),
                y,
                coef,
                b,
                self.t.type(x_scale),
                np.int32(self.d),
                _vec16(X),
                _vec16(coef),
                part,
            ),
            shared_mem=self.smem,
        )

    def reduce(self, part, nrows, x_scale, w, b, loss, correct):
        """The mean gradient into w, b and the mean loss, from the partial sums added in block order."""
        t = self.t.type
        _kernel("linear_softmax_cross_entropy", template_id("reduce_partials", self.t))(
            (-(-self.part_size // THREADS),),
            (THREADS,),
            (part, np.int32(self.grid), np.int32(self.k), np.int32(self.d), np.int32(nrows), t(x_scale), w, b,
             loss, correct),
        )


def linear_softmax_cross_entropy(X, coef, b, y, x_scale):
    if not _gradient_fits(X, coef):
        return _large_linear_softmax_cross_entropy(X, coef, b, y, x_scale)
    n = X.shape[0]
    grads = _GradientPass(n, X, coef, _max_blocks())
    part = cp.empty((grads.grid, grads.part_size), coef.dtype)
    dcoef, db = cp.empty_like(coef), cp.empty_like(b)
    loss, correct = cp.empty((), coef.dtype), cp.empty((), cp.int64)
    grads.gradient(X, NULL, 0, n, y, coef, b, x_scale, part)
    grads.reduce(part, n, x_scale, dcoef, db, loss, correct)
    return loss, correct, dcoef, db


def softmax_cross_entropy(logits, y):
    n, k = logits.shape
    t = logits.dtype
    blocks = -(-n // THREADS)
    dlogits, part, loss = cp.empty_like(logits), cp.empty(blocks, t), cp.empty((), t)
    _kernel("softmax_cross_entropy", template_id("softmax_cross_entropy", t, k))(
        (blocks,), (THREADS,), (logits, y, np.int32(n), dlogits, part)
    )
    _kernel("softmax_cross_entropy", template_id("mean_of_partials", t))(
        (1,), (THREADS,), (part, np.int32(blocks), np.int32(n), loss)
    )
    return loss, dlogits


def count_correct(scores, y):
    n, k = scores.shape
    count = cp.zeros((), cp.uint64)  # the kernel adds each block's hits to it (atomicAdd is unsigned)
    _kernel("accuracy", template_id("count_correct", scores.dtype, k))(
        (-(-n // THREADS),), (THREADS,), (scores, y, np.int32(n), count)
    )
    return count.view(cp.int64)  # the contract's int64: the same bits for any count


class _Epoch:
    """sgd_epoch's launch for one run's shapes: one cooperative launch an epoch,
    whose blocks (one per SM, so all are resident) step through every batch
    together (kernels/linear_softmax_cross_entropy.cu). Holds the partial sums,
    the grid barrier's words and the run's step counter, which the kernel
    advances itself: for the next epoch of a run the host launches and nothing else.
    """

    def __init__(self, X, coef, n, batch_size):
        self.grads = _GradientPass(min(batch_size, n), X, coef, device_attribute("MultiProcessorCount"))
        self.kernel = self.grads.kernel("sgd_epoch", X)
        self.part = cp.empty((self.grads.grid, self.grads.part_size), coef.dtype)
        self.barrier = cp.zeros(2, cp.uint32)
        self.first_step = cp.zeros(1, cp.int64)
        self.next_step = 0  # what first_step holds, as the host last left it
        self.steps = -(-n // batch_size)

    def __call__(self, X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
        if start_step != self.next_step:  # a new run, or a resumed one: else the kernel has advanced it
            self.first_step.fill(start_step)
        t = coef.dtype.type
        loss, hits = cp.empty((), coef.dtype), cp.empty((), cp.int64)
        self.kernel(
            (self.grads.grid,),
            (THREADS,),
            (X, y, rows, np.int64(rows.shape[0]), np.int32(batch_size), coef, b, t(x_scale),
             np.int32(self.grads.d), _vec16(X), _vec16(coef), t(weight_decay), np.int32(kind), np.float64(lr),
             np.int64(total_steps), self.first_step, self.part, loss, hits, self.barrier),
            shared_mem=self.grads.smem,
            enable_cooperative_groups=True,
        )
        self.next_step = start_step + self.steps
        return loss, hits


_EPOCHS: OrderedDict[tuple, _Epoch] = OrderedDict()
_MAX_EPOCHS = 8  # launches kept; each holds its partial-sum buffer


def shuffle(n, seed, epoch):
    order = cp.empty(n, cp.int64)
    half, mask = halves(n)
    _kernel("shuffle", "shuffle_rows")(
        (min(-(-n // THREADS), _max_blocks()),),
        (THREADS,),
        (order, np.uint64(n), np.uint32(half), np.uint64(mask), *(np.uint64(k) for k in round_keys(seed, epoch))),
    )
    return order


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
    if not _gradient_fits(X, coef):
        return _large_train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                  start_step)
    key = (cp.cuda.runtime.getDevice(), rows.shape[0], batch_size, X.dtype.str, coef.shape, coef.dtype.str)
    epoch = _EPOCHS.pop(key, None) or _Epoch(X, coef, rows.shape[0], batch_size)
    _EPOCHS[key] = epoch
    while len(_EPOCHS) > _MAX_EPOCHS:
        _EPOCHS.popitem(last=False)
    return epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step)


# ---- the large-shape path: W does not fit in shared memory ----
#
# The kernels above keep W (k x d) in shared memory, so they stop at about
# 58 000 weights (linear_softmax, fp32) or 28 000 (training, which also holds
# dW). Beyond that the matmuls go to cuBLAS (cupy.matmul), which tiles W
# through shared memory itself, and what is fused is the rest: one pass over
# each chunk of logits (kernels/softmax_rows.cu) takes x_scale, the bias, the
# softmax, the loss, the argmax and g = softmax - onehot, in place. Rows go in
# chunks of at most _chunk_rows(k, d), so the extra memory is O(chunk x k +
# chunk x d + k x d), never n x k (uint8 X is converted a chunk at a time).
# Choosing by shape keeps the fused kernels where W fits: they read X once and
# write no logits at all.
#
# Expected cost at k = 1000, d = 2048, fp32, on an H100 (NOT measured: no GPU
# has run it): per row the two GEMMs (logits, then dW = G^T X) are 2 x 2kd =
# 8.2 MFLOP, 0.16 us at cuBLAS's ~50 TFLOP/s FP32; the chunk pass moves ~24 KB
# per row (the GEMM writes 4 KB of logits, softmax_rows reads them twice and
# writes G, the dW GEMM and db read G) plus 16 KB of fp32 X (read by both
# GEMMs), ~13 ns at ~3 TB/s. So ~0.18 us a row, ~11 ms an epoch of 60 000
# rows: GEMM bound, as PyTorch's cuBLAS + cross_entropy step is, which also
# writes and reads the (batch, k) logits and log-probabilities several times.
# At batch 256 a step is ~45 us of GEMM against ~20 launches (the gather, the
# two GEMMs, softmax_rows, two sums, and the SGD update as a dozen CuPy
# element-wise ops, each a few us): launch overhead is not negligible there,
# and one kernel for the update (reduce_partials' rule on the one row of sums)
# would take most of it away.

# Elements of a chunk's logits (rows x k) or converted X (rows x d): 16 MB in
# fp32, enough rows (2048 at k = 1000, d = 2048) for cuBLAS to fill an H100.
LARGE_CHUNK_ELEMENTS = 1 << 22


def _chunk_rows(k: int, d: int) -> int:
    return max(1, LARGE_CHUNK_ELEMENTS // max(k, d))


def _rows_grid(rows: int) -> int:
    return max(1, min(-(-rows // ROWS_PER_WARP_BLOCK), _max_blocks()))


def _forward_smem(coef) -> int:
    """linear_softmax's shared memory: W (k x pad4(d))."""
    k, d = coef.shape
    return k * _pad4(d) * coef.itemsize


def _gradient_smem(g: int, k: int, d: int, tsize: int, xsize: int) -> int:
    """The training kernel's shared memory with lane groups of g: W and dW, a tile of X and per-row values."""
    dp, tile = _pad4(d), THREADS // g
    return (2 * k * dp + tile * (k + PART_EXTRA)) * tsize + tile * dp * xsize


def _gradient_fits(X, coef) -> bool:
    """True where the fused training kernel fits in shared memory (with its largest lane group)."""
    k, d = coef.shape
    return _gradient_smem(TRAIN_GROUP_SIZES[-1], k, d, coef.itemsize, X.itemsize) <= _shared_memory_limit()


def _rows_of(X, rows, first: int, count: int, buffer):
    """Rows first..first+count of the batch (rows[first + i] of X, or first + i when rows is None) in the
    compute dtype: a view of X where it already is, else converted into buffer[:count]."""
    src = X[first : first + count] if rows is None else X[rows[first : first + count]]
    if buffer is None:
        return src
    out = buffer[:count]
    out[...] = src
    return out


def _large_linear_softmax(X, coef, b, x_scale):
    n, d = X.shape
    k, t = coef.shape[0], coef.dtype
    P = cp.empty((n, k), t)
    chunk = min(_chunk_rows(k, d), n)
    buffer = None if X.dtype == t else cp.empty((chunk, d), t)
    kernel = _kernel("softmax_rows", template_id("softmax_rows", t))
    for first in range(0, n, chunk):
        count = min(chunk, n - first)
        z = P[first : first + count]
        cp.matmul(_rows_of(X, None, first, count, buffer), coef.T, out=z)  # the logits go straight into P
        kernel((_rows_grid(count),), (THREADS,), (z, b, t.type(x_scale), np.int32(k), np.int32(count)))
    return P


class _LargeGradient:
    """The unscaled gradient sums of a batch of up to `max_rows` rows on the
    large-shape path, and its buffers: dcoef = sum of g x^T (k, d), db = sum
    of g (k), stats = (loss sum, argmax hits). Every sum runs in a fixed order
    (chunks in order, cuBLAS and CuPy reductions of fixed shapes), so a batch
    always gives the same bits. groups > 1: coef stacks that many models of
    k / groups classes (a sweep, cuda_sweep.py), each with its own softmax;
    stats then holds each model's (loss sum, hits) in turn."""

    def __init__(self, X, coef, max_rows: int, groups: int = 1):
        k, d = coef.shape
        t = coef.dtype
        self.k, self.t, self.groups = k, t, groups
        self.chunk = max(1, min(_chunk_rows(k, d), max_rows))
        self.logits = cp.empty((self.chunk, k), t)
        self.x = None if X.dtype == t else cp.empty((self.chunk, d), t)
        # each warp's (loss, hits) per model
        self.part = cp.empty((_rows_grid(self.chunk) * ROWS_PER_WARP_BLOCK, 2 * groups), t)
        self.dcoef, self.db, self.stats = cp.empty((k, d), t), cp.empty(k, t), cp.empty(2 * groups, t)
        self.kernel = _kernel("softmax_rows", template_id("softmax_rows_gradient", t))

    def __call__(self, X, rows, first, nrows, y, coef, b, x_scale):
        """Sums over rows first..first+nrows of the batch (rows[first + i] of X, or first + i when rows is None)."""
        for i, lo in enumerate(range(first, first + nrows, self.chunk)):
            count = min(self.chunk, first + nrows - lo)
            x = _rows_of(X, rows, lo, count, self.x)
            z = self.logits[:count]
            cp.matmul(x, coef.T, out=z)
            grid = _rows_grid(count)
            self.kernel(
                (grid,),
                (THREADS,),
                (z, b, self.t.type(x_scale), np.int32(self.k // self.groups), np.int32(self.groups), np.int32(count),
                 NULL if rows is None else rows, np.int64(lo), y, self.part),
            )
            part = self.part[: grid * ROWS_PER_WARP_BLOCK]
            if i == 0:
                cp.matmul(z.T, x, out=self.dcoef)
                cp.sum(z, axis=0, out=self.db)
                cp.sum(part, axis=0, out=self.stats)
            else:
                self.dcoef += cp.matmul(z.T, x)
                self.db += z.sum(axis=0)
                self.stats += part.sum(axis=0)


def _large_linear_softmax_cross_entropy(X, coef, b, y, x_scale):
    n = X.shape[0]
    t = coef.dtype.type
    sums = _LargeGradient(X, coef, n)
    sums(X, None, 0, n, y, coef, b, x_scale)
    inv_n = t(1) / t(n)
    dcoef = sums.dcoef * t(x_scale) * inv_n  # as reduce_partials: x_scale * sum * (1 / n)
    return sums.stats[0] * inv_n, sums.stats[1].astype(cp.int64), dcoef, sums.db * inv_n


def _large_train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
    """train_epoch (backend.py's contract) on the large-shape path: per batch,
    _LargeGradient's sums, then the fused path's update in CuPy operations,
    coef -= rate * (dcoef + weight_decay * coef), b -= rate * db, with the
    mean gradients and the rate of schedules.learning_rate rounded once to
    the compute dtype (computed here on the host: the loop is on the host)."""
    n = rows.shape[0]
    t = coef.dtype.type
    sums = _LargeGradient(X, coef, min(batch_size, n))
    loss, correct = cp.zeros((), coef.dtype), cp.zeros((), cp.int64)
    for step, first in enumerate(range(0, n, batch_size)):
        nrows = min(batch_size, n - first)
        sums(X, rows, first, nrows, y, coef, b, x_scale)
        rate, inv_n = t(learning_rate(kind, lr, total_steps, start_step + step)), t(1) / t(nrows)
        grad = sums.dcoef * t(x_scale) * inv_n
        if weight_decay:
            grad = grad + t(weight_decay) * coef
        coef -= rate * grad
        b -= rate * (sums.db * inv_n)
        loss = loss + sums.stats[0]  # the batch's loss sum: its mean loss times its rows
        correct = correct + sums.stats[1].astype(cp.int64)
    return loss, correct
