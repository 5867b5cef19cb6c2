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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Standardization", "moments"]

CHUNK_BYTES = 32 * 2**20  # the largest float64 temporary made while reading X
# A feature whose standard deviation is below this (or below the rounding noise
# of its mean in X's dtype, as StandardScaler's rule) is taken as constant: its
# raw-unit weight would be ~1/std, past what float32 weights hold.
SMALLEST_STD = 1e-20


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
    def from_moments(cls, xp, mean, std, x_scale, dtype):
        """From the features' moments of an X of `dtype`, whose rounding sets what counts as constant."""
        mean, std = xp.asarray(mean, dtype=xp.float64), xp.asarray(std, dtype=xp.float64)
        if not bool(xp.isfinite(std).all()):
            raise ValueError("X's features are too large to standardise (their variance overflows float64): "
                             "divide X by a constant first, or pass a numeric lr to train on X as given")
        constant = (std <= SMALLEST_STD) | (std <= 10 * np.finfo(dtype).eps * xp.abs(mean))
        return cls(mean, xp.where(constant, 1.0, 1.0 / xp.where(constant, 1.0, std)), float(x_scale))

    def apply(self, xp, X):
        """z for X's rows: a new C-ordered float32 array on xp's device."""
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
