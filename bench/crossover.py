"""Where the CPU backend switches to its large-shape (BLAS) path: both paths timed on one shape at a time.

    python -m bench.crossover [--rows 8192] [--repeat 7]

For each (d, k), linear_softmax_cross_entropy (float32 W, float32 X) or one
epoch of batch 256 (--epoch) on the fused register tiles
(fastsoftmax/backends/cpu/fused.py) and on the large-shape path (large.py),
each called as it is, the two interleaved in one process, medians of --repeat
calls; prints fused / BLAS (above 1: the BLAS path is faster) and the
machine's sgemm rate. The result sets BLAS_MIN_CLASSES in
fastsoftmax/backends/cpu/__init__.py.
"""

import argparse
import time

import numpy as np

from fastsoftmax.backends.cpu import fused, large
from fastsoftmax.reference.schedules import CONSTANT


def sgemm_rate(m=2048, k=2048, n=1024, repeat=7):
    """GFLOP/s of NumPy's float32 matmul on an (m, k) @ (k, n) product."""
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    a @ b
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / np.median(times) / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def calls(n, d, k, epoch):
    """{path: a call of the path on one problem of n rows}: the gradient, or an epoch in batches of 256."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    coef = (rng.standard_normal((k, d)) * 0.01).astype(np.float32)  # W transposed, as the backend takes it
    b, y, order = np.zeros(k, np.float32), rng.integers(0, k, n), rng.permutation(n)

    def call(path):
        if epoch:
            return lambda: path.train_epoch(X, y, order, coef, b, 256, 1.0, 0.0, CONSTANT, 1e-3, 1, 0)
        return lambda: path.linear_softmax_cross_entropy(X, coef, b, y, 1.0)

    return {False: call(fused), True: call(large)}


def compare(n, d, k, repeat, epoch=False):
    fn = calls(n, d, k, epoch)
    times = {False: [], True: []}
    for blas in (False, True):
        _timed(fn[blas])  # compile or load from the cache
    # Blocks of calls, the paths alternating: the first call of a block, which
    # shares the cores with the other path's still-spinning thread pool
    # (OpenBLAS's or Numba's OpenMP), is left out.
    for _ in range(repeat):
        for blas in (False, True):
            _timed(fn[blas])
            times[blas] += [_timed(fn[blas]) for _ in range(3)]
    return np.median(times[False]), np.median(times[True])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--d", type=int, nargs="+", default=[512, 784, 2048])
    p.add_argument("--k", type=int, nargs="+", default=[10, 16, 24, 32, 48, 64, 100])
    p.add_argument("--epoch", action="store_true", help="time one epoch of batch 256 rather than the gradient")
    args = p.parse_args(argv)
    print(f"sgemm {sgemm_rate():.0f} GFLOP/s")
    for d in args.d:
        for k in args.k:
            fused, blas = compare(args.rows, d, k, args.repeat, args.epoch)
            gflops = 4 * args.rows * d * k / 1e9
            print(f"d={d:5d} k={k:5d}  fused {fused * 1e3:8.2f} ms ({gflops / fused:5.0f} GFLOP/s)  "
                  f"blas {blas * 1e3:8.2f} ms ({gflops / blas:5.0f} GFLOP/s)  fused/blas {fused / blas:5.2f}", flush=True)
    print(f"sgemm {sgemm_rate():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
