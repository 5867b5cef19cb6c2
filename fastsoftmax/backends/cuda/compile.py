"""The CUDA kernels compiled by NVRTC through CuPy, and the device attributes their launches read.

The CUDA C++ sources live in ``kernels/*.cu`` (shipped as the package
``fastsoftmax.kernels``). Each is compiled at first use, one template
instantiation at a time: the compute type (W's dtype), X's dtype and the
number of classes K are template parameters, so a row's K logits stay in
registers. CuPy caches the binaries on disk, so a later process only loads
them. The caches here hold compiled code and attributes, which no kernel writes.
"""

from __future__ import annotations

import functools

import cupy as cp
import numpy as np

from ...kernels import source

# Two resident blocks per SM: one stages its tile while the other computes.
BLOCKS_PER_SM = 2
# A null pointer argument: CuPy passes an 8-byte integer scalar as it is.
NULL = np.uint64(0)


def pointer(a):
    """A kernel's pointer argument that may be absent: the device array a, or NULL for None
    (e.g. sample_weight, which the kernels read as 1 for every row where it is null)."""
    return NULL if a is None else a


def device_attribute(name: str) -> int:
    """The current GPU's cudaDevAttr<name>, e.g. device_attribute("MultiProcessorCount")."""
    return attribute(name, cp.cuda.runtime.getDevice())


@functools.cache
def attribute(name: str, device: int) -> int:
    return cp.cuda.runtime.deviceGetAttribute(getattr(cp.cuda.runtime, f"cudaDevAttr{name}"), device)


def kernel(family: str, expr: str):
    """The kernel of name expression `expr` (geometry.template_id) from kernels/<family>.cu, on the current GPU."""
    return compiled(family, expr, cp.cuda.runtime.getDevice())


@functools.cache
def compiled(family: str, expr: str, device: int):
    function = cp.RawModule(code=source(family), options=("--std=c++17",), name_expressions=(expr,)).get_function(expr)
    # Past 48 KB a block's dynamic shared memory must be opted into, per kernel.
    limit = attribute("MaxSharedMemoryPerBlockOptin", device)
    function.max_dynamic_shared_size_bytes = limit - function.shared_size_bytes
    return function


def shared_memory_limit() -> int:
    return device_attribute("MaxSharedMemoryPerBlockOptin")


def max_blocks() -> int:
    return BLOCKS_PER_SM * device_attribute("MultiProcessorCount")
