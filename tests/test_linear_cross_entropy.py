"""fastsoftmax.linear_cross_entropy (the PyTorch-layout classifier head) against the float64 reference, on
every backend: edge sizes, chunk boundaries, label smoothing, ignored rows (scale 0), large logits, and
its gradients against finite differences of its losses."""

import numpy as np
import pytest
from kernelcases import assert_close, on, to_numpy

import fastsoftmax as fs
from fastsoftmax.backends.cpu import cross_entropy as cpu_cross_entropy
from fastsoftmax.reference import kernels as ref

SHAPES = [(1, 1, 2), (1, 300, 7), (3, 5, 2), (65, 17, 3), (257, 33, 10), (130, 40, 1500)]


def problem(n, d, k, dtype, seed=0, logit_scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    weight = (rng.standard_normal((k, d)) * logit_scale / np.sqrt(d)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    scale = (rng.random(n) + 0.5).astype(dtype)
    scale[::3] = 0  # rows an ignore_index leaves out
    return X, weight, bias, rng.integers(0, k, n), scale


def thirds(n, *shape):
    return max(1, -(-n // 3))


@pytest.fixture
def three_chunks(monkeypatch):
    """Every input in three chunks of rows on both backends (the last one shorter), whatever its shape."""
    monkeypatch.setattr(cpu_cross_entropy, "chunk_rows", thirds)

    def on_cuda():
        from fastsoftmax.backends.cuda import cross_entropy as cuda_cross_entropy

        monkeypatch.setattr(cuda_cross_entropy, "chunk_rows", thirds)
    return on_cuda


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("n,d,k", SHAPES)
def test_losses_and_gradients_match_reference(xp, three_chunks, n, d, k, dtype, smoothing):
    if xp is not np:
        three_chunks()
    X, weight, bias, y, scale = problem(n, d, k, dtype)
    losses, dX, dweight, dbias = fs.linear_cross_entropy(*on(xp, X, weight, bias, y), label_smoothing=smoothing,
                                                         grad_scale=xp.asarray(scale))
    r_losses, r_dX, r_dweight, r_dbias = ref.linear_cross_entropy(X, weight, bias, y, label_smoothing=smoothing,
                                                                  grad_scale=scale)
    for got, want in ((losses, r_losses), (dX, r_dX), (dweight, r_dweight), (dbias, r_dbias)):
        assert type(got) is type(xp.asarray(X)) and got.dtype == dtype
        assert_close(got, want, dtype)
    alone = fs.linear_cross_entropy(*on(xp, X, weight, bias, y), label_smoothing=smoothing)
    assert_close(alone, r_losses, dtype)


def test_without_bias_or_input_gradient(xp):
    X, weight, bias, y, scale = problem(40, 6, 5, np.float64)
    losses, dX, dweight, dbias = fs.linear_cross_entropy(*on(xp, X, weight), None, xp.asarray(y),
                                                         grad_scale=xp.asarray(scale), input_grad=False)
    r_losses, _, r_dweight, _ = ref.linear_cross_entropy(X, weight, np.zeros(5), y, grad_scale=scale)
    assert dX is None and dbias is None
    assert_close(losses, r_losses, np.float64)
    assert_close(dweight, r_dweight, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_stay_finite(xp, dtype):
    X, weight, bias, y, scale = problem(30, 20, 50, dtype, logit_scale=4e3)
    losses, dX, dweight, _ = fs.linear_cross_entropy(*on(xp, X, weight, bias, y), label_smoothing=0.1,
                                                     grad_scale=xp.asarray(scale))
    r_losses = ref.linear_cross_entropy(X, weight, bias, y, label_smoothing=0.1)
    assert np.abs(r_losses).max() > 1e3
    assert_close(losses, r_losses, dtype)
    assert np.isfinite(to_numpy(dX)).all() and np.isfinite(to_numpy(dweight)).all()


def test_gradients_are_the_losses_derivatives():
    """Central differences of sum_i s_i loss_i in each of X, weight and bias (float64)."""
    X, weight, bias, y, scale = problem(9, 4, 6, np.float64, seed=3)
    _, dX, dweight, dbias = fs.linear_cross_entropy(X, weight, bias, y, label_smoothing=0.2, grad_scale=scale)

    def objective(X, weight, bias):
        return float(scale @ fs.linear_cross_entropy(X, weight, bias, y, label_smoothing=0.2))

    arrays = [X, weight, bias]
    for which, grad in enumerate((dX, dweight, dbias)):
        numeric = np.zeros_like(grad)
        for at in np.ndindex(grad.shape):
            for sign in (1, -1):
                moved = [a.copy() for a in arrays]
                moved[which][at] += sign * 1e-6
                numeric[at] += sign * objective(*moved) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "weight": a["weight"][:, :-1]}, "weight must be"),
    (lambda a: {**a, "weight": a["weight"].astype(np.float32)}, "weight must be"),
    (lambda a: {**a, "bias": a["bias"][:-1]}, "bias must have shape"),
    (lambda a: {**a, "y": a["y"] + 100}, "outside"),
    (lambda a: {**a, "weight": a["weight"] * np.nan}, "weight holds NaN"),
    (lambda a: {**a, "grad_scale": a["grad_scale"][:-1]}, "grad_scale must be"),
    (lambda a: {**a, "label_smoothing": 1.5}, "label_smoothing must be"),
])
def test_bad_input_is_a_clear_error(change, message):
    X, weight, bias, y, scale = problem(10, 4, 3, np.float64)
    args = change({"X": X, "weight": weight, "bias": bias, "y": y, "grad_scale": scale, "label_smoothing": 0.0})
    with pytest.raises((ValueError, TypeError), match=message):
        fs.linear_cross_entropy(args.pop("X"), args.pop("weight"), args.pop("bias"), args.pop("y"), **args)
