"""Standardised features for SGD under lr="auto": how the fit sees X, never what the model stores.

One step size cannot suit features in [0, 1] and features in the thousands,
at an offset of 1000, or constant: SGD at lr 0.5 oscillates at a huge loss
on the latter. So with lr="auto" SoftmaxRegression trains on float32
z = (x - mean) * scale, each feature centred and divided by its standard
deviation (as scikit-learn's StandardScaler does; a constant feature keeps
scale 1 and becomes 0), and maps the weights back to X's own units after
every epoch. coef_ and intercept_ therefore take X as it is: predict, the
model file and every kernel need nothing new. Measured on small tables
(README, "Your own data"), this brings SGD within 0.02 of scikit-learn's
LogisticRegression at any feature scale; scaling without centring did not.

The cost is one float32 copy of X for the fit, made in row chunks so that
no float64 temporary is larger than CHUNK_BYTES.

A sparse X is scaled, not centred (centring would densify it): z = x * scale,
each column divided by its largest magnitude, as scikit-learn's MaxAbsScaler
does, so z lies in [-1, 1] and stays as sparse; its copy is one float32
array of its values (indices shared). Dividing by the standard deviation
instead (StandardScaler(with_mean=False)) blows rare columns up to ~sqrt(n):
on TF-IDF text (Debian's package descriptions, 20 sections) SGD then
overfitted, 0.71 test accuracy against LogisticRegression's 0.79, where
MaxAbs scaling reaches 0.80 (sparse_rate below sets the step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import CSR, is_dask
from ..solvers.dask import chunk_results, sparse_chunks

__all__ = ["Standardization", "moments"]

CHUNK_BYTES = 32 * 2**20  # the largest float64 temporary made while reading X
# A feature whose standard deviation is below this (or below the rounding noise
# of its mean in X's dtype, as StandardScaler's rule) is taken as constant: its
# raw-unit weight would be ~1/std, past what float32 weights hold.
SMALLEST_STD = 1e-20
# lr="auto" on a sparse X (columns MaxAbs-scaled): the peak rate is SPARSE_STEP / the rows' mean squared
# norm (estimator.py's lr="auto"). Sparse rows are near-orthogonal, so a step much larger than the dense 0.5 is stable, and rare
# columns need it: on TF-IDF of Debian's package descriptions (20 sections, mean ||z||^2 2.1-6.3) test
# accuracy was 0.77-0.78 at 25, 0.80 at 100 and 400 (LogisticRegression: 0.79-0.80); on planted sparse
# models 0.40 / 0.26 at 100 against LogisticRegression's 0.42 / 0.26. 0.5 itself underfit text (0.54).
SPARSE_STEP = 100.0


def _row_chunks(n, d):
    rows = max(1, CHUNK_BYTES // (8 * d))
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def moments(xp, X):
    """Each feature's mean and standard deviation, float64 (d,) arrays of xp, in two passes by row chunks."""
    n, d = X.shape
    total = xp.zeros(d, xp.float64)
    for rows in _row_chunks(n, d):
        total += X[rows].sum(axis=0, dtype=xp.float64)
    mean = total / n
    squares = xp.zeros(d, xp.float64)
    with np.errstate(over="ignore"):  # an overflow is Standardization.from_moments's error to name
        for rows in _row_chunks(n, d):
            squares += ((X[rows] - mean) ** 2).sum(axis=0)
    return mean, xp.sqrt(squares / n)


@dataclass(frozen=True)
class Standardization:
    """z = (x - mean) * scale, and the maps between weights on z and weights on x * x_scale.

    mean and scale are float64 (d,) arrays on the training device; x_scale is
    the model's input_scale (the kernels multiply X by it at predict).
    """

    mean: object
    scale: object
    x_scale: float

    @classmethod
    def max_abs(cls, xp, X, x_scale):
        """A sparse X's scaling (a CSR, or a Dask X of sparse chunks, a pass over them): each column divided
        by its largest magnitude (an all-zero column by 1), not centred."""
        if is_dask(X):
            peak = xp.asarray(np.max(chunk_results(X, lambda chunk: column_peaks(np, chunk)), axis=0))
        else:
            peak = column_peaks(xp, X)
        return cls(xp.zeros(peak.shape[0]), 1.0 / xp.where(peak > 0, peak, 1.0), float(x_scale))

    @classmethod
    def from_moments(cls, xp, mean, std, x_scale, dtype):
        """From the features' moments of an X of `dtype`, whose rounding sets what counts as constant."""
        mean, std = xp.asarray(mean, dtype=xp.float64), xp.asarray(std, dtype=xp.float64)
        if not bool(xp.isfinite(std).all()):
            raise ValueError("X's features are too large to standardise (their variance overflows float64): "
                             "divide X by a constant first, or pass a numeric lr to train on X as given")
        constant = (std <= SMALLEST_STD) | (std <= 10 * np.finfo(dtype).eps * xp.abs(mean))
        return cls(mean, xp.where(constant, 1.0, 1.0 / xp.where(constant, 1.0, std)), float(x_scale))

    def apply(self, xp, X):
        """z for X's rows: a new C-ordered float32 array on xp's device (a CSR X: a CSR z, its values
        new, its indices X's)."""
        if isinstance(X, CSR):
            data, step = xp.empty(X.data.shape, xp.float32), CHUNK_BYTES // 8
            for lo in range(0, data.shape[0], step):
                data[lo : lo + step] = X.data[lo : lo + step] * self.scale[X.indices[lo : lo + step]]
            return X._replace(data=data)
        Z = xp.empty(X.shape, xp.float32)
        for rows in _row_chunks(*X.shape):
            Z[rows] = (X[rows] - self.mean) * self.scale
        return Z

    def around(self, xp, evaluate, publish, dtype):
        """evaluate(W, b) and publish(W, b, ...) for training on z: given the weights on X's units, in
        `dtype` (one model's, or a sweep's stacked (m, k, d) and (m, k)); publish's other arguments pass."""

        def evaluate_z(V, c):
            return evaluate(*self.to_raw(xp, V, c, dtype))

        def publish_z(V, c, *rest):
            publish(*self.to_raw(xp, V, c, dtype), *rest)

        return evaluate_z, publish_z

    def to_raw(self, xp, V, c, dtype):
        """(W, b) in `dtype` on x * x_scale from (V, c) on z: the same logits, x @ W.T + b = z @ V.T + c."""
        V64 = xp.asarray(V, dtype=xp.float64)
        W = V64 * (self.scale / self.x_scale)
        b = xp.asarray(c, dtype=xp.float64) - V64 @ (self.mean * self.scale)
        return W.astype(dtype), b.astype(dtype)

    def from_raw(self, xp, W, b, dtype):
        """(V, c) in `dtype` on z from (W, b) on x * x_scale: to_raw's inverse, for a warm start."""
        V64 = xp.asarray(W, dtype=xp.float64) * (self.x_scale / self.scale)
        c = xp.asarray(b, dtype=xp.float64) + V64 @ (self.mean * self.scale)
        return xp.ascontiguousarray(V64.astype(dtype)), c.astype(dtype)


def _scatter_max(xp, out, at, values):
    """out[at[i]] = max(out[at[i]], values[i]) for every i (repeated indices included)."""
    if hasattr(xp.maximum, "at"):
        xp.maximum.at(out, at, values)
        return
    import cupyx  # CuPy's ufuncs have no .at

    cupyx.scatter_max(out, at, values)


def column_peaks(xp, X):
    """Each column's largest magnitude over a CSR X: a float64 (d,) array of xp, by chunks of its values."""
    peak, step = xp.zeros(X.shape[1]), CHUNK_BYTES // 8
    for lo in range(0, X.data.shape[0], step):
        _scatter_max(xp, peak, X.indices[lo : lo + step], xp.abs(X.data[lo : lo + step]).astype(xp.float64))
    return peak


def square_sum(xp, Z):
    """The sum of a CSR Z's squared values (its rows' ||z||^2, added), by chunks of its values."""
    step, total = CHUNK_BYTES // 8, 0.0
    for lo in range(0, Z.data.shape[0], step):
        values = Z.data[lo : lo + step].astype(xp.float64)
        total += float((values * values).sum())
    return total


def sparse_rate(xp, Z, standard=None):
    """lr="auto"'s peak rate on a sparse Z of columns scaled to [-1, 1]: SPARSE_STEP / the rows' mean
    ||z||^2. Z: a CSR, or a Dask X of sparse chunks that standard scales as each loads (a pass over them)."""
    if is_dask(Z):
        total = sum(chunk_results(Z, lambda chunk: square_sum(np, standard.apply(np, chunk))))
    else:
        total = square_sum(xp, Z)
    return SPARSE_STEP / max(total / Z.shape[0], 1e-12)


def auto_rate(xp, X, X_fit, standard, dense_rate):
    """lr="auto"'s peak rate: dense_rate, or on a sparse X (in memory as X_fit, scaled; or a Dask X of
    sparse chunks) sparse_rate of the rows as trained on."""
    if is_dask(X) and sparse_chunks(X):
        return sparse_rate(xp, X, standard)
    return sparse_rate(xp, X_fit) if isinstance(X, CSR) else dense_rate
