"""Which backend runs an array, what device="auto"/"cpu"/"cuda" resolve to, and what a backend is.

NumPy arrays run on the Numba CPU kernels (fastsoftmax/backends/cpu/), CuPy
arrays on the CUDA kernels (fastsoftmax/backends/cuda/): the habit of
``cupy.get_array_module``. ``kernels`` imports the one a device needs (CuPy
only when asked for), and fastsoftmax.ops is the only caller of a backend's
functions; ``Backend`` below is the one contract both satisfy
(tests/test_dispatch.py checks them against it).
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Protocol, runtime_checkable

from ..arrays import device_of

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


def check_numba_jit() -> None:
    """DeviceError naming NUMBA_DISABLE_JIT where it is set: the CPU kernels are compiled with Numba,
    whose compiler it turns off (they would fail at their first call with an AttributeError)."""
    import numba

    if numba.config.DISABLE_JIT:
        raise DeviceError(f"NUMBA_DISABLE_JIT={os.environ.get('NUMBA_DISABLE_JIT', '1')} turns off Numba's "
                          "compiler, which the CPU kernels need: unset NUMBA_DISABLE_JIT (or set it to 0)")


def resolve_device(device: str) -> str:
    """Turn ``auto``/``cpu``/``cuda`` into ``cpu`` or ``cuda``, or raise (also where the CPU kernels cannot run)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        check_numba_jit()
        return device
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

    threads = numba.get_num_threads()
    return f"cpu (Numba, {threads} thread{'' if threads == 1 else 's'})"


def kernels(device: str) -> Backend:
    """The backend of a resolved device, imported on first use (CuPy only when asked for)."""
    if device == "cuda":
        from ..backends import cuda

        return cuda
    return _cpu()


@functools.cache
def _cpu() -> ModuleType:
    """The CPU backend, imported once NUMBA_DISABLE_JIT is known not to stop it (an error is not cached)."""
    check_numba_jit()
    from ..backends import cpu

    return cpu


def backend_of(*arrays):
    """(numpy or cupy, the backend) for the arrays: the device they live on, never a mix."""
    device = device_of(*arrays)
    return array_module(device), kernels(device)


def kernel_cache() -> tuple[str, object]:
    """Where the CPU kernels' compiled code is cached: (why there, the folder or None for in memory)."""
    from ..backends.cpu import jit

    return jit.WHY, jit.CACHE_DIR


@runtime_checkable
class Backend(Protocol):
    """The functions a backend package provides; fastsoftmax.ops validates their input first.

    X is either dense, C-contiguous uint8/float32/float64, or a
    fastsoftmax.arrays.CSR triple (float32/float64 values, int32 or int64
    indices, of the backend's kind), which the backend runs on its sparse
    kernels (backends/*/sparse.py) without ever densifying it; ``coef`` is W
    transposed, (k, d) C-contiguous in the compute dtype (float32 or float64);
    b is (k,) in that dtype; y and rows are int64 with every label in [0, k)
    and every row in [0, n). sample_weight is None (every row weighs 1) or an
    (n,) C-contiguous array in the compute dtype, non-negative, that
    multiplies each row's loss and gradient; ops normalises it to mean 1 over
    X's rows, so the kernels still divide by the rows counted. Inner loops
    check nothing. Scalars come as Python numbers. Results are arrays of the
    backend's kind; a 0-d result stays on the device.
    """

    def linear_softmax(self, X, coef, b, x_scale):
        """P (n, k): softmax(x_scale * X @ coef.T + b) by rows."""

    def linear_logits(self, X, coef, b, x_scale):
        """The logits (n, k): x_scale * X @ coef.T + b, X converted a chunk of rows at a time."""

    def softmax_cross_entropy(self, logits, y):
        """(loss, dlogits): the 0-d mean cross-entropy and (softmax - onehot) / n."""

    def linear_softmax_cross_entropy(self, X, coef, b, y, x_scale, sample_weight):
        """(loss, correct, dcoef, db): the 0-d loss sum(w_i * loss_i) / n and argmax hits (unweighted);
        dcoef (k, d) and db the gradient of that loss."""

    def linear_softmax_hessian_product(self, X, coef, b, vcoef, vb, x_scale, sample_weight, P):
        """(hcoef (k, d), hb): that loss's Hessian in (coef, b) times the direction (vcoef (k, d), vb);
        P: None, or the (n, k) C-contiguous softmax at (coef, b), which the product then reads."""

    def linear_cross_entropy(self, X, coef, b, y, smoothing, scale, input_grad):
        """(losses, dX, dcoef, db): each row's cross-entropy of softmax(X @ coef.T + b) against y with label
        smoothing `smoothing` (X float of coef's dtype, coef (k, d) the weight itself); with scale (n,),
        the gradients of sum_i scale_i loss_i (dX None unless input_grad), else None for all three."""

    def count_correct(self, scores, y):
        """The 0-d int64 count of rows whose argmax is y."""

    def shuffle(self, n, seed, epoch):
        """The int64 rows 0..n-1 in epoch `epoch`'s order: reference/permutation.py, computed on the device."""

    def train_epoch(self, X, y, rows, coef, b, batch_size, x_scale, weight_decay, kind, lr, total_steps, start_step,
                    sample_weight, workspace):
        """One epoch of minibatch SGD over X[rows], updating coef and b in place; (loss_sum, correct), 0-d.

        Batch s (the last may be partial, of m rows) steps with the rate
        schedules.learning_rate(kind, lr, total_steps, start_step + s) in the
        compute dtype: coef -= rate * (dcoef + weight_decay * coef), b -= rate * db,
        dcoef and db being the gradient of sum(w_i * loss_i) / m over the batch
        (a sparse X's step touches only the batch's columns, the decay applied
        lazily). loss_sum adds each batch's weighted loss sum, so loss_sum /
        len(rows) is the epoch's mean training loss. workspace: None, or a dict
        that one run's epochs share, where the backend may keep the buffers its
        kernels write from one epoch to the next (one per run: never two runs').
        """

    def train_epoch_many(self, X, y, rows, coef, b, batch_size, x_scale, weight_decays, kind, lrs, total_steps,
                         start_step, sample_weight):
        """train_epoch for m models stacked in coef (m, k, d) and b (m, k), on the same batches: model i
        steps at the rate of lrs[i] with decay weight_decays[i] (sequences of m Python floats);
        (loss_sums, correct), arrays of m values. Each batch is read once for all the models."""
