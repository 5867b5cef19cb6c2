"""L-BFGS on the fused kernel's loss and gradient, to scikit-learn's LogisticRegression optimum.

SciPy's L-BFGS-B minimises objective.py's penalised objective with
LogisticRegression's options (gtol=tol, maxiter=max_iter, maxls=50,
ftol=64 eps) and its stopping rule; each evaluation is one fused pass over
the rows.
"""

from __future__ import annotations

import warnings

import numpy as np

from .objective import Iterations, Objective, penalty, start


def lbfgs(xp, gradient, n, coef, b, *, C, tol, max_iter, evaluate, publish, weight_sum=None, fit_intercept=True):
    """Minimise LogisticRegression's multinomial objective from coef, b; the number of iterations run.

    gradient(W, bias), with W (k, d) and bias (k,) host float64, is one pass
    over the n rows (objective.fused_gradient). weight_sum: the rows' weights'
    sum where gradient's loss is their weighted mean, which scales the penalty
    as LogisticRegression's ||W||^2 / (2 C sum(w)); C = inf: no penalty.
    Without fit_intercept the bias stays 0. Each iteration publishes its
    weights (in coef's dtype, as xp arrays) and record (objective.Iterations:
    epoch = iteration, loss = the objective, grad_max = its gradient's largest
    entry, train_acc, and what evaluate(W, bias) returns: a dict, with an
    eval_set its test accuracy). Ctrl-C publishes the last iterate, then
    propagates; the end publishes SciPy's result where it is not the last
    iterate published.
    """
    from scipy.optimize import minimize  # SciPy only where lbfgs runs

    k, d = coef.shape
    objective = Objective(gradient, k, d, penalty(C, n if weight_sum is None else weight_sum), fit_intercept)
    x0 = start(coef, b, fit_intercept)
    iterations = Iterations(objective, xp, n, coef.dtype, x0, evaluate, publish)
    try:
        result = minimize(objective, x0, method="L-BFGS-B", jac=True,
                          callback=lambda intermediate_result: iterations(intermediate_result.x),
                          options={"maxiter": int(max_iter), "maxls": 50, "gtol": float(tol),
                                   "ftol": 64 * np.finfo(float).eps})
    except KeyboardInterrupt:
        iterations.interrupted()
        raise
    if result.status == 1:  # as LogisticRegression: say so, keep the weights
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"lbfgs stopped after max_iter={max_iter} iterations before the gradient reached "
                      f"tol={tol}; increase max_iter, or scale the data", ConvergenceWarning, stacklevel=4)
    iterations.finish(result.x)
    return int(result.nit)
