"""SoftmaxRegression: learning, determinism, the estimator API, save/load, resume."""

import concurrent.futures
import inspect
import os
import threading

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax.io import npzfile
from fastsoftmax.io.modelfile import FORMAT
from fastsoftmax.ops.dispatch import DeviceError, cuda_available
from fastsoftmax.models.hyperparameters import HYPERPARAMETERS


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
    """input_scale="auto" divides uint8 X by 255 and takes float X as given (at a numeric lr, which
    trains on X as given: lr="auto" standardises float X, tests/test_defaults.py)."""
    X, y = blobs(1000)
    a = fs.SoftmaxRegression(epochs=2, lr=0.5, device="cpu").fit(X, y)
    b = fs.SoftmaxRegression(epochs=2, lr=0.5, device="cpu").fit(X / 255.0, y)
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


def test_an_unreadable_model_file_says_it_cannot_be_read_and_why(tmp_path, monkeypatch):
    """A file we may not open is not a bad model file: the error names it and the OS's reason."""
    path = tmp_path / "m.npz"
    X, y = blobs(100)
    fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads it anyway: what open() raises for anyone else
            def denied(file, *args, **kwargs):
                raise PermissionError(13, "Permission denied", str(file))

            monkeypatch.setattr(npzfile, "open", denied, raising=False)
        with pytest.raises(PermissionError) as info:
            fs.SoftmaxRegression.load(path)
    finally:
        path.chmod(0o644)
    assert str(info.value) == f"cannot read the model file {path}: Permission denied"
    assert info.value.errno == 13


def test_feature_names_survive_save_and_load(tmp_path):
    """The loaded model refuses a DataFrame of swapped columns as the fitted one does (it once
    scored it silently, 1.0 -> 0.475); a model fitted on an array stores no names."""
    pd = pytest.importorskip("pandas")
    X, y = blobs(300, d=4)
    frame = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(frame, y)
    model.save(tmp_path / "m.npz")
    loaded = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    assert loaded.feature_names_in_.dtype == object and list(loaded.feature_names_in_) == ["w", "x", "y", "z"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    for m in (model, loaded):
        with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
            m.score(frame[["x", "w", "y", "z"]], y)
    fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y).save(tmp_path / "plain.npz")
    assert not hasattr(fs.SoftmaxRegression.load(tmp_path / "plain.npz"), "feature_names_in_")


def test_save_refuses_feature_names_that_would_not_load(tmp_path):
    X, y = blobs(100, d=3)
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y)
    for names, problem in ((["a", "b", "a"], "its feature_names are not distinct"),
                           (["a", "b", "c\0"], "its feature names do not survive as strings")):
        model.feature_names_in_ = np.array(names, dtype=object)
        with pytest.raises(ValueError, match=f"not saving .*: {problem}"):
            model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


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
    (dict(lr=0.0), "lr must be 'auto' or a positive finite number"),
    (dict(lr=float("nan")), "lr must be 'auto' or a positive finite number"),
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
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[10, 5\]"):
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


# ---- hostile input: classes, sizes, non-finite values, divergence, crafted model files ----


def test_classes_sets_the_model_size_whatever_labels_occur():
    X, y = blobs(300)  # labels 0..3
    for classes in (10, range(10), np.arange(10), list(range(10))):
        model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y, classes=classes)
        assert model.coef_.shape == (10, 20) and list(model.classes_) == list(range(10))
    assert fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y).coef_.shape == (4, 20)  # as before
    with pytest.raises(ValueError, match=r"y holds labels that are not among the classes .*: array\(\[3\]"):
        fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y, classes=3)
    for bad in ([1, 2, 3], [1.0, 2.0, 3.0]):  # labels, but not all of y's
        with pytest.raises(ValueError, match="y holds labels that are not among the classes"):
            fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y, classes=bad)
    for bad in ("abc", 1, True, [[0, 1]], [0, 0, 1], [0.0, np.nan]):
        with pytest.raises(ValueError, match="classes must"):
            fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y, classes=bad)
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y, classes=10)
    with pytest.raises(ValueError, match="classes has 5 classes, but the fitted model has 10"):
        model.set_params(epochs=2, warm_start=True).fit(X, y, classes=5)


def test_a_warm_start_with_other_classes_names_the_labels_that_differ():
    """Same count, other labels: the message says which (it once said "10 classes, but ... has 10")."""
    X, y = blobs(300, k=10)
    labels = np.array(list("abcdefghij"))
    model = fs.SoftmaxRegression(epochs=1, warm_start=True, device="cpu").fit(X, labels[y], classes=labels)
    with pytest.raises(ValueError) as info:
        model.fit(X, labels[y], classes=list("abcdefghkl"))
    assert str(info.value) == ("classes has other labels than the 10 of the fitted model: 'k', 'l' not among "
                               "its classes; its 'i', 'j' missing from classes")
    with pytest.raises(ValueError, match="labels of another kind"):
        model.fit(X, labels[y], classes=10)


@pytest.mark.parametrize("top", [10**9, 2**40])
def test_a_huge_label_is_a_label_not_a_model_size(top):
    """Labels are labels: {0..3, top} is a 5-class model, never top + 1 rows of weights."""
    X, y = blobs(50)
    y = y.astype(np.int64)
    y[7] = top
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y)
    assert list(model.classes_) == [0, 1, 2, 3, top] and model.coef_.shape == (5, 20)
    assert set(model.predict(X)) <= {0, 1, 2, 3, top}
    with pytest.raises(ValueError, match="classes must number between 2 and"):
        fs.SoftmaxRegression(device="cpu").fit(X, y, classes=top + 1)


def test_non_finite_inputs_are_named_once_per_call():
    X, y = blobs(100)
    Xf = X.astype(np.float32)
    Xf[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        fs.SoftmaxRegression(device="cpu").fit(Xf, y)
    with pytest.raises(ValueError, match=r"Input eval_set X contains infinity"):
        fs.SoftmaxRegression(device="cpu").fit(X, y, eval_set=(np.where(Xf == Xf, Xf, np.inf), y))
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.predict(Xf)


def test_divergence_stops_at_the_last_finite_epoch():
    X, y = blobs(300)
    seen = []
    model = fs.SoftmaxRegression(epochs=60, lr=0.5, weight_decay=10.0, schedule="constant", device="cpu")
    with pytest.raises(fs.TrainingDivergedError) as info:
        model.fit(X, y, callback=lambda m, record: seen.append((record["epoch"], m.coef_.copy())))
    e = info.value
    assert isinstance(e, FloatingPointError) and isinstance(e, ValueError)
    assert "lr=0.5" in str(e) and "weight_decay=10.0" in str(e) and "try a smaller lr or weight_decay" in str(e)
    assert e.epoch == len(seen) + 1 and len(model.history_) == len(seen)
    assert all(np.isfinite(coef).all() for _, coef in seen)
    np.testing.assert_array_equal(model.coef_, seen[-1][1])  # the last finite epoch's weights
    assert np.isfinite(model.intercept_).all()


def test_a_loss_that_runs_away_stops_the_fit_in_its_first_epoch():
    """lr=1e30 (the tester's --lr 1e30 --epochs 2): a loss of ~1e31 is divergence at once, whatever
    the number of epochs, not a finite result saved with exit 0."""
    X, y = blobs(600)
    model = fs.SoftmaxRegression(epochs=2, lr=1e30, device="cpu")
    with pytest.raises(fs.TrainingDivergedError, match=r"epoch 1: the loss ran away to .*all-zero weights give"):
        model.fit(X, y)
    assert model.history_ == [] and not model.coef_.any()  # its initial weights


@pytest.mark.parametrize(("loss", "previous", "finite", "reason"), [
    (float("nan"), None, True, "the loss became nan"),
    (1.0, None, False, "the weights became NaN or inf"),
    (200.0, None, True, "the loss ran away to 200"),
    (150.0, 1.0, True, "the loss ran away to 150"),
    (60.0, 0.5, True, "the loss grew from 0.5 to 60 in one epoch"),
    (60.0, 1.0, True, None),  # large, but neither past 100 log k nor grown 100-fold
    (1.0, 0.005, True, None),  # grown 200-fold, but under log k: a model still learning
    (1.0, None, True, None),
])
def test_what_counts_as_divergence(loss, previous, finite, reason):
    from fastsoftmax.solvers.sgd import divergence

    got = divergence(loss, previous, finite, 3)  # log 3 = 1.1: a blow-up past 110
    assert got == reason if reason is None else got.startswith(reason)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # lbfgs at max_iter=20
@pytest.mark.parametrize("params", [dict(solver="lbfgs", max_iter=20), dict(lr=0.1, epochs=3), dict(epochs=3)])
def test_huge_features_with_a_tiny_input_scale_fit_and_predict_finite(params):
    """float32 features near 1e38 with input_scale 1e-38: X @ W as given overflows float32; the scale is
    applied first, so every solver fits finite weights and predicts finite probabilities (lbfgs said
    "W and b must be finite", of arrays the user never passed)."""
    X, y = blobs(300)
    X = (X.astype(np.float64) / 255 * 3e38).astype(np.float32)
    model = fs.SoftmaxRegression(input_scale=1e-38, device="cpu", **params).fit(X, y, eval_set=(X, y))
    assert np.isfinite(model.coef_).all() and np.isfinite(model.predict_proba(X)).all()
    assert model.score(X, y) > 0.9 and model.history_[-1]["test_acc"] > 0.9


def test_save_refuses_non_finite_weights(tmp_path):
    X, y = blobs(100)
    model = fs.SoftmaxRegression(epochs=1, device="cpu").fit(X, y)
    model.coef_[0, 0] = np.inf
    with pytest.raises(ValueError, match="the weights hold NaN or inf"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def save_format_1(path, model):
    """A model file as fastsoftmax wrote it before the format had classes and dataset."""
    import json

    np.savez(path, format=np.array("fastsoftmax.SoftmaxRegression/1"), coef=model.coef_,
             intercept=model.intercept_, params=np.array(json.dumps(model.get_params())),
             history=np.array(json.dumps(model.history_)))


def test_format_1_files_load_with_their_old_meaning(tmp_path):
    X, y = blobs(200)
    model = fs.SoftmaxRegression(epochs=2, device="cpu").fit(X, y)
    save_format_1(tmp_path / "old.npz", model)
    old = fs.SoftmaxRegression.load(tmp_path / "old.npz")
    assert old.coef_.shape == (4, 20) and list(old.classes_) == [0, 1, 2, 3] and old.dataset_ is None
    assert old.history_ == model.history_
    model.save(tmp_path / "new.npz", dataset="blobs")
    new = fs.SoftmaxRegression.load(tmp_path / "new.npz")
    assert new.dataset_ == "blobs" and list(new.classes_) == [0, 1, 2, 3]


def crafted(path, **fields):
    """A model file of format /2 with some fields replaced (None: left out)."""
    import json

    model = {"format": np.array("fastsoftmax.SoftmaxRegression/2"), "coef": np.zeros((3, 4), np.float32),
             "intercept": np.zeros(3, np.float32), "classes": np.arange(3), "dataset": np.array(""),
             "params": np.array(json.dumps({"epochs": 2})),
             "history": np.array(json.dumps([{"epoch": 1, "loss": 1.0, "train_acc": 0.5, "lr": 0.1}]))}
    model.update(fields)
    np.savez(path, **{k: v for k, v in model.items() if v is not None})
    return path


def npy_header_only(shape, dtype="<f4"):
    """An .npy file's bytes: a header claiming `shape` and no data at all."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


V3 = dict(format=np.array(FORMAT), input_scale=np.array(1.0))  # crafted()'s fields, as format /3

CRAFTED = {
    "history not a list": (dict(history=np.array('"text"')), "history must be a list"),
    "history a record": (dict(history=np.array('{"epoch": 1}')), "bad epoch record"),
    "history of numbers": (dict(history=np.array("[1, 2]")), "history must be a list"),
    "history records without loss": (dict(history=np.array('[{"epoch": 1}]')), "bad epoch record"),
    "history with a text loss": (dict(history=np.array('[{"epoch": 1, "loss": "x", "train_acc": 1, "lr": 1}]')),
                                 "bad epoch record"),
    "history epochs out of order": (
        dict(history=np.array('[{"epoch": 2, "loss": 1, "train_acc": 1, "lr": 1}]')), "numbered from 1"),
    "history not JSON": (dict(history=np.array("[{")), "history:"),
    "history nested deep": (dict(history=np.array("[" * 100000)), "history:"),
    "history of ints": (dict(history=np.arange(3)), "history:"),
    "params not a dict": (dict(params=np.array("[]")), "params must name hyper-parameters"),
    "params unknown": (dict(params=np.array('{"depth": 3}')), "params must name hyper-parameters"),
    "params bad value": (dict(params=np.array('{"epochs": -1}')), "params: epochs must be an integer"),
    "params missing": (dict(params=None), "it has no 'params' array"),
    "format a number": (dict(format=np.array(7)), "unknown format"),
    "classes other labels": (dict(classes=np.arange(1, 4)), "classes are not the labels 0..2"),
    "classes as floats": (dict(classes=np.arange(3.0)), "classes are not the labels"),
    "weights of objects": (dict(coef=np.array([[None] * 4] * 3, dtype=object)), "holds Python objects"),
    "weights of float16": (dict(coef=np.zeros((3, 4), np.float16)), "the weights have dtype float16; a model's are"),
    "weights of longdouble": (dict(coef=np.zeros((3, 4), np.longdouble)),
                              f"the weights have dtype {np.dtype(np.longdouble)}; a model's are float32 or float64"),
    "biases of float16": (dict(intercept=np.zeros(3, np.float16)), "the biases have dtype float16"),
    "weights of no features": (dict(coef=np.zeros((3, 0), np.float32)), "its weights have shape (3, 0), no features"),
    "weights of no features, standardised": (
        dict(V3, coef=np.zeros((3, 0), np.float32), feature_mean=np.zeros(4), feature_scale=np.ones(4)),
        "its weights have shape (3, 0), no features"),
    "feature names too few": (dict(V3, feature_names=np.array(["a", "b", "c"])),
                              "its feature_names are not 4 strings, one per feature"),
    "feature names of numbers": (dict(V3, feature_names=np.arange(4)), "its feature_names are not 4 strings"),
    "feature names 2-D": (dict(V3, feature_names=np.array([["a", "b", "c", "d"]])), "are not 4 strings"),
    "feature names repeated": (dict(V3, feature_names=np.array(["a", "b", "a", "d"])), "are not distinct"),
    "feature names pickled": (dict(V3, feature_names=np.array(list("abcd"), dtype=object)), "holds Python objects"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_model_files_are_one_line_errors(tmp_path, case):
    fields, message = CRAFTED[case]
    path = crafted(tmp_path / "m.npz", **fields)
    with pytest.raises(ValueError) as info:
        fs.SoftmaxRegression.load(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_model_arrays_claiming_gigabytes_are_refused_from_their_headers(tmp_path):
    import zipfile

    path = crafted(tmp_path / "m.npz", coef=None)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("coef.npy", npy_header_only((2**20, 2**20)))  # 4 TiB claimed, nothing stored
    with pytest.raises(ValueError, match=r"'coef' array claims shape \(1048576, 1048576\) of float32"):
        fs.SoftmaxRegression.load(path)


def test_feature_names_claiming_gigabytes_are_refused_from_their_header(tmp_path):
    import zipfile

    path = crafted(tmp_path / "m.npz", **V3)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("feature_names.npy", npy_header_only((4,), "<U100000000"))  # 1.6 GB claimed
    with pytest.raises(ValueError, match=r"'feature_names' array claims shape \(4,\) of <U100000000"):
        fs.SoftmaxRegression.load(path)


@pytest.mark.cuda
def test_lbfgs_on_cuda_matches_the_cpu(cupy_module):
    """The loss and gradient run where X is; only the optimiser's vectors cross to the host."""
    X, y = blobs(120, d=6, k=3)
    labels = np.array([-5, 2, 40])[y]  # gappy labels, mapped to 0..2 on the device
    kw = dict(solver="lbfgs", max_iter=4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = fs.SoftmaxRegression(device="cpu", **kw).fit(X, labels)
        gpu = fs.SoftmaxRegression(device="cuda", **kw).fit(cupy_module.asarray(X), cupy_module.asarray(labels))
    assert [r["loss"] for r in gpu.history_] == pytest.approx([r["loss"] for r in cpu.history_], rel=1e-9)
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=1e-7, atol=1e-9)
    predicted = gpu.predict(cupy_module.asarray(X))
    assert type(predicted) is type(cupy_module.asarray(X))
    np.testing.assert_array_equal(predicted.get(), cpu.predict(X))


def fit_in_lockstep(fits):
    """Run the fits (functions of a callback) in threads, all at once, each epoch starting together:
    a barrier in every fit's callback. Their models, in order."""
    barrier = threading.Barrier(len(fits), timeout=120)
    with concurrent.futures.ThreadPoolExecutor(len(fits)) as pool:
        return [f.result() for f in [pool.submit(fit, lambda model, record: barrier.wait()) for fit in fits]]


def test_two_fits_of_one_shape_at_once_equal_their_sequential_results(xp):
    """No buffer a kernel writes is shared between fits (on the GPU, the epoch launch's partial sums,
    grid-barrier words and step belong to the fit): two fits of the same shapes, different data, in
    threads whose epochs start together, give each the bits it gives alone."""
    problems = [blobs(600, seed=seed) for seed in (2, 3)]
    device = "cpu" if xp is np else "cuda"

    def fit(X, y):
        return lambda callback=None: fs.SoftmaxRegression(epochs=3, batch_size=64, device=device).fit(
            xp.asarray(X), xp.asarray(y), callback=callback)

    alone = [fit(X, y)() for X, y in problems]
    together = fit_in_lockstep([fit(X, y) for X, y in problems])
    for one, other in zip(alone, together):
        np.testing.assert_array_equal(other.coef_, one.coef_)
        np.testing.assert_array_equal(other.intercept_, one.intercept_)
        assert [r["loss"] for r in other.history_] == [r["loss"] for r in one.history_]
    assert not np.array_equal(alone[0].coef_, alone[1].coef_)  # two fits that differ: a mix-up would show
