"""fastsoftmax.jax: linear_cross_entropy under jax.jit(jax.grad(...)) against optax's unfused cross-entropy, and
the public kernels taking JAX arrays through DLPack."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

import fastsoftmax as fs  # noqa: E402
from fastsoftmax.jax import linear_cross_entropy  # noqa: E402

REDUCTIONS = ("mean", "sum", "none")


def problem(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    weight = jnp.asarray(rng.standard_normal((k, d)) / np.sqrt(d), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(k), jnp.float32)
    target = rng.integers(0, k, n)
    target[::4] = -100
    return x, weight, jnp.asarray(target), bias


def unfused(x, weight, target, bias, reduction, smoothing):
    """optax's cross-entropy of the logits, with smoothed labels, ignored rows and the reduction."""
    logits = x @ weight.T + bias
    kept = target != -100
    labels = optax.smooth_labels(jax.nn.one_hot(jnp.where(kept, target, 0), weight.shape[0]), smoothing)
    losses = optax.softmax_cross_entropy(logits, labels) * kept
    if reduction == "none":
        return losses
    return losses.sum() / kept.sum() if reduction == "mean" else losses.sum()


def weighted(f, reduction, n):
    """A scalar of f's result: a per-row loss weighed unevenly, so that the backward pass meets distinct rows."""
    return lambda *args: jnp.sum(f(*args) * (jnp.linspace(0.5, 1.5, n) if reduction == "none" else 1.0))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("n,d,k", [(1, 3, 2), (37, 16, 10), (64, 32, 4096)])
def test_jit_grad_matches_optax(n, d, k, reduction, smoothing):
    x, weight, target, bias = problem(n, d, k)
    if n == 1:
        target = jnp.array([1])

    def ours(x, weight, bias):
        return linear_cross_entropy(x, weight, target, bias, reduction=reduction, label_smoothing=smoothing)

    def theirs(x, weight, bias):
        return unfused(x, weight, target, bias, reduction, smoothing)

    np.testing.assert_allclose(jax.jit(ours)(x, weight, bias), theirs(x, weight, bias), rtol=1e-5, atol=1e-6)
    got = jax.jit(jax.grad(weighted(ours, reduction, n), argnums=(0, 1, 2)))(x, weight, bias)
    want = jax.grad(weighted(theirs, reduction, n), argnums=(0, 1, 2))(x, weight, bias)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.abs(w).max()))


def test_vmap_and_leading_dimensions_without_bias():
    x, weight, target, _ = problem(24, 5, 6)
    batched = jax.vmap(lambda x: linear_cross_entropy(x, weight, target))(jnp.stack([x, 2 * x]))
    for got, scale in zip(batched, (1, 2)):
        np.testing.assert_allclose(got, unfused(scale * x, weight, target, 0.0, "mean", 0.0), rtol=1e-5)
    per_row = linear_cross_entropy(x.reshape(2, 12, 5), weight, target.reshape(2, 12), reduction="none")
    assert per_row.shape == (2, 12)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, w, t, b: linear_cross_entropy(x, w, t, b, reduction="avg"), ValueError, "reduction must be"),
    (lambda x, w, t, b: linear_cross_entropy(x, w[:, :-1], t, b), ValueError, "share their features"),
    (lambda x, w, t, b: linear_cross_entropy(x, w, t[:-1], b), ValueError, "target must have"),
    (lambda x, w, t, b: linear_cross_entropy(x.astype(jnp.bfloat16), w, t, b), TypeError, "float32"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(*problem(8, 3, 4))


def test_raw_kernels_take_jax_arrays():
    x, weight, target, bias = problem(30, 4, 3)
    W = weight.T
    P = fs.linear_softmax(x, W, bias)
    assert isinstance(P, jax.Array)
    np.testing.assert_allclose(P, jax.nn.softmax(x @ W + bias), rtol=1e-5, atol=1e-7)
    y = jnp.where(target < 0, 0, target)
    loss, _, dW, _ = fs.linear_softmax_cross_entropy(x, W, bias, y)
    assert isinstance(dW, jax.Array)
    np.testing.assert_allclose(loss, optax.softmax_cross_entropy_with_integer_labels(x @ W + bias, y).mean(),
                               rtol=1e-5)
    with pytest.raises(TypeError, match="JAX arrays are immutable"):
        fs.train_epoch(x, y, W, bias, batch_size=8, lr=0.1, seed=0)
