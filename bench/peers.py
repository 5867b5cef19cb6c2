"""The peers, each written the way a competent user would write it.

Every peer gets the same data, weights, hyper-parameters and thread count. The
peers get the pixels preloaded in their own preferred form (float32 scaled to
[0, 1] on their device; JAX's epoch reads the uint8 pixels and scales each
batch inside its jitted scan); fastsoftmax gets the raw uint8 pixels and
scales them inside its kernels. Each factory returns a zero-argument callable
that does one unit of work and waits for it to finish (GPU peers synchronise;
a whole epoch reads its loss back, as a training loop does to report it).
"""

import os

import numba
import numpy as np

import fastsoftmax as fs
from fastsoftmax.reference import kernels as reference
from fastsoftmax.ops.dispatch import array_module

# Every peer gets Numba's thread count (by default one per core). XLA reads its
# flags at import, so they are set here, before any benchmark imports jax;
# PyTorch's count is set where it is imported (_torch). The OpenMP wait policy
# is left at its default, as users run: PASSIVE puts idle threads to sleep
# after every parallel region, so each step pays a wake-up (measured: a PyTorch
# epoch 2.3x and a fastsoftmax epoch 2.7x slower).
THREADS = numba.config.NUMBA_NUM_THREADS
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}"
)

SCALE = 1 / 255
K = 10
LR = 0.1  # plain SGD at one constant rate: no peer pays for a schedule


class Unavailable(Exception):
    """This peer cannot run here (say, torch.compile without a working compiler); skip it."""


def weights(d, seed=0):
    """The shared starting point: W (d, K) small random, b zeros, float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((d, K)) * 0.01).astype(np.float32), np.zeros(K, np.float32)


def batches(n, batch):
    return [(lo, min(n, lo + batch)) for lo in range(0, n, batch)]


def _torch():
    """torch with Numba's thread count, so that no peer has more cores than another."""
    import torch

    torch.set_num_threads(THREADS)
    return torch


def _synced(fn, sync):
    def call():
        out = fn()
        sync()
        return out

    return call


def _compiled(fn):
    """fn after torch.compile, where that works: a failure to compile skips the peer."""
    compiled = _torch().compile(fn)
    ready = False

    def call(*args):
        nonlocal ready
        if ready:
            return compiled(*args)
        try:
            out = compiled(*args)
        except Exception as e:  # dynamo and inductor raise many kinds
            raise Unavailable(f"torch.compile does not work here: {type(e).__name__}: {e}") from e
        ready = True
        return out

    return call


# ---- the three kernels ----


def _calls(lib, X, W, b, y):
    """The kernels through lib: fastsoftmax itself, or its NumPy reference (the same signatures)."""
    scores = lib.linear_softmax(X, W, b, x_scale=SCALE)
    return {
        "linear_softmax": lambda: lib.linear_softmax(X, W, b, x_scale=SCALE),
        "linear_logits": lambda: lib.linear_logits(X, W, b, x_scale=SCALE),
        "linear_softmax_cross_entropy": lambda: lib.linear_softmax_cross_entropy(X, W, b, y, x_scale=SCALE),
        "accuracy": lambda: lib.accuracy(scores, y),
    }


def kernel_fastsoftmax(kernel, X, y, xp=np, sync=lambda: None):
    W, b = (xp.asarray(a) for a in weights(X.shape[1]))
    return _synced(_calls(fs, xp.asarray(X), W, b, xp.asarray(y))[kernel], sync)


def kernel_numpy(kernel, X, y):
    """The float64 NumPy reference (fastsoftmax.reference.kernels): the textbook formulas."""
    return _calls(reference, X, *weights(X.shape[1]), y)[kernel]


def _torch_data(X, y, device):
    """torch, its functional module, and the data preloaded: float32 pixels in [0, 1], int64 labels."""
    torch = _torch()
    return torch, torch.nn.functional, torch.as_tensor(X, device=device).float() * SCALE, torch.as_tensor(y, device=device)


def kernel_torch(kernel, X, y, device="cpu", compile=False):
    torch, F, Xf, yt = _torch_data(X, y, device)
    W0, b0 = weights(X.shape[1])
    W = torch.as_tensor(W0, device=device).requires_grad_()
    b = torch.as_tensor(b0, device=device).requires_grad_()

    def forward(Xf, W, b):
        return torch.softmax(Xf @ W + b, dim=1)

    def logits(Xf, W, b):
        return Xf @ W + b

    def loss_and_hits(Xf, W, b, yt):
        logits = Xf @ W + b
        return F.cross_entropy(logits, yt), (logits.argmax(1) == yt).sum()

    def accuracy(scores, yt):
        return (scores.argmax(1) == yt).float().mean()

    if compile:  # the backward of loss_and_hits is compiled too (AOTAutograd)
        forward, logits = _compiled(forward), _compiled(logits)
        loss_and_hits, accuracy = _compiled(loss_and_hits), _compiled(accuracy)

    with torch.no_grad():
        scores = torch.softmax(Xf @ W + b, dim=1)

    def gradient():
        loss, hits = loss_and_hits(Xf, W, b, yt)
        dW, db = torch.autograd.grad(loss, (W, b))
        return loss, hits, dW, db

    calls = {
        "linear_softmax": torch.no_grad()(lambda: forward(Xf, W, b)),
        "linear_logits": torch.no_grad()(lambda: logits(Xf, W, b)),
        "linear_softmax_cross_entropy": gradient,
        "accuracy": lambda: accuracy(scores, yt).item(),  # a float, as fastsoftmax.accuracy gives
    }
    return _synced(calls[kernel], torch.cuda.synchronize if device == "cuda" else lambda: None)


def kernel_jax(kernel, X, y):
    import jax
    import jax.numpy as jnp

    Xf, yj = jnp.asarray(X, jnp.float32) * SCALE, jnp.asarray(y)
    W, b = (jnp.asarray(a) for a in weights(X.shape[1]))

    def loss_fn(W, b, Xf, yj):
        logits = Xf @ W + b
        loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), yj[:, None], 1).mean()
        return loss, (logits.argmax(1) == yj).sum()

    # The arrays are arguments, not closed-over constants, which XLA would fold away.
    forward = jax.jit(lambda W, b, Xf: jax.nn.softmax(Xf @ W + b))
    logits = jax.jit(lambda W, b, Xf: Xf @ W + b)
    gradient = jax.jit(jax.value_and_grad(loss_fn, (0, 1), has_aux=True))
    accuracy = jax.jit(lambda s, y: (s.argmax(1) == y).mean())
    scores = forward(W, b, Xf)
    calls = {
        "linear_softmax": lambda: jax.block_until_ready(forward(W, b, Xf)),
        "linear_logits": lambda: jax.block_until_ready(logits(W, b, Xf)),
        "linear_softmax_cross_entropy": lambda: jax.block_until_ready(gradient(W, b, Xf, yj)),
        "accuracy": lambda: float(accuracy(scores, yj)),
    }
    return calls[kernel]


def kernel_cupy_naive(kernel, X, y):
    """cupy.matmul plus elementwise ops: the obvious GPU port of the NumPy code."""
    import cupy as cp

    Xf, yc = cp.asarray(X, cp.float32) * cp.float32(SCALE), cp.asarray(y)
    W, b = (cp.asarray(a) for a in weights(X.shape[1]))
    rows = cp.arange(len(yc))

    def forward():
        z = Xf @ W + b
        e = cp.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def gradient():
        p = forward()
        loss = -cp.log(p[rows, yc]).mean()
        correct = (p.argmax(1) == yc).sum()
        p[rows, yc] -= 1
        p /= len(yc)
        return loss, correct, Xf.T @ p, p.sum(0)

    scores = forward()
    calls = {
        "linear_softmax": forward,
        "linear_logits": lambda: Xf @ W + b,
        "linear_softmax_cross_entropy": gradient,
        "accuracy": lambda: float((scores.argmax(1) == yc).mean()),
    }
    return _synced(calls[kernel], cp.cuda.Device().synchronize)


# ---- one epoch of minibatch SGD: batch 256, lr 0.1, one shuffled order for all ----


def epoch_fastsoftmax(X, y, order, batch, device="cpu"):
    """ops.train_epoch on its trusted path: what SoftmaxRegression.fit runs per epoch."""
    xp = array_module(device)
    W, b = weights(X.shape[1])
    # Fortran order: W's transpose is the C-contiguous (k, d) the kernels read, so W trains in place.
    W, b = xp.asfortranarray(xp.asarray(W)), xp.asarray(b)
    X, y, order = xp.asarray(X), xp.asarray(y), xp.asarray(order)

    def epoch():
        loss, _ = fs.train_epoch(X, y, W, b, rows=order, batch_size=batch, lr=LR, x_scale=SCALE, check_input=False)
        return float(loss)

    return epoch


def epoch_reference(X, y, order, batch):
    """The float64 NumPy reference's epoch (fastsoftmax.reference.kernels.train_epoch)."""
    W, b = weights(X.shape[1])
    lrs = np.full(len(batches(len(order), batch)), LR)
    return lambda: reference.train_epoch(X, y, order, W, b, lrs, batch, x_scale=SCALE)[2]


def epoch_naive(X, y, order, batch, xp=np):
    """NumPy (or CuPy: cupy.matmul plus elementwise ops) from scratch in float32, the tutorials' way."""
    Xf, yx = xp.asarray(X, xp.float32) * xp.float32(SCALE), xp.asarray(y)
    W, b = (xp.asarray(a) for a in weights(X.shape[1]))
    idx = [xp.asarray(order[lo:hi]) for lo, hi in batches(len(order), batch)]
    lr = xp.float32(LR)

    def epoch():
        for i in idx:
            xb, yb = Xf[i], yx[i]
            z = xb @ W + b
            p = xp.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[xp.arange(len(i)), yb] -= 1
            p /= len(i)
            W[...] -= lr * (xb.T @ p)
            b[...] -= lr * p.sum(axis=0)
        return float(b[0])  # waits for a GPU

    return epoch


def epoch_torch(X, y, order, batch, device="cpu", compile=False):
    """nn.Linear + F.cross_entropy + optim.SGD on preloaded tensors."""
    return torch_epoch(_torch_data(X, y, device), order, batch, device, compile)


def torch_epoch(data, order, batch, device="cpu", compile=False, lr=LR, weight_decay=0.0):
    """epoch_torch on data = _torch_data(...) loaded once (a sweep's models share it); weight_decay
    decays the weights, not the bias, as fastsoftmax's does."""
    torch, F, Xf, yt = data
    idx = [torch.as_tensor(order[lo:hi], device=device) for lo, hi in batches(len(order), batch)]
    model = torch.nn.Linear(Xf.shape[1], K).to(device)
    W, b = weights(Xf.shape[1])
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(W.T))
        model.bias.copy_(torch.as_tensor(b))
    opt = torch.optim.SGD([{"params": [model.weight], "weight_decay": weight_decay}, {"params": [model.bias]}],
                          lr=lr)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.detach()

    if compile:  # the whole step: forward, backward and the optimizer
        step = _compiled(step)

    def epoch():
        for i in idx:
            loss = step(Xf[i], yt[i])
        return float(loss)  # one synchronisation per epoch, as for fastsoftmax

    return epoch


def epoch_jax(X, y, order, batch):
    """jax.jit of the whole epoch: lax.scan over the full batches, then the remainder."""
    import jax.numpy as jnp

    params = tuple(jnp.asarray(a) for a in weights(X.shape[1]))
    return jax_epoch(X, y, order, batch, params, lambda Xu, yj, params, rows: jax_step(Xu, yj, params, rows, LR))


def jax_step(Xu, yj, params, rows, lr, weight_decay=None):
    """One SGD step on the rows `rows` of the uint8 pixels Xu and labels yj: (params, the batch's loss);
    weight_decay, where given, decays the weights (not the bias), as fastsoftmax's does."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params):
        W, b = params
        logits = Xu[rows].astype(jnp.float32) * SCALE @ W + b
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), yj[rows][:, None], 1).mean()

    loss, (dW, db) = jax.value_and_grad(loss_fn)(params)
    W, b = params
    if weight_decay is not None:
        dW = dW + weight_decay * W
    return (W - lr * dW, b - lr * db), loss


def jax_epoch(X, y, order, batch, params, step):
    """An epoch in one jax.jit from params: lax.scan of step(Xu, yj, params, rows) -> (params, loss)
    over the full batches, then the remainder; the epoch's callable (it keeps the params)."""
    import jax
    import jax.numpy as jnp

    full = len(order) // batch * batch
    data = (jnp.asarray(X), jnp.asarray(y), jnp.asarray(order[:full].reshape(-1, batch)), jnp.asarray(order[full:]))

    @jax.jit
    def run(params, Xu, yj, idx, rest):  # data as arguments: XLA would embed closed-over arrays
        def batch_step(params, rows):
            return step(Xu, yj, params, rows)

        params, losses = jax.lax.scan(batch_step, params, idx)
        if rest.size:
            params, _ = batch_step(params, rest)
        return params, losses.mean()

    state = {"params": params}

    def epoch():
        state["params"], loss = run(state["params"], *data)
        return float(loss)

    return epoch


def _cupy_sync():
    import cupy

    return {"xp": cupy, "sync": cupy.cuda.Device().synchronize}


def _cupy_epoch_naive(X, y, order, batch):
    import cupy

    return epoch_naive(X, y, order, batch, xp=cupy)


# name -> factory, by where it runs; the benchmarks are parametrised over these.
CPU_KERNELS = {
    "fastsoftmax": kernel_fastsoftmax,
    "numpy reference": kernel_numpy,
    "torch": kernel_torch,
    "torch.compile": lambda kernel, X, y: kernel_torch(kernel, X, y, compile=True),
    "jax.jit": kernel_jax,
}
GPU_KERNELS = {
    "fastsoftmax": lambda kernel, X, y: kernel_fastsoftmax(kernel, X, y, **_cupy_sync()),
    "torch": lambda kernel, X, y: kernel_torch(kernel, X, y, device="cuda"),
    "cupy naive": kernel_cupy_naive,
}
CPU_EPOCHS = {
    "fastsoftmax": epoch_fastsoftmax,
    "numpy reference": epoch_reference,
    "numpy float32": epoch_naive,
    "torch": epoch_torch,
    "torch.compile": lambda *a: epoch_torch(*a, compile=True),
    "jax.jit": epoch_jax,
}
GPU_EPOCHS = {
    "fastsoftmax": lambda *a: epoch_fastsoftmax(*a, device="cuda"),
    "torch": lambda *a: epoch_torch(*a, device="cuda"),
    "cupy naive": _cupy_epoch_naive,
}
# The module each peer needs, to skip it with the reason where it is missing.
NEEDS = {"torch": "torch", "torch.compile": "torch", "jax.jit": "jax", "cupy naive": "cupy"}
