"""Shared set-up of the benchmarks: the data, the thread count, the runner.

Run with ``python -m pytest bench -o python_files='bench_*.py' --benchmark-json=OUT``
(``make bench``); tests/ stays the test suite's only path. Every group times
fastsoftmax and its peers in the same run on the same data, so the report can
give ratios (ours / peer) rather than absolute times alone.
"""

import os
import platform
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax.backend import cuda_available, device_name

# Every peer gets Numba's thread count (by default one per core). XLA reads its
# flags at import, so they are set before any benchmark imports jax; PyTorch's
# count is set where it is imported (peers.py). The OpenMP wait policy is left
# at its default, as users run: PASSIVE puts idle threads to sleep after every
# parallel region, so each step pays a wake-up (measured: a PyTorch epoch 2.3x
# and a fastsoftmax epoch 2.7x slower).
THREADS = numba.config.NUMBA_NUM_THREADS
os.environ.setdefault(
    "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}"
)
sys.path.insert(0, str(Path(__file__).parent))  # the bench modules import peers.py

BATCH = 256
ROWS = [BATCH, 60000]  # one minibatch; the whole training set


@pytest.fixture(scope="session")
def data():
    """Fashion-MNIST's training set: uint8 pixels (60000, 784) and int64 labels."""
    try:
        d = fs.load_dataset("fashion-mnist")
    except (fs.DatasetNotFoundError, OSError) as e:
        pytest.skip(f"Fashion-MNIST is not available ({e}); run `make data`")
    return d.x_train, d.y_train.astype(np.int64)


def need(module):
    """Import a peer's module, or skip its benchmark with the reason."""
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[bench]')")


def need_gpu():
    if not cuda_available():
        pytest.skip("no CUDA GPU with CuPy here")


def run(benchmark, make, device):
    """Build a peer's zero-argument callable, time its first call, then benchmark it.

    The first call compiles (torch.compile, jax.jit, Numba's cache load, NVRTC)
    and is kept apart from the timed calls, in extra_info.
    """
    import time

    from peers import Unavailable

    try:
        fn = make()
        start = time.perf_counter()
        fn()
    except Unavailable as e:
        pytest.skip(str(e))
    benchmark.extra_info["first_call_s"] = time.perf_counter() - start
    benchmark.extra_info["device"] = device_name(device)
    benchmark.extra_info["threads"] = THREADS
    benchmark(fn)


def peer_benchmarks(group, cases, cpu_peers, gpu_peers):
    """The CPU and GPU benchmark functions of one group, parametrised over its peers.

    cases: (id, args_of(data)) pairs; a peer's factory is called as factory(*args).
    """
    return _peer_test(group, cases, cpu_peers, "cpu"), _peer_test(group, cases, gpu_peers, "cuda")


def _peer_test(group, cases, factories, device):
    import peers

    # case below peer: pytest then runs a group's peers one after another
    @pytest.mark.parametrize("peer", list(factories))
    @pytest.mark.parametrize("case", [case_id for case_id, _ in cases])
    def test(benchmark, data, peer, case):
        benchmark.group = f"{group} {'gpu' if device == 'cuda' else 'cpu'} {case}"
        if device == "cuda":
            need_gpu()
        module = need(peers.NEEDS[peer]) if peer in peers.NEEDS else None
        if device == "cuda" and peer.startswith("torch") and not module.cuda.is_available():
            pytest.skip(f"this torch {module.__version__} has no CUDA")
        args = dict(cases)[case](data)
        run(benchmark, lambda: factories[peer](*args), device)

    return test


def kernel_benchmarks(kernel):
    """bench_<kernel>.py's tests: the kernel on one minibatch and on the 60000 training rows."""
    import peers

    cases = [(f"n={n}", lambda data, n=n: (kernel, data[0][:n], data[1][:n])) for n in ROWS]
    return peer_benchmarks(kernel, cases, peers.CPU_KERNELS, peers.GPU_KERNELS)


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel Numba function ran
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Name the machine in the JSON: CPU model, cores, threads, memory, GPU, library versions."""
    import importlib.metadata as md

    versions = {}
    for name in ("fastsoftmax", "numpy", "numba", "torch", "jax", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    machine_info["fastsoftmax"] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": THREADS,
        "threading_layer": _threading_layer(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "gpu": device_name("cuda") if cuda_available() else None,
        "versions": versions,
    }


def pytest_configure(config):
    # torch.compile trips PyTorch's own deprecation warnings; they are not ours to fix
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:torch")
