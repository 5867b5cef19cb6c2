"""The predict CLI on a small generated data set and a model trained on it in milliseconds."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from idxdata import make_dataset_dir

from fastsoftmax.cli import report
from fastsoftmax.io.datasets import load_dataset
from fastsoftmax.models.estimator import FORMAT, SoftmaxRegression
from fastsoftmax.cli.report import confusion_matrix
from fastsoftmax.cli.predict import MAX_DRAWN, PROG, main

SHAPE = (6, 5)  # not square, so a transposed reshape would show
N_TEST = 20
PNGS = ("predictions.png", "weights.png", "confusion.png")

# Only --data-dir holds data: no env folder, an empty cache and system folder, no download.
pytestmark = pytest.mark.usefixtures("isolated_data")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset_dir(root / "fashion-mnist", n_train=60, n_test=N_TEST, image_shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def data(data_dir):
    return load_dataset("fashion-mnist", data_dir)


@pytest.fixture(scope="module")
def model_path(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    SoftmaxRegression(epochs=2, batch_size=16, device="cpu").fit(data.x_train, data.y_train).save(path)
    return path


@pytest.fixture
def figures(monkeypatch):
    """The figures the CLI saves, by file name, to check what it drew."""
    saved, save = {}, report.save_figure

    def keep(fig, path):
        saved[Path(path).name] = fig
        save(fig, path)

    monkeypatch.setattr(report, "save_figure", keep)
    return saved


def predict(capsys, *args):
    """(exit status, stdout, stderr) of the CLI; argparse's usage errors exit through SystemExit."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err, *fragments):
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"{PROG}: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_prints_the_evaluation_and_writes_three_pngs(capsys, data, data_dir, model_path, tmp_path, figures):
    out_dir = tmp_path / "figs"
    status, out, err = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--n", 7, "--out", out_dir)
    assert status == 0, err
    model = SoftmaxRegression.load(model_path)
    y_pred = model.predict(data.x_test)
    counts = confusion_matrix(data.y_test, y_pred, 10)
    right = int((y_pred == data.y_test).sum())
    assert f"test accuracy {right / N_TEST:.4f} ({right} of {N_TEST})" in out
    for name, row in zip(data.class_names, counts):
        if row.sum():
            assert re.search(rf"^  {re.escape(name)} +{row[data.class_names.index(name)] / row.sum():.3f}  ", out, re.MULTILINE)
    listed = re.findall(r"^ +(\d+)  (.+?) +-> (.+?) +\((\d\.\d\d)\)( +wrong)?$", out, re.MULTILINE)
    assert [int(i) for i, *_ in listed] == list(range(7))
    assert [(t, p) for _, t, p, *_ in listed] == [
        (data.class_names[t], data.class_names[p]) for t, p in zip(data.y_test[:7], y_pred[:7])
    ]
    assert [bool(w) for *_, w in listed] == list(data.y_test[:7] != y_pred[:7])
    for name in PNGS:
        assert f"wrote {out_dir / name}\n" in out
        image = matplotlib.image.imread(out_dir / name)
        width, height = np.round(figures[name].get_size_inches() * report.DPI).astype(int)
        assert image.shape == (height, width, 4)

    # What was drawn: the test images' predictions, the model's weights, its confusion matrix.
    titles = [ax.get_title() for ax in figures["predictions.png"].axes]
    assert titles == [f"true: {data.class_names[t]}\npred: {data.class_names[p]}"
                      for t, p in zip(data.y_test[:7], y_pred[:7])]
    for ax, weights in zip(figures["weights.png"].axes, model.coef_):
        np.testing.assert_array_equal(ax.images[0].get_array(), weights.reshape(SHAPE))
    drawn = figures["confusion.png"].axes[0].images[0].get_array()
    assert drawn.sum() == N_TEST
    np.testing.assert_array_equal(drawn, counts)


def test_n_defaults_to_10_and_may_be_the_whole_test_set(capsys, data_dir, model_path, tmp_path):
    status, out, _ = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--out", tmp_path)
    assert status == 0 and "the first 10 test images" in out
    status, out, _ = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--n", N_TEST, "--out", tmp_path)
    assert status == 0 and f"the first {N_TEST} test images" in out


def test_a_large_n_is_listed_but_the_grid_stops_at_max_drawn(capsys, monkeypatch, data_dir, model_path, tmp_path,
                                                           figures):
    monkeypatch.setattr("fastsoftmax.cli.predict.MAX_DRAWN", 4)
    status, out, _ = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--n", 6, "--out", tmp_path)
    assert status == 0 and MAX_DRAWN >= 100
    assert len(re.findall(r"^ +\d+  .+ -> ", out, re.MULTILINE)) == 6
    assert len(figures["predictions.png"].axes) == 4
    assert "predictions.png (the first 4 of the 6 images)" in out


@pytest.mark.parametrize("n, status, message", [
    (0, 2, "argument --n: must be an integer >= 1, got '0'"),
    ("x", 2, "argument --n: must be an integer >= 1, got 'x'"),
    (N_TEST + 1, 1, f"--n {N_TEST + 1} is more than the {N_TEST} test images of fashion-mnist"),
])
def test_bad_n_is_a_one_line_error(capsys, data_dir, model_path, tmp_path, n, status, message):
    got, _, err = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--n", n, "--out", tmp_path)
    assert got == status
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png"))


def test_missing_model_argument_is_a_usage_error(capsys):
    status, _, err = predict(capsys)
    assert status == 2
    assert "the following arguments are required: --model" in err and err.count("\n") == 1


def save_fields(path, **fields):
    """A model file with its fields replaced: coef, intercept, format, params, history."""
    model = {"format": np.array("fastsoftmax.SoftmaxRegression/1"), "coef": np.zeros((10, 30), np.float32),
             "intercept": np.zeros(10, np.float32), "params": np.array(json.dumps({})), "history": np.array("[]")}
    np.savez(path, **{**model, **fields})
    return path


BAD_MODELS = {
    "missing": (lambda p: p, "no such model file"),
    "not a zip": (lambda p: p.write_bytes(b"hello") and p, "is not a fastsoftmax model file"),
    "truncated": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)) and p, "is not a fastsoftmax model file"),
    "other format": (lambda p: save_fields(p, format=np.array("sklearn")), "is not a fastsoftmax model file"),
    "1-D weights": (lambda p: save_fields(p, coef=np.zeros(30, np.float32)), "do not fit"),
    "biases of the wrong length": (lambda p: save_fields(p, intercept=np.zeros(3, np.float32)), "do not fit"),
    "784 features": (lambda p: save_fields(p, coef=np.zeros((10, 784), np.float32)),
                     "takes 784 features per image, but fashion-mnist images have 30 pixels (6x5)"),
    "5 classes": (lambda p: save_fields(p, coef=np.zeros((5, 30), np.float32), intercept=np.zeros(5, np.float32)),
                  "predicts 5 classes, but fashion-mnist has 10"),
    "NaN weights": (lambda p: save_fields(p, coef=np.full((10, 30), np.nan, np.float32)), "NaN or inf"),
    "integer weights": (lambda p: save_fields(p, coef=np.zeros((10, 30), np.int64)), "dtype int64"),
    "history not a list": (lambda p: save_fields(p, history=np.array('{"a": 1}')), "bad epoch record"),
    "params not a dict": (lambda p: save_fields(p, params=np.array("[1]")), "params must name hyper-parameters"),
    "params of another type": (lambda p: save_fields(p, params=np.arange(3)), "params:"),
    "a folder": (lambda p: p.mkdir() or p, "is a folder, not a model file"),
    "string labels": (lambda p: save_fields(p, format=np.array(FORMAT), classes=np.array(list("abcdefghij")),
                                            input_scale=np.array(1 / 255)), "predicts the labels"),
    "/3 classes unsorted": (lambda p: save_fields(p, format=np.array(FORMAT), classes=np.arange(10)[::-1],
                                                  input_scale=np.array(1.0)), "distinct sorted labels"),
    "/3 without input_scale": (lambda p: save_fields(p, format=np.array(FORMAT), classes=np.arange(10)),
                               "needs its classes and input_scale"),
    "/3 negative input_scale": (lambda p: save_fields(p, format=np.array(FORMAT), classes=np.arange(10),
                                                      input_scale=np.array(-1.0)), "input_scale is not a positive"),
    "/3 object labels": (lambda p: save_fields(p, format=np.array(FORMAT), classes=np.array(list("abcdefghij"),
                                                                                            dtype=object),
                                               input_scale=np.array(1.0)), "holds Python objects"),
    "weights claiming 4 TiB": (lambda p: claim_huge_weights(save_fields(p, coef=np.zeros(0, np.float32))),
                               "'coef' array claims shape (1048576, 1048576) of float32"),
}


def claim_huge_weights(path):
    """Replace the weights by an .npy header claiming 4 TiB, with no data behind it."""
    import zipfile

    header = repr({"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist() if name != "coef.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("coef.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    return path


@pytest.mark.parametrize("case", BAD_MODELS)
def test_a_bad_model_is_a_one_line_error(capsys, data_dir, tmp_path, case):
    make, message = BAD_MODELS[case]
    path = make(tmp_path / "model.npz")
    status, _, err = predict(capsys, "--model", path, "--data-dir", data_dir, "--out", tmp_path / "figs")
    assert status == 1
    assert_one_line_error(err, message)
    assert not (tmp_path / "figs").exists()


def test_pngs_that_would_overwrite_an_input_are_refused_before_any_work(capsys, data_dir, model_path, tmp_path,
                                                                       monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the data set was loaded")

    monkeypatch.setattr("fastsoftmax.cli.predict.load_dataset", never)
    out_dir = tmp_path / "figs"
    out_dir.mkdir()
    (out_dir / "weights.png").write_bytes(model_path.read_bytes())  # a model kept under a figure's name
    labels = data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    status, _, err = predict(capsys, "--model", out_dir / "weights.png", "--data-dir", data_dir, "--out", out_dir)
    assert status == 1
    assert_one_line_error(err, f"--out {out_dir / 'weights.png'} is --model {out_dir / 'weights.png'}, which this "
                               "run reads: writing it would destroy it; give --out another path")
    (out_dir / "weights.png").unlink()
    (out_dir / "confusion.png").hardlink_to(labels)
    status, _, err = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--out", out_dir)
    assert status == 1
    assert_one_line_error(err, f"--out {out_dir / 'confusion.png'} is fashion-mnist's file {labels}")
    (out_dir / "confusion.png").unlink()
    (out_dir / "weights.png").symlink_to(out_dir / "predictions.png")
    status, _, err = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--out", out_dir)
    assert status == 1
    assert_one_line_error(err, f"--out {out_dir / 'predictions.png'} and --out {out_dir / 'weights.png'} are the "
                               "same file")
    assert sorted(p.name for p in out_dir.iterdir()) == ["weights.png"]


def test_a_full_disk_names_the_png(capsys, data_dir, model_path, tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    status, _, err = predict(capsys, "--model", model_path, "--data-dir", data_dir, "--out", tmp_path / "figs")
    assert status == 1
    assert_one_line_error(err, f"No space left on device: '{tmp_path / 'figs' / 'predictions.png'}'")
    assert list((tmp_path / "figs").iterdir()) == []  # no temporary file left


def test_missing_data_is_a_one_line_error(capsys, model_path, tmp_path):
    status, _, err = predict(capsys, "--model", model_path, "--data-dir", tmp_path / "nowhere", "--out", tmp_path)
    assert status == 1
    assert_one_line_error(err, "Fashion-MNIST not found", "FASTSOFTMAX_NO_DOWNLOAD")


def test_runs_as_a_module_headless(data_dir, model_path, tmp_path):
    """python -m works with a GUI backend asked for and no display: plots force Agg."""
    env = {**os.environ, "MPLBACKEND": "TkAgg", "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("DISPLAY", None)
    args = [sys.executable, "-m", "fastsoftmax.predict", "--model", model_path, "--data-dir", data_dir,
            "--n", "3", "--out", tmp_path]
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / name).is_file() for name in PNGS)


def test_a_fifo_as_model_is_refused_without_waiting(capsys, data_dir, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    status, _, err = predict(capsys, "--model", tmp_path / "fifo", "--data-dir", data_dir, "--out", tmp_path)
    assert status == 1
    assert_one_line_error(err, "is not a fastsoftmax model file (it is not a regular file)")
