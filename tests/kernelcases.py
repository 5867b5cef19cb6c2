"""The shared list of kernel cases and their check against the float64 reference.

Every backend runs the same cases (the ``xp`` fixture of conftest.py); import
from here as ``from kernelcases import SHAPES, check_all_kernels, make_problem``.
"""

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref

SHAPES = [(1, 1, 2), (1, 784, 10), (3, 5, 2), (63, 17, 3), (64, 17, 3), (65, 17, 3),
          (257, 33, 10), (1025, 7, 4), (1000, 784, 10)]
X_DTYPES = [np.uint8, np.float32, np.float64]
W_DTYPES = [np.float32, np.float64]


def to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def make_problem(n, d, k, x_dtype, w_dtype, seed=0, logit_scale=1.0):
    """Random X, W, b, y, x_scale; uint8 X is raw pixels with x_scale 1/255."""
    rng = np.random.default_rng(seed)
    if x_dtype == np.uint8:
        X, x_scale = rng.integers(0, 256, (n, d)).astype(np.uint8), 1 / 255
    else:
        X, x_scale = rng.standard_normal((n, d)).astype(x_dtype), 1.0
    W = (rng.standard_normal((d, k)) * logit_scale / np.sqrt(d)).astype(w_dtype)
    b = rng.standard_normal(k).astype(w_dtype)
    y = rng.integers(0, k, n)
    return X, W, b, y, x_scale


def assert_close(actual, expected, w_dtype):
    """float64 to 1e-10; float32 to ~1e-5 relative to the reference's magnitude."""
    actual, expected = to_numpy(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    tol = 1e-10 if w_dtype == np.float64 else 2e-5
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(1.0, np.abs(expected).max()))


def on(xp, *arrays):
    return [xp.asarray(a) for a in arrays]


def check_all_kernels(xp, X, W, b, y, x_scale):
    w_dtype = W.dtype.type
    Xd, Wd, bd, yd = on(xp, X, W, b, y)

    P = fs.linear_softmax(Xd, Wd, bd, x_scale=x_scale)
    assert type(P) is type(Xd) and P.dtype == W.dtype
    assert_close(P, ref.linear_softmax(X, W, b, x_scale=x_scale), w_dtype)

    Z = fs.linear_logits(Xd, Wd, bd, x_scale=x_scale)
    assert type(Z) is type(Xd) and Z.dtype == W.dtype
    assert_close(Z, ref.linear_logits(X, W, b, x_scale=x_scale), w_dtype)

    loss, correct, dW, db = fs.linear_softmax_cross_entropy(Xd, Wd, bd, yd, x_scale=x_scale)
    r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)
    assert loss.shape == () and correct.shape == ()
    assert_close(loss, r_loss, w_dtype)
    assert_close(dW, r_dW, w_dtype)
    assert_close(db, r_db, w_dtype)
    # float32 logits may flip an argmax between near-equal classes
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 1)

    logits = ref.linear_logits(X, W, b, x_scale=x_scale).astype(W.dtype)
    loss, dlogits = fs.softmax_cross_entropy(xp.asarray(logits), yd)
    r_loss, r_dlogits = ref.softmax_cross_entropy(logits, y)
    assert_close(loss, r_loss, w_dtype)
    assert_close(dlogits, r_dlogits, w_dtype)

    assert fs.accuracy(xp.asarray(logits), yd) == ref.accuracy(logits, y)
    check_hessian_product(xp, Xd, X, W, b, x_scale)


def check_hessian_product(xp, Xd, dense, W, b, x_scale, sample_weight=None):
    """linear_softmax_hessian_product on Xd (dense's copy on xp's device) along a random direction, with
    and without row weights, computing the softmax at W or given it, against the reference on dense."""
    rng = np.random.default_rng(W.shape[0])
    V, vb = rng.standard_normal(W.shape).astype(W.dtype), rng.standard_normal(b.shape).astype(W.dtype)
    weights = rng.random(dense.shape[0]) + 0.1 if sample_weight is None else sample_weight
    P = fs.linear_softmax(Xd, *on(xp, W, b), x_scale=x_scale)
    for w, given in ((None, None), (weights, None), (None, P), (weights, P)):
        HV, hb = fs.linear_softmax_hessian_product(Xd, *on(xp, W, b, V, vb), x_scale=x_scale, probabilities=given,
                                                   sample_weight=None if w is None else xp.asarray(w))
        r_HV, r_hb = ref.linear_softmax_hessian_product(dense, W, b, V, vb, x_scale=x_scale, sample_weight=w)
        assert type(HV) is type(xp.asarray(W)) and HV.dtype == W.dtype and hb.dtype == W.dtype
        assert_close(HV, r_HV, W.dtype.type)
        assert_close(hb, r_hb, W.dtype.type)


def fit_on_both_devices(cp, X, y, eval_set=None, **params):
    """SoftmaxRegression fitted on the CPU and on the CUDA backend (cp: cupy or the
    stand-in), checked to agree to float32 rounding; returns (cpu, gpu)."""
    cpu = fs.SoftmaxRegression(device="cpu", **params).fit(X, y, eval_set=eval_set)
    gpu = fs.SoftmaxRegression(device="cuda", **params).fit(X, y, eval_set=eval_set)
    assert isinstance(gpu.coef_, np.ndarray)  # fitted state lives on the host, as in scikit-learn
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.intercept_, cpu.intercept_, rtol=1e-4, atol=1e-5)
    for got, want in zip(gpu.history_, cpu.history_):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
    np.testing.assert_array_equal(to_numpy(gpu.predict(cp.asarray(X))), cpu.predict(X))
    return cpu, gpu



# The CPU backend's large-shape path (fastsoftmax/backends/cpu/large.py): k =
# 1000, a chunk's worth of rows and more, and shapes on both sides of the
# crossover (backends/cpu/__init__.py's BLAS_MIN_CLASSES) when the threshold
# is left as it is.
LARGE_K_SHAPES = [(300, 64, 1000), (129, 300, 100), (700, 33, 40), (257, 33, 10)]


# Sparse X (CSR): edge sizes, an empty row, columns past 10^4, and classes from 2 to a few hundred.
SPARSE_SHAPES = [(1, 1, 2, 1.0), (2, 3, 2, 0.0), (70, 40, 3, 0.1), (257, 500, 10, 0.02), (129, 20000, 7, 0.001),
                 (300, 64, 300, 0.05)]
INDEX_DTYPES = [np.int32, np.int64]


def make_sparse_problem(n, d, k, density, w_dtype, index_dtype=np.int32, seed=0):
    """A random CSR X (values of w_dtype, indices of index_dtype; row 0 empty where there are 2 rows or
    more), W, b, y and positive sample weights."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", dtype=w_dtype, random_state=seed,
                  data_rvs=lambda size: rng.standard_normal(size) * 2)
    if n > 1:
        X.data[X.indptr[0] : X.indptr[1]] = 0
        X.eliminate_zeros()
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    W = (rng.standard_normal((d, k)) / np.sqrt(max(1, density * d))).astype(w_dtype)
    b = rng.standard_normal(k).astype(w_dtype)
    return X, W, b, rng.integers(0, k, n), rng.random(n) + 0.1


def on_sparse(xp, X):
    """The scipy CSR X on xp's device: as given on the CPU, a cupyx.scipy.sparse matrix on the GPU."""
    if xp is np:
        return X
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(X)


def check_sparse_kernels(xp, X, W, b, y, sample_weight, x_scale=1.0):
    """Every kernel on the sparse X against the reference on its dense copy."""
    w_dtype, dense = W.dtype.type, X.toarray()
    Xs, (Wd, bd, yd, swd) = on_sparse(xp, X), on(xp, W, b, y, sample_weight)
    for kernel in ("linear_softmax", "linear_logits"):
        out = getattr(fs, kernel)(Xs, Wd, bd, x_scale=x_scale)
        assert type(out) is type(Wd) and out.dtype == W.dtype
        assert_close(out, getattr(ref, kernel)(dense, W, b, x_scale=x_scale), w_dtype)
    for weights, ref_weights in ((None, None), (swd, sample_weight)):
        loss, correct, dW, db = fs.linear_softmax_cross_entropy(Xs, Wd, bd, yd, x_scale=x_scale,
                                                                sample_weight=weights)
        r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(dense, W, b, y, x_scale=x_scale,
                                                                         sample_weight=ref_weights)
        assert loss.shape == () and correct.shape == ()
        assert_close(loss, r_loss, w_dtype)
        assert_close(dW, r_dW, w_dtype)
        assert_close(db, r_db, w_dtype)
        assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 1)
    check_hessian_product(xp, Xs, dense, W, b, x_scale, sample_weight)
