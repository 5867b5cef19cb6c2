"""The CUDA backend's many-model epoch: one SGD epoch of m models of k classes at once (CuPy arrays).

The GPU twin of backends/cpu/sweep.py, on large.py's path: the m models
stacked as one (m k, d) matrix, a batch's logits for all of them are one cuBLAS
product (cupy.matmul), softmax_rows_gradient (kernels/softmax_rows.cu) turns
each model's k columns of a row into its softmax minus the one-hot label with
its loss and hits, a second product gives every model's weight gradient, and
one step launch (large.Step, kernels/sweep.cu) steps every model with its own
rate and decay.

A step is the same launches whatever m is: the gather of the batch's rows
(and its conversion from uint8), two products, softmax_rows_gradient, the two
column sums (bias gradients, each warp's loss and hits), sgd_step_many; m only
widens them. tests/test_sweep.py counts the kernel launches in emulation.

Expected, NOT measured (no GPU has run it): at Fashion-MNIST's shape (batch
256, d = 784, 16 models of 10 classes) each product is 64 MFLOP, ~2 us at
cuBLAS's rate, so a step is launch bound, ~8 launches of a few us: about
20-40 us a step whether m is 1 or 16, against ~3 us a step for one model's
persistent sgd_epoch kernel, which keeps W in shared memory: 16 models' W
(500 KB in fp32) does not fit there.
"""

from __future__ import annotations

from .large import Step, train_epochs


def train_epoch_many(X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps, start_step,
                     sample_weight):
    """Backend.train_epoch_many: per batch, large.Gradient's sums for the m models side by side, then
    one step launch for all of them."""
    m, k, d = coef.shape
    wall, ball = coef.reshape(m * k, d), b.reshape(m * k)
    step = Step(wall, m, lrs, weight_decays, kind, total_steps, start_step)
    return train_epochs(X, y, rows, wall, ball, batch_size, x_scale, sample_weight, step)
