"""The models' inputs, checked once per fit (or per predict): NumPy arrays and scipy.sparse
matrices by scikit-learn's validate_data, CuPy arrays and cupyx.scipy.sparse matrices on their
device (scikit-learn's checks would copy them to the host), Dask arrays chunk by chunk; and the
scale X is multiplied by. A sparse X comes back as the CSR triple the kernels take (arrays.CSR),
never densified.

Every later epoch takes ops' trusted path, so nothing is checked again in the
training loop.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from .. import ops
from ..arrays import CSR, device_of, is_dask, is_sparse
from ..io.modelfile import BY_DTYPE, MAX_CLASSES, MAX_MODEL_BYTES
from ..ops.dispatch import array_module
from ..ops.validation import (
    FEATURE_DTYPES,
    check_finite,
    check_matrix,
    check_sparse,
)
from ..solvers.dask import dask_array, sparse_chunks
from .labels import encode

# What validate_data keeps as given; anything else (ints, objects) becomes float64.
HOST_DTYPES = [np.float64, np.float32, np.uint8]


def auto_input_scale(X) -> float:
    """The scale input_scale="auto" picks: uint8 inputs are pixels in 0..255, scaled to [0, 1]."""
    return 1.0 / 255.0 if X.dtype == np.uint8 else 1.0


def x_scale(input_scale_, X) -> float:
    """The factor X is multiplied by: a model's input_scale_, whatever X's dtype (files of format
    /1-/2, BY_DTYPE: by X's dtype, as "auto")."""
    return auto_input_scale(X) if input_scale_ == BY_DTYPE else input_scale_


def device_matrix(X, name, xp):
    """A CuPy X (dense: 2-D, a feature dtype, finite) or a cupyx.scipy.sparse X (as a CSR triple,
    its values finite) checked where it lies."""
    if is_sparse(X):
        return check_sparse(X, name, xp)
    return check_finite(check_matrix(X, name, xp, FEATURE_DTYPES), name, xp)


def host_matrix(X, name, xp, validate):
    """A host X checked by validate(X, dtype=, order=, accept_sparse=) (scikit-learn's validate_data or
    check_array), on xp's device: dense as it comes back, sparse as a CSR triple."""
    X = validate(X, dtype=HOST_DTYPES, order="C", accept_sparse="csr")
    if is_sparse(X):
        return check_sparse(X, name, xp)  # float32/float64 values kept, other numbers as float64
    return xp.asarray(X)


def check_features(model, X, reset):
    """X's width becomes model.n_features_in_ (reset) or must equal it: scikit-learn's check, for the
    arrays validate_data does not take (CuPy, Dask)."""
    if reset:
        model.n_features_in_ = X.shape[1]
        model.__dict__.pop("feature_names_in_", None)
    elif X.shape[1] != model.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(model).__name__} is expecting "
                         f"{model.n_features_in_} features as input")


def training_data(model, X, y, xp, reset):
    """(X, y, labels): X validated once (in memory: on X's device or moved to xp's; a Dask array:
    chunked by rows), y as given (1-D), and the labels to find the classes in (y, or its distinct
    labels for a Dask y). reset: X's features become the model's (fit), else must be its own."""
    if is_dask(X):
        X, y, found = dask_training_data(X, y)
        check_features(model, X, reset)
        return X, y, found
    if device_of(X) == "cuda":
        X = device_matrix(X, "X", xp)
        check_features(model, X, reset)
        y = xp.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},), one label per row, got {y.shape}")
        return X, y, y
    X, y = validate_data(model, X, y, reset=reset, dtype=HOST_DTYPES, order="C", accept_sparse="csr")
    check_classification_targets(y)
    X = host_matrix(X, "X", xp, lambda X, **checks: X)  # checked above
    return X, y, y


def predict_data(model, X):
    """(X, xp): X checked against the fitted model, on its own device, and its array module."""
    xp = array_module(device_of(X))
    if xp is np:
        return host_matrix(X, "X", xp, lambda X, **checks: validate_data(model, X, reset=False, **checks)), xp
    X = device_matrix(X, "X", xp)
    check_features(model, X, reset=False)
    return X, xp


def eval_data(eval_set, classes_, xp, n_features):
    """eval_set = (X_eval, y_eval) checked, on xp's device, y_eval encoded as indices into classes_."""
    X_eval, y_eval = eval_set
    if device_of(X_eval) == "cuda":
        X_eval = device_matrix(X_eval, "eval_set X", xp)
    else:
        X_eval = host_matrix(X_eval, "eval_set X", xp,
                             lambda X, **checks: check_array(X, input_name="eval_set X", **checks))
    if X_eval.shape[1] != n_features:
        raise ValueError(f"eval_set X has {X_eval.shape[1]} features, but X has {n_features}")
    y_eval = encode(y_eval if device_of(y_eval) == "cuda" else column_or_1d(y_eval), classes_, xp, "eval_set y")
    if y_eval.shape[0] != X_eval.shape[0]:
        raise ValueError(f"eval_set y has {y_eval.shape[0]} labels, but eval_set X has {X_eval.shape[0]} rows")
    return X_eval, y_eval


def check_model_size(n_classes, n_features, source):
    """ValueError naming `source` (what set the class count) if the weights would be absurdly large."""
    size = n_classes * n_features * 4
    if n_classes > MAX_CLASSES or size > MAX_MODEL_BYTES:
        raise ValueError(
            f"{source} make a model of {n_classes:,} classes x {n_features:,} features "
            f"({size / 2**30:,.1f} GiB of weights; at most {MAX_CLASSES:,} classes and "
            f"{MAX_MODEL_BYTES / 2**30:.0f} GiB); labels must be class indices 0..k-1"
        )


def dask_training_data(X, y):
    """(X, y, labels): X a Dask array checked and chunked by rows only, y a Dask array on X's row chunks,
    and y's distinct labels (host), computed in one pass with X's finiteness.

    X keeps uint8, float32 and float64; other numbers become float64 chunk by
    chunk (as scikit-learn's check_array does).
    """
    da = dask_array()
    import dask

    X = _dask_matrix(da, X)
    y = y if isinstance(y, da.Array) else np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},), one label per row, got {y.shape}")
    if isinstance(y, da.Array):
        y = y.rechunk((X.chunks[0],))
        labels = da.unique(y)
    else:  # labels in memory are found here, not sent to the workers for it
        labels, y = np.unique(y), da.from_array(y, chunks=(X.chunks[0],))
    if sparse_chunks(X):  # scipy.sparse chunks (da.map_blocks(sparse.csr_matrix)): their values
        finite = dask.delayed(all)([dask.delayed(_finite_values)(c) for c in X.to_delayed().ravel()])
    else:
        finite = da.isfinite(X).all() if X.dtype.kind == "f" else True
    labels, finite = dask.compute(labels, finite)
    if not finite:
        raise ValueError("Input X contains NaN or infinity; remove or impute those rows first")
    return X, y, labels


def _finite_values(chunk):
    return bool(np.isfinite(chunk.data).all())


def _dask_matrix(da, X):
    """A Dask X of known row chunks, whole rows per chunk, in a feature dtype."""
    if not isinstance(X, da.Array):
        raise TypeError(f"X is a {type(X).__name__}; pass a Dask array (of a DataFrame: "
                        "X.to_dask_array(lengths=True))")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has chunks of unknown size; call X.compute_chunk_sizes() first")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least 1 row and 1 feature, got shape {X.shape}")
    if X.dtype not in FEATURE_DTYPES:
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X has dtype {X.dtype}; it must hold numbers (uint8, float32 and float64 are used "
                            "as they are)")
        X = X.astype(np.float64)
    return X.rechunk({1: -1}) if X.numblocks[1] > 1 else X  # the kernels read whole rows


def evaluator(evaluation, scale, name="test_acc"):
    """evaluate(W, b) for the solvers: {name: the accuracy on evaluation = (X, y)} (arrays checked by
    eval_data, or trusted), X multiplied by scale; an empty dict without an evaluation set."""
    if evaluation is None:
        return lambda W, b: {}
    X_eval, y_eval = evaluation
    X_eval, scale = ops.scaled_first(X_eval, scale)
    xp = array_module(device_of(y_eval))

    def evaluate(W, b):
        X = check_sparse(X_eval, "eval_set X", xp, W.dtype) if isinstance(X_eval, CSR) else X_eval  # W's dtype
        scores = ops.linear_softmax(X, W.T, b, x_scale=scale, check_input=False)
        return {name: ops.accuracy(scores, y_eval, check_input=False)}

    return evaluate
