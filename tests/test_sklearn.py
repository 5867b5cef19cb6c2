"""SoftmaxRegression as a scikit-learn citizen: check_estimator, pipelines, grid search, any labels,
pickling, the input scale, and solver="lbfgs" against LogisticRegression."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import fastsoftmax as fs
from fastsoftmax.models.estimator import FORMAT

from test_estimator import blobs

# Checks that cannot pass, with the reason (check_estimator fails on a check listed here that passes,
# so the list cannot go stale). lbfgs: none.
EXPECTED_FAILED_CHECKS = {}
# SGD visits other batches when a row is repeated than when it weighs 2: the two agree in expectation
# (tests/test_weights.py), not to the check's tolerance.
SGD_FAILED_CHECKS = {
    check: "SGD: a weight of 2 trains as a duplicated row in expectation, not exactly"
    for check in ("check_sample_weight_equivalence_on_dense_data", "check_sample_weight_equivalence_on_sparse_data")
}


def test_check_estimator():
    check_estimator(fs.SoftmaxRegression(), expected_failed_checks=SGD_FAILED_CHECKS)


def test_check_estimator_lbfgs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_estimator(fs.SoftmaxRegression(solver="lbfgs"), expected_failed_checks=EXPECTED_FAILED_CHECKS)


def problem(n=600, d=12, k=3, seed=0):
    X, y = make_classification(n_samples=n, n_features=d, n_informative=6, n_classes=k, random_state=seed)
    return train_test_split(X, y, test_size=0.25, random_state=seed)


def test_pipeline_in_cross_val_score_and_grid_search():
    X, _, y, _ = problem()
    pipe = make_pipeline(StandardScaler(), fs.SoftmaxRegression(epochs=5, device="cpu"))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6
    grid = GridSearchCV(pipe, {"softmaxregression__lr": [0.05, 0.5],
                               "softmaxregression__weight_decay": [0.0, 1e-3]}, cv=3)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"softmaxregression__lr", "softmaxregression__weight_decay"}
    assert grid.best_score_ > 0.6 and len(grid.cv_results_["params"]) == 4


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu", "fox"]), np.array([-7, 3, 10, 2000]),
                                    np.array([1.0, 2.0, 5.0, 9.0])], ids=["strings", "gappy ints", "floats"])
def test_any_labels_round_trip_through_fit_predict_save_load(labels, tmp_path):
    X, y = blobs(800)
    named = labels[y]
    model = fs.SoftmaxRegression(epochs=3, device="cpu").fit(X, named)
    assert list(model.classes_) == sorted(labels) and model.coef_.shape == (4, 20)
    predicted = model.predict(X)
    assert predicted.dtype == labels.dtype and np.mean(predicted == named) > 0.9
    assert model.score(X, named) == np.mean(predicted == named)
    model.save(tmp_path / "m.npz")
    loaded = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(X), predicted)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:  # no pickle: the labels' own dtype
        assert str(f["format"]) == FORMAT and f["classes"].dtype == model.classes_.dtype


def test_labels_3_and_7_are_two_classes():
    X, y = blobs(400, k=2)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, np.where(y == 0, 3, 7))
    assert list(model.classes_) == [3, 7] and model.coef_.shape == (2, 20)
    assert model.decision_function(X).shape == (400,)
    assert set(model.predict(X)) <= {3, 7}


def test_classes_argument_takes_labels_absent_from_y():
    X, y = blobs(300, k=3)
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, np.array(list("abc"))[y], classes=list("abcd"))
    assert list(model.classes_) == list("abcd") and model.predict_proba(X).shape == (300, 4)


def test_numpy_scalars_are_hyperparameters(tmp_path):
    X, y = blobs(200)
    model = fs.SoftmaxRegression(lr=np.int64(1), epochs=np.int32(2), batch_size=np.uint16(64),
                                 weight_decay=np.float32(0.001), device="cpu").fit(X, y)
    model.save(tmp_path / "m.npz")  # the parameters are stored as JSON numbers
    assert fs.SoftmaxRegression.load(tmp_path / "m.npz").get_params()["lr"] == 1


def test_pickle_keeps_the_model():
    X, y = blobs(300)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, np.array(list("wxyz"))[y])
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    np.testing.assert_array_equal(again.coef_, model.coef_)


def test_dataframe_sets_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = blobs(200)
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(20)])
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns) and model.n_features_in_ == 20
    np.testing.assert_array_equal(model.predict(frame), model.predict(X))


def test_predict_log_proba_and_decision_function_agree_with_predict():
    X, y = blobs(300)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, y)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X)), model.predict_proba(X), rtol=1e-6)
    np.testing.assert_array_equal(model.classes_[model.decision_function(X).argmax(axis=1)], model.predict(X))


def test_partial_fit_is_one_pass_of_sgd():
    X, y = blobs(2000)
    model = fs.SoftmaxRegression(lr=0.5, batch_size=64, device="cpu")
    with pytest.raises(ValueError, match="classes must be given to the first call"):
        model.partial_fit(X, y)
    for chunk in range(4):
        rows = slice(chunk * 500, (chunk + 1) * 500)
        model.partial_fit(X[rows], y[rows], classes=np.arange(4))
    assert [r["epoch"] for r in model.history_] == [1, 2, 3, 4] and model.score(X, y) > 0.9
    with pytest.raises(ValueError, match="expecting 20 features"):
        model.partial_fit(X[:, :5], y)


def test_uint8_model_predicts_the_same_for_float32_pixels():
    """The scale is the model's: pixels as uint8 or as float32 0..255 are the same pixels."""
    X, y = blobs(1000)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, y)
    assert model.input_scale_ == pytest.approx(1 / 255)
    np.testing.assert_array_equal(model.predict(X.astype(np.float32)), model.predict(X))
    np.testing.assert_allclose(model.predict_proba(X.astype(np.float32)), model.predict_proba(X), rtol=1e-4)
    explicit = fs.SoftmaxRegression(epochs=2, input_scale=0.5, device="cpu").fit(X.astype(np.float32), y)
    assert explicit.input_scale_ == 0.5


def test_format_2_files_keep_their_by_dtype_meaning(tmp_path):
    X, y = blobs(300)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, y)
    params = {k: v for k, v in model.get_params().items() if k not in ("solver", "C", "tol", "max_iter",
                                                                        "input_scale")}
    import json

    np.savez(tmp_path / "old.npz", format=np.array("fastsoftmax.SoftmaxRegression/2"), coef=model.coef_,
             intercept=model.intercept_, classes=np.arange(4), dataset=np.array("blobs"),
             params=np.array(json.dumps(params)), history=np.array(json.dumps(model.history_)))
    old = fs.SoftmaxRegression.load(tmp_path / "old.npz")
    assert old.input_scale_ == "by dtype"
    np.testing.assert_array_equal(old.predict(X), model.predict(X))  # uint8: divided by 255, as /2 meant
    np.testing.assert_array_equal(old.predict(X / 255.0), model.predict(X))  # floats: as given, as /2 meant
    old.save(tmp_path / "again.npz")  # written as /3, the meaning kept
    assert fs.SoftmaxRegression.load(tmp_path / "again.npz").input_scale_ == "by dtype"


@pytest.mark.parametrize("params, match", [
    (dict(solver="sgd", C=0.5), "C=0.5 is the penalty of lbfgs and newton-cg"),
    (dict(solver="lbfgs", weight_decay=0.1), "weight_decay=0.1 is the sgd penalty"),
    (dict(solver="newton-cg", weight_decay=0.1), "weight_decay=0.1 is the sgd penalty; solver='newton-cg' takes C"),
    (dict(solver="sgd", fit_intercept=False), "fit_intercept=False needs solver='lbfgs' or 'newton-cg'"),
    (dict(solver="newton"), "solver must be one of sgd, lbfgs, newton-cg"),
    (dict(solver="lbfgs", C=-np.inf), "C must be a positive number or inf"),
    (dict(verbose=-1), "verbose must be an integer >= 0"),
    (dict(input_scale="pixels"), "input_scale must be 'auto' or a positive finite number"),
    (dict(tol=0.0), "tol must be a positive finite number"),
])
def test_solver_parameters_are_refused_where_they_do_not_apply(params, match):
    X, y = blobs(20)
    with pytest.raises(ValueError, match=match):
        fs.SoftmaxRegression(device="cpu", **params).fit(X, y)


# ---- solver="lbfgs" against LogisticRegression(solver="lbfgs") ----


@pytest.mark.parametrize("C", [1.0, 0.05])
def test_lbfgs_reaches_logistic_regressions_optimum(C):
    X, X_test, y, y_test = problem(n=800, d=15, k=4)
    X, X_test = StandardScaler().fit(X).transform(X), StandardScaler().fit(X).transform(X_test)
    ours = fs.SoftmaxRegression(solver="lbfgs", C=C, tol=1e-10, max_iter=5000, device="cpu").fit(X, y)
    theirs = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X, y)
    assert ours.coef_.dtype == np.float64  # float64 X: computed in float64
    # The intercept is not penalised, so it is fixed up to a constant: compare centred values.
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-3, atol=1e-3 * np.abs(theirs.coef_).max())
    centred = [b - b.mean() for b in (ours.intercept_, theirs.intercept_)]
    np.testing.assert_allclose(*centred, atol=1e-3 * np.abs(centred[1]).max() + 1e-6)
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.001
    assert ours.n_iter_ == len(ours.history_) and ours.history_[-1]["grad_max"] <= 1e-6


def test_lbfgs_objective_is_logistic_regressions():
    """The objective it records is scikit-learn's: the mean loss + ||W||^2 / (2 C n)."""
    X, _, y, _ = problem(n=300, d=8, k=3)
    ours = fs.SoftmaxRegression(solver="lbfgs", C=0.3, max_iter=3, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
    logits = X @ ours.coef_.T + ours.intercept_
    logits -= logits.max(axis=1, keepdims=True)
    mean_loss = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(y)), y])
    expected = mean_loss + (ours.coef_ ** 2).sum() / (2 * 0.3 * len(y))
    assert ours.history_[-1]["loss"] == pytest.approx(expected, rel=1e-10)


def test_lbfgs_warns_like_logistic_regression_when_max_iter_stops_it():
    X, _, y, _ = problem()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        fs.SoftmaxRegression(solver="lbfgs", max_iter=2, device="cpu").fit(X, y)


def test_lbfgs_ctrl_c_keeps_the_last_iterate():
    X, _, y, _ = problem()
    seen = []

    def stop(model, record):
        seen.append(model.coef_.copy())
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    model = fs.SoftmaxRegression(solver="lbfgs", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, callback=stop)
    assert len(model.history_) == 3
    np.testing.assert_array_equal(model.coef_, seen[-1])
