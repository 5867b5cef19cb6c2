"""The CUDA backend's large-shape path: W too large for shared memory.

Where W (k x d) does not fit in a block's shared memory, fastsoftmax/backends/cuda/large.py
takes the logits and dW from cuBLAS (cupy.matmul) and finishes each chunk of
rows with kernels/softmax_rows.cu. Checked here against the float64 reference:
- every case of the shared list (kernelcases.py) with the limit forced to 0
  (so every shape takes the large path) and chunks of a third of the rows;
- k = 100 with d = 512 and k = 1000 with d = 2048, where the device's limit
  itself chooses the path;
- train_epoch and SoftmaxRegression(device="cuda") on a large shape;
- which path ran (a spy on the kernel families), that memory stays within a
  chunk (the stand-in's largest allocation), and that the choice follows the
  device's shared-memory limit.
Forcing the path by patching compile.shared_memory_limit works on a GPU too;
the stand-in's device attribute is checked in emulation.
"""

import numpy as np
import pytest
from conftest import REAL_GPU
from kernelcases import (
    SHAPES,
    W_DTYPES,
    X_DTYPES,
    assert_close,
    check_all_kernels,
    fit_on_both_devices,
    make_problem,
    on,
    to_numpy,
)

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref
from fastsoftmax.reference.schedules import kind_of

pytestmark = pytest.mark.cuda

# The shapes of the issue: W of 51 200 and 2 048 000 weights.
LARGE_SHAPES = [(96, 512, 100), (64, 2048, 1000)]


@pytest.fixture
def nvrtc(cupy_module):
    from fastsoftmax.backends.cuda import compile as nvrtc

    nvrtc.compiled.cache_clear()
    yield nvrtc
    nvrtc.attribute.cache_clear()
    nvrtc.compiled.cache_clear()  # kernels compiled under a changed limit carry it


@pytest.fixture
def families(nvrtc, monkeypatch):
    """The kernel families the backend asks for, in order (a spy on compile.kernel)."""
    asked = []
    kernel = nvrtc.kernel

    def spy(family, expr):
        asked.append(family)
        return kernel(family, expr)

    monkeypatch.setattr(nvrtc, "kernel", spy)
    return asked


def force_large(nvrtc, monkeypatch, rows_per_chunk=None, width=1):
    """No shared memory for W: every shape takes the large path, in chunks of rows_per_chunk rows."""
    from fastsoftmax.backends.cuda import large

    monkeypatch.setattr(nvrtc, "shared_memory_limit", lambda: 0)
    if rows_per_chunk is not None:
        monkeypatch.setattr(large, "CHUNK_ELEMENTS", rows_per_chunk * width)


FUSED = {"linear_softmax", "linear_softmax_cross_entropy"}


# Every shape of the shared list with both compute dtypes; X's dtype turns
# with the shape (it only decides whether a chunk is converted on the host or
# used as it is), so every (X, W) pair runs three shapes, in a third of the time.
LARGE_PATH_CASES = [(*shape, X_DTYPES[i % len(X_DTYPES)], w) for i, shape in enumerate(SHAPES) for w in W_DTYPES]


@pytest.mark.parametrize("n,d,k,x_dtype,w_dtype", LARGE_PATH_CASES)
def test_shared_cases_on_the_large_path(cupy_module, nvrtc, families, monkeypatch, n, d, k, x_dtype, w_dtype):
    force_large(nvrtc, monkeypatch, rows_per_chunk=max(1, -(-n // 3)), width=max(k, d))  # 3 chunks
    check_all_kernels(cupy_module, *make_problem(n, d, k, x_dtype, w_dtype))
    assert "softmax_rows" in families and not FUSED & set(families)


@pytest.mark.parametrize(("x_dtype", "w_dtype"), [(np.uint8, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("n,d,k", LARGE_SHAPES)
def test_large_shapes_match_reference(cupy_module, nvrtc, families, n, d, k, x_dtype, w_dtype):
    """The device's own limit (an H100's 227 KB) chooses: training never fits these W."""
    check_all_kernels(cupy_module, *make_problem(n, d, k, x_dtype, w_dtype, seed=1))
    assert "softmax_rows" in families and "linear_softmax_cross_entropy" not in families


def train_on_device(cp, X, y, W, b, x_scale, epochs, batch):
    """fs.train_epoch epochs over seeded orders, one cosine schedule; (W, b, [(order, lrs, loss_sum, correct)])."""
    n, steps = X.shape[0], -(-X.shape[0] // batch)
    Xd, yd, Wd, bd = on(cp, X, y, W, b)
    stats = []
    for epoch in range(epochs):
        order = np.random.default_rng([5, epoch]).permutation(n)
        loss_sum, correct = fs.train_epoch(Xd, yd, Wd, bd, rows=cp.asarray(order), batch_size=batch, lr=0.05,
                                           schedule="cosine", total_steps=epochs * steps, start_step=epoch * steps,
                                           weight_decay=0.01, x_scale=x_scale)
        lrs = ref.learning_rates("cosine", 0.05, epochs * steps, epoch * steps, steps)
        stats.append((order, lrs, float(loss_sum), int(correct)))
    return to_numpy(Wd), to_numpy(bd), stats


def check_training(X, y, W, b, x_scale, w_dtype, got_W, got_b, stats, batch):
    r_W, r_b = W, b
    for order, lrs, loss_sum, correct in stats:
        r_W, r_b, r_loss, r_correct = ref.train_epoch(X, y, order, r_W, r_b, lrs, batch, x_scale=x_scale,
                                                      weight_decay=0.01)
        assert_close(loss_sum / len(order), r_loss, w_dtype)
        assert abs(correct - r_correct) <= (0 if w_dtype == np.float64 else 2)
    assert_close(got_W, r_W, w_dtype)
    assert_close(got_b, r_b, w_dtype)


@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_train_epoch_on_a_large_shape(cupy_module, nvrtc, families, w_dtype):
    """Two epochs at k = 100, d = 512, with a partial last batch."""
    X, W, b, y, x_scale = make_problem(80, 512, 100, np.uint8, w_dtype, seed=2)
    got_W, got_b, stats = train_on_device(cupy_module, X, y, W, b, x_scale, epochs=2, batch=32)
    check_training(X, y, W, b, x_scale, w_dtype, got_W, got_b, stats, batch=32)
    assert "softmax_rows" in families and "linear_softmax_cross_entropy" not in families


@pytest.mark.parametrize(("x_dtype", "w_dtype"), [(np.uint8, np.float32), (np.float32, np.float64)])
def test_large_train_epoch_in_chunks(cupy_module, nvrtc, monkeypatch, x_dtype, w_dtype):
    """The large epoch itself (train_epoch's contract), batches of 50 rows in chunks of 16."""
    from fastsoftmax.backends.cuda import large

    force_large(nvrtc, monkeypatch, rows_per_chunk=16, width=33)
    cp, batch, steps = cupy_module, 50, 3
    X, W, b, y, x_scale = make_problem(130, 33, 7, x_dtype, w_dtype, seed=3)
    order = np.random.default_rng(0).permutation(130)
    Xd, yd, bd, rows = on(cp, X, y, b, order)
    coef = cp.asarray(np.ascontiguousarray(W.T))
    loss_sum, correct = large.train_epoch(Xd, yd, rows, coef, bd, batch, x_scale, 0.01, kind_of("cosine"), 0.5, 10, 4,
                                          None)
    stats = [(order, ref.learning_rates("cosine", 0.5, 10, 4, steps), float(loss_sum), int(correct))]
    check_training(X, y, W, b, x_scale, w_dtype, to_numpy(coef).T, to_numpy(bd), stats, batch)


def test_estimator_on_a_large_shape_matches_the_cpu(cupy_module, nvrtc):
    X, _, _, y, _ = make_problem(120, 512, 100, np.uint8, np.float32, seed=4)
    y[:100] = np.arange(100)  # every class present, so both fit 100 classes
    fit_on_both_devices(cupy_module, X, y, epochs=2, batch_size=32, lr=0.2)


@pytest.mark.skipif(REAL_GPU, reason="reads the emulator's allocation counter")
def test_memory_stays_within_a_chunk(cupy_module, nvrtc, monkeypatch):
    """No n x k array: the largest allocation is a chunk of logits (or of X), or W."""
    from fastsoftmax.backends.cuda import large

    n, d, k, chunk = 300, 16, 100, 32
    force_large(nvrtc, monkeypatch, rows_per_chunk=chunk, width=k)
    X, W, b, y, x_scale = make_problem(n, d, k, np.uint8, np.float64)
    Xd, Wd, bd, yd = on(cupy_module, X, W, b, y)
    rows, coef = cupy_module.arange(n), cupy_module.asarray(np.ascontiguousarray(W.T))
    bound = max(chunk * max(k, d), k * d) * W.itemsize
    assert bound < n * k * W.itemsize
    for run in (lambda: fs.linear_softmax_cross_entropy(Xd, Wd, bd, yd, x_scale=x_scale),
                lambda: large.train_epoch(Xd, yd, rows, coef, bd, n, x_scale, 0.0, 1, 0.1, 1, 0, None)):
        cupy_module.counters.reset()
        run()
        assert 0 < cupy_module.counters.largest_allocation <= bound


@pytest.mark.skipif(REAL_GPU, reason="sets the emulated device's shared-memory limit")
def test_the_device_limit_chooses_the_path(cupy_module, nvrtc, families):
    """With 16 KB of shared memory, a 784 x 10 W takes the large path and a 17 x 3 one the fused kernels;
    the large path gives the same bits every time."""
    cupy_module.device_attributes["MaxSharedMemoryPerBlockOptin"] = 16384
    nvrtc.attribute.cache_clear()
    nvrtc.compiled.cache_clear()
    small = on(cupy_module, *make_problem(64, 17, 3, np.float32, np.float32)[:4])
    fs.linear_softmax_cross_entropy(*small)
    fs.linear_softmax(*small[:3])
    assert set(families) == FUSED
    families.clear()
    large = on(cupy_module, *make_problem(64, 784, 10, np.uint8, np.float32)[:4])
    first = [to_numpy(a) for a in fs.linear_softmax_cross_entropy(*large, x_scale=1 / 255)]
    second = [to_numpy(a) for a in fs.linear_softmax_cross_entropy(*large, x_scale=1 / 255)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    fs.linear_softmax(*large[:3], x_scale=1 / 255)
    assert set(families) == {"softmax_rows"}
