"""The sparse group (issue 25): SoftmaxRegression against LogisticRegression on the same CSR.

    python -m bench.bench_sparse [--datasets tfidf synthetic-1e5 synthetic-1e6] [--out bench/results]

For each data set, in one process, one after another on the same float64 CSR
(the dtype LogisticRegression's lbfgs computes in; fastsoftmax's lbfgs then
computes in float64 too): LogisticRegression(solver="lbfgs") and
(solver="saga"), SoftmaxRegression(solver="lbfgs"), all with C=1 and the same
tol and max_iter, and the default SoftmaxRegression() (SGD). Per fit:

- seconds: the whole fit's wall time (fastsoftmax's kernels loaded beforehand by
  a fit on a tiny CSR, as an application's second fit finds them);
- objective: scikit-learn's, the mean log-loss + ||W||^2 / (2 C n) on the
  training rows, computed here in float64 for every model alike (SGD minimises
  another objective: its figure says where it lands);
- to target: the wall time at which SoftmaxRegression(solver="lbfgs") first
  reaches LogisticRegression(solver="lbfgs")'s final objective (relative slack
  1e-7), from its per-iteration callback (history_'s penalised loss, checked
  against this file's objective at the end); where it stops at the same tol
  above the target, a second fit at tol / 1000 gives the time;
- test accuracy, ConvergenceWarnings and other warnings;
- peak memory: the rise of the process's resident set during the fit (VmHWM,
  reset by /proc/self/clear_refs before each fit, less the resident set just
  before it): NumPy, SciPy, Numba and scikit-learn's native buffers alike, which
  tracemalloc would not all see.

Then, on the first --converged-rows training rows (and the columns they use),
both lbfgs fits at tol=1e-10 (max_iter 5000): the largest coefficient
difference relative to scikit-learn's largest coefficient (issue 25's target:
<= 1e-3).

Data sets: ``tfidf``, Debian's package descriptions by section (bench/textcorpus.py);
``synthetic-1e5``: 100,000 rows x 100,000 columns at up to 0.1% (100 draws a
row); ``synthetic-1e6``: 50,000 rows x 1,000,000 columns at up to 0.01%; both
with Zipf column frequencies (a column drawn twice in a row is summed, so the
density is somewhat lower: the description gives it), unit-norm rows, labels of
10 classes from a planted linear model (bench/sparse_memory.py's
``synthetic``), 80/20 split. Prints markdown tables
and writes <out>/<date>-cpu-<N>core-sparse.{json,md}, with the machine, its
load, the thread pools (threadpoolctl) and Numba's threading layer.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.sparse_memory import peak, reset_peak, rss, synthetic

C = 1.0
TOL = 1e-4  # LogisticRegression's default
MAX_ITER = 100  # LogisticRegression's default
SLACK = 1e-7  # "reached": objective <= target * (1 + SLACK)
ZIPF = 1.0  # the synthetic sets' column frequencies ~ 1 / rank: learnable (uniform columns, each seen ~80
# times, left a planted 10-class model at 0.24 test accuracy), as words in text are
PEERS = ("sklearn lbfgs", "sklearn saga", "fastsoftmax lbfgs", "fastsoftmax sgd")


@dataclass
class Data:
    name: str
    description: str
    X_train: object  # scipy CSR, float64
    y_train: np.ndarray
    X_test: object
    y_test: np.ndarray


def tfidf(seed=0):
    from bench.textcorpus import load

    corpus = load(seed=seed)
    return Data("tfidf", corpus.describe(), corpus.X_train, corpus.y_train, corpus.X_test, corpus.y_test)


def planted(name, n, d, per_row, k=10, seed=0, test=0.2, zipf=ZIPF):
    """A synthetic float64 CSR (sparse_memory.synthetic, Zipf column frequencies), its first 1 - test of
    the rows to train on."""
    X, y = synthetic(n, d, per_row, k, seed, dtype=np.float64, zipf=zipf)
    cut = int(n * (1 - test))
    return Data(name, f"synthetic CSR {cut} train + {n - cut} test rows x {d} columns, {X.nnz / n:.1f} non-zeros a "
                      f"row ({X.nnz / n / d:.3%} density; column frequencies Zipf {zipf}), float64, unit-norm rows, "
                      f"{k} classes from a planted linear model", X[:cut], y[:cut], X[cut:], y[cut:])


DATASETS = {
    "tfidf": tfidf,
    "synthetic-1e5": lambda: planted("synthetic-1e5", 100_000, 100_000, 100),
    "synthetic-1e6": lambda: planted("synthetic-1e6", 50_000, 1_000_000, 100),
}


def log_loss(X, y, classes, coef, intercept):
    """The mean cross-entropy of the model (coef (k, d), intercept (k,)) on (X, y), in float64."""
    Z = np.asarray(X @ np.asarray(coef, np.float64).T) + np.asarray(intercept, np.float64)
    Z -= Z.max(axis=1, keepdims=True)
    index = np.searchsorted(classes, y)
    return float(np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), index]))


def objective(X, y, classes, coef, intercept, C=C):
    """scikit-learn's multinomial objective in float64: mean log-loss + ||coef||^2 / (2 C n)."""
    coef = np.asarray(coef, np.float64)
    return log_loss(X, y, classes, coef, intercept) + float((coef**2).sum() / (2 * C * len(y)))


def estimators(tol=TOL, max_iter=MAX_ITER):
    """{name: make(trace)}: each peer's estimator; fastsoftmax's lbfgs appends (seconds, objective) to
    trace after each iteration, seconds counted from trace's start time (trace.start)."""
    from sklearn.linear_model import LogisticRegression

    from fastsoftmax import SoftmaxRegression

    def fs_lbfgs(trace, tol=tol):
        return SoftmaxRegression(solver="lbfgs", C=C, tol=tol, max_iter=max_iter), trace.callback

    return {
        "sklearn lbfgs": lambda trace: (LogisticRegression(C=C, tol=tol, max_iter=max_iter), None),
        "sklearn saga": lambda trace: (LogisticRegression(solver="saga", C=C, tol=tol, max_iter=max_iter), None),
        "fastsoftmax lbfgs": fs_lbfgs,
        "fastsoftmax sgd": lambda trace: (SoftmaxRegression(), None),
    }


class Trace(list):
    """(seconds since start, objective) per lbfgs iteration, from SoftmaxRegression's callback."""

    start = 0.0

    def callback(self, model, record):
        self.append((time.perf_counter() - self.start, float(record["loss"])))


def fit(make, X, y):
    """(model, seconds, peak bytes above the resident set before the fit or None, warnings, trace)."""
    trace = Trace()
    model, callback = make(trace)
    gc.collect()
    resettable = reset_peak()
    before = rss()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace.start = time.perf_counter()
        model.fit(X, y) if callback is None else model.fit(X, y, callback=callback)
        seconds = time.perf_counter() - trace.start
    rise = peak() - before if resettable else None
    said = [f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught]
    return model, seconds, rise, said, trace


def reached(trace, target):
    """The first time in trace at which the objective is within SLACK of target, or None."""
    return next((t for t, f in trace if f <= target * (1 + SLACK)), None)


def warm_up():
    """Load fastsoftmax's kernels for float64 CSR (both solvers) on a tiny problem."""
    from fastsoftmax import SoftmaxRegression

    X, y = synthetic(300, 50, 5, k=3, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("lbfgs", "sgd"):
            model = SoftmaxRegression(solver=solver, max_iter=3) if solver == "lbfgs" else SoftmaxRegression(epochs=1)
            model.fit(X, y).score(X, y)


def run_dataset(data, names=PEERS, tol=TOL, max_iter=MAX_ITER):
    """{peer: record} for one data set, the peers fitted one after another in this process."""
    makes = estimators(tol, max_iter)
    records = {}
    for name in names:
        model, seconds, rise, said, trace = fit(makes[name], data.X_train, data.y_train)
        coef, intercept = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
        record = {"seconds": seconds, "n_iter": int(np.ravel(model.n_iter_)[0]),
                  "objective": objective(data.X_train, data.y_train, model.classes_, coef, intercept),
                  "test_acc": float(model.score(data.X_test, data.y_test)),
                  "test_log_loss": log_loss(data.X_test, data.y_test, model.classes_, coef, intercept),
                  "peak_rise_bytes": rise, "warnings": said}
        if trace:
            record["trace"] = trace
            record["history_objective"] = trace[-1][1]
        records[name] = record
        del model
    if "sklearn lbfgs" in records and "fastsoftmax lbfgs" in records:
        records["fastsoftmax lbfgs"].update(to_target(data, records, makes["fastsoftmax lbfgs"], tol))
    return records


def to_target(data, records, make, tol):
    """When fastsoftmax's lbfgs reaches scikit-learn lbfgs's objective: from its own trace, or from a fit at
    tol / 1000 where the same tol stopped above it."""
    target = records["sklearn lbfgs"]["objective"]
    ours = records["fastsoftmax lbfgs"]
    found = {"target": target, "seconds_to_target": reached(ours["trace"], target), "target_from": "same tol"}
    if found["seconds_to_target"] is None:
        _, _, _, _, trace = fit(lambda trace: make(trace, tol=tol / 1000), data.X_train, data.y_train)
        found.update(seconds_to_target=reached(trace, target), target_from=f"tol={tol / 1000:g} fit")
    if found["seconds_to_target"] is not None:
        found["speedup_to_target"] = records["sklearn lbfgs"]["seconds"] / found["seconds_to_target"]
    return found


def converged(data, rows, tol=1e-10, max_iter=5000):
    """Both lbfgs fits on the first `rows` training rows at a tight tol: the relative coefficient
    difference (max |ours - theirs| / max |theirs|), with each one's iterations, seconds and warnings."""
    from sklearn.linear_model import LogisticRegression

    from fastsoftmax import SoftmaxRegression

    X, y = data.X_train[:rows], data.y_train[:rows]
    # Only the columns these rows use: an unused column's coefficients are 0 at the optimum for both (only
    # the penalty acts on them), and L-BFGS's vectors shrink from k x 10^6 to k x (columns used).
    X = X[:, np.unique(X.indices)]
    out = {"rows": int(X.shape[0]), "columns_used": int(X.shape[1]), "tol": tol, "max_iter": max_iter}
    coefs = {}
    for name, make in (("sklearn", lambda: LogisticRegression(C=C, tol=tol, max_iter=max_iter)),
                       ("fastsoftmax", lambda: SoftmaxRegression(solver="lbfgs", C=C, tol=tol, max_iter=max_iter))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            model = make().fit(X, y)
            seconds = time.perf_counter() - start
        coefs[name] = np.asarray(model.coef_, np.float64)
        out[name] = {"seconds": seconds, "n_iter": int(np.ravel(model.n_iter_)[0]),
                     "objective": objective(X, y, model.classes_, model.coef_, model.intercept_),
                     "warnings": [f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught]}
    theirs = coefs["sklearn"]
    out["coef_relative_difference"] = float(np.abs(coefs["fastsoftmax"] - theirs).max() / np.abs(theirs).max())
    return out


# ---- the record ----


def machine():
    """The machine, its load and the thread pools that ran (threadpoolctl; Numba's layer and threads)."""
    import importlib.metadata as md

    import numba
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    versions = {}
    for name in ("fastsoftmax", "numpy", "scipy", "scikit-learn", "numba"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    pools = [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "threading_layer")}
             for pool in threadpool_info()]
    return {"cpu_model": cpu, "cores": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "numba_threading_layer": layer, "threadpools": pools, "versions": versions}


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return None


def _mb(b):
    return "—" if b is None else f"{b / 2**20:.0f}"


def table(data, records, conv=None):
    lines = [f"**{data.name}**: {data.description}", "",
             ("| peer | seconds | iterations | objective | to lbfgs's objective | test acc | test log-loss | peak rise MB "
             "| warnings |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    target = records.get("sklearn lbfgs", {}).get("objective")
    for name, r in records.items():
        if name == "fastsoftmax lbfgs" and "seconds_to_target" in r:
            t = r["seconds_to_target"]
            to = "not reached" if t is None else f"{t:.2f} s ({r['speedup_to_target']:.1f}x; {r['target_from']})"
        elif name == "sklearn lbfgs":
            to = f"{r['seconds']:.2f} s (its own)"
        elif target is not None and name != "fastsoftmax sgd":
            to = "reached" if r["objective"] <= target * (1 + SLACK) else f"not reached ({r['objective'] - target:+.2e})"
        else:
            to = "—"
        said = "; ".join(sorted({w.split(":")[0] for w in r["warnings"]})) or "none"
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['n_iter']} | {r['objective']:.8f} | {to} | "
                     f"{r['test_acc']:.4f} | {r['test_log_loss']:.4f} | {_mb(r['peak_rise_bytes'])} | {said} |")
    if conv is not None:
        lines += ["", f"Converged run ({conv['rows']} rows, the {conv['columns_used']} columns they use, "
                      f"tol={conv['tol']:g}, max_iter={conv['max_iter']}): "
                      f"max |coef difference| / max |sklearn coef| = {conv['coef_relative_difference']:.2e}; "
                      + "; ".join(f"{p} {conv[p]['n_iter']} iterations, {conv[p]['seconds']:.1f} s, objective "
                                  f"{conv[p]['objective']:.10f}"
                                  + (f", {len(conv[p]['warnings'])} warning(s)" if conv[p]["warnings"] else "")
                                  for p in ("sklearn", "fastsoftmax"))]
    return "\n".join(lines)


def header(info, loads):
    pools = ", ".join(f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)" for p in info["threadpools"])
    return (f"Measured {datetime.now():%Y-%m-%d} on {info['cpu_model']}, {info['cores']} cores; Numba "
            f"{info['numba_threading_layer']} layer, {info['numba_threads']} threads; thread pools: {pools}. "
            f"Load average (1 min) at the start and end of each data set: {', '.join(f'{n} {l}' for n, l in loads.items())}. "
            f"C={C:g}; tol and max_iter as LogisticRegression's defaults ({TOL:g}, {MAX_ITER}) for every "
            "lbfgs/saga fit; SoftmaxRegression() (SGD) at its defaults. Each peer ran once, one after another, "
            "in one process, on the same float64 CSR.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--converged-rows", type=int, default=10_000,
                   help="rows of the tight-tol coefficient comparison (0: skip it)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--name", help="file name stem (default: <date>-cpu-<N>core-sparse)")
    args = p.parse_args(argv)
    from bench.textcorpus import CorpusUnavailable

    warm_up()
    results, tables, loads = {}, [], {}
    for name in args.datasets:
        try:
            data = DATASETS[name]()
        except CorpusUnavailable as e:
            print(f"skipping {name}: {e}")
            continue
        average = load_average()
        loads[name] = average[0] if average else float("nan")
        print(f"{name}: {data.description}; load {loads[name]:.2f}", flush=True)
        records = run_dataset(data, args.peers)
        conv = converged(data, args.converged_rows) if args.converged_rows else None
        average = load_average()
        results[name] = {"description": data.description, "load_1min": loads[name], "peers": records,
                         "converged": conv, "load_1min_end": average[0] if average else None}
        if average:
            loads[name] = f"{loads[name]:.2f} (end {average[0]:.2f})"
        tables.append(table(data, records, conv))
        print(tables[-1] + "\n", flush=True)
        del data
    info = machine()
    text = header(info, loads) + "\n\n" + "\n\n".join(tables) + "\n"
    print(text)
    stem = args.out / (args.name or f"{datetime.now():%Y-%m-%d}-cpu-{info['cores']}core-sparse")
    args.out.mkdir(parents=True, exist_ok=True)
    from fastsoftmax.io.atomic import atomic_write

    with atomic_write(stem.with_suffix(".json"), "w") as f:
        json.dump({"datetime": datetime.now().isoformat(timespec="seconds"), "machine": info, "C": C, "tol": TOL,
                   "max_iter": MAX_ITER, "slack": SLACK, "datasets": results}, f, indent=1)
    with atomic_write(stem.with_suffix(".md"), "w") as f:
        f.write(text)
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
