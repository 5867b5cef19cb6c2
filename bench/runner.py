"""The benchmarks' runner: the thread count, the shared sizes, and the
parametrised tests that each bench_<kernel>.py declares.

Every group times fastsoftmax and its peers in the same run on the same data,
so the report can give ratios (ours / peer) rather than absolute times alone.
"""

import time

import pytest

from bench import peers
from fastsoftmax.ops.dispatch import cuda_available, device_name

BATCH = 256
ROWS = [BATCH, 60000]  # one minibatch; the whole training set


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
    try:
        fn = make()
        start = time.perf_counter()
        fn()
    except peers.Unavailable as e:
        pytest.skip(str(e))
    benchmark.extra_info["first_call_s"] = time.perf_counter() - start
    benchmark.extra_info["device"] = device_name(device)
    benchmark.extra_info["threads"] = peers.THREADS
    benchmark(fn)


def peer_benchmarks(group, cases, cpu_peers, gpu_peers):
    """The CPU and GPU benchmark functions of one group, parametrised over its peers.

    cases: (id, args_of(data)) pairs; a peer's factory is called as factory(*args).
    """
    return _peer_test(group, cases, cpu_peers, "cpu"), _peer_test(group, cases, gpu_peers, "cuda")


def _peer_test(group, cases, factories, device):
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
    cases = [(f"n={n}", lambda data, n=n: (kernel, data[0][:n], data[1][:n])) for n in ROWS]
    return peer_benchmarks(kernel, cases, peers.CPU_KERNELS, peers.GPU_KERNELS)
