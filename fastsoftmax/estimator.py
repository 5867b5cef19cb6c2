"""SoftmaxRegression: a scikit-learn style estimator over the fused kernels.

Hyper-parameters live in __init__, learned state in attributes ending in "_",
and fit returns self. Training is minibatch SGD: each epoch is one call of the
backend's train_epoch (one compiled call on the CPU, one CUDA graph on the
GPU), so no Python runs per batch.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from . import ops
from .atomic import atomic_write
from .backend import array_module, device_of, kernels_for_device, resolve_device
from .schedules import SCHEDULES, learning_rates
from .validation import FEATURE_DTYPES, check_labels, check_matrix

# The compute precision of training: float32 is what the kernels run fastest
# and is ample for a convex model fitted by SGD.
COMPUTE_DTYPE = np.float32


def input_scale(X) -> float:
    """uint8 inputs are pixels in 0..255, scaled to [0, 1] inside the kernels."""
    return 1.0 / 255.0 if X.dtype == np.uint8 else 1.0


class SoftmaxRegression:
    """Multinomial logistic regression trained by minibatch SGD.

    Parameters
    ----------
    epochs : passes over the training data.
    batch_size : rows per SGD step; the last batch of an epoch may be smaller.
    lr : the peak learning rate.
    schedule : "cosine" (decays from lr to ~0 over the run) or "constant".
    weight_decay : L2 penalty; the step is W -= lr * (dW + weight_decay * W).
    seed : fixes the shuffling; the same seed gives the same model.
    device : "auto" (CUDA where CuPy sees a GPU, else CPU), "cpu" or "cuda".
    warm_start : if True and the model is fitted, fit continues from the learned
        weights and resumes the schedule after the epochs in ``history_``.

    Attributes
    ----------
    coef_ : (n_classes, n_features) float32 weights, as in scikit-learn.
    intercept_ : (n_classes,) biases.
    history_ : one dict per epoch: epoch, loss, train_acc, test_acc (with an
        eval_set), lr, seconds.
    """

    def __init__(self, epochs=15, batch_size=256, lr=0.5, schedule="cosine",
                 weight_decay=0.0, seed=0, device="auto", warm_start=False):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.schedule = schedule
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.warm_start = warm_start

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in
                ("epochs", "batch_size", "lr", "schedule", "weight_decay", "seed", "device", "warm_start")}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"unknown parameter {name!r}; known: {', '.join(self.get_params())}")
            setattr(self, name, value)
        return self

    def validate_params(self):
        """Raise ValueError naming the first bad hyper-parameter."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, low in (("lr", "positive"), ("weight_decay", "non-negative")):
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.floating)) and math.isfinite(value)
            if not ok or value < 0 or (value == 0 and low == "positive"):
                raise ValueError(f"{name} must be a {low} finite number, got {value!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        resolve_device(self.device)

    # ---- training ----

    def fit(self, X, y, eval_set=None, callback=None):
        """Fit on X (n, d) uint8/float32/float64 and labels y in [0, k).

        eval_set=(X_test, y_test) adds test accuracy to each epoch's record;
        callback(model, record) runs after each epoch, with coef_ and
        intercept_ already holding that epoch's weights (for checkpoints).
        """
        self.validate_params()
        device = resolve_device(self.device)
        xp, kernels = array_module(device), kernels_for_device(device)
        X = check_matrix(X, "X", xp, FEATURE_DTYPES)
        n, d = X.shape
        n_classes = self._n_classes(y, eval_set)
        y = check_labels(y, n, n_classes, xp)
        if eval_set is not None:
            X_eval, y_eval = eval_set
            X_eval = check_matrix(X_eval, "eval_set X", xp, FEATURE_DTYPES)
            if X_eval.shape[1] != d:
                raise ValueError(f"eval_set X has {X_eval.shape[1]} features, but X has {d}")
            y_eval = check_labels(y_eval, X_eval.shape[0], n_classes, xp)

        first_epoch = self._start(n_classes, d)
        coef = xp.asarray(self.coef_)
        b = xp.asarray(self.intercept_)
        steps = math.ceil(n / self.batch_size)
        lrs = learning_rates(self.schedule, float(self.lr), self.epochs * steps).astype(COMPUTE_DTYPE)
        x_scale = input_scale(X)
        for epoch in range(first_epoch, self.epochs):
            start = time.perf_counter()
            # One generator per epoch: a resumed run shuffles as the uninterrupted one.
            order = xp.asarray(np.random.default_rng([self.seed, epoch]).permutation(n))
            epoch_lrs = xp.asarray(lrs[epoch * steps : (epoch + 1) * steps])
            loss_sum, correct = kernels.train_epoch(
                X, y, order, coef, b, epoch_lrs, self.batch_size, x_scale, self.weight_decay
            )
            record = {"epoch": epoch + 1, "loss": float(loss_sum) / n,
                      "train_acc": float(correct) / n, "lr": float(lrs[epoch * steps])}
            record["train_seconds"] = time.perf_counter() - start
            if eval_set is not None:
                scores = ops.linear_softmax(X_eval, coef.T, b, x_scale=input_scale(X_eval))
                record["test_acc"] = ops.accuracy(scores, y_eval)
            record["seconds"] = time.perf_counter() - start
            self.coef_ = _to_numpy(coef)
            self.intercept_ = _to_numpy(b)
            self.history_.append(record)
            if callback is not None:
                callback(self, record)
        return self

    def _n_classes(self, y, eval_set):
        """Classes are 0..k-1, k from the labels seen (or the fitted model when warm)."""
        if self.warm_start and hasattr(self, "coef_"):
            return self.coef_.shape[0]
        labels = [y] + ([eval_set[1]] if eval_set is not None else [])
        top = max(int(array_module(device_of(a)).asarray(a).max()) for a in labels)
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
        self.history_ = []
        return 0

    # ---- inference ----

    def _weights_like(self, X):
        if not hasattr(self, "coef_"):
            raise ValueError("this SoftmaxRegression is not fitted yet; call fit first")
        xp = array_module(device_of(X))
        return xp.asarray(self.coef_).T, xp.asarray(self.intercept_)

    def predict_proba(self, X):
        """Class probabilities (n, k), an array of X's kind."""
        W, b = self._weights_like(X)
        return ops.linear_softmax(X, W, b, x_scale=input_scale(X))

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y):
        """Mean accuracy on (X, y)."""
        return ops.accuracy(self.predict_proba(X), y)

    # ---- persistence ----

    def save(self, path):
        """Write the model to an .npz file, atomically."""
        if not hasattr(self, "coef_"):
            raise ValueError("this SoftmaxRegression is not fitted yet; call fit first")
        with atomic_write(path) as f:
            np.savez(f, format=np.array("fastsoftmax.SoftmaxRegression/1"),
                     coef=self.coef_, intercept=self.intercept_,
                     params=np.array(json.dumps(self.get_params())),
                     history=np.array(json.dumps(self.history_)))

    @classmethod
    def load(cls, path):
        """Read a model written by save; ValueError if the file is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["format"]) != "fastsoftmax.SoftmaxRegression/1":
                    raise ValueError("unknown format")
                coef, intercept = f["coef"], f["intercept"]
                params, history = json.loads(str(f["params"])), json.loads(str(f["history"]))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such model file") from None
        except Exception as e:
            raise ValueError(f"{path} is not a fastsoftmax model file ({e}); train one with --save") from None
        if coef.ndim != 2 or coef.shape[0] < 2 or intercept.shape != (coef.shape[0],):
            raise ValueError(f"{path}: weights of shape {coef.shape} and biases {intercept.shape} do not fit")
        model = cls(**params)
        model.coef_, model.intercept_, model.history_ = coef, intercept, history
        return model


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else a
