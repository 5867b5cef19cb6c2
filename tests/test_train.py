"""The training CLI end to end on a small generated data set, and its errors."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
from idxdata import make_dataset_dir, write_idx

import fastsoftmax as fs
from fastsoftmax.ops.dispatch import cuda_available
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


def interrupt_in_epoch_3(monkeypatch):
    """Ctrl-C as epoch 3's checkpoint is written: the checkpoint on disk holds epoch 2."""
    save = fs.SoftmaxRegression.save

    def save_then_interrupt(model, path, **kwargs):
        if len(model.history_) == 3:
            raise KeyboardInterrupt
        save(model, path, **kwargs)

    monkeypatch.setattr(fs.SoftmaxRegression, "save", save_then_interrupt)


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
    assert (result["lr"], result["batch_size"]) == (0.5, 300 // 16)  # --lr auto: 16 steps an epoch at least
    model = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    data = fs.load_dataset(data_dir=data_dir)
    assert result["test_acc"] == pytest.approx(model.score(data.x_test, data.y_test))
    # the rate comes from the median epoch, not from the first one's compile time
    seconds = sorted(r["train_seconds"] for r in result["history"])
    assert result["median_epoch_seconds"] == seconds[1]
    assert result["examples_per_second"] == pytest.approx(len(data.x_train) / seconds[1])
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[:2] == (400, 1000)


def test_resume_extends_a_constant_schedule_run(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--device", "cpu"]
    assert train(capsys, *common, "--epochs", "2", "--schedule", "constant", "--lr", "0.2",
                 "--save", str(tmp_path / "part.npz"))[0] == 0
    # Flags left out keep the saved run's values (here --schedule and --lr).
    status, out, err = train(capsys, *common, "--epochs", "4", "--resume", str(tmp_path / "part.npz"),
                             "--save", str(tmp_path / "resumed.npz"))
    assert status == 0, err
    assert "resuming from" in out and "after epoch 2" in out
    part, resumed = (fs.SoftmaxRegression.load(tmp_path / f"{n}.npz") for n in ("part", "resumed"))
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3, 4]
    assert resumed.history_[:2] == part.history_
    assert resumed.get_params() == {**part.get_params(), "epochs": 4, "warm_start": True}
    assert resumed.dataset_ == "fashion-mnist"
    assert not np.array_equal(part.coef_, resumed.coef_)
    # that a resumed run equals an uninterrupted one is checked in test_estimator.py


@pytest.mark.parametrize("args,status,message", [
    (["--epochs", "0"], 2, "argument --epochs: must be an integer >= 1 and <= 2147483647, got '0'"),
    (["--epochs", str(10**10)], 2, "argument --epochs: must be an integer >= 1 and <= 2147483647, got '10000000000'"),
    (["--batch-size", str(2**64)], 2, "argument --batch-size: must be an integer >= 1 and <= 2147483647"),
    (["--seed", "-1"], 2, "argument --seed: must be an integer >= 0, got '-1'"),
    (["--batch-size", "x"], 2, "argument --batch-size: must be an integer >= 1 and <= 2147483647, got 'x'"),
    (["--lr", "nan"], 2, "argument --lr: must be 'auto' or a positive finite number, got 'nan'"),
    (["--lr", "-0.1"], 2, "argument --lr: must be 'auto' or a positive finite number"),
    (["--weight-decay", "inf"], 2, "argument --weight-decay: must be a non-negative finite number"),
    (["--dataset", "cifar"], 2, "argument --dataset: invalid choice: 'cifar'"),
    (["--device", "tpu"], 2, "argument --device: invalid choice: 'tpu'"),
    (["--data-dir", "/nonexistent"], 1, "fashion-mnist not found"),
    (["--dask", "inproc://"], 2, "argument --dask: --dask takes a scheduler's address, tcp://host:port"),
    (["--dask", "tcp://host"], 2, "or local:N to start N workers here; got 'tcp://host'"),
    (["--plot", "c.gif"], 2, "argument --plot: 'c.gif': a figure cannot be written as .gif; name a file ending in "
                             ".png, .pdf, .svg"),
    (["--plot", "figs/"], 2, "argument --plot: 'figs/' names a folder; give a file name, such as figs/curves.png"),
    (["--save", "out/"], 2, "argument --save: 'out/' names a folder; give a file name, such as out/model.npz"),
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
    from fastsoftmax.models.hyperparameters import HYPERPARAMETERS
    from fastsoftmax.cli.train import build_parser

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


# ---- hostile input: outputs, interruptions, resume, classes, divergence ----


def epoch_lines(out):
    return [line for line in out.splitlines() if line.startswith("epoch ")]


@pytest.mark.parametrize("flag", ["--save", "--json", "--plot"])
def test_special_files_are_refused_before_training(capsys, data_dir, tmp_path, flag):
    import os
    import stat

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # /dev/null through a link: code that replaced what it was given would replace the link, never
    # the machine's /dev/null (as root, the old code did replace /dev/null itself).
    null = tmp_path / "null"
    null.symlink_to("/dev/null")
    for path, kind in [(null, "(-> /dev/null) is a device"), (fifo, "is a FIFO"), (tmp_path, "is a folder"),
                       (tmp_path / "fifo/x", "not a folder")]:
        code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                               flag, str(path))
        assert code == 1 and f"error: {flag}: {path}" in err and kind in err, err
        assert len(err.strip().splitlines()) == 1 and not epoch_lines(out)
    assert null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("name,magic", [("c.pdf", b"%PDF"), ("c.svg", b"<?xml"), ("c.jpg", b"\xff\xd8\xff"),
                                        ("c.jpeg", b"\xff\xd8\xff"), ("c.PNG", b"\x89PNG"), ("curves", b"\x89PNG")])
def test_plot_writes_the_format_its_extension_names(capsys, data_dir, tmp_path, name, magic):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", "--quiet",
                           "--plot", str(tmp_path / name))
    assert code == 0, err
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_an_existing_folder_as_plot_names_a_file_in_it(capsys, data_dir, tmp_path):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                           "--plot", str(tmp_path))
    assert code == 1 and f"--plot: {tmp_path} is a folder" in err and f"such as {tmp_path / 'curves.png'}" in err
    assert len(err.strip().splitlines()) == 1 and not epoch_lines(out)


def outputs_apart_cases(data_dir, tmp_path):
    """(flags, the message's start): outputs that are one file, or a file the run reads."""
    labels = data_dir / "train-labels-idx1-ubyte.gz"
    (tmp_path / "hard.gz").hardlink_to(data_dir / "t10k-images-idx3-ubyte.gz")
    (tmp_path / "soft.gz").symlink_to(labels)
    (tmp_path / "link.png").symlink_to(tmp_path / "c.png")
    (tmp_path / "kept.npz").write_bytes(b"a model")
    (tmp_path / "kept.png").symlink_to(tmp_path / "kept.npz")
    return [
        (["--save", str(tmp_path / "k.npz"), "--json", str(tmp_path / "k.npz")],
         f"--save {tmp_path / 'k.npz'} and --json {tmp_path / 'k.npz'} are the same file"),
        (["--json", str(tmp_path / "c.png"), "--plot", str(tmp_path / "link.png")],
         f"--json {tmp_path / 'c.png'} and --plot {tmp_path / 'link.png'} are the same file"),
        (["--save", str(labels)], f"--save {labels} is fashion-mnist's file {labels}, which this run reads"),
        (["--save", str(data_dir / "train-labels-idx1-ubyte")],  # read before the .gz by every later run
         f"--save {data_dir / 'train-labels-idx1-ubyte'} would be read in place of fashion-mnist's file {labels} "
         "by the next run"),
        (["--save", str(tmp_path / "soft.gz")], f"--save {tmp_path / 'soft.gz'} is fashion-mnist's file {labels}"),
        (["--json", str(tmp_path / "hard.gz")], f"--json {tmp_path / 'hard.gz'} is fashion-mnist's file "
                                                f"{data_dir / 't10k-images-idx3-ubyte.gz'}"),
        (["--resume", str(tmp_path / "kept.npz"), "--plot", str(tmp_path / "kept.png")],
         f"--plot {tmp_path / 'kept.png'} is --resume {tmp_path / 'kept.npz'}, which this run reads"),
        (["--resume", str(tmp_path / "kept.npz"), "--json", str(tmp_path / "kept.npz")],
         f"--json {tmp_path / 'kept.npz'} is --resume {tmp_path / 'kept.npz'}, which this run reads"),
    ]


def test_outputs_that_are_one_file_or_an_input_are_refused_before_loading(capsys, data_dir, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the data set was loaded")

    before = {p: p.read_bytes() for p in data_dir.iterdir()}
    cases = outputs_apart_cases(data_dir, tmp_path)
    monkeypatch.setattr("fastsoftmax.cli.data.load_dataset", never)
    monkeypatch.setattr(fs.SoftmaxRegression, "load", never)  # --resume's model: refused before it is read too
    for flags, message in cases:
        code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", *flags)
        assert code in (1, 2) and message in err and "give" in err, err
        assert len(err.strip().splitlines()) == 1 and not epoch_lines(out)
    assert {p: p.read_bytes() for p in data_dir.iterdir()} == before
    assert (tmp_path / "kept.npz").read_bytes() == b"a model" and not (tmp_path / "k.npz").exists()


def test_an_unwritable_output_fails_before_training(capsys, data_dir, tmp_path):
    (tmp_path / "file").write_text("")
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                           "--save", str(tmp_path / "m.npz"), "--json", str(tmp_path / "file/r.json"))
    assert code == 1 and "--json" in err and "file/r.json" in err and not epoch_lines(out)
    assert not (tmp_path / "m.npz").exists()


def test_outputs_write_through_symlinks(capsys, data_dir, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    for name in ("m.npz", "r.json", "c.png"):
        (tmp_path / f"link-{name}").symlink_to(tmp_path / f"target-{name}")
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", "--quiet",
                           "--save", str(tmp_path / "link-m.npz"), "--json", str(tmp_path / "link-r.json"),
                           "--plot", str(tmp_path / "link-c.png"))
    assert code == 0, err
    for name in ("m.npz", "r.json", "c.png"):
        assert (tmp_path / f"link-{name}").is_symlink() and (tmp_path / f"target-{name}").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{kind}-{name}" for kind in ("link", "target") for name in ("m.npz", "r.json", "c.png"))  # no .tmp, .lock


@pytest.mark.parametrize("path", ["-", "/dev/stdout"])
def test_json_to_standard_output(capsys, data_dir, path, monkeypatch):
    def never(*args, **kwargs):  # a regression must fail here, not replace the machine's /dev/stdout
        raise AssertionError("--json - was written as a file")

    monkeypatch.setattr("fastsoftmax.cli.train.atomic_write", never)
    monkeypatch.setattr("fastsoftmax.io.atomic.check_writable", never)
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "2", "--json", path)
    assert code == 0, err
    result = json.loads(out)  # stdout holds the JSON alone: the progress lines go to stderr
    assert len(result["history"]) == 2 and "epoch 2/2" in err


def test_a_failing_json_does_not_skip_the_plot(capsys, data_dir, tmp_path, monkeypatch):
    def broken(path, mode="wb"):
        raise OSError("No space left on device")

    monkeypatch.setattr("fastsoftmax.cli.train.atomic_write", broken)
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                           "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "c.png"))
    assert code == 1 and f"--json {tmp_path / 'r.json'}: No space left on device" in err
    assert (tmp_path / "c.png").is_file()


def test_a_full_disk_names_the_checkpoint_and_the_epoch_it_holds(capsys, data_dir, tmp_path, monkeypatch):
    import errno
    import os

    save = fs.SoftmaxRegression.save

    def full_in_epoch_3(model, path, **kwargs):
        if len(model.history_) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(model, path, **kwargs)

    monkeypatch.setattr(fs.SoftmaxRegression, "save", full_in_epoch_3)
    path = tmp_path / "m.npz"
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "5", "--quiet",
                           "--save", str(path))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Errno" not in err
    assert (f"error: --save {path}: could not write epoch 3: No space left on device; it still holds epoch 2: "
            f"free some space and continue with --resume {path} --save {path}") in err
    assert len(fs.SoftmaxRegression.load(path).history_) == 2


def test_interrupted_names_a_checkpoint_only_once_one_is_written(capsys, data_dir, tmp_path, monkeypatch):
    tmp_path = tmp_path / "out"
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr("fastsoftmax.cli.data.load_dataset", interrupt)
        code, _, err = train(capsys, "--data-dir", str(data_dir), "--save", str(tmp_path / "m.npz"))
    assert code == 130 and err.strip().endswith("interrupted") and "m.npz" not in err

    interrupt_in_epoch_3(monkeypatch)
    code, _, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--save", str(tmp_path / "m.npz"))
    assert code == 130 and f"interrupted; the last finished epoch (2) is in {tmp_path / 'm.npz'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no .tmp, no .lock


def test_resume_of_an_interrupted_cosine_run_matches_the_whole_run(capsys, data_dir, tmp_path, monkeypatch):
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--quiet", "--epochs", "4"]
    assert train(capsys, *common, "--save", str(tmp_path / "whole.npz"))[0] == 0
    with monkeypatch.context() as m:
        interrupt_in_epoch_3(m)
        assert train(capsys, *common, "--save", str(tmp_path / "ckpt.npz"))[0] == 130
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--quiet",
                           "--resume", str(tmp_path / "ckpt.npz"), "--save", str(tmp_path / "ckpt.npz"))
    assert code == 0, err
    whole, resumed = (fs.SoftmaxRegression.load(tmp_path / f"{n}.npz") for n in ("whole", "ckpt"))
    np.testing.assert_array_equal(whole.coef_, resumed.coef_)
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3, 4]


@pytest.mark.parametrize("flags,message", [
    (["--lr", "0.1"], "was trained with --lr auto; resuming with --lr 0.1 would change the steps already taken"),
    (["--batch-size", "64"], "--batch-size 256; resuming with --batch-size 64"),
    (["--schedule", "constant"], "--schedule cosine; resuming with --schedule constant"),
    (["--weight-decay", "0.01"], "--weight-decay 0.0; resuming with --weight-decay 0.01"),
    (["--seed", "3"], "--seed 0; resuming with --seed 3"),
    (["--dataset", "mnist"], "--dataset fashion-mnist; resuming with --dataset mnist"),
    (["--epochs", "5"], "follows a cosine schedule over 3 epochs; --epochs 5 would change the learning rate"),
])
def test_resume_refuses_flags_that_change_the_steps_taken(capsys, data_dir, tmp_path, flags, message):
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--quiet"]
    assert train(capsys, *common, "--epochs", "3", "--save", str(tmp_path / "m.npz"))[0] == 0
    before = (tmp_path / "m.npz").read_bytes()
    code, out, err = train(capsys, *common, "--resume", str(tmp_path / "m.npz"), *flags)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "m.npz").read_bytes() == before
    # The same values typed again are no change.
    same = {"--lr": "auto", "--batch-size": "256", "--schedule": "cosine", "--weight-decay": "0",
            "--seed": "0", "--dataset": "fashion-mnist", "--epochs": "3"}[flags[0]]
    code, out, err = train(capsys, *common, "--resume", str(tmp_path / "m.npz"), flags[0], same)
    assert "already trained 3 epochs" in err


def test_resume_without_save_says_the_run_is_not_kept(capsys, data_dir, tmp_path):
    common = ["--data-dir", str(data_dir), "--device", "cpu", "--schedule", "constant"]
    assert train(capsys, *common, "--epochs", "1", "--quiet", "--save", str(tmp_path / "m.npz"))[0] == 0
    code, out, err = train(capsys, *common, "--epochs", "2", "--resume", str(tmp_path / "m.npz"))
    assert code == 0 and "epoch 2/2" in out
    assert err == (f"python -m fastsoftmax.train: note: --resume without --save: the continued run is not saved; "
                   f"add --save {tmp_path / 'm.npz'} to keep it\n")
    code, out, err = train(capsys, *common, "--epochs", "2", "--resume", str(tmp_path / "m.npz"),
                           "--save", str(tmp_path / "m.npz"))
    assert code == 0 and err == ""  # the same file: the normal way to continue a run
    assert len(fs.SoftmaxRegression.load(tmp_path / "m.npz").history_) == 2


def test_resume_of_a_crafted_model_is_one_line(capsys, data_dir, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, format=np.array("fastsoftmax.SoftmaxRegression/1"), coef=np.zeros((10, 16), np.float32),
             intercept=np.zeros(10, np.float32), params=np.array("{}"), history=np.array('{"a": 1}'))
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--resume", str(path))
    assert code == 1 and "is not a fastsoftmax model file" in err and len(err.strip().splitlines()) == 1


def test_another_live_run_on_the_same_checkpoint_is_refused(capsys, data_dir, tmp_path):
    from fastsoftmax.io.atomic import exclusive

    tmp_path = tmp_path / "out"

    with exclusive(tmp_path / "m.npz"):  # as a second process writing it would
        code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                               "--save", str(tmp_path / "m.npz"))
    assert code == 1 and f"{tmp_path / 'm.npz'} is being written by another run" in err and not epoch_lines(out)
    assert train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", "--quiet",
                 "--save", str(tmp_path / "m.npz"))[0] == 0  # once it is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_the_data_sets_classes_reach_the_model_and_predict(capsys, tmp_path):
    """Labels 0..8 only (the highest class absent): the model still has Fashion-MNIST's 10 classes."""
    from fastsoftmax.cli.predict import main as predict

    data_dir = make_dataset_dir(tmp_path / "data", n_train=90, n_test=18, n_classes=9)
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", "--quiet",
                           "--save", str(tmp_path / "m.npz"))
    assert code == 0, err
    assert fs.SoftmaxRegression.load(tmp_path / "m.npz").coef_.shape == (10, 16)
    assert predict(["--model", str(tmp_path / "m.npz"), "--data-dir", str(data_dir),
                    "--out", str(tmp_path / "figs")]) == 0


def test_divergence_names_the_flags_and_saves_nothing_non_finite(capsys, data_dir, tmp_path):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "60", "--quiet",
                           "--schedule", "constant", "--weight-decay", "5", "--save", str(tmp_path / "m.npz"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "training diverged in epoch" in err and "(--lr 0.5, --weight-decay 5.0); try a smaller --lr" in err
    model = fs.SoftmaxRegression.load(tmp_path / "m.npz")  # finite, or load would refuse it
    assert f"the last finite epoch ({len(model.history_)}) is in {tmp_path / 'm.npz'}" in err


def test_a_loss_that_runs_away_stops_in_its_first_epoch_with_one_line(capsys, data_dir, tmp_path):
    """--lr 1e30 --epochs 2 --save m.npz: exit 1 naming the flags, nothing saved (was exit 0, a loss of
    8.7e30 and a saved model)."""
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "2", "--quiet",
                           "--lr", "1e30", "--save", str(tmp_path / "m.npz"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "training diverged in epoch 1: the loss ran away" in err and "--lr 1e+30" in err
    assert not (tmp_path / "m.npz").exists()


def test_a_run_that_goes_nowhere_ends_with_one_warning_line(capsys, data_dir):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "3", "--quiet",
                           "--lr", "30")
    assert code == 0 and out.startswith("test accuracy")
    assert len(err.strip().splitlines()) == 1
    assert "warning: the training loss is" in err and "--lr 30 is likely too large" in err
    code, _, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "3", "--quiet")
    assert code == 0 and err == ""


def test_an_epoch_of_many_steps_is_announced(capsys, tmp_path):
    """Batches of 1 over 10,001 images: a line says the epoch's steps, and the training is as without it."""
    many = make_dataset_dir(tmp_path / "many", n_train=10_001, n_test=10)
    common = ["--data-dir", str(many), "--device", "cpu", "--epochs", "1", "--batch-size", "1", "--lr", "0.01"]
    code, out, err = train(capsys, *common, "--save", str(tmp_path / "m.npz"))
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note: an epoch takes")]
    assert notes == ["note: an epoch takes 10,001 steps (--batch-size 1 on 10,001 images); the progress shows once "
                     "an epoch"]
    data = fs.load_dataset(data_dir=many)
    alone = fs.SoftmaxRegression(epochs=1, batch_size=1, lr=0.01, device="cpu").fit(
        data.x_train, data.y_train, classes=data.classes)
    np.testing.assert_array_equal(fs.SoftmaxRegression.load(tmp_path / "m.npz").coef_, alone.coef_)
    code, out, err = train(capsys, *common[:-4])  # batches of 256: no note
    assert code == 0 and "note:" not in out


def test_one_epoch_and_one_thread_are_singular(capsys, data_dir):
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1")
        lbfgs = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--solver", "lbfgs",
                      "--max-iter", "1")
    finally:
        numba.set_num_threads(threads)
    assert code == 0, err
    assert "|  1 epoch in " in out and "device cpu (Numba, 1 thread)" in out and "1 threads" not in out
    assert lbfgs[0] == 0 and "|  1 lbfgs iteration in " in lbfgs[1]


def test_a_sweep_left_few_training_images_warns(capsys, data_dir):
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                           "--lr", "0.1,0.5", "--validation-fraction", "0.99999")
    assert code == 0 and "1 train + 299 validation" in out
    assert err == ("python -m fastsoftmax.train: warning: --validation-fraction 0.99999 leaves 1 training image for "
                   "10 classes (299 held out), fewer than 10 per class: the models learn from next to nothing; "
                   "lower --validation-fraction (or train on more images)\n")
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1",
                           "--lr", "0.1,0.5")
    assert code == 0 and err == ""


def test_a_data_dir_that_is_a_file_is_named(capsys, tmp_path):
    (tmp_path / "f").write_text("")
    code, out, err = train(capsys, "--data-dir", str(tmp_path / "f"))
    assert code == 1 and f"{tmp_path / 'f'} is not a folder" in err


def test_a_killed_runs_temporary_files_are_removed_by_the_next(capsys, data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".m.npz.abc123.tmp").write_bytes(b"half a model")  # what kill -9 during a save leaves
    (out / ".other.npz.abc123.tmp").write_bytes(b"not ours")
    assert train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--epochs", "1", "--quiet",
                 "--save", str(out / "m.npz"))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [".other.npz.abc123.tmp", "m.npz"]


# ---- --solver lbfgs: progress, Ctrl-C keeps the last iterate, no resume ----


def test_lbfgs_prints_progress_and_saves_the_result(capsys, data_dir, tmp_path):
    status, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--solver", "lbfgs",
                             "--max-iter", "5", "--C", "0.5", "--save", str(tmp_path / "m.npz"),
                             "--json", str(tmp_path / "r.json"))
    assert status == 0, err
    lines = [line for line in out.splitlines() if line.startswith("iteration ")]
    assert [line.split()[1] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert all("loss" in line and "gradient max" in line for line in lines)
    assert "5 lbfgs iterations" in out.splitlines()[-1]
    model = fs.SoftmaxRegression.load(tmp_path / "m.npz")
    assert model.solver == "lbfgs" and model.C == 0.5 and len(model.history_) == 5
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["solver"] == "lbfgs" and result["iterations"] == 5
    status, _, err = train(capsys, "--data-dir", str(data_dir), "--resume", str(tmp_path / "m.npz"))
    assert status == 1 and "an lbfgs run cannot be resumed" in err


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg"])
def test_full_batch_ctrl_c_saves_the_last_iterate(capsys, data_dir, tmp_path, monkeypatch, solver):
    from fastsoftmax.solvers import objective as solvers

    minimize_calls = []
    real = solvers.ops.linear_softmax_cross_entropy

    def interrupt_at_eval_6(*args, **kwargs):
        minimize_calls.append(1)
        if len(minimize_calls) == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(solvers.ops, "linear_softmax_cross_entropy", interrupt_at_eval_6)
    code, out, err = train(capsys, "--data-dir", str(data_dir), "--device", "cpu", "--solver", solver,
                           "--save", str(tmp_path / "m.npz"))
    done = len([line for line in out.splitlines() if line.startswith("iteration ")])
    assert code == 130 and f"the last {solver} iterate (iteration {done}) is in {tmp_path / 'm.npz'}" in err
    assert len(fs.SoftmaxRegression.load(tmp_path / "m.npz").history_) == done >= 1


@pytest.mark.parametrize("flags,message", [
    (["--C", "2"], "--C 2 is the lbfgs solver's penalty; --solver sgd (the default) takes --weight-decay instead: "
                   "leave --C out, or use --solver lbfgs"),
    (["--solver", "lbfgs", "--weight-decay", "1e-4"], "--weight-decay 0.0001 is the sgd solver's penalty; --solver "
                                                      "lbfgs takes --C instead: leave --weight-decay out"),
    (["--solver", "lbfgs", "--weight-decay", "0.1,0.2"], "--weight-decay 0.1,0.2 is the sgd solver's penalty"),
])
def test_flags_refuse_the_other_solvers_penalty(capsys, flags, message):
    """A usage error in the flags' names, right after parsing: before the data (here missing) is looked for."""
    status, out, err = train(capsys, "--data-dir", "/nonexistent", *flags)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
