"""Compile the CPU kernels ahead of their first use: ``python -m fastsoftmax.warmup``.

Numba compiles a kernel for each signature (the dtypes of X and of the
weights) on its first call and keeps the machine code in its cache
(fastsoftmax/backends/cpu/jit.py says where), so that only the first process pays: seconds per
signature, against ~0.1 s to load them. This module does that first call
ahead of time, on a few rows:

- ``fit_kernels`` before a fit (the training CLI): a copy of the model fits
  a few rows of the data with the same dtypes, width and classes, and
  evaluates on the same evaluation set, so that exactly the kernels the fit
  will run are compiled (or loaded), and the fit's epochs run at full speed.
  A line says so while they compile, only when they do.
- ``python -m fastsoftmax.warmup`` (``make setup`` runs it after installing):
  the signatures the trainer and the public kernels use, ``ALL`` below.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings

import numpy as np
from numba.core import event
from sklearn.base import clone

from .. import ops
from ..models.estimator import SoftmaxRegression, TrainingDivergedError
from ..ops.dispatch import kernel_cache
from .common import run_command

# What the kernels took to compile on the 2-core development machine (AMD EPYC, no other load):
# a first fit's on uint8 X, by solver (lbfgs and newton-cg compute in float64 for uint8 and float64
# X), and ALL's: uint8 X 8.2 s (sgd and lbfgs), then float32 X 1.8 s and float64 X 3.7 s (another X
# dtype reuses the tile code already compiled for its compute dtype). newton-cg's Hessian products
# added to both, measured on the 2-core Xeon in alternating runs: a first newton-cg fit 6.0 s against
# lbfgs's 4.4 s, ALL 23.2 s against 18.9 s before them; scaled here to the EPYC's figures.
FIT_SECONDS = {"sgd": 4, "lbfgs": 4, "newton-cg": 6}
ALL_SECONDS = 17
ROWS = 64  # a few rows: enough for a minibatch of several parts
# Evaluation rows where the caller gives none: as many as Fashion-MNIST's test set, so that
# the accuracy takes the path it takes there (parallel above a few thousand rows).
EVAL_ROWS = 10_000
# python -m fastsoftmax.warmup: X's dtypes; SGD trains float32 weights, lbfgs float64 ones
# for uint8 and float64 X (float32 for float32 X), and the public kernels run float32 ones.
ALL = (np.uint8, np.float32, np.float64)


class _Compiles(event.Listener):
    """Calls announce() once, when Numba starts its first compilation (never for a cache load)."""

    def __init__(self, announce):
        self.announce, self.compiled = announce, False

    def on_start(self, ev):
        if not self.compiled:
            self.compiled = True
            self.announce()

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def announced(line, say):
    """While the block runs, say(line) as soon as Numba starts compiling; yields the listener,
    whose .compiled tells whether anything compiled."""
    listener = _Compiles(lambda: say(line))
    with event.install_listener("numba:compile", listener):
        yield listener


def compiling_line(seconds: float) -> str:
    """What the CLIs say as the kernels start to compile."""
    why, folder = kernel_cache()
    if folder is None:
        return f"compiling the CPU kernels (no writable cache, so in every run: {why}): about {seconds:.0f} s"
    return f"compiling the CPU kernels, once: about {seconds:.0f} s"


def fit_kernels(model, X, y, eval_set=None, classes=None, say=lambda line: None):
    """Compile (or load) the kernels that model.fit(X, y, eval_set=eval_set, classes=classes) runs,
    by fitting a copy of the model (one epoch, or one lbfgs or newton-cg iteration) on X's first ROWS rows.

    say(line) gets one line as the first kernel starts to compile. Returns (seconds, compiled).
    """
    start = time.perf_counter()
    params = {"epochs": 1} if model.solver == "sgd" else {"max_iter": 1}
    with announced(compiling_line(FIT_SECONDS[model.solver]), say) as compiles, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a full-batch solver stopped by max_iter: expected here
        try:
            clone(model).set_params(warm_start=False, **params).fit(X[:ROWS], y[:ROWS], eval_set=eval_set,
                                                                     classes=classes)
        except TrainingDivergedError:
            pass  # the kernels compiled all the same; the fit itself says it, on all the rows
    return time.perf_counter() - start, compiles.compiled


def _problem(dtype, rows, d=8, k=3):
    """X (rows, d) of dtype, labels cycling through k classes."""
    X = np.arange(rows * d).reshape(rows, d) % 255
    return X.astype(dtype), np.arange(rows) % k


def all_kernels():
    """The signatures of ALL: per X dtype, an SGD fit, an lbfgs fit and a newton-cg fit (the trainer's), and each
    public kernel with float32 weights (the accuracy on a minibatch and on a test set)."""
    for dtype in ALL:
        X, y = _problem(dtype, ROWS)
        evaluation = _problem(dtype, EVAL_ROWS)
        for solver in ("sgd", "lbfgs", "newton-cg"):
            fit_kernels(SoftmaxRegression(solver=solver), X, y, eval_set=evaluation)
        W, b = np.zeros((X.shape[1], 3), np.float32), np.zeros(3, np.float32)
        P = ops.linear_softmax(X, W, b)
        ops.linear_logits(X, W, b)
        ops.linear_softmax_cross_entropy(X, W, b, y)
        ops.softmax_cross_entropy(P, y)
        ops.train_epoch(X, y, np.asfortranarray(W), b, batch_size=16, lr=0.1, rows=np.arange(ROWS))
        copies = EVAL_ROWS // ROWS + 1
        for scores, labels in ((P, y), (np.repeat(P, copies, axis=0), np.tile(y, copies))):
            ops.accuracy(scores, labels)


def main(argv=None, *, exiting=False):
    """The command line; `exiting`: the process exits with the status it returns (run_command)."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m fastsoftmax.warmup\n\ncompiles the CPU kernels into Numba's cache "
              f"({kernel_cache()[1]}): the trainer's and the public kernels' for X of "
              f"{', '.join(np.dtype(t).name for t in ALL)}", file=sys.stderr)
        return 0 if args in (["-h"], ["--help"]) else 2
    # An environment that stops the kernels (NUMBA_DISABLE_JIT) is one line, as in the other commands.
    return run_command("python -m fastsoftmax.warmup", lambda _: warm(), None, exiting=exiting)


def warm():
    """Compile (or load) ALL's kernels, saying which and where."""
    start = time.perf_counter()
    with announced(compiling_line(ALL_SECONDS), print) as compiles:
        all_kernels()
    seconds = time.perf_counter() - start
    folder = kernel_cache()[1]
    where = f"in {folder}" if folder is not None else "in memory only (no writable cache)"
    print(f"{'compiled' if compiles.compiled else 'loaded'} the CPU kernels {where} in {seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main(exiting=True))
