"""Checks of the CUDA backend that the shared kernel tests (test_kernels.py) do not make.

- every kernels/*.cu compiles with nvcc for sm_80 and sm_90 (what CI can check
  without a GPU), and every template instantiation the backend names compiles
  with NVRTC, the compiler that builds them at run time (where CuPy is
  installed, with or without a GPU);
- on a GPU: the paths the small shared cases miss (blocks that loop over many
  tiles, rows that are not vector aligned, the Fashion-MNIST width), a cached
  epoch graph replayed with a new order and new learning rates, and
  bit-reproducible training.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastsoftmax import reference as ref
from fastsoftmax.backend import cuda_available

SOURCES = sorted((Path(__file__).parent.parent / "kernels").glob("*.cu"))

gpu = pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles(source, arch, tmp_path):
    # Each source instantiates its templates for nvcc (#ifndef __CUDACC_RTC__),
    # so this type-checks the kernels, not only their syntax.
    done = subprocess.run(
        ["nvcc", f"-arch={arch}", "-std=c++17", "-ptx", "-o", str(tmp_path / "out.ptx"), str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("k", [2, 10])
def test_nvrtc_compiles_every_instantiation(k):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 (CuPy without a loadable NVRTC library)
        pytest.skip(f"NVRTC is not available: {e}")
    from fastsoftmax import cuda

    for family, names in cuda.instantiations(k).items():
        for arch in ("80", "90"):
            # method="lto" compiles for a named arch without asking a GPU which
            # one it is; NVRTC's front end and optimiser run as they do at run time.
            cupy.cuda.compiler.compile_using_nvrtc(
                cuda.source(family),
                options=("--std=c++17", "-dlto"),
                arch=arch,
                name_expressions=names,
                method="lto",
            )


def make_problem(n, d, k, x_dtype, w_dtype, seed=0):
    rng = np.random.default_rng(seed)
    if x_dtype == np.uint8:
        X, x_scale = rng.integers(0, 256, (n, d)).astype(np.uint8), 1 / 255
    else:
        X, x_scale = rng.standard_normal((n, d)).astype(x_dtype), 1.0
    W = (rng.standard_normal((d, k)) / np.sqrt(d)).astype(w_dtype)
    b = rng.standard_normal(k).astype(w_dtype)
    return X, W, b, rng.integers(0, k, n), x_scale


def tolerance(w_dtype):
    return 1e-10 if w_dtype == np.float64 else 1e-4


@gpu
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("misaligned", [False, True], ids=["aligned", "misaligned"])
def test_many_tiles_per_block(x_dtype, w_dtype, misaligned):
    """40000 rows: every block of both kernels loops over several tiles; a
    misaligned X takes the scalar loads instead of the vector ones."""
    import cupy as cp

    from fastsoftmax import cuda

    X, W, b, y, x_scale = make_problem(40000, 64, 10, x_dtype, w_dtype)
    Xd = cp.asarray(X)
    if misaligned:  # same values, rows starting one element past a vector boundary
        Xd = cp.empty(X.size + 1, X.dtype)[1:].reshape(X.shape)
        Xd[...] = cp.asarray(X)
    coef, bd, yd = cp.asarray(np.ascontiguousarray(W.T)), cp.asarray(b), cp.asarray(y)
    tol = {"rtol": tolerance(w_dtype), "atol": tolerance(w_dtype)}

    P = cuda.linear_softmax(Xd, coef, bd, x_scale)
    np.testing.assert_allclose(P.get(), ref.linear_softmax(X, W, b, x_scale=x_scale), **tol)

    loss, correct, dcoef, db = cuda.linear_softmax_cross_entropy(Xd, coef, bd, yd, x_scale)
    r_loss, r_correct, r_dW, r_db = ref.linear_softmax_cross_entropy(X, W, b, y, x_scale=x_scale)
    np.testing.assert_allclose(float(loss), r_loss, **tol)
    np.testing.assert_allclose(dcoef.get().T, r_dW, **tol)
    np.testing.assert_allclose(db.get(), r_db, **tol)
    assert abs(int(correct) - r_correct) <= (0 if w_dtype == np.float64 else 2)


def run_epochs(X, y, W, b, x_scale, epochs, batch, seed=0):
    """Epochs of train_epoch on the GPU, each with its own order and learning
    rates; returns (W, b, [(loss_sum, correct) per epoch]) on the host."""
    import cupy as cp

    from fastsoftmax import cuda

    n = X.shape[0]
    rng = np.random.default_rng(seed)
    Xd, yd = cp.asarray(X), cp.asarray(y)
    coef, bd = cp.asarray(np.ascontiguousarray(W.T)), cp.asarray(b)
    stats = []
    for _ in range(epochs):
        order = rng.permutation(n)
        # small steps: with 784 features larger ones diverge, and float32 chaos is no test
        lrs = rng.uniform(0.001, 0.005, -(-n // batch))
        loss_sum, correct = cuda.train_epoch(Xd, yd, cp.asarray(order), coef, bd, cp.asarray(lrs), batch, x_scale, 0.01)
        stats.append((order, lrs, float(loss_sum), int(correct)))
    return coef.get().T, bd.get(), stats


@gpu
@pytest.mark.parametrize("w_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.float32])
def test_replayed_epochs_match_reference(x_dtype, w_dtype):
    """Fashion-MNIST's width and batch size; the second and third epochs
    replay the cached graph with new orders and learning rates."""
    X, W, b, y, x_scale = make_problem(1500, 784, 10, x_dtype, w_dtype, seed=2)
    got_W, got_b, stats = run_epochs(X, y, W, b, x_scale, epochs=3, batch=256)
    r_W, r_b = W, b
    for order, lrs, loss_sum, correct in stats:
        r_W, r_b, r_loss, r_correct = ref.train_epoch(
            X, y, order, r_W, r_b, lrs, 256, x_scale=x_scale, weight_decay=0.01
        )
        np.testing.assert_allclose(loss_sum / len(order), r_loss, rtol=tolerance(w_dtype))
        assert abs(correct - r_correct) <= (0 if w_dtype == np.float64 else 3)
    np.testing.assert_allclose(got_W, r_W, rtol=tolerance(w_dtype), atol=tolerance(w_dtype))
    np.testing.assert_allclose(got_b, r_b, rtol=tolerance(w_dtype), atol=tolerance(w_dtype))


@gpu
def test_training_is_bit_reproducible():
    X, W, b, y, x_scale = make_problem(3000, 784, 10, np.uint8, np.float32, seed=4)
    first = run_epochs(X, y, W, b, x_scale, epochs=2, batch=256)
    second = run_epochs(X, y, W, b, x_scale, epochs=2, batch=256)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert [s[2:] for s in first[2]] == [s[2:] for s in second[2]]
