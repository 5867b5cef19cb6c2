"""Which backend runs an array: NumPy arrays run on the Numba CPU kernels,
CuPy arrays on the CUDA kernels (the habit of ``cupy.get_array_module``).

A backend is a module with the same five functions. Each takes arrays that the
public layer (``fastsoftmax.ops``) has already validated: X is C-contiguous,
uint8/float32/float64; ``coef`` is W transposed, shape (k, d), C-contiguous, in
the compute dtype (float32 or float64); b is (k,) in that dtype; y is (n,)
int64 with every label in [0, k). Inner loops check nothing.

- ``linear_softmax(X, coef, b, x_scale) -> P`` (n, k)
- ``softmax_cross_entropy(logits, y) -> (loss, dlogits)``; loss is 0-d
- ``linear_softmax_cross_entropy(X, coef, b, y, x_scale) -> (loss, correct, dcoef, db)``;
  loss and correct are 0-d, dcoef is (k, d)
- ``count_correct(scores, y) -> correct`` (0-d int64)
- ``train_epoch(X, y, order, coef, b, lrs, batch_size, x_scale, weight_decay) -> (loss_sum, correct)``:
  one epoch of minibatch SGD over the rows ``X[order]``, batch ``s`` stepping
  with learning rate ``lrs[s]``; updates coef and b in place; loss_sum is the
  sum over batches of (mean batch loss * batch rows), so loss_sum / n is the
  epoch's mean training loss. Both results are 0-d arrays.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The requested device cannot run here (no CuPy, no GPU)."""


@functools.cache
def _cupy() -> ModuleType | None:
    """CuPy if it imports and sees a CUDA device, else None (CuPy is optional)."""
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver
        return None
    return cupy


def cuda_available() -> bool:
    return _cupy() is not None


def resolve_device(device: str) -> str:
    """Turn ``auto``/``cpu``/``cuda`` into ``cpu`` or ``cuda``, or raise."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        try:
            import cupy  # noqa: F401
        except Exception:
            raise DeviceError(
                "device 'cuda' needs CuPy: install it with "
                "`pip install fastsoftmax[cuda13]` (or [cuda12]), or use --device cpu"
            ) from None
        raise DeviceError("device 'cuda' needs a CUDA GPU, and none was found; use --device cpu")
    return device


def is_device_array(a) -> bool:
    """True for a CuPy array (checked without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def kernels_for_device(device: str) -> ModuleType:
    """The kernel module of a resolved device (``cpu`` or ``cuda``)."""
    return importlib.import_module({"cpu": "fastsoftmax.cpu", "cuda": "fastsoftmax.cuda"}[device])


def device_of(*arrays) -> str:
    """``cuda`` if the arrays are CuPy arrays, ``cpu`` if NumPy; never a mix."""
    kinds = {is_device_array(a) for a in arrays}
    if len(kinds) > 1:
        raise TypeError(
            "arrays are a mix of NumPy and CuPy; move them to one device "
            "(cupy.asarray or cupy.asnumpy) before calling"
        )
    return "cuda" if kinds.pop() else "cpu"


def array_module(device: str) -> ModuleType:
    """numpy or cupy, for moving data to a resolved device."""
    if device == "cuda":
        return _cupy()
    import numpy

    return numpy


def gpu_name() -> str:
    """The current GPU's name as CUDA reports it, e.g. "NVIDIA H100 80GB HBM3"."""
    cupy = _cupy()
    return cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()


def device_name(device: str) -> str:
    """A resolved device in words: the GPU's name, or the CPU with its thread count."""
    if device == "cuda":
        return f"cuda ({gpu_name()})"
    import numba

    return f"cpu (Numba, {numba.get_num_threads()} threads)"
