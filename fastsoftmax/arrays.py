"""What kind of array this is (NumPy, CuPy or Dask), told without importing CuPy or Dask, and
to_numpy: the one place every layer asks.

The habit of ``cupy.get_array_module``: code takes the array it is given and
asks its kind, rather than a flag; which backend then runs it is
fastsoftmax.ops.dispatch's choice.
"""

from __future__ import annotations

import numpy as np


def _library(a) -> str:
    return type(a).__module__.split(".")[0]


def is_device_array(a) -> bool:
    """True for a CuPy array."""
    return _library(a) == "cupy"


def is_dask(a) -> bool:
    """True for a Dask collection (array, DataFrame)."""
    return _library(a) in ("dask", "dask_expr")


def device_of(*arrays) -> str:
    """``cuda`` if the arrays are CuPy arrays, ``cpu`` if NumPy; never a mix."""
    kinds = {is_device_array(a) for a in arrays}
    if len(kinds) > 1:
        raise TypeError(
            "arrays are a mix of NumPy and CuPy; move them to one device "
            "(cupy.asarray or cupy.asnumpy) before calling"
        )
    return "cuda" if kinds.pop() else "cpu"


def to_numpy(a):
    """A new host array holding a's values (a copy on the CPU too: the caller keeps it)."""
    return a.get() if hasattr(a, "get") else np.array(a)
