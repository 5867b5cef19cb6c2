"""The training CLI end to end on a small generated data set, and its errors."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
from idxdata import make_dataset_dir, write_idx

import fastsoftmax as fs
from fastsoftmax.backend import cuda_available
from fastsoftmax.train import main

pytestmark = pytest.mark.usefixtures("isolated_data")


@pytest.fixture
def data_dir(tmp_path):
    return make_dataset_dir(tmp_path / "data", n_train=300, n_test=50)


def train(capsys, *args):
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    try:
        status = main(list(args))
    except SystemExit as e:  # argparse's exits
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_train_writes_model_json_and_plot(capsys, data_dir, tmp_path):
    status, out, err = train(capsys, "--data-dir", str(data_dir), "--epochs", "3", "--device", "cpu",
                             "--save", str(tmp_path / "m.npz"), "--json", str(tmp_path / "r.json"),
                             "--plot", str(tmp_path / "curves.png"))
    assert status == 0, err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "loss" in lines[1] and "train acc" in lines[1] and "test acc" in lines[1]
    assert lines[-1].startswith("test accuracy ") and "examples/s" in lines[-1] and "device cpu" in lines[-1]

    result = json.loads((tmp_path / "r.json").read_text())
    assert result["device"] == "cpu" and len(result["history"]) == 3
    model = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    data = fs.load_dataset(data_dir=data_dir)
    assert result["test_acc"] == pytest.approx(model.score(data.x_test, data.y_test))
    # the rate comes from the median epoch, not from the first one's compile time
    seconds = sorted(r["train_seconds"] for r in result["history"])
    assert result["median_epoch_seconds"] == seconds[1]
    assert result["examples_per_second"] == pytest.approx(len(data.x_train) / seconds[1])
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[:2] == (400, 1000)


def test_resume_continues_a_saved_run(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--device", "cpu"]
    assert train(capsys, *common, "--epochs", "2", "--save", str(tmp_path / "part.npz"))[0] == 0
    status, out, err = train(capsys, *common, "--epochs", "4", "--resume", str(tmp_path / "part.npz"),
                             "--save", str(tmp_path / "resumed.npz"))
    assert status == 0, err
    assert "resuming from" in out and "after epoch 2" in out
    part, resumed = (fs.SoftmaxRegression.load(tmp_path / f"{n}.npz") for n in ("part", "resumed"))
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3, 4]
    assert resumed.history_[:2] == part.history_
    assert not np.array_equal(part.coef_, resumed.coef_)
    # that a resumed run equals an uninterrupted one is checked in test_estimator.py


@pytest.mark.parametrize("args,status,message", [
    (["--epochs", "0"], 2, "argument --epochs: must be an integer >= 1, got '0'"),
    (["--seed", "-1"], 2, "argument --seed: must be an integer >= 0, got '-1'"),
    (["--batch-size", "x"], 2, "argument --batch-size: must be an integer >= 1, got 'x'"),
    (["--lr", "nan"], 2, "argument --lr: must be a positive finite number, got 'nan'"),
    (["--lr", "-0.1"], 2, "argument --lr: must be a positive finite number"),
    (["--weight-decay", "inf"], 2, "argument --weight-decay: must be a non-negative finite number"),
    (["--dataset", "cifar"], 2, "argument --dataset: invalid choice: 'cifar'"),
    (["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    (["--data-dir", "/nonexistent"], 1, "fashion-mnist not found"),
])
def test_bad_input_is_one_line_on_stderr(capsys, args, status, message):
    code, out, err = train(capsys, *args)
    assert code == status
    assert message.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("damage,message", [
    ("truncate", "truncated"),
    ("labels", "labels"),
    ("count", "label"),
])
def test_bad_data_files_are_one_line_on_stderr(capsys, data_dir, damage, message):
    images = data_dir / "train-images-idx3-ubyte.gz"
    labels = data_dir / "train-labels-idx1-ubyte.gz"
    if damage == "truncate":
        import gzip
        raw = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(raw[:-10]))
    elif damage == "labels":
        write_idx(labels, np.full(300, 12, np.uint8))
    else:
        write_idx(labels, np.zeros(299, np.uint8))
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu")
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(cuda_available(), reason="checks the error where CUDA is missing")
def test_cuda_missing_is_one_line(capsys, data_dir):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cuda")
    assert code == 1 and "device 'cuda' needs" in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(capsys, monkeypatch):
    """--debug, or FASTSOFTMAX_DEBUG=1, lets an error through with its traceback."""
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found"):
        main(["--data-dir", "/nonexistent", "--debug"])
    monkeypatch.setenv("FASTSOFTMAX_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found"):
        main(["--data-dir", "/nonexistent"])


def test_flags_are_the_hyperparameter_table(capsys):
    """Every hyper-parameter with a flag has it, with the table's default."""
    from fastsoftmax.hyperparameters import HYPERPARAMETERS
    from fastsoftmax.train import build_parser

    args = build_parser().parse_args([])
    assert {p.name: getattr(args, p.name) for p in HYPERPARAMETERS if p.flag} == {
        p.name: p.default for p in HYPERPARAMETERS if p.flag}
    assert not hasattr(args, "warm_start")  # the command line resumes with --resume


def test_resume_of_a_finished_run_asks_for_more_epochs(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--quiet", "--epochs", "2"]
    train(capsys, *common, "--save", str(tmp_path / "m.npz"))
    code, out, err = train(capsys, *common, "--resume", str(tmp_path / "m.npz"))
    assert code == 1 and "already trained 2 epochs" in err


def test_module_entry_point(data_dir):
    """python -m fastsoftmax.train runs as a program (exit status, stdout)."""
    proc = subprocess.run([sys.executable, "-m", "fastsoftmax.train", "--data-dir", str(data_dir),
                           "--epochs", "1", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
