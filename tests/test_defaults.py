"""The defaults on data nobody tuned them for (issue 18): lr="auto" standardises float features for SGD.

Each table of bench/tables.py (features from 1e-3 to 1e4, a constant and a
1e6 column, an offset of 1000, scikit-learn's wine, breast cancer, digits
and iris) must score within 0.02 of LogisticRegression()'s defaults without
a warning; a numeric lr that cannot work on X's scale must warn.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import fastsoftmax as fs
from bench.defaults import score
from bench.tables import synthetic, toy
from fastsoftmax.models import standardize
from fastsoftmax.models.standardize import Standardization, moments

TABLES = toy() | synthetic()


@pytest.mark.parametrize("name", TABLES)
def test_the_defaults_reach_scikit_learns_accuracy_without_a_warning(name):
    X, y = TABLES[name]
    expected, _ = score(LogisticRegression, X, y)  # LogisticRegression may warn on unscaled tables
    got, warned = score(fs.SoftmaxRegression, X, y)
    assert not warned, name
    assert got >= expected - 0.02, (name, got, expected)


def test_a_step_too_large_for_the_features_warns_and_names_the_remedy():
    X, y = TABLES["scale 1"]
    with pytest.warns(ConvergenceWarning, match=r"lr=0.5 is likely too large.*standardise.*lbfgs"):
        fs.SoftmaxRegression(lr=0.5).fit(X * 50, y)  # a loss that stays high, but does not run away


def test_a_step_that_makes_the_loss_run_away_stops_the_fit_at_once():
    X, y = TABLES["wine"]  # features up to ~1700
    with pytest.raises(fs.TrainingDivergedError, match=r"epoch [12]: the loss ran away .* lr=0.5"):
        fs.SoftmaxRegression(lr=0.5).fit(X, y)


def test_no_warning_on_well_scaled_data_at_a_numeric_lr():
    X, y = TABLES["scale 1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fs.SoftmaxRegression(lr=0.5).fit(X, y)


def test_the_warning_needs_more_than_two_epochs():
    X, y = TABLES["scale 1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fs.SoftmaxRegression(lr=0.5, epochs=2).fit(X * 50, y)
        fs.SoftmaxRegression(lr=0.5).partial_fit(X * 50, y, classes=np.unique(y))


def test_partial_fit_under_auto_decays_its_rate_and_reaches_sgdclassifier(  # the tester's case
        fashion_mnist):
    """10 chunks of 1000 Fashion-MNIST images through partial_fit: under lr="auto" each pass steps at
    0.5 / (1 + rows seen / 1000), and the model ends at least as accurate on the test set as
    scikit-learn's SGDClassifier(loss="log_loss").partial_fit on the same chunks (at a constant 0.5
    the accuracy swung between 0.35 and 0.77 and ended at 0.60)."""
    from sklearn.linear_model import SGDClassifier

    data = fashion_mnist
    ours, theirs = fs.SoftmaxRegression(), SGDClassifier(loss="log_loss", random_state=0)
    for chunk in range(10):
        rows = slice(chunk * 1000, (chunk + 1) * 1000)
        ours.partial_fit(data.x_train[rows], data.y_train[rows], classes=np.arange(10))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            theirs.partial_fit(data.x_train[rows] / 255.0, data.y_train[rows], classes=np.arange(10))
    assert [r["lr"] for r in ours.history_] == pytest.approx([0.5 / (1 + p) for p in range(10)], rel=1e-6)
    assert ours.score(data.x_test, data.y_test) >= theirs.score(data.x_test / 255.0, data.y_test)


def test_auto_is_sgd_at_lr_half_on_the_standardised_features():
    """The model fitted under lr="auto" is, mapped to X's units, the model lr=0.5 fits on z."""
    X, y = TABLES["offset +1000"]
    auto = fs.SoftmaxRegression().fit(X, y)
    mean, std = X.mean(axis=0), X.std(axis=0)
    on_z = fs.SoftmaxRegression(lr=0.5, batch_size=auto.batch_size_).fit(((X - mean) / std).astype(np.float32), y)
    assert auto.lr_ == 0.5 and auto.batch_size_ == len(X) // 16 and auto.coef_.dtype == np.float64
    np.testing.assert_allclose(auto.feature_mean_, mean)
    np.testing.assert_allclose(auto.feature_scale_, 1 / std)
    np.testing.assert_allclose(auto.coef_, on_z.coef_ / std, rtol=1e-5, atol=1e-6 * np.abs(auto.coef_).max())
    np.testing.assert_allclose(auto.decision_function(X), on_z.decision_function((X - mean) / std), atol=1e-3)
    assert [r["lr"] for r in auto.history_] == [r["lr"] for r in on_z.history_]
    assert auto.history_[0]["batch_size"] == auto.batch_size_


def test_x_in_memory_is_standardised_once_per_fit(monkeypatch):
    calls = []
    apply = Standardization.apply
    monkeypatch.setattr(Standardization, "apply", lambda self, xp, X: calls.append(len(X)) or apply(self, xp, X))
    X, y = TABLES["scale 1"]
    fs.SoftmaxRegression(epochs=4).fit(X, y)
    assert calls == [len(X)]  # not once an epoch: that cost more than the epochs themselves


def test_uint8_pixels_keep_their_path():
    """uint8 X is not standardised: with enough rows, auto is lr=0.5 on X / 255 to the bit."""
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (16 * 256 + 7, 20), dtype=np.uint8), rng.integers(0, 3, 16 * 256 + 7)
    auto, half = fs.SoftmaxRegression(epochs=2).fit(X, y), fs.SoftmaxRegression(epochs=2, lr=0.5).fit(X, y)
    np.testing.assert_array_equal(auto.coef_, half.coef_)
    assert auto.feature_mean_ is None and auto.batch_size_ == 256 and auto.coef_.dtype == np.float32


def test_a_numeric_lr_trains_on_x_as_given():
    X, y = TABLES["scale 1"]
    model = fs.SoftmaxRegression(lr=0.1, batch_size=64).fit(X, y)
    assert model.feature_mean_ is None and model.lr_ == 0.1 and model.batch_size_ == 64
    assert model.coef_.dtype == np.float32


def test_partial_fit_keeps_the_first_calls_standardisation_and_a_file_keeps_it(tmp_path):
    X, y = TABLES["scales 1e-3..1e4"]
    model = fs.SoftmaxRegression().partial_fit(X[:300], y[:300], classes=np.unique(y))
    mean = model.feature_mean_.copy()
    np.testing.assert_allclose(mean, X[:300].mean(axis=0))
    model.partial_fit(X[300:], y[300:])
    np.testing.assert_array_equal(model.feature_mean_, mean)
    model.save(tmp_path / "m.npz")
    loaded = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.feature_mean_, mean)
    np.testing.assert_array_equal(loaded.feature_scale_, model.feature_scale_)
    a, b = model.partial_fit(X[300:], y[300:]), loaded.partial_fit(X[300:], y[300:])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert model.score(X, y) > 0.6


def test_a_refit_takes_the_new_datas_standardisation():
    X, y = TABLES["scale 1"]
    model = fs.SoftmaxRegression(warm_start=True).fit(X, y)
    model.fit(X * 100 + 5, y)
    np.testing.assert_allclose(model.feature_mean_, X.mean(axis=0) * 100 + 5)
    assert model.score(X * 100 + 5, y) > 0.7
    lbfgs = fs.SoftmaxRegression().fit(X, y).set_params(solver="lbfgs").fit(X, y)
    assert not hasattr(lbfgs, "feature_mean_") and not hasattr(lbfgs, "lr_")


def test_a_model_file_with_bad_standardisation_is_refused(tmp_path):
    X, y = TABLES["scale 1"]
    fs.SoftmaxRegression().fit(X, y).save(tmp_path / "m.npz")
    fields = dict(np.load(tmp_path / "m.npz"))
    fields["feature_scale"] = -fields["feature_scale"]
    np.savez(tmp_path / "bad.npz", **fields)
    with pytest.raises(ValueError, match="feature_mean and feature_scale"):
        fs.SoftmaxRegression.load(tmp_path / "bad.npz")
    del fields["feature_mean"]
    np.savez(tmp_path / "half.npz", **fields)
    with pytest.raises(ValueError, match="feature_mean and feature_scale"):
        fs.SoftmaxRegression.load(tmp_path / "half.npz")


# ---- standardize.py against plain NumPy ----


def test_moments_by_row_chunks_are_numpys(monkeypatch):
    monkeypatch.setattr(standardize, "CHUNK_BYTES", 8 * 3 * 7)  # 7 rows of 3 float64 features a chunk
    X = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32) * [1e-3, 1, 1e4] + [0, 1000, 0]
    mean, std = moments(np, X)
    np.testing.assert_allclose(mean, X.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, X.astype(np.float64).std(axis=0), rtol=1e-10)
    Z = Standardization.from_moments(np, mean, std, 1.0, X.dtype).apply(np, X)
    assert Z.dtype == np.float32 and Z.flags.c_contiguous
    np.testing.assert_allclose(Z, (X - mean) / std, rtol=1e-5, atol=1e-5)


def test_constant_features_keep_scale_one():
    X = np.c_[np.full(10, 7.0), np.full(10, 1e9) + np.arange(10) * 1e-7, np.arange(10.0)]
    standard = Standardization.from_moments(np, *moments(np, X), 1.0, X.dtype)
    np.testing.assert_array_equal(standard.scale[:2], [1.0, 1.0])  # the 2nd varies by rounding noise only
    assert standard.scale[2] == pytest.approx(1 / np.arange(10.0).std())


def test_features_whose_variance_overflows_are_named():
    X, y = np.array([[1e300, 1.0], [-1e300, 2.0], [1e300, 3.0]]), np.array([0, 1, 0])
    with pytest.raises(ValueError, match="too large to standardise.*numeric lr"):
        fs.SoftmaxRegression().fit(X, y)


def test_one_row_and_a_float32_constant_column():
    model = fs.SoftmaxRegression().fit(np.array([[3.0, 4.0]]), ["a"], classes=["a", "b"])
    assert model.batch_size_ == 1 and model.predict(np.array([[0.0, 0.0]]))[0] == "a"
    X = np.c_[np.full(40, 1000, np.float32) + np.float32(1e-4) * (np.arange(40) % 2), np.arange(40)].astype(np.float32)
    standard = Standardization.from_moments(np, *moments(np, X), 1.0, X.dtype)
    assert standard.scale[0] == 1.0  # varies by float32 rounding at 1000 only: constant


@pytest.mark.parametrize("x_scale", [1.0, 1 / 255])
def test_the_weight_maps_keep_the_logits_and_invert_each_other(x_scale):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 5)) * [1, 10, 1e3, 1e-2, 5] + [0, 100, -5, 3, 1e4]
    standard = Standardization.from_moments(np, *moments(np, X), x_scale, X.dtype)
    V, c = rng.normal(size=(4, 5)), rng.normal(size=4)
    W, b = standard.to_raw(np, V, c, np.float64)
    Z = (X - standard.mean) * standard.scale
    np.testing.assert_allclose((X * x_scale) @ W.T + b, Z @ V.T + c, rtol=1e-9, atol=1e-9)
    back = standard.from_raw(np, W, b, np.float64)
    np.testing.assert_allclose(back[0], V, rtol=1e-12)
    np.testing.assert_allclose(back[1], c, rtol=1e-9, atol=1e-9)


@pytest.mark.cuda
def test_auto_on_cuda_matches_the_cpu(cupy_module):
    X, y = TABLES["constant + 1e6 column"]
    cpu = fs.SoftmaxRegression(epochs=3).fit(X, y)
    gpu = fs.SoftmaxRegression(epochs=3, device="cuda").fit(cupy_module.asarray(X), cupy_module.asarray(y))
    np.testing.assert_allclose(gpu.feature_scale_, cpu.feature_scale_, rtol=1e-12)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-3, atol=1e-4 * np.abs(cpu.coef_).max())
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.01
