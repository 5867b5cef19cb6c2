"""The hyper-parameters of SoftmaxRegression, in one table.

The estimator takes its defaults, its get_params and its checks from it, and
the training command line its flags (``--batch-size`` for ``batch_size``),
their defaults and their help, so the two cannot drift apart. A new
hyper-parameter is a row here and an argument of SoftmaxRegression.__init__
(tests/test_estimator.py checks that the two list the same names).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops.dispatch import DEVICES
from ..ops.validation import (
    COUNT,
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    POSITIVE_NUMBER,
    POSITIVE_OR_AUTO,
    POSITIVE_OR_INF,
    SCHEDULE,
    SOLVERS,
    Rule,
)


@dataclass(frozen=True)
class ClassWeights(Rule):
    """class_weight's rule: None, "balanced", or a dict of class label -> weight (a finite number >= 0)."""

    def __str__(self):
        return "None, 'balanced' or a dict {class label: weight >= 0}"

    def allows(self, value) -> bool:
        if value is None or isinstance(value, str):
            return value is None or value in self.choices
        return isinstance(value, dict) and all(NON_NEGATIVE_NUMBER.allows(w) for w in value.values())


@dataclass(frozen=True)
class HyperParameter:
    name: str
    default: object
    rule: Rule
    help: str
    flag: bool = True  # the training command line has --<name>

    def check(self, value):
        return self.rule.check(self.name, value)


HYPERPARAMETERS = (
    HyperParameter("solver", "sgd", Rule(str, choices=SOLVERS),
                   "sgd: minibatch SGD over epochs (epochs, batch_size, lr, schedule, weight_decay); "
                   "lbfgs, newton-cg: full-batch L-BFGS or Newton-CG to LogisticRegression's optimum "
                   "(C, tol, max_iter); newton-cg reaches a tight optimum in the fewest passes"),
    HyperParameter("epochs", 15, COUNT, "passes over the training data"),
    HyperParameter("batch_size", 256, COUNT, "rows per SGD step; the last batch of an epoch may be smaller"),
    HyperParameter("lr", "auto", POSITIVE_OR_AUTO,
                   "the peak learning rate; auto: 0.5 on features standardised for the fit (float X; uint8 "
                   "pixels: on X / 255), with batches of at most 1/16 of the rows; a number: that step on X "
                   "as given"),
    HyperParameter("schedule", "cosine", SCHEDULE,
                   "cosine: from lr down to ~0 over the run; constant: lr throughout"),
    HyperParameter("weight_decay", 0.0, NON_NEGATIVE_NUMBER,
                   "sgd's L2 penalty: the step is W -= lr * (dW + weight_decay * W); lbfgs and newton-cg "
                   "refuse it (use C)"),
    HyperParameter("C", 1.0, POSITIVE_OR_INF,
                   "lbfgs's and newton-cg's inverse L2 strength, as in LogisticRegression: they minimise the "
                   "mean cross-entropy + ||W||^2 / (2 C n), intercept not penalised (inf: no penalty); sgd "
                   "refuses it (use weight_decay)"),
    HyperParameter("tol", 1e-4, POSITIVE_NUMBER,
                   "lbfgs and newton-cg stop when the largest gradient entry is at most tol "
                   "(LogisticRegression's tol)"),
    HyperParameter("max_iter", 100, COUNT,
                   "lbfgs and newton-cg stop after max_iter iterations (LogisticRegression's max_iter)"),
    HyperParameter("fit_intercept", True, Rule(bool),
                   "False: no intercept (it stays 0), as LogisticRegression's fit_intercept; lbfgs and "
                   "newton-cg only", flag=False),
    HyperParameter("input_scale", "auto", POSITIVE_OR_AUTO,
                   "X is multiplied by it, at fit and predict alike, whatever the dtype; auto: 1/255 if "
                   "the X given to fit is uint8 (pixels), else 1"),
    HyperParameter("class_weight", None, ClassWeights(str, choices=("balanced",)),
                   "weights of the classes, multiplied into sample_weight, as in LogisticRegression: None (all 1), "
                   "balanced (n / (k * the class's count in y)) or a dict {label: weight}"),
    HyperParameter("seed", 0, NON_NEGATIVE_INT, "fixes the shuffling: the same seed gives the same model"),
    HyperParameter("device", "auto", Rule(str, choices=DEVICES), "auto: CUDA where CuPy sees a GPU, else CPU"),
    HyperParameter("warm_start", False, Rule(bool),
                   "if the model is fitted, fit continues from its weights (coef_, intercept_): SGD resumes "
                   "the schedule after the epochs in history_, lbfgs and newton-cg start from them",
                   flag=False),  # the command line has --resume
    HyperParameter("verbose", 0, NON_NEGATIVE_INT,
                   "> 0: print a line per epoch (sgd) or iteration (lbfgs, newton-cg)", flag=False),
)

DEFAULTS = {p.name: p.default for p in HYPERPARAMETERS}
