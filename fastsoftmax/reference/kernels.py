"""Plain NumPy float64 versions of every kernel: the oracle the tests compare
the Numba and CUDA kernels against, and the NumPy peer in the benchmarks.

Written for clarity, not speed: every input is promoted to float64 first.
Shapes follow the public API: X (n, d), W (d, k), b (k,), y (n,).
"""

from __future__ import annotations

import numpy as np

from .permutation import halves, permute, round_keys
from .schedules import kind_of, learning_rate


def log_softmax(logits):
    """Row-wise log-softmax, max-subtracted so that |logits| ~ 1e4 stays finite."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def linear_logits(X, W, b, *, x_scale=1.0):
    """The logits x_scale * X @ W + b."""
    return (np.asarray(X, dtype=np.float64) * x_scale) @ np.asarray(W, np.float64) + np.asarray(b, np.float64)


def linear_softmax(X, W, b, *, x_scale=1.0):
    return np.exp(log_softmax(linear_logits(X, W, b, x_scale=x_scale)))


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy and its gradient w.r.t. the logits, (softmax - onehot) / n."""
    y = np.asarray(y)
    logp = log_softmax(logits)
    n = logp.shape[0]
    rows = np.arange(n)
    loss = -logp[rows, y].mean()
    dlogits = np.exp(logp)
    dlogits[rows, y] -= 1.0
    return loss, dlogits / n


def linear_softmax_cross_entropy(X, W, b, y, *, x_scale=1.0):
    """Loss, argmax hits, dW and db of the mean cross-entropy of softmax(x_scale*X @ W + b)."""
    Xs = np.asarray(X, dtype=np.float64) * x_scale
    logits = linear_logits(X, W, b, x_scale=x_scale)
    loss, dlogits = softmax_cross_entropy(logits, y)
    correct = int((logits.argmax(axis=1) == np.asarray(y)).sum())
    return loss, correct, Xs.T @ dlogits, dlogits.sum(axis=0)


def accuracy(scores, y):
    return float((np.asarray(scores).argmax(axis=1) == np.asarray(y)).mean())


def learning_rates(schedule, lr, total_steps, start_step, steps):
    """The float64 rates of `steps` SGD steps from start_step (schedules.learning_rate by name)."""
    return np.array([learning_rate(kind_of(schedule), lr, total_steps, start_step + s) for s in range(steps)])


def permutation(n, seed, epoch):
    """The rows in the order epoch `epoch` of a run seeded `seed` visits them (permutation.py)."""
    keys = round_keys(seed, epoch)
    return np.array([permute(i, n, *halves(n), *keys) for i in range(n)], dtype=np.int64)


def train_epoch(X, y, order, W, b, lrs, batch_size, *, x_scale=1.0, weight_decay=0.0):
    """One epoch of minibatch SGD over X[order], step s at rate lrs[s]; returns (W, b, mean loss, correct).

    The update is W -= lr * (dW + weight_decay * W), b -= lr * db, where dW, db
    are the gradients of the batch's mean loss. The last batch may be partial.
    """
    W = np.array(W, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    loss_sum, correct = 0.0, 0
    for step, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        loss, hits, dW, db = linear_softmax_cross_entropy(X[rows], W, b, y[rows], x_scale=x_scale)
        W -= lrs[step] * (dW + weight_decay * W)
        b -= lrs[step] * db
        loss_sum += loss * len(rows)
        correct += hits
    return W, b, loss_sum / len(order), correct
