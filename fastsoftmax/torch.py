"""fastsoftmax.torch: the fused linear cross-entropy as a PyTorch op, with autograd and torch.compile support.

``linear_cross_entropy(input, weight, target, bias)`` equals
``F.cross_entropy(F.linear(input, weight, bias), target, ...)`` with
PyTorch's conventions (weight (classes, features) as ``nn.Linear`` holds it;
``reduction``, ``ignore_index``, ``label_smoothing``), but never holds the
(rows, classes) logits: fastsoftmax.ops.linear_cross_entropy runs it by chunks
of rows on the CPU kernels (a CPU tensor) or the CUDA ones (a CUDA tensor, on
the current stream), the tensors passed through DLPack without a copy.

How the gradients come: with reduction "mean" or "sum" the loss is a fixed
weighted sum of the rows' losses, so the forward pass computes the gradients
of input, weight and bias at once, in the same pass over the rows (the logits
are computed once, as Liger-Kernel's fused linear cross-entropy does), and the
backward pass scales them by the incoming gradient. With "none" the backward
pass takes the incoming per-row gradients and computes the rows again. Both
are ``torch.library.custom_op``s with ``register_fake``, so torch.compile
(fullgraph too) sees them as single ops. Training needs float32 or float64.
The backward pass scales those gradients in place and hands them on, so no
second k x d array exists at once; a second backward pass through the same
loss (retain_graph=True) computes them again.
"""

from __future__ import annotations

try:
    import torch
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError("fastsoftmax.torch needs PyTorch: pip install 'fastsoftmax[torch]'") from None

from .ops import linear_cross_entropy as fused
from .ops.cross_entropy import REDUCTION, REDUCTIONS, SMOOTHING, check_head_call  # noqa: F401 (REDUCTIONS: public)


def _rows(target, ignore_index):
    """(labels with the ignored rows' set to 0, the rows' mask as 0/1 in no dtype yet)."""
    kept = target != ignore_index
    return torch.where(kept, target, torch.zeros_like(target)), kept


def _scales(kept, reduction, dtype):
    """Each row's weight in the reduced loss: 1 (sum) or 1 / kept rows (mean) where kept, else 0."""
    scale = kept.to(dtype)
    return scale / kept.sum().clamp(min=1) if reduction == "mean" else scale


def _reduce(losses, kept, reduction):
    losses = losses * kept
    if reduction == "none":
        return losses
    total = losses.sum()
    return total / kept.sum() if reduction == "mean" else total  # no kept row: nan, as F.cross_entropy


@torch.library.custom_op("fastsoftmax::linear_cross_entropy", mutates_args=())
def _forward(input: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, bias: torch.Tensor | None,
             reduction: str, ignore_index: int, label_smoothing: float, with_grads: bool,
             input_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, grad_input, grad_weight, grad_bias) for a loss gradient of 1, the last three empty unless
    with_grads (reduction mean or sum); grad_input also empty unless input_grad, grad_bias unless bias."""
    labels, kept = _rows(target, ignore_index)
    args = (input.detach(), weight.detach(), None if bias is None else bias.detach(), labels)
    if not with_grads:
        losses = fused(*args, label_smoothing=label_smoothing)
        nothing = input.new_empty(0)
        return _reduce(losses, kept, reduction), nothing, nothing.clone(), nothing.clone()
    losses, dX, dweight, dbias = fused(*args, label_smoothing=label_smoothing,
                                       grad_scale=_scales(kept, reduction, input.dtype), input_grad=input_grad)
    return (_reduce(losses, kept, reduction), input.new_empty(0) if dX is None else dX, dweight,
            input.new_empty(0) if dbias is None else dbias)


@_forward.register_fake
def _(input, weight, target, bias, reduction, ignore_index, label_smoothing, with_grads, input_grad):
    loss = input.new_empty(target.shape if reduction == "none" else ())
    if not with_grads:
        return loss, input.new_empty(0), input.new_empty(0), input.new_empty(0)
    return (loss, input.new_empty(input.shape if input_grad else 0), weight.new_empty(weight.shape),
            weight.new_empty(weight.shape[:1] if bias is not None else 0))


@torch.library.custom_op("fastsoftmax::linear_cross_entropy_backward", mutates_args=())
def _backward(grad: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
              bias: torch.Tensor | None, ignore_index: int, label_smoothing: float,
              input_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """reduction="none"'s gradients for the rows' incoming gradients `grad`: the rows computed again."""
    labels, kept = _rows(target, ignore_index)
    bias = None if bias is None else bias.detach()
    _, dX, dweight, dbias = fused(input.detach(), weight.detach(), bias, labels, label_smoothing=label_smoothing,
                                  grad_scale=(grad * kept).to(input.dtype).contiguous(), input_grad=input_grad)
    return (input.new_empty(0) if dX is None else dX, dweight, input.new_empty(0) if dbias is None else dbias)


@_backward.register_fake
def _(grad, input, weight, target, bias, ignore_index, label_smoothing, input_grad):
    return (input.new_empty(input.shape if input_grad else 0), weight.new_empty(weight.shape),
            weight.new_empty(weight.shape[:1] if bias is not None else 0))


def _setup_context(ctx, inputs, output):
    input, weight, target, bias, reduction, ignore_index, label_smoothing, with_grads, input_grad = inputs
    ctx.reduction, ctx.ignore_index, ctx.label_smoothing = reduction, ignore_index, label_smoothing
    ctx.has_bias, ctx.input_grad = bias is not None, input_grad
    ctx.compiled = torch.compiler.is_compiling()
    computed = with_grads and reduction != "none"
    # Eager, the gradients computed forward are held on ctx alone, so that the backward pass hands them on
    # without a copy (held by save_for_backward too, AccumulateGrad would copy them into .grad: a second k x d
    # array). A traced graph takes tensors from save_for_backward alone.
    ctx.save_for_backward(input, weight, target, bias, *(output[1:] if computed and ctx.compiled else ()))
    ctx.computed = list(output[1:]) if computed and not ctx.compiled else None


def _backward_of_forward(ctx, grad, *_):
    input, weight, target, bias, *computed = ctx.saved_tensors
    if ctx.computed is not None:  # the first backward pass takes them; another (retain_graph) computes again
        computed, ctx.computed = ctx.computed, None
    if computed and ctx.compiled:
        dX, dweight, dbias = (g * grad for g in computed)
    elif computed:  # loss.backward()'s 1 leaves them as they are: a pass over them costs ~10% at small k
        dX, dweight, dbias = computed if bool(grad == 1) else (g.mul_(grad) for g in computed)
    else:
        _, kept = _rows(target, ctx.ignore_index)
        rows = grad * (kept if ctx.reduction == "none" else _scales(kept, ctx.reduction, input.dtype))
        dX, dweight, dbias = _backward(rows.to(input.dtype), input, weight, target, bias, ctx.ignore_index,
                                       ctx.label_smoothing, ctx.input_grad)
    return (dX if ctx.input_grad else None, dweight, None, dbias if ctx.has_bias else None,
            None, None, None, None, None)


_forward.register_autograd(_backward_of_forward, setup_context=_setup_context)


def linear_cross_entropy(input, weight, target, bias=None, *, reduction="mean", ignore_index=-100,
                         label_smoothing=0.0):
    """``F.cross_entropy(F.linear(input, weight, bias), target, reduction=reduction, ignore_index=ignore_index,
    label_smoothing=label_smoothing)``, fused: the (rows, classes) logits are never held.

    Parameters
    ----------
    input : Tensor (..., features), float32 or float64, CPU or CUDA
    weight : Tensor (classes, features), input's dtype and device (``nn.Linear(features, classes).weight``)
    target : Tensor (...), integer class indices in [0, classes), or ``ignore_index`` for rows left out
    bias : Tensor (classes,) or None
    reduction : "mean" (over the rows not ignored), "sum" or "none" (a loss per row, shaped as target)
    label_smoothing : float in [0, 1], as F.cross_entropy's

    Gradients flow to input, weight and bias (autograd); the extra memory is
    O(chunk x classes + classes x features), whatever the number of rows.

    >>> import torch
    >>> from fastsoftmax.torch import linear_cross_entropy
    >>> x, head = torch.randn(6, 4, requires_grad=True), torch.nn.Linear(4, 3)
    >>> loss = linear_cross_entropy(x, head.weight, torch.tensor([0, 1, 2, 0, 1, -100]), head.bias)
    >>> loss.backward()
    >>> bool(torch.isclose(loss, torch.nn.functional.cross_entropy(head(x), torch.tensor([0, 1, 2, 0, 1, -100]))))
    True
    """
    check_head_call(input, weight, target, reduction, label_smoothing)
    if input.dtype not in (torch.float32, torch.float64) or weight.dtype != input.dtype:
        raise TypeError(f"input and weight must both be float32 or both float64, got {input.dtype} and "
                        f"{weight.dtype}: cast with .float()")
    rows = input.reshape(-1, input.shape[-1])
    wanted = [t for t in (input, weight, bias) if t is not None]
    with_grads = torch.is_grad_enabled() and any(t.requires_grad for t in wanted)
    loss = _forward(rows, weight, target.reshape(-1), bias, reduction, int(ignore_index), float(label_smoothing),
                    with_grads and reduction != "none", input.requires_grad)[0]
    return loss.reshape(target.shape) if reduction == "none" else loss


class LinearCrossEntropyLoss(torch.nn.Module):
    """linear_cross_entropy as a loss module: ``LinearCrossEntropyLoss()(input, weight, target, bias)``, with the
    options of ``nn.CrossEntropyLoss`` (reduction, ignore_index, label_smoothing) set once."""

    def __init__(self, reduction="mean", ignore_index=-100, label_smoothing=0.0):
        super().__init__()
        self.reduction = REDUCTION.check("reduction", reduction)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(SMOOTHING.check("label_smoothing", label_smoothing))

    def forward(self, input, weight, target, bias=None):
        return linear_cross_entropy(input, weight, target, bias, reduction=self.reduction,
                                    ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)
