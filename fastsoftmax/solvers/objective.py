"""LogisticRegression's penalised objective for the full-batch solvers (lbfgs.py, newton.py).

The objective is scikit-learn's (LinearModelLoss with l2_reg_strength =
1 / (C * sum of the rows' weights)): the (weighted) mean cross-entropy +
||coef||^2 / (2 C n), the intercept not penalised, C = inf for none. The
solvers see a flat float64 vector w = [W (k, d) raveled, bias (k,)] (without
the bias where the model fits none: it stays 0). Each evaluation is one fused
pass over the rows (``fused_gradient``, ``fused_hessian_product`` for data in
memory; solvers/dask.py's for a Dask array's chunks); only the optimiser's
float64 vectors cross between host and device.
"""

from __future__ import annotations

import time

import numpy as np

from .. import ops
from ..arrays import CSR, to_numpy


KEPT_BYTES = 1 << 26  # 64 MiB


def fused_gradient(xp, X, y, x_scale, dtype, sample_weight=None):
    """gradient(W, bias) over X and y in memory: one fused pass (ops.linear_softmax_cross_entropy), of the
    mean loss or, with sample_weight, the weighted mean sum(w_i loss_i) / sum(w); the host vector of W's
    gradient (raveled), the bias's, then the loss and the hits."""

    def gradient(W, bias):
        loss, correct, dW, db = ops.linear_softmax_cross_entropy(
            X, xp.asarray(W.T, dtype=dtype), xp.asarray(bias, dtype=dtype), y, x_scale=x_scale,
            sample_weight=sample_weight)
        # One transfer: the gradient and, at its end, the loss and the hits.
        return to_numpy(xp.concatenate([dW.T.ravel(), db, xp.stack([loss, correct.astype(dtype)])]))

    return gradient


def fused_hessian_product(xp, X, x_scale, dtype, sample_weight=None, keep=True):
    """product(W, bias, V, vb) over X in memory: the mean loss's Hessian at (W, bias) times (V, vb), one
    fused pass (ops.linear_softmax_hessian_product); the host vector of its W part (raveled), then its bias
    part. With keep, where keeps_probabilities allows, the softmax at the latest (W, bias) is kept (one
    forward pass) and the products at that point read it: a Newton step's products share their point. A
    product called once (a Dask chunk's) passes keep=False: it would compute the softmax for nothing."""
    kept = {}

    def product(W, bias, V, vb):
        Wd, bd = xp.asarray(W.T, dtype=dtype), xp.asarray(bias, dtype=dtype)
        if keep and keeps_probabilities(X, W.shape[0], dtype) and not (
                "W" in kept and np.array_equal(kept["W"], W) and np.array_equal(kept["bias"], bias)):
            kept.update(W=W.copy(), bias=bias.copy(), P=ops.linear_softmax(X, Wd, bd, x_scale=x_scale))
        HV, hb = ops.linear_softmax_hessian_product(
            X, Wd, bd, xp.asarray(V.T, dtype=dtype), xp.asarray(vb, dtype=dtype), x_scale=x_scale,
            sample_weight=sample_weight, probabilities=kept.get("P"))
        return to_numpy(xp.concatenate([HV.T.ravel(), hb]))

    return product


def keeps_probabilities(X, k, dtype):
    """Whether the Hessian products may keep the (n, k) softmax: where it is no larger than X itself, or
    than KEPT_BYTES (TF-IDF's 36,695 rows x 20 classes: 5.9 MB against its CSR's 4.6 MB)."""
    size = X.data.nbytes + X.indices.nbytes if isinstance(X, CSR) else X.nbytes
    return X.shape[0] * k * np.dtype(dtype).itemsize <= max(size, KEPT_BYTES)


def penalty(C, rows):
    """scikit-learn's l2_reg_strength 1 / (C * rows), rows the rows' weight sum; 0 for C = inf."""
    return 0.0 if np.isinf(C) else 1.0 / (C * rows)


class Objective:
    """objective(w) -> (f, grad) of the penalised loss at the flat w, keeping the latest evaluation (x, f,
    grad, hits), which the solvers' repeated calls at one point reuse; hessian_product(w, p) -> H p."""

    def __init__(self, gradient, k, d, alpha, fit_intercept=True, product=None):
        self.gradient, self.product, self.k, self.d, self.alpha = gradient, product, k, d, alpha
        self.fit_intercept = fit_intercept
        self.last = {}

    def unpack(self, w):
        """(W (k, d), bias (k,)) of the flat w: a view and, without an intercept, zeros."""
        kd = self.k * self.d
        return w[:kd].reshape(self.k, self.d), w[kd:] if self.fit_intercept else np.zeros(self.k)

    def flat(self, both):
        """A kernel's host vector [W's part, bias's part, ...] cut to the solver's variables, in float64 (the
        vector itself where it is float64 already: each call's is its own)."""
        return np.asarray(both[: self.k * (self.d + self.fit_intercept)], dtype=np.float64)

    def __call__(self, w):
        if "x" in self.last and np.array_equal(w, self.last["x"]):
            return self.last["f"], self.last["grad"].copy()
        both = self.gradient(*self.unpack(w))
        kd = self.k * self.d
        grad = self.flat(both)
        grad[:kd] += self.alpha * w[:kd]
        f = float(both[-2]) + 0.5 * self.alpha * float(w[:kd] @ w[:kd])
        self.last = {"x": w.copy(), "f": f, "grad": grad, "hits": float(both[-1])}
        return f, grad.copy()

    def hessian_product(self, w, p):
        """The penalised objective's Hessian at w times p (one fused pass)."""
        V, vb = self.unpack(p)
        hp = self.flat(self.product(*self.unpack(w), V, vb))
        kd = self.k * self.d
        hp[:kd] += self.alpha * p[:kd]
        return hp


class Iterations:
    """After each iteration of a solver: its weights (in `dtype`, as xp arrays) and record, to publish;
    x is the last iterate published, n the iterations so far."""

    def __init__(self, objective, xp, n_rows, dtype, x, evaluate, publish):
        self.objective, self.xp, self.n_rows, self.dtype = objective, xp, n_rows, dtype
        self.evaluate, self.publish = evaluate, publish
        self.x, self.n, self.start = x, 0, time.perf_counter()

    def __call__(self, x):
        """Iteration n + 1 ended at x."""
        f, grad = self.objective(x)  # the latest evaluation where it was at x, as a solver's usually is
        self.x, self.n = x.copy(), self.n + 1
        W, bias = self.weights(self.x)
        record = {"epoch": self.n, "loss": f, "grad_max": float(np.abs(grad).max()),
                  "train_acc": self.objective.last["hits"] / self.n_rows}
        record.update(self.evaluate(self.xp.asarray(W), self.xp.asarray(bias)))  # test_acc, with an eval_set
        record["seconds"] = time.perf_counter() - self.start
        self.publish(W, bias, record)

    def weights(self, w):
        return tuple(np.asarray(a, dtype=self.dtype) for a in self.objective.unpack(w))

    def interrupted(self):
        """Ctrl-C: the last iterate published again, without a record."""
        self.publish(*self.weights(self.x), None)

    def finish(self, x):
        """The solver's result x published where it is not the last iterate (no iteration ran, or it went back)."""
        if self.n == 0 or not np.array_equal(x, self.x):
            self.publish(*self.weights(x), None)


def start(coef, b, fit_intercept):
    """The flat float64 starting point of the solvers from the model's coef (k, d) and b."""
    parts = [to_numpy(coef).ravel()] + ([to_numpy(b)] if fit_intercept else [])
    return np.concatenate(parts).astype(np.float64)
