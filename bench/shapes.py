"""The shape matrix of issue 13: fastsoftmax against PyTorch (and JAX where installed)
at the shapes people bring, for the fused gradient and one epoch of minibatch SGD.

Synthetic data of each shape (uint8 pixels for the Fashion-MNIST-sized one,
float32 features otherwise); every peer gets the same X, y, W, b, order and
thread count. Factories return zero-argument callables, as in bench/peers.py.
"""

import numpy as np

import fastsoftmax as fs
from bench.peers import _torch

# (n, d, k, X dtype); the id names the shape in the benchmark group.
SHAPES = [(60000, 784, 10, np.uint8), (50000, 512, 100, np.float32), (20000, 768, 1000, np.float32),
          (100000, 2048, 1000, np.float32)]
BATCH = 256
LR = 1e-3


def shape_id(n, d, k, dtype):
    return f"{n}x{d}x{k} {np.dtype(dtype).name}"


def problem(n, d, k, dtype, seed=0):
    """X, y, W (d, k) Fortran order, b, x_scale, the epoch's order."""
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        X, scale = rng.integers(0, 256, (n, d), np.uint8), 1 / 255
    else:
        X, scale = rng.standard_normal((n, d), np.float32), 1.0
    W = np.asfortranarray((rng.standard_normal((d, k)) * 0.01).astype(np.float32))
    return X, rng.integers(0, k, n), W, np.zeros(k, np.float32), scale, rng.permutation(n)


def gradient_fastsoftmax(X, y, W, b, scale, order):
    return lambda: fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=scale)


def epoch_fastsoftmax(X, y, W, b, scale, order):
    W, b = W.copy(order="F"), b.copy()
    return lambda: fs.train_epoch(X, y, W, b, rows=order, batch_size=BATCH, lr=LR, x_scale=scale, check_input=False)


def _torch_problem(X, y, W, b, scale):
    torch = _torch()
    Xt = torch.as_tensor(X).float() * scale if X.dtype == np.uint8 else torch.as_tensor(X)
    return torch, Xt, torch.as_tensor(y), torch.as_tensor(W.copy()).requires_grad_(), torch.as_tensor(b.copy()).requires_grad_()


def gradient_torch(X, y, W, b, scale, order):
    torch, Xt, yt, Wt, bt = _torch_problem(X, y, W, b, scale)

    def gradient():
        logits = Xt @ Wt + bt
        loss = torch.nn.functional.cross_entropy(logits, yt)
        hits = (logits.argmax(1) == yt).sum()
        return loss, hits, *torch.autograd.grad(loss, (Wt, bt))

    return gradient


def epoch_torch(X, y, W, b, scale, order):
    torch, Xt, yt, Wt, bt = _torch_problem(X, y, W, b, scale)
    idx = [torch.as_tensor(order[lo : lo + BATCH]) for lo in range(0, len(order), BATCH)]
    opt = torch.optim.SGD([Wt, bt], lr=LR)

    def epoch():
        for i in idx:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(Xt[i] @ Wt + bt, yt[i])
            loss.backward()
            opt.step()
        return float(loss)

    return epoch


def gradient_jax(X, y, W, b, scale, order):
    import jax
    import jax.numpy as jnp

    Xj, yj, Wj, bj = jnp.asarray(X, jnp.float32) * scale, jnp.asarray(y), jnp.asarray(W), jnp.asarray(b)

    def loss_fn(W, b, X, y):
        logits = X @ W + b
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1).mean(), (logits.argmax(1) == y).sum()

    grad = jax.jit(jax.value_and_grad(loss_fn, (0, 1), has_aux=True))
    return lambda: jax.block_until_ready(grad(Wj, bj, Xj, yj))


def sgemm_gflops(n, d, k, repeat=3):
    """The machine's float32 matmul rate (NumPy's OpenBLAS) on this shape's two products, in GFLOP/s."""
    import time

    x, w = np.ones((min(n, 8192), d), np.float32), np.ones((d, k), np.float32)
    z = x @ w
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        z = x @ w
        x.T @ z
        best.append(time.perf_counter() - t)
    return 4 * x.shape[0] * d * k / np.median(best) / 1e9


GRADIENTS = {"fastsoftmax": gradient_fastsoftmax, "torch": gradient_torch, "jax.jit": gradient_jax}
EPOCHS = {"fastsoftmax": epoch_fastsoftmax, "torch": epoch_torch}
NEEDS = {"torch": "torch", "jax.jit": "jax"}
