"""The public kernels: validate once, pick the backend from the arrays, run.

NumPy arrays run on the Numba kernels (cpu.py), CuPy arrays on the CUDA
kernels (cuda.py); the results are arrays of the same kind. Shapes: X (n, d)
uint8/float32/float64, W (d, k) float32/float64 (its dtype sets the compute
precision), b (k,), y (n,) integer labels in [0, k).
"""

from __future__ import annotations

from .backend import array_module, device_of, kernels_for_device
from .validation import (
    FEATURE_DTYPES,
    WEIGHT_DTYPES,
    check_labels,
    check_matrix,
    check_scale,
    check_weights,
)


def _backend(*arrays):
    device = device_of(*arrays)
    return array_module(device), kernels_for_device(device)


def _linear_inputs(X, W, b, x_scale, xp):
    X = check_matrix(X, "X", xp, FEATURE_DTYPES)
    coef, b = check_weights(W, b, X.shape[1], xp)
    return X, coef, b, check_scale(x_scale)


def linear_softmax(X, W, b, *, x_scale=1.0):
    """softmax(x_scale * X @ W + b) by rows, fused: (n, k) in W's dtype."""
    xp, kernels = _backend(X, W, b)
    X, coef, b, x_scale = _linear_inputs(X, W, b, x_scale, xp)
    return kernels.linear_softmax(X, coef, b, x_scale)


def softmax_cross_entropy(logits, y):
    """(loss, dlogits): mean cross-entropy and its gradient (softmax - onehot) / n."""
    xp, kernels = _backend(logits, y)
    logits = check_matrix(logits, "logits", xp, WEIGHT_DTYPES, min_cols=2)
    y = check_labels(y, logits.shape[0], logits.shape[1], xp)
    return kernels.softmax_cross_entropy(logits, y)


def linear_softmax_cross_entropy(X, W, b, y, *, x_scale=1.0):
    """The fused training kernel: (loss, correct, dW, db) of the mean cross-entropy.

    Reads X once; loss and correct (rows whose argmax equals y) are 0-d arrays,
    so a GPU caller never has to wait for them.
    """
    xp, kernels = _backend(X, W, b, y)
    X, coef, b, x_scale = _linear_inputs(X, W, b, x_scale, xp)
    y = check_labels(y, X.shape[0], coef.shape[0], xp)
    loss, correct, dcoef, db = kernels.linear_softmax_cross_entropy(X, coef, b, y, x_scale)
    return loss, correct, dcoef.T, db


def accuracy(scores, y):
    """Fraction of rows whose argmax equals y."""
    xp, kernels = _backend(scores, y)
    scores = check_matrix(scores, "scores", xp, WEIGHT_DTYPES, min_cols=2)
    y = check_labels(y, scores.shape[0], scores.shape[1], xp)
    return float(kernels.count_correct(scores, y)) / scores.shape[0]
