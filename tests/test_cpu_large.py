"""The CPU backend's large-shape path (fastsoftmax/backends/cpu/large.py): sgemm for the
matmuls, a fused Numba pass per chunk of logits, checked on the shared cases
against the float64 reference, and its memory bounded by the chunk, not n x k."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from kernelcases import (
    LARGE_K_SHAPES,
    SHAPES,
    W_DTYPES,
    X_DTYPES,
    check_all_kernels,
    make_problem,
)

import fastsoftmax as fs
from fastsoftmax.backends import cpu
from fastsoftmax.backends.cpu import large
from fastsoftmax.reference import kernels as ref


@pytest.fixture
def blas_path(monkeypatch):
    """Every shape on the BLAS path, in chunks of a few rows, so that small cases cross chunk bounds."""
    monkeypatch.setattr(cpu, "BLAS_MIN_CLASSES", 2)
    monkeypatch.setattr(large, "CHUNK_ELEMENTS", 1 << 12)


@pytest.mark.parametrize("w_dtype", W_DTYPES)
@pytest.mark.parametrize("x_dtype", X_DTYPES)
@pytest.mark.parametrize("n,d,k", SHAPES + LARGE_K_SHAPES)
def test_blas_path_matches_reference(blas_path, n, d, k, x_dtype, w_dtype):
    check_all_kernels(np, *make_problem(n, d, k, x_dtype, w_dtype))


@pytest.mark.parametrize("n,d,k", LARGE_K_SHAPES)
def test_either_side_of_the_crossover_matches_reference(n, d, k):
    """The threshold as shipped: k = 1000 and 100 take the BLAS path, k = 10 the register tiles."""
    assert cpu.use_large(k) == (k >= cpu.BLAS_MIN_CLASSES)
    check_all_kernels(np, *make_problem(n, d, k, np.uint8, np.float32))


def test_the_crossover_sends_small_k_to_the_register_tiles():
    assert not cpu.use_large(10) and cpu.use_large(1000)


@pytest.mark.parametrize("x_dtype", X_DTYPES)
@pytest.mark.parametrize("w_dtype", W_DTYPES)
def test_blas_train_epoch_matches_reference(blas_path, x_dtype, w_dtype):
    n, d, k, batch = 600, 37, 50, 64  # 600 % 64 != 0: the last batch is partial; a batch spans 2 chunks
    X, W, b, y, x_scale = make_problem(n, d, k, x_dtype, w_dtype, seed=5)
    order = np.random.default_rng(1).permutation(n)
    steps = -(-n // batch)
    lrs = ref.learning_rates("cosine", 0.5, 3 * steps, steps, steps)
    r_W, r_b, r_loss, r_correct = ref.train_epoch(X, y, order, W, b, lrs, batch, x_scale=x_scale, weight_decay=0.01)
    Wd, bd = W.copy(), b.copy()
    loss_sum, correct = fs.train_epoch(X, y, Wd, bd, rows=order, batch_size=batch, lr=0.5, schedule="cosine",
                                       total_steps=3 * steps, start_step=steps, weight_decay=0.01, x_scale=x_scale)
    assert loss_sum.shape == () and correct.shape == ()
    tol = 1e-10 if w_dtype == np.float64 else 1e-4
    np.testing.assert_allclose(Wd, r_W, rtol=tol, atol=tol)
    np.testing.assert_allclose(bd, r_b, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(loss_sum) / n, r_loss, rtol=tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


def test_blas_path_gives_the_same_bits_every_time():
    X, W, b, y, x_scale = make_problem(3000, 100, 1000, np.uint8, np.float32, seed=2)
    first, second = (fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale) for _ in range(2))
    for one, two in zip(first, second):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(fs.linear_softmax(X, W, b, x_scale=x_scale), fs.linear_softmax(X, W, b, x_scale=x_scale))


# The peak memory of a gradient and an epoch on 10^6 rows, over the input's own
# size: a fresh process, its kernels loaded and sgemm's buffers touched on a
# small problem of the same shape first, then the peak RSS (ru_maxrss) before
# and after. What may grow: the shuffled order (8 bytes a row: n, not n x k),
# the chunk's buffers (rows x (k + d)) and a few k x d; what must not: the
# logits (n x k: 40 MB at k = 10, 4 GB at k = 1000) or a converted X (3 GB).
_PEAK = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import fastsoftmax as fs
    d, k, dtype = int(sys.argv[1]), int(sys.argv[2]), np.dtype(sys.argv[3])
    n, scale = 10**6, 1 / 255 if dtype == np.uint8 else 1.0
    W, b = np.zeros((d, k), np.float32, order="F"), np.zeros(k, np.float32)

    def run(X, y):
        fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=scale)
        fs.train_epoch(X, y, W, b, seed=0, batch_size=4096, lr=1e-3, x_scale=scale)

    run(np.ones((5000, d), dtype), np.arange(5000) % k)
    X = np.empty((n, d), dtype)
    X.fill(1)
    y = np.arange(n) % k
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run(X, y)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"extra": after - before, "input": X.nbytes + y.nbytes}))
""")


@pytest.mark.parametrize("d,k,dtype", [(784, 10, "uint8"), (256, 1000, "float32")])
def test_memory_does_not_grow_with_n_times_k(d, k, dtype):
    out = subprocess.run([sys.executable, "-c", _PEAK, str(d), str(k), dtype], capture_output=True, text=True,
                         check=True, timeout=300)
    peak = json.loads(out.stdout.splitlines()[-1])
    n = 10**6
    bound = 8 * n + 32 * 2**20  # the shuffled order, plus 32 MB for the chunk's and k x d buffers
    assert peak["extra"] < bound, (peak, bound)
    assert peak["extra"] < n * k * 4 / 4  # far below the logits of the whole input
