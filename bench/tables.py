"""Small tables of every feature scale, for the defaults' accuracy against scikit-learn's (issue 18).

Each table is (X float64, y); ``splits`` gives the stratified 70/30 splits
both bench/defaults.py and tests/test_defaults.py score on. The synthetic
tables share one labelling rule (a random linear model plus Gumbel noise, so
the best accuracy is well below 1) and differ only in how the features are
scaled: what a new user's table looks like before anyone standardises it.
"""

from __future__ import annotations

import itertools

import numpy as np

SPLITS = 3  # stratified 70/30 splits per table, by random_state 0..SPLITS-1


def _labelled(n=600, d=10, k=3, seed=0):
    """Standard normal features and labels from a random linear model with Gumbel noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k))).argmax(axis=1)
    return X, y


def synthetic():
    X, y = _labelled()
    rng = np.random.default_rng(1)
    copies = np.repeat(X[:, :3], 10, axis=1) + 0.05 * rng.normal(size=(len(X), 30))  # 30 features, 3 directions
    tables = {f"scale {s:g}": (X * s, y) for s in (1e-3, 1.0, 1e2, 1e4)}
    tables |= {
        "scales 1e-3..1e4": (X * np.logspace(-3, 4, X.shape[1]), y),
        "constant + 1e6 column": (np.c_[X, np.full(len(X), 7.0), rng.normal(size=len(X)) * 1e6], y),
        "offset +1000": (X + 1000.0, y),
        "correlated x1e3": (np.c_[X, copies] * 1e3, y),
    }
    return tables


def toy():
    """scikit-learn's bundled tables (no download): features up to ~1700 (wine), ~4000 (breast
    cancer), 0-16 (digits)."""
    from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

    return {load.__name__.removeprefix("load_").replace("_", " "): load(return_X_y=True)
            for load in (load_wine, load_breast_cancer, load_digits, load_iris)}


def grid():
    """Tables across sizes and scales: n in 100..5000 rows, d in 2..100 features, k in 2..10
    classes, labels from make_classification's clusters or from a random linear model, each as
    generated ("raw", unit-scale features) and with every feature scaled by 10**U(-3, 4), a third of
    them also offset by 1000 ("scaled")."""
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(0)
    tables = {}
    for n, d, k, kind in itertools.product((100, 300, 1000, 5000), (2, 5, 20, 100), (2, 3, 10), ("clusters", "linear")):
        if kind == "clusters":
            if k * 2 > 2 ** min(d, 5):  # make_classification needs 2 ** informative >= 2 k
                continue
            informative = max(2, min(d, int(np.ceil(np.log2(k * 2))) + 1))
            X, y = make_classification(n, d, n_informative=informative, n_redundant=0, n_classes=k,
                                       n_clusters_per_class=1, random_state=n + d + k)
        else:
            X, y = _labelled(n, d, k, seed=n + d + k)
            if np.unique(y, return_counts=True)[1].min() < 2:  # too rare a class to split by
                continue
        scaled = X * 10.0 ** rng.uniform(-3, 4, d) + rng.choice([0.0, 0.0, 1000.0], d)
        tables[f"n={n} d={d} k={k} {kind}"] = (X, y)
        tables[f"n={n} d={d} k={k} {kind} scaled"] = (scaled, y)
    return tables


def splits(X, y):
    """The SPLITS (X_train, X_test, y_train, y_test) of a table."""
    from sklearn.model_selection import train_test_split

    return [train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y) for seed in range(SPLITS)]
