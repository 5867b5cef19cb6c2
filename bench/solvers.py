"""Time to the optimum: each solver's objective against wall time, on one table, in one process.

    python -m bench.solvers --table fashion-mnist [--rows N] [--peers ...] [--out bench/results]

The objective is LogisticRegression's multinomial one at C: mean cross-entropy
+ ||coef||^2 / (2 C n), in float64. Every solver gets the same float64 arrays
and THREADS threads, one after another. A trajectory is [(seconds since the
fit started, the least objective the solver has computed by then)]:

- fastsoftmax lbfgs / newton-cg: the estimator's per-iteration callback (its
  seconds, its float64 objective); a solver it does not accept is skipped;
- scikit-learn lbfgs / newton-cg: every objective evaluation, seen by wrapping
  the function sklearn hands to scipy.optimize.minimize or _newton_cg for the
  fit (mock.patch.object): the same work, observed;
- scikit-learn-intelex and Snap ML take no callback: each is fitted from
  scratch at max_iter 5, 10, 20, ... until it converges or the budget is spent,
  a point per fit: (its wall time, the objective at its coef_), an honest "this
  solver reaches f in t seconds". Snap ML is one-vs-rest with its own
  objective: its points say where scikit-learn's objective lands.

f* is the least objective seen, a tight run's included (fastsoftmax's
newton-cg at tol=1e-10, else scikit-learn's), cached in --out by table, rows, C
and a digest of the data. The report gives when each solver first reaches
f* (1 + tol), tol in TOLERANCES.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import logging
import math
import time
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import numpy as np

import fastsoftmax as fs  # first: it loads libtbb so that Numba picks TBB, as in a user's fit; threads()
# would otherwise launch Numba's GNU OpenMP layer (fastsoftmax/backends/tbb.py: many times slower here)
from bench.bench_sparse import load_average
from bench.solvers_report import TOLERANCES, markdown, write_report

C = 1.0
THREADS = 2  # every solver's threads: BLAS, OpenMP, Numba, oneDAL, Snap ML
TOL, MAX_ITER, BUDGET = 1e-8, 1000, 300.0  # each solver's tol, max_iter and seconds
TIGHT = dict(tol=1e-10, max_iter=1000)
OPTIMA = "solvers-optimum.json"  # the tight runs' cache, in --out


@dataclass
class Table:
    name: str
    description: str
    X: object  # float64 ndarray or CSR
    y: np.ndarray  # int64 0..k-1
    X_test: object
    y_test: np.ndarray  # -1 for a class the training rows lack


def table(name, description, X, y, X_test, y_test, rows=None):
    """The Table of the first `rows` training rows, labels coded 0..k-1 by the training rows' classes."""
    X, y = (X, y) if rows is None else (X[:rows], y[:rows])
    classes = np.unique(y)
    code = {c: i for i, c in enumerate(classes)}
    return Table(name, f"{description}; {X.shape[0]} train rows x {X.shape[1]} features, {len(classes)} classes, "
                       f"{X_test.shape[0]} test rows", X, np.searchsorted(classes, y).astype(np.int64),
                 X_test, np.array([code.get(c, -1) for c in y_test], np.int64))


def fashion_mnist(rows=None):
    d = fs.load_dataset("fashion-mnist")
    return table("fashion-mnist", "Fashion-MNIST, pixels / 255 (float64)", d.x_train / 255.0, d.y_train,
                 d.x_test / 255.0, d.y_test, rows)


def dense(rows=None, n=51_000, d=256, k=58, seed=0):
    """Gaussian class centres (sd 0.07) plus correlated noise (covariance eigenvalues 1 .. 1/17 in a random
    basis): the classes overlap (nearest centre ~0.6 accurate), the features mildly ill-conditioned."""
    rng = np.random.default_rng(seed)
    y = rng.integers(k, size=n + n // 5)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = (rng.normal(size=(len(y), d)) * np.sqrt(1 / (1 + np.arange(d) / 16))) @ basis.T
    X += rng.normal(scale=0.07, size=(k, d))[y]
    return table(f"dense-{n // 1000}k-{d}-{k}", "synthetic dense: Gaussian centres + correlated noise",
                 X[:n], y[:n], X[n:], y[n:], rows)


def embed(rows=None, n=20_000, d=2048, k=1000, seed=0, rank=64):
    """Unit-norm rows around unit-norm class centres, the centres and most of the noise in one rank-64
    subspace (as embeddings concentrate): nearest centre ~0.7 accurate, 20 rows a class."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d)) / np.sqrt(d)
    centres = rng.normal(size=(k, rank)) @ basis
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(k, size=n + n // 5)
    X = centres[y] + 2.0 * rng.normal(size=(len(y), rank)) @ basis / np.sqrt(rank)
    X += 0.5 * rng.normal(size=X.shape) / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return table(f"embed-{n // 1000}k-{d}-{k}", "synthetic embeddings: unit-norm rows around class centres",
                 X[:n], y[:n], X[n:], y[n:], rows)


def tfidf(rows=None):
    from bench.textcorpus import load

    c = load()  # CorpusUnavailable off Debian
    return table("tfidf", f"TF-IDF CSR, {c.describe()}", c.X_train, c.y_train, c.X_test, c.y_test, rows)


TABLES = {"fashion-mnist": fashion_mnist, "dense-51k-256-58": dense, "embed-20k-2048-1000": embed, "tfidf": tfidf}


def objective(X, y, coef, intercept, C=C):
    """scikit-learn's multinomial objective in float64: mean cross-entropy + ||coef||^2 / (2 C n)."""
    coef = np.asarray(coef, np.float64)
    Z = np.asarray(X @ coef.T) + np.asarray(intercept, np.float64)
    Z -= Z.max(axis=1, keepdims=True)
    loss = np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y])
    return float(loss + (coef**2).sum() / (2 * C * len(y)))


# ---- trajectories ----


class OutOfTime(Exception):
    """The solver's budget is spent: its trajectory so far is its record (args: the model, where one is)."""


class Trace(list):
    """(seconds since the fit started, objective) of each objective the solver computed."""

    def __init__(self, budget=math.inf):
        super().__init__()
        self.budget, self.start = budget, time.perf_counter()

    def add(self, f, seconds=None, check=True):
        t = time.perf_counter() - self.start if seconds is None else float(seconds)
        self.append((t, float(f)))
        if check and t > self.budget:
            raise OutOfTime

    def callback(self, model, record):
        """SoftmaxRegression's callback: its own seconds and float64 objective."""
        self.add(record["loss"], record["seconds"])


def best_so_far(points):
    """The points in time order, each objective the least seen by then (non-increasing)."""
    out, best = [], math.inf
    for t, f in sorted(points):
        best = min(best, f)
        out.append((t, best))
    return out


def time_to(points, f_star, tol):
    """The first time at which the objective is <= f_star (1 + tol), or None where it never is."""
    return next((t for t, f in sorted(points) if f <= f_star * (1 + tol)), None)


@contextmanager
def recording(owner, name, parameter, trace):
    """owner.name, for the block, hands trace each value of the function passed to it as `parameter`."""
    original = getattr(owner, name)
    signature = inspect.signature(original)

    def observed(fn):
        def f(*args, **kwargs):
            out = fn(*args, **kwargs)
            trace.add(out[0] if isinstance(out, tuple) else out)  # loss_gradient returns (loss, gradient)
            return out

        return f

    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.arguments[parameter] = observed(bound.arguments[parameter])
        return original(*bound.args, **bound.kwargs)

    with mock.patch.object(owner, name, wrapper):
        yield


# ---- peers: fit(X, y, C, tol, max_iter, trace) -> the fitted model ----


def fastsoftmax(solver):
    def fit(X, y, C, tol, max_iter, trace):
        from fastsoftmax import SoftmaxRegression

        model = SoftmaxRegression(solver=solver, C=C, tol=tol, max_iter=max_iter, device="cpu")
        trace.start = time.perf_counter()
        try:
            return model.fit(X, y, callback=trace.callback)
        except OutOfTime:
            model.n_iter_ = len(trace)  # coef_ is the last published iterate
            raise OutOfTime(model) from None

    return fit


def sklearn(solver):
    def fit(X, y, C, tol, max_iter, trace):
        from sklearn.linear_model import LogisticRegression, _logistic

        where = (_logistic.optimize, "minimize", "fun") if solver == "lbfgs" else (_logistic, "_newton_cg", "func")
        with recording(*where, trace):
            trace.start = time.perf_counter()
            return LogisticRegression(solver=solver, C=C, tol=tol, max_iter=max_iter).fit(X, y)

    return fit


def refits(make):
    """fit() from scratch at max_iter 5, 10, 20, ... <= max_iter, a point per fit, until one converges
    (n_iter_ < its max_iter) or the next (about twice as long) would overrun the budget."""

    def fit(X, y, C, tol, max_iter, trace):
        model, iterations = None, 5
        while iterations <= max_iter:
            start = time.perf_counter()
            model = make(C, tol, iterations).fit(X, y)
            seconds = time.perf_counter() - start
            trace.add(objective(X, y, model.coef_, model.intercept_, C), seconds, check=False)
            if np.max(model.n_iter_) < iterations or time.perf_counter() - trace.start + 2 * seconds > trace.budget:
                break
            iterations *= 2
        return model

    fit.refits = True
    return fit


def intelex(C, tol, max_iter):
    """sklearnex's LogisticRegression: on CPU oneDAL's objective in SciPy's L-BFGS-B; sparse X (and newton-cg,
    unless SKLEARNEX_PREVIEW is set) falls back to scikit-learn's code, as its log records."""
    from sklearnex.linear_model import LogisticRegression

    return LogisticRegression(C=C, tol=tol, max_iter=max_iter, n_jobs=THREADS)


def snapml(C, tol, max_iter):
    """Snap ML's one-vs-rest logistic regression (coef_ (k, d), intercept_ (k,)), its penalty 1 / C."""
    import snapml

    return snapml.LogisticRegression(regularizer=1 / C, fit_intercept=True, tol=tol, max_iter=max_iter,
                                     n_jobs=THREADS)


PEERS = {"fastsoftmax lbfgs": fastsoftmax("lbfgs"), "fastsoftmax newton-cg": fastsoftmax("newton-cg"),
         "sklearn lbfgs": sklearn("lbfgs"), "sklearn newton-cg": sklearn("newton-cg"),
         "sklearnex lbfgs": refits(intelex), "snapml": refits(snapml)}


@contextmanager
def intelex_log(said):
    """sklearnex's log lines (accelerated, or fallback to scikit-learn) into the set `said`, not the console."""
    logger = logging.getLogger("sklearnex")
    saved = logger.handlers, logger.level, logger.propagate
    handler = logging.Handler()
    handler.emit = lambda r: said.add(r.getMessage().strip())
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)  # setLevel, not .level: it clears the logger's cache
    try:
        yield
    finally:
        logger.handlers, _, logger.propagate = saved
        logger.setLevel(saved[1])


def warm(peer, t, C=C):
    """A five-iteration fit on 300 rows of t loads the peer's code (kernels compiled, libraries imported), as
    an application's second fit finds it. The reason the peer cannot run here, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = np.unique(t.y[:300], return_inverse=True)[1]  # 0..k-1 again: a slice may lack classes
            PEERS[peer](t.X[:300], y, C, 1e-4, 5, Trace())
    except ImportError as e:
        return f"not installed ({e})"
    except Exception as e:  # a solver not accepted (ValueError), an input refused: the peer is skipped
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None


def run_peer(peer, t, C=C, tol=TOL, max_iter=MAX_ITER, budget=BUDGET):
    """One solver's record on t: trajectory, seconds, iterations, final objective, test accuracy, warnings."""
    trace, said, model, stopped = Trace(budget), set(), None, None
    gc.collect()
    with warnings.catch_warnings(record=True) as caught, intelex_log(said):
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            model = PEERS[peer](t.X, t.y, C, tol, max_iter, trace)
        except OutOfTime as e:
            model, stopped = (e.args or [None])[0], f"budget of {budget:g} s"
        seconds = time.perf_counter() - start
    r = {"trajectory": best_so_far(trace), "evaluations": len(trace), "seconds": seconds, "stopped": stopped,
         "objective": min(f for _, f in trace) if trace else None, "n_iter": None, "test_acc": None,
         "objective_check": None, "refits": getattr(PEERS[peer], "refits", False), "sklearnex_log": sorted(said),
         "warnings": sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught})}
    if getattr(model, "coef_", None) is not None:
        coef, intercept = np.asarray(model.coef_, np.float64), np.asarray(model.intercept_, np.float64)
        final = objective(t.X, t.y, coef, intercept, C)
        if trace:  # the values recorded are this objective: the last is the final model's
            r["objective_check"] = abs(trace[-1][1] - final) / final
        predicted = np.asarray(t.X_test @ coef.T + intercept).argmax(axis=1)
        r.update(objective=min(final, r["objective"] or math.inf), n_iter=int(np.max(model.n_iter_)),
                 test_acc=float(np.mean(predicted == t.y_test)), coef_shape=list(coef.shape))
    return r


# ---- the optimum and the run ----


def tight_optimum(t, C=C, cache=None):
    """One long tight run on t (fastsoftmax's newton-cg, or scikit-learn's where ours cannot run): its
    objective, solver and seconds; read from, or added to, the json `cache` where given."""
    digest = hashlib.sha1(np.ascontiguousarray(t.y).tobytes() + repr((t.X.shape, float(t.X.sum()))).encode())
    key = f"{t.name}|rows={t.X.shape[0]}|C={C:g}|{digest.hexdigest()[:16]}"
    cached = json.loads(Path(cache).read_text()) if cache and Path(cache).exists() else {}
    if key in cached:
        return {**cached[key], "cached": True}
    peer = "fastsoftmax newton-cg" if warm("fastsoftmax newton-cg", t, C) is None else "sklearn newton-cg"
    r = run_peer(peer, t, C, budget=math.inf, **TIGHT)
    entry = {"objective": r["objective"], "solver": peer, "seconds": r["seconds"], "n_iter": r["n_iter"], **TIGHT,
             "date": f"{datetime.now():%Y-%m-%d}"}
    if cache:
        from fastsoftmax.io.atomic import atomic_write

        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(cache), "w") as f:
            json.dump({**cached, key: entry}, f, indent=1)
    return {**entry, "cached": False}


def settle(results):
    """f* (the least objective seen, the tight run's included) and each solver's time to each tolerance."""
    ran = [r for r in results["solvers"].values() if "skipped" not in r]
    seen = [r["objective"] for r in ran if r["objective"] is not None]  # each the least of its trajectory
    results["f_star"] = min([results["optimum"]["objective"], *seen])
    for r in ran:
        r["time_to"] = {f"{tol:g}": time_to(r["trajectory"], results["f_star"], tol) for tol in TOLERANCES}
    return results


@contextmanager
def threads(n=THREADS):
    """The BLAS and OpenMP pools (threadpoolctl) and Numba at n threads for the block: no solver has more."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(n):
            yield
    finally:
        numba.set_num_threads(before)


def begin(t, C=C, tol=TOL, max_iter=MAX_ITER, budget=BUDGET, cache=None):
    """The results before any solver: the run's settings, the machine, its load, and the tight optimum."""
    import importlib.metadata as md

    from bench.bench_sparse import machine

    results = {"table": t.name, "description": t.description, "rows": int(t.X.shape[0]), "C": C, "tol": tol,
               "max_iter": max_iter, "budget_s": budget, "threads": THREADS, "tolerances": list(TOLERANCES),
               "datetime": datetime.now().isoformat(timespec="seconds"), "load_before": load_average(),
               "machine": machine(), "solvers": {}}  # the thread pools as limited where this runs
    for name in ("scikit-learn-intelex", "snapml"):
        with suppress(md.PackageNotFoundError):
            results["machine"]["versions"][name] = md.version(name)
    results["optimum"] = tight_optimum(t, C, cache)
    return results


def run(t, peers=tuple(PEERS), C=C, tol=TOL, max_iter=MAX_ITER, budget=BUDGET, cache=None):
    """Every peer on t, one after another at THREADS threads (warmed first, or skipped with the reason); f*
    and the times to it: the results."""
    with threads():
        results = begin(t, C, tol, max_iter, budget, cache)
        for peer in peers:
            reason = warm(peer, t, C)
            r = results["solvers"][peer] = {"skipped": reason} if reason else run_peer(peer, t, C, tol, max_iter,
                                                                                      budget)
            print(f"{peer}: " + (reason or f"{r['seconds']:.2f} s, objective {r['objective']:.10f}"), flush=True)
    results["load_after"] = load_average()
    return settle(results)


def main(argv=None):
    from bench.textcorpus import CorpusUnavailable

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, choices=list(TABLES))
    p.add_argument("--rows", type=int, help="the first N training rows only (quick runs)")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--C", type=float, default=C)
    p.add_argument("--tol", type=float, default=TOL)
    p.add_argument("--max-iter", type=int, default=MAX_ITER)
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds a solver")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--name", help="file name stem (default: <date>-cpu-<N>core-solvers-<table>)")
    args = p.parse_args(argv)
    try:
        t = TABLES[args.table](args.rows)
    except (CorpusUnavailable, fs.DatasetNotFoundError, OSError) as e:
        p.exit(0, f"skipping {args.table}: {e}\n")
    print(t.description, flush=True)
    results = run(t, args.peers, args.C, args.tol, args.max_iter, args.budget, args.out / OPTIMA)
    paths = write_report(results, args.out, args.name)
    print(markdown(results) + "\nwrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
