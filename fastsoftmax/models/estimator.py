"""SoftmaxRegression: a scikit-learn estimator over the fused kernels.

Hyper-parameters live in __init__ (their defaults and rules in
hyperparameters.py), learned state in attributes ending in "_", and fit
returns self; it derives from scikit-learn's BaseEstimator and ClassifierMixin,
so Pipeline, GridSearchCV, clone and check_estimator take it. This module is
the scikit-learn face: it validates once per fit, maps any labels to the
0..k-1 the kernels see, and hands the training to fastsoftmax.solvers (SGD
epochs, each one trusted ops.train_epoch; or full-batch L-BFGS or Newton-CG on
the fused loss, gradient and Hessian products: full_batch.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.utils.metaestimators import available_if

from .. import ops
from ..arrays import CSR, device_of, is_dask, to_numpy
from ..io.modelfile import FORMAT, bad_model, read_model, write_model
from ..ops.dispatch import array_module, resolve_device
from ..ops.validation import FULL_BATCH, check_sample_weight, check_sparse
from ..solvers import dask
from ..solvers.sgd import TrainingDivergedError, sgd, warn_if_not_learning
from .full_batch import fit_full_batch, iterations
from .hyperparameters import DEFAULTS, HYPERPARAMETERS
from .inputs import (
    auto_input_scale,
    check_model_size,
    eval_data,
    evaluator,
    predict_data,
    training_data,
    x_scale,
)
from .labels import checked_row_weights, encode, fit_classes
from .standardize import Standardization, auto_rate, moments
from .weights import HostWeights, set_weights

__all__ = ["FORMAT", "SoftmaxRegression", "TrainingDivergedError"]

# The compute precision of SGD: float32 is what the kernels run fastest and is
# ample for a convex model fitted by SGD (lbfgs and newton-cg: full_batch.compute_dtype).
COMPUTE_DTYPE = np.float32
# lr="auto": this peak rate on standardised features (uint8 pixels: on x / 255), in batches of at most
# n // AUTO_STEPS rows, so a small table still gets enough steps (iris: 105 rows, 1 step an epoch at 256).
AUTO_LR = 0.5
AUTO_STEPS = 16
# partial_fit under lr="auto": a pass after `seen` rows (every pass's, fit's epochs too) steps at
# AUTO_LR / (1 + seen / AUTO_DECAY_ROWS), SGD's classic 1/t decay (Robbins-Monro), so that later chunks
# refine the model rather than overwrite it: at a constant 0.5, test accuracy swung 0.35-0.77 over 10
# chunks of 1000 Fashion-MNIST images; with the decay it ends at 0.78 (tests/test_defaults.py).
AUTO_DECAY_ROWS = 1000


class SoftmaxRegression(HostWeights, ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression, by minibatch SGD or full-batch L-BFGS or Newton-CG.

    Parameters (fastsoftmax.models.hyperparameters.HYPERPARAMETERS)
    ----------
{parameters}

    Attributes
    ----------
    coef_ : (n_classes, n_features) weights on X's own features, as in scikit-learn (float32;
        float64 from lbfgs and newton-cg on uint8 or float64 X, and from SGD with lr="auto" on
        float64 X).
    intercept_ : (n_classes,) biases.
    lr_, batch_size_ : SGD's peak learning rate and batch size, as lr resolved them at fit.
    feature_mean_, feature_scale_ : the standardisation SGD trained under (lr="auto" on float X:
        z = (x - feature_mean_) * feature_scale_), or None; coef_ already folds it in.
    classes_ : the class labels, sorted (the kernels see their indices 0..k-1).
    n_features_in_, feature_names_in_ (from a DataFrame with string column names).
    input_scale_ : the scale X is multiplied by (input_scale, or what "auto" chose at fit).
    n_iter_ : lbfgs, newton-cg: the iterations run, as LogisticRegression's (a (1,) int32 array);
        sgd: the epochs in history_ (an int, as SGDClassifier's).
    history_ : one dict per epoch (sgd: epoch, loss, train_acc, test_acc with an
        eval_set, lr, batch_size, seconds) or per iteration (lbfgs, newton-cg: epoch = the
        iteration, loss = the penalised objective, grad_max, train_acc, test_acc, seconds).

    fit never changes an array the caller holds: it trains copies, and each
    epoch sets coef_ and intercept_ to new arrays (on either device). After a
    GPU fit they are copied to the host when first read, so an epoch costs
    one synchronisation (its loss and hits) unless a callback reads them.
    """

    def __init__(self, solver=DEFAULTS["solver"], epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"],
                 lr=DEFAULTS["lr"], schedule=DEFAULTS["schedule"], weight_decay=DEFAULTS["weight_decay"],
                 C=DEFAULTS["C"], tol=DEFAULTS["tol"], max_iter=DEFAULTS["max_iter"],
                 fit_intercept=DEFAULTS["fit_intercept"], input_scale=DEFAULTS["input_scale"],
                 class_weight=DEFAULTS["class_weight"], seed=DEFAULTS["seed"], device=DEFAULTS["device"],
                 warm_start=DEFAULTS["warm_start"], verbose=DEFAULTS["verbose"]):
        given = locals()
        for p in HYPERPARAMETERS:  # stored as given: scikit-learn's rule; fit checks them
            setattr(self, p.name, given[p.name])

    def validate_params(self):
        """Raise ValueError naming the first bad hyper-parameter, or one its solver does not use."""
        for p in HYPERPARAMETERS:
            p.check(getattr(self, p.name))
        if self.solver == "sgd" and self.C != DEFAULTS["C"]:
            raise ValueError(f"C={self.C!r} is the penalty of lbfgs and newton-cg; solver='sgd' takes "
                             "weight_decay instead")
        if self.solver == "sgd" and not self.fit_intercept:
            raise ValueError("fit_intercept=False needs solver='lbfgs' or 'newton-cg': SGD always fits an intercept")
        if self.solver in FULL_BATCH and self.weight_decay != DEFAULTS["weight_decay"]:
            raise ValueError(f"weight_decay={self.weight_decay!r} is the sgd penalty; solver={self.solver!r} takes "
                             "C instead (LogisticRegression's C: the mean loss + ||W||^2 / (2 C n))")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags

    # ---- training ----

    def fit(self, X, y, eval_set=None, callback=None, *, classes=None, sample_weight=None):
        """Fit on X (n, d) (finite numbers; uint8, float32 and float64 are used as given; scipy.sparse or
        cupyx.scipy.sparse: as CSR, never densified) and labels y.

        With lr="auto", SGD trains on float X standardised (README, "Your own
        data"; a sparse X scaled, not centred, as StandardScaler(with_mean=False))
        and coef_ and intercept_ come back in X's own units.

        sample_weight (n,) weighs the rows, times class_weight's weight of each
        row's class: lbfgs and newton-cg minimise LogisticRegression's weighted objective
        (sum(w_i loss_i) / sum(w) + ||W||^2 / (2 C sum(w))); SGD's batches weigh
        each row by w_i n / sum(w), so a weight of 2 trains as a duplicated row
        would in expectation. Weights must be >= 0 with a positive sum.

        classes: the model's classes, the labels (any scikit-learn takes:
        strings, negative or gappy integers) or a count k for 0..k-1, such as a
        data set's ``classes``; y need not hold them all. By default the labels
        in y and eval_set (or the fitted model's when warm). eval_set=(X_test,
        y_test) adds test accuracy to each epoch's record; callback(model,
        record) runs after each epoch (lbfgs, newton-cg: iteration), with coef_ and
        intercept_ already holding its weights (for checkpoints). An SGD loss or
        weights that become NaN or inf stop the fit with TrainingDivergedError,
        the model left at the last finite epoch. Ctrl-C during lbfgs or newton-cg
        leaves the model at the last iterate. With warm_start, a fitted model's fit
        starts from its coef_ and intercept_.
        """
        self.validate_params()
        device = resolve_device(self.device)
        xp = array_module(device)
        warm = self.warm_start and self._fitted()
        # Checked once here; every epoch below takes ops' trusted path.
        X, y, found = training_data(self, X, y, xp, reset=not warm)
        labels = [found] + ([eval_set[1]] if eval_set is not None else [])
        classes_ = fit_classes(labels, classes, self.classes_ if warm else None)
        check_model_size(len(classes_), X.shape[1], f"{len(classes_):,} classes")
        y = encode(y, classes_, xp, "y")
        weights = checked_row_weights(self.class_weight, classes_, X, y, sample_weight, xp)
        evaluation = None if eval_set is None else eval_data(eval_set, classes_, xp, X.shape[1])
        if not warm:
            start_fit(self, classes_, X)
        evaluate = evaluator(evaluation, x_scale(self.input_scale_, X))
        if self.solver in FULL_BATCH:
            fit_full_batch(self, device, X, y, weights, evaluate, self._publisher(callback, len(self.history_)))
            return self
        self._sgd(xp, X, y, weights, refit=True, first_epoch=len(self.history_), epochs=int(self.epochs),
                  schedule=self.schedule, evaluate=evaluate, publish=self._publisher(callback, 0))
        return self

    @available_if(lambda self: self.solver == "sgd")  # full-batch solvers have none: hasattr says so
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One pass of minibatch SGD over the rows given (solver="sgd" only), at a constant rate: lr where
        it is a number; under lr="auto", 0.5 / (1 + rows seen / AUTO_DECAY_ROWS), the rows seen being
        those of every earlier pass (of fit too), and float X standardised by the first call's moments.

        classes (the labels, or a count) is required on the first call, as in
        scikit-learn; later calls may repeat it. The rows are visited in the
        order of (seed, number of passes so far). sample_weight and a dict
        class_weight weigh the rows as in fit (normalised over this call's rows);
        class_weight="balanced" is refused, as by SGDClassifier.
        """
        self.validate_params()
        xp = array_module(resolve_device(self.device))
        first = not self._fitted()
        if first and classes is None:
            raise ValueError("classes must be given to the first call of partial_fit: the labels y may hold")
        X, y, found = training_data(self, X, y, xp, reset=first)
        # The earlier calls' classes_, which a repeated `classes` must equal (the error names what differs).
        classes_ = fit_classes([found], classes, None if first else self.classes_)
        y = encode(y, classes_, xp, "y")
        weights = checked_row_weights(self.class_weight, classes_, X, y, sample_weight, xp, partial=True)
        if first:
            start_fit(self, classes_, X)
        done = len(self.history_)
        seen = sum(r.get("rows", 0) for r in self.history_)
        self._sgd(xp, X, y, weights, refit=first, first_epoch=done, epochs=done + 1, schedule="constant",
                  evaluate=evaluator(None, None), publish=self._publisher(None, 0),
                  decay=1 / (1 + seen / AUTO_DECAY_ROWS))
        return self

    def _sgd(self, xp, X, y, weights, *, refit, first_epoch, epochs, schedule, evaluate, publish, decay=1.0):
        """sgd from the model's weights (copies: fit trains its own) over X's rows or chunks, at the lr
        and batch size ``lr`` resolves to (lr_, batch_size_; under lr="auto", times `decay`): the
        one-model sweep of the SGD loop. Under lr="auto", float X is standardised for the training
        (standardize.py): from X's moments (a sparse X: its columns' largest magnitudes) when `refit`,
        else (a later partial_fit) the model's; evaluate and publish still see weights on X's own units."""
        auto = self.lr == "auto"
        self.batch_size_ = sgd_batch_size(self.lr, self.batch_size, X.shape[0])
        coef = xp.array(self.coef_, dtype=COMPUTE_DTYPE, order="C")
        b = xp.array(self.intercept_, dtype=COMPUTE_DTYPE)
        scale = x_scale(self.input_scale_, X)
        standard = self._standardization(xp, X, scale, refit) if auto and X.dtype != np.uint8 else None
        if standard is None:
            self.feature_mean_ = self.feature_scale_ = None
            X = check_sparse(X, "X", xp, COMPUTE_DTYPE) if isinstance(X, CSR) else X  # the kernels' values
            X, scale = ops.scaled_first(X, scale)  # float X near its dtype's largest
        else:
            self.feature_mean_, self.feature_scale_ = to_numpy(standard.mean), to_numpy(standard.scale)
            coef, b = standard.from_raw(xp, xp.asarray(self.coef_), xp.asarray(self.intercept_), COMPUTE_DTYPE)
            raw = np.float64 if X.dtype == np.float64 else COMPUTE_DTYPE  # coef_'s dtype: full_batch's rule
            (evaluate, publish), scale = standard.around(xp, evaluate, publish, raw), 1.0
        if is_dask(X):  # each chunk loaded (and standardised) again every epoch
            sw = check_sample_weight(weights, X.shape[0], COMPUTE_DTYPE, dask.dask_array())  # lazy, mean 1
            blocks, X_fit = dask.fit_blocks(X, y, xp, None if standard is None else standard.apply,
                                            sample_weight=sw), None
        else:  # standardised once
            X_fit = X if standard is None else standard.apply(xp, X)
            sw = check_sample_weight(weights, X.shape[0], COMPUTE_DTYPE, xp)  # normalised to mean 1
            blocks = [(X.shape[0], lambda: (X_fit, y, sw))]
        self.lr_ = auto_rate(xp, X, X_fit, standard, AUTO_LR) * decay if auto else float(self.lr)
        sgd(xp, blocks, coef[None], b[None], lrs=[self.lr_], weight_decays=[float(self.weight_decay)],
            first_epoch=first_epoch, epochs=epochs, batch_size=self.batch_size_, schedule=schedule,
            seed=int(self.seed), x_scale=scale, evaluate=evaluate,
            publish=lambda coef, b, records, epoch: publish(coef[0], b[0], records[0]))
        self.n_iter_ = len(self.history_)
        warn_if_not_learning(self.history_, epochs - first_epoch, len(self.classes_), self.lr_, stacklevel=3)

    def _standardization(self, xp, X, scale, refit):
        """The Standardization of X's moments, or (not refit, and the model has one) the model's."""
        if not refit and getattr(self, "feature_mean_", None) is not None:
            return Standardization(xp.asarray(self.feature_mean_), xp.asarray(self.feature_scale_), scale)
        if isinstance(X, CSR) or is_dask(X) and dask.sparse_chunks(X):
            return Standardization.max_abs(xp, X, scale)
        mean, std = dask.moments(X) if is_dask(X) else moments(xp, X)
        return Standardization.from_moments(xp, mean, std, scale, X.dtype)

    def _fitted(self):
        return "classes_" in vars(self)

    def _publisher(self, callback, first_record):
        """publish(coef, b, record) for the solvers: the weights, the record, the callback."""

        def publish(coef, b, record):
            set_weights(self, coef, b)
            if record is not None:
                if first_record:
                    record["epoch"] += first_record
                self.history_.append(record)
                if self.verbose:
                    print(progress_line(self.solver, record), flush=True)
                if callback is not None:
                    callback(self, record)

        return publish

    # ---- inference ----

    def _inputs(self, X):
        """(X, W, b, scale): X checked against the fitted model, on its own device; W and b of its kind;
        the factor X is multiplied by."""
        if not self._fitted():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        X, xp = predict_data(self, X)
        return X, xp.asarray(self.coef_).T, xp.asarray(self.intercept_), x_scale(self.input_scale_, X)

    def predict_proba(self, X):
        """Class probabilities (n, k) in the order of classes_, an array of X's kind (Dask: lazy, by chunk)."""
        if is_dask(X):
            return dask.map_rows(self.predict_proba, X, len(self.classes_), self.coef_.dtype)
        X, W, b, scale = self._inputs(X)
        return ops.linear_softmax(X, W, b, x_scale=scale)

    def predict_log_proba(self, X):
        return array_module(device_of(X)).log(self.predict_proba(X))

    def decision_function(self, X):
        """The logits (n, k); for two classes, as scikit-learn, the second's minus the first's (n,)."""
        if is_dask(X):
            k = len(self.classes_)
            return dask.map_rows(self.decision_function, X, 0 if k == 2 else k, self.coef_.dtype)
        X, W, b, scale = self._inputs(X)
        scores = ops.linear_logits(X, W, b, x_scale=scale)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X):
        """The labels (classes_) of the likeliest classes; on a GPU, an array of X's kind for numeric labels."""
        if is_dask(X):
            return dask.map_rows(self.predict, X, 0, self.classes_.dtype)
        index = self.predict_proba(X).argmax(axis=1)
        if isinstance(index, np.ndarray):
            return self.classes_[index]
        if self.classes_.dtype.kind in "iufb":
            return array_module(device_of(index)).asarray(self.classes_)[index]
        return self.classes_[to_numpy(index)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on (X, y), weighted by sample_weight where given."""
        if is_dask(X):
            return dask.accuracy(self.predict(X), y, sample_weight)
        if device_of(X) == "cuda" and sample_weight is None:
            return ops.accuracy(self.predict_proba(X), encode(y, self.classes_, array_module("cuda"), "y"))
        return accuracy_score(to_numpy(y) if device_of(y) == "cuda" else y, to_numpy(self.predict(X)),
                              sample_weight=None if sample_weight is None else to_numpy(sample_weight))

    # ---- persistence ----

    def save(self, path, *, dataset=None):
        """Write the model to an .npz file (format /3), atomically; `dataset` names what it was trained on.

        The labels are stored as an array of their own dtype (never pickled), and
        feature_names_in_ (from a DataFrame) as strings, so the loaded model checks
        the columns it is given as this one does. Refuses weights that hold NaN
        or inf: a saved model is always usable.
        """
        if not self._fitted():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        if not (np.isfinite(self.coef_).all() and np.isfinite(self.intercept_).all()):
            raise ValueError(f"not saving {path}: the weights hold NaN or inf")
        params = {name: value.item() if isinstance(value, np.generic) else value
                  for name, value in self.get_params().items()}
        standardized = getattr(self, "feature_mean_", None) is not None
        write_model(path, coef=self.coef_, intercept=self.intercept_, classes=self.classes_,
                    input_scale=self.input_scale_, dataset=dataset, params=params, history=self.history_,
                    standardization=(self.feature_mean_, self.feature_scale_) if standardized else None,
                    feature_names=getattr(self, "feature_names_in_", None))

    @classmethod
    def load(cls, path):
        """Read a model written by save (format /3, or /2 and /1 of earlier versions).

        Files of format /1 and /2 keep their meaning: classes 0..k-1, and uint8
        inputs divided by 255 while float inputs are taken as given
        (``input_scale_ == "by dtype"``). Raises FileNotFoundError, or ValueError
        naming the file and its first bad field (OSError for a file that cannot be
        read); each array's size is checked from its header before its data is
        read. The model's ``dataset_`` is the name given to save, or None.
        """
        path = Path(path)
        fields = read_model(path)
        params = fields["params"]
        if not isinstance(params, dict) or set(params) - set(DEFAULTS):
            raise bad_model(path, f"params must name hyper-parameters ({', '.join(DEFAULTS)})")
        model = cls(**params)
        try:
            model.validate_params()
        except ValueError as e:
            raise bad_model(path, f"params: {e}") from None
        model.coef_, model.intercept_, model.history_ = fields["coef"], fields["intercept"], fields["history"]
        model.classes_, model.input_scale_ = fields["classes"], fields["input_scale"]
        model.n_features_in_ = model.coef_.shape[1]
        model.n_iter_ = iterations(len(model.history_)) if model.solver in FULL_BATCH else len(model.history_)
        model.dataset_ = fields["dataset"]
        if fields["standardization"] is not None:
            model.feature_mean_, model.feature_scale_ = fields["standardization"]
        if fields["feature_names"] is not None:  # an object array, as scikit-learn's fit sets it
            model.feature_names_in_ = fields["feature_names"].astype(object)
        return model


def sgd_batch_size(lr, batch_size, rows):
    """The batch size SGD runs at over `rows` rows: batch_size, at most rows // AUTO_STEPS under lr="auto"."""
    return int(batch_size) if lr != "auto" else min(int(batch_size), max(1, rows // AUTO_STEPS))


def progress_line(solver, record):
    """verbose's line for an epoch's or iteration's record."""
    parts = [f"{'epoch' if solver == 'sgd' else 'iteration'} {record['epoch']}: loss {record['loss']:.10g}"]
    parts += [f"max |gradient| {record['grad_max']:.3g}"] if "grad_max" in record else []
    parts += [f"test accuracy {record['test_acc']:.4f}"] if "test_acc" in record else []
    return ", ".join(parts + [f"{record['seconds']:.2f} s"])


def start_fit(model, classes_, X):
    """Start a model's fit (or a sweep's models', sweep.py) for classes_ and X's width: zero weights (the
    loss is convex), an empty history, the input scale; what SGD sets later is cleared."""
    k, d = len(classes_), X.shape[1]
    model.classes_ = classes_
    model.coef_ = np.zeros((k, d), COMPUTE_DTYPE)
    model.intercept_ = np.zeros(k, COMPUTE_DTYPE)
    model.input_scale_ = auto_input_scale(X) if model.input_scale == "auto" else float(model.input_scale)
    model.history_ = []
    for stale in ("lr_", "batch_size_", "feature_mean_", "feature_scale_"):
        model.__dict__.pop(stale, None)


SoftmaxRegression.__doc__ = SoftmaxRegression.__doc__.replace("{parameters}", "\n".join(
    f"    {p.name} : {p.help}." for p in HYPERPARAMETERS))
