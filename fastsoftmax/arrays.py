"""What kind of array this is (NumPy, CuPy, Dask, sparse, or a PyTorch tensor or JAX array), told without
importing CuPy, Dask, SciPy, PyTorch or JAX, the CSR triple the kernels take, to_numpy, and the DLPack
exchange with PyTorch and JAX: the one place every layer asks.

The habit of ``cupy.get_array_module``: code takes the array it is given and
asks its kind, rather than a flag; which backend then runs it is
fastsoftmax.ops.dispatch's choice.
"""

from __future__ import annotations

import contextlib
import sys
from typing import NamedTuple

import numpy as np


def _library(a) -> str:
    return type(a).__module__.split(".")[0]


def is_device_array(a) -> bool:
    """True for a CuPy array or a cupyx.scipy.sparse matrix."""
    return _library(a) in ("cupy", "cupyx") or isinstance(a, CSR) and is_device_array(a.data)


def is_sparse(a) -> bool:
    """True for a scipy.sparse or cupyx.scipy.sparse matrix or array (any format), or a CSR triple."""
    return isinstance(a, CSR) or _library(a) in ("scipy", "cupyx") and hasattr(a, "tocsr")


class CSR(NamedTuple):
    """A CSR matrix as the kernels take it: data (nnz,) float32/float64, indices (nnz,) column indices
    and indptr (n + 1,) row starts, both int32 or both int64, all C-contiguous arrays of one kind
    (NumPy or CuPy); shape (n, d). Row i's values are data[indptr[i]:indptr[i + 1]] in the columns
    indices[indptr[i]:indptr[i + 1]] (any order, repeats add up). ops.validation.check_sparse builds
    it from a scipy.sparse or cupyx.scipy.sparse matrix."""

    data: object
    indices: object
    indptr: object
    shape: tuple

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return 2

    def take(self, rows, xp):
        """The CSR of the given rows (an int64 index array of xp, repeats allowed), in their order."""
        starts, lengths = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        indptr = xp.zeros(rows.shape[0] + 1, self.indptr.dtype)
        xp.cumsum(lengths, out=indptr[1:])
        at = xp.repeat(starts - indptr[:-1], lengths) + xp.arange(int(indptr[-1]), dtype=self.indptr.dtype)
        return CSR(self.data[at], self.indices[at], indptr, (rows.shape[0], self.shape[1]))


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


def framework_of(a) -> str | None:
    """``torch`` for a PyTorch tensor, ``jax`` for a JAX array, None for anything else."""
    library = _library(a)
    if library == "torch" and hasattr(a, "__dlpack__"):
        return "torch"
    if library in ("jax", "jaxlib") and hasattr(a, "__dlpack__"):
        return "jax"
    return None


def _on_gpu(a) -> bool:
    if framework_of(a) == "torch":
        return a.device.type == "cuda"
    return any(device.platform == "gpu" for device in a.devices())


def from_framework(a, name: str):
    """The PyTorch tensor or JAX array a as a NumPy array (on the CPU) or a CuPy array (on a GPU) over the
    same memory, through DLPack: no copy, strides kept (a JAX array's NumPy view is read-only). A tensor that
    requires grad is refused: the raw kernels record no autograd graph."""
    if getattr(a, "requires_grad", False):
        raise TypeError(f"{name} is a tensor that requires grad, and the raw kernels record no autograd graph: "
                        f"use fastsoftmax.torch.linear_cross_entropy (it has autograd), or pass {name}.detach()")
    if _on_gpu(a):
        import cupy

        return cupy.from_dlpack(a)
    return np.from_dlpack(a)


def to_framework(result, framework: str):
    """A NumPy or CuPy result as the caller's kind (a PyTorch tensor or JAX array on the same device), through
    DLPack: PyTorch shares the memory; JAX copies where its buffer rules want (CPU arrays it does not own).
    Anything else (a Python number, None) as it is; tuples element by element."""
    if isinstance(result, tuple):
        return tuple(to_framework(r, framework) for r in result)
    if not hasattr(result, "__dlpack__"):
        return result
    if framework == "torch":
        return sys.modules["torch"].from_dlpack(result)
    return sys.modules["jax"].numpy.from_dlpack(result)


def framework_stream(arrays):
    """A context in which CuPy works on the caller's current PyTorch CUDA stream (where a tensor is on a GPU),
    so the kernels are ordered with the caller's own work and nothing waits; a no-op context otherwise."""
    for a in arrays:
        if framework_of(a) == "torch" and a.device.type == "cuda":
            import cupy

            torch = sys.modules["torch"]
            return cupy.cuda.ExternalStream(torch.cuda.current_stream(a.device).cuda_stream)
    return contextlib.nullcontext()
