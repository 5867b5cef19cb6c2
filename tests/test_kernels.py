"""Every kernel against the float64 NumPy reference, on every backend.

One list of cases (kernelcases.py) serves all backends (the `xp` fixture):
edge sizes (one row, one feature, rows on either side of the 64-row part
size), the Fashion-MNIST shape, and every supported dtype pair.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelcases import (
    SHAPES,
    W_DTYPES,
    X_DTYPES,
    check_all_kernels,
    make_problem,
    on,
    to_numpy,
)

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref
from fastsoftmax.reference.schedules import SCHEDULES, kind_of, learning_rate


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


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
def test_a_scale_that_shrinks_huge_features_applies_before_the_product(xp, x_dtype):
    """float32 features near 1e38 with x_scale 1e-38: X @ W as given overflows float32, so the scale is
    applied first; every kernel then matches the float64 reference, which has no overflow."""
    X, W, b, y, _ = make_problem(70, 9, 4, np.float32, np.float32, seed=3, logit_scale=30)
    X = ((np.abs(X) + 1) / (np.abs(X).max() + 1) * 3e38).astype(np.float32)  # finite, up to 3e38
    with np.errstate(over="ignore"):
        assert np.isfinite(X).all() and not np.isfinite(X @ W).all()  # the product as given overflows
    check_all_kernels(xp, X.astype(x_dtype), W, b, y, 1e-38)
    W2, b2 = on(xp, np.asfortranarray(W), b)
    fs.train_epoch(*on(xp, X.astype(x_dtype), y), W2, b2, seed=0, batch_size=16, lr=0.1, x_scale=1e-38)
    assert np.isfinite(to_numpy(W2)).all()


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
    n, d, k, batch = 1000, 37, 5, 64  # 1000 % 64 != 0: the last batch is partial
    X, W, b, y, x_scale = make_problem(n, d, k, x_dtype, w_dtype, seed=5)
    order = np.random.default_rng(1).permutation(n)
    steps = -(-n // batch)
    lrs = ref.learning_rates("cosine", 0.5, 3 * steps, steps, steps)  # the second epoch of three
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X, y, order, W, b, lrs, batch, x_scale=x_scale, weight_decay=0.01)

    Wd, bd = on(xp, W, b)
    loss_sum, correct = fs.train_epoch(*on(xp, X, y), Wd, bd, rows=xp.asarray(order), batch_size=batch, lr=0.5,
                                       schedule="cosine", total_steps=3 * steps, start_step=steps,
                                       weight_decay=0.01, x_scale=x_scale)
    assert loss_sum.shape == () and correct.shape == ()
    tol = 1e-10 if w_dtype == np.float64 else 1e-4
    np.testing.assert_allclose(to_numpy(Wd), r_W, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(bd), r_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(loss_sum) / n, r_loss, rtol=tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


@pytest.mark.parametrize("rows", [[7], [3, 3, 0, 9, 3], list(range(40)) * 2])
def test_train_epoch_visits_the_rows_given(xp, rows):
    """An order shorter than X, or with repeats, trains on exactly those rows."""
    X, W, b, y, x_scale = make_problem(50, 6, 3, np.float64, np.float64, seed=6)
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X, y, np.array(rows), W, b, [0.3] * len(rows), 2, x_scale=x_scale)
    Wd, bd = on(xp, W, b)
    loss_sum, correct = fs.train_epoch(*on(xp, X, y), Wd, bd, rows=xp.asarray(rows), batch_size=2, lr=0.3,
                                       x_scale=x_scale)
    np.testing.assert_allclose(to_numpy(Wd), r_W, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(bd), r_b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(float(loss_sum) / len(rows), r_loss, rtol=1e-10)
    assert int(correct) == r_correct


@pytest.mark.parametrize("n", [1, 2, 3, 64, 255, 256, 257, 1000, 65537])
def test_the_epoch_permutation_is_a_permutation(n):
    """Every row once, in an order that depends on the seed and the epoch."""
    order = ref.permutation(n, 3, 2)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    if n >= 64:  # 64! orders: a match by chance is out of the question
        assert not np.array_equal(order, np.arange(n))
        assert not np.array_equal(order, ref.permutation(n, 3, 3))
        assert not np.array_equal(order, ref.permutation(n, 4, 2))


def test_train_epoch_shuffles_from_a_seed(xp):
    """seed=s, epoch=e visits every row once in reference.permutation(n, s, e)'s
    order: the same on every device, computed where the kernels run."""
    X, W, b, y, x_scale = make_problem(300, 8, 4, np.uint8, np.float64, seed=7)
    order = ref.permutation(300, 3, 2)
    r_W, r_b, _, _ = ref.train_epoch(X, y, order, W, b, [0.2] * 5, 64, x_scale=x_scale)
    Wd, bd = on(xp, W, b)
    fs.train_epoch(*on(xp, X, y), Wd, bd, seed=3, epoch=2, batch_size=64, lr=0.2, x_scale=x_scale)
    np.testing.assert_allclose(to_numpy(Wd), r_W, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(bd), r_b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("w_dtype", W_DTYPES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_backend_learning_rates_are_the_schedules(xp, schedule, w_dtype):
    """Each step's rate is schedules.learning_rate rounded once to W's dtype
    (on a GPU, to within an ulp).

    X = 0, W = b = 0, two classes, every label 0 and one batch of 4 rows: the
    softmax is (1/2, 1/2) exactly, db = (-1/2, 1/2), so one step leaves
    b = (rate / 2, -rate / 2) with no rounding, and 2 * b[0] is the rate used.
    """
    total = 1000
    for step in (0, 1, 333, 500, 999):
        W, b = xp.zeros((3, 2), w_dtype), xp.zeros(2, w_dtype)
        fs.train_epoch(xp.zeros((4, 3), w_dtype), xp.zeros(4, np.int64), W, b, rows=xp.arange(4), batch_size=4,
                       lr=0.7, schedule=schedule, total_steps=total, start_step=step)
        expected = w_dtype(learning_rate(kind_of(schedule), 0.7, total, step))
        rate = 2 * to_numpy(b)[0]
        if xp is np:
            assert rate == expected
        else:  # CUDA's double cos is within 2 ulp, not correctly rounded
            np.testing.assert_allclose(rate, expected, rtol=np.finfo(w_dtype).eps, atol=0)
        assert to_numpy(b)[1] == -to_numpy(b)[0] and not to_numpy(W).any()


def test_train_epoch_updates_any_layout_of_w_in_place():
    """A C-order W is copied for the kernels and written back; a Fortran-order one trains as it is."""
    X, W, b, y, x_scale = make_problem(100, 9, 3, np.float32, np.float32, seed=8)
    results = []
    for order in "CF":
        Wl, bl = np.array(W, order=order), b.copy()
        fs.train_epoch(X, y, Wl, bl, seed=0, batch_size=16, lr=0.1, x_scale=x_scale)
        results.append((Wl, bl))
    assert not np.array_equal(results[0][0], W)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


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


TRAIN = dict(zip(("X", "W", "b", "y"), GOOD[:4]))


@pytest.mark.parametrize("change,error,match", [
    (dict(), ValueError, "either rows .* or seed"),
    (dict(rows=np.arange(3), seed=0), ValueError, "either rows .* or seed"),
    (dict(rows=np.array([0, 10])), ValueError, r"rows holds row indices in \[0, 10\], outside \[0, 10\)"),
    (dict(rows=np.array([], np.int64)), ValueError, "rows must be a 1-D array of at least one row"),
    (dict(rows=np.zeros(3)), TypeError, "rows must hold integer row indices"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
    (dict(seed=0, batch_size=0), ValueError, "batch_size must be an integer >= 1, got 0"),
    (dict(seed=0, lr=float("nan")), ValueError, "lr must be a positive finite number, got nan"),
    (dict(seed=0, schedule="step"), ValueError, "schedule must be one of cosine, constant, got 'step'"),
    (dict(seed=0, total_steps=0), ValueError, "total_steps must be an integer >= 1"),
    (dict(seed=0, start_step=2**63), ValueError, r"start_step must be an integer >= 0 and <= 4611686018427387904"),
    (dict(seed=0, total_steps=2**64), ValueError, r"total_steps must be an integer >= 1 and <= 4611686018427387904"),
    (dict(seed=0, weight_decay=-0.1), ValueError, "weight_decay must be a non-negative finite number"),
    (dict(seed=0, W=[[0.0] * 3] * 4), TypeError, "W must be a numpy array: train_epoch updates W and b in place"),
    (dict(seed=0, b=np.zeros(3, np.float64)), TypeError, "b has dtype float64; train_epoch updates it in place"),
])
def test_train_epoch_bad_input_raises_naming_the_argument(change, error, match):
    args = TRAIN | dict(batch_size=4, lr=0.1) | change
    X, W, b, y = (args.pop(name) for name in ("X", "W", "b", "y"))
    with pytest.raises(error, match=match):
        fs.train_epoch(X, y, W, b, **args)
