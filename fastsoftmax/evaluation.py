"""What a classifier gets right and wrong, from its labels: confusion matrix,
per-class accuracy and the class pairs it mixes up most.

Pure NumPy and no matplotlib, so the numbers printed by ``fastsoftmax.predict``
and the ones drawn by ``fastsoftmax.plots`` come from one tested place.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .validation import check_labels


class ConfusedPair(NamedTuple):
    """Classes a and b, mixed up a_as_b + b_as_a times; a is the one mistaken more often."""

    a: int
    b: int
    a_as_b: int
    b_as_a: int

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: [i, j] is how many of class i were predicted j."""
    y_true = check_labels(y_true, np.size(y_true), n_classes, np)
    y_pred = check_labels(y_pred, y_true.shape[0], n_classes, np)
    # One bincount over the flat cell index: no Python loop over the rows.
    cells = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Each class's fraction of images predicted right (its recall); NaN for a class with none."""
    totals = counts.sum(axis=1)
    right = np.diagonal(counts).astype(np.float64)
    return np.divide(right, totals, out=np.full(len(counts), np.nan), where=totals > 0)


def most_confused(counts: np.ndarray, top: int = 5) -> list[ConfusedPair]:
    """The `top` unordered class pairs mixed up most (both directions counted), most first.

    Pairs never confused are left out, so the list may be shorter than `top`.
    """
    a, b = np.triu_indices(len(counts), k=1)
    a_as_b, b_as_a = counts[a, b], counts[b, a]
    # Stable: ties keep class order, so the printout is the same run to run.
    order = np.argsort(-(a_as_b + b_as_a), kind="stable")[:top]
    pairs = []
    for i in order:
        if a_as_b[i] + b_as_a[i] == 0:
            break
        pair = ConfusedPair(int(a[i]), int(b[i]), int(a_as_b[i]), int(b_as_a[i]))
        pairs.append(pair if pair.a_as_b >= pair.b_as_a else ConfusedPair(pair.b, pair.a, pair.b_as_a, pair.a_as_b))
    return pairs
