"""The estimator's full-batch fit: LogisticRegression's objective by lbfgs or newton-cg (solvers/).

SoftmaxRegression.fit hands over the checked X, the encoded y and the rows'
weights; this module picks the compute dtype, builds the passes over X (in
memory, or over a Dask X's chunks, each on the model's device) and runs the
solver from the model's coef_ and intercept_ (zeros, or the fitted model's
with warm_start).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..arrays import CSR, is_dask
from ..ops.dispatch import array_module
from ..ops.validation import check_sample_weight, check_sparse
from ..solvers import dask, lbfgs, newton, objective
from .inputs import x_scale


def compute_dtype(X):
    """float64, as LogisticRegression, for uint8 and float64 X (the fused kernel still reads uint8 pixels as
    they are), float32 for float32 X: the caller's choice of speed over the last digits of the optimum."""
    return np.float32 if X.dtype == np.float32 else np.float64


def passes(device, X, y, weights, scale, dtype):
    """(gradient, product): the solvers' passes over X (objective.py's, or dask.py's for a Dask X)."""
    xp = array_module(device)
    if is_dask(X):  # the chunks' weights normalised to mean 1 over all the rows
        sw = check_sample_weight(weights, X.shape[0], np.float64, dask.dask_array())
        return (dask.fused_gradient(X, y, scale, dtype, device, sw),
                dask.fused_hessian_product(X, scale, dtype, device, sw))
    return (objective.fused_gradient(xp, X, y, scale, dtype, weights),
            objective.fused_hessian_product(xp, X, scale, dtype, weights))


def fit_full_batch(model, device, X, y, weights, evaluate, publish):
    """model.solver ("lbfgs" or "newton-cg") from the model's weights; sets n_iter_ as LogisticRegression's."""
    xp, dtype = array_module(device), compute_dtype(X)
    coef, b = xp.array(model.coef_, dtype=dtype, order="C"), xp.array(model.intercept_, dtype=dtype)
    X = check_sparse(X, "X", xp, dtype) if isinstance(X, CSR) else X  # a CSR's values in the compute dtype
    X, scale = ops.scaled_first(X, x_scale(model.input_scale_, X))  # float X near its dtype's largest
    gradient, product = passes(device, X, y, weights, scale, dtype)
    options = {"C": float(model.C), "tol": float(model.tol), "max_iter": int(model.max_iter), "evaluate": evaluate,
               "publish": publish, "weight_sum": None if weights is None else float(weights.sum()),
               "fit_intercept": bool(model.fit_intercept)}
    if model.solver == "newton-cg":
        n = newton.newton_cg(xp, gradient, product, X.shape[0], coef, b, **options)
    else:
        n = lbfgs.lbfgs(xp, gradient, X.shape[0], coef, b, **options)
    model.n_iter_ = iterations(n)


def iterations(n):
    """n_iter_ of a full-batch fit as LogisticRegression shapes it: (1,) int32, one multinomial problem."""
    return np.array([n], dtype=np.int32)
