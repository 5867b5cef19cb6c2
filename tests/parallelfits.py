"""What tests/test_parallel_fits.py's processes run: a small fit, importable by spawned children too."""

import numpy as np

import fastsoftmax as fs

_rng = np.random.default_rng(0)
X = _rng.integers(0, 256, (600, 20), dtype=np.uint8)
Y = _rng.integers(0, 3, 600)


def fit(seed):
    """The weights of a 2-epoch fit with this seed (each seed its own shuffles, so its own bits)."""
    return fs.SoftmaxRegression(epochs=2, batch_size=32, seed=seed).fit(X, Y).coef_
