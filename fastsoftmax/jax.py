"""fastsoftmax.jax: the fused linear cross-entropy as a ``jax.custom_vjp``, under ``jax.jit``, ``jax.grad``, ``vmap``.

``linear_cross_entropy(input, weight, target, bias)`` has fastsoftmax.torch's
conventions (weight (classes, features); reduction, ignore_index,
label_smoothing), and equals
``optax.softmax_cross_entropy_with_integer_labels(input @ weight.T + bias,
target)`` reduced, without holding the (rows, classes) logits. The kernels
run through ``jax.pure_callback`` on fastsoftmax's CPU kernels
(fastsoftmax.ops.linear_cross_entropy, by chunks of rows): with reduction
"mean" or "sum" the forward pass computes the gradients too, in the same pass
over the rows, and the backward pass scales them; with "none" the backward
pass computes the rows again with the incoming per-row gradients. Under
``vmap`` the callback runs once per batch element (``vmap_method="sequential"``).

On a GPU, a pure_callback hands the arrays to the host: the arrays are copied
to host memory and the CPU kernels run (no zero-copy there; an XLA FFI call
would be needed for that). JAX arrays given to the raw kernels of
fastsoftmax.ops are zero-copy on both devices (DLPack).
"""

from __future__ import annotations

import functools

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("fastsoftmax.jax needs JAX: pip install 'fastsoftmax[jax]'") from None
import numpy as np

from .ops import linear_cross_entropy as fused
from .ops.cross_entropy import REDUCTIONS, check_head_call  # noqa: F401 (REDUCTIONS: public)


def _host_rows(target, ignore_index):
    kept = np.asarray(target) != ignore_index
    return np.where(kept, target, 0), kept


def _host_reduce(losses, kept, reduction):
    losses = losses * kept
    if reduction == "none":
        return losses
    with np.errstate(invalid="ignore", divide="ignore"):  # no kept row: nan, as optax's mean of nothing
        return np.asarray(losses.sum() / kept.sum() if reduction == "mean" else losses.sum(), losses.dtype)


@functools.cache
def _loss(reduction, ignore_index, smoothing):
    """The custom_vjp function of (input (n, d), weight, bias, target) for one choice of the options."""

    def host_forward(x, weight, bias, target):
        labels, kept = _host_rows(target, ignore_index)
        return _host_reduce(fused(x, weight, bias, labels, label_smoothing=smoothing), kept, reduction)

    def host_gradients(x, weight, bias, target, grad):
        """(loss, dX, dweight, dbias) of sum_i scale_i loss_i: scale from the reduction, times grad for "none"."""
        labels, kept = _host_rows(target, ignore_index)
        scale = kept.astype(x.dtype)
        if reduction == "mean":
            scale /= max(1, kept.sum())
        scale *= np.asarray(grad, x.dtype)
        losses, dX, dweight, dbias = fused(x, weight, bias, labels, label_smoothing=smoothing, grad_scale=scale)
        return _host_reduce(losses, kept, reduction), dX, dweight, dbias

    def loss_shape(x, target):
        return jax.ShapeDtypeStruct(target.shape if reduction == "none" else (), x.dtype)

    def gradients(x, weight, bias, target, grad):
        shapes = (loss_shape(x, target), jax.ShapeDtypeStruct(x.shape, x.dtype),
                  jax.ShapeDtypeStruct(weight.shape, x.dtype), jax.ShapeDtypeStruct(bias.shape, x.dtype))
        return jax.pure_callback(host_gradients, shapes, x, weight, bias, target, grad, vmap_method="sequential")

    @jax.custom_vjp
    def loss(x, weight, bias, target):
        return jax.pure_callback(host_forward, loss_shape(x, target), x, weight, bias, target,
                                 vmap_method="sequential")

    def forward(x, weight, bias, target):
        if reduction == "none":
            return loss(x, weight, bias, target), (x, weight, bias, target)
        value, dX, dweight, dbias = gradients(x, weight, bias, target, jnp.ones((), x.dtype))
        return value, (dX, dweight, dbias, target)

    def backward(saved, grad):
        if reduction == "none":
            _, dX, dweight, dbias = gradients(*saved, grad)
        else:
            dX, dweight, dbias = (g * grad for g in saved[:3])
        return dX, dweight, dbias, np.zeros(saved[3].shape, jax.dtypes.float0)

    loss.defvjp(forward, backward)
    return loss


def linear_cross_entropy(input, weight, target, bias=None, *, reduction="mean", ignore_index=-100,
                         label_smoothing=0.0):
    """The cross-entropy of the linear head ``input @ weight.T + bias`` against ``target``, fused.

    Parameters
    ----------
    input : jax.Array (..., features), float32 (float64 with jax_enable_x64)
    weight : jax.Array (classes, features), input's dtype
    target : jax.Array (...), integer class indices in [0, classes), or ``ignore_index`` for rows left out
    bias : jax.Array (classes,) or None
    reduction : "mean" (over the rows not ignored), "sum" or "none" (a loss per row, shaped as target)
    label_smoothing : float in [0, 1]: (1 - e) of the label's loss plus e of the mean over the classes

    Differentiable in input, weight and bias (jax.grad, jax.vjp), under jax.jit and jax.vmap.

    >>> import jax, jax.numpy as jnp
    >>> from fastsoftmax.jax import linear_cross_entropy
    >>> x, w = jnp.ones((4, 3)), jnp.zeros((5, 3))
    >>> round(float(linear_cross_entropy(x, w, jnp.array([0, 1, 2, 3]))), 4)  # log 5: uniform over 5 classes
    1.6094
    >>> jax.grad(linear_cross_entropy, argnums=1)(x, w, jnp.array([0, 1, 2, 3])).shape
    (5, 3)
    """
    check_head_call(input, weight, target, reduction, label_smoothing)
    if input.dtype not in (jnp.float32, jnp.float64) or weight.dtype != input.dtype:
        raise TypeError(f"input and weight must both be float32 or both float64, got {input.dtype} and "
                        f"{weight.dtype}: cast with .astype(jnp.float32)")
    bias = jnp.zeros(weight.shape[0], input.dtype) if bias is None else bias
    loss = _loss(reduction, int(ignore_index), float(label_smoothing))
    value = loss(input.reshape(-1, input.shape[-1]), weight, bias, target.reshape(-1))
    return value.reshape(target.shape) if reduction == "none" else value
