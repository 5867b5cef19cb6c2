"""The Numba machinery of the CPU kernels: where their compiled code is cached, the options they
compile with, and the call of a compiled kernel through its address.

The cache directory, chosen once, before a kernel is decorated: Numba compiles
a kernel on its first call and, with ``cache=True``, writes the machine code to
disk, so that a later process loads it (~0.1 s) rather than compiling it again
(seconds). The directory is the first that can be written of:

1. ``NUMBA_CACHE_DIR``, where the user set it (Numba's own setting);
2. the kernel modules' ``__pycache__`` (a clone, an editable install: Numba's default);
3. ``$XDG_CACHE_HOME/fastsoftmax/numba`` (default ``~/.cache/fastsoftmax/numba``),
   for a wheel installed into a read-only site-packages.

Where the chosen one cannot be written (a ``NUMBA_CACHE_DIR`` that cannot, or
none of the three), the kernels compile in memory in every process, and a
warning says so once. The kernel modules decorate with ``njit`` below, which
applies this choice to them alone: other packages' functions keep Numba's own.

The threading layer: TBB (the ``tbb`` package, a dependency), whose parallel
loops survive ``fork()``, run from several threads at once, and share the
cores when other processes want them: a worker that is not running leaves
its parts to the others. GNU OpenMP, Numba's fallback, does none of these
(a fork child that runs a kernel is killed; with 8 busy processes on 2 cores
an epoch took 1.4-1.8 s on 2 threads against 0.18 s on one).
fastsoftmax/backends/tbb.py loads libtbb so that Numba prefers it.

Calls through addresses: a parallel loop compiles at four levels (its body,
two wrappers, the function that holds it), and a function called from another
is compiled again inside each level that calls it. So the parallel loops call
their kernels through the kernels' native entry points (``entry`` gives the
address, ``call`` makes the call): a loop compiles small and a kernel once per
signature (fused.py's docstring has the measured cost).
"""

from __future__ import annotations

import tempfile
import threading
import warnings
from pathlib import Path

import numba
from llvmlite import ir
from numba import typeof, types
from numba.core import cgutils, config
from numba.extending import intrinsic

from ...io.cache import user_cache_dir
from ..tbb import TBB  # noqa: F401 - loaded before any parallel loop runs

KERNEL_DIR = Path(__file__).parent  # the kernel modules' folder: Numba's in-tree cache is its __pycache__


def writable(folder: Path) -> bool:
    """Whether files can be created in folder (made if missing), tried as Numba tries it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def choose(numba_cache_dir: str, kernel_dir: Path) -> tuple[str, Path | None]:
    """(why, the directory, or None for in-memory compiling) by the rules above."""
    if numba_cache_dir:
        folder = Path(numba_cache_dir)
        return f"NUMBA_CACHE_DIR={numba_cache_dir}", folder if writable(folder) else None
    for why, folder in (("the kernels' __pycache__", kernel_dir / "__pycache__"),
                        ("the user cache", user_cache_dir("numba"))):
        if writable(folder):
            return why, folder
    return f"neither {kernel_dir / '__pycache__'} nor {user_cache_dir('numba')}", None


WHY, CACHE_DIR = choose(config.CACHE_DIR, KERNEL_DIR)
if CACHE_DIR is None:
    warnings.warn(f"fastsoftmax: no writable directory for Numba's cache ({WHY}): the CPU kernels compile in "
                  "memory, again in every process (seconds each time); set NUMBA_CACHE_DIR to a writable folder "
                  "to compile them once", RuntimeWarning, stacklevel=2)
# Numba's cache=True where a directory was found: the kernels' options say "cache": CACHE.
CACHE = CACHE_DIR is not None
_DECORATING = threading.Lock()


def njit(**options):
    """numba.njit(**options), its cache (with cache=True) in CACHE_DIR; without one, no cache.

    Numba has no per-function cache directory: a function's cache locator
    reads the global ``numba.config.CACHE_DIR`` when the function is
    decorated. So this sets it for the moment of decorating a kernel (under a
    lock, the kernel modules' import time) and puts it back. The alternative,
    a locator class of ours, would rest on Numba internals whose names changed
    within the Numba versions this package supports.
    """

    def decorate(function):
        if not (options.get("cache") and CACHE):
            return numba.njit(**{**options, "cache": False})(function)
        in_tree = CACHE_DIR == KERNEL_DIR / "__pycache__"  # Numba's own default: nothing to set
        with _DECORATING:
            saved = config.CACHE_DIR
            config.CACHE_DIR = saved if in_tree else str(CACHE_DIR)
            try:
                return numba.njit(**options)(function)
            finally:
                config.CACHE_DIR = saved

    return decorate


# Reassociation lets LLVM vectorise the dot-product sums; no 'nnan'/'ninf', so
# a NaN or inf in the input still shows in the output rather than vanishing.
# error_model "numpy": a division by zero gives inf, as in NumPy, rather than a
# check and a Python exception per division (0.5 s less to compile; the
# softmax denominators are >= 1 anyway).
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
JIT = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True, "error_model": "numpy"}
# The functions called from jitted code alone compile without the wrappers a call from Python or
# from C needs (their unboxing code is as large as a small kernel: 12% of a first fit's compile).
INNER = {**JIT, "no_cpython_wrapper": True, "no_cfunc_wrapper": True}
# The parallel loops are the prange loops alone: no array expression becomes one of its own.
PRANGE = {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False, "setitem": False,
          "numpy": False, "stencil": False, "fusion": False}


@intrinsic
def prefetch(typingctx, arr, index):
    """Ask for the cache line holding arr[index] (llvm.prefetch: a read, into L2).

    Minibatch rows come in shuffled order, which the hardware prefetcher cannot
    guess: fetching the next tile's rows while this one computes hides most of
    the memory latency (~1 ms of a 60000-row epoch on the 2-core Xeon; into L2
    measured a little faster than into L1).
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@intrinsic
def call(typingctx, address, args):
    """Call the compiled kernel whose native entry point is at address (an int from entry, which
    compiled it for exactly the types of the tuple args) with args; it returns nothing.

    The call Numba makes for a first-class function value, without the value: a parallel loop
    calling its kernel so leaves the kernel's code out of its own compilation (the module
    docstring), and an int crosses from Python in nanoseconds where a function value takes
    ~10 us to unbox on every call. The kernels raise nothing (no checks inside, NumPy's error
    model), so the status of the call is not looked at.
    """
    if not (isinstance(address, types.Integer) and isinstance(args, types.BaseTuple)):
        return None

    def codegen(context, builder, sig, llargs):
        argtypes = tuple(args.types)
        pointer = context.call_conv.get_function_type(types.none, argtypes).as_pointer()
        kernel = builder.inttoptr(llargs[0], pointer)
        values = [builder.extract_value(llargs[1], i) for i in range(len(argtypes))]
        context.call_conv.call_function(builder, kernel, types.none, argtypes, values)
        return context.get_dummy_value()

    return types.none(address, args), codegen


# (kernel, the kinds of the caller's arrays) -> the address of the kernel's native entry point. A
# cache of compiled code, which no kernel writes: a second thread at worst compiles the same entry.
_ENTRIES = {}


def kind(a):
    """What Numba's type of an array depends on (numba.typeof): its dtype, dimensions, layout and writeability."""
    flags = a.flags
    return a.dtype, a.ndim, "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A", flags.writeable


def entry(kernel, args, given):
    """The address of kernel's native entry point for the types of args (q first), compiled on first
    need, for call. Memoised by the kinds of `given`, the caller's arrays among args: the other
    arguments are made by the caller, of types that follow from theirs."""
    key = (kernel, *map(kind, given))
    address = _ENTRIES.get(key)
    if address is None:
        signature = tuple(map(typeof, args))
        kernel.compile(signature)
        compiled = kernel.overloads[signature]
        address = _ENTRIES[key] = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    return address
