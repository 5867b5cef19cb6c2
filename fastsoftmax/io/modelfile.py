"""The model file of SoftmaxRegression: an .npz of plain arrays, read as if hostile.

Format /3 holds coef, intercept, classes (the labels, an array of their own
dtype: never pickled), input_scale, dataset, params and history (JSON), and
where SGD standardised the features (lr="auto") their feature_mean and
feature_scale, which a later partial_fit trains under, and for a model fitted
on a DataFrame its feature_names (a string array: scikit-learn checks the
columns of what the loaded model predicts against them). Every
field has a size limit checked from its .npy header before its data is read
(npzfile.read_npz), and every field is checked before a model is built from it.
Files of format /1 and /2 keep their meaning: classes 0..k-1, and uint8
inputs divided by 255 while float inputs are taken as given (BY_DTYPE).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .npzfile import read_npz

# The largest model: a fit refuses to make one (fastsoftmax.models.inputs) and a file to hold one. A
# class is one row of the model: 2**20 classes of 784 features is 3.2 GB of float32 weights, more than
# any data set this package reads needs, and the point past which a label is far likelier a mistake
# (an id, a hash) than a class.
MAX_CLASSES = 2**20
MAX_MODEL_BYTES = 2**31  # the float32 weights of k classes x d features, 2 GiB
MAX_NAME_BYTES = 2**28  # feature names (4 bytes a character): 2**20 features of 64 characters each
FORMAT = "fastsoftmax.SoftmaxRegression/3"  # /3: any labels and input_scale; /2 and /1 files still load
FORMATS = (FORMAT, "fastsoftmax.SoftmaxRegression/2", "fastsoftmax.SoftmaxRegression/1")
# The scale of a model from a /1 or /2 file: uint8 inputs divided by 255, float inputs as given,
# what those files meant (a single number would reinterpret them for one of the two).
BY_DTYPE = "by dtype"
# The most bytes each field of a model file may claim before it is read (npzfile.read_npz):
# a crafted file is refused from its headers, never loaded whole first.
FIELD_LIMITS = {"format": 1024, "coef": MAX_MODEL_BYTES, "intercept": 8 * MAX_CLASSES,
                "classes": 2**26, "input_scale": 1024, "params": 2**20, "history": 2**28, "dataset": 1024,
                "feature_mean": MAX_MODEL_BYTES, "feature_scale": MAX_MODEL_BYTES,
                "feature_names": MAX_NAME_BYTES}
HISTORY_NUMBERS = ("loss", "train_acc", "lr", "batch_size", "test_acc", "seconds", "train_seconds", "grad_max")
LABEL_KINDS = "iufbU"  # integers, floats, bools, strings: what a model file stores without pickle


def bad_model(path, problem):
    return ValueError(f"{path} is not a fastsoftmax model file ({problem}); train one with --save")


def write_model(path, *, coef, intercept, classes, input_scale, dataset, params, history, standardization=None,
                feature_names=None):
    """Write a format /3 file, atomically (params and history: JSON-able; standardization: None or
    the (feature_mean, feature_scale) arrays; feature_names: None or one distinct string per feature).

    Raises ValueError for feature names that read_model would refuse: what is saved always loads.
    """
    scale = input_scale if input_scale == BY_DTYPE else float(input_scale)
    features = {} if standardization is None else dict(zip(("feature_mean", "feature_scale"), standardization))
    if feature_names is not None:
        names = np.asarray(feature_names, dtype=str)
        problem = _names_problem(names, coef.shape[1]) or (
            names.tolist() != list(feature_names) and "its feature names do not survive as strings")
        if problem:
            raise ValueError(f"not saving {path}: {problem}")
        features["feature_names"] = names
    with atomic_write(path) as f:
        np.savez(f, format=np.array(FORMAT), coef=coef, intercept=intercept, classes=classes,
                 input_scale=np.array(scale), dataset=np.array(dataset or ""),
                 params=np.array(json.dumps(params)), history=np.array(json.dumps(history)), **features)


def read_model(path) -> dict:
    """The checked fields of a model file of format /3, /2 or /1: coef, intercept, classes,
    input_scale (a number, or BY_DTYPE), params (parsed JSON, for the estimator to check),
    history, dataset (or None), standardization (None, or feature_mean and feature_scale),
    feature_names (None, or a string array; format /3 only).

    Raises FileNotFoundError, the OSError of a file that cannot be read (naming it and why), or
    ValueError naming the file and its first bad field.
    """
    path = Path(path)

    def bad(problem):
        return bad_model(path, problem)

    try:
        f = read_npz(path, FIELD_LIMITS, optional=("classes", "dataset", "input_scale", "feature_mean",
                                                   "feature_scale", "feature_names"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a model file") from None
    except OSError as e:  # opening it failed (permissions, I/O): its bytes were never seen
        error = type(e)(f"cannot read the model file {path}: {e.strerror or e}")
        error.errno = e.errno
        raise error from None
    except ValueError as e:
        raise bad(e) from None
    fmt = _text(f["format"])
    if fmt not in FORMATS:
        raise bad(f"unknown format {fmt!r:.80}")
    coef, intercept = _weights(f, path)
    k = coef.shape[0]
    if fmt == FORMAT:
        if "classes" not in f or "input_scale" not in f:
            raise bad(f"format {FORMAT} needs its classes and input_scale")
        classes = f["classes"]
        if classes.ndim != 1 or len(classes) != k or classes.dtype.kind not in LABEL_KINDS or (
                classes.dtype.kind == "f" and not np.isfinite(classes).all()) or not np.array_equal(
                np.unique(classes), classes):
            raise ValueError(f"{path}: its classes are not {k} distinct sorted labels, one per row of weights")
        scale = f["input_scale"]
        if scale.ndim != 0 or not (_text(scale) == BY_DTYPE or (
                scale.dtype.kind == "f" and np.isfinite(scale) and scale > 0)):
            raise ValueError(f"{path}: its input_scale is not a positive number")
        scale = BY_DTYPE if _text(scale) == BY_DTYPE else float(scale)
    else:
        # Format /1 had no classes field: its classes were 0..k-1 for k rows of weights, as /2 stores them.
        classes = f.get("classes", np.arange(k))
        if classes.ndim != 1 or classes.dtype.kind not in "iu" or not np.array_equal(classes, np.arange(k)):
            raise ValueError(f"{path}: its classes are not the labels 0..{k - 1} of its {k} rows of weights")
        scale = BY_DTYPE
    params = _json_field(f["params"], "params", bad)
    history = _json_field(f["history"], "history", bad, object_hook=_history_record)
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history) or [
            r["epoch"] for r in history] != list(range(1, len(history) + 1)):
        raise bad("history must be a list of one record per epoch, numbered from 1")
    return {"coef": coef, "intercept": intercept, "classes": classes, "input_scale": scale, "params": params,
            "history": history, "dataset": _text(f["dataset"]) or None if "dataset" in f else None,
            "standardization": _standardization(f, coef.shape[1], path),
            "feature_names": _feature_names(f, coef.shape[1], path) if fmt == FORMAT else None}


def _weights(f, path):
    """coef and intercept, checked: (k, d) and (k,) with k >= 2 and d >= 1, finite float32 or float64
    (the dtypes the kernels compute in: another would load, then fail in predict)."""
    coef, intercept = f["coef"], f["intercept"]
    if coef.ndim != 2 or coef.shape[0] < 2 or intercept.shape != (coef.shape[0],):
        raise ValueError(f"{path}: weights of shape {coef.shape} and biases {intercept.shape} do not fit")
    if coef.shape[1] < 1:
        raise ValueError(f"{path}: its weights have shape {coef.shape}, no features; a model has at least one")
    for name, a in (("weights", coef), ("biases", intercept)):
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{path}: the {name} have dtype {a.dtype}; a model's are float32 or float64")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: the {name} hold NaN or inf")
    return coef, intercept


def _feature_names(f, d, path):
    """The feature_names field, checked (_names_problem), or None where the file has none."""
    if "feature_names" not in f:
        return None
    problem = _names_problem(f["feature_names"], d)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return f["feature_names"]


def _names_problem(names, d):
    """Why the array `names` cannot be the feature names of a model of d features, or "" if it can."""
    if names.ndim != 1 or names.dtype.kind != "U" or len(names) != d:
        return f"its feature_names are not {d} strings, one per feature"
    if len(np.unique(names)) != d:
        return "its feature_names are not distinct"
    if names.nbytes > MAX_NAME_BYTES:
        return f"its feature_names take {names.nbytes:,} bytes, more than the {MAX_NAME_BYTES:,} a file may hold"
    return ""


def _standardization(f, d, path):
    """(feature_mean, feature_scale), checked: both or neither, finite float64 (d,), the scales positive."""
    if "feature_mean" not in f and "feature_scale" not in f:
        return None
    mean, scale = f.get("feature_mean"), f.get("feature_scale")
    if mean is None or scale is None or any(a.shape != (d,) or a.dtype != np.float64 or not np.isfinite(a).all()
                                            for a in (mean, scale)) or not (scale > 0).all():
        raise ValueError(f"{path}: its feature_mean and feature_scale are not {d} finite numbers each, "
                         "the scales positive")
    return mean, scale


def _text(a) -> str:
    """The string a 0-d string array holds; "" for anything else (which no check then accepts)."""
    return str(a[()]) if a.ndim == 0 and a.dtype.kind == "U" else ""


def _json_field(a, name, bad, object_hook=None):
    try:
        return json.loads(_text(a) or "!", object_hook=object_hook)
    except (ValueError, RecursionError) as e:
        raise bad(f"{name}: {e}") from None


def _history_record(record):
    """An epoch's record, checked as the JSON is parsed (so a crafted history stops at its first bad record)."""
    if "epoch" in record:  # the records: nothing else in a history is a JSON object
        if type(record["epoch"]) is not int or not all(
                type(record.get(k, 0.0)) in (int, float) for k in HISTORY_NUMBERS) or not all(
                k in record for k in ("loss", "train_acc")):
            raise ValueError(f"bad epoch record {json.dumps(record)[:80]}")
        return record
    raise ValueError(f"bad epoch record {json.dumps(record)[:80]}")
