"""Softmax regression on Dask arrays: the fused kernel on every chunk, one optimiser on the client.

The design of cuML's multi-GPU and Spark MLlib's logistic regression: for
``solver="lbfgs"`` each gradient pass maps ``ops.linear_softmax_cross_entropy``
over X's row chunks where they lie (only W and b travel out; each chunk's
(loss, hits, dW, db) sums come back, added by a tree of tasks), and one
L-BFGS (fastsoftmax.solvers.lbfgs) runs on the client. ``solver="sgd"`` visits
the chunks in order, each loaded onto the client and trained as
``partial_fit`` would: sequential by nature. predict, predict_proba and
score map the model over the chunks, lazily.

Dask is an optional extra: this module imports it only inside the functions
that need it, and ``is_dask`` tells a Dask collection from others without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np

from .backend import array_module, resolve_device
from .solvers import fused_gradient as in_memory_gradient
from .validation import FEATURE_DTYPES

__all__ = ["accuracy", "connect", "fit_blocks", "fused_gradient", "is_dask", "map_rows", "moments",
           "parse_scheduler", "persist", "training_data"]

# --dask local:N starts at most this many worker processes per core.
WORKERS_PER_CORE = 4
# The chunks' gradient sums are added SUM_EVERY at a time (dask.array's split_every).
SUM_EVERY = 8


def is_dask(a) -> bool:
    """True for a Dask collection (array, DataFrame), checked without importing Dask."""
    return type(a).__module__.split(".")[0] in ("dask", "dask_expr")


def _dask():
    """dask.array, or ImportError naming the extra to install."""
    try:
        import dask.array
    except ImportError:
        raise ImportError("Dask arrays need Dask: install it with `pip install fastsoftmax[dask]`") from None
    return dask.array


def training_data(X, y):
    """(X, y, labels): X a Dask array checked and chunked by rows only, y a Dask array on X's row chunks,
    and y's distinct labels (host), computed in one pass with X's finiteness.

    X keeps uint8, float32 and float64; other numbers become float64 chunk by
    chunk (as scikit-learn's check_array does).
    """
    da = _dask()
    import dask

    if not isinstance(X, da.Array):
        raise TypeError(f"X is a {type(X).__name__}; pass a Dask array (of a DataFrame: "
                        "X.to_dask_array(lengths=True))")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has chunks of unknown size; call X.compute_chunk_sizes() first")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least 1 row and 1 feature, got shape {X.shape}")
    if X.dtype not in FEATURE_DTYPES:
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X has dtype {X.dtype}; it must hold numbers (uint8, float32 and float64 are used "
                            "as they are)")
        X = X.astype(np.float64)
    if X.numblocks[1] > 1:  # the kernels read whole rows
        X = X.rechunk({1: -1})
    y = y if isinstance(y, da.Array) else np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},), one label per row, got {y.shape}")
    if isinstance(y, da.Array):
        y = y.rechunk((X.chunks[0],))
        labels = da.unique(y)
    else:  # labels in memory are found here, not sent to the workers for it
        labels, y = np.unique(y), da.from_array(y, chunks=(X.chunks[0],))
    finite = da.isfinite(X).all() if X.dtype.kind == "f" else True
    labels, finite = dask.compute(labels, finite)
    if not finite:
        raise ValueError("Input X contains NaN or infinity; remove or impute those rows first")
    return X, y, labels


def persist(a):
    """a computed and held where Dask keeps results (a cluster's workers): sent and computed once, not
    on every pass. Host arrays wrapped by from_array travel in the graph, once: Dask's warning about a
    large graph is expected then, and not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        return a.persist()


def fused_gradient(X, y, x_scale, dtype, device):
    """gradient(W, bias) for solvers.lbfgs over a Dask X and its encoded y: one pass over the chunks.

    Each chunk's task runs the fused kernel on `device` (a NumPy chunk moves to
    the worker's GPU for "cuda") and returns the host float64 vector of its
    sums, which a tree of tasks adds, SUM_EVERY at a time. W and bias enter
    the graph once, as one key each, not once per chunk. Plain Dask tasks, not
    array operations: the array layer's graph building cost 30 ms a pass.
    """
    import dask

    pairs = list(zip(X.to_delayed().ravel(), y.to_delayed().ravel()))
    chunk_sums, add = dask.delayed(_chunk_sums, pure=True), dask.delayed(_add, pure=True)
    n = X.shape[0]

    def gradient(W, bias):
        weights = dask.delayed(W.astype(dtype)), dask.delayed(bias.astype(dtype))
        sums = [chunk_sums(xb, yb, *weights, x_scale, device) for xb, yb in pairs]
        while len(sums) > 1:
            sums = [add(*sums[i:i + SUM_EVERY]) for i in range(0, len(sums), SUM_EVERY)]
        total = sums[0].compute(optimize_graph=False)  # the chunks' tasks were optimised by to_delayed
        total[:-1] /= n  # the mean loss's gradient and the mean loss; the hits stay a count
        return total

    return gradient


def _add(*vectors):
    return np.sum(vectors, axis=0)


def _chunk_sums(X, y, W, bias, x_scale, device):
    """One chunk's sums of the gradient, of the loss and its hits, as a host float64 vector."""
    xp = array_module(resolve_device(device))
    means = in_memory_gradient(xp, xp.asarray(X), xp.asarray(y), x_scale, W.dtype)(W, bias)
    sums = means.astype(np.float64)
    sums[:-1] *= X.shape[0]
    return sums


def moments(X):
    """Each feature's mean and standard deviation over a Dask X's rows: host float64 (d,) arrays, one pass."""
    import dask

    return dask.compute(X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64))


def fit_blocks(X, y, xp, transform=None):
    """solvers.sgd's blocks: each chunk's (rows, load), load() computing that chunk onto xp's device
    (and its X through transform(xp, X), where given)."""
    import dask

    def loader(xb, yb):
        def load():
            X_chunk, y_chunk = (xp.ascontiguousarray(xp.asarray(a)) for a in dask.compute(xb, yb))
            return (X_chunk if transform is None else transform(xp, X_chunk)), y_chunk
        return load

    return [(rows, loader(xb, yb)) for rows, xb, yb in zip(X.chunks[0], X.to_delayed().ravel(),
                                                           y.to_delayed().ravel())]


def map_rows(method, X, columns, dtype):
    """method (a fitted model's predict_proba, predict, ...) over X's row chunks, lazily.

    columns: the width of method's result, or 0 for one value per row.
    """
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if columns:
        return X.map_blocks(method, dtype=dtype, chunks=(X.chunks[0], (columns,)))
    return X.map_blocks(method, dtype=dtype, drop_axis=1)


def accuracy(predicted, y, sample_weight=None):
    """The (weighted) fraction of rows where the lazy predicted labels equal y, computed."""
    da = _dask()
    hits = predicted == (y if isinstance(y, da.Array) else da.from_array(np.asarray(y), chunks=predicted.chunks))
    if sample_weight is None:
        return float(hits.mean().compute())
    return float(da.average(hits, weights=sample_weight).compute())


def parse_scheduler(text: str) -> str:
    """--dask's word: a scheduler address, or local:N with 1 <= N <= WORKERS_PER_CORE per core."""
    if text.startswith("local:"):
        limit = WORKERS_PER_CORE * (os.cpu_count() or 1)
        count = text.removeprefix("local:")
        if not (count.isdigit() and 1 <= int(count) <= limit):
            raise ValueError(f"--dask local:N takes a worker count N from 1 to {limit} "
                             f"({WORKERS_PER_CORE} per core), got {text!r}")
        return f"local:{int(count)}"
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"--dask takes a scheduler address (tcp://host:8786) or local:N, got {text!r}")
    return text


@contextlib.contextmanager
def connect(scheduler: str):
    """A dask.distributed Client for parse_scheduler's word, closed (with its LocalCluster) on exit.

    local:N starts N worker processes sharing the cores, each running Numba
    on its share of them (NUMBA_NUM_THREADS), so workers do not oversubscribe.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--dask needs Dask's distributed scheduler: install it with "
                          "`pip install fastsoftmax[dask]`") from None
    if not scheduler.startswith("local:"):
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise OSError(f"could not reach the Dask scheduler at {scheduler}: {e}") from None
        with client:
            yield client
        return
    workers = int(scheduler.removeprefix("local:"))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, env={"NUMBA_NUM_THREADS": str(threads)}) as cluster:
        with Client(cluster) as client:
            yield client
