"""Peak memory of an SGD fit on a large CSR: 10^6 rows x 10^6 columns, 30 non-zeros a row (issue 25).

    python -m bench.sparse_memory [--rows 1000000] [--columns 1000000] [--per-row 30] [--classes 10]

The CSR is built directly (``synthetic``): indptr = arange(n + 1) * per_row,
uniform random int32 column indices (sorted within each row; a rare repeated
column is kept, and sums as scipy's product does), float32 values in [0.1, 1.1)
rescaled to unit-norm rows (as TF-IDF rows are), and labels from a planted random linear
model (``labels``). A child process builds it, then fits
``SoftmaxRegression(epochs=1)`` (the default SGD, one epoch) and reads its own
resident-set high-water mark (VmHWM in /proc/self/status), reset by writing 5
to /proc/self/clear_refs just before the fit, so the build's temporaries do not
count. Reported, all as resident memory above the child's baseline (Python,
NumPy, SciPy, scikit-learn and fastsoftmax imported and its kernels loaded, on
a tiny CSR, before the data is built):

- ``peak``: the fit's high-water mark, the caller's CSR and labels included;
- ``fit extra``: that peak less what the data held just before the fit;
- the budget: 2 x the CSR's own bytes (data + indices + indptr) + WEIGHT_COPIES
  float64 arrays of (batch + d) x k (the weights and their gradient, a few
  copies of each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WEIGHT_COPIES = 4  # the budget's O((batch + d) k): this many float64 (batch + d) x k arrays


def synthetic(n, d, per_row, k=10, seed=0, dtype=np.float32, signal=4.0, zipf=None):
    """(X, y): a scipy CSR (n, d) of per_row non-zeros a row, built directly, and labels 0..k-1 from a
    planted model (``labels``).

    zipf=None: columns drawn uniformly (a repeat within a row, rare, is kept). zipf=a: column j's
    frequency ~ 1 / rank(j)**a (ranks a random permutation), as words in text; the repeats within a row
    (common then) are summed (scipy's sum_duplicates), so rows hold per_row or fewer non-zeros and the
    density is somewhat below per_row / d (X.nnz says what it is). Rows have unit norm either way."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    nnz = n * per_row
    index = np.int32 if max(nnz, d) < 2**31 else np.int64
    indptr = np.arange(n + 1, dtype=index) * index(per_row)
    if zipf is None:
        indices = rng.integers(0, d, size=nnz, dtype=index)
    else:
        cdf = np.cumsum(1.0 / np.arange(1, d + 1) ** zipf)
        indices = rng.permutation(d).astype(index)[np.searchsorted(cdf, rng.random(nnz) * cdf[-1])]
    indices.reshape(n, per_row).sort(axis=1)
    data = rng.random(nnz, dtype=np.float32) + np.float32(0.1)
    if zipf is None:  # rows of per_row values: normalised in place
        rows = data.reshape(n, per_row)
        rows /= np.sqrt((rows * rows).sum(axis=1, keepdims=True))
    X = sp.csr_matrix((data.astype(dtype, copy=False), indices, indptr), shape=(n, d), copy=False)
    if zipf is not None:
        X.sum_duplicates()
        norms = np.sqrt(np.add.reduceat(X.data.astype(np.float64) ** 2, X.indptr[:-1]))
        X.data /= np.repeat(norms, np.diff(X.indptr)).astype(X.dtype)
    return X, labels(X, k, seed, signal)


def labels(X, k, seed=0, signal=4.0, chunk=200_000):
    """argmax over k classes of signal * X @ W + Gumbel noise, W (d, k) standard normal: a learnable rule
    (unit-norm rows give logits of about unit spread before `signal`), not a separable one."""
    rng = np.random.default_rng(seed + 1)
    W = rng.standard_normal((X.shape[1], k), dtype=np.float32)
    y = np.empty(X.shape[0], np.int64)
    for lo in range(0, X.shape[0], chunk):
        part = X[lo:lo + chunk]
        logits = signal * (part @ W) + rng.gumbel(size=(part.shape[0], k)).astype(np.float32)
        y[lo:lo + chunk] = logits.argmax(axis=1)
    return y


def csr_bytes(X):
    return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def rss():
    """This process's resident set now (bytes)."""
    return _status("VmRSS")


def trim():
    """Hand the C heap's free memory back to the system (glibc's malloc_trim), so that a fit cannot
    reuse what an earlier one freed without its peak showing; nothing where there is no glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak():
    """Reset this process's resident high-water mark (VmHWM) to its current resident set (Linux:
    /proc/self/clear_refs), the free heap trimmed first; False where the mark cannot be reset."""
    trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak():
    """This process's resident high-water mark (bytes) since the last reset_peak."""
    return _status("VmHWM")


def warm_up():
    """Load the SGD kernels for float32 CSR (from Numba's cache, or compiled) on a tiny problem."""
    import warnings

    from fastsoftmax import SoftmaxRegression

    X, y = synthetic(256, 64, 4, k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SoftmaxRegression(epochs=1).fit(X, y)


def child(n, d, per_row, k, seed):
    """The measurement, in this (fresh) process: a dict of bytes and seconds."""
    import gc
    import warnings

    from fastsoftmax import SoftmaxRegression, TrainingDivergedError

    warm_up()
    gc.collect()
    trim()
    baseline = rss()
    start = time.perf_counter()
    X, y = synthetic(n, d, per_row, k, seed)
    built = time.perf_counter() - start
    gc.collect()
    resettable = reset_peak()
    before = rss()
    model = SoftmaxRegression(epochs=1)
    start = time.perf_counter()
    diverged = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, y)
        except TrainingDivergedError as e:  # the epoch ran (its memory counts); the model kept its start
            diverged = str(e)
    seconds = time.perf_counter() - start
    high = peak() if resettable else None
    import resource

    return {"rows": n, "columns": d, "per_row": per_row, "classes": k, "nnz": int(X.nnz),
            "csr_bytes": csr_bytes(X), "labels_bytes": int(y.nbytes), "build_seconds": built,
            "baseline_rss": baseline, "before_fit_rss": before, "fit_peak_rss": high,
            "lifetime_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "fit_seconds": seconds, "batch_size": int(model.batch_size_), "lr": float(model.lr_),
            "coef_dtype": str(model.coef_.dtype), "diverged": diverged,
            "train_loss": float(model.history_[-1]["loss"]) if model.history_ else None,
            "train_acc": float(model.history_[-1]["train_acc"]) if model.history_ else None,
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}


def budget(record, copies=WEIGHT_COPIES):
    """2 x the CSR's bytes + `copies` float64 (batch + d) x k arrays."""
    weights = (record["batch_size"] + record["columns"]) * record["classes"] * 8
    return 2 * record["csr_bytes"] + copies * weights


def measure(n, d, per_row, k=10, seed=0, timeout=1800):
    """Run `child` in a fresh interpreter and return its record, with the derived figures."""
    command = [sys.executable, "-m", "bench.sparse_memory", "--child", "--rows", str(n), "--columns", str(d),
               "--per-row", str(per_row), "--classes", str(k), "--seed", str(seed)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({done.returncode}):\n{done.stderr[-4000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    if record["fit_peak_rss"] is not None:
        record["peak_above_baseline"] = record["fit_peak_rss"] - record["baseline_rss"]
        record["fit_extra"] = record["fit_peak_rss"] - record["before_fit_rss"]
    record["budget"] = budget(record)
    record["budget_rule"] = (f"2 x CSR bytes + {WEIGHT_COPIES} x 8 x (batch + d) x k "
                             f"(batch {record['batch_size']}, d {d}, k {k})")
    return record


def report(record):
    mb = 2**20
    lines = [f"SoftmaxRegression(epochs=1) on a {record['rows']:,} x {record['columns']:,} CSR, {record['per_row']} "
             f"non-zeros a row (float32 values, int32 indices), k = {record['classes']}: one epoch in "
             f"{record['fit_seconds']:.1f} s (batch {record['batch_size']}, "
             + (f"DIVERGED: {record['diverged']}" if record["diverged"] else f"train acc {record['train_acc']:.3f}")
             + ")",
             "",
             "| | MB |", "|---|---:|",
             f"| CSR's own bytes (data + indices + indptr) | {record['csr_bytes'] / mb:.0f} |",
             f"| labels (int64) | {record['labels_bytes'] / mb:.0f} |"]
    if record.get("fit_peak_rss") is not None:
        lines += [(f"| peak resident during the fit, above the baseline (data included) | "
                  f"{record['peak_above_baseline'] / mb:.0f} |"),
                  (f"| of which the fit's own (peak less the resident set just before fit) | "
                  f"{record['fit_extra'] / mb:.0f} |")]
    else:
        lines.append("| peak during the fit | not measurable here (/proc/self/clear_refs) |")
    lines += [f"| budget: {record['budget_rule']} | {record['budget'] / mb:.0f} |",
              f"| baseline resident set (imports, kernels loaded) | {record['baseline_rss'] / mb:.0f} |"]
    if record.get("fit_peak_rss") is not None:
        verdict = "within" if record["peak_above_baseline"] <= record["budget"] else "OVER"
        lines += ["", (f"peak / CSR bytes = {record['peak_above_baseline'] / record['csr_bytes']:.2f}; "
                      f"{verdict} the budget ({record['peak_above_baseline'] / record['budget']:.2f} of it)")]
    if record["warnings"]:
        lines += ["", "warnings: " + "; ".join(record["warnings"])]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--columns", type=int, default=1_000_000)
    p.add_argument("--per-row", type=int, default=30)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the record here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.rows, args.columns, args.per_row, args.classes, args.seed)))
        return 0
    record = measure(args.rows, args.columns, args.per_row, args.classes, args.seed)
    print(report(record))
    if args.json:
        from fastsoftmax.io.atomic import atomic_write

        with atomic_write(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
