"""CUDA kernels through CuPy: the backend for CuPy arrays (contract in backend.py).

The CUDA C++ sources live in ``kernels/*.cu`` (shipped as the package
``fastsoftmax.kernels``). Each is compiled by NVRTC at first use, one template
instantiation at a time: the compute type (W's dtype), X's dtype and the
number of classes K are template parameters, so a row's K logits stay in
registers. CuPy caches the binaries on disk, so a later process only loads them.

Nothing here waits for the GPU: results come back as (0-d) CuPy arrays, and a
training epoch replays a captured CUDA graph of all its launches, so the host
issues three calls per epoch rather than two launches per minibatch.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import cupy as cp
import numpy as np

from .kernels import source
from .kernels.geometry import FORWARD_ROWS_PER_BLOCK, PART_EXTRA, THREADS, TRAIN_GROUP_SIZES, template_id

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


def _too_large(what: str, need: int) -> ValueError:
    return ValueError(
        f"{what} needs {need} bytes of shared memory per block, more than this GPU's "
        f"{_shared_memory_limit()}: W (k x d) must fit in shared memory; use fewer features or classes"
    )


# ---- the backend contract (see backend.py) ----


def linear_softmax(X, coef, b, x_scale):
    n, d = X.shape
    k = coef.shape[0]
    t = coef.dtype
    smem = k * _pad4(d) * t.itemsize
    if smem > _shared_memory_limit():
        raise _too_large("linear_softmax", smem)
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
    """The training kernel's launch for batches of `rows` rows: lane group size
    G, grid and shared memory. A pure function of the shapes and the device, so
    the same batch always splits into the same partial sums (reproducibility).
    """

    def __init__(self, rows: int, X, coef):
        k, d = coef.shape
        self.k, self.d, self.t = k, d, coef.dtype
        dp, tsize, xsize = _pad4(d), coef.itemsize, X.itemsize

        def smem(g):
            tile = THREADS // g
            return (2 * k * dp + tile * (k + PART_EXTRA)) * tsize + tile * dp * xsize

        fits = [g for g in TRAIN_GROUP_SIZES if smem(g) <= _shared_memory_limit()]
        if not fits:
            raise _too_large("linear_softmax_cross_entropy", smem(TRAIN_GROUP_SIZES[-1]))
        # The smallest group (fewest shuffles per row) that still gives every
        # SM blocks to run; for a minibatch that is the largest group.
        g = next((g for g in fits if -(-rows // (THREADS // g)) >= _max_blocks()), fits[-1])
        self.smem = smem(g)
        self.grid = min(-(-rows // (THREADS // g)), _max_blocks())
        self.kernel = _kernel(
            "linear_softmax_cross_entropy", template_id("linear_softmax_cross_entropy", self.t, X.dtype, k, g)
        )
        self.reduce_kernel = _kernel("linear_softmax_cross_entropy", template_id("reduce_partials", self.t))
        self.part_size = k * d + k + PART_EXTRA

    def gradient(self, X, rows, first, nrows, y, coef, b, x_scale, part):
        """Partial sums of rows first..first+nrows of the batch (rows[first + i] of X, or first + i for NULL)."""
        self.kernel(
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

    def reduce(self, part, nrows, x_scale, w, b, loss, correct, step=-1, weight_decay=0.0, schedule=(0, 0.0, 1, NULL)):
        """Adds the partial sums in block order. step < 0: w, b get the mean
        gradient, loss the mean loss. step >= 0: step `step` of an epoch on w, b
        in place, adding the batch's loss sum and hits to loss and correct; the
        rate is schedules.learning_rate(kind, peak, total_steps, first_step[0] + step)
        for schedule = (kind, peak, total_steps, first_step), first_step a
        one-element device array that each epoch fills before its graph runs."""
        t = self.t.type
        kind, peak, total_steps, first_step = schedule
        self.reduce_kernel(
            (-(-self.part_size // THREADS),),
            (THREADS,),
            (
                part,
                np.int32(self.grid),
                np.int32(self.k),
                np.int32(self.d),
                np.int32(nrows),
                t(x_scale),
                w,
                b,
                np.int32(kind),
                np.float64(peak),
                np.int64(total_steps),
                first_step,
                np.int32(step),
                t(weight_decay),
                loss,
                correct,
            ),
        )


def linear_softmax_cross_entropy(X, coef, b, y, x_scale):
    n = X.shape[0]
    grads = _GradientPass(n, X, coef)
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
    """One epoch of minibatch SGD over `n` rows as a CUDA graph: for each batch,
    the gradient kernel and the reduce-and-step kernel, 2 * ceil(n / batch_size)
    launches replayed by one call. At batch 256 a step is a few microseconds of
    GPU work, about what launching it from Python costs, so launches dominate
    unless they are replayed from a graph.

    The graph holds the pointers of X, y, coef and b and the schedule's kind,
    peak rate and total steps (the cache key has them all, and n), and reads
    the epoch's rows and its first step from buffers of its own, which each
    call fills first: one graph serves every epoch of a run.
    """

    def __init__(self, X, y, n, coef, b, batch_size, x_scale, weight_decay, kind, peak, total_steps):
        batches = [(first, min(batch_size, n - first)) for first in range(0, n, batch_size)]
        passes = {rows: _GradientPass(rows, X, coef) for rows in {rows for _, rows in batches}}  # compiles first
        self.order = cp.empty(n, cp.int64)
        self.first_step = cp.zeros(1, cp.int64)
        self.loss, self.correct = cp.empty((), coef.dtype), cp.empty((), cp.int64)
        some = next(iter(passes.values()))
        self.part = cp.empty((max(p.grid for p in passes.values()), some.part_size), coef.dtype)
        schedule = (kind, peak, total_steps, self.first_step)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            for step, (first, rows) in enumerate(batches):
                grads = passes[rows]
                grads.gradient(X, self.order, first, rows, y, coef, b, x_scale, self.part)
                grads.reduce(self.part, rows, x_scale, coef, b, self.loss, self.correct, step, weight_decay, schedule)
            self.graph = stream.end_capture()

    def __call__(self, rows, start_step):
        cp.copyto(self.order, rows)
        self.first_step.fill(start_step)
        self.graph.launch()  # on the current stream, after the copy and the fill
        return self.loss.copy(), self.correct.copy()  # copies: the next epoch overwrites the buffers


_EPOCHS: OrderedDict[tuple, _Epoch] = OrderedDict()
_MAX_EPOCHS = 8  # graphs kept; each holds its buffers (order, partial sums)


def shuffle(n, seed, epoch):
    # On the host for now, so that both devices visit the rows in the same order.
    return cp.asarray(np.random.default_rng([seed, epoch]).permutation(n))


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
    n = rows.shape[0]
    key = (cp.cuda.runtime.getDevice(), n, batch_size, x_scale, weight_decay, kind, lr, total_steps) + tuple(
        (a.data.ptr, a.shape, a.dtype.str) for a in (X, y, coef, b)
    )
    epoch = _EPOCHS.pop(key, None) or _Epoch(X, y, n, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps)
    _EPOCHS[key] = epoch
    while len(_EPOCHS) > _MAX_EPOCHS:
        _EPOCHS.popitem(last=False)
    return epoch(rows, start_step)
