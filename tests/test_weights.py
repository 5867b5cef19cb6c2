"""sample_weight and class_weight in SoftmaxRegression: scikit-learn's weighted objective (lbfgs), a
duplicated row's step in expectation (SGD), and the errors."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref


def problem(n=300, d=8, k=3, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d * 10, density=0.1, format="csr", random_state=seed) if sparse else rng.standard_normal((n, d))
    y = (X @ rng.standard_normal((X.shape[1], k)) * 2 + rng.gumbel(size=(n, k))).argmax(axis=1)
    return X, y, rng.random(n) * 2


@pytest.mark.parametrize("sparse", [False, True])
def test_lbfgs_weight_two_is_a_duplicated_row(sparse):
    X, y, _ = problem(sparse=sparse)
    w = np.ones(len(y))
    w[[3, 10, 50]] = 2
    twice = np.r_[np.arange(len(y)), 3, 10, 50]
    params = dict(solver="lbfgs", tol=1e-10, max_iter=2000)
    weighted = fs.SoftmaxRegression(**params).fit(X, y, sample_weight=w)
    repeated = fs.SoftmaxRegression(**params).fit(X[twice], y[twice])
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 2: 0.5}])
def test_lbfgs_matches_logistic_regression_with_weights(sparse, class_weight):
    X, y, w = problem(seed=1, sparse=sparse)
    ours = fs.SoftmaxRegression(solver="lbfgs", tol=1e-10, max_iter=2000, class_weight=class_weight)
    ours.fit(X, y, sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = LogisticRegression(tol=1e-10, max_iter=5000, class_weight=class_weight).fit(X, y, sample_weight=w)
    scale = np.abs(theirs.coef_).max()
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-3, atol=1e-3 * scale)
    assert ours.score(X, y, sample_weight=w) == pytest.approx(theirs.score(X, y, sample_weight=w))


@pytest.mark.parametrize("sparse", [False, True])
def test_sgd_weights_step_as_duplicated_rows_in_expectation(sparse):
    """A minibatch's gradient is, in expectation over the batches, the full batch's: so one full-batch
    epoch with weights must equal one on the rows repeated (weight 2: twice, 0: left out)."""
    X, y, _ = problem(n=60, seed=2, sparse=sparse)
    w = np.ones(60)
    w[:10], w[10:15] = 2, 0
    rows = np.r_[np.arange(15, 60), np.arange(10), np.arange(10)]
    params = dict(lr=0.5, batch_size=100, epochs=1, schedule="constant")
    weighted = fs.SoftmaxRegression(**params).fit(X, y, sample_weight=w)
    repeated = fs.SoftmaxRegression(**params).fit(X[rows], y[rows])
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-5, atol=1e-6)


def test_class_weight_balanced_is_refused_by_partial_fit_but_a_dict_is_taken():
    X, y, w = problem()
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        fs.SoftmaxRegression(class_weight="balanced").partial_fit(X, y, classes=3)
    model = fs.SoftmaxRegression(class_weight={1: 2.0}).partial_fit(X, y, classes=3, sample_weight=w)
    assert np.isfinite(model.coef_).all()


@pytest.mark.parametrize("weights,error,message", [
    (-np.ones(300), ValueError, "negative"),
    (np.zeros(300), ValueError, "zero for every row"),
    (np.ones(5), ValueError, "shape \\(300,\\)"),
    (np.array(["x"] * 300), TypeError, "numbers"),
])
def test_bad_weights_are_named(weights, error, message):
    X, y, _ = problem()
    for solver in ("sgd", "lbfgs"):
        with pytest.raises(error, match=message):
            fs.SoftmaxRegression(solver=solver).fit(X, y, sample_weight=weights)


def test_bad_class_weights_are_named():
    X, y, _ = problem()
    with pytest.raises(ValueError, match="label 7"):
        fs.SoftmaxRegression(class_weight={7: 1.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight must be"):
        fs.SoftmaxRegression(class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="class_weight must be"):
        fs.SoftmaxRegression(class_weight={0: -1.0}).fit(X, y)


def test_weights_reach_the_reference_epoch():
    """The estimator's weighted SGD epoch is the reference's (float64 X, no standardisation)."""
    X, y, w = problem(n=50, seed=3)
    model = fs.SoftmaxRegression(lr=0.3, batch_size=16, epochs=1, schedule="constant", seed=4)
    model.fit(X, y, sample_weight=w)
    W, b, *_ = ref.train_epoch(X, y, ref.permutation(50, 4, 0), np.zeros((8, 3)), np.zeros(3), [0.3] * 4, 16,
                               sample_weight=w)
    np.testing.assert_allclose(model.coef_, W.T, rtol=1e-4, atol=1e-5)
