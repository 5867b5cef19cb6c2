"""SoftmaxRegression and SoftmaxRegressionSweep on sparse X: everything dense X does, never densified."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import fastsoftmax as fs
from fastsoftmax.arrays import CSR


def text_problem(n=800, k=3, seed=0):
    """A planted sparse problem: n rows of 300 columns at 3%, k classes."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, 300, density=0.03, format="csr", random_state=seed)
    y = (X @ rng.standard_normal((300, k)) * 4 + rng.gumbel(size=(n, k))).argmax(axis=1)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4 :], y[n * 3 // 4 :]


def test_lbfgs_on_sparse_equals_lbfgs_on_its_dense_copy():
    X, y, X_test, _ = text_problem()
    params = dict(solver="lbfgs", tol=1e-8, max_iter=500)
    sparse = fs.SoftmaxRegression(**params).fit(X, y)
    dense = fs.SoftmaxRegression(**params).fit(X.toarray(), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sparse.predict_proba(X_test), dense.predict_proba(X_test.toarray()), rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(sparse.decision_function(X_test), dense.decision_function(X_test.toarray()),
                               rtol=1e-6, atol=1e-8)


def test_sgd_on_sparse_scales_columns_without_centring(monkeypatch):
    """lr="auto": the columns divided by their largest magnitude (MaxAbsScaler), and the model comes back
    on X's own units; X is never made dense."""
    X, y, X_test, y_test = text_problem(seed=1)
    monkeypatch.setattr(sp.csr_matrix, "toarray", lambda *a, **k: pytest.fail("X was densified"))
    model = fs.SoftmaxRegression(epochs=5).fit(X, y, eval_set=(X_test, y_test))
    np.testing.assert_array_equal(model.feature_mean_, 0)
    np.testing.assert_allclose(model.feature_scale_, 1 / np.where(abs(X).max(axis=0).toarray()[0] > 0,
                                                                abs(X).max(axis=0).toarray()[0], 1))
    assert model.lr_ > 1  # the sparse rate: SPARSE_STEP / mean squared norm
    assert model.history_[-1]["test_acc"] == pytest.approx(model.score(X_test, y_test))
    reference = LogisticRegression().fit(X, y).score(X_test, y_test)
    assert model.score(X_test, y_test) > reference - 0.05


@pytest.mark.parametrize("fmt", ["csc", "coo"])
def test_other_formats_fit_and_predict(fmt):
    X, y, X_test, y_test = text_problem(seed=2)
    csr = fs.SoftmaxRegression(epochs=3).fit(X, y)
    other = fs.SoftmaxRegression(epochs=3).fit(X.asformat(fmt), y)
    np.testing.assert_array_equal(other.coef_, csr.coef_)
    np.testing.assert_array_equal(other.predict(X_test.asformat(fmt)), csr.predict(X_test))


def test_partial_fit_save_load_and_sweep_on_sparse(tmp_path):
    X, y, X_test, y_test = text_problem(seed=3)
    model = fs.SoftmaxRegression()
    for lo in range(0, 600, 200):
        model.partial_fit(X[lo : lo + 200], y[lo : lo + 200], classes=3)
    assert np.isfinite(model.coef_).all() and model.score(X_test, y_test) > 0.4
    model.save(tmp_path / "m.npz")
    loaded = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    sweep = fs.SoftmaxRegressionSweep(lrs=(0.2, 0.5), weight_decays=(0.0,), epochs=3).fit(X, y)
    assert len(sweep.estimators_) == 2 and sweep.best_estimator_.score(X_test, y_test) > 0.4


def test_text_in_a_pipeline():
    docs = ["cheap pills now", "meeting at noon", "win cash now", "lunch at noon", "cash prize now",
            "project meeting notes"] * 20
    labels = ["spam", "ham", "spam", "ham", "spam", "ham"] * 20
    pipe = make_pipeline(TfidfVectorizer(), fs.SoftmaxRegression()).fit(docs, labels)
    assert list(pipe.predict(["free cash now", "notes of the meeting"])) == ["spam", "ham"]


def test_sparse_x_must_match_the_model():
    X, y, X_test, _ = text_problem(seed=4)
    model = fs.SoftmaxRegression(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X_test[:, :100])
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fs.SoftmaxRegression().fit(bad, y)


@pytest.mark.cuda
def test_cupyx_sparse_fits_on_the_cuda_backend(cupy_module):
    import cupyx.scipy.sparse

    X, y, X_test, y_test = text_problem(n=160, seed=5)
    cpu = fs.SoftmaxRegression(solver="lbfgs", tol=1e-6, max_iter=50, device="cpu").fit(X, y)
    gpu = fs.SoftmaxRegression(solver="lbfgs", tol=1e-6, max_iter=50, device="cuda")
    gpu.fit(cupyx.scipy.sparse.csr_matrix(X), cupy_module.asarray(y))
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-5, atol=1e-7)
    proba = gpu.predict_proba(cupyx.scipy.sparse.csr_matrix(X_test))
    assert isinstance(proba, cupy_module.ndarray)
    np.testing.assert_allclose(proba.get(), cpu.predict_proba(X_test), rtol=1e-5, atol=1e-7)
    sgd = fs.SoftmaxRegression(epochs=2, device="cuda").fit(cupyx.scipy.sparse.csr_matrix(X), cupy_module.asarray(y))
    assert np.isfinite(sgd.coef_).all()


def test_csr_take_rows():
    X, *_ = text_problem(seed=6)
    csr = fs.ops.validation.check_sparse(X, "X", np)
    rows = np.array([5, 0, 5, 599])
    taken = csr.take(rows, np)
    assert isinstance(taken, CSR)
    np.testing.assert_array_equal(sp.csr_matrix(taken[:3], shape=taken.shape).toarray(), X[rows].toarray())
