"""Fixtures shared by the test modules: the backends every kernel test runs on.

The CUDA backend runs everywhere: on the GPU where CuPy sees one, and
elsewhere on the CPU emulator of tests/cudaemu (the exact kernels/*.cu compiled
with g++, one real thread per CUDA thread), reached through a stand-in
``cupy`` module that is installed for the tests that ask for it.
"""

import sys

import numpy as np
import pytest

from fastsoftmax.io import datasets
from fastsoftmax.ops import dispatch

# Decided before any stand-in is installed: a real GPU takes precedence.
REAL_GPU = dispatch.cuda_available()


@pytest.fixture
def cupy_module():
    """cupy: the real one where a GPU is, else the stand-in on the CPU emulator
    (installed as sys.modules["cupy"], with cupyx.scipy.sparse's stand-in, for the test, with fresh counters and
    the default device attributes)."""
    if REAL_GPU:
        import cupy

        yield cupy
        return
    from cudaemu import standin_cupy, standin_cupyx

    standins = {"cupy": standin_cupy, **standin_cupyx.MODULES}
    saved = {name: sys.modules.get(name) for name in standins}
    sys.modules.update(standins)
    dispatch._cupy.cache_clear()
    standin_cupy.counters.reset()
    standin_cupy.device_attributes.update(standin_cupy.DEFAULT_ATTRIBUTES)
    _clear_attributes()
    try:
        yield standin_cupy
    finally:
        standin_cupy.device_attributes.update(standin_cupy.DEFAULT_ATTRIBUTES)  # as the next test expects them
        _clear_attributes()
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
        dispatch._cupy.cache_clear()


def _clear_attributes():
    """The CUDA backend's cache of device attributes, where it was imported: they come from the stand-in."""
    compile_module = sys.modules.get("fastsoftmax.backends.cuda.compile")
    if compile_module is not None:
        compile_module.attribute.cache_clear()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def xp(request):
    """numpy (Numba kernels) or cupy (CUDA kernels, on a GPU or the emulator)."""
    return np if request.param == "cpu" else request.getfixturevalue("cupy_module")


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """Empty search path: no env folder, a fresh cache, a fake system folder, no network."""
    monkeypatch.delenv("FASTSOFTMAX_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FASTSOFTMAX_NO_DOWNLOAD", "1")
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST, or the test skipped with the reason where its files are absent (`make test`
    installs Debian's dataset-fashion-mnist first, so they are present there)."""
    import fastsoftmax as fs

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTSOFTMAX_NO_DOWNLOAD", "1")  # a test never downloads
        try:
            return fs.load_dataset("fashion-mnist")
        except fs.DatasetNotFoundError as e:
            pytest.skip(f"real Fashion-MNIST absent (apt-get install dataset-fashion-mnist): {e}")
