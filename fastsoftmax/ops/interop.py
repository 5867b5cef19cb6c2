"""The public kernels' door for PyTorch tensors and JAX arrays: DLPack in, the caller's kind out.

``takes_frameworks`` wraps a kernel of fastsoftmax.ops: where any argument is
a tensor or a JAX array, every such argument becomes a NumPy array (CPU) or a
CuPy array (GPU) over the same memory (arrays.from_framework: no copy; a
strided or transposed one is copied once by the kernel's own checks, as a
NumPy one would be), the kernel runs on the matching backend, on the caller's
current CUDA stream (arrays.framework_stream), and its arrays come back as the
caller's kind. NumPy and CuPy callers go straight through.
"""

from __future__ import annotations

import functools
import inspect

from ..arrays import framework_of, framework_stream, from_framework, to_framework


def takes_frameworks(*in_place: str):
    """The decorator; in_place names the arguments the kernel updates in place (train_epoch's W and b), which
    a JAX array, being immutable, cannot be."""

    def wrap(kernel):
        signature = inspect.signature(kernel)

        @functools.wraps(kernel)
        def call(*args, **kwargs):
            kinds = {framework_of(a) for a in (*args, *kwargs.values())} - {None}
            if not kinds:
                return kernel(*args, **kwargs)
            if len(kinds) > 1:
                raise TypeError(f"{kernel.__name__} got both PyTorch tensors and JAX arrays: pass one kind")
            kind = kinds.pop()
            bound = signature.bind(*args, **kwargs)
            for name in in_place:
                if kind == "jax" and framework_of(bound.arguments[name]) == "jax":
                    raise TypeError(f"{kernel.__name__} updates {name} in place, and JAX arrays are immutable: "
                                    f"pass NumPy arrays (np.array({name})) and take the result back with "
                                    "jnp.asarray")
            with framework_stream(bound.arguments.values()):
                for name, value in bound.arguments.items():
                    if framework_of(value):
                        bound.arguments[name] = from_framework(value, name)
                return to_framework(kernel(*bound.args, **bound.kwargs), kind)

        return call

    return wrap
