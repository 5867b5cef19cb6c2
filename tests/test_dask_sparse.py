"""Dask arrays of scipy.sparse chunks (as da.map_blocks(sparse.csr_matrix) makes them) with both solvers,
and sample and class weights on Dask chunks."""

import numpy as np
import pytest
import scipy.sparse as sp

import fastsoftmax as fs

da = pytest.importorskip("dask.array")


def problem(n=600, d=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.03, format="csr", random_state=seed)
    y = (X @ rng.standard_normal((d, k)) * 4 + rng.gumbel(size=(n, k))).argmax(axis=1)
    chunks = da.from_array(X.toarray(), chunks=(n // 3, d)).map_blocks(sp.csr_matrix)
    return X, y, chunks, da.from_array(y, chunks=n // 3)


def test_lbfgs_on_sparse_chunks_equals_lbfgs_in_memory():
    X, y, Xd, yd = problem()
    chunked = fs.SoftmaxRegression(solver="lbfgs", tol=1e-8, max_iter=300).fit(Xd, yd)
    whole = fs.SoftmaxRegression(solver="lbfgs", tol=1e-8, max_iter=300).fit(X, y)
    np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-6, atol=1e-9)
    assert chunked.score(Xd, yd) == pytest.approx(whole.score(X, y))


def test_sgd_on_sparse_chunks_scales_by_the_columns_of_every_chunk():
    X, y, Xd, yd = problem(seed=1)
    model = fs.SoftmaxRegression(epochs=5).fit(Xd, yd)
    peak = abs(X).max(axis=0).toarray()[0]
    np.testing.assert_allclose(model.feature_scale_, 1 / np.where(peak > 0, peak, 1))
    assert model.lr_ > 1 and model.score(X, y) > 0.8
    numeric = fs.SoftmaxRegression(lr=2.0, epochs=2).fit(Xd, yd)  # chunks trained on their values as given
    assert np.isfinite(numeric.coef_).all()


def test_bad_values_in_a_sparse_chunk_are_named():
    X, y, _, _ = problem(seed=2)
    X = X.copy()
    X.data[-1] = np.inf
    Xd = da.from_array(X.toarray(), chunks=(200, 300)).map_blocks(sp.csr_matrix)
    with pytest.raises(ValueError, match="NaN or infinity"):
        fs.SoftmaxRegression().fit(Xd, y)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_weights_on_dask_chunks_match_weights_in_memory(class_weight):
    """lbfgs on chunks with sample_weight (a Dask array or a NumPy one) and class_weight: the in-memory
    fit's coefficients; one chunk of all-zero weights adds nothing."""
    X, y, Xd, yd = problem(seed=3)
    w = np.random.default_rng(0).random(len(y)) * 2
    w[:200] = 0
    params = dict(solver="lbfgs", tol=1e-8, max_iter=300, class_weight=class_weight)
    whole = fs.SoftmaxRegression(**params).fit(X, y, sample_weight=w)
    dense = da.from_array(X.toarray(), chunks=(150, X.shape[1]))  # dense chunks take weights alike
    for chunks, weights in ((Xd, w), (Xd, da.from_array(w, chunks=150)), (dense, w)):
        chunked = fs.SoftmaxRegression(**params).fit(chunks, yd, sample_weight=weights)
        np.testing.assert_allclose(chunked.coef_, whole.coef_, rtol=1e-6, atol=1e-9)
    sgd = fs.SoftmaxRegression(epochs=3, class_weight=class_weight).fit(Xd, yd, sample_weight=w)
    assert np.isfinite(sgd.coef_).all() and sgd.score(Xd, yd, sample_weight=w) > 0.5
    with pytest.raises(ValueError, match="negative"):
        fs.SoftmaxRegression().fit(Xd, yd, sample_weight=-w)
