"""The defaults on tables nobody tuned them for: SoftmaxRegression() against LogisticRegression().

Prints, per table of bench/tables.py, the mean test accuracy over its splits
of scikit-learn's LogisticRegression() with its defaults, of SoftmaxRegression
with the defaults before issue 18 (lr=0.5 on X as given, batch 256) and with
today's defaults (lr="auto"), and whether the fits warned (ConvergenceWarning) or
diverged (TrainingDivergedError: a loss that runs away stops the fit);
then, over bench/tables.py's grid of sizes and scales, how many tables each
comes within 0.02 of LogisticRegression() on (StandardScaler + LogisticRegression
as a peer: what standardising alone costs where n is not much above d).
Run: ``python -m bench.defaults``.
"""

from __future__ import annotations

import warnings

import numpy as np

from bench.tables import grid, splits, synthetic, toy


def score(make, X, y):
    """(mean test accuracy over the splits, whether any fit warned of non-convergence or diverged: a
    diverged fit is scored on the weights it kept, its last epoch before the divergence)."""
    from sklearn.exceptions import ConvergenceWarning

    from fastsoftmax import TrainingDivergedError

    accuracies, warned = [], False
    for X_train, X_test, y_train, y_test in splits(X, y):
        model = make()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                model.fit(X_train, y_train)
            except TrainingDivergedError:
                warned = True
        accuracies.append(model.score(X_test, y_test))
        warned |= any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(np.mean(accuracies)), warned


def main():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastsoftmax import SoftmaxRegression

    peers = {"LogisticRegression()": LogisticRegression,
             "before: lr=0.5": lambda: SoftmaxRegression(lr=0.5, batch_size=256),
             "now: defaults": SoftmaxRegression}
    print("| table | " + " | ".join(peers) + " | now - sklearn |")
    print("|---|" + "---:|" * (len(peers) + 1))
    for name, (X, y) in (toy() | synthetic()).items():
        results = [score(make, X, y) for make in peers.values()]
        cells = [f"{acc:.3f}{' (warned)' if warned else ''}" for acc, warned in results]
        print(f"| {name} | " + " | ".join(cells) + f" | {results[-1][0] - results[0][0]:+.3f} |")

    peers["StandardScaler + LogisticRegression()"] = lambda: make_pipeline(StandardScaler(), LogisticRegression())
    tables = grid()
    accuracy = {name: [score(make, X, y)[0] for X, y in tables.values()] for name, make in peers.items()}
    sklearn = np.array(accuracy.pop("LogisticRegression()"))
    print(f"\nbench/tables.py's grid of {len(tables)} tables, against LogisticRegression():\n")
    print("| | within 0.02 or above | mean difference | worst 3 |")
    print("|---|---:|---:|---|")
    for name, acc in accuracy.items():
        diff = np.array(acc) - sklearn
        worst = "; ".join(f"{list(tables)[i]} {diff[i]:+.3f}" for i in np.argsort(diff)[:3])
        print(f"| {name} | {np.sum(diff >= -0.02)} of {len(diff)} | {diff.mean():+.3f} | {worst} |")


if __name__ == "__main__":
    main()
