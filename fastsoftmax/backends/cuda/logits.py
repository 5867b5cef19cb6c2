"""The CUDA kernels that start from given logits (or scores): the cross-entropy with its gradient
(kernels/softmax_cross_entropy.cu), and the count of rows whose argmax is their label
(kernels/accuracy.cu)."""

from __future__ import annotations

import cupy as cp
import numpy as np

from ...kernels.geometry import THREADS, template_id
from . import compile as nvrtc


def softmax_cross_entropy(logits, y):
    n, k = logits.shape
    t = logits.dtype
    blocks = -(-n // THREADS)
    dlogits, part, loss = cp.empty_like(logits), cp.empty(blocks, t), cp.empty((), t)
    nvrtc.kernel("softmax_cross_entropy", template_id("softmax_cross_entropy", t, k))(
        (blocks,), (THREADS,), (logits, y, np.int32(n), dlogits, part)
    )
    nvrtc.kernel("softmax_cross_entropy", template_id("mean_of_partials", t))(
        (1,), (THREADS,), (part, np.int32(blocks), np.int32(n), loss)
    )
    return loss, dlogits


def count_correct(scores, y):
    n, k = scores.shape
    count = cp.zeros((), cp.uint64)  # the kernel adds each block's hits to it (atomicAdd is unsigned)
    nvrtc.kernel("accuracy", template_id("count_correct", scores.dtype, k))(
        (-(-n // THREADS),), (THREADS,), (scores, y, np.int32(n), count)
    )
    return count.view(cp.int64)  # the contract's int64: the same bits for any count
