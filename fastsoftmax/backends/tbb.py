"""Numba's TBB threading layer made loadable: the tbb package's libtbb, loaded by its path.

pip puts libtbb.so.12 in <prefix>/lib, where the dynamic loader does not look
(conda's environments do), and Numba asks for it by name: it then falls back
to GNU OpenMP, whose parallel loops a fork() child cannot run (the child is
killed) and which slow down many times over when other processes share the
cores. Loaded once by its path, the library is found by its name afterwards,
and Numba's own order of preference picks TBB; a threading layer the user
chose (NUMBA_THREADING_LAYER) still wins. ``import fastsoftmax`` loads it, so
that it is in place before any parallel loop, Numba's or ours, picks a layer.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import sys

LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}.get(sys.platform)


def load_tbb() -> bool:
    """Load the tbb package's libtbb by its path, so that Numba's TBB threading layer, which asks for
    the library by name, finds it; False where the package or its library is missing."""
    try:
        paths = [f for f in importlib.metadata.files("tbb") or () if f.name == LIBRARY]
    except importlib.metadata.PackageNotFoundError:
        return False
    for path in paths:
        try:
            ctypes.CDLL(str(path.locate()), mode=ctypes.RTLD_GLOBAL)
            return True
        except OSError:
            continue
    return False


TBB = load_tbb()
