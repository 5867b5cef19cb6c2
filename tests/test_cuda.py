"""Checks of the CUDA backend that the shared kernel tests (test_kernels.py) do not make.

They run on a GPU where CuPy sees one, and everywhere else on the CPU emulator
of tests/cudaemu (the same kernels/*.cu, compiled with g++):
- the geometry header matches kernels/geometry.py, and every template
  instantiation that the backend may name compiles with nvcc for sm_80 and
  sm_90 and with NVRTC (where CuPy is installed);
- the paths the small shared cases miss (blocks that loop over many tiles,
  rows that are not vector aligned, the Fashion-MNIST width), the cached
  epoch launch run again with a new order and a new first step,
  bit-reproducible training;
- SoftmaxRegression(device="cuda") and the training command line, against the CPU;
- in emulation, a bug planted in a kernel makes the shared cases fail.
"""

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REAL_GPU
from fastsoftmax.kernels import geometry
from fastsoftmax.kernels import source as cuda_source
from idxdata import write_idx
from kernelcases import assert_close, check_all_kernels, fit_on_both_devices, make_problem, on, to_numpy

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref
from fastsoftmax.reference.schedules import kind_of
from fastsoftmax.io.datasets import FILES
from fastsoftmax.train import main as train_main

FAMILIES = sorted(geometry.instantiations(10))


def test_geometry_header_is_generated_from_geometry_py():
    """kernels/geometry.cuh (what nvcc and NVRTC compile) holds kernels/geometry.py's numbers."""
    assert geometry.HEADER.read_text() == geometry.header(), (
        "kernels/geometry.cuh is stale: run python -m fastsoftmax.kernels.geometry"
    )


def test_every_source_has_instantiations():
    assert FAMILIES == sorted(p.stem for p in geometry.HEADER.parent.glob("*.cu"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("family", FAMILIES)
def test_nvcc_compiles_every_instantiation(family, arch, tmp_path):
    # The source as NVRTC gets it, plus host code taking each kernel's address:
    # nvcc then compiles (not only parses) every instantiation that
    # fastsoftmax/backends/cuda/ may name at run time, from the same list.
    names = sorted({name for k in (2, 10) for name in geometry.instantiations(k)[family]})
    uses = "".join(f"static void* const use_{i} = (void*)&{name};\n" for i, name in enumerate(names))
    unit = tmp_path / f"{family}.cu"
    unit.write_text(cuda_source(family) + "\n" + uses)
    done = subprocess.run(
        ["nvcc", f"-arch={arch}", "-std=c++17", "-ptx", "-o", str(tmp_path / "out.ptx"), str(unit)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    ptx = (tmp_path / "out.ptx").read_text()
    assert ptx.count(".entry") == len(names)


@pytest.mark.parametrize("k", [2, 10])
def test_nvrtc_compiles_every_instantiation(k):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 (CuPy without a loadable NVRTC library)
        pytest.skip(f"NVRTC is not available: {e}")
    for family, names in geometry.instantiations(k).items():
        for arch in ("80", "90"):
            # method="lto" compiles for a named arch without asking a GPU which
            # one it is; NVRTC's front end and optimiser run as they do at run time.
            cupy.cuda.compiler.compile_using_nvrtc(
                cuda_source(family),
                options=("--std=c++17", "-dlto"),
                arch=arch,
                name_expressions=names,
                method="lto",
            )


def tolerance(w_dtype):
    return 1e-10 if w_dtype == np.float64 else 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_many_tiles_per_block(cupy_module, x_dtype, w_dtype, misaligned):
    """Every block of both kernels loops over several tiles (on a GPU 40000
    rows; the emulated device has 2 SMs, so fewer do); a misaligned X takes
    the scalar loads instead of the vector ones."""
    cp = cupy_module
    X, W, b, y, x_scale = make_problem(40000 if REAL_GPU else 1200, 64, 10, x_dtype, w_dtype)
    Xd = cp.asarray(X)
    if misaligned:  # same values, rows starting one element past a vector boundary
        Xd = cp.empty(X.size + 1, X.dtype)[1:].reshape(X.shape)
        Xd[...] = cp.asarray(X)
    Wd, bd, yd = cp.asarray(W), cp.asarray(b), cp.asarray(y)
    tol = {"rtol": tolerance(w_dtype), "atol": tolerance(w_dtype)}

    P = fs.linear_softmax(Xd, Wd, bd, x_scale=x_scale)
    np.testing.assert_allclose(P.get(), ref.linear_softmax(X, W, b, x_scale=x_scale), **tol)

    loss, correct, dW, db = fs.linear_softmax_cross_entropy(Xd, Wd, bd, yd, x_scale=x_scale)
    r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)
    np.testing.assert_allclose(float(loss), r_loss, **tol)
    np.testing.assert_allclose(dW.get(), r_dW, **tol)
    np.testing.assert_allclose(db.get(), r_db, **tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


def run_epochs(cp, X, y, W, b, x_scale, epochs, batch, seed=0):
    """Epochs of train_epoch on the device, each with its own order, one cosine
    schedule across them (so the cached epoch launch runs again with new rows
    and a new first step); returns (W, b, [(order, lrs, loss_sum, correct) per
    epoch]) on the host."""
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    Xd, yd, Wd, bd = cp.asarray(X), cp.asarray(y), cp.asarray(W), cp.asarray(b)
    steps = -(-n // batch)
    # small steps: with 784 features larger ones diverge, and float32 chaos is no test
    schedule = dict(lr=0.005, schedule="cosine", total_steps=epochs * steps)
    stats = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        loss_sum, correct = fs.train_epoch(Xd, yd, Wd, bd, rows=cp.asarray(order), batch_size=batch,
                                           start_step=epoch * steps, weight_decay=0.01, x_scale=x_scale, **schedule)
        lrs = ref.learning_rates("cosine", 0.005, epochs * steps, epoch * steps, steps)
        stats.append((order, lrs, float(loss_sum), int(correct)))
    return Wd.get(), bd.get(), stats


@pytest.mark.cuda
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
def test_repeated_epochs_match_reference(cupy_module, x_dtype, w_dtype):
    """Fashion-MNIST's width and batch size; the second and third epochs reuse
    the cached epoch launch with new orders and learning rates."""
    X, W, b, y, x_scale = make_problem(1500, 784, 10, x_dtype, w_dtype, seed=2)
    got_W, got_b, stats = run_epochs(cupy_module, X, y, W, b, x_scale, epochs=3, batch=256)
    r_W, r_b = W, b
    for order, lrs, loss_sum, correct in stats:
        r_W, r_b, r_loss, r_correct = ref.train_epoch(
            X, y, order, r_W, r_b, lrs, 256, x_scale=x_scale, weight_decay=0.01
        )
        np.testing.assert_allclose(loss_sum / len(order), r_loss, rtol=tolerance(w_dtype))
        assert abs(correct - r_correct) <= (0 if w_dtype == np.float64 else 3)
    np.testing.assert_allclose(got_W, r_W, rtol=tolerance(w_dtype), atol=tolerance(w_dtype))
    np.testing.assert_allclose(got_b, r_b, rtol=tolerance(w_dtype), atol=tolerance(w_dtype))


@pytest.mark.cuda
def test_training_is_bit_reproducible(cupy_module):
    X, W, b, y, x_scale = make_problem(3000 if REAL_GPU else 600, 784, 10, np.uint8, np.float32, seed=4)
    first = run_epochs(cupy_module, X, y, W, b, x_scale, epochs=2, batch=256)
    second = run_epochs(cupy_module, X, y, W, b, x_scale, epochs=2, batch=256)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert [s[2:] for s in first[2]] == [s[2:] for s in second[2]]


# ---- sample weights, through the backend's own functions ----


@pytest.fixture(params=["fused", "large"])
def weighted_path(request, cupy_module, monkeypatch):
    """The dense path the weighted tests run: the device's own choice (fused, for their small W), or
    the large path, forced by a shared-memory limit of 0 (as test_cuda_large.py's force_large)."""
    from fastsoftmax.backends.cuda import compile as nvrtc

    if request.param == "large":
        monkeypatch.setattr(nvrtc, "shared_memory_limit", lambda: 0)
    families = []
    kernel = nvrtc.kernel
    monkeypatch.setattr(nvrtc, "kernel", lambda family, expr: families.append(family) or kernel(family, expr))
    yield request.param
    # (train_epoch_many runs large.py's sweep on either: only one model fits the fused kernels)
    assert ("linear_softmax_cross_entropy" in families) == (request.param == "fused")
    assert "softmax_rows" in families or request.param == "fused"


def weighted_problem(w_dtype, seed=11):
    """A problem with sample weights: some zero, the rest from 0.1 to 3; w as given (the reference
    normalises it) and normalised to mean 1 (what ops hands the backend)."""
    X, W, b, y, x_scale = make_problem(150, 20, 5, np.uint8, w_dtype, seed=seed)
    w = np.random.default_rng(seed).uniform(0.1, 3.0, len(y))
    w[:12] = 0.0
    return X, W, b, y, x_scale, w, (w * len(w) / w.sum()).astype(w_dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
def test_weighted_gradient_matches_reference(cupy_module, weighted_path, w_dtype):
    """The weighted loss sum(w l) / n with w of mean 1 is the reference's weighted mean sum(w l) / sum(w);
    the hits are not weighted."""
    from fastsoftmax.backends import cuda

    X, W, b, y, x_scale, w, w_mean1 = weighted_problem(w_dtype)
    Xd, bd, yd, wd = on(cupy_module, X, b, y, w_mean1)
    coef = cupy_module.asarray(np.ascontiguousarray(W.T))
    loss, correct, dcoef, db = cuda.linear_softmax_cross_entropy(Xd, coef, bd, yd, x_scale, wd)
    r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale, sample_weight=w)
    assert_close(loss, r_loss, w_dtype)
    assert_close(to_numpy(dcoef).T, r_dW, w_dtype)
    assert_close(db, r_db, w_dtype)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 1)
    assert r_correct == ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)[1]


@pytest.mark.cuda
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
def test_weighted_epochs_match_reference(cupy_module, weighted_path, w_dtype):
    """train_epoch, and train_epoch_many of three models (each with its own rate and decay), with
    sample weights indexed by X's row through a shuffled order and a partial last batch."""
    from fastsoftmax.backends import cuda

    cp = cupy_module
    X, W, b, y, x_scale, w, w_mean1 = weighted_problem(w_dtype, seed=12)
    order = np.random.default_rng(1).permutation(len(y))
    Xd, yd, rows, wd = on(cp, X, y, order, w_mean1)
    batch, total, start = 32, 12, 3
    steps = -(-len(y) // batch)

    def reference(lr, decay):
        lrs = ref.learning_rates("cosine", lr, total, start, steps)
        return ref.train_epoch(X, y, order, W, b, lrs, batch, x_scale=x_scale, weight_decay=decay, sample_weight=w)

    coef, bias = cp.asarray(np.ascontiguousarray(W.T)), cp.asarray(b)
    loss_sum, correct = cuda.train_epoch(Xd, yd, rows, coef, bias, batch, x_scale, 0.01, kind_of("cosine"), 0.5,
                                         total, start, wd, None)
    r_W, r_b, r_loss, r_correct = reference(0.5, 0.01)
    assert_close(to_numpy(coef).T, r_W, w_dtype)
    assert_close(bias, r_b, w_dtype)
    assert_close(float(loss_sum) / len(y), r_loss, w_dtype)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)

    lrs, decays = [0.5, 0.2, 1.0], [0.01, 0.0, 0.1]
    coefs = cp.asarray(np.stack([np.ascontiguousarray(W.T)] * 3))
    biases = cp.asarray(np.stack([b] * 3))
    losses, hits = cuda.train_epoch_many(Xd, yd, rows, coefs, biases, batch, x_scale, decays, kind_of("cosine"), lrs,
                                         total, start, wd)
    for i, (lr, decay) in enumerate(zip(lrs, decays)):
        r_W, r_b, r_loss, r_correct = reference(lr, decay)
        assert_close(to_numpy(coefs[i]).T, r_W, w_dtype)
        assert_close(biases[i], r_b, w_dtype)
        assert_close(float(losses[i]) / len(y), r_loss, w_dtype)
        assert abs(int(hits[i]) - r_correct) <= (0 if w_dtype == np.float64 else 2)


# ---- the estimator and the command line on the CUDA backend ----


@pytest.mark.cuda
def test_estimator_on_cuda_matches_the_cpu(cupy_module):
    X, _, _, y, _ = make_problem(300, 20, 4, np.uint8, np.float32, seed=7)
    cpu, gpu = fit_on_both_devices(cupy_module, X, y, eval_set=(X[:50], y[:50]), epochs=3, batch_size=64, lr=0.1)
    assert [r["test_acc"] for r in gpu.history_] == [r["test_acc"] for r in cpu.history_]
    Xd = cupy_module.asarray(X)
    assert type(gpu.predict(Xd)) is type(Xd)  # arrays of the input's kind
    assert gpu.score(Xd, cupy_module.asarray(y)) == pytest.approx(cpu.score(X, y))


@pytest.fixture(scope="module")
def fashion_subset(tmp_path_factory):
    """The first 600 training and 300 test images of the real Fashion-MNIST, as idx files."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTSOFTMAX_NO_DOWNLOAD", "1")
        try:
            data = fs.load_dataset("fashion-mnist")
        except fs.DatasetNotFoundError as e:
            pytest.skip(f"real Fashion-MNIST absent (apt-get install dataset-fashion-mnist): {e}")
    folder = tmp_path_factory.mktemp("fashion-subset")
    images = (data.x_train[:600], data.x_test[:300])
    arrays = (images[0].reshape(-1, 28, 28), data.y_train[:600], images[1].reshape(-1, 28, 28), data.y_test[:300])
    for name, array in zip(FILES, arrays):
        write_idx(folder / name, array)
    return folder


@pytest.mark.cuda
def test_train_cli_on_cuda_reaches_the_cpu_accuracy(cupy_module, fashion_subset, tmp_path, capsys):
    results = {}
    for device in ("cpu", "cuda"):
        args = ["--data-dir", str(fashion_subset), "--device", device, "--epochs", "3", "--batch-size", "64",
                "--lr", "0.2", "--json", str(tmp_path / f"{device}.json"), "--quiet"]
        assert train_main(args) == 0, capsys.readouterr().err
        results[device] = json.loads((tmp_path / f"{device}.json").read_text())
    out = capsys.readouterr().out
    assert "device cuda (cudaemu" in out or REAL_GPU
    assert results["cpu"]["test_acc"] > 0.7  # the subset is learnable: the comparison means something
    assert results["cuda"]["test_acc"] == pytest.approx(results["cpu"]["test_acc"], abs=0.01)
    assert results["cuda"]["loss"] == pytest.approx(results["cpu"]["loss"], rel=1e-3)


# ---- a planted kernel bug fails the tests ----

# Each replaces one piece of a kernel's source, as NVRTC gets it.
PLANTED_BUGS = {
    "off-by-one row bound": ("linear_softmax", "if (row >= n) break;", "if (row > n) break;"),
    "off-by-one tree sum": ("softmax_cross_entropy", "for (int s = THREADS / 2; s > 0; s /= 2)",
                            "for (int s = THREADS / 2; s > 1; s /= 2)"),
    "off-by-one accuracy bound": ("accuracy", "if (row < n) {", "if (row <= n) {"),
    "no barrier after staging a tile": (
        "linear_softmax_cross_entropy",
        "stage_rows(X_s, X, rows, tile_first, count, d, x_vec16);\n        __syncthreads();",
        "stage_rows(X_s, X, rows, tile_first, count, d, x_vec16);",
    ),
    "no barrier before the next tile": (
        "linear_softmax_cross_entropy", "__syncthreads();  // the next tile overwrites X_s and v_s", ""),
}


@pytest.mark.cuda
@pytest.mark.skipif(REAL_GPU, reason="checks the emulator's bounds and barrier checks, which a GPU does not make")
@pytest.mark.parametrize(("family", "old", "new"), PLANTED_BUGS.values(), ids=PLANTED_BUGS)
def test_a_planted_kernel_bug_fails_the_shared_cases(cupy_module, monkeypatch, family, old, new):
    from cudaemu import KernelFault

    from fastsoftmax.backends.cuda import compile as nvrtc

    text = nvrtc.source(family)
    assert text.count(old) == 1, f"the bug's site is not (or not once) in {family}.cu"
    monkeypatch.setattr(nvrtc, "source", lambda name: text.replace(old, new) if name == family else cuda_source(name))
    nvrtc.compiled.cache_clear()
    try:
        # 300 rows: several tiles per block, and a last block iteration that is not full
        with pytest.raises((AssertionError, KernelFault)):
            check_all_kernels(cupy_module, *make_problem(300, 33, 10, np.float32, np.float32, seed=9))
    finally:
        nvrtc.compiled.cache_clear()


# ---- the GPU epoch's budget: launches, barriers and synchronisations ----


def fit_costs(cp, epochs, **fit_args):
    """The stand-in's counters after a fit of `epochs` epochs (fresh model, fixed data)."""
    X, _, _, y, _ = make_problem(500, 20, 4, np.uint8, np.float32, seed=7)
    cp.counters.reset()
    fs.SoftmaxRegression(device="cuda", epochs=epochs, batch_size=64).fit(X, y, **fit_args).history_
    return dataclasses.asdict(cp.counters)


def per_epoch(cp, **fit_args):
    """What one more epoch costs: the difference between fits of 5 and 2 epochs, over 3."""
    five, two = fit_costs(cp, 5, **fit_args), fit_costs(cp, 2, **fit_args)
    return {name: (five[name] - two[name]) / 3 for name in ("launches", "graph_launches", "host_to_device", "syncs")}


@pytest.mark.cuda
@pytest.mark.skipif(REAL_GPU, reason="counts the stand-in's launches and synchronisations")
def test_a_gpu_epoch_is_two_launches_and_one_sync(cupy_module):
    """No host work inside an epoch: the order is written on the device, the
    weights stay there, and the host reads the epoch's loss and hits at once."""
    cost = per_epoch(cupy_module)
    assert cost == {"launches": 2, "graph_launches": 0, "host_to_device": 0, "syncs": 1}


@pytest.mark.cuda
@pytest.mark.skipif(REAL_GPU, reason="counts the stand-in's launches and synchronisations")
def test_an_eval_set_adds_one_sync_and_a_callback_only_what_it_reads(cupy_module):
    X_eval, _, _, y_eval, _ = make_problem(100, 20, 4, np.uint8, np.float32, seed=8)
    with_eval = per_epoch(cupy_module, eval_set=(X_eval, y_eval))
    assert with_eval == {"launches": 4, "graph_launches": 0, "host_to_device": 0, "syncs": 2}
    quiet = per_epoch(cupy_module, callback=lambda model, record: None)
    assert quiet["syncs"] == 1  # a callback that does not read the weights costs nothing
    reading = per_epoch(cupy_module, callback=lambda model, record: model.coef_.sum())
    assert reading["syncs"] == 2 and reading["host_to_device"] == 0  # the weights, copied because asked


@pytest.mark.cuda
@pytest.mark.skipif(REAL_GPU, reason="reads the emulated grid barrier's generation word")
def test_an_epoch_is_one_launch_of_two_grid_barriers_a_step(cupy_module):
    X, W, b, y, x_scale = make_problem(300, 12, 3, np.float32, np.float32, seed=3)
    Xd, yd, Wd, bd = (cupy_module.asarray(a) for a in (X, y, W, b))
    workspace = {}  # the run's: the launch and its buffers, from epoch to epoch

    def epoch():
        fs.train_epoch(Xd, yd, Wd, bd, seed=1, epoch=0, batch_size=64, lr=0.1, workspace=workspace, check_input=False)

    epoch()  # sets up the launch, whose buffers the next epoch reuses
    (launch,) = workspace.values()
    generation, launches = int(launch.barrier[1]), cupy_module.counters.launches
    epoch()
    assert cupy_module.counters.launches - launches == 2  # the epoch's order, then every step
    assert int(launch.barrier[1]) - generation == 2 * 5  # 5 steps of 64 rows, two grid barriers each
