"""The compiled CPU kernels are kept in a cache: the first process compiles, the next ones load.

Each process test runs Python in a subprocess with its own empty cache folder
(NUMBA_CACHE_DIR), so that it sees what a fresh installation sees, and leaves
the repository's own cache alone.
"""

import json
import os
import subprocess
import sys

import numpy as np
from idxdata import make_dataset_dir
from kernelcases import make_problem
from numba import typeof

import fastsoftmax as fs
from fastsoftmax.backends.cpu import jit

# One small kernel (the epoch's row order, ~0.3 s to compile), then its compile counts and the cache's choice.
SHUFFLE = """
import json
from fastsoftmax.backends.cpu import jit, rows
order = rows.shuffle(1000, 7, 0)
again = rows.shuffle(1000, 7, 0)
stats = rows._permutation.stats
print(json.dumps({"order_ok": sorted(order.tolist()) == list(range(1000)) and order.tolist() == again.tolist(),
                  "misses": sum(stats.cache_misses.values()), "hits": sum(stats.cache_hits.values()),
                  "cache_dir": None if jit.CACHE_DIR is None else str(jit.CACHE_DIR)}))
"""


def python(code_or_args, cache_dir, **env):
    """Run python (code, or a list of arguments) with NUMBA_CACHE_DIR=cache_dir; the finished process."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), **env}
    proc = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, env=environment,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_first_process_compiles_and_the_next_loads(tmp_path):
    cache = tmp_path / "cache"
    first = json.loads(python(SHUFFLE, cache).stdout)
    assert first == {"order_ok": True, "misses": 1, "hits": 0, "cache_dir": str(cache)}
    assert any(cache.rglob("*.nbi")) and any(cache.rglob("*.nbc"))  # an index and its machine code
    second = json.loads(python(SHUFFLE, cache).stdout)
    assert second == {"order_ok": True, "misses": 0, "hits": 1, "cache_dir": str(cache)}


def test_an_unwritable_cache_compiles_in_memory_and_says_so_once(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder inside a file cannot be made, whoever runs the test (root too)
    for run in range(2):
        proc = python(SHUFFLE, blocker / "cache")
        result = json.loads(proc.stdout)
        assert result == {"order_ok": True, "misses": 1, "hits": 0, "cache_dir": None}  # compiled again each time
        assert proc.stderr.count("no writable directory for Numba's cache") == 1, proc.stderr
        assert "NUMBA_CACHE_DIR" in proc.stderr
    assert not blocker.is_dir()


# A read-only site-packages, as a root-run test can have it: creating files in the kernels' __pycache__ fails.
READ_ONLY_PACKAGE = """
import tempfile
create = tempfile.TemporaryFile
def refuse_the_package(*args, dir=None, **kwargs):
    if dir is not None and str(dir).endswith("fastsoftmax/backends/cpu/__pycache__"):
        raise PermissionError(13, "read-only", str(dir))
    return create(*args, dir=dir, **kwargs)
tempfile.TemporaryFile = refuse_the_package
import numba
"""


def test_a_read_only_package_caches_in_the_user_cache(tmp_path):
    """A wheel in a read-only site-packages: the kernels go to $XDG_CACHE_HOME/fastsoftmax/numba, and
    Numba's own setting, for other packages' functions, stays as it was."""
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environment["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = READ_ONLY_PACKAGE + SHUFFLE + "print(json.dumps(numba.config.CACHE_DIR))\n"
    runs = []
    for run in range(2):
        proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                              env=environment, timeout=600)
        assert proc.returncode == 0, proc.stderr
        result, numba_setting = map(json.loads, proc.stdout.splitlines())
        runs.append((result["misses"], result["hits"]))
        assert result["order_ok"] and result["cache_dir"] == str(tmp_path / "xdg" / "fastsoftmax" / "numba")
        assert numba_setting == ""
    assert runs == [(1, 0), (0, 1)]  # compiled, then loaded
    assert any((tmp_path / "xdg" / "fastsoftmax" / "numba").rglob("*.nbi"))


def test_the_cache_folder_is_chosen_in_order(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    package = tmp_path / "package"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "fastsoftmax" / "numba"
    # NUMBA_CACHE_DIR first, or nothing if it cannot be written: the user's choice is not overridden
    assert jit.choose(str(tmp_path / "mine"), package)[1] == tmp_path / "mine"
    assert jit.choose(str(blocked / "mine"), package)[1] is None
    # then the kernels' __pycache__, then the user cache (a read-only site-packages), then none
    assert jit.choose("", package)[1] == package / "__pycache__"
    assert jit.choose("", blocked / "package")[1] == user
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    why, folder = jit.choose("", blocked / "package")
    assert folder is None and str(blocked) in why


def test_kernel_entries_are_keyed_as_numba_types_arrays():
    """jit.entry memoises a kernel's compiled address by jit.kind: two arrays of one kind must have one type."""
    base = np.zeros((6, 4), np.float32)
    readonly = base.copy()
    readonly.flags.writeable = False
    unaligned = np.frombuffer(np.zeros(6 * 4 * 4 + 1, np.uint8)[1:].data, np.float32).reshape(6, 4)
    arrays = [base, base.T, base[:, ::2], base[::2], base[0], base[:, 0], readonly, unaligned, base.astype(np.float64),
              base.astype(np.uint8), np.zeros((0, 4), np.float32), np.zeros(3, np.int64), np.zeros(0, np.int64),
              np.zeros((2, 3, 4), np.float32), np.asfortranarray(np.zeros((2, 3, 4), np.float32))]
    for a in arrays:
        for b in arrays:
            assert (jit.kind(a) == jit.kind(b)) == (typeof(a) == typeof(b)), (typeof(a), typeof(b))


def frozen(a):
    """a read-only copy of a, in a's memory order"""
    a = a.copy(order="K")
    a.flags.writeable = False
    return a


def test_read_only_inputs_get_kernels_of_their_own_types():
    """The kernels compiled for read-only arrays (their own Numba types) give the writable arrays' results."""
    X, W, b, y, x_scale = make_problem(300, 20, 5, np.float64, np.float64, seed=4)
    W = np.asfortranarray(W)  # W.T is the C-contiguous coef the kernels read, passed on without a copy
    expected = fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)
    got = fs.linear_softmax_cross_entropy(*map(frozen, (X, W, b, y)), x_scale=x_scale)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(fs.linear_softmax(*map(frozen, (X, W, b))), fs.linear_softmax(X, W, b))
    rows = np.random.default_rng(0).integers(0, 300, 500)
    runs = []
    for X_, y_, rows_ in ((X, y, rows), map(frozen, (X, y, rows))):
        W2, b2 = W.copy(order="F"), b.copy()
        loss, correct = fs.train_epoch(X_, y_, W2, b2, batch_size=64, lr=0.1, rows=rows_)
        runs.append((float(loss), int(correct), W2, b2))
    (loss, correct, W2, b2), frozen_run = runs
    assert (loss, correct) == frozen_run[:2]
    np.testing.assert_array_equal(frozen_run[2], W2)
    np.testing.assert_array_equal(frozen_run[3], b2)


def test_the_trainer_says_it_compiles_once_and_records_the_seconds(tmp_path):
    """A fresh cache: one line as the kernels compile, their seconds in --json apart from the training's;
    the next run loads them (no line)."""
    data_dir = make_dataset_dir(tmp_path / "data", n_train=300, n_test=50)
    cache = tmp_path / "cache"
    runs = []
    for run in range(2):
        result = tmp_path / f"run{run}.json"
        proc = python(["-m", "fastsoftmax.train", "--data-dir", str(data_dir), "--epochs", "2", "--device", "cpu",
                       "--json", str(result)], cache, FASTSOFTMAX_NO_DOWNLOAD="1")
        runs.append((proc.stdout.splitlines(), json.loads(result.read_text())))
    (lines, first), (again, second) = runs
    compiling = [i for i, line in enumerate(lines) if line.startswith("compiling the CPU kernels, once: about ")]
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(compiling) == 1 and compiling[0] < epochs[0]  # said before the first epoch's line
    assert first["compiled"] is True and first["compile_seconds"] > first["seconds"]  # compiling takes seconds
    assert not any(line.startswith("compiling") for line in again)
    assert second["compiled"] is False and second["compile_seconds"] < first["compile_seconds"]
    assert first["history"] == [dict(r, seconds=s["seconds"], train_seconds=s["train_seconds"])
                                for r, s in zip(second["history"], first["history"])]  # the same run


def test_warmup_names_the_cache(tmp_path):
    """python -m fastsoftmax.warmup refuses arguments it does not know, naming where the kernels go."""
    proc = subprocess.run([sys.executable, "-m", "fastsoftmax.warmup", "--help"], check=False, capture_output=True,
                          text=True, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}, timeout=120)
    assert proc.returncode == 0 and str(tmp_path) in proc.stderr
