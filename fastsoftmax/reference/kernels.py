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


def softmax_cross_entropy(logits, y, sample_weight=None):
    """Mean cross-entropy and its gradient w.r.t. the logits, (softmax - onehot) / n; with
    sample_weight, the weighted mean sum(w_i * loss_i) / sum(w) and its gradient."""
    y = np.asarray(y)
    logp = log_softmax(logits)
    n = logp.shape[0]
    rows = np.arange(n)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    loss = -(w * logp[rows, y]).sum() / w.sum()
    dlogits = np.exp(logp)
    dlogits[rows, y] -= 1.0
    return loss, dlogits * (w / w.sum())[:, None]


def linear_softmax_cross_entropy(X, W, b, y, *, x_scale=1.0, sample_weight=None):
    """Loss, argmax hits, dW and db of the (weighted) mean cross-entropy of softmax(x_scale*X @ W + b)."""
    Xs = np.asarray(X, dtype=np.float64) * x_scale
    logits = linear_logits(X, W, b, x_scale=x_scale)
    loss, dlogits = softmax_cross_entropy(logits, y, sample_weight)
    correct = int((logits.argmax(axis=1) == np.asarray(y)).sum())
    return loss, correct, Xs.T @ dlogits, dlogits.sum(axis=0)


def linear_softmax_hessian_product(X, W, b, V, vb, *, x_scale=1.0, sample_weight=None):
    """(HV (d, k), Hvb (k,)): the Hessian of linear_softmax_cross_entropy's loss in (W, b) times the
    direction (V, vb). Per row, with p its softmax and u = x_scale x @ V + vb, the logits' Hessian times u
    is r = w (p * u - p (p . u)); the product is x_scale X^T r and the sum of r, over sum(w)."""
    Xs = np.asarray(X, dtype=np.float64) * x_scale
    p = linear_softmax(X, W, b, x_scale=x_scale)
    u = Xs @ np.asarray(V, np.float64) + np.asarray(vb, np.float64)
    n = p.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    r = p * (u - (p * u).sum(axis=1, keepdims=True)) * (w / w.sum())[:, None]
    return Xs.T @ r, r.sum(axis=0)


def linear_cross_entropy(X, weight, bias, y, *, label_smoothing=0.0, grad_scale=None):
    """Each row's cross-entropy of softmax(X @ weight.T + bias) against y, with label smoothing e:
    loss_i = (1 - e) (-log p_i[y_i]) + e / k sum_j (-log p_i[j]), PyTorch's F.cross_entropy(F.linear(X, weight,
    bias), y, reduction="none", label_smoothing=e). weight is (k, d), as nn.Linear's. With grad_scale (n,),
    (losses, dX, dweight, dbias): also the gradient of sum_i grad_scale_i loss_i."""
    X, weight = np.asarray(X, np.float64), np.asarray(weight, np.float64)
    logp = log_softmax(X @ weight.T + np.asarray(bias, np.float64))
    n, k = logp.shape
    rows, y = np.arange(n), np.asarray(y)
    losses = -(1 - label_smoothing) * logp[rows, y] - label_smoothing / k * logp.sum(axis=1)
    if grad_scale is None:
        return losses
    g = np.exp(logp) - label_smoothing / k  # softmax minus the smoothed one-hot target
    g[rows, y] -= 1 - label_smoothing
    g *= np.asarray(grad_scale, np.float64)[:, None]
    return losses, g @ weight, g.T @ X, g.sum(axis=0)


def accuracy(scores, y):
    return float((np.asarray(scores).argmax(axis=1) == np.asarray(y)).mean())


def learning_rates(schedule, lr, total_steps, start_step, steps):
    """The float64 rates of `steps` SGD steps from start_step (schedules.learning_rate by name)."""
    return np.array([learning_rate(kind_of(schedule), lr, total_steps, start_step + s) for s in range(steps)])


def permutation(n, seed, epoch):
    """The rows in the order epoch `epoch` of a run seeded `seed` visits them (permutation.py)."""
    keys = round_keys(seed, epoch)
    return np.array([permute(i, n, *halves(n), *keys) for i in range(n)], dtype=np.int64)


def train_epoch(X, y, order, W, b, lrs, batch_size, *, x_scale=1.0, weight_decay=0.0, sample_weight=None):
    """One epoch of minibatch SGD over X[order], step s at rate lrs[s]; returns (W, b, mean loss, correct).

    The update is W -= lr * (dW + weight_decay * W), b -= lr * db, where dW, db
    are the gradients of the batch's mean loss. The last batch may be partial.
    sample_weight (one per row of X) is normalised to mean 1 over X's rows, and
    a batch's loss is then sum(w_i * loss_i) / its rows: a row of weight 2
    steps as that row twice would, in expectation.
    """
    W = np.array(W, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    n = len(y)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64) * (n / np.sum(sample_weight))
    loss_sum, correct = 0.0, 0
    for step, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        at = np.arange(len(rows))
        logp = log_softmax(linear_logits(X[rows], W, b, x_scale=x_scale))
        g = np.exp(logp)
        g[at, y[rows]] -= 1.0
        g *= (w[rows] / len(rows))[:, None]  # the gradient of sum(w_i * loss_i) / rows
        W -= lrs[step] * ((np.asarray(X[rows], np.float64) * x_scale).T @ g + weight_decay * W)
        b -= lrs[step] * g.sum(axis=0)
        loss_sum -= (w[rows] * logp[at, y[rows]]).sum()
        correct += int((logp.argmax(axis=1) == y[rows]).sum())
    return W, b, loss_sum / len(order), correct
