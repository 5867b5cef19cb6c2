"""CUDA C sources of the GPU backend (fastsoftmax/backends/cuda/compile.py compiles them with CuPy)."""

from __future__ import annotations

import functools
import re
from importlib.resources import files

_INCLUDE = re.compile(r'^#include "(\w+\.cuh)".*$', re.MULTILINE)


@functools.cache
def source(family: str) -> str:
    """kernels/<family>.cu with each ``#include "x.cuh"`` replaced by the header's text, recursively.

    What NVRTC compiles, and the tests' nvcc build and CPU emulator too. Pasted
    rather than passed with -I: CuPy's compile cache is keyed by the source
    text, so a changed header must change the text it hashes.
    """
    folder, pasted = files(__name__), set()

    def paste(name):
        if name in pasted:  # the headers' #pragma once, for pasted text
            return ""
        pasted.add(name)
        return _INCLUDE.sub(lambda m: paste(m.group(1)), folder.joinpath(name).read_text())

    return paste(f"{family}.cu")
