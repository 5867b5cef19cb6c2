"""SoftmaxRegression: a scikit-learn style estimator over the fused kernels.

Hyper-parameters live in __init__ (their defaults and rules in
hyperparameters.py), learned state in attributes ending in "_", and fit
returns self. Training is minibatch SGD: fit validates the data once, then
each epoch is one trusted call of ops.train_epoch (one compiled call on the
CPU, one CUDA graph on the GPU), so no Python runs per batch.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from . import ops
from .atomic import atomic_write
from .backend import array_module, device_of, resolve_device
from .hyperparameters import DEFAULTS, HYPERPARAMETERS
from .npzfile import read_npz
from .schedules import kind_of, learning_rate
from .validation import (
    FEATURE_DTYPES,
    MAX_CLASSES,
    MAX_MODEL_BYTES,
    check_classes,
    check_finite,
    check_labels,
    check_matrix,
    check_model_size,
)

# The compute precision of training: float32 is what the kernels run fastest
# and is ample for a convex model fitted by SGD.
COMPUTE_DTYPE = np.float32


FORMAT = "fastsoftmax.SoftmaxRegression/2"  # /2 added classes and dataset; /1 files still load
FORMATS = (FORMAT, "fastsoftmax.SoftmaxRegression/1")
# The most bytes each field of a model file may claim before it is read (npzfile.read_npz):
# a crafted file is refused from its headers, never loaded whole first.
FIELD_LIMITS = {"format": 1024, "coef": MAX_MODEL_BYTES, "intercept": 8 * MAX_CLASSES,
                "classes": 8 * MAX_CLASSES, "params": 2**20, "history": 2**28, "dataset": 1024}
HISTORY_NUMBERS = ("loss", "train_acc", "lr", "test_acc", "seconds", "train_seconds")  # optional but numeric


class TrainingDivergedError(ValueError, FloatingPointError):
    """The training loss or weights became NaN or inf; the model keeps the last finite epoch."""

    def __init__(self, epoch, loss, lr, weight_decay):
        self.epoch, self.loss, self.lr, self.weight_decay = epoch, loss, lr, weight_decay
        self.what = f"the loss became {loss}" if not math.isfinite(loss) else "the weights became NaN or inf"
        super().__init__(f"training diverged in epoch {epoch}: {self.what} with lr={lr} and "
                         f"weight_decay={weight_decay}; try a smaller lr or weight_decay (the model keeps "
                         f"{f'epoch {epoch - 1}' if epoch > 1 else 'its initial'} weights)")


def input_scale(X) -> float:
    """uint8 inputs are pixels in 0..255, scaled to [0, 1] inside the kernels."""
    return 1.0 / 255.0 if X.dtype == np.uint8 else 1.0


class SoftmaxRegression:
    """Multinomial logistic regression trained by minibatch SGD.

    Parameters (fastsoftmax.hyperparameters.HYPERPARAMETERS)
    ----------
{parameters}

    Attributes
    ----------
    coef_ : (n_classes, n_features) float32 weights, as in scikit-learn.
    intercept_ : (n_classes,) biases.
    classes_ : the class labels, 0..k-1 (int64).
    history_ : one dict per epoch: epoch, loss, train_acc, test_acc (with an
        eval_set), lr, seconds.

    fit never changes an array the caller holds: it trains copies, and each
    epoch sets coef_ and intercept_ to new arrays (on either device). After a
    GPU fit they are copied to the host when first read, so an epoch costs
    one synchronisation (its loss and hits) unless a callback reads them.
    """

    def __init__(self, epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
                 schedule=DEFAULTS["schedule"], weight_decay=DEFAULTS["weight_decay"], seed=DEFAULTS["seed"],
                 device=DEFAULTS["device"], warm_start=DEFAULTS["warm_start"]):
        given = locals()
        self.set_params(**{p.name: given[p.name] for p in HYPERPARAMETERS})

    def get_params(self, deep=True):
        return {p.name: getattr(self, p.name) for p in HYPERPARAMETERS}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in DEFAULTS:
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(DEFAULTS)}")
            setattr(self, name, value)
        return self

    def validate_params(self):
        """Raise ValueError naming the first bad hyper-parameter."""
        for p in HYPERPARAMETERS:
            p.check(getattr(self, p.name))

    # ---- training ----

    def fit(self, X, y, eval_set=None, callback=None, *, classes=None):
        """Fit on X (n, d) uint8/float32/float64 (finite) and labels y in [0, k).

        classes: the model's classes, a count k or the labels 0..k-1 (such as
        ``range(k)`` or a data set's ``classes``), which y need not all hold;
        by default 0 to the largest label in y and eval_set (or the fitted
        model's when warm). eval_set=(X_test, y_test) adds test accuracy to
        each epoch's record; callback(model, record) runs after each epoch,
        with coef_ and intercept_ already holding that epoch's weights (for
        checkpoints). A loss or weights that become NaN or inf stop the fit
        with TrainingDivergedError, the model left at the last finite epoch.
        """
        self.validate_params()
        xp = array_module(resolve_device(self.device))
        # Checked once here; every epoch below takes ops' trusted path.
        X = check_finite(check_matrix(X, "X", xp, FEATURE_DTYPES), "X", xp)
        n, d = X.shape
        n_classes = self._n_classes(y, eval_set, classes, d)
        y = check_labels(y, n, n_classes, xp)
        if eval_set is not None:
            X_eval, y_eval = eval_set
            X_eval = check_finite(check_matrix(X_eval, "eval_set X", xp, FEATURE_DTYPES), "eval_set X", xp)
            if X_eval.shape[1] != d:
                raise ValueError(f"eval_set X has {X_eval.shape[1]} features, but X has {d}")
            y_eval = check_labels(y_eval, X_eval.shape[0], n_classes, xp)

        first_epoch = self._start(n_classes, d)
        coef = xp.array(self.coef_, dtype=COMPUTE_DTYPE, order="C")  # copies: fit trains its own
        b = xp.array(self.intercept_, dtype=COMPUTE_DTYPE)
        steps = math.ceil(n / self.batch_size)
        schedule = dict(batch_size=int(self.batch_size), lr=float(self.lr), schedule=self.schedule,
                        total_steps=self.epochs * steps, weight_decay=float(self.weight_decay))
        x_scale = input_scale(X)
        saved = xp.empty_like(coef), xp.empty_like(b)  # the weights a diverged epoch goes back to
        for epoch in range(first_epoch, self.epochs):
            start = time.perf_counter()
            saved[0][...], saved[1][...] = coef, b  # on the device: no synchronisation
            loss_sum, correct = ops.train_epoch(X, y, coef.T, b, seed=int(self.seed), epoch=epoch,
                                                start_step=epoch * steps, x_scale=x_scale, check_input=False,
                                                **schedule)
            # The epoch's one synchronisation: its loss, its hits and whether the weights stayed finite.
            loss, hits, finite = _read(xp, loss_sum, correct, xp.isfinite(coef).all() & xp.isfinite(b).all())
            rate = learning_rate(kind_of(self.schedule), float(self.lr), self.epochs * steps, epoch * steps)
            record = {"epoch": epoch + 1, "loss": loss / n, "train_acc": hits / n, "lr": float(COMPUTE_DTYPE(rate))}
            record["train_seconds"] = time.perf_counter() - start
            if not (math.isfinite(loss) and finite):
                coef[...], b[...] = saved
                self._weights_from(coef, b)
                raise TrainingDivergedError(record["epoch"], record["loss"], self.lr, self.weight_decay)
            if eval_set is not None:
                scores = ops.linear_softmax(X_eval, coef.T, b, x_scale=input_scale(X_eval), check_input=False)
                record["test_acc"] = ops.accuracy(scores, y_eval, check_input=False)
            record["seconds"] = time.perf_counter() - start
            self._weights_from(coef, b)
            self.history_.append(record)
            if callback is not None:
                callback(self, record)
        return self

    # ---- the weights: on the host, copied from the device when first asked ----

    def _weights_from(self, coef, b):
        """coef_ and intercept_ are now coef and b, which fit may go on training:
        a read of either copies both (on a GPU, only then: a callback that
        does not read them costs no transfer)."""
        self.__dict__.pop("_coef", None)
        self.__dict__.pop("_intercept", None)
        self._trained = coef, b

    def _host_weights(self):
        trained = self.__dict__.pop("_trained", None)
        if trained is not None:  # one transfer for both; a copy on the CPU too, which fit goes on training
            coef, b = trained
            both = _to_numpy(array_module(device_of(coef)).concatenate([coef.ravel(), b]))
            self._coef, self._intercept = both[: coef.size].reshape(coef.shape), both[coef.size :]

    @property
    def coef_(self):
        self._host_weights()
        try:
            return self._coef
        except AttributeError:
            raise AttributeError("coef_: this SoftmaxRegression is not fitted yet") from None

    @coef_.setter
    def coef_(self, value):
        self._host_weights()
        self._coef = value

    @property
    def intercept_(self):
        self._host_weights()
        try:
            return self._intercept
        except AttributeError:
            raise AttributeError("intercept_: this SoftmaxRegression is not fitted yet") from None

    @intercept_.setter
    def intercept_(self, value):
        self._host_weights()
        self._intercept = value

    def __getstate__(self):
        self._host_weights()  # a pickle holds host arrays, never device ones
        return self.__dict__.copy()

    def _n_classes(self, y, eval_set, classes, n_features):
        """Classes are 0..k-1, k from `classes`, else the fitted model when warm, else the labels seen."""
        warm = self.warm_start and hasattr(self, "coef_")
        if classes is not None:
            k = check_classes(classes)
            if warm and k != self.coef_.shape[0]:
                raise ValueError(f"classes has {k} classes, but the fitted model has {self.coef_.shape[0]}")
            check_model_size(k, n_features, f"classes of {k}")
            return k
        if warm:
            return self.coef_.shape[0]
        labels = [y] + ([eval_set[1]] if eval_set is not None else [])
        arrays = [array_module(device_of(a)).asarray(a) for a in labels]
        # Labels that are not integers, or none, are check_labels' to name.
        top = max([int(a.max()) for a in arrays if a.size and a.dtype.kind in "iu"], default=1)
        check_model_size(top + 1, n_features, f"labels up to {top}")
        return max(2, top + 1)

    def _start(self, n_classes, n_features):
        """Initial weights (zeros: the loss is convex) and the first epoch to run."""
        if self.warm_start and hasattr(self, "coef_"):
            if self.coef_.shape[1] != n_features:
                raise ValueError(
                    f"the fitted model has {self.coef_.shape[1]} features, but X has {n_features}"
                )
            return len(self.history_)
        self.coef_ = np.zeros((n_classes, n_features), COMPUTE_DTYPE)
        self.intercept_ = np.zeros(n_classes, COMPUTE_DTYPE)
        self.classes_ = np.arange(n_classes)
        self.history_ = []
        return 0

    # ---- inference ----

    def _weights_like(self, X):
        if not hasattr(self, "coef_"):
            raise ValueError("this SoftmaxRegression is not fitted yet; call fit first")
        xp = array_module(device_of(X))
        return xp.asarray(self.coef_).T, xp.asarray(self.intercept_)

    def predict_proba(self, X):
        """Class probabilities (n, k), an array of X's kind; X must be finite."""
        W, b = self._weights_like(X)
        X = check_matrix(X, "X", array_module(device_of(X)), FEATURE_DTYPES)
        check_finite(X, "X", array_module(device_of(X)))
        return ops.linear_softmax(X, W, b, x_scale=input_scale(X))

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y):
        """Mean accuracy on (X, y)."""
        return ops.accuracy(self.predict_proba(X), y)

    # ---- persistence ----

    def save(self, path, *, dataset=None):
        """Write the model to an .npz file, atomically; `dataset` names what it was trained on.

        Refuses weights that hold NaN or inf: a saved model is always usable.
        """
        if not hasattr(self, "coef_"):
            raise ValueError("this SoftmaxRegression is not fitted yet; call fit first")
        if not (np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
            raise ValueError(f"not saving {path}: the weights hold NaN or inf")
        with atomic_write(path) as f:
            np.savez(f, format=np.array(FORMAT), coef=self.coef_, intercept=self.intercept_,
                     classes=np.arange(self.coef_.shape[0]), dataset=np.array(dataset or ""),
                     params=np.array(json.dumps(self.get_params())),
                     history=np.array(json.dumps(self.history_)))

    @classmethod
    def load(cls, path):
        """Read a model written by save (format /2, or /1 of earlier versions).

        Raises FileNotFoundError, or ValueError naming the file and its first
        bad field; each array's size is checked from its header before its
        data is read. The model's ``dataset_`` is the name given to save, or None.
        """
        path = Path(path)

        def bad(problem):
            return ValueError(f"{path} is not a fastsoftmax model file ({problem}); train one with --save")

        try:
            f = read_npz(path, FIELD_LIMITS, optional=("classes", "dataset"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such model file") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a folder, not a model file") from None
        except ValueError as e:
            raise bad(e) from None
        fmt = _text(f["format"])
        if fmt not in FORMATS:
            raise bad(f"unknown format {fmt!r:.80}")
        coef, intercept = f["coef"], f["intercept"]
        if coef.ndim != 2 or coef.shape[0] < 2 or intercept.shape != (coef.shape[0],):
            raise ValueError(f"{path}: weights of shape {coef.shape} and biases {intercept.shape} do not fit")
        for name, a in (("weights", coef), ("biases", intercept)):
            if a.dtype.kind != "f":
                raise ValueError(f"{path}: the {name} have dtype {a.dtype}; a model's are float32 or float64")
            if not np.isfinite(a).all():
                raise ValueError(f"{path}: the {name} hold NaN or inf")
        # Format /1 had no classes field: its classes were 0..k-1 for k rows of weights, as /2 stores them.
        classes = f.get("classes", np.arange(coef.shape[0]))
        if classes.ndim != 1 or classes.dtype.kind not in "iu" or not np.array_equal(
                classes, np.arange(coef.shape[0])):
            raise ValueError(f"{path}: its classes are not the labels 0..{coef.shape[0] - 1} of its "
                             f"{coef.shape[0]} rows of weights")
        params = _json_field(f["params"], "params", bad)
        if not isinstance(params, dict) or set(params) - set(DEFAULTS):
            raise bad(f"params must name hyper-parameters ({', '.join(DEFAULTS)})")
        history = _json_field(f["history"], "history", bad, object_hook=_history_record)
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history) or [
                r["epoch"] for r in history] != list(range(1, len(history) + 1)):
            raise bad("history must be a list of one record per epoch, numbered from 1")
        model = cls(**params)
        try:
            model.validate_params()
        except ValueError as e:
            raise bad(f"params: {e}") from None
        model.coef_, model.intercept_, model.history_ = coef, intercept, history
        model.classes_ = np.arange(coef.shape[0])
        model.dataset_ = _text(f["dataset"]) or None if "dataset" in f else None
        return model


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
                k in record for k in ("loss", "train_acc", "lr")):
            raise ValueError(f"bad epoch record {json.dumps(record)[:80]}")
        return record
    raise ValueError(f"bad epoch record {json.dumps(record)[:80]}")


def _read(xp, *scalars):
    """The values of 0-d arrays as floats, in one transfer from the device."""
    return [float(v) for v in _to_numpy(xp.stack([xp.asarray(a, dtype=xp.float64) for a in scalars]))]


def _to_numpy(a):
    """A new host array holding a's values (a copy on the CPU too: the caller keeps it)."""
    return a.get() if hasattr(a, "get") else a.copy()


SoftmaxRegression.__doc__ = SoftmaxRegression.__doc__.replace("{parameters}", "\n".join(
    f"    {p.name} : {p.help}." for p in HYPERPARAMETERS))
