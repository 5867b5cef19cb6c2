"""Input checks of the public functions: each names the argument and the fix.

They run once per call at the boundary, so the kernels behind them never check
per element. ``xp`` is numpy or cupy, whichever holds the arrays.
"""

from __future__ import annotations

import math

import numpy as np

FEATURE_DTYPES = (np.uint8, np.float32, np.float64)
WEIGHT_DTYPES = (np.float32, np.float64)


def _dtype_names(dtypes):
    return "/".join(np.dtype(t).name for t in dtypes)


def check_matrix(a, name, xp, dtypes, min_cols=1):
    """A 2-D array of one of `dtypes` with at least one row, C-contiguous."""
    a = xp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < min_cols:
        raise ValueError(f"{name} must have at least 1 row and {min_cols} column(s), got shape {a.shape}")
    if a.dtype not in dtypes:
        raise TypeError(
            f"{name} has dtype {a.dtype}; supported: {_dtype_names(dtypes)} "
            f"(convert with {name}.astype(np.float32))"
        )
    return xp.ascontiguousarray(a)


def check_weights(W, b, n_features, xp):
    """W (d, k) float32/float64 and b (k,) of W's dtype, both finite.

    Returns (coef, b): coef is W transposed, (k, d) C-contiguous, the layout the
    kernels read (no copy when W is itself a transposed C-contiguous array).
    """
    W = xp.asarray(W)
    if W.ndim != 2 or W.shape[0] != n_features or W.shape[1] < 2:
        raise ValueError(
            f"W must have shape (n_features, n_classes) = ({n_features}, k) with k >= 2, got {W.shape}"
        )
    if W.dtype not in WEIGHT_DTYPES:
        raise TypeError(f"W has dtype {W.dtype}; supported: float32/float64 (it sets the compute precision)")
    b = xp.asarray(b)
    if b.shape != (W.shape[1],):
        raise ValueError(f"b must have shape ({W.shape[1]},), one bias per class of W, got {b.shape}")
    if b.dtype.kind not in "fiu":
        raise TypeError(f"b has dtype {b.dtype}; it must be numeric")
    b = xp.ascontiguousarray(b, dtype=W.dtype)
    if not (bool(xp.isfinite(W).all()) and bool(xp.isfinite(b).all())):
        raise ValueError("W and b must be finite; they hold NaN or inf")
    return xp.ascontiguousarray(W.T), b


def check_labels(y, n_rows, n_classes, xp):
    """y (n,) integer labels in [0, n_classes), returned as int64."""
    y = xp.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"y must have shape ({n_rows},), one label per row, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype} (convert with y.astype(np.int64))")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"y holds labels in [{lo}, {hi}], outside [0, {n_classes}) for {n_classes} classes")
    return xp.ascontiguousarray(y, dtype=np.int64)


def check_scale(x_scale):
    try:
        x_scale = float(x_scale)
    except (TypeError, ValueError):
        raise TypeError(f"x_scale must be a real number, got {x_scale!r}") from None
    if not math.isfinite(x_scale):
        raise ValueError(f"x_scale must be finite, got {x_scale}")
    return x_scale
