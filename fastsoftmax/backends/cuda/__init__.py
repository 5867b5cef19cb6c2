"""The CUDA backend: kernels for CuPy arrays (the contract: fastsoftmax.ops.dispatch.Backend).

Two dense paths, chosen here by shape and by the device's shared memory:
fused.py, whose kernels hold W in a block's shared memory, read X once and
write no logits; and, where W does not fit, large.py (cuBLAS for the two
matmuls, a fused pass over each chunk of logits, one launch per SGD step). A
CSR X (fastsoftmax.arrays.CSR) runs on sparse.py's kernels, never densified.
The kernels that start from given logits are in logits.py, the many-model
epoch of sweeps in sweep.py, the Hessian-vector product of second-order
solvers in hessian.py, the PyTorch-layout classifier head (linear_cross_entropy)
in cross_entropy.py, the epoch's order of rows and row helpers in
rows.py, NVRTC and the device's attributes in compile.py. The CUDA sources
are kernels/*.cu.
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


def linear_softmax(X, coef, b, x_scale):
    if isinstance(X, CSR):
        return sparse.linear_softmax(X, coef, b, x_scale)
    return (fused if fused.forward_fits(coef) else large).linear_softmax(X, coef, b, x_scale)


def linear_logits(X, coef, b, x_scale):
    if isinstance(X, CSR):
        return sparse.linear_logits(X, coef, b, x_scale)
    return large.linear_logits(X, coef, b, x_scale)  # cuBLAS at any shape: logits are written either way


def linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight):
    if isinstance(X, CSR):
        path = sparse
    else:
        path = fused if fused.gradient_fits(X, coef) else large
    return path.linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight)


def linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P):
    path = sparse if isinstance(X, CSR) else hessian
    return path.linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, P)


def train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                sample_weight, workspace):
    if isinstance(X, CSR):
        return sparse.train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                  start_step, sample_weight, workspace)
    if fused.gradient_fits(X, coef):
        return fused.train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                                 start_step, sample_weight, workspace)
    return large.train_epoch(X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps,
                             start_step, sample_weight)


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    path = sparse if isinstance(X, CSR) else sweep
    return path.train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps,
                                 start_step, sample_weight)
