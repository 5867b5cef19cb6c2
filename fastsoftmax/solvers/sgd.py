"""Minibatch SGD: the one epoch loop of every SGD fit, for m >= 1 models on the same batches.

A single fit (SoftmaxRegression) is a sweep of one; SoftmaxRegressionSweep
trains its grid's m models here too. The loop takes arrays its caller
validated once (X C-contiguous of a feature dtype, y int64 labels 0..k-1 of
the same kind as X, coef (m, k, d) and b (m, k) in the compute dtype) and calls
only the trusted path of ``ops.train_epoch_many``, whose kernels read each
batch once for all the models. It hands each epoch's weights and records to
``publish``, which the models turn into coef_, intercept_, history_ and their
callbacks.
"""

from __future__ import annotations

import math
import time
import warnings

from .. import ops
from ..arrays import to_numpy
from ..reference.schedules import kind_of, learning_rate


# A loss past BLOWUP times log k (all-zero weights' loss) is weights running away, not a large step
# settling: stopped at once, whatever the number of epochs. So is a loss above log k that grew
# GROWTH-fold in one epoch.
BLOWUP = 100
GROWTH = 100


class TrainingDivergedError(ValueError, FloatingPointError):
    """The training loss or weights became NaN or inf, or the loss ran away (divergence); the model
    keeps the last epoch before it."""

    def __init__(self, epoch, loss, lr, weight_decay, what):
        self.epoch, self.loss, self.lr, self.weight_decay, self.what = epoch, loss, lr, weight_decay, what
        super().__init__(f"training diverged in epoch {epoch}: {what} with lr={lr} and "
                         f"weight_decay={weight_decay}; try a smaller lr or weight_decay (the model keeps "
                         f"{f'epoch {epoch - 1}' if epoch > 1 else 'its initial'} weights)")


def divergence(loss, previous, finite, k):
    """What says that a model diverged in an epoch of mean loss `loss` (after `previous`, None for its
    first), its weights finite or not: NaN or inf, a loss past BLOWUP log k, or one above log k that
    grew GROWTH-fold in the epoch; None where nothing does."""
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    if not finite:
        return "the weights became NaN or inf"
    if loss > BLOWUP * math.log(k):
        return f"the loss ran away to {loss:.3g} (all-zero weights give {math.log(k):.3g})"
    if loss > math.log(k) and previous is not None and loss > GROWTH * previous:
        return f"the loss grew from {previous:.3g} to {loss:.3g} in one epoch"
    return None


def sgd(xp, blocks, coef, b, *, lrs, weight_decays, first_epoch, epochs, batch_size, schedule, seed, x_scale,
        evaluate, publish):
    """Epochs first_epoch..epochs-1 of SGD on the m models stacked in coef (m, k, d) and b (m, k),
    trained in place; model i at peak rate lrs[i] with decay weight_decays[i] (floats).

    blocks: the training rows as a sequence of (rows, load), load() giving
    that block's (X, y, sample_weight) on the device (sample_weight None, or
    the rows' weights as ops.validation.check_sample_weight returns them): one block for data in memory, a Dask
    array's chunks in order otherwise (each epoch loads them again). Block i
    of epoch e is shuffled as reference/permutation.py's (seed, e * len(blocks)
    + i), so one block is shuffled as ops.train_epoch's (seed, e).

    After each epoch, one read from the device: every model's loss, hits and
    whether its weights stayed finite. A model that diverged (``divergence``:
    its loss or weights NaN or inf, or its loss running away) goes back to the
    epoch's starting weights and trains no more (its rate 0). A model still training gets the record epoch, loss,
    train_acc, lr, batch_size, train_seconds, what evaluate(coef[i], b[i])
    returns (a dict: test or validation accuracy) and seconds. Then
    publish(coef, b, records, epoch), records[i] None for a model that no
    longer trains. When none trains any more, TrainingDivergedError names the
    first model that diverged in that epoch.
    """
    m = coef.shape[0]
    n = sum(rows for rows, _ in blocks)
    steps = sum(math.ceil(rows / batch_size) for rows, _ in blocks)
    rates, kind = [float(lr) for lr in lrs], kind_of(schedule)  # a rate of 0: a model that diverged
    k, losses = coef.shape[1], [None] * m  # each model's previous epoch's mean loss
    saved = xp.empty_like(coef), xp.empty_like(b)  # the weights a diverged model goes back to
    workspace = {}  # the buffers the kernels keep between this run's epochs (the GPU's epoch launch)
    for epoch in range(first_epoch, epochs):
        start = time.perf_counter()
        saved[0][...], saved[1][...] = coef, b  # on the device: no synchronisation
        stats = _epoch(xp, blocks, coef, b, rates, weight_decays, epoch=epoch, steps=steps, total_steps=epochs * steps,
                       batch_size=batch_size, schedule=schedule, seed=seed, x_scale=x_scale, workspace=workspace)
        train_seconds = time.perf_counter() - start
        reasons = {i: divergence(stats[0, i] / n, losses[i], stats[2, i], k) for i in range(m) if rates[i]}
        gone = [i for i, why in reasons.items() if why is not None]
        for i in gone:
            coef[i], b[i], rates[i] = saved[0][i], saved[1][i], 0.0
        losses = list(stats[0] / n)
        records = [None] * m
        for i in (i for i in range(m) if rates[i]):
            rate = learning_rate(kind, float(lrs[i]), epochs * steps, epoch * steps)
            records[i] = {"epoch": epoch + 1, "loss": stats[0, i] / n, "train_acc": stats[1, i] / n,
                          "lr": float(coef.dtype.type(rate)), "batch_size": int(batch_size), "rows": n,
                          "train_seconds": train_seconds, **evaluate(coef[i], b[i]),
                          "seconds": time.perf_counter() - start}
        publish(coef, b, records, epoch + 1)
        if not any(rates):
            first = gone[0]
            raise TrainingDivergedError(epoch + 1, stats[0, first] / n, lrs[first], weight_decays[first],
                                        reasons[first])


def _epoch(xp, blocks, coef, b, rates, weight_decays, *, epoch, steps, total_steps, batch_size, schedule, seed,
           x_scale, workspace):
    """One epoch of every model over the blocks in order: the (3, m) host array of each model's loss
    sum, hits and whether its weights stayed finite, read from the device in one transfer."""
    loss_sums, correct, step = 0, 0, epoch * steps
    for i, (rows, load) in enumerate(blocks):
        X, y, sample_weight = load()
        block_loss, block_correct = ops.train_epoch_many(
            X, y, coef.transpose(0, 2, 1), b, batch_size=int(batch_size), lrs=rates, weight_decays=weight_decays,
            sample_weight=sample_weight,
            seed=int(seed), epoch=epoch * len(blocks) + i, schedule=schedule, total_steps=total_steps,
            start_step=step, x_scale=x_scale, workspace=workspace, check_input=False)
        loss_sums, correct, step = loss_sums + block_loss, correct + block_correct, step + math.ceil(rows / batch_size)
    finite = xp.isfinite(coef).all(axis=(1, 2)) & xp.isfinite(b).all(axis=1)
    return to_numpy(xp.concatenate([xp.asarray(a, dtype=xp.float64) for a in (loss_sums, correct, finite)])).reshape(
        3, coef.shape[0])


# warn_if_not_learning looks at the loss once a run has had WATCH_AFTER epochs, and warns above
# NOT_LEARNING * log k: 10% over all-zero weights' loss, so the noise of a run that learns cannot reach it.
WATCH_AFTER = 2
NOT_LEARNING = 1.1


def warn_if_not_learning(history, epochs, k, lr, stacklevel):
    """A ConvergenceWarning where SGD's loss after a run of `epochs` (its last record in history) is
    still above log k, the loss of all-zero weights (with a margin for SGD's noise): the run went
    nowhere, which on finite losses means a step far too large for X's scale. Runs of at most
    WATCH_AFTER epochs are not judged."""
    if epochs <= WATCH_AFTER or history[-1]["loss"] <= NOT_LEARNING * math.log(k):
        return
    loss = history[-1]["loss"]
    from sklearn.exceptions import ConvergenceWarning

    warnings.warn(f"SGD's training loss is {loss:.4g} after {epochs} epochs, above {math.log(k):.3g} "
                  f"(all-zero weights' loss): lr={lr} is likely too large for the scale of X's features; "
                  "standardise them (lr='auto' does so for float X), lower lr, or use solver='lbfgs'",
                  ConvergenceWarning, stacklevel=stacklevel + 1)
