"""The hyper-parameters of SoftmaxRegression, in one table.

The estimator takes its defaults, its get_params and its checks from it, and
the training command line its flags (``--batch-size`` for ``batch_size``),
their defaults and their help, so the two cannot drift apart. A new
hyper-parameter is a row here and an argument of SoftmaxRegression.__init__
(tests/test_estimator.py checks that the two list the same names).
"""

from __future__ import annotations

from dataclasses import dataclass

from .backend import DEVICES
from .validation import COUNT, NON_NEGATIVE_INT, NON_NEGATIVE_NUMBER, POSITIVE_NUMBER, SCHEDULE, Rule


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
    HyperParameter("epochs", 15, COUNT, "passes over the training data"),
    HyperParameter("batch_size", 256, COUNT, "rows per SGD step; the last batch of an epoch may be smaller"),
    HyperParameter("lr", 0.5, POSITIVE_NUMBER, "the peak learning rate"),
    HyperParameter("schedule", "cosine", SCHEDULE,
                   "cosine: from lr down to ~0 over the run; constant: lr throughout"),
    HyperParameter("weight_decay", 0.0, NON_NEGATIVE_NUMBER,
                   "L2 penalty: the step is W -= lr * (dW + weight_decay * W)"),
    HyperParameter("seed", 0, NON_NEGATIVE_INT, "fixes the shuffling: the same seed gives the same model"),
    HyperParameter("device", "auto", Rule(str, choices=DEVICES), "auto: CUDA where CuPy sees a GPU, else CPU"),
    HyperParameter("warm_start", False, Rule(bool),
                   "if the model is fitted, fit continues from its weights and resumes the schedule "
                   "after the epochs in history_", flag=False),  # the command line has --resume
)

DEFAULTS = {p.name: p.default for p in HYPERPARAMETERS}
