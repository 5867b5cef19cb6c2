"""The full-batch solvers (solvers/lbfgs.py, solvers/newton.py) against scikit-learn's LogisticRegression:
- newton-cg's iterates are scikit-learn's newton-cg's (same iterations, coefficients within 1e-8 on
  converged runs) on dense float64, uint8 pixels, CSR, with sample weights, without an intercept, at
  C = inf, on a Dask X's chunks and on the CUDA backend (the emulator where there is no GPU);
- the options a drop-in replacement needs, for both solvers: warm_start (continuing from coef_ and
  intercept_ as scikit-learn's warm start does), fit_intercept=False, C=np.inf, n_iter_'s shape, verbose;
- the Hessian-vector product against finite differences of the fused gradient, on both backends.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import fastsoftmax as fs
from fastsoftmax.solvers.newton import conjugate_gradient

SOLVERS = ["lbfgs", "newton-cg"]


def problem(n=500, d=10, k=4, seed=0, flip_y=0.1):
    X, y = make_classification(n_samples=n, n_features=d, n_informative=6, n_classes=k, flip_y=flip_y,
                               random_state=seed)
    return X, y


def sklearn_fit(X, y, solver="newton-cg", sample_weight=None, **params):
    params = {"tol": 1e-10, "max_iter": 1000} | params
    return LogisticRegression(solver=solver, **params).fit(X, y, sample_weight=sample_weight)


def ours_fit(X, y, solver="newton-cg", sample_weight=None, **params):
    params = {"tol": 1e-10, "max_iter": 1000, "device": "cpu"} | params
    return fs.SoftmaxRegression(solver=solver, **params).fit(X, y, sample_weight=sample_weight)


def assert_same_model(ours, theirs, rtol):
    scale = np.abs(theirs.coef_).max()
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=rtol, atol=rtol * max(1.0, scale))


@pytest.mark.parametrize("C", [1.0, 0.05, np.inf])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_newton_cg_takes_scikit_learns_iterates(C, fit_intercept):
    X, y = problem(flip_y=0.3)  # noisy labels: an optimum exists without a penalty
    ours = ours_fit(X, y, C=C, fit_intercept=fit_intercept)
    theirs = sklearn_fit(X, y, C=C, fit_intercept=fit_intercept)
    assert_same_model(ours, theirs, 1e-8)
    assert abs(int(ours.n_iter_[0]) - int(theirs.n_iter_[0])) <= 1
    assert ours.history_[-1]["grad_max"] <= 1e-10
    if not fit_intercept:
        assert not ours.intercept_.any()


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["uint8", "csr", "weights"])
def test_both_solvers_reach_scikit_learns_optimum(solver, kind):
    rng = np.random.default_rng(1)
    X, y = problem(n=400, d=30)
    w = None
    if kind == "uint8":
        X = rng.integers(0, 256, X.shape).astype(np.uint8)
        y = (X[:, :3].astype(int).sum(axis=1) * 4 // 766 + rng.integers(0, 2, len(y))) % 4
        ours = ours_fit(X, y, solver, input_scale=1 / 255)
        theirs = sklearn_fit(X / 255.0, y)
    else:
        if kind == "csr":
            X = sp.random(400, 300, density=0.05, format="csr", random_state=2) * 3
            y = rng.integers(0, 4, 400)
        else:
            w = rng.uniform(0.0, 3.0, len(y))
        ours, theirs = ours_fit(X, y, solver, sample_weight=w), sklearn_fit(X, y, sample_weight=w)
    assert_same_model(ours, theirs, 1e-6 if solver == "newton-cg" else 1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_warm_start_continues_from_the_fitted_weights_as_scikit_learns(solver):
    X, y = problem()
    ours = fs.SoftmaxRegression(solver=solver, max_iter=3, warm_start=True, device="cpu")
    theirs = LogisticRegression(solver=solver, max_iter=3, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 3 iterations each: stopped by max_iter
        runs = []
        for _ in range(3):
            runs.append(int(ours.fit(X, y).n_iter_[0]))
            theirs.fit(X, y)
            assert_same_model(ours, theirs, 1e-6 if solver == "newton-cg" else 1e-3)
    assert [r["epoch"] for r in ours.history_] == list(range(1, sum(runs) + 1)) and runs[0] == 3
    losses = [r["loss"] for r in ours.history_]
    assert all(a >= b for a, b in zip(losses, losses[1:]))  # each fit starts where the last one ended


@pytest.mark.parametrize("solver", SOLVERS)
def test_n_iter_is_shaped_as_scikit_learns_and_verbose_prints_each_iteration(solver, capsys):
    X, y = problem()
    ours = ours_fit(X, y, solver, tol=1e-4, verbose=1)
    theirs = sklearn_fit(X, y, solver, tol=1e-4)
    assert ours.n_iter_.shape == theirs.n_iter_.shape == (1,) and ours.n_iter_.dtype == theirs.n_iter_.dtype
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == ours.n_iter_[0] and lines[0].startswith("iteration 1: loss ")
    assert "max |gradient|" in lines[-1]
    assert isinstance(ours_fit(X, y, "sgd", epochs=2).n_iter_, int)  # as SGDClassifier's


def test_newton_cg_on_dask_chunks_matches_in_memory():
    da = pytest.importorskip("dask.array")
    X, y = problem(n=300)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    chunked = ours_fit(da.from_array(X, chunks=(70, -1)), da.from_array(y, chunks=70), sample_weight=w)
    assert_same_model(chunked, ours_fit(X, y, sample_weight=w), 1e-8)


@pytest.mark.cuda
def test_newton_cg_on_the_cuda_backend_matches_the_cpu(cupy_module):
    X, y = problem(n=200, d=8, k=3)
    X = X.astype(np.float32)  # float32 compute: the emulator's speed
    cpu = ours_fit(X, y, tol=1e-4)
    gpu = ours_fit(cupy_module.asarray(X), cupy_module.asarray(y), tol=1e-4, device="cuda")
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-3, atol=1e-3 * np.abs(cpu.coef_).max())


@pytest.mark.parametrize("xp", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)], indirect=True)
@pytest.mark.parametrize("sparse", [False, True])
def test_hessian_product_is_the_gradients_derivative(xp, sparse):
    rng = np.random.default_rng(3)
    n, d, k = 90, 12, 5
    X = sp.random(n, d, density=0.3, format="csr", random_state=3) if sparse else rng.standard_normal((n, d))
    W, b, V, vb = (rng.standard_normal(s) for s in ((d, k), k, (d, k), k))
    y, w = rng.integers(0, k, n), rng.uniform(0.1, 2.0, n)
    Xd = X if xp is np else (cupyx_csr(X) if sparse else xp.asarray(X))

    def gradient(t):
        _, _, dW, db = fs.linear_softmax_cross_entropy(Xd, *(xp.asarray(a) for a in (W + t * V, b + t * vb, y)),
                                                       sample_weight=xp.asarray(w))
        return np.concatenate([to_host(dW).ravel(), to_host(db)])

    h = 1e-5
    numeric = (gradient(h) - gradient(-h)) / (2 * h)
    HV, hb = fs.linear_softmax_hessian_product(Xd, *(xp.asarray(a) for a in (W, b, V, vb)),
                                               sample_weight=xp.asarray(w))
    np.testing.assert_allclose(np.concatenate([to_host(HV).ravel(), to_host(hb)]), numeric, rtol=1e-6, atol=1e-8)


def test_conjugate_gradient_is_scikit_learns():
    from sklearn.utils.optimize import _cg  # the rule newton.py follows, here as the reference

    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 20))
    H, g = A @ A.T + np.eye(20), rng.standard_normal(20)
    p = conjugate_gradient(lambda v: H @ v, g, tol=1e-12)
    np.testing.assert_allclose(H @ p, -g, atol=1e-9)
    for product, tol, steps in ((lambda v: H @ v, 1.0, 200), (lambda v: H @ v, 1e-12, 3), (lambda v: -v, 1e-12, 200)):
        np.testing.assert_allclose(conjugate_gradient(product, g, tol, steps),
                                   _cg(product, g, steps, tol, np, None), rtol=1e-12)


def test_hessian_product_refuses_a_direction_of_another_shape():
    X, W, b = np.ones((3, 4)), np.zeros((4, 2)), np.zeros(2)
    with pytest.raises(ValueError, match=r"V, vb must have the shapes of W and b, \(4, 2\) and \(2,\), got \(4, 3\)"):
        fs.linear_softmax_hessian_product(X, W, b, np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="must be finite"):
        fs.linear_softmax_hessian_product(X, W, b, np.full((4, 2), np.nan), np.zeros(2))
    with pytest.raises(ValueError, match=r"probabilities must be linear_softmax\(X, W, b\)'s \(3, 2\)"):
        fs.linear_softmax_hessian_product(X, W, b, W, b, probabilities=np.full((2, 2), 0.5))


def test_newton_steps_keep_the_softmax_only_where_it_is_small():
    from fastsoftmax.solvers.objective import keeps_probabilities

    assert keeps_probabilities(np.zeros((100, 784), np.uint8), 10, np.float64)  # 80 bytes a row against 784
    assert keeps_probabilities(np.zeros((100, 64), np.float32), 1000, np.float32)  # 400 kB: under 64 MiB
    assert not keeps_probabilities(np.zeros((20000, 64), np.float32), 1000, np.float32)  # 80 MB, X 5 MB


def cupyx_csr(X):
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(X)


def to_host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)
