"""Which backend runs an array, and what a backend is.

NumPy arrays run on the Numba CPU kernels (fastsoftmax/cpu.py), CuPy arrays on
the CUDA kernels (fastsoftmax/cuda.py): the habit of ``cupy.get_array_module``.
``fastsoftmax.ops`` imports the one that an array needs and is the only caller
of a backend's functions; ``Backend`` below is the contract both satisfy
(tests/test_backend.py checks them against it), and ``SweepBackend`` that of
their wide-W kernels for sweeps (cpu_sweep.py, cuda_sweep.py; tests/test_sweep.py).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Backend(Protocol):
    """The functions a backend module provides; ``fastsoftmax.ops`` validates their input first.

    X is C-contiguous uint8/float32/float64; ``coef`` is W transposed, (k, d)
    C-contiguous in the compute dtype (float32 or float64); b is (k,) in that
    dtype; y and rows are int64 with every label in [0, k) and every row in
    [0, n). Inner loops check nothing. Scalars come as Python numbers.
    Results are arrays of the backend's kind; a 0-d result stays on the device.
    """

    def linear_softmax(self, X, coef, b, x_scale):
        """P (n, k): softmax(x_scale * X @ coef.T + b) by rows."""

    def softmax_cross_entropy(self, logits, y):
        """(loss, dlogits): the 0-d mean cross-entropy and (softmax - onehot) / n."""

    def linear_softmax_cross_entropy(self, X, coef, b, y, x_scale):
        """(loss, correct, dcoef, db): 0-d mean loss and argmax hits; dcoef is (k, d)."""

    def count_correct(self, scores, y):
        """The 0-d int64 count of rows whose argmax is y."""

    def shuffle(self, n, seed, epoch):
        """The int64 rows 0..n-1 in epoch `epoch`'s order: fastsoftmax.permutation, computed on the device."""

    def train_epoch(self, X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step):
        """One epoch of minibatch SGD over X[rows], updating coef and b in place; (loss_sum, correct), 0-d.

        Batch s (the last may be partial) steps with the rate
        schedules.learning_rate(kind, lr, total_steps, start_step + s) in the
        compute dtype: coef -= rate * (dcoef + weight_decay * coef), b -= rate * db.
        loss_sum adds each batch's mean loss times its rows, so loss_sum / len(rows)
        is the epoch's mean training loss.
        """


@runtime_checkable
class SweepBackend(Protocol):
    """A backend's wide-W kernel, for learning-rate and weight-decay sweeps (cpu_sweep.py, cuda_sweep.py).

    Its own contract beside ``Backend``, in modules of their own: the m models
    of a sweep share every batch. coef (m, k, d) C-contiguous and b (m, k) in
    the compute dtype stack the models' weights; lrs and weight_decays are
    float64 arrays of m values of the backend's kind; the rest as
    Backend.train_epoch.
    """

    def train_epoch_many(self, X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps,
                         start_step):
        """Backend.train_epoch for each model i (rate of lrs[i], decay weight_decays[i]) on the same batches,
        coef and b updated in place; (loss_sums, correct), arrays of m values."""
