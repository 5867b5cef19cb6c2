"""Every kernel against the float64 NumPy reference, on every backend.

One list of cases serves all backends (the `xp` fixture): edge sizes (one row,
one feature, rows on either side of the 64-row part size), the Fashion-MNIST
shape, and every supported dtype pair.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsoftmax as fs
from fastsoftmax import reference as ref

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

    loss, correct, dW, db = fs.linear_softmax_cross_entropy(Xd, Wd, bd, yd, x_scale=x_scale)
    r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)
    assert loss.shape == () and correct.shape == ()
    assert_close(loss, r_loss, w_dtype)
    assert_close(dW, r_dW, w_dtype)
    assert_close(db, r_db, w_dtype)
    # float32 logits may flip an argmax between near-equal classes
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 1)

    logits = (X.astype(np.float64) * x_scale @ W + b).astype(W.dtype)
    loss, dlogits = fs.softmax_cross_entropy(xp.asarray(logits), yd)
    r_loss, r_dlogits = ref.softmax_cross_entropy(logits, y)
    assert_close(loss, r_loss, w_dtype)
    assert_close(dlogits, r_dlogits, w_dtype)

    assert fs.accuracy(xp.asarray(logits), yd) == ref.accuracy(logits, y)


@pytest.mark.parametrize("w_dtype", W_DTYPES)
@pytest.mark.parametrize("x_dtype", X_DTYPES)
@pytest.mark.parametrize("n,d,k", SHAPES)
def test_kernels_match_reference(xp, n, d, k, x_dtype, w_dtype):
    check_all_kernels(xp, *make_problem(n, d, k, x_dtype, w_dtype))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), d=st.integers(1, 64), k=st.integers(2, 12),
       x_dtype=st.sampled_from(X_DTYPES), w_dtype=st.sampled_from(W_DTYPES), seed=st.integers(0, 2**31))
def test_kernels_match_reference_random_shapes(n, d, k, x_dtype, w_dtype, seed):
    check_all_kernels(np, *make_problem(n, d, k, x_dtype, w_dtype, seed))


@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_large_logits_stay_finite(xp, w_dtype):
    """Logits of magnitude ~1e4: exp overflows without max-subtraction."""
    X, W, b, y, x_scale = make_problem(50, 20, 5, np.float64, w_dtype, logit_scale=4e3)
    logits = X @ W.astype(np.float64) + b
    assert np.abs(logits).max() > 1e4
    with np.errstate(over="ignore", invalid="ignore"):  # the naive softmax the tutorials write
        naive = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.isnan(naive).any()
    check_all_kernels(xp, X, W, b, y, x_scale)
    P = to_numpy(fs.linear_softmax(*on(xp, X, W, b), x_scale=x_scale))
    assert np.isfinite(P).all()
    loss, _, dW, _ = fs.linear_softmax_cross_entropy(*on(xp, X, W, b, y))
    assert np.isfinite(float(loss)) and float(loss) > 100  # confidently wrong rows cost ~1e4
    assert np.isfinite(to_numpy(dW)).all()


def test_any_memory_order(xp):
    X, W, b, y, x_scale = make_problem(70, 30, 4, np.uint8, np.float32)
    expected = to_numpy(fs.linear_softmax(*on(xp, X, W, b), x_scale=x_scale))
    for X2, W2 in [(np.asfortranarray(X), W), (X, np.asfortranarray(W)), (X[:, ::-1][:, ::-1], W.T.copy().T)]:
        got = fs.linear_softmax(*on(xp, X2, W2, b), x_scale=x_scale)
        np.testing.assert_array_equal(to_numpy(got), expected)


def test_gradients_match_finite_differences(xp):
    X, W, b, y, _ = make_problem(40, 6, 4, np.float64, np.float64, seed=3)
    loss, _, dW, db = fs.linear_softmax_cross_entropy(*on(xp, X, W, b, y))
    eps = 1e-6

    def loss_at(W, b):
        return float(fs.linear_softmax_cross_entropy(*on(xp, X, W, b, y))[0])

    for p, j in [(0, 0), (2, 3), (5, 1)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[p, j] += eps
        Wm[p, j] -= eps
        np.testing.assert_allclose((loss_at(Wp, b) - loss_at(Wm, b)) / (2 * eps), to_numpy(dW)[p, j], rtol=1e-6, atol=1e-8)
    for j in range(4):
        bp, bm = b.copy(), b.copy()
        bp[j] += eps
        bm[j] -= eps
        np.testing.assert_allclose((loss_at(W, bp) - loss_at(W, bm)) / (2 * eps), to_numpy(db)[j], rtol=1e-6, atol=1e-8)


def test_softmax_cross_entropy_gradient_matches_finite_differences(xp):
    rng = np.random.default_rng(4)
    logits, y = rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7)
    _, dlogits = fs.softmax_cross_entropy(*on(xp, logits, y))
    eps = 1e-6
    for i, j in [(0, 0), (3, 2), (6, 4)]:
        up, down = logits.copy(), logits.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (float(fs.softmax_cross_entropy(*on(xp, up, y))[0])
                   - float(fs.softmax_cross_entropy(*on(xp, down, y))[0])) / (2 * eps)
        np.testing.assert_allclose(numeric, to_numpy(dlogits)[i, j], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("x_dtype", X_DTYPES)
@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_train_epoch_matches_reference(xp, x_dtype, w_dtype):
    """The backends' one-call epoch equals the reference's minibatch SGD loop."""
    from fastsoftmax.backend import kernels_for_device

    n, d, k, batch = 1000, 37, 5, 64  # 1000 % 64 != 0: the last batch is partial
    X, W, b, y, x_scale = make_problem(n, d, k, x_dtype, w_dtype, seed=5)
    order = np.random.default_rng(1).permutation(n)
    lrs = np.linspace(0.5, 0.05, -(-n // batch))
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X, y, order, W, b, lrs, batch, x_scale=x_scale, weight_decay=0.01)

    kernels = kernels_for_device("cpu" if xp is np else "cuda")
    coef, bias = xp.asarray(np.ascontiguousarray(W.T)), xp.asarray(b)
    loss_sum, correct = kernels.train_epoch(*on(xp, X, y, order), coef, bias, xp.asarray(lrs.astype(w_dtype)),
                                            batch, x_scale, 0.01)
    tol = 1e-10 if w_dtype == np.float64 else 1e-4
    np.testing.assert_allclose(to_numpy(coef).T, r_W, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(bias), r_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(loss_sum) / n, r_loss, rtol=tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


def test_cpu_results_do_not_depend_on_thread_count():
    import numba

    X, W, b, y, x_scale = make_problem(1000, 784, 10, np.uint8, np.float32)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            results.append(fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)


# ---- bad input: a clear error naming the argument ----

GOOD = make_problem(10, 4, 3, np.float32, np.float32)


@pytest.mark.parametrize("change,error,match", [
    (dict(X=np.zeros(4, np.float32)), ValueError, "X must be 2-D"),
    (dict(X=np.zeros((0, 4), np.float32)), ValueError, "X must have at least 1 row"),
    (dict(X=np.zeros((10, 4), np.int32)), TypeError, "X has dtype int32"),
    (dict(W=np.zeros((5, 3), np.float32)), ValueError, r"W must have shape \(n_features, n_classes\) = \(4, k\)"),
    (dict(W=np.zeros((4, 1), np.float32)), ValueError, "k >= 2"),
    (dict(W=np.zeros((4, 3), np.int64)), TypeError, "W has dtype int64"),
    (dict(W=np.full((4, 3), np.nan, np.float32)), ValueError, "W and b must be finite"),
    (dict(b=np.zeros(4, np.float32)), ValueError, r"b must have shape \(3,\)"),
    (dict(y=np.zeros(9, np.int64)), ValueError, r"y must have shape \(10,\)"),
    (dict(y=np.zeros(10, np.float64)), TypeError, "y must hold integer class labels"),
    (dict(y=np.full(10, 3)), ValueError, r"outside \[0, 3\)"),
    (dict(y=np.full(10, -1)), ValueError, r"outside \[0, 3\)"),
    (dict(x_scale=float("inf")), ValueError, "x_scale must be finite"),
    (dict(x_scale="big"), TypeError, "x_scale must be a real number"),
])
def test_bad_input_raises_naming_the_argument(change, error, match):
    args = dict(zip(("X", "W", "b", "y", "x_scale"), GOOD)) | change
    with pytest.raises(error, match=match):
        fs.linear_softmax_cross_entropy(args["X"], args["W"], args["b"], args["y"], x_scale=args["x_scale"])


def test_bad_logits_and_scores():
    with pytest.raises(ValueError, match="logits must have at least 1 row and 2 column"):
        fs.softmax_cross_entropy(np.zeros((3, 1)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        fs.accuracy(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="scores has dtype"):
        fs.accuracy(np.zeros((3, 2), np.int8), np.array([0, 1, 1]))
