"""linear_cross_entropy: a classifier head's per-row loss and its gradients, fused, in the framework's layout.

The kernel under fastsoftmax.torch and fastsoftmax.jax: weight is (classes,
features), as ``nn.Linear`` holds it (the backends' own ``coef`` layout, so a
C-contiguous weight is read where it lies), and every gradient a layer needs
comes back, the input's included.
"""

from __future__ import annotations

from .dispatch import backend_of
from .interop import takes_frameworks
from .validation import WEIGHT_DTYPES, Rule, check_finite, check_labels, check_matrix

SMOOTHING = Rule(float, low=0, high=1)
REDUCTIONS = ("mean", "sum", "none")
REDUCTION = Rule(str, choices=REDUCTIONS)


def check_head_call(input, weight, target, reduction, label_smoothing):
    """The checks fastsoftmax.torch's and fastsoftmax.jax's linear_cross_entropy share, on any framework's arrays:
    the options, and input (..., features), weight (classes, features) and target (...) shapes that fit."""
    REDUCTION.check("reduction", reduction)
    SMOOTHING.check("label_smoothing", label_smoothing)
    if input.ndim < 1 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"input (..., features) and weight (classes, features) must share their features, got "
                         f"input {tuple(input.shape)} and weight {tuple(weight.shape)}")
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise ValueError(f"target must have input's leading shape {tuple(input.shape[:-1])}, one class index a "
                         f"row, got {tuple(target.shape)}")


@takes_frameworks()
def linear_cross_entropy(X, weight, bias, y, *, label_smoothing=0.0, grad_scale=None, input_grad=True,
                         check_input=True):
    """Each row's cross-entropy of softmax(X @ weight.T + bias) against y, and the gradients of their scaled sum.

    X (n, d) float32/float64; weight (k, d) of X's dtype; bias (k,) or None
    (no bias); y (n,) integer labels in [0, k). label_smoothing e in [0, 1]:
    row i's loss is (1 - e) (-log p_i[y_i]) + e / k sum_j (-log p_i[j]),
    PyTorch's ``F.cross_entropy(F.linear(X, weight, bias), y,
    reduction="none", label_smoothing=e)``.

    Returns the losses (n,) in X's dtype; given grad_scale (n,), a tuple
    (losses, dX, dweight, dbias): the gradients of sum_i grad_scale_i loss_i
    (a row of scale 0 adds nothing: how an ignored row is left out; 1 / n
    everywhere gives the mean's). dX is None where ``input_grad`` is False
    (a frozen input: its product is skipped), and dbias None where bias is.
    The rows go in chunks whose logits take a few tens of MB at most
    (backends/cpu/cross_entropy.py, backends/cuda/cross_entropy.py): the
    extra memory is O(chunk k) beyond the results, never n k, for any k.
    check_input=False takes X, weight, bias (never None then), y and grad_scale
    as the checks return them: C-contiguous, of one dtype, y int64 in range.
    """
    arrays = [a for a in (X, weight, bias, y, grad_scale) if a is not None]
    xp, backend = backend_of(*arrays)
    has_bias = bias is not None
    if check_input:
        X, weight, bias, y, grad_scale = _checked(xp, X, weight, bias, y, grad_scale)
        SMOOTHING.check("label_smoothing", label_smoothing)
    losses, dX, dweight, dbias = backend.linear_cross_entropy(X, weight, bias, y, float(label_smoothing),
                                                              grad_scale, bool(input_grad))
    if grad_scale is None:
        return losses
    return losses, dX, dweight, dbias if has_bias else None


def _checked(xp, X, weight, bias, y, grad_scale):
    X = check_matrix(X, "X", xp, WEIGHT_DTYPES)
    weight = check_matrix(weight, "weight", xp, WEIGHT_DTYPES)
    (n, d), k = X.shape, weight.shape[0]
    if weight.shape[1] != d or weight.dtype != X.dtype:
        raise ValueError(f"weight must be (classes, {d}) of X's dtype {X.dtype}, as nn.Linear(in_features={d}, "
                         f"out_features=classes) holds it; got {weight.shape} {weight.dtype}")
    if bias is None:
        bias = xp.zeros(k, X.dtype)
    bias = xp.asarray(bias)
    if bias.shape != (k,):
        raise ValueError(f"bias must have shape ({k},), one per class of weight, got {bias.shape}")
    bias = check_finite(xp.ascontiguousarray(bias, dtype=X.dtype), "bias", xp)
    check_finite(weight, "weight", xp)
    y = check_labels(y, n, k, xp)
    if grad_scale is not None:
        grad_scale = xp.asarray(grad_scale)
        if grad_scale.shape != (n,) or grad_scale.dtype.kind != "f":
            raise ValueError(f"grad_scale must be a float array of shape ({n},), one per row, got "
                             f"{grad_scale.shape} {grad_scale.dtype}")
        grad_scale = check_finite(xp.ascontiguousarray(grad_scale, dtype=X.dtype), "grad_scale", xp)
    return X, weight, bias, y, grad_scale
