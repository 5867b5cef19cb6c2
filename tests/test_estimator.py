"""SoftmaxRegression: learning, determinism, the estimator API, save/load, resume."""

import inspect

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax.backend import DeviceError, cuda_available
from fastsoftmax.hyperparameters import HYPERPARAMETERS


def blobs(n, d=20, k=4, seed=0):
    """uint8 'images' whose class sets the brightness pattern: learnable, not trivial."""
    centres = np.random.default_rng(123).integers(0, 256, (k, d))  # the same for every seed
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = np.clip(centres[y] + rng.normal(0, 60, (n, d)), 0, 255).astype(np.uint8)
    return X, y.astype(np.uint8)


def test_fit_learns_and_reports_history():
    X, y = blobs(2000)
    Xt, yt = blobs(500, seed=1)
    model = fs.SoftmaxRegression(epochs=5, batch_size=64, device="cpu")
    assert model.fit(X, y, eval_set=(Xt, yt)) is model
    assert model.coef_.shape == (4, 20) and model.intercept_.shape == (4,)
    assert [r["epoch"] for r in model.history_] == [1, 2, 3, 4, 5]
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]
    assert model.score(Xt, yt) > 0.9
    assert model.history_[-1]["test_acc"] == pytest.approx(model.score(Xt, yt))
    assert model.predict(Xt).shape == (500,)
    np.testing.assert_allclose(model.predict_proba(Xt).sum(axis=1), 1, rtol=1e-5)


def test_float_input_is_not_rescaled():
    X, y = blobs(1000)
    a = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, y)
    b = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X / 255.0, y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.predict(X), b.predict(X / 255.0))


def test_same_seed_same_model_other_seed_other_model():
    X, y = blobs(1000)
    fit = lambda seed: fs.SoftmaxRegression(epochs=2, seed=seed, device="cpu").fit(X, y).coef_
    np.testing.assert_array_equal(fit(0), fit(0))
    assert not np.array_equal(fit(0), fit(1))


def test_save_load_roundtrip(tmp_path):
    X, y = blobs(500)
    model = fs.SoftmaxRegression(epochs=2, lr=0.3, device="cpu").fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


def test_interrupted_run_resumes_to_the_same_model(tmp_path):
    X, y = blobs(1000)
    full = fs.SoftmaxRegression(epochs=4, device="cpu").fit(X, y)

    def stop_after_two(model, record):
        model.save(tmp_path / "ckpt.npz")
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fs.SoftmaxRegression(epochs=4, device="cpu").fit(X, y, callback=stop_after_two)
    resumed = fs.SoftmaxRegression.load(tmp_path / "ckpt.npz").set_params(warm_start=True)
    assert len(resumed.history_) == 2
    resumed.fit(X, y)
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.coef_, full.coef_)


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_load_rejects_files_that_are_not_models(tmp_path, content):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, coef=np.zeros((3, 4)))  # an npz, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a fastsoftmax model file"):
        fs.SoftmaxRegression.load(path)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        fs.SoftmaxRegression.load(tmp_path / "missing.npz")


def test_hyperparameters_are_the_tables():
    """__init__ takes exactly the table's hyper-parameters, in its order, with its defaults."""
    signature = inspect.signature(fs.SoftmaxRegression)
    assert [(n, p.default) for n, p in signature.parameters.items()] == [(p.name, p.default) for p in HYPERPARAMETERS]
    assert fs.SoftmaxRegression().get_params() == {p.name: p.default for p in HYPERPARAMETERS}


def test_fit_never_changes_arrays_the_caller_holds():
    """coef_ of one epoch stays as it was after the next (a callback may keep it),
    and a warm start leaves the arrays it started from untouched."""
    X, y = blobs(500)
    kept = []
    model = fs.SoftmaxRegression(epochs=3, device="cpu")
    model.fit(X, y, callback=lambda m, record: kept.append((m.coef_, m.coef_.copy(), m.intercept_.copy())))
    for coef, copy, _ in kept:
        np.testing.assert_array_equal(coef, copy)
    assert not np.array_equal(kept[0][0], kept[-1][0])
    before = model.coef_, model.coef_.copy()
    model.set_params(epochs=5, warm_start=True).fit(X, y)
    np.testing.assert_array_equal(before[0], before[1])
    assert not np.array_equal(model.coef_, before[1])


@pytest.mark.parametrize("params,match", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(epochs=2.5), "epochs must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=0.0), "lr must be a positive finite number"),
    (dict(lr=float("nan")), "lr must be a positive finite number"),
    (dict(weight_decay=-1.0), "weight_decay must be a non-negative finite number"),
    (dict(schedule="step"), "schedule must be one of cosine, constant"),
    (dict(device="tpu"), "device must be one of auto, cpu, cuda"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(warm_start="yes"), "warm_start must be True or False"),
])
def test_bad_parameters_are_named(params, match):
    X, y = blobs(10)
    with pytest.raises(ValueError, match=match):
        fs.SoftmaxRegression(**params).fit(X, y)


def test_bad_data_is_named():
    X, y = blobs(10)
    with pytest.raises(ValueError, match=r"y must have shape \(10,\)"):
        fs.SoftmaxRegression(device="cpu").fit(X, y[:5])
    with pytest.raises(ValueError, match="eval_set X has 3 features, but X has 20"):
        fs.SoftmaxRegression(device="cpu").fit(X, y, eval_set=(X[:, :3], y))
    with pytest.raises(ValueError, match="not fitted yet"):
        fs.SoftmaxRegression().predict(X)


@pytest.mark.skipif(cuda_available(), reason="checks the error where CUDA is missing")
def test_cuda_without_gpu_is_a_clear_error():
    X, y = blobs(10)
    with pytest.raises(DeviceError, match="device 'cuda' needs"):
        fs.SoftmaxRegression(device="cuda").fit(X, y)
