"""SoftmaxRegressionSweep: a grid of learning rates and weight decays trained in one pass per epoch.

Every (lr, weight_decay) pair of the grid is a SoftmaxRegression with the
same other hyper-parameters. They train together on the same shuffled
minibatches, in the SGD loop every fit shares (solvers/sgd.py): each epoch
is one ops.train_epoch_many, whose kernels read a batch once for all models
(their logits are one matrix product: backends/cpu/sweep.py,
backends/cuda/sweep.py), so the grid costs the arithmetic of its models and
not m passes over the data. Each model keeps its own history;
the best is chosen on a validation split held out from the training rows and
returned as an ordinary fitted SoftmaxRegression (``best_estimator_``), with
GridSearchCV's ``best_params_``, ``best_score_``, ``best_index_`` and a
``cv_results_`` table. The test set plays no part in the choice.

The validation split is a simple random one, fixed by the seed: the rows
``numpy.random.default_rng(seed).permutation(n)[:round(validation_fraction n)]``
(at least one), the rest train, both kept in their original order. A model of
the sweep is the model ``SoftmaxRegression(lr=..., weight_decay=..., <the
rest>).fit(X_fit, y_fit)`` would give on those training rows, within float
rounding (tests/test_sweep.py), float X standardised first (``standardize``);
the chosen one is not refitted on all rows.

A model that diverges (its loss or weights NaN or inf, or its loss running
away: solvers/sgd.py's divergence) goes back to its last epoch before and
stops there (its rate set to 0), marked diverged, and is never chosen; the
others go on. If every model diverges, fit raises TrainingDivergedError.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from ..arrays import CSR, is_dask, to_numpy
from ..ops import scaled_first
from ..ops.dispatch import array_module, resolve_device
from ..ops.validation import NON_NEGATIVE_NUMBER, POSITIVE_NUMBER, Rule, check_sparse
from ..solvers.sgd import sgd
from .estimator import (
    AUTO_LR,
    COMPUTE_DTYPE,
    SoftmaxRegression,
    start_fit,
)
from .hyperparameters import DEFAULTS, HYPERPARAMETERS
from .inputs import check_model_size, evaluator, training_data, x_scale
from .labels import encode, fit_classes
from .standardize import Standardization, moments, sparse_rate
from .weights import set_weights

# The default grid: 16 models around the single model's default (lr 0.5, no decay).
LRS = (0.1, 0.2, 0.5, 1.0)
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3)
VALIDATION_FRACTION = 0.1
# SoftmaxRegression's hyper-parameters that every model of a sweep shares (the sgd solver's, less the swept).
SHARED = ("epochs", "batch_size", "schedule", "input_scale", "seed", "device")


class SoftmaxRegressionSweep(ClassifierMixin, BaseEstimator):
    """SoftmaxRegression(solver="sgd") for every (lr, weight_decay) of a grid, trained in one pass per epoch.

    Parameters
    ----------
    lrs : the peak learning rates of the grid (positive numbers; on a sparse X under standardize, relative
        to lr="auto"'s rate, 0.5 standing for it).
    weight_decays : the weight decays of the grid (non-negative numbers); the grid is
        every pair, lr by lr (GridSearchCV's order).
    validation_fraction : the share of the rows held out to choose the model by
        (a simple random split fixed by seed; at least one row on each side).
    standardize : True: float X is standardised for the fit, as SoftmaxRegression's lr="auto"
        does it (the training rows' means and deviations; coef_ in X's own units, the models'
        feature_mean_ and feature_scale_), so that the grid's rates suit any scale of features;
        uint8 pixels are trained on X * input_scale either way. False: X as given.
{parameters}

    Attributes
    ----------
    estimators_ : the grid's models, each a fitted SoftmaxRegression with its own
        history_ (records with val_acc, the validation accuracy, after each epoch).
    best_index_, best_params_ ({"lr", "weight_decay"}), best_score_ (its final
        validation accuracy), best_estimator_ (estimators_[best_index_]): the model
        of the highest final validation accuracy, the first in the grid's order on a tie.
    cv_results_ : GridSearchCV's table: params, param_lr, param_weight_decay,
        mean_test_score (the validation accuracy; NaN for a diverged model),
        rank_test_score, mean_train_score (the last epoch's training accuracy),
        train_loss, diverged_epoch (0 if the model did not diverge).
    classes_, n_features_in_ : as the models'.

    predict, predict_proba and score are best_estimator_'s.
    """

    def __init__(self, lrs=LRS, weight_decays=WEIGHT_DECAYS, validation_fraction=VALIDATION_FRACTION,
                 standardize=True, epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
                 schedule=DEFAULTS["schedule"], input_scale=DEFAULTS["input_scale"], seed=DEFAULTS["seed"],
                 device=DEFAULTS["device"]):
        self.lrs, self.weight_decays, self.validation_fraction = lrs, weight_decays, validation_fraction
        self.standardize = standardize
        self.epochs, self.batch_size, self.schedule = epochs, batch_size, schedule
        self.input_scale, self.seed, self.device = input_scale, seed, device

    def validate_params(self):
        """Raise ValueError naming the first bad parameter."""
        for name, rule in (("lrs", POSITIVE_NUMBER), ("weight_decays", NON_NEGATIVE_NUMBER)):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
                raise ValueError(f"{name} must be a non-empty sequence of numbers, got {values!r:.80}")
            for i, v in enumerate(values):
                rule.check(f"{name}[{i}]", v)
        for p in HYPERPARAMETERS:
            if p.name in SHARED:
                p.check(getattr(self, p.name))
        Rule(bool).check("standardize", self.standardize)
        fraction = self.validation_fraction
        if not (POSITIVE_NUMBER.allows(fraction) and fraction < 1):
            raise ValueError(f"validation_fraction must be a number between 0 and 1 (exclusive), got {fraction!r}")

    def grid(self):
        """The grid's (lr, weight_decay) pairs, lr by lr."""
        return [(float(lr), float(wd)) for lr, wd in itertools.product(self.lrs, self.weight_decays)]

    # ---- training ----

    def fit(self, X, y, callback=None, *, classes=None):
        """Train every model of the grid on X's training rows and choose one on its validation rows.

        X, y and classes as SoftmaxRegression.fit's. callback(sweep, epoch)
        runs after each epoch, with estimators_, best_estimator_ and
        cv_results_ as of that epoch (for progress lines and checkpoints).
        """
        self.validate_params()
        xp = array_module(resolve_device(self.device))
        grid = self.grid()
        if is_dask(X):
            raise TypeError("SoftmaxRegressionSweep trains in memory: pass a NumPy or CuPy array (a Dask "
                            "array's X.compute()), or fit a SoftmaxRegression per grid point on the Dask array")
        template = self._model(*grid[0])  # the checks every model shares
        X, y, found = training_data(template, X, y, xp, reset=True)
        classes_ = fit_classes([found], classes)
        check_model_size(len(grid) * len(classes_), X.shape[1], f"{len(grid)} models of {len(classes_):,} classes")
        y = encode(y, classes_, xp, "y")
        fit_rows, val_rows = (xp.asarray(r) for r in self.split(X.shape[0]))
        self.estimators_ = [self._model(lr, wd) for lr, wd in grid]
        for model in self.estimators_:  # fitted as the template, with zero weights and no epoch yet
            start_fit(model, classes_, X)
            model.n_features_in_, model.n_iter_ = X.shape[1], 0
            if hasattr(template, "feature_names_in_"):
                model.feature_names_in_ = template.feature_names_in_
        self._diverged = np.zeros(len(grid), np.int64)
        raw_scale = x_scale(self.estimators_[0].input_scale_, X)
        (X_fit, scale), (X_val, val_scale) = (scaled_first(_rows(xp, X, rows), raw_scale)
                                              for rows in (fit_rows, val_rows))
        standard = self._standardization(xp, X_fit, scale)
        self._train(xp, X_fit if standard is None else standard.apply(xp, X_fit), y[fit_rows], X_val, val_scale,
                    y[val_rows], scale, standard, callback)
        return self

    def _standardization(self, xp, X, scale):
        """The standardisation of X's training rows that every model trains under (standardize, float
        X: the models' feature_mean_ and feature_scale_), or None: X as given."""
        if not self.standardize or X.dtype == np.uint8:
            return None
        standard = (Standardization.max_abs(xp, X, scale) if isinstance(X, CSR)
                    else Standardization.from_moments(xp, *moments(xp, X), scale, X.dtype))
        for model in self.estimators_:
            model.feature_mean_, model.feature_scale_ = to_numpy(standard.mean), to_numpy(standard.scale)
        return standard

    def _train(self, xp, X, y, X_val, val_scale, y_val, scale, standard, callback):
        """The grid's models, from zero weights, in the SGD loop (on X as given or standardised, the
        weights mapped back to X's units as they are published); each epoch's records into their
        histories, then the choice and the callback."""
        grid, (k, d) = self.grid(), self.estimators_[0].coef_.shape
        coef, b = xp.zeros((len(grid), k, d), COMPUTE_DTYPE), xp.zeros((len(grid), k), COMPUTE_DTYPE)

        def publish(coef, b, records, epoch):
            for i, (model, record) in enumerate(zip(self.estimators_, records)):
                if record is None:  # diverged: its last finite epoch's weights stay published
                    self._diverged[i] = self._diverged[i] or epoch
                    continue
                model.history_.append(record)
                set_weights(model, coef[i].copy(), b[i].copy())
                model.n_iter_ = len(model.history_)
            if any(records):
                self._choose()
                if callback is not None:
                    callback(self, epoch)

        evaluate = evaluator((X_val, y_val), val_scale, "val_acc")
        if standard is not None:
            raw = np.float64 if X_val.dtype == np.float64 else COMPUTE_DTYPE  # coef_'s dtype: the estimator's rule
            (evaluate, publish), scale = standard.around(xp, evaluate, publish, raw), 1.0
        X = check_sparse(X, "X", xp, COMPUTE_DTYPE) if isinstance(X, CSR) else X  # the kernels' values
        # A standardised sparse X: the grid's rates are relative to lr="auto"'s, 0.5 being that rate itself.
        relative = sparse_rate(xp, X) / AUTO_LR if isinstance(X, CSR) and standard is not None else 1.0
        sgd(xp, [(X.shape[0], lambda: (X, y, None))], coef, b, lrs=[lr * relative for lr, _ in grid],
            weight_decays=[wd for _, wd in grid], first_epoch=0, epochs=int(self.epochs),
            batch_size=int(self.batch_size), schedule=self.schedule, seed=int(self.seed), x_scale=scale,
            evaluate=evaluate, publish=publish)

    def split(self, n):
        """The (training rows, validation rows) of n rows: host int64 index arrays, each in order."""
        if n < 2:
            raise ValueError(f"a sweep holds out validation rows: X needs at least 2 rows, got {n}")
        held = min(n - 1, max(1, round(self.validation_fraction * n)))
        order = np.random.default_rng(int(self.seed)).permutation(n)
        return np.sort(order[held:]), np.sort(order[:held])

    def _model(self, lr, weight_decay):
        return SoftmaxRegression(lr=lr, weight_decay=weight_decay, **{name: getattr(self, name) for name in SHARED})

    def _choose(self):
        """best_* and cv_results_ from each model's last record."""
        last = [model.history_[-1] if model.history_ else {} for model in self.estimators_]
        scores = np.array([np.nan if gone else r.get("val_acc", np.nan) for r, gone in zip(last, self._diverged)])
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        rank = 1 + np.array([(ranked > s).sum() for s in ranked])  # ties share the best rank, as GridSearchCV's
        grid = self.grid()
        self.cv_results_ = {
            "params": [{"lr": lr, "weight_decay": wd} for lr, wd in grid],
            "param_lr": np.array([lr for lr, _ in grid]),
            "param_weight_decay": np.array([wd for _, wd in grid]),
            "mean_test_score": scores,
            "rank_test_score": rank,
            "mean_train_score": np.array([r.get("train_acc", np.nan) for r in last]),
            "train_loss": np.array([r.get("loss", np.nan) for r in last]),
            "diverged_epoch": self._diverged.copy(),
        }
        self.best_index_ = int(np.argmax(ranked))
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        self.best_score_ = float(scores[self.best_index_])
        self.best_estimator_ = self.estimators_[self.best_index_]

    # ---- the chosen model's answers ----

    def _best(self):
        if "best_estimator_" not in vars(self):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        return self.best_estimator_

    classes_ = property(lambda self: self._best().classes_)
    n_features_in_ = property(lambda self: self._best().n_features_in_)

    def predict(self, X):
        return self._best().predict(X)

    def predict_proba(self, X):
        return self._best().predict_proba(X)


SoftmaxRegressionSweep.__doc__ = SoftmaxRegressionSweep.__doc__.replace("{parameters}", "\n".join(
    f"    {p.name} : {p.help}." for p in HYPERPARAMETERS if p.name in SHARED))


def _rows(xp, X, rows):
    """X's rows (an index array of xp): of a dense X or a CSR triple."""
    return X.take(rows, xp) if isinstance(X, CSR) else X[rows]
