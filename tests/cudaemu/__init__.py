"""A CPU emulator for the project's CUDA kernels (tests only).

The exact sources of kernels/*.cu are compiled by g++ against prelude.h, which
supplies the CUDA built-ins; every CUDA thread of a block runs as an OS thread,
so barriers, shuffles and shared memory behave (and misbehave) for real.
A cooperative launch (Function.launch(..., cooperative=True), or CuPy's
enable_cooperative_groups=True through standin_cupy) runs every block at
once, so kernels may wait for each other at a grid barrier.
Device buffers are guarded (memory.py); kernel bugs raise KernelFault.
standin_cupy.py stands in for ``cupy`` on the emulator, standin_cupyx.py for
``cupyx.scipy.sparse`` over its arrays.
"""

from .compiler import CompileError, Function, Module, Param, load_module
from .memory import DeviceBuffer, KernelFault, allocate, check_all

__all__ = [
    "CompileError",
    "DeviceBuffer",
    "Function",
    "KernelFault",
    "Module",
    "Param",
    "allocate",
    "check_all",
    "load_module",
]
