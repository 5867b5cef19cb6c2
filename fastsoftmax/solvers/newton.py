"""Newton-CG on the fused kernels: scikit-learn's newton-cg, each Hessian-vector product one pass over X.

The objective is objective.py's (LogisticRegression's), and the method and
stopping rule are scikit-learn's ``_newton_cg`` (sklearn/utils/optimize.py):
each Newton iteration stops when max |gradient| <= tol, else solves
H p = -g by conjugate gradients to a residual of sum |r| <= eta sum |g| with
eta = min(0.5, sqrt(sum |g|)) (capped: at most MAX_INNER steps, stopping at
tiny or negative curvature), then takes a Wolfe line search along p. Near the
optimum it converges quadratically, so it needs far fewer passes over X to a
tight optimum than L-BFGS (a pass is a gradient or a Hessian product: each
one fused read of X, ops.linear_softmax_hessian_product). The step of 1 is
tried first and a Newton step is usually taken as it is: one gradient pass
per iteration beyond its CG's products.
"""

from __future__ import annotations

import warnings

import numpy as np

from .objective import Iterations, Objective, penalty, start

MAX_INNER = 200  # scikit-learn's maxinner
# Mixed precision was tried and left out: with the Hessian products in float32 (the gradient, line
# search and stopping test in float64) a product costs half (25 against 46 ms on Fashion-MNIST's uint8
# pixels), but on that ill-conditioned problem (C = 1) the CG then needs up to 3x more steps per Newton
# iteration even where eta = 0.5: 1e-6 of the optimum came 10% sooner, 1e-4 5%, not worth a second rule.


def conjugate_gradient(product, g, tol, max_iter=MAX_INNER):
    """p with H p ~ -g by CG from 0 (scikit-learn's _cg): until sum |residual| <= tol, max_iter steps, or a
    direction of tiny or negative curvature (a steepest-descent step if the first one is)."""
    eps = 16 * np.finfo(g.dtype).eps
    p, r = np.zeros_like(g), g.copy()  # r = g + H p
    d = -r
    rr = float(r @ r)
    d_norm2 = rr
    for i in range(max_iter + 1):
        if np.abs(r).sum() <= tol:
            break
        Hd = product(d)
        curvature = float(d @ Hd)
        if 0 <= curvature <= eps * d_norm2:
            break
        if curvature < 0:
            if i == 0:
                p += rr / curvature * d
            break
        step = rr / curvature
        p += step * d
        r += step * Hd
        rr_next = float(r @ r)
        beta = rr_next / rr
        d *= beta  # d = -r + beta d, in place: the vectors are k (d + 1) long
        d -= r
        d_norm2 = rr_next + beta**2 * d_norm2
        rr = rr_next
    return p


def line_search(objective, x, p, f, g, previous_f):
    """(step, f, g) at x + step p meeting the strong Wolfe conditions (SciPy's line_search, which tries 1
    first); a step of 1 whose loss change is within float rounding and whose sum |gradient| shrinks (as
    scikit-learn accepts); None where neither holds."""
    from scipy.optimize import line_search as wolfe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LineSearchWarning: the failure is handled below
        step, _, _, f_new, _, g_new = wolfe(lambda w: objective(w)[0], lambda w: objective(w)[1], x, p, g, f,
                                            previous_f, maxiter=10)
    if step is not None:
        return step, f_new, g_new if g_new is not None else objective(x + step * p)[1]
    f_new, g_new = objective(x + p)
    if abs(f_new - f) <= abs(f) * 16 * np.finfo(float).eps and np.abs(g_new).sum() < np.abs(g).sum():
        return 1.0, f_new, g_new
    return None


def newton_cg(xp, gradient, product, n, coef, b, *, C, tol, max_iter, evaluate, publish, weight_sum=None,
              fit_intercept=True):
    """Minimise LogisticRegression's multinomial objective from coef, b by Newton-CG; the iterations run.

    gradient(W, bias) and product(W, bias, V, vb) are one pass over the n rows
    each (objective.fused_gradient, objective.fused_hessian_product); the other
    arguments, what is published and Ctrl-C are lbfgs.lbfgs's. Warns with
    ConvergenceWarning where max_iter ends it first, or where the line search
    finds no step (the weights are then the last iterate's).
    """
    from sklearn.exceptions import ConvergenceWarning

    k, d = coef.shape
    objective = Objective(gradient, k, d, penalty(C, n if weight_sum is None else weight_sum), fit_intercept,
                          product)
    x = start(coef, b, fit_intercept)
    iterations = Iterations(objective, xp, n, coef.dtype, x, evaluate, publish)
    f, g = objective(x)
    previous_f = None
    try:
        while iterations.n < max_iter and np.abs(g).max() > tol:
            absolute = np.abs(g).sum()
            p = conjugate_gradient(lambda v, x=x: objective.hessian_product(x, v), g,
                                   min(0.5, np.sqrt(absolute)) * absolute)
            found = line_search(objective, x, p, f, g, previous_f)
            if found is None:
                warnings.warn("newton-cg's line search found no step that lowers the objective; stopping at the "
                              "last iterate (scale the data, or lower tol)", ConvergenceWarning, stacklevel=4)
                break
            step, previous_f = found[0], f
            x, f, g = x + step * p, found[1], found[2]
            iterations(x)
    except KeyboardInterrupt:
        iterations.interrupted()
        raise
    if iterations.n >= max_iter and np.abs(g).max() > tol:
        warnings.warn(f"newton-cg stopped after max_iter={max_iter} iterations before the gradient reached "
                      f"tol={tol}; increase max_iter, or scale the data", ConvergenceWarning, stacklevel=4)
    iterations.finish(x)
    return iterations.n
