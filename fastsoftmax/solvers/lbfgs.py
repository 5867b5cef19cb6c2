"""L-BFGS on the fused kernel's loss and gradient, to scikit-learn's LogisticRegression optimum.

The objective is scikit-learn's (LinearModelLoss with l2_reg_strength =
1 / (C * n)): mean cross-entropy + ||coef||^2 / (2 C n), the intercept not
penalised, minimised by SciPy's L-BFGS-B with LogisticRegression's options
(gtol=tol, maxiter=max_iter, maxls=50, ftol=64 eps) and its stopping rule.
Each evaluation is one fused pass over the rows (``fused_gradient`` for data
in memory, solvers/dask.py's for a Dask array's chunks); only the optimiser's
float64 vector and the gradient's cross between host and device.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .. import ops
from ..arrays import to_numpy


def fused_gradient(xp, X, y, x_scale, dtype, sample_weight=None):
    """gradient(W, bias) for lbfgs over X and y in memory: one fused pass (ops.linear_softmax_cross_entropy),
    of the mean loss or, with sample_weight, the weighted mean sum(w_i loss_i) / sum(w)."""

    def gradient(W, bias):
        loss, correct, dW, db = ops.linear_softmax_cross_entropy(
            X, xp.asarray(W.T, dtype=dtype), xp.asarray(bias, dtype=dtype), y, x_scale=x_scale,
            sample_weight=sample_weight)
        # One transfer: the gradient and, at its end, the loss and the hits.
        return to_numpy(xp.concatenate([dW.T.ravel(), db, xp.stack([loss, correct.astype(dtype)])]))

    return gradient


class _Objective:
    """objective(w) -> (f, grad) of the penalised loss at the flat w = [W (k, d) raveled, bias (k,)],
    keeping the latest evaluation: x, f, grad, hits."""

    def __init__(self, gradient, k, d, alpha):
        self.gradient, self.k, self.d, self.alpha = gradient, k, d, alpha  # alpha: scikit-learn's l2_reg_strength
        self.last = {}

    def unpack(self, w):
        kd = self.k * self.d
        return w[:kd].reshape(self.k, self.d), w[kd:]

    def __call__(self, w):
        both = self.gradient(*self.unpack(w))
        kd = self.k * self.d
        grad = both[:-2].astype(np.float64)
        grad[:kd] += self.alpha * w[:kd]
        f = float(both[-2]) + 0.5 * self.alpha * float(w[:kd] @ w[:kd])
        self.last.update(x=w.copy(), f=f, grad=grad, hits=float(both[-1]))
        return f, grad


class _Iterations:
    """SciPy's callback: after each iteration, its weights (in `dtype`, as xp arrays) and record to
    publish; x is the last iterate published, n the iterations so far."""

    def __init__(self, objective, xp, n_rows, dtype, x, evaluate, publish):
        self.objective, self.xp, self.n_rows, self.dtype = objective, xp, n_rows, dtype
        self.evaluate, self.publish = evaluate, publish
        self.x, self.n, self.start = x, 0, time.perf_counter()

    def __call__(self, intermediate_result):  # the name tells SciPy to pass an OptimizeResult
        last = self.objective.last
        if not np.array_equal(intermediate_result.x, last["x"]):
            self.objective(intermediate_result.x)  # scipy accepted a point it did not evaluate last (rare)
        self.x, self.n = last["x"], self.n + 1
        W, bias = self.weights(self.x)
        record = {"epoch": self.n, "loss": last["f"], "grad_max": float(np.abs(last["grad"]).max()),
                  "train_acc": last["hits"] / self.n_rows}
        record.update(self.evaluate(self.xp.asarray(W), self.xp.asarray(bias)))  # test_acc, with an eval_set
        record["seconds"] = time.perf_counter() - self.start
        self.publish(W, bias, record)

    def weights(self, w):
        return tuple(a.astype(self.dtype) for a in self.objective.unpack(w))


def lbfgs(xp, gradient, n, coef, b, *, C, tol, max_iter, evaluate, publish, weight_sum=None):
    """Minimise LogisticRegression's multinomial objective from coef, b; the number of iterations run.

    weight_sum: the rows' weights' sum where gradient's loss is their weighted
    mean, which scales the penalty as LogisticRegression's ||W||^2 / (2 C sum(w)).

    gradient(W, bias), with W (k, d) and bias (k,) host float64, is one pass
    over the n rows: the host vector of the mean loss's gradient (W's,
    raveled, then bias's), the mean loss and the hits. Each iteration
    publishes its weights (in coef's dtype, as xp arrays) and record (epoch =
    iteration, loss = the objective, grad_max = its gradient's largest entry,
    train_acc, and what evaluate(W, bias) returns: a dict, with an eval_set
    its test accuracy). Ctrl-C publishes the last iterate, then propagates;
    the end publishes SciPy's result where it is not the last iterate
    published.
    """
    from scipy.optimize import minimize  # SciPy only where lbfgs runs

    k, d = coef.shape
    objective = _Objective(gradient, k, d, 1.0 / (C * (n if weight_sum is None else weight_sum)))
    x0 = np.concatenate([to_numpy(coef).ravel(), to_numpy(b)]).astype(np.float64)
    iterations = _Iterations(objective, xp, n, coef.dtype, x0, evaluate, publish)
    try:
        result = minimize(objective, x0, method="L-BFGS-B", jac=True, callback=iterations,
                          options={"maxiter": int(max_iter), "maxls": 50, "gtol": float(tol),
                                   "ftol": 64 * np.finfo(float).eps})
    except KeyboardInterrupt:
        publish(*iterations.weights(iterations.x), None)
        raise
    if result.status == 1:  # as LogisticRegression: say so, keep the weights
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"lbfgs stopped after max_iter={max_iter} iterations before the gradient reached "
                      f"tol={tol}; increase max_iter, or scale the data", ConvergenceWarning, stacklevel=4)
    if iterations.n == 0 or not np.array_equal(result.x, iterations.x):  # no iteration ran, or scipy went back
        publish(*iterations.weights(result.x), None)
    return int(result.nit)
