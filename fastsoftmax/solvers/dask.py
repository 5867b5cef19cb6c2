"""Softmax regression on Dask arrays: the fused kernel on every chunk, one optimiser on the client.

The design of cuML's multi-GPU and Spark MLlib's logistic regression: for
``solver="lbfgs"`` and ``"newton-cg"`` each gradient pass maps
``ops.linear_softmax_cross_entropy`` (each Hessian product
``ops.linear_softmax_hessian_product``) over X's row chunks where they lie
(only W and b travel out; each chunk's sums come back, added by a tree of
tasks), and one optimiser (lbfgs.py, newton.py) runs on the client.
``solver="sgd"`` visits the chunks in order (``fit_blocks``: the blocks of
sgd.py's loop), each loaded onto the client: sequential by nature. A fitted
model's predictions map it over the chunks, lazily (``map_rows``).

Dask is an optional extra: this module imports it only inside the functions
that need it (fastsoftmax.arrays.is_dask tells a Dask collection without it).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..arrays import CSR, is_sparse
from ..ops.dispatch import array_module, resolve_device
from ..ops.validation import check_sparse
from .objective import fused_gradient as in_memory_gradient
from .objective import fused_hessian_product as in_memory_product

__all__ = ["accuracy", "chunk_results", "dask_array", "fit_blocks", "fused_gradient", "fused_hessian_product",
           "map_rows", "moments", "persist", "sparse_chunks"]

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
    """gradient(W, bias) for the full-batch solvers over a Dask X and its encoded y: one pass over the
    chunks (of the weighted mean loss with sample_weight, a Dask array on y's chunks normalised to mean 1),
    as objective.fused_gradient's vector; the hits stay a count."""
    passes = _ChunkPasses(X, y, sample_weight)

    def gradient(W, bias):
        total = passes(_chunk_gradient, (W.astype(dtype), bias.astype(dtype)), x_scale, device)
        total[:-1] /= X.shape[0]  # the mean loss's gradient and the mean loss
        return total

    return gradient


def fused_hessian_product(X, x_scale, dtype, device, sample_weight=None):
    """product(W, bias, V, vb) for newton.newton_cg over a Dask X: one pass over the chunks, as
    objective.fused_hessian_product's vector."""
    passes = _ChunkPasses(X, None, sample_weight)

    def product(W, bias, V, vb):
        return passes(_chunk_product, tuple(a.astype(dtype) for a in (W, bias, V, vb)), x_scale, device) / X.shape[0]

    return product


class _ChunkPasses:
    """A pass of f(X chunk, y chunk, weights chunk, *arrays, x_scale, device) over a Dask X's row chunks
    where they lie, returning each chunk's host float64 sums, added by a tree of tasks SUM_EVERY at a time.

    The arrays (W, bias, ...) enter the graph once, as one key each, not once
    per chunk. Plain Dask tasks, not array operations: the array layer's graph
    building cost 30 ms a pass.
    """

    def __init__(self, X, y, sample_weight):
        import dask

        count = len(X.chunks[0])
        rows = [None] * count if sample_weight is None else sample_weight.to_delayed().ravel()
        labels = [None] * count if y is None else y.to_delayed().ravel()
        self.chunks = list(zip(X.to_delayed().ravel(), labels, rows))
        self.delayed = dask.delayed

    def __call__(self, f, arrays, x_scale, device):
        task, add = self.delayed(f, pure=True), self.delayed(_add, pure=True)
        keys = [self.delayed(a) for a in arrays]
        sums = [task(xb, yb, wb, *keys, x_scale, device) for xb, yb, wb in self.chunks]
        while len(sums) > 1:
            sums = [add(*sums[i:i + SUM_EVERY]) for i in range(0, len(sums), SUM_EVERY)]
        return sums[0].compute(optimize_graph=False)  # the chunks' tasks were optimised by to_delayed


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


def _chunk_means(w, rows):
    """(the chunk's weight total, its kernels' sample_weight): the kernels' weighted mean times the total is
    the chunk's sum (w None: every row weighs 1)."""
    total = rows if w is None else float(np.sum(w))
    return total, None if w is None or total == 0 else w


def _chunk_gradient(X, y, w, W, bias, x_scale, device):
    """One chunk's sums of the gradient, of the loss (each row's times its weight in w, None: 1) and its
    hits, as a host float64 vector."""
    xp = array_module(resolve_device(device))
    total, w = _chunk_means(w, X.shape[0])
    weights = None if w is None else xp.asarray(w)
    means = in_memory_gradient(xp, _on_device(xp, X, W.dtype), xp.asarray(y), x_scale, W.dtype, weights)(W, bias)
    sums = means.astype(np.float64)
    sums[:-1] *= total
    return sums


def _chunk_product(X, y, w, W, bias, V, vb, x_scale, device):
    """One chunk's sum of the Hessian-vector product's rows (each times its weight in w), host float64: one
    product per task, so no softmax is kept (the next product at W is another task's)."""
    xp = array_module(resolve_device(device))
    total, w = _chunk_means(w, X.shape[0])
    product = in_memory_product(xp, _on_device(xp, X, W.dtype), x_scale, W.dtype,
                                None if w is None else xp.asarray(w), keep=False)
    return product(W, bias, V, vb).astype(np.float64) * total


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
