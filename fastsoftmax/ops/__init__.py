"""The public kernels: validate once, pick the backend from the arrays, run.

NumPy arrays run on the Numba kernels (fastsoftmax/backends/cpu/), CuPy
arrays on the CUDA kernels (fastsoftmax/backends/cuda/); the results are
arrays of the same kind (dispatch.py chooses). Shapes: X (n, d)
uint8/float32/float64, or sparse (scipy.sparse on the CPU, cupyx.scipy.sparse
on the GPU: CSR as it is, other formats converted to CSR once, a copy), W
(d, k) float32/float64 (its dtype sets the compute precision), b (k,), y (n,)
integer labels in [0, k). A sparse X is never densified: its kernels
(backends/*/sparse.py) cost O(nnz k) a pass, its values taken in W's dtype.
sample_weight, where a kernel takes it, weighs each row's loss and gradient:
the loss becomes the weighted mean sum(w_i loss_i) / sum(w) (an SGD batch:
see train_epoch).

PyTorch tensors and JAX arrays (CPU or CUDA) are taken too, through DLPack
without a copy, and the results come back as the caller's kind (interop.py).

Nothing above this module calls a backend. Each function takes
``check_input=False`` for callers that validated their arrays already (the
habit of scikit-learn's ``check_input``): SoftmaxRegression.fit checks once per
fit, not once per epoch, which on a GPU would wait for the device each time.
Trusted arrays are as the checks return them: X C-contiguous, y and rows
int64 in range, W's transpose C-contiguous in the compute dtype, b of W's dtype.
"""

from __future__ import annotations

import numpy as np

from ..arrays import CSR
from ..reference.schedules import kind_of
from .cross_entropy import linear_cross_entropy
from .dispatch import backend_of
from .interop import takes_frameworks
from .validation import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    SCHEDULE,
    STEP,
    STEPS,
    WEIGHT_DTYPES,
    check_any_matrix,
    check_labels,
    check_matrix,
    check_rows,
    check_sample_weight,
    check_scale,
    check_sparse,
    check_weights,
)

# scaled_first multiplies X by x_scale before the product where max|X| * d passes float32's largest
# value over this margin: room for weights of up to ~1e6 in magnitude.
OVERFLOW_MARGIN = 2.0**20


def scaled_first(X, x_scale):
    """(X, x_scale) for the kernels, which scale the product X @ W: X and x_scale as given, or, where
    that product could overflow before a scale below 1 shrinks it (float X near float32's largest
    values), X multiplied by x_scale first (a copy) and a scale of 1. One pass over float X when
    x_scale < 1; nothing otherwise."""
    values = X.data if isinstance(X, CSR) else X  # a sparse row sums its non-zeros alone: at most d of them
    if x_scale >= 1 or values.dtype.kind != "f" or values.size == 0:
        return X, x_scale
    if float(abs(values).max()) * X.shape[1] * OVERFLOW_MARGIN < float(np.finfo(np.float32).max):
        return X, x_scale
    scaled = values * values.dtype.type(x_scale)
    return (X._replace(data=scaled) if isinstance(X, CSR) else scaled), 1.0


def _linear_inputs(X, W, b, x_scale, xp):
    X = check_any_matrix(X, "X", xp)
    coef, b = check_weights(W, b, X.shape[1], xp)
    X = check_sparse(X, "X", xp, coef.dtype) if isinstance(X, CSR) else X  # its values in W's dtype
    X, x_scale = scaled_first(X, check_scale(x_scale))
    return X, coef, b, x_scale


def _forward(kernel, X, W, b, x_scale, check_input):
    """The backend's `kernel` (linear_softmax or linear_logits) on X, W, b, checked unless trusted."""
    xp, backend = backend_of(X, W, b)
    if check_input:
        X, coef, b, x_scale = _linear_inputs(X, W, b, x_scale, xp)
    else:
        coef = W.T
    return getattr(backend, kernel)(X, coef, b, x_scale)


@takes_frameworks()
def linear_softmax(X, W, b, *, x_scale=1.0, check_input=True):
    """softmax(x_scale * X @ W + b) by rows, fused: (n, k) in W's dtype."""
    return _forward("linear_softmax", X, W, b, x_scale, check_input)


@takes_frameworks()
def linear_logits(X, W, b, *, x_scale=1.0, check_input=True):
    """The logits x_scale * X @ W + b: (n, k) in W's dtype.

    X is converted to W's dtype a chunk of rows at a time (uint8 pixels are
    never copied to float as a whole); the product runs on BLAS (cuBLAS on the
    GPU) by chunks of rows.
    """
    return _forward("linear_logits", X, W, b, x_scale, check_input)


@takes_frameworks()
def softmax_cross_entropy(logits, y):
    """(loss, dlogits): mean cross-entropy and its gradient (softmax - onehot) / n."""
    xp, backend = backend_of(logits, y)
    logits = check_matrix(logits, "logits", xp, WEIGHT_DTYPES, min_cols=2)
    y = check_labels(y, logits.shape[0], logits.shape[1], xp)
    return backend.softmax_cross_entropy(logits, y)


@takes_frameworks()
def linear_softmax_cross_entropy(X, W, b, y, *, x_scale=1.0, sample_weight=None):
    """The fused training kernel: (loss, correct, dW, db) of the mean cross-entropy.

    Reads X once; loss and correct (rows whose argmax equals y, unweighted) are
    0-d arrays, so a GPU caller never has to wait for them. sample_weight (n,):
    the loss is the weighted mean sum(w_i loss_i) / sum(w), and dW, db its
    gradient; weights must be >= 0 with a positive sum.
    """
    xp, backend = backend_of(X, W, b, y)
    X, coef, b, x_scale = _linear_inputs(X, W, b, x_scale, xp)
    y = check_labels(y, X.shape[0], coef.shape[0], xp)
    sample_weight = check_sample_weight(sample_weight, X.shape[0], coef.dtype, xp)
    loss, correct, dcoef, db = backend.linear_softmax_cross_entropy(X, coef, b, y, x_scale, sample_weight)
    return loss, correct, dcoef.T, db


@takes_frameworks()
def linear_softmax_hessian_product(X, W, b, V, vb, *, x_scale=1.0, sample_weight=None, probabilities=None,
                                   check_input=True):
    """(HV, Hvb): the Hessian of linear_softmax_cross_entropy's loss in (W, b) times the direction (V, vb).

    V (d, k) and vb (k,) have W's and b's shapes (taken in W's dtype); the
    results too. One pass over X, as the gradient's: per chunk of rows, the
    logits at W and the direction's in one product, then r^T X (the rows' r
    in reference.kernels.linear_softmax_hessian_product); never the (n, k)
    logits. probabilities: None, or linear_softmax(X, W, b, x_scale=x_scale),
    which the product then reads instead of computing the logits at W (a third
    fewer FLOPs: worth its n x k memory where many products share one W, as a
    Newton step's do). sample_weight as linear_softmax_cross_entropy's. The
    Newton solver (solvers/newton.py) calls it once per conjugate-gradient
    step; check_input=False takes arrays as the checks return them (module
    docstring), V and vb of W's dtype, V C-contiguous as (k, d) transposed,
    and probabilities of W's dtype, C-contiguous.
    """
    xp, backend = backend_of(X, W, b, V, vb, *([] if probabilities is None else [probabilities]))
    if check_input:
        X, coef, b, x_scale = _linear_inputs(X, W, b, x_scale, xp)
        V, vb = xp.asarray(V), xp.asarray(vb)
        if V.shape != coef.shape[::-1] or vb.shape != b.shape:
            raise ValueError(f"the direction V, vb must have the shapes of W and b, {coef.shape[::-1]} and "
                             f"{b.shape}, got {V.shape} and {vb.shape}")
        vcoef, vb = check_weights(V.astype(coef.dtype, copy=False), vb, X.shape[1], xp)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], coef.dtype, xp)
        if probabilities is not None:
            probabilities = check_matrix(probabilities, "probabilities", xp, (coef.dtype,), min_cols=coef.shape[0])
            if probabilities.shape != (X.shape[0], coef.shape[0]):
                raise ValueError(f"probabilities must be linear_softmax(X, W, b)'s ({X.shape[0]}, "
                                 f"{coef.shape[0]}), got shape {probabilities.shape}")
    else:
        coef, vcoef = W.T, V.T
    hcoef, hb = backend.linear_softmax_hessian_product(X, coef, b, vcoef, vb, x_scale, sample_weight, probabilities)
    return hcoef.T, hb


@takes_frameworks()
def accuracy(scores, y, *, check_input=True):
    """Fraction of rows whose argmax equals y."""
    xp, backend = backend_of(scores, y)
    if check_input:
        scores = check_matrix(scores, "scores", xp, WEIGHT_DTYPES, min_cols=2)
        y = check_labels(y, scores.shape[0], scores.shape[1], xp)
    return float(backend.count_correct(scores, y)) / scores.shape[0]


@takes_frameworks("W", "b")
def train_epoch(X, y, W, b, *, batch_size, lr, rows=None, seed=None, epoch=0, schedule="constant",
                total_steps=None, start_step=0, weight_decay=0.0, x_scale=1.0, sample_weight=None, workspace=None,
                check_input=True):
    """One epoch of minibatch SGD on W and b, in place: (loss_sum, correct), 0-d arrays.

    The rows visited, in order, are either ``rows`` (indices into X, any
    length, repeats allowed) or, given ``seed``, every row of X once in the
    order of ``fastsoftmax.reference.permutation`` for (seed, epoch), the same
    on every device and computed where the kernels run. Batch s
    (the last may be partial) steps with the learning rate
    ``schedules.learning_rate(schedule, lr, total_steps, start_step + s)`` in
    W's dtype: W -= rate * (dW + weight_decay * W), b -= rate * db, where dW
    and db are the gradients of the batch's mean loss. total_steps defaults to
    start_step plus this epoch's steps (a cosine then decays over this epoch).
    loss_sum / len(rows) is the epoch's mean training loss; correct counts the
    rows whose argmax was their label before their step.

    sample_weight (one per row of X, >= 0) is normalised to mean 1 over X's
    rows, and a batch's loss is then sum(w_i loss_i) / its rows: a row of
    weight 2 steps as that row twice would, in expectation. A sparse X's step
    costs O(nnz of the batch x k): it touches only the batch's columns, the
    weight decay applied lazily (backends/*/sparse.py).

    W is updated without a copy when its transpose is C-contiguous (a Fortran-
    order W, or ``coef.T`` of a C-contiguous (k, d) array); otherwise it is
    copied for the kernels and the result written back. workspace: a dict
    that the epochs of one run pass each time, where the GPU keeps the buffers
    of its epoch launch between epochs (one dict per run, never shared by two
    at once); None allocates them for this call.
    """
    if check_input:
        xp, _ = backend_of(X, y, W, b, *([] if rows is None else [rows]))
        return _checked_train_epoch(xp, X, y, W, b, batch_size, lr, rows, seed, epoch, schedule, total_steps,
                                    start_step, weight_decay, x_scale, sample_weight, workspace)
    loss, correct = train_epoch_many(X, y, W[None], b[None], batch_size=batch_size, lrs=(lr,),
                                     weight_decays=(weight_decay,), rows=rows, seed=seed, epoch=epoch,
                                     schedule=schedule, total_steps=total_steps, start_step=start_step,
                                     x_scale=x_scale, sample_weight=sample_weight, workspace=workspace,
                                     check_input=False)
    return loss.reshape(()), correct.reshape(())


def _checked_train_epoch(xp, X, y, W, b, batch_size, lr, rows, seed, epoch, schedule, total_steps, start_step,
                         weight_decay, x_scale, sample_weight, workspace):
    _check_in_place(xp, W, b, "train_epoch")
    X = check_any_matrix(X, "X", xp)
    coef, bias = check_weights(W, b, X.shape[1], xp)  # copies only where the layout or dtype needs it
    X, y, sample_weight = _rows_of(xp, X, y, sample_weight, coef.dtype, coef.shape[0])
    POSITIVE_NUMBER.check("lr", lr)
    NON_NEGATIVE_NUMBER.check("weight_decay", weight_decay)
    X, steps = _checked_steps(xp, X, rows, seed, epoch, batch_size, schedule, total_steps, start_step, x_scale,
                              "train_epoch")
    result = train_epoch(X, y, coef.T, bias, lr=float(lr), weight_decay=float(weight_decay),
                         sample_weight=sample_weight, workspace=workspace, check_input=False, **steps)
    W[...] = coef.T  # a no-op copy onto itself where the kernels worked on W's own memory
    b[...] = bias
    return result


def _rows_of(xp, X, y, sample_weight, dtype, k):
    """X (a sparse one's values in the compute dtype), its labels and its rows' weights, checked."""
    X = check_sparse(X, "X", xp, dtype) if isinstance(X, CSR) else X
    y = check_labels(y, X.shape[0], k, xp)
    return X, y, check_sample_weight(sample_weight, X.shape[0], dtype, xp)


def _check_in_place(xp, W, b, caller):
    for name, a in (("W", W), ("b", b)):
        if not isinstance(a, xp.ndarray):
            raise TypeError(f"{name} must be a {xp.__name__} array: {caller} updates W and b in place")
    if b.dtype != W.dtype:
        raise TypeError(f"b has dtype {b.dtype}; {caller} updates it in place, so it must have W's ({W.dtype})")


def _checked_steps(xp, X, rows, seed, epoch, batch_size, schedule, total_steps, start_step, x_scale, caller):
    """X (scaled_first) and the arguments that say which rows an epoch visits, in which batches and at
    which point of the schedule, checked: keywords for the trusted train_epoch or train_epoch_many."""
    if (rows is None) == (seed is None):
        raise ValueError(f"give {caller} either rows (the rows to visit) or seed (to shuffle all of X), not both")
    if rows is None:
        NON_NEGATIVE_INT.check("seed", seed)
        NON_NEGATIVE_INT.check("epoch", epoch)
    else:
        rows = check_rows(rows, X.shape[0], xp)
    POSITIVE_INT.check("batch_size", batch_size)
    SCHEDULE.check("schedule", schedule)
    if total_steps is not None:
        STEPS.check("total_steps", total_steps)
    STEP.check("start_step", start_step)
    X, x_scale = scaled_first(X, check_scale(x_scale))
    return X, {"batch_size": int(batch_size), "rows": rows, "seed": None if seed is None else int(seed),
               "epoch": int(epoch), "schedule": schedule,
               "total_steps": None if total_steps is None else int(total_steps), "start_step": int(start_step),
               "x_scale": x_scale}


@takes_frameworks("W", "b")
def train_epoch_many(X, y, W, b, *, batch_size, lrs, weight_decays=None, rows=None, seed=None, epoch=0,
                     schedule="constant", total_steps=None, start_step=0, x_scale=1.0, sample_weight=None,
                     workspace=None, check_input=True):
    """train_epoch for m models at once, on the same batches: (loss_sums, correct), arrays of m values.

    W (m, d, k) and b (m, k) stack the m models' weights, updated in place.
    Model i steps as ``train_epoch(X, y, W[i], b[i], lr=lrs[i],
    weight_decay=weight_decays[i], ...)`` with the other arguments would
    (weight_decays default to 0; sample_weight as train_epoch's), visiting the same rows in the same batches,
    but each batch is read once for all models: its logits for every model
    are one matrix product (backends/cpu/sweep.py, backends/cuda/sweep.py).
    The result matches the models trained one at a time within float
    rounding; the products' sums run in another order (see
    backends/cpu/sweep.py). One model (m = 1) runs train_epoch's kernels, the
    faster ones for one model, and so matches it exactly.

    With check_input, W and b are copied for the kernels and the results
    written back; the trusted path trains W in place, which then must be
    ``coef.transpose(0, 2, 1)`` of a C-contiguous (m, k, d) coef, and lrs and
    weight_decays sequences of m floats. workspace as train_epoch's.
    """
    xp, backend = backend_of(X, y, W, b, *([] if rows is None else [rows]))
    if check_input:
        return _checked_train_epoch_many(xp, X, y, W, b, batch_size, lrs, weight_decays, rows, seed, epoch,
                                         schedule, total_steps, start_step, x_scale, sample_weight, workspace)
    if rows is None:
        rows = backend.shuffle(X.shape[0], seed, epoch)
    if total_steps is None:
        total_steps = start_step + -(-rows.shape[0] // batch_size)
    weight_decays = (0.0,) * len(lrs) if weight_decays is None else weight_decays
    kind = kind_of(schedule)
    if W.shape[0] == 1:
        loss, correct = backend.train_epoch(X, y, rows, W[0].T, b[0], batch_size, x_scale, weight_decays[0], kind,
                                            lrs[0], total_steps, start_step, sample_weight, workspace)
        return loss.reshape(1), correct.reshape(1)
    return backend.train_epoch_many(X, y, rows, W.transpose(0, 2, 1), b, batch_size, x_scale, weight_decays, kind,
                                    lrs, total_steps, start_step, sample_weight)


def _checked_train_epoch_many(xp, X, y, W, b, batch_size, lrs, weight_decays, rows, seed, epoch, schedule,
                              total_steps, start_step, x_scale, sample_weight, workspace):
    _check_in_place(xp, W, b, "train_epoch_many")
    X = check_any_matrix(X, "X", xp)
    if W.ndim != 3 or W.shape[0] < 1 or b.shape != (W.shape[0], W.shape[-1]):
        raise ValueError(f"W must have shape (models, n_features, n_classes) and b (models, n_classes), got "
                         f"W {W.shape} and b {b.shape}")
    m = W.shape[0]
    coef, bias = zip(*(check_weights(W[i], b[i], X.shape[1], xp) for i in range(m)))
    coef, bias = xp.stack(list(coef)), xp.stack(list(bias))
    X, y, sample_weight = _rows_of(xp, X, y, sample_weight, coef.dtype, coef.shape[1])
    lrs = _per_model("lrs", lrs, m, POSITIVE_NUMBER)
    weight_decays = None if weight_decays is None else _per_model("weight_decays", weight_decays, m,
                                                                  NON_NEGATIVE_NUMBER)
    X, steps = _checked_steps(xp, X, rows, seed, epoch, batch_size, schedule, total_steps, start_step, x_scale,
                              "train_epoch_many")
    result = train_epoch_many(X, y, coef.transpose(0, 2, 1), bias, lrs=lrs, weight_decays=weight_decays,
                              sample_weight=sample_weight, workspace=workspace, check_input=False, **steps)
    W[...] = coef.transpose(0, 2, 1)
    b[...] = bias
    return result


def _per_model(name, values, m, rule):
    """A sequence of m numbers (a list, a tuple, a NumPy array), each obeying `rule`, as floats."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers, one per model, got {values!r:.80}")
    if len(values) != m:
        raise ValueError(f"{name} must hold one value per model ({m}), got {len(values)}")
    return [float(rule.check(f"{name}[{i}]", v)) for i, v in enumerate(values)]
