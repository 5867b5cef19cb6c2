"""Where Numba keeps the CPU kernels it compiles: chosen once, before a kernel is decorated.

Numba compiles a kernel on its first call and, with ``cache=True``, writes the
machine code to disk, so that a later process loads it (~0.1 s) rather than
compiling it again (seconds). The directory, the first that can be written:

1. ``NUMBA_CACHE_DIR``, where the user set it (Numba's own setting);
2. the package's ``__pycache__`` (a clone, an editable install: Numba's default);
3. ``$XDG_CACHE_HOME/fastsoftmax/numba`` (default ``~/.cache/fastsoftmax/numba``),
   for a wheel installed into a read-only site-packages.

Where the chosen one cannot be written (a ``NUMBA_CACHE_DIR`` that cannot, or
none of the three), the kernels compile in memory in every process, and a
warning says so once. Numba picks a function's cache directory when the
function is decorated, so the kernel modules decorate with ``njit`` below,
which applies this choice to them alone: other packages' functions keep
Numba's own choice.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numba
from numba.core import config

from .datasets import user_cache_dir

PACKAGE_DIR = Path(__file__).parent


def writable(folder: Path) -> bool:
    """Whether files can be created in folder (made if missing), tried as Numba tries it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def choose(numba_cache_dir: str, package_dir: Path) -> tuple[str, Path | None]:
    """(why, the directory, or None for in-memory compiling) by the rules above."""
    if numba_cache_dir:
        folder = Path(numba_cache_dir)
        return f"NUMBA_CACHE_DIR={numba_cache_dir}", folder if writable(folder) else None
    for why, folder in (("the package's __pycache__", package_dir / "__pycache__"),
                        ("the user cache", user_cache_dir("numba"))):
        if writable(folder):
            return why, folder
    return f"neither {package_dir / '__pycache__'} nor {user_cache_dir('numba')}", None


WHY, CACHE_DIR = choose(config.CACHE_DIR, PACKAGE_DIR)
if CACHE_DIR is None:
    warnings.warn(f"fastsoftmax: no writable directory for Numba's cache ({WHY}): the CPU kernels compile in "
                  "memory, again in every process (seconds each time); set NUMBA_CACHE_DIR to a writable folder "
                  "to compile them once", RuntimeWarning, stacklevel=2)
# Numba's cache=True where a directory was found: the kernel modules' options say "cache": CACHE.
CACHE = CACHE_DIR is not None


def njit(**options):
    """numba.njit(**options), its cache (with cache=True) in CACHE_DIR; without one, no cache."""

    def decorate(function):
        if not (options.get("cache") and CACHE):
            return numba.njit(**{**options, "cache": False})(function)
        saved = config.CACHE_DIR
        config.CACHE_DIR = str(CACHE_DIR) if CACHE_DIR != PACKAGE_DIR / "__pycache__" else saved
        try:
            return numba.njit(**options)(function)
        finally:
            config.CACHE_DIR = saved

    return decorate
