"""What kind of array this is (NumPy, CuPy, Dask or sparse), told without importing CuPy, Dask or
SciPy, the CSR triple the kernels take, and to_numpy: the one place every layer asks.

The habit of ``cupy.get_array_module``: code takes the array it is given and
asks its kind, rather than a flag; which backend then runs it is
fastsoftmax.ops.dispatch's choice.
"""

from __future__ import annotations

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
