"""A learning-rate and weight-decay sweep: the 16 models of SoftmaxRegressionSweep's default grid,
one epoch of Fashion-MNIST each (60000 images, batch 256, constant rates, one shuffled order).

fastsoftmax trains them in one pass (ops.train_epoch_many: the models' SGD loop, solvers/sgd.py); its peers train the
same 16 one after another: fastsoftmax itself (16 x ops.train_epoch), PyTorch (16 x bench/peers.py's
epoch), and, where JAX is installed, jax.vmap over the models of a jitted epoch. Two more rows set the
scale: one model's epoch ("fastsoftmax x1"), and the sweep's arithmetic alone ("sgemm floor": its
two matrix products per batch, x @ W_all^T and G^T x, timed on their own in the same run). The
fastsoftmax row's extra_info holds the sweep's FLOP and the machine's sgemm rate on those shapes
(report.py prints the share), and the peak rate on a 2048^3 product.

    python -m pytest bench -o python_files='bench_*.py' -k sweep
"""

import time

import numpy as np
import pytest

from bench import peers
from bench.runner import BATCH, need, need_gpu, run
from fastsoftmax import ops
from fastsoftmax.ops.dispatch import array_module
from fastsoftmax.models.sweep import LRS, WEIGHT_DECAYS

GRID = [(lr, wd) for lr in LRS for wd in WEIGHT_DECAYS]
M = len(GRID)


def _epoch(data):
    X, y = data
    return X, y, np.random.default_rng(0).permutation(len(X)), BATCH


def _on(xp, X, y, order):
    return xp.asarray(X), xp.asarray(y), xp.asarray(order)


def sweep_fastsoftmax(X, y, order, batch, device="cpu", sync=lambda: None):
    """ops.train_epoch_many on its trusted path, as SoftmaxRegressionSweep.fit runs an epoch."""
    xp = array_module(device)
    W, b = peers.weights(X.shape[1])
    coef = xp.asarray(np.repeat(W.T[None], M, axis=0))  # (m, k, d) C-contiguous: trained in place
    bias = xp.asarray(np.repeat(b[None], M, axis=0))
    X, y, order = _on(xp, X, y, order)
    lrs, decays = [lr for lr, _ in GRID], [wd for _, wd in GRID]

    def epoch():
        loss, _ = ops.train_epoch_many(X, y, coef.transpose(0, 2, 1), bias, batch_size=batch, lrs=lrs,
                                       weight_decays=decays, rows=order, x_scale=peers.SCALE, check_input=False)
        return float(loss.sum())  # waits for a GPU

    return epoch


def _single_fastsoftmax(X, y, order, batch, lr, weight_decay, xp):
    W, b = peers.weights(X.shape[1])
    W, b = xp.asfortranarray(xp.asarray(W)), xp.asarray(b)

    def epoch():
        loss, _ = ops.train_epoch(X, y, W, b, rows=order, batch_size=batch, lr=lr, weight_decay=weight_decay,
                                  x_scale=peers.SCALE, check_input=False)
        return float(loss)

    return epoch


def one_after_another(epochs):
    def run_all():
        return [epoch() for epoch in epochs]

    return run_all


def sequential_fastsoftmax(X, y, order, batch, device="cpu", models=M):
    """The grid's first `models` models, one whole epoch after another (ops.train_epoch, as SoftmaxRegression.fit)."""
    xp = array_module(device)
    X, y, order = _on(xp, X, y, order)
    return one_after_another([_single_fastsoftmax(X, y, order, batch, lr, wd, xp) for lr, wd in GRID[:models]])


def sequential_torch(X, y, order, batch, device="cpu"):
    """bench/peers.py's PyTorch epoch for each model, one after another, on pixels loaded once."""
    data = peers._torch_data(X, y, device)
    return one_after_another([peers.torch_epoch(data, order, batch, device, lr=lr, weight_decay=wd)
                              for lr, wd in GRID])


def vmap_jax(X, y, order, batch):
    """jax.vmap over the models of peers.jax_step, the batch's rows shared, the epoch in one jit."""
    import jax
    import jax.numpy as jnp

    W, b = peers.weights(X.shape[1])
    params = (jnp.asarray(np.repeat(W[None], M, axis=0)), jnp.asarray(np.repeat(b[None], M, axis=0)))
    lrs = jnp.asarray([lr for lr, _ in GRID], jnp.float32)
    decays = jnp.asarray([wd for _, wd in GRID], jnp.float32)

    def step(Xu, yj, params, rows):
        return jax.vmap(lambda p, lr, wd: peers.jax_step(Xu, yj, p, rows, lr, wd))(params, lrs, decays)

    return peers.jax_epoch(X, y, order, batch, params, step)


def sgemm_floor(X, y, order, batch):
    """The sweep's two products per batch and nothing else: x (rows, d) @ W_all^T (d, m k), then
    G^T (m k, rows) @ x, for every batch of the epoch (NumPy's OpenBLAS, as backends/cpu/sweep.py calls it)."""
    d, width = X.shape[1], M * peers.K
    x, wall = np.ones((batch, d), np.float32), np.ones((width, d), np.float32)
    z, dsum = np.empty((batch, width), np.float32), np.empty((width, d), np.float32)
    sizes = [hi - lo for lo, hi in peers.batches(len(order), batch)]

    def epoch():
        for rows in sizes:
            np.matmul(x[:rows], wall.T, out=z[:rows])
            np.matmul(z[:rows].T, x[:rows], out=dsum)

    return epoch


def sweep_rates(X, order, batch):
    """extra_info for the sweep: its FLOP, the sgemm rate on its shapes and the peak rate, measured now."""
    gflop = 4 * len(order) * X.shape[1] * M * peers.K / 1e9
    floor = sgemm_floor(X, None, order, batch)
    floor()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        floor()
        times.append(time.perf_counter() - start)
    a = np.ones((2048, 2048), np.float32)
    peak = []
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        peak.append(time.perf_counter() - start)
    return {"gflop": gflop, "sgemm_gflops": gflop / np.median(times), "sgemm_floor_s": float(np.median(times)),
            "peak_sgemm_gflops": 2 * 2048**3 / np.median(peak) / 1e9}


CPU = {
    "fastsoftmax": sweep_fastsoftmax,
    "fastsoftmax x16": sequential_fastsoftmax,
    "fastsoftmax x1": lambda *a: sequential_fastsoftmax(*a, models=1),
    "torch x16": sequential_torch,
    "jax vmap": vmap_jax,
    "sgemm floor": sgemm_floor,
}
GPU = {
    "fastsoftmax": lambda *a: sweep_fastsoftmax(*a, device="cuda"),
    "fastsoftmax x16": lambda *a: sequential_fastsoftmax(*a, device="cuda"),
    "fastsoftmax x1": lambda *a: sequential_fastsoftmax(*a, device="cuda", models=1),
    "torch x16": lambda *a: sequential_torch(*a, device="cuda"),
}
NEEDS = {"torch x16": "torch", "jax vmap": "jax"}


@pytest.mark.parametrize("peer", list(CPU))
def test_cpu(benchmark, data, peer):
    benchmark.group = f"sweep cpu {M} models batch={BATCH}"
    if peer in NEEDS:
        need(NEEDS[peer])
    args = _epoch(data)
    if peer == "fastsoftmax":
        benchmark.extra_info.update(sweep_rates(args[0], args[2], BATCH))
    run(benchmark, lambda: CPU[peer](*args), "cpu")


@pytest.mark.parametrize("peer", list(GPU))
def test_gpu(benchmark, data, peer):
    benchmark.group = f"sweep gpu {M} models batch={BATCH}"
    need_gpu()
    if peer in NEEDS:
        module = need(NEEDS[peer])
        if not module.cuda.is_available():
            pytest.skip(f"this torch {module.__version__} has no CUDA")
    run(benchmark, lambda: GPU[peer](*_epoch(data)), "cuda")
