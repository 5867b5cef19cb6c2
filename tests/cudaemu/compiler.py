"""Compile CUDA sources with g++ against the emulator's prelude, load and launch them.

load_module(code, name_expressions) builds one translation unit: prelude.h
(with runtime.h pasted in, precompiled once), ``#line 1 "<name>.cu"``, the CUDA source exactly
as given, then for each name expression an ``extern "C"`` launcher (template
deduction on ``&EXPR`` unpacks a ``void**`` argument array into the kernel's
parameter types, as cuLaunchKernel does) and a signature function. The
shared library is cached on disk by the sha256 of (TU text, flags,
``g++ --version``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import memory
from .memory import KernelFault

HERE = Path(__file__).parent
CXX = os.environ.get("CUDAEMU_CXX", "g++")
# -O1, measured on the project's kernels (2 cores): a module of one or two
# instantiations compiles in ~0.45 s at -O0, ~0.5 s at -O1, ~0.6 s at -O2; a
# launch of linear_softmax<float, unsigned char, 10, 4> (n 1000, d 784) runs
# 0.43 s at -O0, 0.36 s at -O1 and -O2 (barriers, not arithmetic, dominate).
# CUDAEMU_OPT may carry several flags (e.g. "-O1 -DCUDAEMU_YIELDS=0").
OPT = os.environ.get("CUDAEMU_OPT", "-O1")
FLAGS = (
    "-std=c++20",
    "-shared",
    "-fPIC",
    "-pthread",
    *OPT.split(),
    "-fno-strict-aliasing",  # the kernels reinterpret bytes as uint4/float4/...
    "-fno-math-errno",
    "-fvisibility=hidden",
    "-Wno-unknown-pragmas",
)
# The largest shared memory per block of the GPUs the project targets (sm_90 opt-in).
MAX_SHARED_BYTES = 232448
# Seconds a thread may wait at one barrier before the launch fails as a hang
# (deadlocks are found at once; this catches what that detection cannot).
TIMEOUT_S = float(os.environ.get("CUDAEMU_TIMEOUT", "60"))
# Seconds threads may spin in __nanosleep while no other thread runs or passes
# a barrier before the launch fails as a hang (a grid barrier some block never
# reaches): nothing can end such a wait, so it need not be long.
SPIN_TIMEOUT_S = float(os.environ.get("CUDAEMU_SPIN_TIMEOUT", "2"))
# The most threads (grid x block) of a cooperative launch: each is an OS
# thread, all running at once (runtime.h's MAX_LAUNCH_THREADS).
MAX_COOPERATIVE_THREADS = 4096

_launch_lock = threading.Lock()  # one launch at a time: signal handlers are per process
_modules: dict[str, Module] = {}
_modules_lock = threading.Lock()


class CompileError(Exception):
    """g++ rejected a translation unit (the message has its first error lines)."""


@functools.cache
def _prelude() -> str:
    text = (HERE / "prelude.h").read_text()
    runtime = (HERE / "runtime.h").read_text()
    return text.replace('#include "runtime.h"', runtime)


@functools.cache
def _compiler_version() -> str:
    return subprocess.run([CXX, "--version"], capture_output=True, text=True, check=True).stdout


def cache_dir() -> Path:
    if path := os.environ.get("FASTSOFTMAX_CUDAEMU_CACHE"):
        return Path(path)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "fastsoftmax" / "cudaemu"


def _build(source: Path, out: Path, flags: Sequence[str]) -> None:
    proc = subprocess.run([CXX, *flags, "-o", str(out), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"g++ failed to compile the CUDA source:\n{_first_errors(proc.stderr)}")


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join([*parts, _compiler_version()]).encode()).hexdigest()


@functools.cache
def precompiled_prelude(flags: Sequence[str] = FLAGS) -> Path:
    """The prelude as a header that g++ has precompiled once (its .gch beside it).

    Every kernel's translation unit includes it first: that halves each
    compile (0.45 -> 0.22 s measured), about 100 of which a cold test run
    makes. Where the .gch does not fit, g++ reads the header text instead.
    """
    folder = cache_dir()
    header = folder / f"prelude-{_key(_prelude(), ' '.join(flags))[:24]}.h"
    if not Path(f"{header}.gch").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix="build-") as tmp:
            text, gch = Path(tmp) / "prelude.h", Path(tmp) / "prelude.h.gch"
            text.write_text(_prelude())
            _build(text, gch, [*flags, "-x", "c++-header"])
            os.replace(text, header)
            os.replace(gch, f"{header}.gch")
    return header


def translation_unit(code: str, name_expressions: Sequence[str], name: str = "module") -> str:
    parts = [f'#include "{precompiled_prelude()}"', f'#line 1 "{name}.cu"', code, '#line 1 "cudaemu-launchers"']
    for i, expr in enumerate(name_expressions):
        quoted = expr.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(
            f'extern "C" __attribute__((visibility("default"))) int cudaemu_launch_{i}(const unsigned* dims, '
            "unsigned long long shmem, int cooperative, void** args, char* err, unsigned long long errlen, "
            "unsigned long long* addr, double timeout_s, double spin_timeout_s) {\n"
            f'    return ::cudaemu::launch("{quoted}", &{expr}, dims, shmem, cooperative, args, err, errlen, addr, '
            "timeout_s, spin_timeout_s);\n"
            "}\n"
            f'extern "C" __attribute__((visibility("default"))) const char* cudaemu_signature_{i}() {{\n'
            f"    return ::cudaemu::signature(&{expr});\n"
            "}"
        )
    return "\n".join(parts) + "\n"


def _first_errors(stderr: str, lines: int = 25) -> str:
    out = stderr.splitlines()
    first = next((i for i, line in enumerate(out) if "error" in line), 0)
    return "\n".join(out[max(0, first - 3) : first + lines])


def compile_library(tu: str, flags: Sequence[str] = FLAGS) -> Path:
    """The cached shared library of tu (compiled now if absent)."""
    key = _key(tu, " ".join(flags))
    folder = cache_dir()
    target = folder / f"{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix="build-") as tmp:
        src = Path(tmp) / "module.cpp"
        src.write_text(tu)
        out = Path(tmp) / "module.so"
        _build(src, out, flags)
        os.replace(out, target)  # atomic: a concurrent build of the same key writes the same bytes
    return target


@dataclass(frozen=True)
class Param:
    """A kernel parameter: kind is "pointer", "int", "uint", "float" or "struct";
    size in bytes; for pointers the pointee's NumPy dtype (None: void or struct)."""

    kind: str
    size: int
    pointee: np.dtype | None = None


_KINDS = {"p": "pointer", "i": "int", "u": "uint", "f": "float", "s": "struct"}
_NUMPY_KIND = {"int": "i", "uint": "u", "float": "f"}


def _parse_signature(text: str) -> list[Param]:
    params = []
    for item in filter(None, text.split(",")):
        kind, _, rest = item.partition(":")
        if kind == "p":
            params.append(Param("pointer", 8, np.dtype(rest) if rest else None))
        else:
            params.append(Param(_KINDS[kind], int(rest)))
    return params


_LAUNCH_ARGTYPES = (
    ctypes.POINTER(ctypes.c_uint),  # grid and block
    ctypes.c_ulonglong,  # shared_mem
    ctypes.c_int,  # cooperative
    ctypes.POINTER(ctypes.c_void_p),  # the arguments
    ctypes.c_char_p,  # the fault message
    ctypes.c_ulonglong,
    ctypes.POINTER(ctypes.c_ulonglong),  # the faulting address
    ctypes.c_double,  # TIMEOUT_S
    ctypes.c_double,  # SPIN_TIMEOUT_S
)


def _dims(value, what: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        value = (value,)
    dims = tuple(int(v) for v in value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {value!r}")
    return dims + (1,) * (3 - len(dims))


class Function:
    """One kernel (template instantiation) of a Module."""

    def __init__(self, module: Module, index: int, name: str):
        self.module, self.name = module, name
        lib = module._lib
        sig = getattr(lib, f"cudaemu_signature_{index}")
        sig.restype = ctypes.c_char_p
        self.params: list[Param] = _parse_signature(sig().decode())
        self._launch = getattr(lib, f"cudaemu_launch_{index}")
        self._launch.argtypes = _LAUNCH_ARGTYPES
        self._launch.restype = ctypes.c_int
        self.static_shared_bytes: int = module.static_shared_bytes

    def __repr__(self):
        return f"<cudaemu.Function {self.name}>"

    def _pack(self, args: Sequence) -> tuple[ctypes.Array, list]:
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments, got {len(args)}")
        keep, pointers = [], (ctypes.c_void_p * max(1, len(args)))()
        for i, (param, arg) in enumerate(zip(self.params, args)):
            if param.kind == "pointer":
                if isinstance(arg, np.integer) and arg.dtype.itemsize == 8 or type(arg) is int:
                    cell = ctypes.c_uint64(int(arg) & (2**64 - 1))
                else:
                    raise TypeError(
                        f"kernel {self.name}: argument {i} is a pointer; pass an address (int) or an 8-byte "
                        f"NumPy integer (NULL), not {type(arg).__name__}"
                    )
            elif param.kind == "struct":
                raise TypeError(f"kernel {self.name}: argument {i} is a struct by value: unsupported")
            else:
                if not isinstance(arg, np.generic):
                    raise TypeError(
                        f"kernel {self.name}: argument {i} is a {param.size}-byte {param.kind}; pass a NumPy "
                        f"scalar of that type (e.g. np.{_example(param)}), not {type(arg).__name__}"
                    )
                dt = arg.dtype
                kind_ok = dt.kind == _NUMPY_KIND[param.kind] or (param.kind == "uint" and dt.kind == "b")
                if not kind_ok or dt.itemsize != param.size:
                    raise TypeError(
                        f"kernel {self.name}: argument {i} is a {param.size}-byte {param.kind} "
                        f"(np.{_example(param)}), got np.{dt.name}"
                    )
                cell = ctypes.create_string_buffer(arg.tobytes(), max(8, param.size))
            keep.append(cell)
            pointers[i] = ctypes.addressof(cell)
        return pointers, keep

    def launch(self, grid, block, shared_mem: int, args: Sequence, *, cooperative: bool = False) -> None:
        """Runs the kernel on (grid, block) with shared_mem bytes of dynamic
        shared memory. TypeError/ValueError for misuse by the host; KernelFault
        for a bug of the kernel (after the launch, every buffer's canary is checked).

        cooperative: every block runs at once (grid x block OS threads, at most
        MAX_COOPERATIVE_THREADS), each with its own dynamic shared memory, so
        blocks may wait for each other (a grid barrier). Blocks start last
        block first, each once those started before it have returned or sleep
        in __nanosleep. The caller checks the device's co-resident capacity
        (standin_cupy does, as CUDA would)."""
        g, b = _dims(grid, "grid"), _dims(block, "block")
        shared_mem = int(shared_mem)
        if min(g) < 1 or g[0] > 2**31 - 1 or max(g[1:]) > 65535:
            raise ValueError(f"kernel {self.name}: invalid grid {g}")
        if min(b) < 1 or b[0] > 1024 or b[1] > 1024 or b[2] > 64 or b[0] * b[1] * b[2] > 1024:
            raise ValueError(f"kernel {self.name}: invalid block {b} (at most 1024 threads)")
        if shared_mem < 0 or shared_mem + self.static_shared_bytes > MAX_SHARED_BYTES:
            raise ValueError(
                f"kernel {self.name}: {shared_mem} bytes of dynamic shared memory (+ {self.static_shared_bytes} "
                f"static) exceed the {MAX_SHARED_BYTES} bytes of a block"
            )
        if cooperative:
            self._check_cooperative(g, b)
        pointers, keep = self._pack(args)
        dims = (ctypes.c_uint * 6)(*g, *b)
        err = ctypes.create_string_buffer(8192)
        addr = ctypes.c_ulonglong(0)
        with _launch_lock:
            rc = self._launch(
                dims, shared_mem, int(bool(cooperative)), pointers, err, len(err), ctypes.byref(addr), TIMEOUT_S,
                SPIN_TIMEOUT_S,
            )
        del keep
        if rc == 2:
            raise ValueError(err.value.decode(errors="replace"))
        if rc != 0:
            message = err.value.decode(errors="replace")
            if addr.value and (near := memory.describe(addr.value)):
                message += f" ({near})"
            raise KernelFault(message)
        memory.check_all()

    def _check_cooperative(self, g: tuple[int, int, int], b: tuple[int, int, int]) -> None:
        threads = g[0] * g[1] * g[2] * b[0] * b[1] * b[2]
        if threads > MAX_COOPERATIVE_THREADS:
            raise ValueError(
                f"kernel {self.name}: a cooperative launch of grid {g} x block {b} = {threads} threads; the "
                f"emulator runs at most {MAX_COOPERATIVE_THREADS} (one OS thread each, all at once)"
            )
        # Static __shared__ objects are one per process: blocks running at once would share them.
        if self.static_shared_bytes:
            raise ValueError(
                f"kernel {self.name}: cooperative kernels must use dynamic shared memory only in the emulator "
                f"(its module has {self.static_shared_bytes} bytes of static __shared__ memory)"
            )


def _example(param: Param) -> str:
    return {("int", 4): "int32", ("int", 8): "int64", ("uint", 4): "uint32", ("uint", 8): "uint64",
            ("float", 4): "float32", ("float", 8): "float64", ("int", 1): "int8", ("uint", 1): "uint8",
            ("int", 2): "int16", ("uint", 2): "uint16"}.get((param.kind, param.size), "?")


class Module:
    """A compiled translation unit; get_function(expr) for each name expression."""

    def __init__(self, path: Path, name_expressions: Sequence[str]):
        self.path = path
        self._lib = ctypes.CDLL(str(path))  # RTLD_LOCAL: each module keeps its own runtime
        objects = _shared_objects(path, self._lib)
        self.static_shared_bytes = sum(size for _, size in objects)
        n = len(objects)
        addrs = (ctypes.c_ulonglong * max(1, n))(*(a for a, _ in objects))
        sizes = (ctypes.c_ulonglong * max(1, n))(*(s for _, s in objects))
        if self._lib.cudaemu_set_shared_objects(addrs, sizes, n) != 0:
            raise CompileError(f"{path}: more __shared__ objects than the runtime's table holds")
        self._functions = {expr: Function(self, i, expr) for i, expr in enumerate(name_expressions)}

    def get_function(self, expr: str) -> Function:
        try:
            return self._functions[expr]
        except KeyError:
            raise KeyError(f"{expr!r} is not one of this module's name expressions {list(self._functions)}") from None


def _shared_objects(path: Path, lib) -> list[tuple[int, int]]:
    """(address, size) of every function-local static of the kernels (their __shared__ objects).

    In device code a function-local static is __shared__ (or constant data, in
    .rodata); the runtime's own statics live in namespace cudaemu.
    """
    out = subprocess.run(["nm", "--defined-only", "-P", "-S", str(path)], capture_output=True, text=True, check=True)
    symbols, objects = {}, []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        name, kind, value = fields[0], fields[1], int(fields[2], 16)
        symbols[name] = value
        if (
            len(fields) == 4
            and name.startswith("_ZZ")
            and not name.startswith("_ZZN7cudaemu")
            and kind in "bBdDuV"
        ):
            objects.append((value, int(fields[3], 16)))
    fn = ctypes.cast(lib.cudaemu_set_shared_objects, ctypes.c_void_p).value
    base = fn - symbols["cudaemu_set_shared_objects"]
    return [(base + value, size) for value, size in objects]




def load_module(code: str, name_expressions: Sequence[str], *, name: str = "module") -> Module:
    """Compiles (or loads from the cache) code with a launcher per name expression."""
    exprs = list(dict.fromkeys(name_expressions))
    tu = translation_unit(code, exprs, name)
    key = hashlib.sha256(tu.encode()).hexdigest()
    with _modules_lock:
        module = _modules.get(key)
        if module is None:
            module = _modules[key] = Module(compile_library(tu), exprs)
    return module
