"""The sweep: many models in one pass over the data (ops.train_epoch_many, SoftmaxRegressionSweep,
``python -m fastsoftmax.train --lr a,b --weight-decay c,d``).

How exactly a model of a sweep matches the same model trained alone:
- within float rounding, on both backends: the models' products run as one
  matrix product, which adds its terms in another order than a single
  model's kernels (the CPU's register tiles, or sgemm of another shape; the
  GPU's fused epoch). Checked against ops.train_epoch model by
  model and against the float64 reference, to the shared cases' tolerances.
- not even between copies: OpenBLAS's sgemm adds a column's terms in an
  order that depends on the column's place in the product, so m copies of
  one model differ in the last bits. Bitwise, what can be: a sweep is
  deterministic, and no model's numbers depend on the other models' values.
On the GPU (the emulator here) a step is the same kernel launches for two
models as for many; one model (a sweep of one) runs the single model's epoch.
"""

import json
import re
import warnings

import numpy as np
import pytest
from conftest import REAL_GPU
from idxdata import make_dataset_dir
from kernelcases import W_DTYPES, X_DTYPES, assert_close, make_problem, on, to_numpy
from test_train import interrupt_in_epoch_3

import fastsoftmax as fs
from fastsoftmax import ops
from fastsoftmax.backends.cpu import large as cpu_large
from fastsoftmax.reference import kernels as ref
from fastsoftmax.models.sweep import SoftmaxRegressionSweep
from fastsoftmax.cli.train import build_parser
from fastsoftmax.train import main as train_main

LRS, DECAYS = [0.05, 0.2, 0.5], [0.0, 1e-3, 0.05]  # one model per column: rates and decays that differ
N, D, K, BATCH = 130, 33, 5, 32  # 130 % 32 != 0: the last batch of an epoch is partial


def stacked(W, m):
    """m copies of W (d, k) as the (m, d, k) stack train_epoch_many takes, and zero biases (m, k)."""
    return np.repeat(W[None], m, axis=0), np.zeros((m, W.shape[1]), W.dtype)


def sweep_epochs(xp, X, y, W, epochs, lrs=LRS, decays=DECAYS):
    """fs.train_epoch_many for `epochs` seeded epochs of one cosine run; (W (m, d, k), b, [(loss_sums, hits)])."""
    Ws, bs = on(xp, *stacked(W, len(lrs)))
    steps, stats = -(-X.shape[0] // BATCH), []
    Xd, yd = on(xp, X, y)
    for epoch in range(epochs):
        loss, hits = ops.train_epoch_many(Xd, yd, Ws, bs, batch_size=BATCH, lrs=lrs, weight_decays=decays, seed=3,
                                          epoch=epoch, schedule="cosine", total_steps=epochs * steps,
                                          start_step=epoch * steps, x_scale=1 / 255 if X.dtype == np.uint8 else 1.0)
        stats.append((to_numpy(loss), to_numpy(hits)))
    return to_numpy(Ws), to_numpy(bs), stats


def single_epochs(xp, X, y, W, epochs, lr, decay):
    """The same run for one model with ops.train_epoch: (W, b, [(loss_sum, hits)])."""
    Wd, bd = on(xp, W.copy(), np.zeros(W.shape[1], W.dtype))
    steps, stats = -(-X.shape[0] // BATCH), []
    Xd, yd = on(xp, X, y)
    for epoch in range(epochs):
        loss, hits = fs.train_epoch(Xd, yd, Wd, bd, batch_size=BATCH, lr=lr, weight_decay=decay, seed=3, epoch=epoch,
                                    schedule="cosine", total_steps=epochs * steps, start_step=epoch * steps,
                                    x_scale=1 / 255 if X.dtype == np.uint8 else 1.0)
        stats.append((float(loss), int(hits)))
    return to_numpy(Wd), to_numpy(bd), stats


# ---- ops.train_epoch_many against single models and the reference ----


@pytest.mark.parametrize("w_dtype", W_DTYPES)
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
def test_each_model_matches_its_single_fit(xp, x_dtype, w_dtype):
    X, W, _, y, _ = make_problem(N, D, K, x_dtype, w_dtype, seed=1)
    got_W, got_b, stats = sweep_epochs(xp, X, y, W, epochs=2)
    for i, (lr, decay) in enumerate(zip(LRS, DECAYS)):
        one_W, one_b, one_stats = single_epochs(xp, X, y, W, 2, lr, decay)
        assert_close(got_W[i], one_W, w_dtype)
        assert_close(got_b[i], one_b, w_dtype)
        for (loss, hits), (one_loss, one_hits) in zip(stats, one_stats):
            assert_close(loss[i], one_loss, w_dtype)
            assert abs(int(hits[i]) - one_hits) <= (0 if w_dtype == np.float64 else 1)


@pytest.mark.parametrize("x_dtype", X_DTYPES)
def test_each_model_matches_the_reference(xp, x_dtype):
    """float64 against reference.train_epoch, in batches that span several chunks of the wide-W path."""
    X, W, _, y, x_scale = make_problem(N, D, K, x_dtype, np.float64, seed=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu_large, "CHUNK_ELEMENTS", 12 * len(LRS) * K)  # 12 rows a chunk: 3 chunks a batch
        if xp is not np:
            from fastsoftmax.backends.cuda import large as cuda_large

            mp.setattr(cuda_large, "CHUNK_ELEMENTS", 12 * max(len(LRS) * K, D))
        got_W, got_b, stats = sweep_epochs(xp, X, y, W, epochs=2)
    steps = -(-N // BATCH)
    for i, (lr, decay) in enumerate(zip(LRS, DECAYS)):
        r_W, r_b = W, np.zeros(K)
        for epoch, (loss, hits) in enumerate(stats):
            order = ref.permutation(N, 3, epoch)
            rates = ref.learning_rates("cosine", lr, 2 * steps, epoch * steps, steps)
            r_W, r_b, r_loss, r_hits = ref.train_epoch(X, y, order, r_W, r_b, rates, BATCH, x_scale=x_scale,
                                                       weight_decay=decay)
            assert_close(loss[i] / N, r_loss, np.float64)
            assert hits[i] == r_hits
        assert_close(got_W[i], r_W, np.float64)
        assert_close(got_b[i], r_b, np.float64)


def test_models_do_not_touch_each_other_and_a_run_repeats_to_the_bit(xp):
    """Model 1's (lr, decay) changed, models 0 and 2 keep every bit: no model's numbers depend on
    another's values (only on its place in the stack, through the order of the products' sums).
    The same run twice gives the same bits."""
    X, W, _, y, _ = make_problem(N, D, K, np.uint8, np.float32, seed=3)
    first = sweep_epochs(xp, X, y, W, 2)
    other = sweep_epochs(xp, X, y, W, 2, lrs=[LRS[0], 3.0, LRS[2]], decays=[DECAYS[0], 0.0, DECAYS[2]])
    assert not np.array_equal(other[0][1], first[0][1])
    for i in (0, 2):
        np.testing.assert_array_equal(other[0][i], first[0][i])
        np.testing.assert_array_equal(other[1][i], first[1][i])
        assert all(a[0][i] == b[0][i] and a[1][i] == b[1][i] for a, b in zip(first[2], other[2]))
    again = sweep_epochs(xp, X, y, W, 2)
    for a, b in zip(again[:2], first[:2]):
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(again[2], first[2]))


@pytest.mark.cuda
def test_the_gpu_sweep_matches_the_cpu_sweep(cupy_module):
    X, W, _, y, _ = make_problem(N, D, K, np.uint8, np.float32, seed=4)
    cpu, gpu = sweep_epochs(np, X, y, W, 2), sweep_epochs(cupy_module, X, y, W, 2)
    for a, b in zip(cpu[:2], gpu[:2]):
        assert_close(b, a, np.float32)
    for (loss, hits), (gpu_loss, gpu_hits) in zip(cpu[2], gpu[2]):
        assert_close(gpu_loss, loss, np.float32)
        assert np.abs(gpu_hits - hits).max() <= 1


@pytest.mark.cuda
@pytest.mark.skipif(REAL_GPU, reason="counts the stand-in's kernel launches")
def test_a_gpu_step_is_the_same_launches_for_two_models_as_for_many(cupy_module):
    """The shuffle, then per step softmax_rows_gradient and sgd_step_many: m only widens them (the
    matrix products and sums in between are one CuPy call each, whatever m is; backends/cuda/sweep.py).
    One model runs the single model's persistent epoch: the shuffle and one launch."""
    X, W, _, y, _ = make_problem(N, D, K, np.uint8, np.float32, seed=5)
    launches = {}
    for m in (1, 2, 6):
        Ws, bs = on(cupy_module, *stacked(W, m))
        Xd, yd = on(cupy_module, X, y)
        cupy_module.counters.reset()
        ops.train_epoch_many(Xd, yd, Ws, bs, batch_size=BATCH, lrs=[0.1] * m, seed=0, check_input=False)
        launches[m] = cupy_module.counters.launches
    assert launches == {1: 2, 2: 1 + 2 * -(-N // BATCH), 6: 1 + 2 * -(-N // BATCH)}


# ---- the checks ----


GOOD = make_problem(10, 4, 3, np.float32, np.float32)


@pytest.mark.parametrize("change,error,match", [
    (dict(W=np.zeros((4, 3), np.float32)), ValueError, r"W must have shape \(models, n_features, n_classes\)"),
    (dict(b=np.zeros((3, 3), np.float32)), ValueError, r"b \(models, n_classes\)"),
    (dict(W=np.zeros((2, 5, 3), np.float32)), ValueError, r"W must have shape \(n_features, n_classes\) = \(4, k\)"),
    (dict(W=np.full((2, 4, 3), np.nan, np.float32)), ValueError, "W and b must be finite"),
    (dict(b=np.zeros((2, 3), np.float64)), TypeError, "b has dtype float64; train_epoch_many updates it in place"),
    (dict(lrs=[0.1]), ValueError, r"lrs must hold one value per model \(2\), got 1"),
    (dict(lrs=[0.1, 0.0]), ValueError, r"lrs\[1\] must be a positive finite number, got 0.0"),
    (dict(lrs=0.1), TypeError, "lrs must be a sequence of numbers"),
    (dict(weight_decays=[0.0, -1.0]), ValueError, r"weight_decays\[1\] must be a non-negative"),
    (dict(seed=None), ValueError, "give train_epoch_many either rows .* or seed"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
])
def test_train_epoch_many_bad_input_names_the_argument(change, error, match):
    X, W, b, y, _ = GOOD
    args = dict(W=np.stack([W, W]), b=np.stack([b, b]), lrs=[0.1, 0.2], seed=0, batch_size=4) | change
    W, b = args.pop("W"), args.pop("b")
    with pytest.raises(error, match=match):
        fs.ops.train_epoch_many(X, y, W, b, **args)


# ---- SoftmaxRegressionSweep ----


@pytest.fixture(scope="module")
def data():
    X, _, _, y, _ = make_problem(400, 20, 4, np.uint8, np.float32, seed=6)
    return X, y


GRID = dict(lrs=(0.05, 0.2), weight_decays=(0.0, 1e-3), epochs=3, batch_size=32, seed=1)


def test_each_model_of_the_sweep_is_its_single_fit(data):
    X, y = data
    sweep = SoftmaxRegressionSweep(device="cpu", **GRID).fit(X, y)
    fit_rows, val_rows = sweep.split(len(X))
    assert len(val_rows) == 40 and len(np.intersect1d(fit_rows, val_rows)) == 0
    assert len(fit_rows) + len(val_rows) == len(X)
    for model, (lr, wd) in zip(sweep.estimators_, sweep.grid()):
        alone = fs.SoftmaxRegression(lr=lr, weight_decay=wd, epochs=3, batch_size=32, seed=1, device="cpu")
        alone.fit(X[fit_rows], y[fit_rows], eval_set=(X[val_rows], y[val_rows]))
        assert model.get_params() == alone.get_params()
        np.testing.assert_allclose(model.coef_, alone.coef_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.intercept_, alone.intercept_, rtol=1e-4, atol=1e-5)
        for got, want in zip(model.history_, alone.history_, strict=True):
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
            assert got["lr"] == want["lr"]
            assert abs(got["val_acc"] - want["test_acc"]) <= 1 / len(val_rows)
        assert model.score(X[val_rows], y[val_rows]) == model.history_[-1]["val_acc"]


def test_the_sweep_chooses_on_validation_and_tabulates_like_grid_search(data, tmp_path):
    X, y = data
    epochs = []
    sweep = SoftmaxRegressionSweep(device="cpu", **GRID).fit(X, y, callback=lambda s, e: epochs.append(e))
    assert epochs == [1, 2, 3]
    results = sweep.cv_results_
    assert results["params"] == [{"lr": lr, "weight_decay": wd} for lr in (0.05, 0.2) for wd in (0.0, 1e-3)]
    scores = results["mean_test_score"]
    assert list(scores) == [m.history_[-1]["val_acc"] for m in sweep.estimators_]
    assert sweep.best_index_ == int(np.argmax(scores)) and sweep.best_score_ == scores.max()
    assert results["rank_test_score"][sweep.best_index_] == 1
    assert sweep.best_params_ == results["params"][sweep.best_index_]
    best = sweep.best_estimator_
    assert isinstance(best, fs.SoftmaxRegression) and best.lr == sweep.best_params_["lr"]
    np.testing.assert_array_equal(sweep.predict(X), best.predict(X))
    assert sweep.score(X, y) == best.score(X, y)
    best.save(tmp_path / "best.npz")
    np.testing.assert_array_equal(fs.SoftmaxRegression.load(tmp_path / "best.npz").coef_, best.coef_)


def test_a_diverging_model_stops_at_its_last_finite_epoch_and_is_never_chosen(data):
    X, y = data  # a decay of 1e4 at rate 0.1 multiplies the weights by ~1000 a step: inf within an epoch
    sweep = SoftmaxRegressionSweep(lrs=(0.1,), weight_decays=(0.0, 1e4), epochs=2, batch_size=16, seed=0,
                                   device="cpu").fit(X, y)
    assert list(sweep.cv_results_["diverged_epoch"]) == [0, 1]
    assert np.isnan(sweep.cv_results_["mean_test_score"][1]) and sweep.best_index_ == 0
    gone = sweep.estimators_[1]
    assert gone.history_ == [] and not gone.coef_.any()  # its initial weights, as a single fit keeps them
    assert len(sweep.estimators_[0].history_) == 2
    with pytest.raises(fs.TrainingDivergedError, match="diverged in epoch 1"):
        SoftmaxRegressionSweep(lrs=(0.1,), weight_decays=(1e4,), epochs=2, batch_size=16, device="cpu").fit(X, y)


def test_a_model_whose_loss_runs_away_is_never_chosen(data):
    """--lr 1e30,0.1: the 1e30 model's loss (~1e31) is divergence in its first epoch, not a candidate."""
    X, y = data
    sweep = SoftmaxRegressionSweep(lrs=(1e30, 0.1), weight_decays=(0.0,), epochs=2, device="cpu").fit(X, y)
    assert list(sweep.cv_results_["diverged_epoch"]) == [1, 0] and sweep.best_params_["lr"] == 0.1


def test_float_features_of_any_scale_are_standardised_for_the_grid():
    """Features from 1e-3 to 1e4 (bench/tables.py): standardised as lr="auto" does, no model of the
    default grid diverges and the chosen one matches LogisticRegression(); on X as given, every model's
    loss runs away. The models' weights apply to X's own units."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from bench.tables import synthetic

    X, y = synthetic()["scales 1e-3..1e4"]
    sweep = SoftmaxRegressionSweep(device="cpu").fit(X, y)
    assert not sweep.cv_results_["diverged_epoch"].any()
    fit_rows, val_rows = sweep.split(len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # lbfgs on features 1e7 apart: its own limit
        peer = LogisticRegression().fit(X[fit_rows], y[fit_rows]).score(X[val_rows], y[val_rows])
    assert sweep.best_score_ >= peer - 0.02
    best = sweep.best_estimator_
    assert best.feature_scale_ is not None and best.score(X[val_rows], y[val_rows]) == sweep.best_score_
    with pytest.raises(fs.TrainingDivergedError, match="ran away"):
        SoftmaxRegressionSweep(standardize=False, device="cpu").fit(X, y)


@pytest.mark.parametrize("params,match", [
    (dict(lrs=()), "lrs must be a non-empty sequence"),
    (dict(standardize="yes"), "standardize must be True or False"),
    (dict(lrs=(0.1, -1)), r"lrs\[1\] must be a positive"),
    (dict(weight_decays=0.1), "weight_decays must be a non-empty sequence"),
    (dict(validation_fraction=1.0), "validation_fraction must be a number between 0 and 1"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
])
def test_bad_sweep_parameters_name_themselves(data, params, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxRegressionSweep(device="cpu", **params).fit(*data)


@pytest.mark.cuda
def test_the_sweep_on_cuda_matches_the_cpu(cupy_module, data):
    X, y = data
    cpu = SoftmaxRegressionSweep(device="cpu", **GRID | {"epochs": 2}).fit(X, y)
    gpu = SoftmaxRegressionSweep(device="cuda", **GRID | {"epochs": 2}).fit(X, y)
    for a, b in zip(cpu.estimators_, gpu.estimators_):
        np.testing.assert_allclose(b.coef_, a.coef_, rtol=1e-4, atol=1e-5)
        assert abs(b.history_[-1]["val_acc"] - a.history_[-1]["val_acc"]) <= 1 / 40


# ---- the command line ----


@pytest.fixture
def data_dir(tmp_path, isolated_data):
    return make_dataset_dir(tmp_path / "data", n_train=300, n_test=50)


def train(capsys, *args):
    try:
        status = train_main(list(args))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_one_value_keeps_the_single_run_and_a_list_makes_a_grid():
    parse = build_parser().parse_args
    assert parse([]).lr == "auto" and parse(["--lr", "0.3"]).lr == 0.3
    assert parse(["--lr", "0.1,0.3,1.0", "--weight-decay", "0,1e-4"]).weight_decay == (0.0, 1e-4)


def test_the_cli_trains_a_grid_and_reports_the_chosen_model(capsys, data_dir, tmp_path):
    status, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "3",
                             "--lr", "0.1,0.5", "--weight-decay", "0,1e-3", "--save", str(tmp_path / "m.npz"),
                             "--json", str(tmp_path / "r.json"))
    assert status == 0, err
    lines = out.splitlines()
    assert "sweep of 4 models" in lines[0] and "270 train + 30 validation" in lines[0]
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    table = lines[lines.index("  lr        weight decay  train loss  train acc  val acc") + 1:][:4]
    assert sum(row.startswith("*") for row in table) == 1
    assert lines[-1].startswith("chosen: lr ") and "test accuracy" in lines[-1]
    result = json.loads((tmp_path / "r.json").read_text())
    model = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    assert len(result["models"]) == 4 and result["chosen"] == {"lr": model.lr, "weight_decay": model.weight_decay}
    data = fs.load_dataset(data_dir=data_dir)
    assert result["test_acc"] == pytest.approx(model.score(data.x_test, data.y_test))
    assert len(model.history_) == 3 and "test_acc" not in model.history_[-1]  # chosen without the test set


def test_a_grid_of_lr_refuses_auto(capsys, data_dir):
    status, _, err = train(capsys, "--data-dir", str(data_dir), "--lr", "auto,0.1")
    assert status == 1 and "--lr auto trains one model" in err and err.count("\n") == 1


def test_ctrl_c_in_a_sweep_keeps_the_last_finished_epochs_choice(capsys, data_dir, tmp_path, monkeypatch):
    interrupt_in_epoch_3(monkeypatch)
    status, _, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "5",
                             "--lr", "0.1,0.5", "--save", str(tmp_path / "m.npz"))
    assert status == 130 and "the last finished epoch (2) is in" in err
    assert len(fs.SoftmaxRegression.load(tmp_path / "m.npz").history_) == 2


@pytest.mark.parametrize("args,match", [
    (["--lr", "0.1,0.1"], "lists a value twice"),
    (["--lr", "0.1,x"], "must be 'auto' or a positive finite number, got 'x'"),
    (["--validation-fraction", "0.2"], "--validation-fraction holds out images to choose a sweep's model"),
    (["--lr", "0.1,0.2", "--solver", "lbfgs"], "a sweep trains SGD models"),
    (["--lr", "0.1,0.2", "--validation-fraction", "1"], "validation_fraction must be a number between 0 and 1"),
])
def test_the_cli_refuses_what_a_sweep_cannot_do(capsys, data_dir, args, match):
    status, _, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", *args)
    assert status in (1, 2) and re.search(match, err), err


def test_a_sweeps_choice_cannot_be_resumed_and_a_sweep_cannot_resume(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--epochs", "2"]
    assert train(capsys, *common, "--lr", "0.1,0.5", "--save", str(tmp_path / "m.npz"))[0] == 0
    status, _, err = train(capsys, *common, "--resume", str(tmp_path / "m.npz"))
    assert status == 1 and "was chosen by a sweep" in err
    status, _, err = train(capsys, *common, "--lr", "0.1,0.5", "--resume", str(tmp_path / "m.npz"))
    assert status == 1 and "--resume runs one model" in err
