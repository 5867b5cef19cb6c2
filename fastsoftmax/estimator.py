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
from .schedules import kind_of, learning_rate
from .validation import FEATURE_DTYPES, check_labels, check_matrix

# The compute precision of training: float32 is what the kernels run fastest
# and is ample for a convex model fitted by SGD.
COMPUTE_DTYPE = np.float32


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
    history_ : one dict per epoch: epoch, loss, train_acc, test_acc (with an
        eval_set), lr, seconds.

    fit never changes an array the caller holds: it trains copies, and each
    epoch sets coef_ and intercept_ to new arrays (on either device).
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

    def fit(self, X, y, eval_set=None, callback=None):
        """Fit on X (n, d) uint8/float32/float64 and labels y in [0, k).

        eval_set=(X_test, y_test) adds test accuracy to each epoch's record;
        callback(model, record) runs after each epoch, with coef_ and
        intercept_ already holding that epoch's weights (for checkpoints).
        """
        self.validate_params()
        xp = array_module(resolve_device(self.device))
        # Checked once here; every epoch below takes ops' trusted path.
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
        coef = xp.array(self.coef_, dtype=COMPUTE_DTYPE, order="C")  # copies: fit trains its own
        b = xp.array(self.intercept_, dtype=COMPUTE_DTYPE)
        steps = math.ceil(n / self.batch_size)
        schedule = dict(batch_size=int(self.batch_size), lr=float(self.lr), schedule=self.schedule,
                        total_steps=self.epochs * steps, weight_decay=float(self.weight_decay))
        x_scale = input_scale(X)
        for epoch in range(first_epoch, self.epochs):
            start = time.perf_counter()
            loss_sum, correct = ops.train_epoch(X, y, coef.T, b, seed=int(self.seed), epoch=epoch,
                                                start_step=epoch * steps, x_scale=x_scale, check_input=False,
                                                **schedule)
            rate = learning_rate(kind_of(self.schedule), float(self.lr), self.epochs * steps, epoch * steps)
            record = {"epoch": epoch + 1, "loss": float(loss_sum) / n,
                      "train_acc": float(correct) / n, "lr": float(COMPUTE_DTYPE(rate))}
            record["train_seconds"] = time.perf_counter() - start
            if eval_set is not None:
                scores = ops.linear_softmax(X_eval, coef.T, b, x_scale=input_scale(X_eval), check_input=False)
                record["test_acc"] = ops.accuracy(scores, y_eval, check_input=False)
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
    """A new host array holding a's values (a copy on the CPU too: the caller keeps it)."""
    return a.get() if hasattr(a, "get") else a.copy()


SoftmaxRegression.__doc__ = SoftmaxRegression.__doc__.replace("{parameters}", "\n".join(
    f"    {p.name} : {p.help}." for p in HYPERPARAMETERS))
