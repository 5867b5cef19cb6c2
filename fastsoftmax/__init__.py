"""fastsoftmax: fused softmax-regression kernels and a Fashion-MNIST trainer.

NumPy arrays run on Numba CPU kernels, CuPy arrays on CUDA kernels; every
function returns arrays of its input's kind.

>>> import numpy as np, fastsoftmax as fs
>>> X = np.array([[0, 255], [255, 0]], np.uint8)
>>> W, b = np.eye(2, dtype=np.float32) * 4, np.zeros(2, np.float32)
>>> fs.linear_softmax(X, W, b, x_scale=1 / 255).argmax(axis=1)
array([1, 0])
"""

import os as _os
import sys as _sys


def numba_environment_error() -> str | None:
    """What in the environment stops Numba from importing, which it says in a traceback not naming it; or None."""
    threads = _os.environ.get("NUMBA_NUM_THREADS", "")
    try:
        if int(threads) >= 1:
            return None
    except ValueError:  # unset, or not a number: Numba warns and takes every core
        return None
    return (f"NUMBA_NUM_THREADS={threads} is not a thread count: set it to a whole number from 1 up (this "
            f"machine has {_os.cpu_count()} cores), or unset it to use them all")


# Before anything imports Numba. While Python locates `python -m fastsoftmax.<command>` (sys.argv[0]
# is "-m" then), the command is left to say it as its one-line error (fastsoftmax/train.py).
if _sys.argv[:1] != ["-m"] and numba_environment_error():
    raise ImportError(numba_environment_error())

# First: Numba's TBB threading layer made loadable before any parallel loop picks one (backends/tbb.py).
from .backends import tbb as _tbb  # noqa: F401, I001

from .io.datasets import Dataset, DatasetError, DatasetNotFoundError, load_dataset
from .io.idx import IdxError, read_idx, read_idx_dask
from .models.estimator import SoftmaxRegression
from .models.sweep import SoftmaxRegressionSweep
from .ops import (
    accuracy,
    linear_cross_entropy,
    linear_logits,
    linear_softmax,
    linear_softmax_cross_entropy,
    linear_softmax_hessian_product,
    softmax_cross_entropy,
    train_epoch,
    train_epoch_many,
)
from .ops.dispatch import DeviceError
from .solvers.sgd import TrainingDivergedError

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DeviceError",
    "IdxError",
    "SoftmaxRegression",
    "SoftmaxRegressionSweep",
    "TrainingDivergedError",
    "accuracy",
    "linear_cross_entropy",
    "linear_logits",
    "linear_softmax",
    "linear_softmax_cross_entropy",
    "linear_softmax_hessian_product",
    "load_dataset",
    "read_idx",
    "read_idx_dask",
    "softmax_cross_entropy",
    "train_epoch",
    "train_epoch_many",
]
