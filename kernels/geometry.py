"""The GPU geometry, defined once: fastsoftmax/backends/cuda/ reads it, and the CUDA
sources receive it as ``geometry.cuh``, generated from this module
(``python -m fastsoftmax.kernels.geometry`` rewrites it; a test checks that
the file matches). NVRTC, nvcc and the CPU emulator of the tests all compile
from that one definition, so Python and CUDA cannot disagree on a number.
"""

from __future__ import annotations

from pathlib import Path

# Every kernel runs blocks of THREADS threads: 8 warps, enough to hide
# shared-memory latency, and a power of two for the block-wide tree sums.
THREADS = 256
# linear_softmax: a group of FORWARD_GROUP lanes shares a row (so its loads of
# a row are contiguous) and each lane carries FORWARD_ROWS_PER_LANE rows, so a
# W value read from shared memory feeds that many FMAs.
FORWARD_GROUP = 8
FORWARD_ROWS_PER_LANE = 4
FORWARD_ROWS_PER_BLOCK = THREADS // FORWARD_GROUP * FORWARD_ROWS_PER_LANE
# linear_softmax: 4-value vector loads where rows are aligned, else scalar.
VECTOR_WIDTHS = (1, 4)
# The training kernel's lanes per row, G: a tile is THREADS // G rows. The host
# picks G per launch (fastsoftmax/backends/cuda/fused.py).
TRAIN_GROUP_SIZES = (8, 16, 32)
# A training block's row of partial sums: dW (k x d), db (k), then these
# values: the loss sum and the argmax hits.
PART_EXTRA = 2
# softmax_rows (the large-shape path): one warp a row, so a block takes
# THREADS // WARP rows at a time.
WARP = 32
ROWS_PER_WARP_BLOCK = THREADS // WARP

_C_TYPES = {"uint8": "unsigned char", "float32": "float", "float64": "double", "int32": "int", "int64": "long long"}
X_TYPES = ("uint8", "float32", "float64")
W_TYPES = ("float32", "float64")
# A CSR X's indices and indptr (arrays.CSR): both int32 or both int64.
INDEX_TYPES = ("int32", "int64")


def template_id(name: str, *params) -> str:
    """A kernel's name expression, e.g. ``linear_softmax<float, unsigned char, 10, 4>``.

    params are NumPy dtype names (or anything whose ``str`` is one, such as
    ``np.dtype``) and ints.
    """
    args = (str(p) if isinstance(p, int) else _C_TYPES[str(p)] for p in params)
    return f"{name}<{', '.join(args)}>"


def instantiations(k: int) -> dict[str, list[str]]:
    """Every template-id the GPU backend may compile for k classes, by source file."""
    return {
        "linear_softmax": [
            template_id("linear_softmax", w, x, k, v) for w in W_TYPES for x in X_TYPES for v in VECTOR_WIDTHS
        ],
        "linear_softmax_cross_entropy": [
            template_id(kernel, w, x, k, g)
            for kernel in ("linear_softmax_cross_entropy", "sgd_epoch")
            for w in W_TYPES
            for x in X_TYPES
            for g in TRAIN_GROUP_SIZES
        ]
        + [template_id("reduce_partials", w) for w in W_TYPES],
        "shuffle": ["shuffle_rows"],
        "softmax_rows": [
            template_id(kernel, w)
            for kernel in ("softmax_rows", "softmax_rows_gradient", "hessian_rows", "cross_entropy_rows")
            for w in W_TYPES
        ],
        "sweep": [template_id("sgd_step_many", w) for w in W_TYPES],
        "sparse": [
            template_id(kernel, w, i)
            for kernel in ("sparse_logits", "sparse_rows_gradient", "sparse_scatter", "sparse_apply")
            for w in W_TYPES
            for i in INDEX_TYPES
        ]
        + [template_id("add_column_sums", w) for w in W_TYPES],
        "softmax_cross_entropy": [template_id("softmax_cross_entropy", w, k) for w in W_TYPES]
        + [template_id("mean_of_partials", w) for w in W_TYPES],
        "accuracy": [template_id("count_correct", w, k) for w in W_TYPES],
    }


def header() -> str:
    """The text of kernels/geometry.cuh."""
    constants = {
        "THREADS": THREADS,
        "FORWARD_GROUP": FORWARD_GROUP,
        "FORWARD_ROWS_PER_LANE": FORWARD_ROWS_PER_LANE,
        "PART_EXTRA": PART_EXTRA,
        "WARP": WARP,
        "ROWS_PER_WARP_BLOCK": ROWS_PER_WARP_BLOCK,
    }
    lines = [
        "// Generated from kernels/geometry.py (python -m fastsoftmax.kernels.geometry);",
        "// edit the numbers there, where each says why it is what it is.",
        "#pragma once",
        *(f"constexpr int {name} = {value};" for name, value in constants.items()),
    ]
    return "\n".join(lines) + "\n"


HEADER = Path(__file__).with_name("geometry.cuh")

if __name__ == "__main__":
    HEADER.write_text(header())
