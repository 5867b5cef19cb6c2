"""Softmax regression on Dask arrays: the fused kernel on every chunk, one optimiser on the client.

The design of cuML's multi-GPU and Spark MLlib's logistic regression: for
``solver="lbfgs"`` each gradient pass maps ``ops.linear_softmax_cross_entropy``
over X's row chunks where they lie (only W and b travel out; each chunk's
(loss, hits, dW, db) sums come back, added by a tree of tasks), and one
L-BFGS (lbfgs.py) runs on the client. ``solver="sgd"`` visits the chunks in
order (``fit_blocks``: the blocks of sgd.py's loop), each loaded onto the
client: sequential by nature. A fitted model's predictions map it over the
chunks, lazily (``map_rows``).

Dask is an optional extra: this module imports it only inside the functions
that need it (fastsoftmax.arrays.is_dask tells a Dask collection without it).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..arrays import CSR, is_sparse
from ..ops.dispatch import array_module, resolve_device
from ..ops.validation import check_sparse
from .lbfgs import fused_gradient as in_memory_gradient

__all__ = ["accuracy", "chunk_results", "dask_array", "fit_blocks", "fused_gradient", "map_rows", "moments",
           "persist", "sparse_chunks"]

# The chunks' gradient sums are added SUM_EVERY at a time (dask.array's split_every).
SUM_EVERY = 8


def dask_array():
    """dask.array, or ImportError naming the extra to install."""
    try:
        import dask.array
    except ImportError:
        raise ImportError("Dask arrays need Dask: install it with `pip install fastsoftmax[dask]`") from None
    return dask.array


def persist(a):
    """a computed and held where Dask keeps results (a cluster's workers): sent and computed once, not
    on every pass. Host arrays wrapped by from_array travel in the graph, once: Dask's warning about a
    large graph is expected then, and not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        return a.persist()


def fused_gradient(X, y, x_scale, dtype, device, sample_weight=None):
    """gradient(W, bias) for lbfgs.lbfgs over a Dask X and its encoded y: one pass over the chunks (of
    the weighted mean loss with sample_weight, a Dask array on y's chunks normalised to mean 1).

    Each chunk's task runs the fused kernel on `device` (a NumPy chunk moves to
    the worker's GPU for "cuda") and returns the host float64 vector of its
    sums, which a tree of tasks adds, SUM_EVERY at a time. W and bias enter
    the graph once, as one key each, not once per chunk. Plain Dask tasks, not
    array operations: the array layer's graph building cost 30 ms a pass.
    """
    import dask

    rows = [None] * len(X.chunks[0]) if sample_weight is None else sample_weight.to_delayed().ravel()
    pairs = list(zip(X.to_delayed().ravel(), y.to_delayed().ravel(), rows))
    chunk_sums, add = dask.delayed(_chunk_sums, pure=True), dask.delayed(_add, pure=True)
    n = X.shape[0]

    def gradient(W, bias):
        weights = dask.delayed(W.astype(dtype)), dask.delayed(bias.astype(dtype))
        sums = [chunk_sums(xb, yb, wb, *weights, x_scale, device) for xb, yb, wb in pairs]
        while len(sums) > 1:
            sums = [add(*sums[i:i + SUM_EVERY]) for i in range(0, len(sums), SUM_EVERY)]
        total = sums[0].compute(optimize_graph=False)  # the chunks' tasks were optimised by to_delayed
        total[:-1] /= n  # the mean loss's gradient and the mean loss; the hits stay a count
        return total

    return gradient


def _add(*vectors):
    return np.sum(vectors, axis=0)


def sparse_chunks(X) -> bool:
    """True for a Dask array whose chunks are scipy.sparse or cupyx.scipy.sparse matrices."""
    return is_sparse(getattr(X, "_meta", None))


def _on_device(xp, chunk, dtype=None):
    """A chunk on xp's device: dense as an array, sparse as a CSR triple (values in dtype, where given)."""
    if is_sparse(chunk):
        return check_sparse(chunk, "X", xp, dtype)
    return xp.ascontiguousarray(xp.asarray(chunk))


def _chunk_sums(X, y, w, W, bias, x_scale, device):
    """One chunk's sums of the gradient, of the loss (each row's times its weight in w, None: 1) and its
    hits, as a host float64 vector."""
    xp = array_module(resolve_device(device))
    total = X.shape[0] if w is None else float(np.sum(w))  # the kernels' weighted mean, times this
    weights = None if w is None or total == 0 else xp.asarray(w)
    means = in_memory_gradient(xp, _on_device(xp, X, W.dtype), xp.asarray(y), x_scale, W.dtype, weights)(W, bias)
    sums = means.astype(np.float64)
    sums[:-1] *= total
    return sums


def moments(X):
    """Each feature's mean and standard deviation over a Dask X's rows: host float64 (d,) arrays, one pass."""
    import dask

    return dask.compute(X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64))


def chunk_results(X, f):
    """[f(chunk) for each of a Dask X's row chunks], computed where they lie in one pass; f takes a chunk
    on the host (a sparse one as a CSR triple)."""
    import dask

    def result(chunk):
        return f(_on_device(np, chunk))

    return list(dask.compute(*[dask.delayed(result)(c) for c in X.to_delayed().ravel()]))


def fit_blocks(X, y, xp, transform=None, dtype=np.float32, sample_weight=None):
    """sgd.sgd's blocks: each chunk's (rows, load), load() computing that chunk onto xp's device
    (and its X through transform(xp, X), where given; a sparse chunk as a CSR of dtype values), with
    its rows' weights (sample_weight: None, or a Dask array on y's chunks normalised to mean 1)."""
    import dask

    def loader(xb, yb, wb):
        def load():
            X_chunk, y_chunk, w_chunk = dask.compute(xb, yb, wb)
            X_chunk, y_chunk = _on_device(xp, X_chunk), xp.ascontiguousarray(xp.asarray(y_chunk))
            if transform is not None:
                X_chunk = transform(xp, X_chunk)
            elif isinstance(X_chunk, CSR):
                X_chunk = check_sparse(X_chunk, "X", xp, dtype)
            return X_chunk, y_chunk, None if w_chunk is None else xp.asarray(w_chunk, dtype=dtype)
        return load

    weights = [None] * len(X.chunks[0]) if sample_weight is None else sample_weight.to_delayed().ravel()
    return [(rows, loader(xb, yb, wb)) for rows, xb, yb, wb in zip(X.chunks[0], X.to_delayed().ravel(),
                                                                   y.to_delayed().ravel(), weights)]


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
    da = dask_array()
    hits = predicted == (y if isinstance(y, da.Array) else da.from_array(np.asarray(y), chunks=predicted.chunks))
    if sample_weight is None:
        return float(hits.mean().compute())
    return float(da.average(hits, weights=sample_weight).compute())
