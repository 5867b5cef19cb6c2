"""Hostile input through the command lines, each in a subprocess whose address space is capped.

Under RLIMIT_AS of LIMIT a process cannot map more than that: an input that
made it allocate gigabytes before answering would end in a MemoryError or a
kill, not in the one-line error asserted here. A normal run fits well under
the limit (checked first), Numba's compiler included.
"""

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from idxdata import idx_bytes, make_dataset_dir, write_idx

from fastsoftmax.io.datasets import FILES

LIMIT = 3 * 2**30  # bytes of address space
ROOT = Path(__file__).parents[1]


def limited(*args, timeout=120):
    """(exit status, stdout, stderr) of `python -m fastsoftmax.<args>` under the address-space limit."""
    proc = subprocess.Popen([sys.executable, "-m", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=environment(), preexec_fn=cap)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def environment():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "FASTSOFTMAX_NO_DOWNLOAD": "1"}
    env.pop("FASTSOFTMAX_DATA", None)
    return env


def cap():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def assert_one_line(err, *fragments):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def data_dir(tmp_path):
    return make_dataset_dir(tmp_path / "data", n_train=300, n_test=50)


def test_a_normal_run_fits_under_the_limit(data_dir, tmp_path):
    code, out, err = limited("fastsoftmax.train", "--data-dir", data_dir, "--device", "cpu", "--epochs", "2",
                             "--save", tmp_path / "m.npz")
    assert code == 0, err
    code, out, err = limited("fastsoftmax.predict", "--model", tmp_path / "m.npz", "--data-dir", data_dir,
                             "--out", tmp_path / "figs")
    assert code == 0, err


def test_a_gzip_bomb_is_refused_after_its_header(data_dir):
    """6 MB of .gz inflating to 4 GiB, with a header that matches the other files."""
    zeros = gzip.compress(bytes(2**26), compresslevel=9)  # 64 MiB of zeros in 65 KB
    bomb = data_dir / f"{FILES[0]}.gz"
    bomb.write_bytes(gzip.compress(idx_bytes(np.zeros((300, 4, 4), np.uint8))) + zeros * 64)
    code, out, err = limited("fastsoftmax.train", "--data-dir", data_dir, "--device", "cpu")
    assert code == 1
    assert_one_line(err, f"{bomb}: file has trailing bytes (expected 4800 bytes of data for shape (300, 4, 4)")


@pytest.mark.parametrize("count", [2**30 // 16, 2**32 - 1])
def test_idx_headers_claiming_gigabytes_are_refused_before_reading(data_dir, count):
    """Headers that agree with each other, claiming 1 GiB (the set's limit) or 64 GiB, and no data."""
    for stem, shape in zip(FILES[:2], [(count, 4, 4), (count,)]):
        path = data_dir / stem
        (data_dir / f"{stem}.gz").unlink()
        path.write_bytes(idx_bytes(np.zeros((0,) + shape[1:], np.uint8))[:4] + np.asarray(shape, ">u4").tobytes())
    code, out, err = limited("fastsoftmax.train", "--data-dir", data_dir, "--device", "cpu")
    assert code == 1
    assert_one_line(err, "the four files claim", "a data set may hold here")


def test_a_model_claiming_gigabytes_is_refused_from_its_header(data_dir, tmp_path):
    """An .npz whose weights' header claims 8 GiB (compressed zeros would hold them in a few MB)."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (2**16, 2**15)}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    path = tmp_path / "m.npz"
    np.savez(path, format=np.array("fastsoftmax.SoftmaxRegression/1"), intercept=np.zeros(2**16, np.float32),
             params=np.array("{}"), history=np.array("[]"))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z, z.open("coef.npy", "w") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
        for _ in range(64):
            f.write(bytes(2**20))  # 64 MiB of the 8 GiB: enough to show it is never read
    for command in (["fastsoftmax.predict", "--model", path, "--data-dir", data_dir, "--out", tmp_path / "figs"],
                    ["fastsoftmax.train", "--resume", path, "--data-dir", data_dir, "--device", "cpu"]):
        code, out, err = limited(*command)
        assert code == 1
        assert_one_line(err, "'coef' array claims shape (65536, 32768) of float32, 8,589,934,592 bytes")


@pytest.mark.parametrize("flags,message", [
    (["--epochs", str(10**10)], "argument --epochs: must be an integer >= 1 and <= 2147483647"),
    (["--batch-size", str(2**63)], "argument --batch-size: must be an integer >= 1 and <= 2147483647"),
])
def test_absurd_counts_are_usage_errors(data_dir, flags, message):
    code, out, err = limited("fastsoftmax.train", "--data-dir", data_dir, *flags)
    assert code == 2
    assert_one_line(err, message)


def stopped_in_epoch_3(data_dir, save, *signals):
    """A run of a billion epochs, sent `signals` (50 ms apart) once its third epoch starts: (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastsoftmax.train", "--data-dir", str(data_dir), "--device",
                             "cpu", "--epochs", str(10**9), "--batch-size", "16", "--save", str(save)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
                            preexec_fn=cap)
    try:
        for line in proc.stdout:
            if line.startswith(f"epoch 3/{10**9}"):
                break
        for i, signum in enumerate(signals):
            if i:
                time.sleep(0.05)
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, err


def test_a_billion_epochs_start_at_once_and_sigterm_cleans_up(data_dir, tmp_path):
    """Nothing is sized by epochs x steps: the first epochs run at once; SIGTERM leaves the last checkpoint."""
    out_dir = tmp_path / "out"
    code, err = stopped_in_epoch_3(data_dir, out_dir / "m.npz", signal.SIGTERM)
    assert code == 143, err
    assert "terminated; the last finished epoch (" in err and f") is in {out_dir / 'm.npz'}" in err
    with np.load(out_dir / "m.npz") as f:  # the epoch the message names, 2 or 3 (SIGTERM may come mid-save)
        assert f"epoch ({len(json.loads(str(f['history'])))})" in err
    assert [p.name for p in out_dir.iterdir()] == ["m.npz"]  # no .tmp, no .lock


def test_labels_beyond_the_data_set_are_refused(data_dir):
    write_idx(data_dir / f"{FILES[1]}.gz", np.full(300, 255, np.uint8))
    code, out, err = limited("fastsoftmax.train", "--data-dir", data_dir, "--device", "cpu")
    assert code == 1
    assert_one_line(err, "label 255 at index 0 is out of range [0, 10)")


# What a second signal meets: the first one's clean-up on the way out, then its message being written.
SECOND_SIGNAL = """
import os, signal, sys, time
import fastsoftmax as fs
from fastsoftmax.cli import common
from fastsoftmax.train import main

save = fs.SoftmaxRegression.save

def stop_before_epoch_3s_save(model, path, **kwargs):
    if len(model.history_) == 3:
        os.kill(os.getpid(), signal.{first})
        time.sleep(10)  # the first signal's handler raises here
    save(model, path, **kwargs)

def print_after_another(*args, **kwargs):
    os.kill(os.getpid(), signal.{second})
    time.sleep(0.2)
    print(*args, **kwargs)

fs.SoftmaxRegression.save = stop_before_epoch_3s_save
common.print = print_after_another  # the message of the interruption, in run_command
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("first,second,status,word", [
    ("SIGINT", "SIGINT", 130, "interrupted"),
    ("SIGTERM", "SIGINT", 143, "terminated"),
    ("SIGINT", "SIGTERM", 130, "interrupted"),
])
def test_a_second_signal_does_not_interrupt_the_first_ones_message(data_dir, tmp_path, first, second, status, word):
    out_dir = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SECOND_SIGNAL.format(first=first, second=second), "--data-dir",
                           str(data_dir), "--device", "cpu", "--epochs", "5", "--save", str(out_dir / "m.npz")],
                          capture_output=True, text=True, env=environment(), timeout=120)
    assert proc.returncode == status, proc.stderr
    assert_one_line(proc.stderr, f"{word}; the last finished epoch (2) is in {out_dir / 'm.npz'}")
    assert [p.name for p in out_dir.iterdir()] == ["m.npz"]  # no .tmp, no .lock


def test_two_quick_ctrl_cs_end_as_one(data_dir, tmp_path):
    """Ctrl-C twice, 50 ms apart: the second is ignored, during the clean-up and the exit alike."""
    code, err = stopped_in_epoch_3(data_dir, tmp_path / "m.npz", signal.SIGINT, signal.SIGINT)
    assert code == 130, err  # not killed by the second one (-2)
    assert_one_line(err, "interrupted; the last finished epoch (", f") is in {tmp_path / 'm.npz'}")


def test_dask_missing_names_the_extra(data_dir):
    code = ("import sys\n"
            "sys.modules['dask'] = sys.modules['dask.distributed'] = None  # as where Dask is not installed\n"
            "from fastsoftmax.train import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, "--data-dir", str(data_dir), "--device", "cpu",
                           "--dask", "local:2"], capture_output=True, text=True, env=environment(), timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert_one_line(proc.stderr, "--dask needs Dask's distributed scheduler: install it with "
                                 "`pip install fastsoftmax[dask]`")


def test_json_to_a_closed_standard_output_is_one_line(data_dir):
    def closed_stdout():
        cap()
        os.close(1)

    proc = subprocess.run([sys.executable, "-m", "fastsoftmax.train", "--data-dir", str(data_dir), "--device", "cpu",
                           "--epochs", "1", "--json", "-"], stdout=None, stderr=subprocess.PIPE, text=True,
                          env=environment(), preexec_fn=closed_stdout, timeout=120)
    assert proc.returncode == 1
    assert_one_line(proc.stderr, "error: --json -: standard output is closed; give --json a file name")


@pytest.mark.parametrize("variable,value,message", [
    ("NUMBA_DISABLE_JIT", "1", "NUMBA_DISABLE_JIT=1 turns off Numba's compiler, which the CPU kernels need: unset "
                               "NUMBA_DISABLE_JIT"),
    ("NUMBA_NUM_THREADS", "0", "NUMBA_NUM_THREADS=0 is not a thread count: set it to a whole number from 1 up"),
    ("NUMBA_NUM_THREADS", "-1", "NUMBA_NUM_THREADS=-1 is not a thread count"),
])
def test_a_numba_environment_that_cannot_work_is_one_line(data_dir, tmp_path, variable, value, message):
    env = {**environment(), variable: value}
    for command in (["fastsoftmax.train", "--data-dir", data_dir, "--device", "cpu", "--epochs", "1"],
                    ["fastsoftmax.predict", "--model", tmp_path / "m.npz", "--data-dir", data_dir,
                     "--out", tmp_path / "figs"],
                    ["fastsoftmax.warmup"]):
        proc = subprocess.run([sys.executable, "-m", *map(str, command)], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 1 and "epoch" not in proc.stdout, proc.stderr
        assert_one_line(proc.stderr, f"python -m {command[0]}: error: {message}")
    if variable == "NUMBA_NUM_THREADS":  # the library: at its import, before Numba's own error
        proc = subprocess.run([sys.executable, "-c", "import fastsoftmax"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 1 and f"ImportError: {message}" in proc.stderr, proc.stderr
