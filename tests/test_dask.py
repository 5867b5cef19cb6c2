"""SoftmaxRegression on Dask arrays, against a real dask.distributed LocalCluster (2 worker processes).

The Dask fit must equal the in-memory one: lbfgs on the chunks' summed
gradients reaches the in-memory lbfgs optimum, sgd over one chunk is the
in-memory sgd step for step. Plus uneven chunks, a chunk of one row, a worker
that dies inside a gradient pass, predictions by chunk, memory-mapped idx files
and the --dask command line.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

from idxdata import make_dataset_dir, write_idx  # noqa: E402

from fastsoftmax import SoftmaxRegression  # noqa: E402
from fastsoftmax.cli.dask import parse_scheduler  # noqa: E402
from fastsoftmax.io.idx import IdxError, IdxRows, read_idx, read_idx_dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes with 1 thread each, as `--dask local:2` starts on 2 cores."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"NUMBA_NUM_THREADS": "1"}) as cluster, distributed.Client(cluster) as c:
        yield c


def problem(n=700, d=12, k=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k))).argmax(axis=1)
    if dtype == np.uint8:
        X = np.clip(X * 40 + 128, 0, 255)
    return X.astype(dtype), y


UNEVEN = (300, 1, 250, 149)  # a one-row chunk among uneven ones


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
@pytest.mark.parametrize("chunks", [UNEVEN, (700,)], ids=["uneven", "one-chunk"])
def test_lbfgs_on_dask_equals_lbfgs_in_memory(client, dtype, chunks):
    X, y = problem(dtype=dtype)
    expected = SoftmaxRegression(solver="lbfgs").fit(X, y)
    model = SoftmaxRegression(solver="lbfgs").fit(da.from_array(X, chunks=(chunks, -1)),
                                                   da.from_array(y, chunks=(chunks,)))
    tol = 2e-3 if dtype == np.float32 else 1e-6  # float32 sums in another order stop lbfgs a little elsewhere
    np.testing.assert_allclose(model.coef_, expected.coef_, atol=tol * np.abs(expected.coef_).max())
    np.testing.assert_allclose(model.intercept_, expected.intercept_, atol=tol * np.abs(expected.coef_).max())
    assert abs(model.history_[-1]["loss"] - expected.history_[-1]["loss"]) < tol
    if dtype != np.float32:
        assert model.n_iter_ == expected.n_iter_


def die_at(block, tally, task):
    """Kill the worker running this task if it is the task-th chunk read so far (the tally file counts)."""
    fd = os.open(tally, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"x")  # appends are atomic: the tasks of both workers count in one file
    finally:
        os.close(fd)
    if os.path.getsize(tally) == task:
        os._exit(1)
    return block


def test_a_worker_killed_inside_a_gradient_pass_changes_nothing(client, tmp_path):
    """The 10th chunk read kills its worker: 4 chunks for the finiteness check, 4 for lbfgs's
    first gradient, so the 2nd gradient pass loses a worker halfway; Dask runs its task again."""
    X, y = problem()
    expected = SoftmaxRegression(solver="lbfgs").fit(X, y)
    tally = tmp_path / "tally"
    workers = set(client.scheduler_info()["workers"])
    Xd = da.from_array(X, chunks=(UNEVEN, -1)).map_blocks(die_at, str(tally), 10, meta=X[:0])
    model = SoftmaxRegression(solver="lbfgs").fit(Xd, da.from_array(y, chunks=(UNEVEN,)))
    assert workers - set(client.scheduler_info()["workers"])  # a worker died (its nanny starts another)
    np.testing.assert_allclose(model.coef_, expected.coef_, atol=1e-6 * np.abs(expected.coef_).max())


def test_sgd_over_one_chunk_is_the_in_memory_sgd(client):
    X, y = problem(dtype=np.uint8)
    expected = SoftmaxRegression(epochs=3).fit(X, y)
    model = SoftmaxRegression(epochs=3).fit(da.from_array(X, chunks=(700, -1)), da.from_array(y, chunks=700))
    np.testing.assert_array_equal(model.coef_, expected.coef_)
    assert [r["loss"] for r in model.history_] == [r["loss"] for r in expected.history_]


def test_auto_sgd_standardises_by_the_whole_arrays_moments(client):
    X, y = problem()
    X = X * np.logspace(-3, 4, X.shape[1]) + 1000  # lr="auto" standardises float X
    expected = SoftmaxRegression(epochs=3).fit(X, y)
    for chunks in ((700,), UNEVEN):
        model = SoftmaxRegression(epochs=3).fit(da.from_array(X, chunks=(chunks, -1)), da.from_array(y, chunks=chunks))
        np.testing.assert_allclose(model.feature_mean_, expected.feature_mean_, rtol=1e-12)
        np.testing.assert_allclose(model.feature_scale_, expected.feature_scale_, rtol=1e-9)
        assert model.score(X, y) > 0.6
        if chunks == (700,):  # one chunk: the in-memory fit, to rounding
            np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-4,
                                       atol=1e-5 * np.abs(expected.coef_).max())


def test_sgd_visits_the_chunks_in_order_as_partial_fit_steps(client):
    """Three chunks, one epoch at a constant rate: partial_fit on each chunk in turn, with the
    permutation keys the chunked fit uses (seed, chunk index), gives the same weights."""
    X, y = problem()
    chunks = (200, 300, 200)
    model = SoftmaxRegression(epochs=1, schedule="constant", lr=0.1).fit(
        da.from_array(X, chunks=(chunks, -1)), da.from_array(y, chunks=(chunks,)), classes=4)
    import fastsoftmax as fs

    W, b = np.zeros((12, 4), np.float32, order="F"), np.zeros(4, np.float32)
    for i, (lo, hi) in enumerate([(0, 200), (200, 500), (500, 700)]):
        fs.train_epoch(X[lo:hi], y[lo:hi], W, b, batch_size=256, lr=0.1, seed=0, epoch=i, total_steps=3,
                       start_step=i)
    np.testing.assert_allclose(model.coef_, W.T, rtol=1e-6, atol=1e-7)
    assert model.history_[0]["train_acc"] > 0.5


def test_predictions_on_dask_arrays_are_lazy_and_match_numpy(client):
    X, y = problem()
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    model = SoftmaxRegression(solver="lbfgs").fit(X, labels)
    Xd = da.from_array(X, chunks=(UNEVEN, -1))
    for method in ("predict_proba", "predict", "decision_function", "predict_log_proba"):
        lazy = getattr(model, method)(Xd)
        assert isinstance(lazy, da.Array), method
        np.testing.assert_allclose(lazy.compute(), getattr(model, method)(X), rtol=1e-6) if method != "predict" \
            else np.testing.assert_array_equal(lazy.compute(), model.predict(X))
    assert model.score(Xd, da.from_array(labels, chunks=(UNEVEN,))) == model.score(X, labels)


@pytest.mark.filterwarnings("ignore:lbfgs stopped after max_iter")
def test_cupy_chunks_run_the_cuda_kernels(cupy_module):
    """device="cuda" on a Dask array: each chunk's gradient on the CUDA backend (here in-process,
    on the emulator); the fit equals the CPU's."""
    import dask

    X, y = problem(n=150, d=6, k=3)
    expected = SoftmaxRegression(solver="lbfgs", max_iter=5).fit(X, y)
    with dask.config.set(scheduler="synchronous"):  # the stand-in CuPy lives in this process only
        model = SoftmaxRegression(solver="lbfgs", max_iter=5, device="cuda").fit(
            da.from_array(X, chunks=(60, -1)), da.from_array(y, chunks=60))
    np.testing.assert_allclose(model.coef_, expected.coef_, rtol=1e-5, atol=1e-7)


def test_bad_dask_input_is_named():
    X, y = problem(n=50)
    Xd = da.from_array(X, chunks=(20, -1))
    with pytest.raises(ValueError, match="unknown size"):
        SoftmaxRegression().fit(Xd[Xd[:, 0] > 0], y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        SoftmaxRegression().fit(da.from_array(np.where(X > 1, np.nan, X), chunks=(20, -1)), y)
    with pytest.raises(ValueError, match=r"y must have shape \(50,\)"):
        SoftmaxRegression().fit(Xd, y[:40])
    with pytest.raises(ValueError, match="not among the classes"):
        SoftmaxRegression(solver="lbfgs").fit(Xd, da.from_array(y, chunks=20), classes=[0, 1])
    model = SoftmaxRegression(epochs=1).fit(Xd, y)
    with pytest.raises(ValueError, match="expecting 12 features"):
        model.set_params(warm_start=True).fit(da.from_array(X[:, :5], chunks=(20, -1)), y)


# ---- out of core: idx files memory-mapped chunk by chunk ----


def test_a_raw_idx_file_is_read_chunk_by_chunk(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (1001, 7, 3), dtype=np.uint8)
    path = write_idx(tmp_path / "images", images)
    lazy = read_idx_dask(path)
    assert lazy.shape == (1001, 21) and lazy.numblocks[0] >= 8
    np.testing.assert_array_equal(lazy.compute(), images.reshape(1001, -1))
    assert len(pickle.dumps(lazy)) < 10_000  # the path travels, never the data
    floats = write_idx(tmp_path / "floats", np.arange(12, dtype=np.float64).reshape(4, 3))  # big-endian
    np.testing.assert_array_equal(read_idx_dask(floats).compute(), read_idx(floats))
    np.testing.assert_array_equal(read_idx_dask(write_idx(tmp_path / "i.gz", images)).compute(),
                                  images.reshape(1001, -1))


def test_a_mapped_file_of_the_wrong_length_is_refused_before_reading(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((10, 4, 4), np.uint8))
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(IdxError, match="trailing bytes"):
        IdxRows(path)
    os.truncate(path, 16 + 100)
    with pytest.raises(IdxError, match="truncated"):
        read_idx_dask(path)
    with pytest.raises(IdxError, match="gunzip"):
        IdxRows(write_idx(tmp_path / "images.gz", np.zeros((10, 4, 4), np.uint8)))


def test_parse_scheduler():
    assert parse_scheduler("local:2") == "local:2"
    assert parse_scheduler("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    for bad in ("local:0", "local:x", "local:100000", "", "a b"):
        with pytest.raises(ValueError, match="--dask"):
            parse_scheduler(bad)


def test_train_cli_on_a_local_cluster(tmp_path):
    """--dask local:2 on a raw training file: the images are memory-mapped, the model trains and saves."""
    data = make_dataset_dir(tmp_path / "data", n_train=300, n_test=50, compress=[False, True, True, True])
    for solver in (["--solver", "lbfgs", "--max-iter", "3"], ["--epochs", "2"]):
        proc = subprocess.run([sys.executable, "-m", "fastsoftmax.train", "--data-dir", str(data), "--dask",
                               "local:2", "--save", str(tmp_path / "m.npz"), *solver],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "dask: 2 workers" in proc.stdout and "test accuracy" in proc.stdout
        assert SoftmaxRegression.load(tmp_path / "m.npz").n_features_in_ == 16
    proc = subprocess.run([sys.executable, "-m", "fastsoftmax.train", "--dask", "local:0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "local:N" in proc.stderr


def test_nothing_imports_dask_unless_asked():
    code = ("import sys, numpy as np, fastsoftmax as fs\n"
            "from fastsoftmax import train\n"
            "X = np.random.default_rng(0).random((40, 3)); y = np.arange(40) % 2\n"
            "fs.SoftmaxRegression(epochs=1).fit(X, y).predict(X)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')], 'dask imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
