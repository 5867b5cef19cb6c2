"""Fixtures shared by the test modules: the backends every kernel test runs on."""

import pytest

from fastsoftmax import datasets
from fastsoftmax.backend import array_module, cuda_available


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def xp(request):
    """numpy (Numba kernels) or cupy (CUDA kernels); CUDA skips where no GPU is."""
    if request.param == "cuda" and not cuda_available():
        pytest.skip("CUDA backend: CuPy with a CUDA GPU is not available here")
    return array_module(request.param)


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
