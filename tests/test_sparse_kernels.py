"""The kernels on sparse X (CSR, and CSC/COO converted) and on weighted rows, against the float64 reference
on dense copies, on every backend (the `xp` fixture)."""

import numpy as np
import pytest
import scipy.sparse as sp
from kernelcases import (
    INDEX_DTYPES,
    SPARSE_SHAPES,
    W_DTYPES,
    check_sparse_kernels,
    make_problem,
    make_sparse_problem,
    on,
    on_sparse,
    to_numpy,
)

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("w_dtype", W_DTYPES)
@pytest.mark.parametrize("n,d,k,density", SPARSE_SHAPES)
def test_sparse_kernels_match_reference(xp, n, d, k, density, w_dtype, index_dtype):
    X, W, b, y, sw = make_sparse_problem(n, d, k, density, w_dtype, index_dtype)
    check_sparse_kernels(xp, X, W, b, y, sw, x_scale=0.5)


def test_sparse_large_logits_stay_finite(xp):
    X, W, b, y, sw = make_sparse_problem(60, 30, 5, 0.3, np.float64, seed=2)
    W *= 4e3
    assert np.abs(X @ W).max() > 1e4
    check_sparse_kernels(xp, X, W, b, y, sw)


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil"])
def test_other_sparse_formats_are_converted(fmt):
    X, W, b, y, _ = make_sparse_problem(50, 30, 4, 0.2, np.float64)
    expected = ref.linear_softmax(X.toarray(), W, b)
    np.testing.assert_allclose(fs.linear_softmax(X.asformat(fmt), W, b), expected, rtol=1e-12)
    np.testing.assert_allclose(fs.linear_softmax(sp.csr_array(X), W, b), expected, rtol=1e-12)


def test_sparse_values_follow_w_dtype():
    """float32 values with float64 weights compute in float64, and integer values are taken as numbers."""
    X, W, b, y, _ = make_sparse_problem(40, 20, 3, 0.3, np.float64)
    np.testing.assert_allclose(fs.linear_softmax(X.astype(np.float32), W, b),
                               ref.linear_softmax(X.astype(np.float32).toarray(), W, b), rtol=1e-12)
    Xi = sp.csr_matrix(np.arange(12).reshape(3, 4) % 3)
    np.testing.assert_allclose(fs.linear_logits(Xi, W[:4], b), ref.linear_logits(Xi.toarray(), W[:4], b), rtol=1e-12)


def test_sparse_gradient_matches_finite_differences(xp):
    X, W, b, y, sw = make_sparse_problem(40, 12, 4, 0.3, np.float64, seed=3)
    Xs = on_sparse(xp, X)
    _, _, dW, db = fs.linear_softmax_cross_entropy(Xs, *on(xp, W, b, y), sample_weight=xp.asarray(sw))
    eps = 1e-6

    def loss_at(W, b):
        return float(fs.linear_softmax_cross_entropy(Xs, *on(xp, W, b, y), sample_weight=xp.asarray(sw))[0])

    for p, j in zip(*X.nonzero()[1:2], [0, 1, 2, 3] * 3):
        Wp, Wm = W.copy(), W.copy()
        Wp[p, j] += eps
        Wm[p, j] -= eps
        np.testing.assert_allclose((loss_at(Wp, b) - loss_at(Wm, b)) / (2 * eps), to_numpy(dW)[p, j], rtol=1e-6,
                                   atol=1e-8)
    bp, bm = b.copy(), b.copy()
    bp[1] += eps
    bm[1] -= eps
    np.testing.assert_allclose((loss_at(W, bp) - loss_at(W, bm)) / (2 * eps), to_numpy(db)[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_sparse_train_epoch_matches_reference(xp, w_dtype, schedule, weighted):
    """Lazy weight decay (W = s V) steps as the reference's dense decay does."""
    n, batch = 203, 16
    X, W, b, y, sw = make_sparse_problem(n, 300, 6, 0.03, w_dtype, seed=4)
    order = ref.permutation(n, 7, 2)
    steps = -(-n // batch)
    lrs = ref.learning_rates(schedule, 0.4, 3 * steps, steps, steps)
    weights = sw if weighted else None
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X.toarray(), y, order, W, b, lrs, batch, x_scale=0.8,
                                                  weight_decay=0.05, sample_weight=weights)
    Wd, bd = on(xp, W, b)
    loss_sum, correct = fs.train_epoch(on_sparse(xp, X), xp.asarray(y), Wd, bd, seed=7, epoch=2, batch_size=batch,
                                       lr=0.4, schedule=schedule, total_steps=3 * steps, start_step=steps,
                                       weight_decay=0.05, x_scale=0.8,
                                       sample_weight=None if weights is None else xp.asarray(weights))
    tol = 1e-10 if w_dtype == np.float64 else 1e-4
    np.testing.assert_allclose(to_numpy(Wd), r_W, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(bd), r_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(loss_sum) / n, r_loss, rtol=tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


def test_a_decay_that_zeroes_the_weights_is_folded_in():
    """rate * weight_decay = 1 zeroes W before the step: the lazy scale cannot hold it, so it is applied."""
    X, W, b, y, _ = make_sparse_problem(30, 20, 3, 0.2, np.float64, seed=5)
    order = np.arange(30)
    r_W, r_b, *_ = ref.train_epoch(X.toarray(), y, order, W, b, [0.5] * 3, 10, weight_decay=2.0)
    W2 = W.copy()
    fs.train_epoch(X, y, W2, b.copy(), rows=order, batch_size=10, lr=0.5, weight_decay=2.0)
    np.testing.assert_allclose(W2, r_W, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_train_epoch_many_matches_one_at_a_time_with_weights(xp, sparse):
    if sparse:
        X, W, b, y, sw = make_sparse_problem(150, 80, 5, 0.05, np.float64, seed=6)
        Xd = on_sparse(xp, X)
    else:
        X, W, b, y, _ = make_problem(150, 20, 5, np.float64, np.float64, seed=6)
        sw = np.random.default_rng(0).random(150)
        Xd = xp.asarray(X)
    lrs, decays = [0.1, 0.5, 1.0], [0.0, 0.01, 0.1]
    Ws, bs = on(xp, np.stack([W] * 3), np.stack([b] * 3))
    loss, correct = fs.train_epoch_many(Xd, xp.asarray(y), Ws, bs, batch_size=32, lrs=lrs, weight_decays=decays,
                                        seed=1, schedule="cosine", sample_weight=xp.asarray(sw))
    for i in range(3):
        W1, b1 = on(xp, W.copy(), b.copy())
        l1, c1 = fs.train_epoch(Xd, xp.asarray(y), W1, b1, batch_size=32, lr=lrs[i], weight_decay=decays[i], seed=1,
                                schedule="cosine", sample_weight=xp.asarray(sw))
        np.testing.assert_allclose(to_numpy(Ws)[i], to_numpy(W1), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(to_numpy(bs)[i], to_numpy(b1), rtol=1e-9, atol=1e-11)
        assert float(to_numpy(loss)[i]) == pytest.approx(float(l1), rel=1e-9)


@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_dense_weighted_kernels_match_reference(xp, w_dtype):
    """Row weights on the dense kernels (both CPU paths: register tiles at k = 5, BLAS at k = 60)."""
    for k in (5, 60):
        X, W, b, y, x_scale = make_problem(130, 17, k, np.float32, w_dtype, seed=k)
        sw = np.random.default_rng(k).random(130) * 3
        loss, _, dW, db = fs.linear_softmax_cross_entropy(*on(xp, X, W, b, y), sample_weight=xp.asarray(sw))
        r_loss, _, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, sample_weight=sw)
        tol = 1e-10 if w_dtype == np.float64 else 3e-5
        np.testing.assert_allclose(float(loss), r_loss, rtol=tol)
        np.testing.assert_allclose(to_numpy(dW), r_dW, rtol=tol, atol=tol)
        np.testing.assert_allclose(to_numpy(db), r_db, rtol=tol, atol=tol)
        order = ref.permutation(130, 0, 0)
        r_W, r_b, r_l, _ = ref.train_epoch(X, y, order, W, b, [0.3] * 5, 32, weight_decay=0.01, sample_weight=sw)
        Wd, bd = on(xp, W, b)
        fs.train_epoch(*on(xp, X, y), Wd, bd, seed=0, batch_size=32, lr=0.3, weight_decay=0.01,
                       sample_weight=xp.asarray(sw))
        np.testing.assert_allclose(to_numpy(Wd), r_W, rtol=tol * 10, atol=tol * 10)


def test_a_weight_of_two_is_a_duplicated_row():
    X, W, b, y, _ = make_problem(20, 6, 3, np.float64, np.float64, seed=8)
    sw = np.ones(20)
    sw[4] = 2
    twice = np.r_[np.arange(20), 4]
    got = fs.linear_softmax_cross_entropy(X, W, b, y, sample_weight=sw)
    want = fs.linear_softmax_cross_entropy(X[twice], W, b, y[twice])
    for a, e in zip(got, want):
        if np.ndim(a) or isinstance(a, np.ndarray) and a.dtype.kind == "f":
            np.testing.assert_allclose(a, e, rtol=1e-12)


@pytest.mark.parametrize("weights,message", [
    (-np.ones(10), "negative weights"),
    (np.zeros(10), "zero for every row"),
    (np.ones(9), "shape \\(10,\\)"),
    (np.r_[np.ones(9), np.nan], "NaN or inf"),
    (np.array(["a"] * 10), "numbers"),
])
def test_bad_sample_weights_are_named(weights, message):
    X, W, b, y, _ = make_problem(10, 4, 3, np.float64, np.float64)
    with pytest.raises((ValueError, TypeError), match=message):
        fs.linear_softmax_cross_entropy(X, W, b, y, sample_weight=weights)
    with pytest.raises((ValueError, TypeError), match=message):
        fs.train_epoch(X, y, W.copy(), b.copy(), seed=0, batch_size=4, lr=0.1, sample_weight=weights)


def test_bad_sparse_input_is_named():
    X, W, b, y, _ = make_sparse_problem(10, 8, 3, 0.5, np.float64)
    bad = X.copy()
    bad.data[0] = np.inf
    with pytest.raises(ValueError, match="X holds NaN or inf \\(first in row 1\\)"):
        fs.linear_softmax(bad, W, b)
    bad = X.copy()
    bad.indices[0] = 99
    with pytest.raises(ValueError, match="column indices outside"):
        fs.linear_softmax(bad, W, b)
    with pytest.raises(ValueError, match="shape"):
        fs.linear_softmax(X, W[:5], b)
    with pytest.raises(TypeError, match="numbers"):
        fs.linear_softmax(sp.csr_matrix(np.array([[1j, 0]])), W[:2], b)
