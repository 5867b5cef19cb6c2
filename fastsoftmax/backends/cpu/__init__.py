"""The CPU backend: Numba kernels for NumPy arrays (the contract: fastsoftmax.ops.dispatch.Backend).

Two paths, chosen here by shape: the register-tiled kernels of fused.py, which
read X once and never write logits, and from BLAS_MIN_CLASSES classes the
large-shape path of large.py (sgemm for the two matmuls, a fused Numba pass
over each chunk of logits). The kernels that start from given logits are in
logits.py, the many-model epoch of sweeps in sweep.py, the Hessian-vector
product of second-order solvers in hessian.py, the PyTorch-layout classifier head's loss and
gradients (linear_cross_entropy) in cross_entropy.py; what the kernels share
is in rows.py, the Numba machinery in jit.py. A CSR X (arrays.CSR) runs on
sparse.py's kernels, at any k.
"""

from __future__ import annotations

from ...arrays import CSR
from . import fused, hessian, large, sparse, sweep
from .cross_entropy import linear_cross_entropy
from .logits import count_correct, softmax_cross_entropy
from .rows import shuffle

__all__ = ["count_correct", "linear_cross_entropy", "linear_logits", "linear_softmax", "linear_softmax_cross_entropy",
           "linear_softmax_hessian_product", "shuffle",
           "softmax_cross_entropy", "train_epoch", "train_epoch_many"]

# Where the backend switches from fused.py's register tiles to large.py's path:
# k at or above BLAS_MIN_CLASSES. Measured with bench/crossover.py (4096 rows,
# float32, linear_softmax_cross_entropy, medians, the two paths in alternating
# blocks) on the 2-core AMD EPYC (AVX-512, OpenBLAS sgemm ~240 GFLOP/s),
# fused / BLAS time:
#   d = 512:  k = 10: 0.54, 16: 0.65, 24: 0.69, 32: 0.73, 48: ~2-3.6, 64: 1.9, 100: 1.2
#   d = 784:  k = 64: 0.84, 100: 0.93 at 4096 rows; 8192 x 784 x 100 on its own: 0.93 of
#             sgemm's rate here (176 GFLOP/s) against ~100-117 GFLOP/s fused, BLAS ahead
#   d = 2048: BLAS ahead from k = 16 (1.5-2.4)
# (the machine is shared: the rows where the load was low are the ones quoted).
# So the register tiles up to 32 classes, BLAS from 48; 40 splits the gap. The
# Fashion-MNIST shape (k = 10) stays on the register tiles. The crossover moves
# with d (lower for wide rows), which this single threshold does not follow:
# a d-aware rule needs a measured grid first, and would move shapes that run
# today from one path to the other.
BLAS_MIN_CLASSES = 40


def use_large(k: int) -> bool:
    """True where large.py's path is the faster one for k classes (the measured crossover above)."""
    return k >= BLAS_MIN_CLASSES


def _path(X, coef):
    if isinstance(X, CSR):
        return sparse
    return large if use_large(coef.shape[0]) else fused


def linear_softmax(X, coef, b, x_scale):
    return _path(X, coef).linear_softmax(X, coef, b, x_scale)


def linear_logits(X, coef, b, x_scale):
    path = sparse if isinstance(X, CSR) else large  # sgemm at any k: logits are written either way
    return path.linear_logits(X, coef, b, x_scale)


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    return _path(X, coef).linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight)


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    path = sparse if isinstance(X, CSR) else hessian if use_large(coef.shape[0]) else fused
    return path.linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P)


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight, workspace):
    # workspace: the CPU keeps nothing between epochs (each call's buffers are its own)
    return _path(X, coef).train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                      start_step, sample_weight)


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    path = sparse if isinstance(X, CSR) else sweep
    return path.train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps,
                                 start_step, sample_weight)
