"""A stand-in for the part of CuPy that fastsoftmax uses, running CUDA kernels
on the CPU emulator: installed as ``sys.modules["cupy"]`` by the tests where
no GPU is (see tests/conftest.py).

- Arrays live in guarded "device" buffers (memory.py): a kernel that reads or
  writes past one is caught. Like CuPy's, they refuse implicit conversion to
  NumPy, so a host/device mix-up in the library fails here as on a GPU.
- ``RawModule(code=..., name_expressions=...)`` compiles the exact CUDA source
  with g++ (compiler.py); a kernel call checks each argument against the
  kernel's parameter types (a pointer's dtype, a scalar's width), as the GPU
  silently would not.
- A kernel call with ``enable_cooperative_groups=True`` is a cooperative
  launch (every block resident at once; compiler.Function.launch): refused,
  as CUDA refuses it, where the grid exceeds what the device's SMs hold at once.
- Streams record launches while capturing and a graph replays them.
- ``counters`` counts kernel launches, graph launches, host-to-device copies
  and synchronisations (device-to-host reads and explicit waits), and keeps
  the largest allocation, so tests can hold the library to launch,
  synchronisation and memory budgets.
- ``device_attributes`` are settable (a small shared-memory limit forces the
  large-shape paths); fastsoftmax.backends.cuda.compile caches them, so clear its
  ``attribute`` cache after a change (the ``cupy_module`` fixture of
  tests/conftest.py restores the defaults for every test).
"""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np

from . import memory
from .compiler import load_module

__version__ = "0.0-cudaemu"


@dataclasses.dataclass
class Counters:
    launches: int = 0  # kernels run, one by one or from a graph
    graph_launches: int = 0
    host_to_device: int = 0
    syncs: int = 0  # the host waited for the device: a read of device memory, or synchronize()
    largest_allocation: int = 0  # bytes of the largest device array allocated

    def reset(self):
        for field in dataclasses.fields(self):
            setattr(self, field.name, 0)


counters = Counters()

# cudaDevAttr* values the library reads, as an H100 SXM reports them except
# for the SM count: few SMs keep the emulated grids (one thread per CUDA
# thread, blocks one after another) small.
DEFAULT_ATTRIBUTES = {
    "MultiProcessorCount": 2,
    "MaxSharedMemoryPerBlockOptin": 232448,
    "MaxSharedMemoryPerBlock": 49152,
    "MaxThreadsPerBlock": 1024,
    "WarpSize": 32,
    "MaxSharedMemoryPerMultiprocessor": 233472,
    "CooperativeLaunch": 1,
}
# Threads an SM holds at once (sm_80/sm_90), for the co-resident blocks of a cooperative launch.
MAX_THREADS_PER_SM = 2048
device_attributes = dict(DEFAULT_ATTRIBUTES)
DEVICE_NAME = b"cudaemu (CUDA kernels emulated on the CPU)"


# ---- arrays ----


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class ndarray:  # noqa: N801 (CuPy's name)
    """A device array: a NumPy view of a guarded buffer, which it keeps alive."""

    __module__ = "cupy"  # what fastsoftmax.arrays.is_device_array looks at

    def __init__(self, view: np.ndarray, buffer):
        self._a = view
        self._buffer = buffer

    # what the library reads without touching the data
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: _Pointer(self._a.ctypes.data))
    T = property(lambda self: _wrap(self._a.T, self))

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"cudaemu.ndarray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    # reads to the host: each is a synchronisation
    def get(self, stream=None):
        return _to_host(self._a).copy()

    def item(self):
        return _to_host(self._a).item()

    def __float__(self):
        return float(_to_host(self._a))

    def __int__(self):
        return int(_to_host(self._a))

    def __bool__(self):
        return bool(_to_host(self._a))

    def __index__(self):
        return int(self)

    def __getitem__(self, key):
        return _wrap(self._a[_device_key(key)], self)

    def __setitem__(self, key, value):
        self._a[_device_key(key)] = _operand(value)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), *inputs, **kwargs)

    def __getattr__(self, name):
        # NumPy's methods (sum, max, argmax, astype, reshape, copy, ...) on the
        # device data; results stay on the device.
        method = getattr(self._a, name)
        if not callable(method):
            raise AttributeError(name)
        return lambda *args, **kwargs: _call(method, *args, _parent=self, **kwargs)


def _binary(name):
    def op(self, other):
        return _call(getattr(np.ndarray, name), self, other)

    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmatmul", "eq", "ne", "lt", "le", "gt", "ge"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", lambda self, _n=_name: _call(getattr(np.ndarray, f"__{_n}__"), self))


def _in_place(name):
    def op(self, other):
        getattr(self._a, name)(_operand(other))  # NumPy's in-place operator on the device data
        return self

    op.__name__ = name
    return op


# a -= x updates a, as in CuPy (without these Python would bind a new array to a).
for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor"):
    setattr(ndarray, f"__i{_name}__", _in_place(f"__i{_name}__"))


def _capturing():
    return _current_stream().capturing


def _to_host(a):
    if _capturing():
        raise RuntimeError("cudaErrorStreamCaptureUnsupported: a device-to-host copy while a stream is capturing")
    counters.syncs += 1
    return a


def _empty(shape, dtype):
    dtype = np.dtype(dtype)
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    counters.largest_allocation = max(counters.largest_allocation, nbytes)
    buffer = memory.allocate(nbytes)
    return ndarray(buffer.array.view(dtype).reshape(shape), buffer)


def _wrap(result, parent=None):
    """A NumPy result of device work as a device array: a view of parent where it shares its memory."""
    if isinstance(result, tuple):
        return tuple(_wrap(r, parent) for r in result)
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if not isinstance(result, np.ndarray):
        return result
    if parent is not None and np.may_share_memory(result, parent._a):
        return ndarray(result, parent._buffer)
    out = _empty(result.shape, result.dtype)
    out._a[...] = result
    return out


def _operand(value):
    """A device array's data (also inside a list, as cupy.stack takes them); NumPy arrays are host
    memory (CuPy refuses them), Python scalars pass."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, list):
        return [_operand(v) for v in value]
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"a NumPy array ({value.shape}) mixed with device arrays; copy it with cupy.asarray first")
    return value


def _device_key(key):
    if isinstance(key, tuple):
        return tuple(_operand(k) for k in key)
    return _operand(key)


def _call(function, *args, _parent=None, **kwargs):
    if _parent is None:
        _parent = next((a for a in args if isinstance(a, ndarray)), None)
    args = [_operand(a) for a in args]
    kwargs = {k: _operand(v) for k, v in kwargs.items()}
    return _wrap(function(*args, **kwargs), _parent)


# ---- creating and moving arrays ----


def empty(shape, dtype=float, order="C"):
    return _empty(shape, dtype)


def zeros(shape, dtype=float, order="C"):
    out = _empty(shape, dtype)
    out._a[...] = 0
    return out


def empty_like(a, dtype=None):
    return _empty(a.shape, dtype or a.dtype)


def zeros_like(a, dtype=None):
    return zeros(a.shape, dtype or a.dtype)


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    if _capturing():
        raise RuntimeError("cudaErrorStreamCaptureUnsupported: a host-to-device copy while a stream is capturing")
    host = np.asarray(a, dtype=dtype)
    counters.host_to_device += 1
    out = _empty(host.shape, host.dtype)
    out._a[...] = host
    return out


def array(a, dtype=None, copy=True, order="C"):
    """A new device array (CuPy's array copies, where asarray need not)."""
    out = asarray(a, dtype)
    return out.copy() if copy and out is a else out


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype)
    if a.flags.c_contiguous:
        return a
    out = _empty(a.shape, a.dtype)
    out._a[...] = a._a
    return out


def copyto(dst, src, casting="same_kind"):
    if not isinstance(src, ndarray):
        src = asarray(src)
    np.copyto(dst._a, src._a, casting=casting)


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*arrays):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in arrays) else np


def __getattr__(name):
    """NumPy's functions and dtypes (cupy.isfinite, cupy.float32, ...), run on the device arrays."""
    thing = getattr(np, name)
    if isinstance(thing, type) or not callable(thing):
        return thing
    return lambda *args, **kwargs: _call(thing, *args, **kwargs)


# ---- kernels ----


class _Kernel:
    """A compiled kernel, called as CuPy's RawKernel: kernel(grid, block, args, shared_mem=...)."""

    def __init__(self, function):
        self._function = function
        self.shared_size_bytes = function.static_shared_bytes
        self.max_dynamic_shared_size_bytes = device_attributes["MaxSharedMemoryPerBlock"] - self.shared_size_bytes

    @property
    def name(self):
        return self._function.name

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = _dim3(grid), _dim3(block)
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise RuntimeError(
                f"cudaErrorInvalidValue: {self.name} asks for {shared_mem} bytes of dynamic shared memory, "
                f"more than its max_dynamic_shared_size_bytes ({self.max_dynamic_shared_size_bytes})"
            )
        if shared_mem + self.shared_size_bytes > device_attributes["MaxSharedMemoryPerBlockOptin"]:
            raise RuntimeError(f"cudaErrorInvalidValue: {self.name} needs more shared memory than the device has")
        cooperative = bool(enable_cooperative_groups)
        if cooperative:
            self._check_coresident(grid, block, int(shared_mem))
        launch = (self, grid, block, int(shared_mem), self._arguments(args), cooperative)
        current = _current_stream()
        if current.capturing:
            current.captured.append(launch)
        else:
            _run(launch)

    def max_coresident_blocks(self, block, shared_mem):
        """Blocks of this kernel the device holds at once: per SM, as many as
        its threads and its shared memory allow (simplified: no register limit)."""
        threads = block[0] * block[1] * block[2]
        per_sm = max(1, MAX_THREADS_PER_SM // threads)
        per_block = shared_mem + self.shared_size_bytes
        if per_block:
            per_sm = min(per_sm, device_attributes["MaxSharedMemoryPerMultiprocessor"] // per_block)
        return device_attributes["MultiProcessorCount"] * per_sm

    def _check_coresident(self, grid, block, shared_mem):
        if not device_attributes["CooperativeLaunch"]:
            raise RuntimeError(f"cudaErrorNotSupported: {self.name}: the device does not support cooperative launches")
        blocks, limit = grid[0] * grid[1] * grid[2], self.max_coresident_blocks(block, shared_mem)
        if blocks > limit:
            raise RuntimeError(
                f"cudaErrorCooperativeLaunchTooLarge: too many blocks in cooperative launch: {self.name} asks for "
                f"{blocks} blocks of {block} threads and {shared_mem} bytes of dynamic shared memory, the device "
                f"holds {limit} at once"
            )

    def _arguments(self, args):
        params = self._function.params
        if len(args) != len(params):
            raise TypeError(f"{self.name} takes {len(params)} arguments, got {len(args)}")
        values = []
        for i, (arg, param) in enumerate(zip(args, params)):
            where = f"{self.name}: argument {i}"
            if isinstance(arg, ndarray):
                if param.kind != "pointer":
                    raise TypeError(f"{where} is a {param.kind} parameter, got an array")
                if param.pointee is not None and param.pointee != arg.dtype:
                    raise TypeError(f"{where} points to {param.pointee}, got a {arg.dtype} array")
                values.append(arg.data.ptr)
            elif isinstance(arg, np.generic):
                if param.kind == "pointer" and not (arg.dtype.kind in "iu" and arg.itemsize == 8 and arg == 0):
                    raise TypeError(f"{where} is a pointer, got {arg!r} (pass an array or a 64-bit 0 for NULL)")
                values.append(arg)
            else:
                raise TypeError(f"{where}: CuPy passes {type(arg).__name__} by its own rules; pass a NumPy scalar")
        return values


def _dim3(dims):
    dims = (dims,) if np.isscalar(dims) else tuple(dims)
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _run(launch):
    kernel, grid, block, shared_mem, args, cooperative = launch
    counters.launches += 1
    kernel._function.launch(grid, block, shared_mem, args, cooperative=cooperative)


class RawModule:
    def __init__(self, code=None, options=(), name_expressions=None, **kwargs):
        if not name_expressions:
            raise ValueError("the emulator compiles the name_expressions it is given: pass them")
        # named after its first kernel, so a fault's line numbers point into <kernel>.cu
        self._module = load_module(code, tuple(name_expressions), name=name_expressions[0].split("<")[0])

    def get_function(self, name):
        return _Kernel(self._module.get_function(name))


# ---- devices, streams and graphs ----


class _Graph:
    def __init__(self, launches):
        self._launches = launches

    def launch(self, stream=None):
        counters.graph_launches += 1
        for launch in self._launches:
            _run(launch)


class Stream:
    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.capturing = False
        self.captured = []

    def __enter__(self):
        _streams.append(self)
        return self

    def __exit__(self, *exc):
        _streams.pop()

    def synchronize(self):
        counters.syncs += 1

    def begin_capture(self, mode=None):
        if self is _null_stream:
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: the null stream cannot capture")
        self.capturing, self.captured = True, []

    def end_capture(self):
        self.capturing = False
        return _Graph(self.captured)

    def is_capturing(self):
        return self.capturing


_null_stream = Stream(null=True)
_streams = [_null_stream]


def _current_stream():
    return _streams[-1]


def get_current_stream():
    return _current_stream()


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: the emulator has device 0 only, not {self.id}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        counters.syncs += 1


def _attribute_ids():
    return {f"cudaDevAttr{name}": i for i, name in enumerate(DEFAULT_ATTRIBUTES)}


def _device_attribute(attribute, device):
    return device_attributes[list(DEFAULT_ATTRIBUTES)[attribute]]


def _device_properties(device):
    return {
        "name": DEVICE_NAME,
        "multiProcessorCount": device_attributes["MultiProcessorCount"],
        "sharedMemPerBlockOptin": device_attributes["MaxSharedMemoryPerBlockOptin"],
        "warpSize": 32,
    }


runtime = types.SimpleNamespace(
    getDevice=lambda: 0,
    getDeviceCount=lambda: 1,
    deviceGetAttribute=_device_attribute,
    getDeviceProperties=_device_properties,
    deviceSynchronize=lambda: Device().synchronize(),
    **_attribute_ids(),
)
cuda = types.SimpleNamespace(
    runtime=runtime,
    Device=Device,
    Stream=Stream,
    get_current_stream=get_current_stream,
)



def _gemm(transa, transb, a, b, out=None, alpha=1.0, beta=0.0):
    """cupy.cublas.gemm: out = alpha op(a) @ op(b) + beta out, in out's own memory (op: 'N' or 'T')."""
    op = {"N": lambda m: m, "T": lambda m: m.T}
    product = alpha * (op[transa](a._a) @ op[transb](b._a))
    if out is None:
        return _wrap(product)
    out._a[...] = product + beta * out._a if beta else product
    return out


cublas = types.SimpleNamespace(gemm=_gemm)
