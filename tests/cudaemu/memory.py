"""Guarded "device" memory for the CUDA emulator.

Each allocation is its own anonymous mapping: a PROT_NONE guard page, the data
pages, a PROT_NONE guard page. The data starts 256-byte aligned (as
cudaMalloc's) as close to the trailing guard page as that alignment allows, so
a kernel reading or writing a few bytes past the end lands in the slack (a
canary checked after every launch) and a larger overrun faults on the guard
page (reported by the runtime as a KernelFault). New data is filled with 0xFF
(NaN as float or double): CUDA memory starts uninitialised.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref

import numpy as np

PAGE = mmap.PAGESIZE
ALIGN = 256
POISON = 0xFF
CANARY = 0xA5


class KernelFault(Exception):
    """A bug of a kernel found by the emulator: barrier divergence, a touch
    outside every device buffer, a canary overwritten, a bad shuffle.

    Deliberately not a RuntimeError/ValueError: a kernel bug must fail a test
    loudly, never be turned into a one-line message by the CLI.
    """


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.mprotect.restype = ctypes.c_int

_live: weakref.WeakSet[DeviceBuffer] = weakref.WeakSet()


class DeviceBuffer:
    """nbytes of guarded memory; .ptr is the data's address."""

    def __init__(self, nbytes: int):
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError(f"negative allocation size {nbytes}")
        self.nbytes = nbytes
        data_pages = max(1, -(-nbytes // PAGE))
        inner = data_pages * PAGE
        self._map = mmap.mmap(-1, inner + 2 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        # The mapping's address: a ctypes view pins the buffer export (the mmap
        # cannot be closed while it lives) and is kept for as long as we are.
        self._anchor = ctypes.c_char.from_buffer(self._map)
        base = ctypes.addressof(self._anchor)
        for offset in (0, PAGE + inner):
            if _libc.mprotect(base + offset, PAGE, 0) != 0:
                raise OSError(ctypes.get_errno(), "mprotect of a guard page failed")
        self._lo = PAGE  # the accessible bytes: [_lo, _hi) of the mapping
        self._hi = PAGE + inner
        self._offset = PAGE + (inner - nbytes) // ALIGN * ALIGN
        self.ptr = base + self._offset
        self.base = base
        mem = np.frombuffer(self._map, np.uint8, inner, PAGE)
        mem[:] = CANARY
        self._front = mem[: self._offset - PAGE]
        self._back = mem[self._offset - PAGE + nbytes :]
        self.array = mem[self._offset - PAGE : self._offset - PAGE + nbytes]
        self.array[:] = POISON
        _live.add(self)

    def view(self, dtype, shape=None) -> np.ndarray:
        """The data as a writable NumPy array of dtype (and shape), sharing the memory."""
        a = self.array.view(dtype)
        return a if shape is None else a.reshape(shape)

    def check(self) -> None:
        """Raises KernelFault if a kernel wrote into the slack around the data."""
        for part, where in ((self._front, "before the start"), (self._back, "past the end")):
            bad = np.flatnonzero(part != CANARY)
            if bad.size:
                first = bad[0] if where == "past the end" else bad[-1]
                distance = first + 1 if where == "past the end" else part.size - first
                raise KernelFault(
                    f"a kernel wrote {distance} byte(s) {where} of the {self.nbytes}-byte device buffer at "
                    f"0x{self.ptr:x} (a canary byte changed)"
                )

    def describe(self, address: int) -> str | None:
        """Where address lies relative to this buffer's mapping, if near it."""
        lo, hi = self.base, self.base + self._hi + PAGE
        if not lo <= address < hi:
            return None
        end = self.ptr + self.nbytes
        if address >= end:
            return f"{address - end} bytes past the end of the {self.nbytes}-byte buffer at 0x{self.ptr:x}"
        if address < self.ptr:
            return f"{self.ptr - address} bytes before the start of the {self.nbytes}-byte buffer at 0x{self.ptr:x}"
        return f"inside the {self.nbytes}-byte buffer at 0x{self.ptr:x}"

    def __repr__(self):
        return f"DeviceBuffer(ptr=0x{self.ptr:x}, nbytes={self.nbytes})"


def allocate(nbytes: int) -> DeviceBuffer:
    """A new buffer of nbytes (0 gives a unique pointer to no bytes), filled with 0xFF."""
    return DeviceBuffer(nbytes)


def live_buffers() -> list[DeviceBuffer]:
    return list(_live)


def check_all() -> None:
    """Checks the canaries of every live buffer (after each launch)."""
    for buf in list(_live):
        buf.check()


def describe(address: int) -> str | None:
    """Which buffer an address is near (for fault messages), or None."""
    for buf in list(_live):
        where = buf.describe(address)
        if where:
            return where
    return None
