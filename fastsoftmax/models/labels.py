"""Class labels: the classes of a model, and labels as the indices 0..k-1 the kernels see.

Any labels scikit-learn takes (integers, floats, strings; negative or gappy)
map to indices into the sorted classes; NumPy and CuPy labels alike.
"""

from __future__ import annotations

import numpy as np

from ..arrays import device_of, is_dask, to_numpy
from ..io.modelfile import LABEL_KINDS, MAX_CLASSES
from ..ops.dispatch import array_module
from ..ops.validation import check_sample_weight
from ..solvers.dask import dask_array, persist


def as_classes(classes, seen=False):
    """The classes as a sorted 1-D array of distinct labels; a count k means 0..k-1.

    seen: the labels found in y (whose count, not a `classes` argument, is then named).
    """
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, (bool, np.bool_)):
        if not 2 <= classes <= MAX_CLASSES:
            raise ValueError(f"classes must number between 2 and {MAX_CLASSES}, got {classes}")
        return np.arange(int(classes))
    what = "y holds" if seen else "classes must be"
    values = np.asarray(classes)
    if values.dtype.kind == "O" and all(isinstance(v, str) for v in values.ravel()):
        values = values.astype(str)  # strings in an object array (pandas): stored as a string array
    if values.ndim != 1 or values.dtype.kind not in LABEL_KINDS or (
            values.dtype.kind == "f" and not np.isfinite(values).all()):
        raise ValueError(f"classes must be a class count k or a 1-D array of labels (integers, floats or "
                         f"strings), got {classes!r:.80}")
    found = np.unique(values)
    if len(found) != len(values) and not seen:
        raise ValueError(f"classes must be distinct labels, got {classes!r:.80}")
    if len(found) < 2:
        raise ValueError(f"This solver needs samples of at least 2 classes in the data, "
                         f"but the data contains only one class: {found[0]!r}" if len(found) and seen else
                         f"{what} at least 2 classes, got {found!r:.80}")
    if len(found) > MAX_CLASSES:
        raise ValueError(f"classes must number between 2 and {MAX_CLASSES}, got {len(found):,}")
    return found


def fit_classes(labels, classes=None, fitted=None):
    """A fit's classes: `classes` (labels, or a count k), else a fitted model's (`fitted`, for a warm
    start; `classes` must then agree with it), else the labels found in `labels` (y, and eval_set's y)."""
    if classes is not None:
        found = as_classes(classes)
        if fitted is not None and not np.array_equal(found, fitted):
            raise ValueError(f"{_count_or_other(found, fitted)}: {_differences(found, fitted)}")
        return found
    if fitted is not None:
        return fitted
    return as_classes(np.unique(np.concatenate([host_labels(a) for a in labels])), seen=True)


def _count_or_other(found, fitted):
    if len(found) != len(fitted):
        return f"classes has {len(found)} classes, but the fitted model has {len(fitted)}"
    return f"classes has other labels than the {len(fitted)} of the fitted model"


def _differences(found, fitted):
    """Which labels of `classes` (found) the fitted model lacks and which of its own are missing:
    a count alone does not say what to fix."""
    if (found.dtype.kind == "U") != (fitted.dtype.kind == "U"):
        return f"labels of another kind ({found.dtype}) than its classes ({fitted.dtype}): {_some(fitted)}"
    new, missing = found[~np.isin(found, fitted)], fitted[~np.isin(fitted, found)]
    return "; ".join([f"{_some(new)} not among its classes"] * bool(len(new)) +
                     [f"its {_some(missing)} missing from classes"] * bool(len(missing)))


def _some(labels, shown=5):
    """The first few labels, as Python values (not np.str_('a')), and how many more."""
    text = ", ".join(f"{v!r:.40}" for v in labels[:shown].tolist())
    return text + (f" and {len(labels) - shown:,} more" if len(labels) > shown else "")


def host_labels(y):
    """y's labels on the host (one transfer of the distinct labels of a CuPy y), 1-D."""
    if device_of(y) == "cuda":
        return to_numpy(array_module("cuda").unique(y))
    return np.asarray(y).ravel()


def encode(y, classes_, xp, name):
    """y's labels as int64 indices into classes_, an array of xp's kind; ValueError for a label not in classes_.

    A Dask y is encoded chunk by chunk and held where Dask keeps results (a cluster's workers), so
    that every pass over the data reads it there (host chunks: the kernels' tasks move them).
    """
    if is_dask(y):
        return persist(y.map_blocks(encode, classes_, np, name, dtype=np.int64))
    host = device_of(y) != "cuda"
    yy = np.asarray(y) if host else y
    if yy.ndim != 1:
        raise ValueError(f"{name} must be 1-D, one label per row, got shape {yy.shape}")
    if yy.size == 0:
        raise ValueError(f"{name} holds no labels")
    if host and yy.dtype.kind == "O" and classes_.dtype.kind == "U":
        yy = yy.astype(str)
    ns = np if host else array_module("cuda")
    table = classes_ if host else ns.asarray(classes_)
    try:
        index = ns.searchsorted(table, yy)
        known = ns.take(table, ns.minimum(index, len(classes_) - 1)) == yy
    except (TypeError, ValueError, np.exceptions.DTypePromotionError):
        raise ValueError(f"{name} holds labels of another kind ({yy.dtype}) than the classes "
                         f"{classes_!r:.80}") from None
    if not bool(ns.all(known)):
        missing = np.unique(to_numpy(yy[~known]) if not host else yy[~known])
        raise ValueError(f"{name} holds labels that are not among the classes {classes_!r:.80}: "
                         f"{missing[:5]!r:.80}")
    return xp.asarray(index.astype(np.int64))


def row_weights(class_weight, classes_, y, sample_weight, xp):
    """The rows' weights as a float64 array of xp, or None where every row weighs 1: sample_weight (None,
    a number, or one per row) times each row's class weight (class_weight: None, "balanced" or a dict
    {label: weight}; y: the rows' indices into classes_), as LogisticRegression multiplies them."""
    if class_weight is None and sample_weight is None:
        return None
    n = y.shape[0]
    weights = xp.ones(n) if sample_weight is None else xp.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers, got dtype {weights.dtype}")
    weights = xp.broadcast_to(weights.astype(xp.float64), (n,)) if weights.ndim == 0 else weights.astype(xp.float64)
    if class_weight is None:
        return weights
    if weights.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row, got {weights.shape}")
    return weights * class_weights(class_weight, classes_, y, None if sample_weight is None else weights, xp)[y]


def class_weights(class_weight, classes_, y, sample_weight, xp):
    """Each class's weight (k,): "balanced" gives n / (c * the class's count in y), c the number of
    classes present in y, with sample_weight its weighted equivalent (sum(w) / (c * the class's sum
    of w): scikit-learn's compute_class_weight, on the classes y holds); a dict gives its labels'
    weights, the other classes 1."""
    k = len(classes_)
    if isinstance(class_weight, str):
        counts = xp.bincount(y, weights=sample_weight, minlength=k)
        present = int((xp.bincount(y, minlength=k) > 0).sum())
        return xp.where(counts > 0, float(counts.sum()) / (present * xp.where(counts > 0, counts, 1)), 0.0)
    weights, index = np.ones(k), {label: i for i, label in enumerate(classes_.tolist())}
    for label, weight in class_weight.items():
        if label not in index:
            raise ValueError(f"class_weight names the label {label!r}, which is not one of the classes "
                             f"({_some(classes_)})")
        weights[index[label]] = weight
    return xp.asarray(weights)


def checked_row_weights(class_weight, classes_, X, y, sample_weight, xp, partial=False):
    """row_weights for a fit on X (partial: partial_fit's), checked: ValueError for negative, NaN or
    all-zero weights, and for class_weight="balanced" in partial_fit."""
    if partial and isinstance(class_weight, str):  # as SGDClassifier: one call's counts are not y's
        raise ValueError("class_weight='balanced' needs every label at once: partial_fit takes a dict of "
                         "class weights, or sample_weight")
    if is_dask(X):  # lazily, on y's chunks
        xp = dask_array()
        if is_dask(sample_weight) and sample_weight.shape == y.shape:
            sample_weight = sample_weight.rechunk(y.chunks)
        elif sample_weight is not None and np.shape(sample_weight) == y.shape:
            sample_weight = xp.from_array(np.asarray(sample_weight), chunks=y.chunks)
    weights = row_weights(class_weight, classes_, y, sample_weight, xp)
    if is_dask(weights):
        weights = persist(weights.rechunk(y.chunks))
    if weights is not None:
        check_sample_weight(weights, X.shape[0], np.float64, xp)
    return weights
