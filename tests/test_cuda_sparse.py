"""The CUDA backend's sparse path (fastsoftmax/backends/cuda/sparse.py, kernels/sparse.cu), called through
fastsoftmax.backends.cuda with arrays.CSR triples, against fastsoftmax.reference.kernels on dense copies:
- the forward kernels and the (weighted) gradient: float32/float64 values, int32/int64 indices, one row,
  empty rows, repeated and unsorted features, rows not a multiple of a block's or a chunk's, d up to a
  few thousand, k from 2 to 300 and 10^5, logits of 10^4;
- train_epoch with the lazy weight decay (folds of V included, and steps whose 1 - rate * decay <= 0),
  constant and cosine schedules, with and without sample weights, and batches larger than a chunk;
- train_epoch_many against its models trained one at a time;
- in emulation: no synchronisation inside an epoch and three launches a step, memory within a chunk;
- the stand-in cupyx.scipy.sparse (tests/cudaemu/standin_cupyx.py) that the ops layer reads.
Sizes stay small: the emulator runs a CPU thread per CUDA thread.
"""

import sys

import numpy as np
import pytest
import scipy.sparse
from conftest import REAL_GPU
from kernelcases import assert_close, to_numpy

from fastsoftmax.arrays import CSR, is_device_array, is_sparse
from fastsoftmax.reference import kernels as ref
from fastsoftmax.reference.schedules import kind_of

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda(cupy_module):
    from fastsoftmax.backends import cuda

    return cuda


@pytest.fixture
def sparse_module(cupy_module):
    from fastsoftmax.backends.cuda import sparse

    return sparse


def sparse_problem(n, d, k, density, w_dtype, index_dtype, seed=0, empty_rows=(), logit_scale=1.0):
    """A scipy CSR X (w_dtype values, index_dtype indices) with the given rows empty, W (d, k), b, y and
    sample weights normalised to mean 1 (some zero)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n, d)) < density, rng.standard_normal((n, d)), 0.0)
    dense[list(empty_rows)] = 0.0
    X = scipy.sparse.csr_matrix(dense.astype(w_dtype))
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    W = (rng.standard_normal((d, k)) * logit_scale / np.sqrt(max(1.0, density * d))).astype(w_dtype)
    b = rng.standard_normal(k).astype(w_dtype)
    w = rng.uniform(0.1, 3.0, n)
    w[: n // 8] = 0.0
    return X, W, b, rng.integers(0, k, n), (w * n / w.sum()).astype(w_dtype)


def on_device(cp, X):
    """The CSR triple of the scipy matrix X, as the backend takes it."""
    return CSR(cp.asarray(X.data), cp.asarray(X.indices), cp.asarray(X.indptr), X.shape)


def coef_of(cp, W):
    return cp.asarray(np.ascontiguousarray(W.T))


def check_kernels(cuda, cp, X, W, b, y, w, x_scale, w_dtype):
    """linear_softmax, linear_logits and the (weighted and unweighted) gradient against the reference."""
    dense = X.toarray()
    Xd, coef, bd, yd = on_device(cp, X), coef_of(cp, W), cp.asarray(b), cp.asarray(y)
    P = cuda.linear_softmax(Xd, coef, bd, x_scale)
    assert P.dtype == W.dtype and P.shape == (X.shape[0], W.shape[1])
    assert_close(P, ref.linear_softmax(dense, W, b, x_scale=x_scale), w_dtype)
    assert_close(cuda.linear_logits(Xd, coef, bd, x_scale), ref.linear_logits(dense, W, b, x_scale=x_scale), w_dtype)
    for weights in (None, w):
        got = cuda.linear_softmax_cross_entropy(Xd, coef, bd, yd, x_scale, None if weights is None else cp.asarray(w))
        loss, correct, dcoef, db = got
        r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(dense, W, b, y, x_scale=x_scale,
                                                                         sample_weight=weights)
        assert loss.shape == () and correct.shape == () and dcoef.shape == W.T.shape
        assert dcoef.flags.c_contiguous
        assert_close(loss, r_loss, w_dtype)
        assert_close(to_numpy(dcoef).T, r_dW, w_dtype)
        assert_close(db, r_db, w_dtype)
        assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 1)


# n, d, k, density, empty rows: one row, an empty one, rows past a block's 8 and a grid's 32, wide and many-class.
SHAPES = [(1, 5, 2, 0.6, ()), (1, 7, 3, 0.5, (0,)), (3, 17, 2, 0.3, (1,)), (37, 300, 10, 0.05, (0, 5, 36)),
          (45, 3000, 4, 0.004, (2,)), (13, 64, 300, 0.1, ())]


@pytest.mark.parametrize(("w_dtype", "index_dtype"), [(np.float32, np.int32), (np.float64, np.int64),
                                                      (np.float32, np.int64), (np.float64, np.int32)])
@pytest.mark.parametrize("n,d,k,density,empty", SHAPES)
def test_kernels_match_reference(cuda, cupy_module, n, d, k, density, empty, w_dtype, index_dtype):
    X, W, b, y, w = sparse_problem(n, d, k, density, w_dtype, index_dtype, seed=n + d, empty_rows=empty)
    check_kernels(cuda, cupy_module, X, W, b, y, w, 0.5, w_dtype)


def test_repeated_and_unsorted_features_add_up(cuda, cupy_module):
    """A CSR whose rows list features out of order and more than once (arrays.CSR: repeats add up)."""
    data = np.array([1.0, -2.0, 0.5, 3.0, 1.5, -1.0, 2.0])
    indices = np.array([4, 1, 4, 0, 2, 2, 0])
    indptr = np.array([0, 3, 3, 7])
    X = scipy.sparse.csr_matrix((data, indices, indptr), shape=(3, 6))
    assert not X.has_canonical_format
    _, W, b, y, w = sparse_problem(3, 6, 4, 0.5, np.float64, np.int64, seed=3)
    check_kernels(cuda, cupy_module, X, W, b, y, w, 1.0, np.float64)


@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
def test_large_logits_stay_finite(cuda, cupy_module, w_dtype):
    """Logits of ~10^4: the max-subtracted softmax keeps every output finite."""
    X, W, b, y, w = sparse_problem(40, 30, 6, 0.3, w_dtype, np.int32, seed=5, logit_scale=1e4)
    assert np.abs(X.toarray() @ W.astype(np.float64)).max() > 1e4
    if w_dtype == np.float64:
        check_kernels(cuda, cupy_module, X, W, b, y, w, 1.0, w_dtype)
        return
    cp = cupy_module
    Xd, coef, bd, yd = on_device(cp, X), coef_of(cp, W), cp.asarray(b), cp.asarray(y)
    loss, _, dcoef, db = cuda.linear_softmax_cross_entropy(Xd, coef, bd, yd, 1.0, cp.asarray(w))
    assert np.isfinite(to_numpy(cuda.linear_softmax(Xd, coef, bd, 1.0))).all()
    assert np.isfinite(to_numpy(dcoef)).all() and np.isfinite(to_numpy(db)).all()
    r_loss = ref.linear_softmax_cross_entropy(X.toarray(), W, b, y, sample_weight=w)[0]
    assert float(loss) == pytest.approx(r_loss, rel=1e-4)


def test_a_hundred_thousand_classes(cuda, cupy_module):
    """k = 10^5: a warp's lanes stride over the classes (no thread per class), forward, gradient and an epoch."""
    X, W, b, y, w = sparse_problem(5, 12, 100_000, 0.3, np.float64, np.int32, seed=1, empty_rows=(2,))
    check_kernels(cuda, cupy_module, X, W, b, y, w, 1.0, np.float64)
    run_epochs(cuda, cupy_module, X, y, W, b, w, epochs=1, batch=2)


def test_gradient_in_chunks(cuda, cupy_module, sparse_module, monkeypatch):
    """Chunks of 4 rows: the gradient sums the chunks' scatters and column sums."""
    monkeypatch.setattr(sparse_module, "CHUNK_ELEMENTS", 4 * 5)
    X, W, b, y, w = sparse_problem(30, 40, 5, 0.2, np.float64, np.int32, seed=6, empty_rows=(3,))
    assert sparse_module.chunk_rows(5) == 4
    check_kernels(cuda, cupy_module, X, W, b, y, w, 2.0, np.float64)


# ---- SGD epochs ----


def run_epochs(cuda, cp, X, y, W, b, w, *, epochs=2, batch=8, lr=0.5, schedule="cosine", decay=0.05, x_scale=0.5,
               seed=0):
    """train_epoch over `epochs` shuffled epochs on the device and in the reference, compared after each."""
    n, w_dtype = X.shape[0], W.dtype.type
    steps = -(-n // batch)
    Xd, yd, coef, bd = on_device(cp, X), cp.asarray(y), coef_of(cp, W), cp.asarray(b)
    wd = None if w is None else cp.asarray(w)
    r_W, r_b, dense = W, b, X.toarray()
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        loss_sum, correct = cuda.train_epoch(Xd, yd, cp.asarray(order), coef, bd, batch, x_scale, decay,
                                             kind_of(schedule), lr, epochs * steps, epoch * steps, wd, {})
        assert loss_sum.shape == () and correct.shape == () and is_device_array(loss_sum)
        lrs = ref.learning_rates(schedule, lr, epochs * steps, epoch * steps, steps)
        r_W, r_b, r_loss, r_correct = ref.train_epoch(dense, y, order, r_W, r_b, lrs, batch, x_scale=x_scale,
                                                      weight_decay=decay, sample_weight=w)
        assert_close(to_numpy(coef).T, r_W, w_dtype)
        assert_close(bd, r_b, w_dtype)
        assert_close(float(loss_sum) / n, r_loss, w_dtype)
        assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)
    return to_numpy(coef), to_numpy(bd)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize(("w_dtype", "index_dtype"), [(np.float32, np.int32), (np.float64, np.int64)])
def test_train_epoch_matches_reference(cuda, cupy_module, schedule, weighted, w_dtype, index_dtype):
    """Two epochs of 43 rows in batches of 8 (a partial last one), decay 0.05 applied lazily."""
    X, W, b, y, w = sparse_problem(43, 120, 6, 0.05, w_dtype, index_dtype, seed=7, empty_rows=(0, 9))
    run_epochs(cuda, cupy_module, X, y, W, b, w if weighted else None, schedule=schedule)


@pytest.mark.parametrize("rate_decay", [0.9, 1.0, 1.7], ids=["folds", "zeroing", "negative"])
def test_strong_decay_folds_the_scale_into_v(cuda, cupy_module, sparse_module, rate_decay):
    """1 - rate * decay of 0.1 drives s below RESCALE in 6 steps (V folded, s = 1); of 0 or below, a step
    multiplies V at once. Both match the reference's dense decay."""
    X, W, b, y, w = sparse_problem(60, 50, 4, 0.1, np.float64, np.int32, seed=8)
    _, folds, _ = sparse_module._plan(np.dtype(np.float64), 1, 60, 6, 1.0, [rate_decay / 0.1], kind_of("constant"),
                                         [0.1], 10, 0)
    assert any(folds) and (rate_decay < 1 or all(folds))
    run_epochs(cuda, cupy_module, X, y, W, b, w, epochs=1, batch=6, lr=0.1, schedule="constant",
               decay=rate_decay / 0.1, x_scale=1.0)


@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
def test_batches_larger_than_a_chunk_defer_their_step(cuda, cupy_module, sparse_module, monkeypatch, w_dtype):
    """Chunks of 3 rows, batches of 10: every step goes through dV and sparse_apply, and dV is left zero for
    the next step (the later epochs would drift otherwise)."""
    monkeypatch.setattr(sparse_module, "CHUNK_ELEMENTS", 3 * 7)
    X, W, b, y, w = sparse_problem(34, 25, 7, 0.15, w_dtype, np.int64, seed=9, empty_rows=(4,))
    run_epochs(cuda, cupy_module, X, y, W, b, w, epochs=2, batch=10, decay=0.1)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_train_epoch_many_matches_one_at_a_time(cuda, cupy_module, weighted):
    """Three models on the same batches (each batch read once for all), each with its own rate and decay,
    against each trained alone by train_epoch: the same numbers up to the scatter's order of additions."""
    cp = cupy_module
    X, W, b, y, w = sparse_problem(41, 90, 5, 0.06, np.float64, np.int32, seed=10, empty_rows=(1,))
    wd = cp.asarray(w) if weighted else None
    rows = cp.asarray(np.random.default_rng(0).permutation(41))
    lrs, decays, kind = [0.5, 0.1, 2.0], [0.05, 0.0, 0.3], kind_of("cosine")
    Xd, yd = on_device(cp, X), cp.asarray(y)
    coefs, biases = cp.asarray(np.stack([W.T] * 3)), cp.asarray(np.stack([b] * 3))
    losses, hits = cuda.train_epoch_many(Xd, yd, rows, coefs, biases, 8, 0.5, decays, kind, lrs, 12, 2, wd)
    assert losses.shape == (3,) and hits.shape == (3,)
    for i, (lr, decay) in enumerate(zip(lrs, decays)):
        coef, bias = coef_of(cp, W), cp.asarray(b)
        loss, correct = cuda.train_epoch(Xd, yd, rows, coef, bias, 8, 0.5, decay, kind, lr, 12, 2, wd, None)
        assert_close(coefs[i], to_numpy(coef), np.float64)
        assert_close(biases[i], to_numpy(bias), np.float64)
        assert_close(losses[i], float(loss), np.float64)
        assert int(hits[i]) == int(correct)


def test_rows_given_with_repeats_and_gaps(cuda, cupy_module):
    """An epoch visits the rows it is given (any length, repeats allowed), as the dense path does."""
    X, W, b, y, w = sparse_problem(20, 30, 3, 0.2, np.float64, np.int32, seed=11)
    order = np.array([3, 3, 7, 19, 0, 3, 12, 12, 5, 1, 18])
    cp = cupy_module
    Xd, yd, coef, bd = on_device(cp, X), cp.asarray(y), coef_of(cp, W), cp.asarray(b)
    loss_sum, correct = cuda.train_epoch(Xd, yd, cp.asarray(order), coef, bd, 4, 1.0, 0.02, kind_of("constant"), 0.3,
                                         3, 0, cp.asarray(w), None)
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X.toarray(), y, order, W, b, [0.3] * 3, 4, weight_decay=0.02,
                                                  sample_weight=w)
    assert_close(to_numpy(coef).T, r_W, np.float64)
    assert_close(bd, r_b, np.float64)
    assert_close(float(loss_sum) / len(order), r_loss, np.float64)
    assert int(correct) == r_correct


# ---- costs, in emulation ----


@pytest.mark.skipif(REAL_GPU, reason="counts the stand-in's launches, synchronisations and allocations")
def test_an_epoch_is_three_launches_a_step_without_a_sync(cuda, cupy_module):
    cp = cupy_module
    X, W, b, y, w = sparse_problem(50, 40, 4, 0.1, np.float32, np.int32, seed=12)
    Xd, yd, coef, bd, rows, wd = (on_device(cp, X), cp.asarray(y), coef_of(cp, W), cp.asarray(b),
                                  cp.asarray(np.arange(50)), cp.asarray(w))
    cp.counters.reset()
    cuda.train_epoch(Xd, yd, rows, coef, bd, 8, 1.0, 0.01, kind_of("cosine"), 0.1, 7, 0, wd, None)
    assert cp.counters.syncs == 0
    assert cp.counters.host_to_device == 1  # the epoch's plan
    assert cp.counters.launches == 3 * 7


@pytest.mark.skipif(REAL_GPU, reason="reads the emulator's allocation counter")
def test_memory_stays_within_a_chunk_and_w(cuda, cupy_module, sparse_module, monkeypatch):
    """No n x k array but the forward's result: a gradient, and an epoch of one batch of all the rows,
    allocate at most a chunk's g or W's size."""
    cp = cupy_module
    n, d, k, chunk = 120, 16, 50, 8
    monkeypatch.setattr(sparse_module, "CHUNK_ELEMENTS", chunk * k)
    X, W, b, y, w = sparse_problem(n, d, k, 0.3, np.float64, np.int64, seed=13)
    Xd, yd, coef, bd, rows, wd = (on_device(cp, X), cp.asarray(y), coef_of(cp, W), cp.asarray(b),
                                  cp.asarray(np.arange(n)), cp.asarray(w))
    bound = max(chunk * k, d * k) * W.itemsize
    assert bound < n * k * W.itemsize
    for run in (lambda: cuda.linear_softmax_cross_entropy(Xd, coef, bd, yd, 1.0, wd),
                lambda: cuda.train_epoch(Xd, yd, rows, coef, bd, n, 1.0, 0.01, kind_of("constant"), 0.1, 1, 0, wd,
                                         None)):
        cp.counters.reset()
        run()
        assert 0 < cp.counters.largest_allocation <= bound


# ---- the stand-in cupyx.scipy.sparse ----


@pytest.fixture
def cupyx_sparse(cupy_module, monkeypatch):
    """cupyx.scipy.sparse: the real one where a GPU is, else the stand-in (tests/cudaemu/standin_cupyx.py)."""
    if not REAL_GPU:
        from cudaemu import standin_cupyx

        for name, module in standin_cupyx.MODULES.items():
            monkeypatch.setitem(sys.modules, name, module)
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse


def test_cupyx_csr_matrix(cupyx_sparse, cupy_module, cuda):
    """What the ops layer reads of a user's cupyx.scipy.sparse matrix, and its CSR on the sparse kernels."""
    cp = cupy_module
    X, W, b, _, _ = sparse_problem(9, 12, 3, 0.3, np.float64, np.int64, seed=14, empty_rows=(2,))
    Xc = cupyx_sparse.csr_matrix(X)
    assert type(Xc).__module__.startswith("cupyx") and is_sparse(Xc) and is_device_array(Xc)
    assert cupyx_sparse.issparse(Xc) and cupyx_sparse.isspmatrix_csr(Xc) and not cupyx_sparse.issparse(X)
    assert Xc.format == "csr" and Xc.shape == X.shape and Xc.nnz == X.nnz and Xc.dtype == np.float64
    assert Xc.tocsr() is Xc and all(is_device_array(a) for a in (Xc.data, Xc.indices, Xc.indptr))
    assert (Xc.get() != X).nnz == 0 and isinstance(Xc.get(), scipy.sparse.csr_matrix)
    np.testing.assert_array_equal(to_numpy(Xc.toarray()), X.toarray())
    f32 = Xc.astype(np.float32)
    assert f32.dtype == np.float32 and Xc.dtype == np.float64
    triple = cupyx_sparse.csr_matrix((Xc.data, Xc.indices, Xc.indptr), shape=Xc.shape)
    from_dense = cupyx_sparse.csr_matrix(cp.asarray(X.toarray()))
    for other in (triple, from_dense):
        assert other.shape == X.shape and (other.get() != X).nnz == 0
    Xt = CSR(Xc.data, Xc.indices, Xc.indptr, Xc.shape)
    P = cuda.linear_softmax(Xt, coef_of(cp, W), cp.asarray(b), 1.0)
    assert_close(P, ref.linear_softmax(X.toarray(), W, b), np.float64)


@pytest.mark.skipif(REAL_GPU, reason="checks the stand-in's own refusals")
def test_cupyx_standin_refuses_host_arrays(cupyx_sparse):
    X = scipy.sparse.random(4, 5, density=0.5, format="csr", random_state=0)
    with pytest.raises(ValueError, match="1-D"):
        cupyx_sparse.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape)
    with pytest.raises(ValueError, match="Unsupported"):
        cupyx_sparse.csr_matrix(X.toarray())
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(cupyx_sparse.csr_matrix(X))
    for fmt in ("csc", "coo"):
        other = getattr(cupyx_sparse, f"{fmt}_matrix")(X)
        assert other.format == fmt and cupyx_sparse.issparse(other)
        assert (other.tocsr().get() != X).nnz == 0
