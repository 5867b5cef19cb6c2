"""A stand-in for the part of ``cupyx.scipy.sparse`` that fastsoftmax reads, over standin_cupy's
device arrays: installed beside the ``cupy`` stand-in (MODULES: the names and modules to put in
sys.modules, ``cupyx``, ``cupyx.scipy`` and ``cupyx.scipy.sparse``).

- csr_matrix, as CuPy's: from a scipy.sparse matrix or array (any format), from a
  (data, indices, indptr) tuple of device arrays with shape=, from a 2-D device
  array, from another stand-in matrix, or an empty (M, N); data, indices,
  indptr (device arrays; indices and indptr int32, as CuPy keeps them), shape,
  dtype, nnz, format, ndim; get() (a scipy.sparse.csr_matrix), tocsr(),
  toarray() (a device array), astype(), copy(), has_canonical_format,
  sum_duplicates(), sort_indices().
- csc_matrix and coo_matrix hold their arrays on the device too; what CuPy
  computes on the GPU (a conversion between formats, a dense array, a
  canonical form) goes through scipy on the host here, so it counts as a
  synchronisation in standin_cupy.counters.
- issparse, isspmatrix, isspmatrix_csr, isspmatrix_csc, isspmatrix_coo.
Like CuPy's, the matrices refuse implicit conversion to NumPy, and the tuple
constructors refuse host (NumPy) arrays.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import scipy.sparse

from . import standin_cupy as cupy

# CuPy's sparse matrices hold these value types (its _check_dtype), and int32 indices.
_DTYPES = "?fdFD"
_INDEX = np.int32


def _dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.char not in _DTYPES:
        raise ValueError("Only bool, float32, float64, complex64 and complex128 are supported")
    return dtype


def _device_vector(a, what):
    if not isinstance(a, cupy.ndarray) or a.ndim != 1:
        raise ValueError(f"{what} should be 1-D cupy arrays")
    return a


class spmatrix:
    """What the formats share: their arrays live on the device, the rest goes through scipy on the host."""

    __module__ = "cupyx.scipy.sparse._base"
    format: str
    ndim = 2
    _ARRAYS: tuple[str, ...]

    def __init__(self, arg1, shape=None, dtype=None, copy=False):
        if isinstance(arg1, spmatrix):
            host = arg1.get()
        elif scipy.sparse.issparse(arg1):
            host = arg1
        elif isinstance(arg1, cupy.ndarray):
            if arg1.ndim != 2:
                raise ValueError("expected a rank-2 array")
            host = arg1.get()
        elif isinstance(arg1, tuple) and len(arg1) == 2 and all(np.isscalar(v) for v in arg1):
            host = self._scipy(arg1, dtype=dtype or np.float64)
        elif isinstance(arg1, tuple):
            self._from_arrays(arg1, shape, dtype, copy)
            return
        else:
            raise ValueError("Unsupported initializer format")
        host = self._scipy(host)
        self._set(host, dtype)

    def _set(self, host, dtype=None):
        """The device copy of a scipy matrix of this format."""
        dtype = _dtype(dtype or host.dtype)
        for name in self._ARRAYS:
            a = getattr(host, name)
            setattr(self, name, cupy.asarray(a, dtype=dtype if name == "data" else _INDEX))
        self._shape = tuple(int(s) for s in host.shape)

    # what the library reads
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self.data.dtype)
    nnz = property(lambda self: int(self.data.size))
    size = nnz

    def __repr__(self):
        return f"<cudaemu {self.format}_matrix {self.shape[0]}x{self.shape[1]}, {self.nnz} stored, {self.dtype}>"

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` instead.")

    def get(self, stream=None):
        """The scipy.sparse matrix of the same format, on the host (a synchronisation)."""
        return self._scipy(self._host_arrays(), shape=self.shape)

    def _host_arrays(self):
        raise NotImplementedError

    def toarray(self, order=None):
        return cupy.asarray(self.get().toarray(order=order))

    def todense(self, order=None):
        return self.toarray(order)

    def tocsr(self, copy=False):
        return csr_matrix(self.get())

    def tocsc(self, copy=False):
        return csc_matrix(self.get())

    def tocoo(self, copy=False):
        return coo_matrix(self.get())

    def asformat(self, format):
        return getattr(self, f"to{format}")()

    def astype(self, t):
        out = self.copy()
        out.data = self.data.astype(_dtype(t))
        return out

    def copy(self):
        out = object.__new__(type(self))
        for name in self._ARRAYS:
            setattr(out, name, getattr(self, name).copy())
        out._shape = self._shape
        return out


class _compressed(spmatrix):
    _ARRAYS = ("data", "indices", "indptr")

    def _from_arrays(self, arg1, shape, dtype, copy):
        if len(arg1) != 3:
            raise ValueError("Unsupported initializer format")
        data, indices, indptr = (_device_vector(a, "data, indices, and indptr") for a in arg1)
        if data.size != indices.size:
            raise ValueError("indices and data should have the same size")
        self.data = data.astype(_dtype(dtype or data.dtype)) if copy or dtype else data
        self.indices = indices.astype(_INDEX)
        self.indptr = indptr.astype(_INDEX)
        if shape is None:  # CuPy infers it from the arrays as scipy does: a read of the device
            major = indptr.size - 1
            minor = int(indices.max()) + 1 if indices.size else 0
            shape = (major, minor) if self.format == "csr" else (minor, major)
        self._shape = tuple(int(s) for s in shape)

    def _host_arrays(self):
        return self.data.get(), self.indices.get(), self.indptr.get()

    @property
    def has_canonical_format(self):
        return bool(self.get().has_canonical_format)

    def sum_duplicates(self):
        host = self.get()
        host.sum_duplicates()
        self._set(host)

    def sort_indices(self):
        host = self.get()
        host.sort_indices()
        self._set(host)


class csr_matrix(_compressed):
    __module__ = "cupyx.scipy.sparse._csr"
    format = "csr"
    _scipy = staticmethod(scipy.sparse.csr_matrix)

    def tocsr(self, copy=False):
        return self.copy() if copy else self


class csc_matrix(_compressed):
    __module__ = "cupyx.scipy.sparse._csc"
    format = "csc"
    _scipy = staticmethod(scipy.sparse.csc_matrix)

    def tocsc(self, copy=False):
        return self.copy() if copy else self


class coo_matrix(spmatrix):
    __module__ = "cupyx.scipy.sparse._coo"
    format = "coo"
    _ARRAYS = ("data", "row", "col")
    _scipy = staticmethod(scipy.sparse.coo_matrix)

    def _from_arrays(self, arg1, shape, dtype, copy):
        if len(arg1) != 2 or not isinstance(arg1[1], tuple) or len(arg1[1]) != 2:
            raise ValueError("Unsupported initializer format")
        data, row, col = (_device_vector(a, "data, row, and col") for a in (arg1[0], *arg1[1]))
        self.data = data.astype(_dtype(dtype or data.dtype))
        self.row, self.col = row.astype(_INDEX), col.astype(_INDEX)
        if shape is None:
            shape = (int(row.max()) + 1 if row.size else 0, int(col.max()) + 1 if col.size else 0)
        self._shape = tuple(int(s) for s in shape)

    def _host_arrays(self):
        return self.data.get(), (self.row.get(), self.col.get())

    def tocoo(self, copy=False):
        return self.copy() if copy else self


def issparse(x) -> bool:
    return isinstance(x, spmatrix)


isspmatrix = issparse


def isspmatrix_csr(x) -> bool:
    return isinstance(x, csr_matrix)


def isspmatrix_csc(x) -> bool:
    return isinstance(x, csc_matrix)


def isspmatrix_coo(x) -> bool:
    return isinstance(x, coo_matrix)


# ---- the packages above it: cupyx, cupyx.scipy ----

_sparse = sys.modules[__name__]
_scipy_package = types.ModuleType("cupyx.scipy", "The cupyx.scipy stand-in: its sparse module only.")
_scipy_package.sparse = _sparse
_package = types.ModuleType("cupyx", "The cupyx stand-in (tests/cudaemu): cupyx.scipy.sparse and scatter_max.")
_package.scipy = _scipy_package


def _scatter_max(a, slices, value):
    """cupyx.scatter_max: a[slices[i]] = max(a[slices[i]], value[i]), repeated indices included (on a GPU,
    an atomic max per element)."""
    np.maximum.at(a._a, slices._a, value._a if isinstance(value, cupy.ndarray) else value)


_package.scatter_max = _scatter_max
_package.__path__ = []  # a package, so `import cupyx.scipy.sparse` looks its parts up in sys.modules
_scipy_package.__path__ = []
# What to install in sys.modules, beside standin_cupy as "cupy".
MODULES = {"cupyx": _package, "cupyx.scipy": _scipy_package, "cupyx.scipy.sparse": _sparse}
