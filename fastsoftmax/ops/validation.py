"""Input checks of the public functions, and the rules of scalar options: each names the argument and the fix.

They run once per call at the boundary, so the kernels behind them never check
per element. ``xp`` is numpy or cupy, whichever holds the arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..arrays import CSR, is_dask, is_sparse
from ..reference.schedules import SCHEDULES

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


def check_sparse(X, name, xp, dtype=None):
    """A scipy.sparse or cupyx.scipy.sparse matrix (any format) as a CSR triple (arrays.CSR) of xp's arrays,
    checked as check_matrix checks a dense one, its values finite; a CSR triple as given. Other formats
    (CSC, COO, ...) are converted to CSR once: O(nnz) time and a copy of the matrix. dtype: the
    values' dtype (W's; float32 or float64; None: float32 and float64 kept, other numbers become
    float64). Indices and row starts share one dtype, int32 where it holds nnz and the column count."""
    if isinstance(X, CSR):
        return X if dtype is None else X._replace(data=xp.ascontiguousarray(X.data, dtype=dtype))
    if len(X.shape) != 2:
        raise ValueError(f"{name} must be 2-D (rows, columns), got shape {X.shape}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise ValueError(f"{name} must have at least 1 row and 1 column, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}; its values must be numbers (float32 and float64 are used as "
                        "they are)")
    csr = X.tocsr()
    target = dtype or (X.dtype if X.dtype in WEIGHT_DTYPES else np.float64)
    index = np.int32 if max(csr.nnz, d) < 2**31 else np.int64
    data = xp.ascontiguousarray(xp.asarray(csr.data, dtype=target))
    indices, indptr = (xp.ascontiguousarray(xp.asarray(a, dtype=index)) for a in (csr.indices, csr.indptr))
    if not bool(xp.isfinite(data).all()):
        at = int(xp.argmax(~xp.isfinite(data)))
        raise ValueError(f"{name} holds NaN or inf (first in row {int(xp.searchsorted(indptr, at, side='right')) - 1}"
                         "); replace or drop those values before fitting")
    if csr.nnz and (int(indices.min()) < 0 or int(indices.max()) >= d):
        raise ValueError(f"{name} holds column indices outside [0, {d}): a corrupt sparse matrix")
    if int(indptr[0]) != 0 or int(indptr[-1]) != csr.nnz or bool((indptr[1:] < indptr[:-1]).any()):
        raise ValueError(f"{name}'s row pointers (indptr) do not run from 0 to nnz in order: a corrupt sparse "
                         "matrix")
    return CSR(data, indices, indptr, (n, d))


def check_any_matrix(X, name, xp):
    """check_matrix (a feature dtype) for a dense X, check_sparse (values as given) for a sparse one."""
    return check_sparse(X, name, xp) if is_sparse(X) else check_matrix(X, name, xp, FEATURE_DTYPES)


def check_sample_weight(sample_weight, n_rows, dtype, xp):
    """None, or the rows' weights as a C-contiguous (n_rows,) array of dtype, normalised to mean 1 (the
    kernels' convention: they divide by the rows counted); a number weighs every row alike. A Dask
    sample_weight (xp: dask.array) stays lazy: its checks compute it, and it is returned lazy."""
    if sample_weight is None:
        return None
    w = xp.asarray(sample_weight)
    if w.ndim == 0:
        w = xp.full(n_rows, w)
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row, got {w.shape}")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers, got dtype {w.dtype}")
    w = check_finite(w.astype(np.float64), "sample_weight", xp)
    if bool((w < 0).any()):
        raise ValueError(f"sample_weight holds negative weights (the first at row {int(xp.argmax(w < 0))}); "
                         "a weight must be >= 0")
    total = float(w.sum())
    if total <= 0:
        raise ValueError("sample_weight is zero for every row: at least one row must have a positive weight")
    w = w * (n_rows / total)
    return w.astype(dtype) if is_dask(w) else xp.ascontiguousarray(w, dtype=dtype)


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
    return _check_indices(y, "y", n_rows, f"have shape ({n_rows},), one label per row", "class labels",
                          n_classes, f"for {n_classes} classes", xp)


def check_rows(rows, n_rows, xp):
    """rows: a 1-D integer array of at least one row index in [0, n_rows), returned as int64."""
    return _check_indices(rows, "rows", None, "be a 1-D array of at least one row index", "row indices",
                          n_rows, f"for X's {n_rows} rows", xp)


def _check_indices(a, name, length, shape_rule, what, limit, meaning, xp):
    """a 1-D integer array of `length` entries (or any number >= 1 for None) in [0, limit), as int64."""
    a = xp.asarray(a)
    if a.ndim != 1 or a.shape[0] < 1 or a.shape[0] != (a.shape[0] if length is None else length):
        raise ValueError(f"{name} must {shape_rule}, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer {what}, got dtype {a.dtype} (convert with {name}.astype(np.int64))")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= limit:
        raise ValueError(f"{name} holds {what} in [{lo}, {hi}], outside [0, {limit}) {meaning}")
    return xp.ascontiguousarray(a, dtype=np.int64)


def check_scale(x_scale):
    try:
        x_scale = float(x_scale)
    except (TypeError, ValueError):
        raise TypeError(f"x_scale must be a real number, got {x_scale!r}") from None
    if not math.isfinite(x_scale):
        raise ValueError(f"x_scale must be finite, got {x_scale}")
    return x_scale


def check_finite(a, name, xp):
    """ValueError naming `name` if the float array a holds NaN or inf (integer arrays always pass).

    One pass over a, once per public call: the training loop never repeats it.
    """
    if a.dtype.kind == "f" and not bool(xp.isfinite(a).all()):
        where = xp.argwhere(~xp.isfinite(a))[0]
        raise ValueError(f"{name} holds NaN or inf (first at index {tuple(int(i) for i in where)}); "
                         "replace or drop those values before fitting")
    return a


# The CUDA kernels take row counts, batch sizes and the step within an epoch as
# int32, so epochs and batches stay below 2**31; a run's step count (epochs *
# steps per epoch < 2**62) then fits the int64 both backends use.
MAX_INT32 = 2**31 - 1
# The steps of a run, counted in the kernels' int64 (start_step + the epoch's steps must not wrap).
MAX_STEP = 2**62


@dataclass(frozen=True)
class Rule:
    """What a scalar option must be: an integer or a finite real number at or
    above `low` (above it when `strict`) and at most `high`, one of `choices`,
    or a bool.

    ``check`` serves the Python API (the message names the argument),
    ``parse`` the command lines (the message quotes the text typed).
    """

    kind: type
    low: float | None = None
    strict: bool = False
    choices: tuple = ()
    high: int | None = None
    words: tuple = ()  # strings a numeric rule also takes (input_scale="auto")
    infinite: bool = False  # a real rule that also takes +inf (C=inf: no penalty)

    def __str__(self):
        if self.words:
            return " or ".join((*map(repr, self.words), str(Rule(self.kind, self.low, self.strict, high=self.high))))
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind is bool:
            return "True or False"
        if self.kind is int:
            low = "" if self.low is None else f" {'>' if self.strict else '>='} {self.low}"
            return "an integer" + low + ("" if self.high is None else f" and <= {self.high}")
        if self.low is None:
            return "a finite number"
        if self.infinite:
            return f"a {'positive' if self.strict else 'non-negative'} number or inf"
        return f"a {'positive' if self.strict else 'non-negative'} finite number"

    def allows(self, value) -> bool:
        if self.words and isinstance(value, str):
            return value in self.words
        if self.choices:
            return isinstance(value, str) and value in self.choices
        if self.kind is bool:
            return isinstance(value, (bool, np.bool_))
        numbers = (int, np.integer) if self.kind is int else (int, float, np.integer, np.floating)
        if not isinstance(value, numbers) or isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is not int and not math.isfinite(float(value)):
            return self.infinite and float(value) == math.inf
        if self.high is not None and value > self.high:
            return False
        return self.low is None or value > self.low or (value == self.low and not self.strict)

    def check(self, name, value):
        """value, if it obeys the rule; else ValueError naming `name`."""
        if not self.allows(value):
            raise ValueError(f"{name} must be {self}, got {value!r}")
        return value

    def parse(self, text: str):
        """The value a command-line word stands for; ValueError quoting the word."""
        try:
            value = self.kind(text) if not (self.choices or text in self.words) else text
        except ValueError:
            value = None
        if value is None or not self.allows(value):
            raise ValueError(f"must be {self}, got {text!r}")
        return value


POSITIVE_INT = Rule(int, low=1)
NON_NEGATIVE_INT = Rule(int, low=0)
COUNT = Rule(int, low=1, high=MAX_INT32)  # epochs, batch_size: int32 in the kernels
STEP = Rule(int, low=0, high=MAX_STEP)  # start_step
STEPS = Rule(int, low=1, high=MAX_STEP)  # total_steps
POSITIVE_NUMBER = Rule(float, low=0, strict=True)
NON_NEGATIVE_NUMBER = Rule(float, low=0)
SCHEDULE = Rule(str, choices=SCHEDULES)
POSITIVE_OR_INF = Rule(float, low=0, strict=True, infinite=True)  # C
SOLVERS = ("sgd", "lbfgs", "newton-cg")
FULL_BATCH = ("lbfgs", "newton-cg")  # the solvers of LogisticRegression's objective (C, tol, max_iter)
POSITIVE_OR_AUTO = Rule(float, low=0, strict=True, words=("auto",))  # lr and input_scale
