"""fastsoftmax: fused softmax-regression kernels and a Fashion-MNIST trainer.

NumPy arrays run on Numba CPU kernels, CuPy arrays on CUDA kernels; every
function returns arrays of its input's kind.

>>> import numpy as np, fastsoftmax as fs
>>> X = np.array([[0, 255], [255, 0]], np.uint8)
>>> W, b = np.eye(2, dtype=np.float32) * 4, np.zeros(2, np.float32)
>>> fs.linear_softmax(X, W, b, x_scale=1 / 255).argmax(axis=1)
array([1, 0])
"""

# First: Numba's TBB threading layer made loadable before any parallel loop picks one (backends/tbb.py).
from .backends import tbb as _tbb  # noqa: F401, I001

from .io.datasets import Dataset, DatasetError, DatasetNotFoundError, load_dataset
from .io.idx import IdxError, read_idx, read_idx_dask
from .models.estimator import SoftmaxRegression
from .models.sweep import SoftmaxRegressionSweep
from .ops import (
    accuracy,
    linear_logits,
    linear_softmax,
    linear_softmax_cross_entropy,
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
    "linear_logits",
    "linear_softmax",
    "linear_softmax_cross_entropy",
    "load_dataset",
    "read_idx",
    "read_idx_dask",
    "softmax_cross_entropy",
    "train_epoch",
    "train_epoch_many",
]
