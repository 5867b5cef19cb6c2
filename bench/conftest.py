"""pytest's set-up of the benchmarks: the data fixture and the machine's name in the JSON.

Run with ``python -m pytest bench -o python_files='bench_*.py' --benchmark-json=OUT``
(``make bench``); tests/ stays the test suite's only path. The runner and the
peers are bench/runner.py and bench/peers.py.
"""

import os
import platform
from pathlib import Path

import numba
import numpy as np
import pytest

import fastsoftmax as fs
from bench.peers import THREADS
from fastsoftmax.ops.dispatch import cuda_available, device_name


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST: uint8 pixels and int64 labels, (x_train, y_train, x_test, y_test)."""
    try:
        d = fs.load_dataset("fashion-mnist")
    except (fs.DatasetNotFoundError, OSError) as e:
        pytest.skip(f"Fashion-MNIST is not available ({e}); run `make data`")
    return d.x_train, d.y_train.astype(np.int64), d.x_test, d.y_test.astype(np.int64)


@pytest.fixture(scope="session")
def data(fashion):
    """Fashion-MNIST's training set: uint8 pixels (60000, 784) and int64 labels."""
    return fashion[:2]


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
