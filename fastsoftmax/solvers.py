"""The solvers behind SoftmaxRegression.fit: minibatch SGD epochs, and L-BFGS on the fused gradient.

Both take arrays the estimator validated once (X C-contiguous of a feature
dtype, y int64 labels 0..k-1 of the same kind as X, coef (k, d) and b (k,) in
the compute dtype) and call only the trusted paths of ``ops``. They hand each
epoch's (or iteration's) weights and record to ``publish(coef, b, record)``,
which the estimator turns into coef_, intercept_, history_ and the callback.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from . import ops
from .schedules import kind_of, learning_rate


class TrainingDivergedError(ValueError, FloatingPointError):
    """The training loss or weights became NaN or inf; the model keeps the last finite epoch."""

    def __init__(self, epoch, loss, lr, weight_decay):
        self.epoch, self.loss, self.lr, self.weight_decay = epoch, loss, lr, weight_decay
        self.what = f"the loss became {loss}" if not math.isfinite(loss) else "the weights became NaN or inf"
        super().__init__(f"training diverged in epoch {epoch}: {self.what} with lr={lr} and "
                         f"weight_decay={weight_decay}; try a smaller lr or weight_decay (the model keeps "
                         f"{f'epoch {epoch - 1}' if epoch > 1 else 'its initial'} weights)")


# ---- minibatch SGD: one trusted ops.train_epoch and one device read per epoch ----

# warn_if_not_learning looks at the loss once a run has had WATCH_AFTER epochs, and warns above
# NOT_LEARNING * log k: 10% over all-zero weights' loss, so the noise of a run that learns cannot reach it.
WATCH_AFTER = 2
NOT_LEARNING = 1.1


def sgd(xp, blocks, coef, b, *, first_epoch, epochs, batch_size, lr, schedule, weight_decay, seed, x_scale,
        evaluate, publish):
    """Epochs first_epoch..epochs-1 of SGD on coef and b (trained in place).

    blocks: the training rows as a sequence of (rows, load), load() giving
    that block's (X, y) on the device: one block for data in memory, a Dask
    array's chunks in order otherwise (each epoch loads them again). Block i
    of epoch e is shuffled as fastsoftmax.permutation's (seed, e * len(blocks)
    + i), so one block is shuffled as ops.train_epoch's (seed, e).
    evaluate(coef, b) is the epoch's test accuracy, or None. A loss or weights
    that become NaN or inf restore the epoch's starting weights, publish them
    and raise TrainingDivergedError; a finite loss still above log k at the end
    of a run of more than WATCH_AFTER epochs is a ConvergenceWarning.
    """
    n = sum(rows for rows, _ in blocks)
    steps = sum(math.ceil(rows / batch_size) for rows, _ in blocks)
    run = dict(batch_size=int(batch_size), lr=float(lr), schedule=schedule, total_steps=epochs * steps,
               weight_decay=float(weight_decay))
    saved = xp.empty_like(coef), xp.empty_like(b)  # the weights a diverged epoch goes back to
    for epoch in range(first_epoch, epochs):
        start = time.perf_counter()
        saved[0][...], saved[1][...] = coef, b  # on the device: no synchronisation
        loss_sum, correct, step = 0, 0, epoch * steps
        for i, (rows, load) in enumerate(blocks):
            X, y = load()
            block_loss, block_correct = ops.train_epoch(
                X, y, coef.T, b, seed=int(seed), epoch=epoch * len(blocks) + i, start_step=step, x_scale=x_scale,
                check_input=False, **run)
            loss_sum, correct, step = loss_sum + block_loss, correct + block_correct, step + math.ceil(rows / batch_size)
        # The epoch's one synchronisation: its loss, its hits and whether the weights stayed finite.
        loss, hits, finite = read_scalars(xp, loss_sum, correct, xp.isfinite(coef).all() & xp.isfinite(b).all())
        rate = learning_rate(kind_of(schedule), float(lr), epochs * steps, epoch * steps)
        record = {"epoch": epoch + 1, "loss": loss / n, "train_acc": hits / n, "lr": float(coef.dtype.type(rate)),
                  "batch_size": int(batch_size)}
        record["train_seconds"] = time.perf_counter() - start
        if not (math.isfinite(loss) and finite):
            coef[...], b[...] = saved
            publish(coef, b, None)
            raise TrainingDivergedError(record["epoch"], record["loss"], lr, weight_decay)
        test_acc = evaluate(coef, b)
        if test_acc is not None:
            record["test_acc"] = test_acc
        record["seconds"] = time.perf_counter() - start
        publish(coef, b, record)
    if epochs - first_epoch > WATCH_AFTER:
        warn_if_not_learning(record["loss"], epochs - first_epoch, coef.shape[0], lr)


def warn_if_not_learning(loss, epochs, k, lr):
    """A ConvergenceWarning where SGD's loss after a run of `epochs` is still above log k, the loss of
    all-zero weights (with a margin for SGD's noise): the run went nowhere, which on finite losses
    means a step far too large for X's scale."""
    if loss <= NOT_LEARNING * math.log(k):
        return
    from sklearn.exceptions import ConvergenceWarning

    warnings.warn(f"SGD's training loss is {loss:.4g} after {epochs} epochs, above {math.log(k):.3g} "
                  f"(all-zero weights' loss): lr={lr} is likely too large for the scale of X's features; "
                  "standardise them (lr='auto' does so for float X), lower lr, or use solver='lbfgs'",
                  ConvergenceWarning, stacklevel=5)  # fit's caller


# ---- L-BFGS: scikit-learn's objective and stopping rule, the fused kernel's loss and gradient ----


def fused_gradient(xp, X, y, x_scale, dtype):
    """gradient(W, bias) for lbfgs over X and y in memory: one fused pass (ops.linear_softmax_cross_entropy)."""

    def gradient(W, bias):
        loss, correct, dW, db = ops.linear_softmax_cross_entropy(
            X, xp.asarray(W.T, dtype=dtype), xp.asarray(bias, dtype=dtype), y, x_scale=x_scale)
        # One transfer: the gradient and, at its end, the loss and the hits.
        return to_numpy(xp.concatenate([dW.T.ravel(), db, xp.stack([loss, correct.astype(dtype)])]))

    return gradient


def lbfgs(xp, gradient, n, coef, b, *, C, tol, max_iter, evaluate, publish):
    """Minimise LogisticRegression's multinomial objective from coef, b; the number of iterations run.

    The objective is scikit-learn's (LinearModelLoss with l2_reg_strength =
    1 / (C * n)): mean cross-entropy + ||coef||^2 / (2 C n), the intercept not
    penalised, minimised by SciPy's L-BFGS-B with LogisticRegression's options
    (gtol=tol, maxiter=max_iter, maxls=50, ftol=64 eps). gradient(W, bias),
    with W (k, d) and bias (k,) host float64, is one pass over the n rows:
    the host vector of the mean loss's gradient (W's, raveled, then bias's),
    the mean loss and the hits (``fused_gradient`` for data in memory,
    ``distributed.fused_gradient`` for a Dask array's chunks); only the
    optimiser's float64 vector and that vector cross to the host. Each
    iteration publishes its weights (in coef's dtype, as xp arrays) and
    record (epoch = iteration, loss = the objective, grad_max = its
    gradient's largest entry, train_acc). Ctrl-C publishes the last iterate,
    then propagates.
    """
    from scipy.optimize import minimize  # SciPy only where lbfgs runs

    k, d = coef.shape
    dtype, alpha = coef.dtype, 1.0 / (C * n)  # alpha: scikit-learn's l2_reg_strength
    last = {}  # the latest evaluation: x, objective, gradient, hits

    def unpack(w):
        return w[: k * d].reshape(k, d), w[k * d:]

    def objective(w):
        both = gradient(*unpack(w))
        grad = both[:-2].astype(np.float64)
        grad[: k * d] += alpha * w[: k * d]
        f = float(both[-2]) + 0.5 * alpha * float(w[: k * d] @ w[: k * d])
        last.update(x=w.copy(), f=f, grad=grad, hits=float(both[-1]))
        return f, grad

    start = time.perf_counter()
    iterate = {"x": np.concatenate([to_numpy(coef).ravel(), to_numpy(b)]).astype(np.float64), "n": 0}

    def on_iteration(intermediate_result):  # the name tells SciPy to pass an OptimizeResult
        if not np.array_equal(intermediate_result.x, last["x"]):
            objective(intermediate_result.x)  # scipy accepted a point it did not evaluate last (rare)
        iterate.update(x=last["x"], n=iterate["n"] + 1)
        W, bias = (a.astype(dtype) for a in unpack(last["x"]))
        record = {"epoch": iterate["n"], "loss": last["f"], "grad_max": float(np.abs(last["grad"]).max()),
                  "train_acc": last["hits"] / n}
        test_acc = evaluate(xp.asarray(W), xp.asarray(bias))
        if test_acc is not None:
            record["test_acc"] = test_acc
        record["seconds"] = time.perf_counter() - start
        publish(W, bias, record)

    try:
        result = minimize(objective, iterate["x"], method="L-BFGS-B", jac=True, callback=on_iteration,
                          options={"maxiter": int(max_iter), "maxls": 50, "gtol": float(tol),
                                   "ftol": 64 * np.finfo(float).eps})
    except KeyboardInterrupt:
        W, bias = unpack(iterate["x"])
        publish(W.astype(dtype), bias.astype(dtype), None)
        raise
    if result.status == 1:  # as LogisticRegression: say so, keep the weights
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"lbfgs stopped after max_iter={max_iter} iterations before the gradient reached "
                      f"tol={tol}; increase max_iter, or scale the data", ConvergenceWarning, stacklevel=3)
    if iterate["n"] == 0 or not np.array_equal(result.x, iterate["x"]):  # no iteration ran, or scipy went back
        W, bias = unpack(result.x)
        publish(W.astype(dtype), bias.astype(dtype), None)
    return int(result.nit)


def read_scalars(xp, *scalars):
    """The values of 0-d arrays as floats, in one transfer from the device."""
    return [float(v) for v in to_numpy(xp.stack([xp.asarray(a, dtype=xp.float64) for a in scalars]))]


def to_numpy(a):
    """A new host array holding a's values (a copy on the CPU too: the caller keeps it)."""
    return a.get() if hasattr(a, "get") else np.array(a)
